"""ChatClient: a registered relay connection, its conversations, offers and mail."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from relaychat.client.conversation import Conversation, ConversationState
from relaychat.client.errors import (
    Disconnected,
    HandshakeFailed,
    KeyChanged,
    MailError,
    MessageTooLong,
    RelayError,
    UncertifiedKeys,
)
from relaychat.client.feed import UNOBSERVED_KEPT, Feed
from relaychat.client.mail import max_text_bytes as max_mail_text_bytes
from relaychat.client.mail import open_mail, seal
from relaychat.client.offer import IncomingOffer
from relaychat.client.protocol import HelloInfo, LookupResult, Registered, RelayClientProtocol, RelayEvents
from relaychat.client.seen import SeenMail
from relaychat.client.sessions import Sessions
from relaychat.client.values import MailEvent, MailProblem, PeerInfo, ReceivedMail, User, canonical_nick
from relaychat.crypto.identity import KeyFormatError, verify_static_sig
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers, PinError, PinStatus
from relaychat.crypto.safety import identity_fingerprint


MAX_UNANSWERED_OFFERS = 100


class ChatClient(RelayEvents):
    """A registered connection to a relay. Made by :func:`connect`.

    Attributes: ``nick`` (as shown by the relay), ``canonical_nick``,
    ``server_id``, ``identity``, ``known_peers``, ``max_frame``, ``max_mail``,
    ``fingerprint`` (ours), ``hello`` (the relay's HELLO reply).
    """

    def __init__(self, reactor: Any, identity: Identity, known_peers: KnownPeers,
                 seen_mail: Optional[SeenMail] = None, handshake_timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.identity = identity
        self.known_peers = known_peers
        self.seen_mail = seen_mail if seen_mail is not None else SeenMail(None)
        self.handshake_timeout = handshake_timeout
        self.fingerprint = identity_fingerprint(identity.identity_public)
        self.nick = ""
        self.canonical_nick = ""
        self.server_id = b""
        self.max_frame = 0
        self.max_mail = 0
        self.hello: Optional[HelloInfo] = None
        self.registration: Optional[Registered] = None
        self.disconnected: Optional[Disconnected] = None
        self._protocol: RelayClientProtocol = RelayClientProtocol(self, reactor)
        self.sessions = Sessions(self._protocol)
        self._offer_feed: Feed[IncomingOffer] = Feed()
        self._mail_feed: Feed[MailEvent] = Feed()
        self._raw_mail: deque[tuple[int, str, int, bytes]] = deque(maxlen=UNOBSERVED_KEPT)  # not ACKed: the relay keeps what ages out
        self._notices: Feed[str] = Feed()
        self._disconnects: Feed[str] = Feed()

    def __repr__(self) -> str:
        return f"<ChatClient {self.nick or '?'}>"

    @property
    def conversations(self) -> list[Conversation]:
        """Verified conversations that have not ended."""
        return [c for c in self.sessions.conversations() if c.state is ConversationState.OPEN]

    @property
    def offers(self) -> list[IncomingOffer]:
        """Offers waiting for our answer (at most MAX_UNANSWERED_OFFERS)."""
        return self.sessions.offers()

    @property
    def protocol(self) -> RelayClientProtocol:
        """The relay connection; :func:`connect` says HELLO and REGISTER over it."""
        return self._protocol

    # -- directory ------------------------------------------------------------

    def who(self) -> Deferred[Any]:
        """Fires with ``list[User]`` of nicknames online (at most the relay's ``max_who``)."""
        return self._protocol.who().addCallback(
            lambda result: [User(nick, key) for nick, key in result.users])

    def lookup(self, nick: str) -> Deferred[Any]:
        """Fires with a :class:`PeerInfo` whose static key is certified; fails with
        RelayError ``no-such-user`` or UncertifiedKeys."""
        return self._protocol.lookup(nick).addCallback(self._verified_lookup)

    def _verified_lookup(self, result: LookupResult) -> PeerInfo:
        nick = canonical_nick(result.nick)
        try:
            certified = verify_static_sig(result.identity_pub, result.static_pub, result.static_sig)
        except KeyFormatError:
            certified = False
        if not certified:
            raise UncertifiedKeys(
                f"The relay gave keys for {nick} that {nick}'s identity key does not certify; "
                "someone may be tampering."
            )
        return PeerInfo(nick, result.identity_pub, result.static_pub, result.online,
                        self.pin_status(nick, result.identity_pub))

    # -- conversations ----------------------------------------------------------

    def call(self, nick: str) -> Deferred[Any]:
        """Offer a conversation; fires with a verified :class:`Conversation`.

        Fails with RelayError (offline, no-such-user, ...), Declined,
        KeyChanged or HandshakeFailed, each with a sentence. Cancelling the
        Deferred withdraws the offer.
        """
        try:
            canonical_nick(nick)
        except ValueError as e:
            return fail(e)
        call = _OutgoingCall(self)
        self._protocol.offer(nick).addCallback(call.offered).addErrback(call.refused)
        return call.result

    def observe_offers(self, observer: Callable[[IncomingOffer], None]) -> None:
        self._offer_feed.add(observer)

    def pinned_key(self, nick: str) -> Optional[bytes]:
        """The key pinned for ``nick`` on this relay; None if none (or the pin is damaged)."""
        try:
            return self.known_peers.get(self.server_id, nick)
        except (PinError, ValueError):
            return None

    def accept_new_key(self, nick: str, identity_pub: bytes) -> None:
        """Replace the pin for ``nick`` after the user checked the new key
        (for example ``KeyChanged.new_key``, compared via the safety number)."""
        self.known_peers.replace(self.server_id, canonical_nick(nick), identity_pub)

    def pin_status(self, nick: str, identity_pub: bytes) -> PinStatus:
        """How ``identity_pub`` compares with our pin for ``nick`` (NEW, MATCH, CHANGED);
        HandshakeFailed if the pin file cannot be read."""
        try:
            return self.known_peers.check(self.server_id, nick, identity_pub)
        except PinError as e:
            raise HandshakeFailed(f"Cannot check {nick}'s key: {e}") from None

    # -- mail ---------------------------------------------------------------------

    def send_mail(self, nick: str, text: str) -> Deferred[Any]:
        """Seal ``text`` to ``nick``'s certified static key; fires with the relay's mail id.

        The recipient's keys come from LOOKUP, are verified (static_sig) and
        checked against the pin (first contact pins them); KeyChanged or
        UncertifiedKeys stop the mail before anything is sent.
        """
        limit = max_mail_text_bytes(self.max_mail)
        if len(text.encode("utf-8")) > limit:
            return fail(MessageTooLong(f"A mail is at most {limit} bytes of text."))

        def sealed(peer: PeerInfo) -> Deferred[Any]:
            if peer.pin is PinStatus.CHANGED:
                raise KeyChanged(peer.nick, self.pinned_key(peer.nick), peer.identity_pub)
            if peer.pin is PinStatus.NEW:
                self.known_peers.pin(self.server_id, peer.nick, peer.identity_pub)
            payload = seal(self.identity, self.canonical_nick, peer.nick, peer.static_pub, text,
                           int(self.reactor.seconds()), self.max_mail)
            return self._protocol.mail(peer.nick, payload)

        return self.lookup(nick).addCallback(sealed)

    def observe_mail(self, observer: Callable[[MailEvent], None]) -> None:
        """Deliver sealed mail: opened, verified, deduplicated by message id, and
        ACKed once handed to the observers (until then it stays on the relay)."""
        self._mail_feed.add(observer)
        raw, self._raw_mail = self._raw_mail, deque(maxlen=UNOBSERVED_KEPT)
        for mail in raw:
            self.relay_mail(*mail)

    def _open(self, mail_id: int, sender: str, time: int, payload: bytes) -> tuple[Optional[MailEvent], bool]:
        """(what to show, whether to ACK) for one MAIL event."""
        try:
            # The relay names the sender as shown; the seal binds the canonical form.
            opened = open_mail(self.identity, canonical_nick(sender), self.canonical_nick, payload)
            status = self.pin_status(canonical_nick(sender), opened.identity_pub)
        except (MailError, HandshakeFailed, ValueError) as e:
            error = e if isinstance(e, MailError) else MailError(str(e))
            return MailProblem(mail_id, sender, time, error), True
        if status is PinStatus.CHANGED:  # keep it on the relay until the user decides
            return MailProblem(mail_id, sender, time,
                               KeyChanged(sender, self.pinned_key(sender), opened.identity_pub)), False
        if opened.message_id in self.seen_mail:
            return None, True
        now = self.reactor.seconds()
        if self.seen_mail.too_old(opened.time, now):
            return MailProblem(mail_id, sender, time, MailError(
                f"A mail from {sender} was sealed too long ago to rule out a replay; it was dropped.")), True
        if status is PinStatus.NEW:
            self.known_peers.pin(self.server_id, sender, opened.identity_pub)
        self.seen_mail.add(opened.message_id, opened.time, now)
        return ReceivedMail(mail_id, sender, opened.time, opened.text, opened.message_id,
                            identity_fingerprint(opened.identity_pub)), True

    # -- other ----------------------------------------------------------------------

    def observe_notices(self, observer: Callable[[str], None]) -> None:
        self._notices.add(observer)

    def observe_disconnect(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` once when the relay connection ends."""
        if self.disconnected is not None and self._disconnects.observed:
            observer(str(self.disconnected))
            return
        self._disconnects.add(observer)

    def ping(self) -> Deferred[Any]:
        return self._protocol.ping()

    def quit(self) -> Deferred[Any]:
        """Close every conversation cleanly, say QUIT, fire when disconnected."""
        for conversation in self.sessions.conversations():
            conversation.close()
        return self._protocol.quit()

    # -- RelayEvents ----------------------------------------------------------------

    def relay_offered(self, sid: str, nick: str, identity_pub: bytes) -> None:
        if self.sessions.knows(sid):
            return  # a relay re-using a live session id: never let it replace that session
        offer = None
        if len(self.sessions.offers()) < MAX_UNANSWERED_OFFERS:
            try:
                offer = IncomingOffer(self, sid, canonical_nick(nick), identity_pub)
            except (ValueError, HandshakeFailed):
                pass
        if offer is None:  # malformed, or too many waiting for an answer
            self.sessions.decline(sid).addErrback(lambda _: None)
            return
        self.sessions.add_offer(offer)
        self._offer_feed.emit(offer)

    def relay_accepted(self, sid: str) -> None:
        conversation = self.sessions.conversation(sid)
        if conversation is not None and conversation.state is ConversationState.CALLING:
            conversation.session_open()

    def relay_closed(self, sid: str, reason: str) -> None:
        offer = self.sessions.take_offer(sid)
        if offer is not None:
            offer.withdraw(reason)
        conversation = self.sessions.conversation(sid)
        if conversation is not None:
            conversation.relay_closed(reason)

    def relay_frame(self, sid: str, payload: bytes) -> None:
        conversation = self.sessions.conversation(sid)
        if conversation is not None:
            conversation.frame_received(payload)

    def relay_frame_error(self, sid: str, error: RelayError) -> None:
        conversation = self.sessions.conversation(sid)
        if conversation is not None:
            conversation.frame_refused(error)

    def relay_mail(self, mail_id: int, sender: str, time: int, payload: bytes) -> None:
        if not self._mail_feed.observed:
            self._raw_mail.append((mail_id, sender, time, payload))
            return
        shown, ack = self._open(mail_id, sender, time, payload)
        if shown is not None:
            self._mail_feed.emit(shown)
        if ack:
            self._protocol.ack(mail_id).addErrback(lambda _: None)

    def relay_notice(self, text: str) -> None:
        self._notices.emit(text)

    def relay_disconnected(self, error: Disconnected) -> None:
        self.disconnected = error
        for offer in self.sessions.offers():
            offer.withdraw("gone")
        for conversation in self.sessions.conversations():
            conversation.connection_lost(error)
        self.sessions.clear()
        self._disconnects.emit(str(error))


class _OutgoingCall:
    """One :meth:`ChatClient.call` until the relay answers the OFFER: its result,
    and whether the caller cancelled before the session existed."""

    def __init__(self, client: ChatClient) -> None:
        self._client = client
        self._cancelled = False
        self._conversation: Optional[Conversation] = None
        self.result: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[Any]) -> None:
        self._cancelled = True
        if self._conversation is not None:
            self._conversation.when_verified().cancel()

    def offered(self, reply: tuple[str, str]) -> None:
        """The relay took the OFFER: the session exists; follow its handshake."""
        sid, shown = reply
        conversation = Conversation(self._client, sid, canonical_nick(shown), initiator=True)
        self._client.sessions.add(conversation)
        self._conversation = conversation
        if self._cancelled:
            conversation.when_verified().addErrback(lambda _: None)
            conversation.close()
            return
        conversation.when_verified().chainDeferred(self.result)

    def refused(self, failure: Failure) -> None:
        if not self.result.called:
            self.result.errback(failure)
