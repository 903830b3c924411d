"""The friendly client library: connect, register, call, chat, mail.

Built for programs (the terminal client, bots, tests) that want end-to-end
encrypted conversations over a relaychat relay without knowing the wire
protocol. Everything that waits returns a Twisted ``Deferred``; everything
that arrives unasked (offers, messages, mail, the end of a conversation) is
delivered to *observers*, plain callables registered with ``observe_*``.
Events that arrive before the first observer of their kind is registered
are kept and handed over on registration, so nothing is lost between
``connect()`` firing and the program wiring itself up.

Typical use::

    identity, peers, seen = open_profile()           # ~/.config/relaychat
    client = yield connect(reactor, "tcp:relay.example:7733", identity, "alice", peers,
                           seen_mail=seen)
    conversation = yield client.call("bob")         # handshake verified
    print(conversation.safety_number)
    conversation.observe_messages(print)
    conversation.send("hello")

Trust (protocol section 13) is enforced here, not left to the program: the
peer's identity key is pinned on first contact, and a different key for a
pinned nickname fails the conversation (or mail) with :class:`KeyChanged`
without pinning anything; :meth:`ChatClient.accept_new_key` is the one
explicit way to replace a pin.

Received text is returned as it came; programs must show it inert
(section 16, ``relaychat.chat.inert``). Nothing here logs keys or text.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.client.channel import (
    Channel,
    ChannelFailed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerClosed,
    SendFrame,
    SMPAborted,
    SMPRequested,
    SMPResult,
    UnknownMessage,
    max_text_bytes,
)
from relaychat.client.errors import (
    ConversationClosed,
    ConversationFailed,
    Declined,
    Disconnected,
    HandshakeFailed,
    KeyChanged,
    MailError,
    MessageRejected,
    MessageTooLong,
    RelayError,
    TooMuchWork,
    UncertifiedKeys,
)
from relaychat.client.mail import max_text_bytes as max_mail_text_bytes
from relaychat.client.mail import open_mail, seal
from relaychat.client.protocol import (
    HelloInfo,
    LookupResult,
    Registered,
    RelayClientProtocol,
    RelayEvents,
)
from relaychat.client import tls
from relaychat.client.seen import SeenMail
from relaychat.crypto.identity import (
    Identity,
    KeyFormatError,
    StrPath,
    default_config_dir,
    verify_static_sig,
)
from relaychat.crypto.pins import KnownPeers, PinConflict, PinError, PinStatus
from relaychat.crypto.safety import fingerprint
from relaychat.crypto.smp import SMPUsageError

__all__ = [
    "ChatClient",
    "Conversation",
    "ConversationClosed",
    "ConversationFailed",
    "Declined",
    "Disconnected",
    "Ended",
    "HandshakeFailed",
    "IncomingOffer",
    "KeyChanged",
    "MailError",
    "MailProblem",
    "MessageRejected",
    "MessageTooLong",
    "PeerInfo",
    "ReceivedMail",
    "RelayError",
    "SMPAborted",
    "SMPRequested",
    "SMPResult",
    "SMPUsageError",
    "SeenMail",
    "TooMuchWork",
    "UncertifiedKeys",
    "User",
    "connect",
    "endpoint_from_string",
    "open_profile",
]

log = Logger(namespace="relaychat.client")

_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,23}\Z")
T = TypeVar("T")

# What a relay can make us hold before the program answers: offers past this
# are declined at once; events nobody observes yet keep only the newest 1,000
# (unobserved mail is not ACKed, so the relay delivers it again next time).
MAX_UNANSWERED_OFFERS = 100
UNOBSERVED_KEPT = 1000


# -- values handed to programs ------------------------------------------------


@dataclass(frozen=True)
class User:
    """One line of ``WHO``: an online nickname and the key the relay claims for it."""

    nick: str
    identity_pub: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity_pub)


@dataclass(frozen=True)
class PeerInfo:
    """A ``LOOKUP`` answer whose ``static_sig`` was verified, with our pin status.

    ``pin`` is NEW (never seen: nothing pinned yet), MATCH or CHANGED; the
    keys are still the relay's claim until a conversation or a safety number
    confirms them.
    """

    nick: str
    identity_pub: bytes
    static_pub: bytes
    online: bool
    pin: PinStatus

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity_pub)


@dataclass(frozen=True)
class ReceivedMail:
    """A sealed mail, opened and verified (sender binding and pin); ACKed once observed.

    ``time`` is the sender's sealed time (Unix seconds), not the relay's.
    """

    mail_id: int
    sender: str
    time: int
    text: str
    message_id: bytes
    sender_fingerprint: str


@dataclass(frozen=True)
class MailProblem:
    """A mail that could not be shown; ``error`` says why (``KeyChanged``, ``MailError``).

    A mail from a changed key is left on the relay (it comes back at the next
    login, and can be read after the new key is accepted); a mail that does
    not open is deleted after being reported. ``time`` is the relay's.
    """

    mail_id: int
    sender: str
    time: int
    error: Exception

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class Ended:
    """How a conversation ended.

    ``clean`` is True only when the peer's encrypted CLOSE arrived (or we
    closed it ourselves): nothing was cut off. ``error`` is set when it
    ended because something was wrong (tampering, a changed key, ...).
    """

    clean: bool
    reason: str
    by_peer: bool
    error: Optional[ConversationFailed] = None


SMPEvent = Union[SMPRequested, SMPResult, SMPAborted]
MailEvent = Union[ReceivedMail, MailProblem]


class _Feed(Generic[T]):
    """Observers of one kind of event; events before the first observer wait for it.

    An observer that raises is logged and does not stop the others, nor the
    protocol: one buggy callback must not desynchronise a conversation.
    """

    def __init__(self) -> None:
        self._observers: list[Callable[[T], None]] = []
        self._backlog: deque[T] = deque(maxlen=UNOBSERVED_KEPT)  # a relay's flood ages out, oldest first

    def add(self, observer: Callable[[T], None]) -> None:
        self._observers.append(observer)
        backlog, self._backlog = self._backlog, deque(maxlen=UNOBSERVED_KEPT)
        for item in backlog:
            self._call(observer, item)

    def emit(self, item: T) -> None:
        if not self._observers:
            self._backlog.append(item)
        for observer in list(self._observers):
            self._call(observer, item)

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    @staticmethod
    def _call(observer: Callable[[T], None], item: T) -> None:
        try:
            observer(item)
        except Exception:
            log.failure("a relaychat observer raised an exception")


def canonical_nick(nick: str) -> str:
    """Section 4's canonical form; ValueError for a nickname the relay would refuse."""
    if not isinstance(nick, str) or not _NICK.match(nick):
        raise ValueError(f"{nick!r} is not a nickname (2 to 24 letters, digits, '_' or '-', starting with a letter).")
    return nick.lower()


# -- profile --------------------------------------------------------------------


def open_profile(
    config_dir: Optional[StrPath] = None, passphrase: Optional[bytes] = None
) -> tuple[Identity, KnownPeers, SeenMail]:
    """Load (or on first run create, mode 0600) the identity, known peers and seen-mail
    record in ``config_dir`` (default ``$XDG_CONFIG_HOME/relaychat``). Raises the
    identity module's errors (PassphraseRequired, WrongPassphrase, KeyStorageError)."""
    directory = default_config_dir() if config_dir is None else config_dir
    identity = Identity.load_or_create(directory, passphrase)
    return identity, KnownPeers.in_directory(directory), SeenMail.in_directory(directory)


# -- trust ------------------------------------------------------------------------


class _PinnedPeer:
    """The channel's PinSource for one nickname, backed by the known-peers file."""

    def __init__(self, client: ChatClient, nick: str) -> None:
        self._client = client
        self._nick = nick

    def check(self, identity_pub: bytes) -> PinStatus:
        return self._client._pin_status(self._nick, identity_pub)

    def pinned(self) -> Optional[bytes]:
        return self._client.pinned_key(self._nick)


# -- conversations ------------------------------------------------------------------


class Conversation:
    """An end-to-end encrypted conversation whose handshake has been verified.

    Attributes: ``nick`` (peer, canonical), ``sid``, ``initiator`` (we called),
    ``peer_identity`` (32 bytes), ``peer_fingerprint``, ``safety_number``
    (both screens show the same 12 groups), ``first_contact`` (the key was
    pinned just now), ``ended`` (an :class:`Ended` once over, else None).
    """

    def __init__(self, client: ChatClient, sid: str, nick: str, initiator: bool) -> None:
        self._client = client
        self.sid = sid
        self.nick = nick
        self.initiator = initiator
        self.peer_identity: Optional[bytes] = None
        self.peer_fingerprint: Optional[str] = None
        self.safety_number: Optional[str] = None
        self.first_contact = False
        self.ended: Optional[Ended] = None
        self._channel = Channel(
            initiator=initiator, sid=sid, local_nick=client.canonical_nick, peer_nick=nick,
            identity=client.identity, pins=_PinnedPeer(client, nick), max_frame=client.max_frame,
        )
        self._ready: Deferred = Deferred(self._cancel)
        self._relay_open = True  # the relay still knows this session (or offer)
        self._accepted = not initiator  # the initiator waits for ACCEPTED
        self._timer: Optional[IDelayedCall] = None
        self._messages: _Feed[str] = _Feed()
        self._ends: _Feed[Ended] = _Feed()
        self._smp: _Feed[SMPEvent] = _Feed()
        self._warnings: _Feed[str] = _Feed()

    def __repr__(self) -> str:
        return f"<Conversation {self.sid} with {self.nick}>"

    # -- public -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.ended is not None

    @property
    def max_text_bytes(self) -> int:
        """The longest message (UTF-8 bytes) :meth:`send` accepts."""
        return max_text_bytes(self._client.max_frame)

    def send(self, text: str) -> None:
        """Encrypt and send one message. Raises ConversationClosed or MessageTooLong."""
        self._send(self._channel.send_text(text))

    def close(self) -> Deferred:
        """End cleanly: our encrypted CLOSE tells the peer nothing was cut off.
        Fires when the relay has closed the session."""
        if self.ended is not None and self.ended.by_peer and self.ended.clean:
            return succeed(None)  # the peer said goodbye and closes the session itself (section 11)
        if self.ended is None:
            frame = self._channel.close()
            if frame is not None:
                self._send(frame)
            self._end(Ended(True, f"You ended the conversation with {self.nick}.", by_peer=False))
            if not self._ready.called:
                self._ready.errback(ConversationClosed(f"The conversation with {self.nick} was abandoned."))
        return self._close_relay()

    def observe_messages(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(text)`` for every message received, in order."""
        self._messages.add(observer)

    def observe_end(self, observer: Callable[[Ended], None]) -> None:
        """Call ``observer(ended)`` once when the conversation is over (at once if it is)."""
        if self.ended is not None and self._ends.observed:
            observer(self.ended)
            return
        self._ends.add(observer)

    observe_close = observe_end

    def observe_warnings(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(sentence)`` for problems that do not end the
        conversation (a message of an unknown type, which was ignored)."""
        self._warnings.add(observer)

    # -- Socialist Millionaire check (docs/protocol.rst section 14) --

    def smp_start(self, secret: str) -> None:
        """Ask the peer to check that we both know ``secret``, bound to this session.
        Raises SMPUsageError if a check is already under way (``smp_abort`` first)."""
        self._send(self._channel.smp_start(secret))

    def smp_respond(self, secret: str) -> None:
        """Answer the peer's check (after :class:`SMPRequested`) with our secret."""
        self._send(self._channel.smp_respond(secret))

    def smp_abort(self) -> None:
        """Stop a check under way (or refuse a request)."""
        self._send(self._channel.smp_abort())

    def observe_smp(self, observer: Callable[[SMPEvent], None]) -> None:
        """Call ``observer`` with SMPRequested / SMPResult / SMPAborted."""
        self._smp.add(observer)

    # -- driven by ChatClient -------------------------------------------------

    def _begin(self) -> None:
        """The relay session is open: start the handshake, and give it a deadline."""
        self._accepted = True
        timeout = self._client.handshake_timeout
        if timeout:
            self._timer = self._client.reactor.callLater(timeout, self._timed_out)
        for frame in self._channel.start():
            self._send(frame, quiet=True)

    def _timed_out(self) -> None:
        self._timer = None
        self._handle(self._channel.fail(HandshakeFailed(
            f"The handshake with {self.nick} did not complete within "
            f"{self._client.handshake_timeout:g} seconds."
        )))

    def _frame(self, payload: bytes) -> None:
        self._handle(self._channel.receive_frame(payload))

    def _relay_closed(self, reason: str) -> None:
        self._relay_open = False
        if not self._accepted:
            texts = {
                "declined": f"{self.nick} declined the conversation.",
                "timeout": f"{self.nick} did not answer in time.",
            }
            error = Declined(texts.get(reason, f"{self.nick} did not accept the conversation."))
            self._handle(self._channel.fail(error))
        else:
            self._handle(self._channel.relay_closed(reason))
        self._client._forget(self)

    def _frame_refused(self, error: RelayError) -> None:
        if error.code == "no-session":
            self._relay_open = False
        self._handle(self._channel.fail(MessageRejected(
            f"The relay did not deliver a message to {self.nick} ({error.code}); the conversation was stopped."
        )))

    def _lost(self, error: Disconnected) -> None:
        self._relay_open = False
        if not self._ready.called:
            self._ready.errback(error)
        self._handle(self._channel.fail(ConversationClosed(
            f"The conversation with {self.nick} ended: {error}"
        )))

    def _cancel(self, ready: Deferred) -> None:
        self._handle(self._channel.fail(ConversationClosed(
            f"The conversation with {self.nick} was cancelled."
        )))

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SendFrame):
                self._send(event.payload, quiet=True)
            elif isinstance(event, HandshakeComplete):
                self._verified(event)
            elif isinstance(event, MessageReceived):
                self._messages.emit(event.text)
            elif isinstance(event, PeerClosed):
                self._end(Ended(event.clean, event.reason, by_peer=True))
            elif isinstance(event, ChannelFailed):
                self._failed(event.error)
            elif isinstance(event, UnknownMessage):
                self._warnings.emit(event.reason)
            elif isinstance(event, (SMPRequested, SMPResult, SMPAborted)):
                self._smp.emit(event)

    def _verified(self, event: HandshakeComplete) -> None:
        if event.pin is PinStatus.NEW:
            try:
                self._client.known_peers.pin(self._client.server_id, self.nick, event.peer_identity)
            except PinConflict:  # someone pinned a different key meanwhile
                self._handle(self._channel.fail(
                    KeyChanged(self.nick, self._client.pinned_key(self.nick), event.peer_identity)))
                return
            except (PinError, OSError) as e:
                self._handle(self._channel.fail(HandshakeFailed(f"Cannot record {self.nick}'s key: {e}")))
                return
        self.peer_identity = event.peer_identity
        self.peer_fingerprint = event.peer_fingerprint
        self.safety_number = event.safety_number
        self.first_contact = event.pin is PinStatus.NEW
        self._cancel_timer()
        if not self._ready.called:
            self._ready.callback(self)

    def _failed(self, error: ConversationFailed) -> None:
        self._cancel_timer()
        if not self._ready.called:
            self._ready.errback(error)
        self._end(Ended(False, str(error), by_peer=False, error=error))
        self._close_relay()  # section 11: stop, CLOSE the session, report

    def _end(self, ended: Ended) -> None:
        if self.ended is not None:
            return
        self._cancel_timer()
        self.ended = ended
        self._ends.emit(ended)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _send(self, payload: bytes, quiet: bool = False) -> None:
        try:
            self._client._protocol.send_frame(self.sid, payload)
        except Disconnected as e:
            if not quiet:
                raise ConversationClosed(f"The conversation with {self.nick} is over: {e}") from None

    def _close_relay(self) -> Deferred:
        """Say ``CLOSE`` once (only the side that ends sends it, so the relay never
        sees two); fires when done, whatever the relay answers."""
        if not self._relay_open:
            return succeed(None)
        self._relay_open = False
        self._client._forget(self)
        closing = self._client._protocol.close(self.sid)
        return closing.addErrback(lambda _: None)


class IncomingOffer:
    """Someone wants to talk. ``identity_pub`` is the relay's claim; ``pin`` says
    how it compares with our pin (the handshake checks the real key)."""

    def __init__(self, client: ChatClient, sid: str, nick: str, identity_pub: bytes) -> None:
        self._client = client
        self.sid = sid
        self.nick = nick
        self.identity_pub = identity_pub
        self.fingerprint = fingerprint(identity_pub)
        self.pin = client._pin_status(nick, identity_pub)
        self.withdrawn = False
        self.answered = False
        self._withdrawn: _Feed[str] = _Feed()

    def __repr__(self) -> str:
        return f"<IncomingOffer {self.sid} from {self.nick}>"

    def accept(self) -> Deferred:
        """Accept; fires with a :class:`Conversation` once the handshake is verified."""
        if self.withdrawn or self.answered:
            return fail(ConversationClosed(f"The offer from {self.nick} is no longer open."))
        self.answered = True
        client = self._client
        client._offers.pop(self.sid, None)
        conversation = Conversation(client, self.sid, self.nick, initiator=False)
        client._sessions[self.sid] = conversation

        def refused(failure: Failure) -> None:
            conversation._relay_open = False
            client._forget(conversation)
            if not conversation._ready.called:
                conversation._ready.errback(failure)
            conversation._handle(conversation._channel.fail(ConversationClosed(
                f"The offer from {self.nick} could not be accepted.")))

        client._protocol.accept(self.sid).addCallbacks(lambda _: conversation._begin(), refused).addErrback(
            lambda failure: log.failure("accepting an offer failed", failure))
        return conversation._ready

    def decline(self) -> Deferred:
        if self.withdrawn or self.answered:
            return succeed(None)
        self.answered = True
        self._client._offers.pop(self.sid, None)
        return self._client._protocol.decline(self.sid).addCallback(lambda _: None)

    def observe_withdrawn(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` if the offer ends before we answer it."""
        self._withdrawn.add(observer)

    def _withdraw(self, reason: str) -> None:
        self.withdrawn = True
        texts = {"timeout": f"The offer from {self.nick} timed out.", "gone": f"{self.nick} disconnected."}
        self._withdrawn.emit(texts.get(reason, f"{self.nick} withdrew the offer."))


# -- the client -------------------------------------------------------------------


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
        self.fingerprint = fingerprint(identity.identity_public)
        self.nick = ""
        self.canonical_nick = ""
        self.server_id = b""
        self.max_frame = 0
        self.max_mail = 0
        self.hello: Optional[HelloInfo] = None
        self.registration: Optional[Registered] = None
        self.disconnected: Optional[Disconnected] = None
        self._protocol: RelayClientProtocol = RelayClientProtocol(self, reactor)
        self._sessions: dict[str, Conversation] = {}
        self._offers: dict[str, IncomingOffer] = {}
        self._offer_feed: _Feed[IncomingOffer] = _Feed()
        self._mail_feed: _Feed[MailEvent] = _Feed()
        self._raw_mail: deque[tuple[int, str, int, bytes]] = deque(maxlen=UNOBSERVED_KEPT)  # not ACKed: the relay keeps what ages out
        self._notices: _Feed[str] = _Feed()
        self._disconnects: _Feed[str] = _Feed()

    def __repr__(self) -> str:
        return f"<ChatClient {self.nick or '?'}>"

    @property
    def conversations(self) -> list[Conversation]:
        """Verified conversations that have not ended."""
        return [c for c in self._sessions.values() if c.safety_number is not None and c.ended is None]

    # -- directory ------------------------------------------------------------

    def who(self) -> Deferred:
        """Fires with ``list[User]`` of nicknames online (at most the relay's ``max_who``)."""
        return self._protocol.who().addCallback(
            lambda result: [User(nick, key) for nick, key in result.users])

    def lookup(self, nick: str) -> Deferred:
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
                        self._pin_status(nick, result.identity_pub))

    # -- conversations ----------------------------------------------------------

    def call(self, nick: str) -> Deferred:
        """Offer a conversation; fires with a verified :class:`Conversation`.

        Fails with RelayError (offline, no-such-user, ...), Declined,
        KeyChanged or HandshakeFailed, each with a sentence. Cancelling the
        Deferred withdraws the offer.
        """
        try:
            canonical_nick(nick)
        except ValueError as e:
            return fail(e)
        state: dict[str, Any] = {"cancelled": False, "conversation": None}

        def cancel(_: Deferred) -> None:
            state["cancelled"] = True
            if state["conversation"] is not None:
                state["conversation"]._ready.cancel()

        result: Deferred = Deferred(cancel)

        def offered(reply: tuple[str, str]) -> None:
            sid, shown = reply
            conversation = Conversation(self, sid, canonical_nick(shown), initiator=True)
            self._sessions[sid] = conversation
            state["conversation"] = conversation
            if state["cancelled"]:
                conversation._ready.addErrback(lambda _: None)
                conversation.close()
                return
            conversation._ready.chainDeferred(result)

        def refused(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        self._protocol.offer(nick).addCallback(offered).addErrback(refused)
        return result

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

    def _pin_status(self, nick: str, identity_pub: bytes) -> PinStatus:
        try:
            return self.known_peers.check(self.server_id, nick, identity_pub)
        except PinError as e:
            raise HandshakeFailed(f"Cannot check {nick}'s key: {e}") from None

    def _forget(self, conversation: Conversation) -> None:
        if self._sessions.get(conversation.sid) is conversation and not conversation._relay_open:
            del self._sessions[conversation.sid]

    # -- mail ---------------------------------------------------------------------

    def send_mail(self, nick: str, text: str) -> Deferred:
        """Seal ``text`` to ``nick``'s certified static key; fires with the relay's mail id.

        The recipient's keys come from LOOKUP, are verified (static_sig) and
        checked against the pin (first contact pins them); KeyChanged or
        UncertifiedKeys stop the mail before anything is sent.
        """
        limit = max_mail_text_bytes(self.max_mail)
        if len(text.encode("utf-8")) > limit:
            return fail(MessageTooLong(f"A mail is at most {limit} bytes of text."))

        def sealed(peer: PeerInfo) -> Deferred:
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
            opened = open_mail(self.identity, sender, self.canonical_nick, payload)
            status = self._pin_status(sender, opened.identity_pub)
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
                            fingerprint(opened.identity_pub)), True

    # -- other ----------------------------------------------------------------------

    def observe_notices(self, observer: Callable[[str], None]) -> None:
        self._notices.add(observer)

    def observe_disconnect(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` once when the relay connection ends."""
        if self.disconnected is not None and self._disconnects.observed:
            observer(str(self.disconnected))
            return
        self._disconnects.add(observer)

    def ping(self) -> Deferred:
        return self._protocol.ping()

    def quit(self) -> Deferred:
        """Close every conversation cleanly, say QUIT, fire when disconnected."""
        for conversation in list(self._sessions.values()):
            conversation.close()
        return self._protocol.quit()

    # -- RelayEvents ----------------------------------------------------------------

    def relay_offered(self, sid: str, nick: str, identity_pub: bytes) -> None:
        if sid in self._sessions or sid in self._offers:
            return  # a relay re-using a live session id: never let it replace that session
        offer = None
        if len(self._offers) < MAX_UNANSWERED_OFFERS:
            try:
                offer = IncomingOffer(self, sid, canonical_nick(nick), identity_pub)
            except (ValueError, HandshakeFailed):
                pass
        if offer is None:  # malformed, or too many waiting for an answer
            self._protocol.decline(sid).addErrback(lambda _: None)
            return
        self._offers[sid] = offer
        self._offer_feed.emit(offer)

    def relay_accepted(self, sid: str) -> None:
        conversation = self._sessions.get(sid)
        if conversation is not None and conversation.initiator and not conversation._accepted:
            conversation._begin()

    def relay_closed(self, sid: str, reason: str) -> None:
        offer = self._offers.pop(sid, None)
        if offer is not None:
            offer._withdraw(reason)
        conversation = self._sessions.get(sid)
        if conversation is not None:
            conversation._relay_closed(reason)

    def relay_frame(self, sid: str, payload: bytes) -> None:
        conversation = self._sessions.get(sid)
        if conversation is not None:
            conversation._frame(payload)

    def relay_frame_error(self, sid: str, error: RelayError) -> None:
        conversation = self._sessions.get(sid)
        if conversation is not None:
            conversation._frame_refused(error)

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
        for offer in list(self._offers.values()):
            offer._withdraw("gone")
        self._offers.clear()
        for conversation in list(self._sessions.values()):
            conversation._lost(error)
        self._sessions.clear()
        self._disconnects.emit(str(error))


def endpoint_from_string(reactor: Any, spec: str) -> IStreamClientEndpoint:
    """A relay spec (``tcp:HOST:PORT``, ``tls:HOST:PORT[:trust=...|:fingerprint=...]``)
    or any Twisted client endpoint string; see :mod:`relaychat.client.tls`."""
    return tls.client_endpoint(reactor, spec)


def _endpoint(reactor: Any, endpoint: Union[str, IStreamClientEndpoint]) -> IStreamClientEndpoint:
    return endpoint_from_string(reactor, endpoint) if isinstance(endpoint, str) else endpoint


def connect(
    reactor: Any,
    endpoint: Union[str, IStreamClientEndpoint],
    identity: Identity,
    nick: str,
    known_peers: KnownPeers,
    *,
    seen_mail: Optional[SeenMail] = None,
    timeout: float = 30.0,
    handshake_timeout: float = 30.0,
) -> Deferred:
    """Connect to a relay, say HELLO, register ``nick``; fires with a :class:`ChatClient`.

    ``endpoint`` is a Twisted client endpoint string (``tcp:host=relay:port=7733``)
    or an endpoint object. Fails with RelayError (``taken``, ``bad-nick``,
    ``version``, ...), Disconnected, or a timeout after ``timeout`` seconds.
    """
    try:
        canonical_nick(nick)
        resolved = _endpoint(reactor, endpoint)
    except ValueError as e:
        return fail(e)
    client = ChatClient(reactor, identity, known_peers, seen_mail, handshake_timeout)
    protocol = client._protocol

    def greeted(info: HelloInfo) -> Deferred:
        client.hello = info
        client.server_id = info.server_id
        client.max_frame = info.max_frame
        client.max_mail = info.max_mail
        return protocol.register(nick, identity)

    def registered(registration: Registered) -> ChatClient:
        client.registration = registration
        client.nick = registration.nick
        client.canonical_nick = registration.canonical
        return client

    def failed(failure: Failure) -> Failure:
        if protocol.transport is not None and protocol.connected:
            protocol.transport.loseConnection()
        if failure.check(CancelledError):
            return Failure(Disconnected("timeout", f"the relay did not answer within {timeout:g} seconds"))
        return failure

    connecting = connectProtocol(resolved, protocol)
    connecting.addCallback(lambda _: protocol.hello())
    connecting.addCallback(greeted)
    connecting.addCallback(registered)
    if timeout:
        connecting.addTimeout(timeout, reactor)
    connecting.addErrback(failed)
    return connecting
