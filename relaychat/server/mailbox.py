"""MAIL and ACK (docs/protocol.rst section 9): sealed mail stored for a
nickname, online or not, within the recipient's and the sender's quotas.

A mixin of :class:`~relaychat.server.hub.Hub`, like the session commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from relaychat.server.connection import Connection
from relaychat.server.limits import MailPolicy
from relaychat.server.registry import Registry
from relaychat.server.store import Store
from relaychat.wire import messages as m
from relaychat.wire.errors import Code, ProtocolError


class MailCommands:
    mail: MailPolicy
    online: dict[str, Connection]
    registry: Registry
    store: Store
    wall: Callable[[], float]

    if TYPE_CHECKING:  # provided by the Hub
        from relaychat.server.hub import Stats

        stats: Stats

        def _send(self, client: Connection, message: m.Message) -> None: ...

    def _mail(self, client: Connection, mail: m.Mail, now: float) -> None:
        binding = self.registry.find(mail.nick)
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        policy = self.mail
        body = mail.payload
        if len(body) > policy.max_mail:  # the limit counts decoded bytes (max_line bounds the decoding)
            raise ProtocolError(Code.TOO_BIG, f"a mail payload is at most {policy.max_mail} bytes once decoded")
        sender = client.nick
        assert sender is not None
        count, size = self.store.mail_usage(binding.canonical)
        if count >= policy.mail_per_recipient or size + len(body) > policy.mail_bytes_per_recipient:
            raise ProtocolError(Code.QUOTA, f"{binding.display}'s mailbox is full")
        if self.store.mail_count_from(binding.canonical, sender) >= policy.mail_per_sender:
            raise ProtocolError(Code.QUOTA, f"you have {policy.mail_per_sender} messages waiting there already")
        created = self.wall()
        mail_id = self.store.add_mail(binding.canonical, sender, created, body)
        self.stats.mail_stored += 1
        self._send(client, m.MailOk(mail_id))
        recipient = self.online.get(binding.canonical)
        if recipient is not None:
            assert client.display is not None
            self._send(recipient, m.StoredMail(mail_id, client.display, int(created), body))

    def _ack(self, client: Connection, ack: m.Ack, now: float) -> None:
        assert client.nick is not None
        if not self.store.delete_mail(ack.mail_id, client.nick):
            raise ProtocolError(Code.NO_SUCH_MAIL, f"{ack.mail_id} no such mail for you")
        self._send(client, m.AckOk(ack.mail_id))
