"""ChatClient: a registered relay connection, its conversations, offers and mail."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.python.failure import Failure

from relaychat.client.contacts import How, Verification
from relaychat.client.conversation import Conversation, ConversationState
from relaychat.client.errors import (
    Disconnected,
    HandshakeFailed,
    NotPinned,
    RelayError,
    UncertifiedKeys,
)
from relaychat.client.feed import UNOBSERVED_KEPT, Feed, call_observer
from relaychat.client.mailbox import Mailbox
from relaychat.client.offer import IncomingOffer
from relaychat.client.protocol import HelloInfo, LookupResult, Registered, RelayClientProtocol, RelayEvents
from relaychat.client.seen import SeenMail
from relaychat.client.sessions import Sessions
from relaychat.client.trust import ProfileFiles
from relaychat.client.values import ContactInfo, MailEvent, PeerInfo, User, canonical_nick
from relaychat.crypto.identity import KeyFormatError, verify_static_sig
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers, PinError, PinStatus
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.nicknames import skeleton  # section 4: the one definition of look-alikes


MAX_UNANSWERED_OFFERS = 100


class ChatClient(RelayEvents):
    """A registered connection to a relay. Made by :func:`connect`.

    Attributes: ``nick`` (as shown by the relay), ``canonical_nick``,
    ``server_id``, ``identity``, ``known_peers``, ``max_frame``, ``max_mail``,
    ``fingerprint`` (ours), ``hello`` (the relay's HELLO reply),
    ``relay_address`` (how the relay is remembered in ``known_relays``) and
    ``relay_first_contact`` (its id was remembered just now), ``files``
    (the profile's :class:`~relaychat.client.trust.ProfileFiles`).
    """

    def __init__(self, reactor: Any, identity: Identity, known_peers: KnownPeers,
                 seen_mail: Optional[SeenMail] = None, handshake_timeout: float = 30.0,
                 files: Optional[ProfileFiles] = None) -> None:
        self.reactor = reactor
        self.identity = identity
        self.files = files if files is not None else ProfileFiles.beside(known_peers, seen_mail)
        self.known_peers = self.files.known_peers
        self.seen_mail = self.files.seen_mail
        self.handshake_timeout = handshake_timeout
        self.relay_address = ""
        self.relay_first_contact = False
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
        self.mailbox = Mailbox(self, self.files)
        self._offer_feed: Feed[IncomingOffer] = Feed()
        self._mail_feed: Feed[MailEvent] = Feed()
        self._raw_mail: deque[tuple[int, str, int, bytes]] = deque(maxlen=UNOBSERVED_KEPT)  # not ACKed: the relay keeps what ages out
        self._notices: Feed[str] = Feed()
        self._disconnects: Feed[str] = Feed()
        self._verified: Feed[Conversation] = Feed()

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
        try:
            asked = canonical_nick(nick)
        except ValueError as e:
            return fail(e)
        return self._protocol.lookup(nick).addCallback(self._verified_lookup, asked)

    def _verified_lookup(self, result: LookupResult, asked: str) -> PeerInfo:
        nick = canonical_nick(result.nick)
        if nick != asked:  # section 13: a relay must not answer for someone else
            raise UncertifiedKeys(f"Asked for {asked}'s keys, the relay answered with {nick}'s; "
                                  "someone may be tampering.")
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

    def call(self, nick: str, ringing: Optional[Callable[[], None]] = None) -> Deferred[Any]:
        """Offer a conversation; fires with a verified :class:`Conversation`.

        ``ringing()`` is called once the relay has taken the offer (the peer
        is being asked), so a program says "Calling bob" only when it is
        true. Fails with RelayError (offline, no-such-user, ...), Declined,
        KeyChanged or HandshakeFailed, each with a sentence. Cancelling the
        Deferred withdraws the offer.
        """
        try:
            canonical_nick(nick)
        except ValueError as e:
            return fail(e)
        call = _OutgoingCall(self, canonical_nick(nick), ringing)
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
        (for example ``KeyChanged.new_key``, compared via the safety number).
        What was recorded about the old key, verification included, goes."""
        nick = canonical_nick(nick)
        self.known_peers.replace(self.server_id, nick, identity_pub)
        self.files.contacts.forget_other_keys(self.server_id, nick, identity_pub)

    # -- contacts: verification that lasts ---------------------------------------

    def contacts(self) -> list[ContactInfo]:
        """Every nickname pinned on this relay, by nickname, with what we know of its key."""
        records = {(c.nick, c.identity_pub): c for c in self.files.contacts.on_relay(self.server_id)}
        shown = []
        for nick, key in sorted(self.known_peers.pins_on(self.server_id).items()):
            record = records.get((nick, key)) if key is not None else None
            shown.append(ContactInfo(nick, key, record.first_seen if record else None,
                                     record.last_seen if record else None, record.verified if record else None))
        return shown

    def verification(self, nick: str, identity_pub: bytes) -> Optional[Verification]:
        """How the user verified exactly this key for ``nick``, or None."""
        record = self.files.contacts.get(self.server_id, canonical_nick(nick), identity_pub)
        return record.verified if record is not None else None

    def mark_verified(self, nick: str, how: How = How.SAFETY_NUMBER, key: Optional[bytes] = None) -> ContactInfo:
        """Record that the user verified ``nick``'s pinned key (by default: compared
        the safety number). ``key``, if given, must be that pinned key. Raises
        NotPinned if there is no such key to verify."""
        pinned = self._pinned_or_raise(nick)
        if key is not None and self.pin_status(nick, key) is not PinStatus.MATCH:
            raise NotPinned(f"That key is not the one pinned for {nick}; nothing was recorded.")
        record = self.files.contacts.verify(self.server_id, canonical_nick(nick), pinned, how, self.reactor.seconds())
        return ContactInfo(record.nick, pinned, record.first_seen, record.last_seen, record.verified)

    def unmark_verified(self, nick: str) -> None:
        key = self._pinned_or_raise(nick)
        self.files.contacts.unverify(self.server_id, canonical_nick(nick), key)

    def _pinned_or_raise(self, nick: str) -> bytes:
        key = self.pinned_key(nick)
        if key is None:
            raise NotPinned(f"You have no key for {nick} yet (or its pin is damaged); talk to them first.")
        return key


    def saw(self, nick: str, key: bytes) -> Optional[Verification]:
        """A verified conversation or mail with ``key`` now; returns its verification record."""
        try:
            record = self.files.contacts.seen(self.server_id, canonical_nick(nick), key, self.reactor.seconds())
        except (OSError, PinError):
            return None
        return record.verified

    def lookalike_of(self, nick: str) -> Optional[str]:
        """A pinned contact whose nickname ``nick`` imitates (same section 4
        skeleton, another name), or None. An honest relay refuses such
        names; a hostile one could use one for a "first contact" that no pin
        guards, so programs must warn when this is not None."""
        try:
            canonical = canonical_nick(nick)
            pinned = self.known_peers.pins_on(self.server_id)
        except (ValueError, PinError):
            return None
        folded = skeleton(canonical)
        for other in sorted(pinned):
            if other != canonical and skeleton(other) == folded:
                return other
        return None

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
        UncertifiedKeys stop the mail before anything is sent. Its read
        receipt, when it comes, is a :class:`~relaychat.client.values.MailRead`.
        """
        return self.mailbox.send(nick, text)

    def observe_mail(self, observer: Callable[[MailEvent], None]) -> None:
        """Deliver sealed mail: opened, verified, deduplicated by message id, and
        ACKed once handed to the observers (until then it stays on the relay)."""
        self._mail_feed.add(observer)
        raw, self._raw_mail = self._raw_mail, deque(maxlen=UNOBSERVED_KEPT)
        for mail in raw:
            self.relay_mail(*mail)

    # -- other ----------------------------------------------------------------------

    def observe_notices(self, observer: Callable[[str], None]) -> None:
        self._notices.add(observer)

    def observe_conversations(self, observer: Callable[[Conversation], None]) -> None:
        """Call ``observer(conversation)`` for each conversation, called or
        accepted, once its handshake is verified (before its Deferred fires)."""
        self._verified.add(observer)

    def conversation_verified(self, conversation: Conversation) -> None:
        """Driven by a Conversation whose handshake was just verified. Not kept
        for later observers: nobody needs yesterday's conversations (and their keys) held."""
        if self._verified.observed:
            self._verified.emit(conversation)

    def observe_disconnect(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` once when the relay connection ends."""
        if self.disconnected is not None and self._disconnects.observed:
            observer(str(self.disconnected))
            return
        self._disconnects.add(observer)

    def ping(self) -> Deferred[Any]:
        return self._protocol.ping()

    def quit(self) -> Deferred[Any]:
        """Close every conversation cleanly (each waits, briefly, for the peer's
        last receipts), say QUIT, fire when disconnected."""
        closing = [conversation.close() for conversation in self.sessions.conversations()]
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: self._protocol.quit())

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

    def relay_frame_unreadable(self, sid: str) -> None:
        conversation = self.sessions.conversation(sid)
        if conversation is not None:
            conversation.frame_unreadable()

    def relay_mail(self, mail_id: int, sender: str, time: int, payload: bytes) -> None:
        if not self._mail_feed.observed:
            self._raw_mail.append((mail_id, sender, time, payload))
            return
        shown, ack = self.mailbox.open(mail_id, sender, time, payload)
        if shown is not None:
            self._mail_feed.emit(shown)
        if ack:
            self._protocol.ack(mail_id).addErrback(lambda _: None)

    def relay_notice(self, text: str) -> None:
        self._notices.emit(text)

    def relay_disconnected(self, error: Disconnected) -> None:
        self.disconnected = error
        for offer in self.sessions.offers():
            offer.withdraw("lost")
        for conversation in self.sessions.conversations():
            conversation.connection_lost(error)
        self.sessions.clear()
        self._disconnects.emit(str(error))


class _OutgoingCall:
    """One :meth:`ChatClient.call` until the relay answers the OFFER: its result,
    and whether the caller cancelled before the session existed."""

    def __init__(self, client: ChatClient, asked: str, ringing: Optional[Callable[[], None]] = None) -> None:
        self._client = client
        self._asked = asked
        self._ringing = ringing
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
        if canonical_nick(shown) != self._asked:  # section 13: not the one we called
            self._client.sessions.close(sid).addErrback(lambda _: None)
            self.refused(Failure(HandshakeFailed(
                f"Calling {self._asked}, the relay opened a session with {canonical_nick(shown)}; "
                "someone may be tampering. The session was closed.")))
            return
        conversation = Conversation(self._client, sid, self._asked, initiator=True)
        self._client.sessions.add(conversation)
        self._conversation = conversation
        if self._cancelled:
            conversation.when_verified().addErrback(lambda _: None)
            conversation.close()
            return
        ringing = self._ringing
        if ringing is not None:
            call_observer(lambda _: ringing(), None)  # a program's bug must not stop the call
        conversation.when_verified().chainDeferred(self.result)

    def refused(self, failure: Failure) -> None:
        if not self.result.called:
            self.result.errback(failure)
