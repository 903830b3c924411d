"""Sealed mail for one ChatClient: sending, opening, and read receipts (protocol section 12).

Opening a mail checks, in this order: the seal and the sender's binding
(``mail.open_mail``), the binding's key against the pin for the nickname
the relay named (a CHANGED pin keeps the mail on the relay), the seen-mail
record (claimed atomically, so neither a replay nor a second client on the
profile shows it twice), and only then pins a first contact and shows it.

Read receipts: once a mail is shown, the receipt we owe its sender goes to
the outbox (a file) and out as a sealed mail; it leaves the outbox only
when the relay has stored it, so one that fails now goes at the next
login. A receipt that arrives is accepted only from the recipient of one
of our own mails on this relay (``SentMail.take``) and becomes
:class:`~relaychat.client.values.MailRead`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Generator, Optional

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger

from relaychat.client.errors import HandshakeFailed, KeyChanged, MailError, MessageTooLong
from relaychat.client.mail import MESSAGE_ID_SIZE, OpenedMail, open_mail, seal, seal_receipt
from relaychat.client.mail import max_text_bytes as max_mail_text_bytes
from relaychat.client.receipts import first_words
from relaychat.client.seen import Claim
from relaychat.client.trust import ProfileFiles
from relaychat.client.values import MailEvent, MailProblem, MailRead, PeerInfo, ReceivedMail, canonical_nick
from relaychat.crypto.pins import PinsFull, PinStatus
from relaychat.crypto.safety import identity_fingerprint

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient

log = Logger(namespace="relaychat.client")

_REFUSED = {
    Claim.TOO_OLD: "was sealed too long ago to rule out a replay",
    Claim.FUTURE: "claims to be sealed more than a day in the future",
}


class Mailbox:
    """The mail side of one ChatClient."""

    def __init__(self, client: ChatClient, files: ProfileFiles) -> None:
        self._client = client
        self._files = files
        self._flushing = False

    # -- sending

    def send(self, nick: str, text: str) -> Deferred[Any]:
        """Seal ``text`` to ``nick`` (LOOKUP, static_sig and pin checked); fires with the mail id."""
        client = self._client
        limit = max_mail_text_bytes(client.max_mail)
        if len(text.encode("utf-8")) > limit:
            return fail(MessageTooLong(f"A mail is at most {limit} bytes of text."))
        message_id = os.urandom(MESSAGE_ID_SIZE)

        def sealed(peer: PeerInfo) -> Deferred[Any]:
            self._trusted(peer)
            payload = seal(client.identity, client.canonical_nick, peer.nick, peer.static_pub, text,
                           int(client.reactor.seconds()), client.max_mail, message_id)
            return client.protocol.mail(peer.nick, payload).addCallback(stored, peer.nick)

        def stored(mail_id: int, nick: str) -> int:
            try:
                self._files.sent_mail.add(message_id, client.server_id, nick, first_words(text),
                                          client.reactor.seconds())
            except OSError:
                log.failure("could not record a sent mail; its read receipt will not be shown")
            return mail_id

        return client.lookup(nick).addCallback(sealed)

    def _trusted(self, peer: PeerInfo) -> None:
        """Stop at a changed key; pin a first contact (section 13: before sealing)."""
        client = self._client
        if peer.pin is PinStatus.CHANGED:
            raise KeyChanged(peer.nick, client.pinned_key(peer.nick), peer.identity_pub)
        if peer.pin is PinStatus.NEW:
            self._files.known_peers.pin(client.server_id, peer.nick, peer.identity_pub)

    # -- receiving

    def open(self, mail_id: int, sender: str, time: int, payload: bytes) -> tuple[Optional[MailEvent], bool]:
        """(what to show, whether to ACK) for one MAIL event."""
        client = self._client
        try:
            # The relay names the sender as shown; the seal binds the canonical form.
            opened = open_mail(client.identity, canonical_nick(sender), client.canonical_nick, payload)
            status = client.pin_status(canonical_nick(sender), opened.identity_pub)
        except (MailError, HandshakeFailed, ValueError) as e:
            error = e if isinstance(e, MailError) else MailError(str(e))
            return MailProblem(mail_id, sender, time, error), True
        if status is PinStatus.CHANGED:  # keep it on the relay until the user decides
            return MailProblem(mail_id, sender, time,
                               KeyChanged(sender, client.pinned_key(sender), opened.identity_pub)), False
        if opened.receipt_for is not None:
            return self._receipt(sender, opened, status), True
        now = client.reactor.seconds()
        lookalike = client.lookalike_of(sender) if status is PinStatus.NEW else None
        if status is PinStatus.NEW:
            try:
                self._files.known_peers.pin(client.server_id, sender, opened.identity_pub)
            except PinsFull as e:  # kept on the relay: readable once there is room for the pin
                return MailProblem(mail_id, sender, time, MailError(f"A mail from {sender} is not shown: {e}")), False
        claim = self._files.seen_mail.claim(opened.message_id, opened.time, now)
        if claim is Claim.DUPLICATE:
            return None, True
        if claim is not Claim.NEW:
            return MailProblem(mail_id, sender, time, MailError(
                f"A mail from {sender} {_REFUSED[claim]}; it was dropped.")), True
        client.saw(sender, opened.identity_pub)
        self._owe_receipt(sender, opened.message_id)
        return ReceivedMail(mail_id, sender, opened.time, opened.text, opened.message_id,
                            identity_fingerprint(opened.identity_pub), lookalike), True

    def _receipt(self, sender: str, opened: OpenedMail, status: PinStatus) -> Optional[MailRead]:
        """A read receipt: shown only if it names our mail to exactly this sender."""
        client = self._client
        now = client.reactor.seconds()
        if status is PinStatus.NEW or self._files.seen_mail.claim(opened.message_id, opened.time, now) is not Claim.NEW:
            return None  # we never mailed an unpinned sender; or a replay
        assert opened.receipt_for is not None
        sent = self._files.sent_mail.take(opened.receipt_for, client.server_id, sender, now)
        if sent is None:
            return None
        return MailRead(sender, sent.first_words, sent.time, opened.time)

    # -- receipts we owe

    def _owe_receipt(self, sender: str, message_id: bytes) -> None:
        client = self._client
        try:
            self._files.receipts_owed.add(client.server_id, sender, message_id, client.reactor.seconds())
        except OSError:
            log.failure("could not record a read receipt to send")
            return
        self.send_receipts()

    def send_receipts(self) -> Deferred[Any]:
        """Send every receipt owed on this relay; each leaves the outbox once stored.
        Fires when done (failures stay owed, for the next login)."""
        if self._flushing:
            return succeed(None)
        self._flushing = True
        return self._send_owed()

    @inlineCallbacks
    def _send_owed(self) -> Generator[Deferred[Any], Any, None]:
        """One at a time, in a loop (not a chain of callbacks: a long outbox that
        fails at once must not recurse)."""
        client, outbox = self._client, self._files.receipts_owed
        tried: set[tuple[str, bytes]] = set()
        try:
            while client.disconnected is None:
                pending = [o for o in outbox.pending(client.server_id) if (o.nick, o.message_id) not in tried]
                if not pending:
                    return
                one = pending[0]
                tried.add((one.nick, one.message_id))
                try:
                    peer = yield client.lookup(one.nick)
                    self._trusted(peer)
                    payload = seal_receipt(client.identity, client.canonical_nick, peer.nick, peer.static_pub,
                                           one.message_id, int(client.reactor.seconds()))
                    yield client.protocol.mail(peer.nick, payload)
                    outbox.done(one, client.reactor.seconds())
                except Exception:  # refused, disconnected, a changed key, a damaged line: still owed
                    continue
        finally:
            self._flushing = False
