"""Mail for users who are away: MAIL stores it, ACK deletes it, and it is delivered at login or at once.

The mailboxes are the store's (SQLite) or, in a cluster, a
:class:`~relaychat.server.directory.SharedMail` every node reaches. Both
enforce the same :class:`~relaychat.server.limits.MailPolicy`: a
recipient's mailbox has a count and a byte limit, one sender a share of
it, and a sender an hourly allowance
(:class:`~relaychat.server.quotas.Quotas`). A store that fails raises
:class:`~relaychat.server.store.StorageError`, which the hub answers
``ERR <CMD> unavailable``; a shared mailbox answers later, through
:meth:`Hub.await_answer <relaychat.server.hub.Hub.await_answer>`.

A component of the :class:`~relaychat.server.hub.Hub`; it holds no state
of its own beyond the hub's tables and the mailboxes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from relaychat.server.connection import Connection
from relaychat.server.directory import RECIPIENT_FULL, SENDER_FULL
from relaychat.server.store import Binding, Mail
from relaychat.wire import messages as m
from relaychat.wire.errors import Code, ProtocolError

if TYPE_CHECKING:
    from relaychat.server.hub import Hub


class Mailbox:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def mail(self, client: Connection, mail: m.Mail, now: float) -> None:
        hub = self.hub
        hub.await_answer(client, "MAIL", hub.directory.find(mail.nick), lambda b: self._mail_to(client, mail, b, now))

    def _mail_to(self, client: Connection, mail: m.Mail, binding: Optional[Binding], now: float) -> None:
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        hub = self.hub
        policy = hub.mail
        body = mail.payload
        if len(body) > policy.max_mail:  # the limit counts decoded bytes (max_line bounds the decoding)
            raise ProtocolError(Code.TOO_BIG, f"a mail payload is at most {policy.max_mail} bytes once decoded")
        sender = client.nick
        assert sender is not None
        hub.quotas.check_mail(sender, len(body), now)
        created = hub.wall()  # stored: a calendar time, not the monotonic clock of this process
        if hub.shared_mail is not None:
            deposited = hub.shared_mail.deposit(binding.canonical, sender, created, body, policy)
            hub.await_answer(client, "MAIL", deposited,
                             lambda mail_id: self._mailed(client, binding, body, created, mail_id))
            return
        store = hub.store
        count, size = store.mail_usage(binding.canonical)
        if count >= policy.mail_per_recipient or size + len(body) > policy.mail_bytes_per_recipient:
            mail_id = RECIPIENT_FULL
        elif store.mail_count_from(binding.canonical, sender) >= policy.mail_per_sender:
            mail_id = SENDER_FULL
        else:
            mail_id = store.add_mail(binding.canonical, sender, created, body)
        self._mailed(client, binding, body, created, mail_id)

    def _mailed(self, client: Connection, binding: Binding, body: bytes, created: float, mail_id: int) -> None:
        hub = self.hub
        if mail_id == RECIPIENT_FULL:
            raise ProtocolError(Code.QUOTA, f"{binding.display}'s mailbox is full")
        if mail_id == SENDER_FULL:
            raise ProtocolError(Code.QUOTA, f"you have {hub.mail.mail_per_sender} messages waiting there already")
        assert client.nick is not None
        hub.quotas.spent_mail(client.nick, hub.now)
        hub.stats.mail_stored += 1
        hub.send(client, m.MailOk(mail_id))
        assert client.display is not None
        stored = m.StoredMail(mail_id, client.display, int(created), body)
        recipient = hub.online.get(binding.canonical)
        if recipient is not None:
            hub.send(recipient, stored)
        elif hub.elsewhere is not None and binding.canonical in hub.elsewhere.remote:
            hub.elsewhere.deliver(binding.canonical, stored.to_line().encode("utf-8") + b"\n")

    def ack(self, client: Connection, ack: m.Ack, now: float) -> None:
        hub = self.hub
        assert client.nick is not None
        if hub.shared_mail is not None:
            hub.await_answer(client, "ACK", hub.shared_mail.ack(client.nick, ack.mail_id),
                             lambda deleted: self._acked(client, ack.mail_id, deleted))
            return
        self._acked(client, ack.mail_id, hub.store.delete_mail(ack.mail_id, client.nick))

    def _acked(self, client: Connection, mail_id: int, deleted: bool) -> None:
        if not deleted:
            raise ProtocolError(Code.NO_SUCH_MAIL, f"{mail_id} no such mail for you")
        self.hub.send(client, m.AckOk(mail_id))

    def waiting(self, canon: str, pending: Optional[list[Mail]] = None) -> list[m.StoredMail]:
        """The mail waiting for ``canon``, as the lines that deliver it at login.

        ``pending`` is what a shared mailbox answered; else the store is
        read. Every event names people in their display form, so each
        sender's binding is read too: all storage reads, done before the
        login changes anything, so a failure leaves nothing half done.
        """
        hub = self.hub
        if pending is None:
            pending = hub.store.pending_mail(canon)
        shown: dict[str, str] = {}
        for mail in pending:
            if mail.sender not in shown:
                sender = hub.registry.find(mail.sender) if mail.sender_display is None else None
                shown[mail.sender] = sender.display if sender is not None else mail.sender_display or mail.sender
        return [m.StoredMail(mail.id, shown[mail.sender], int(mail.created), mail.body) for mail in pending]

    def purge(self, now: float) -> int:
        """Delete mail older than the configured expiry at wall time ``now``; returns how many
        (0 when the mail is shared: it answers later)."""
        hub = self.hub
        older_than = now - hub.mail.expiry_seconds
        if hub.shared_mail is not None:
            hub.shared_mail.purge(older_than).addErrback(lambda _: None)
            return 0
        return hub.store.purge_mail(older_than)
