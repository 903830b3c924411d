"""One end-to-end conversation as a pure state machine (protocol sections 10, 11, 14).

No sockets, no reactor, no clock: a :class:`Channel` is fed the decoded
payloads of ``FRAME`` lines and answers with a list of events, among them
:class:`SendFrame` for every payload to put in a ``FRAME`` line, *in the
order given* (transport nonces are implicit, so sending them out of order
would break the conversation). The Twisted side
(:class:`~relaychat.client.conversation.Conversation`) moves the bytes;
tests drive two channels against each other, or against a hostile relay,
directly. The message format it speaks (protocol name, prologue, message
types, text splitting) is :mod:`relaychat.client.channel_format`, its
events :mod:`relaychat.client.channel_events`; both are re-exported here.

Life of a channel::

    HANDSHAKE --(binding + pin verified)--> OPEN --peer CLOSE------------------> ENDED
                                              \--close()--> CLOSING --receipts--/
        \\______________ any failure ______________/--> FAILED

* Nothing but handshake messages is sent or accepted before both checks
  of section 10 pass (the peer's identity key certified the Noise static
  key of *this* handshake, and it is the key pinned for its nickname).
* Any authentication failure, malformed message, or pin mismatch makes the
  channel FAILED for good: it answers :class:`ChannelFailed` once, with a
  sentence saying why, ignores everything after, and refuses to send.
  Decrypted data is only ever reported after it authenticated.
* Each direction counts its transport messages and applies Noise
  ``Rekey()`` after message 1000, 2000, ... (section 11).
* A text longer than one frame goes as TEXT_PART pieces and a final TEXT,
  joined before it is shown (section 11).
* Every TEXT received is answered with a RECEIPT (a long text: once, for
  its final TEXT, so it confirms the whole); our own TEXTs stay in
  :attr:`Channel.unconfirmed` (by their first words) until the peer's
  RECEIPT names them, so an ending that cut messages off can say which.
  After :meth:`Channel.close` the channel is CLOSING until the receipts for
  everything sent have come back (the peer sends them before it reads our
  CLOSE); the adapter bounds that wait with a timer and then calls
  :meth:`Channel.stop_waiting`.

Keys, plaintexts and handshake secrets never appear in an event's repr or
in an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import Optional, Protocol

from relaychat.client import receipts
from relaychat.client.channel_format import (
    DEFAULT_MAX_FRAME,
    MAX_MESSAGE_BYTES,
    PROLOGUE_CONTEXT,
    PROTOCOL_NAME,
    REKEY_INTERVAL,
    TAG_SIZE,
    MessageType,
    closed_reason,
    max_text_bytes,
    prologue,
    split_text,
)
from relaychat.client.channel_events import (
    ChannelFailed,
    Delivered,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerClosed,
    SMPAborted,
    SMPRequested,
    SMPResult,
    SendFrame,
    UnknownMessage,
)
from relaychat.client.errors import (
    ConversationClosed,
    ConversationFailed,
    HandshakeFailed,
    KeyChanged,
    MessageRejected,
    MessageTooLong,
)
from relaychat.crypto.identity import BindingError, verify_binding
from relaychat.crypto.keypair import Identity
from relaychat.crypto.noise import CipherState, DecryptError, HandshakeState, NoiseError
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import identity_fingerprint, safety_number
from relaychat.crypto.smp import SMPError, SMPState, SMPUnexpectedMessage, SocialistMillionaire, smp_secret

__all__ = [
    "Channel",
    "ChannelFailed",
    "ChannelState",
    "DEFAULT_MAX_FRAME",
    "Delivered",
    "Event",
    "FixedPin",
    "HandshakeComplete",
    "MAX_MESSAGE_BYTES",
    "MessageReceived",
    "MessageType",
    "PROLOGUE_CONTEXT",
    "PROTOCOL_NAME",
    "PeerClosed",
    "PinSource",
    "REKEY_INTERVAL",
    "SMPAborted",
    "SMPRequested",
    "SMPResult",
    "SendFrame",
    "UnknownMessage",
    "max_text_bytes",
    "closed_reason",
    "prologue",
    "split_text",
]


class ChannelState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"  # we sent CLOSE; only the peer's receipts are still read
    ENDED = "ended"  # a CLOSE was sent or received: nothing more either way
    FAILED = "failed"


# -- trust ------------------------------------------------------------------------


class PinSource(Protocol):
    """What the channel asks about the peer's identity key (KnownPeers-backed: relaychat.client.trust)."""

    def check(self, identity_pub: bytes) -> PinStatus:
        """NEW (nothing pinned), MATCH, or CHANGED (a different or disputed pin)."""

    def pinned(self) -> Optional[bytes]:
        """The pinned key, for the warning; None if there is none or it is unreadable."""


@dataclass(frozen=True)
class FixedPin:
    """A pin given by value (``None``: first contact); for tests and simple programs."""

    key: Optional[bytes] = None

    def check(self, identity_pub: bytes) -> PinStatus:
        if self.key is None:
            return PinStatus.NEW
        return PinStatus.MATCH if hmac.compare_digest(self.key, identity_pub) else PinStatus.CHANGED

    def pinned(self) -> Optional[bytes]:
        return self.key


# -- the machine ------------------------------------------------------------------------


class Channel:
    """One side of one conversation in one relay session.

    ``local_nick`` and ``peer_nick`` are canonical (lower-case); ``sid`` is
    the relay's session id. The initiator (the caller) starts with
    :meth:`start`; the responder's :meth:`start` returns nothing and it
    waits for message 1.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        sid: str,
        local_nick: str,
        peer_nick: str,
        identity: Identity,
        pins: PinSource,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        for nick in (local_nick, peer_nick):
            if nick != nick.lower():
                raise ValueError("nicknames must be canonical (lower-case)")
        self.initiator = initiator
        self.sid = sid
        self.local_nick = local_nick
        self.peer_nick = peer_nick
        self.max_frame = max_frame
        self._identity = identity
        self._pins = pins
        names = (local_nick, peer_nick) if initiator else (peer_nick, local_nick)
        self._handshake: Optional[HandshakeState] = HandshakeState(
            PROTOCOL_NAME, initiator, prologue(sid, *names), s=identity.static_private
        )
        self._send: Optional[CipherState] = None
        self._recv: Optional[CipherState] = None
        self._sent = 0
        self._received = 0
        self._started = False
        self._answered = False  # responder: message 2 sent
        self._smp = SocialistMillionaire(session_initiator=initiator)
        self._unconfirmed = receipts.Unconfirmed()
        self.last_text_number = 0
        # The joined TEXT_PART bodies of a text being received (None: none is), kept as
        # one buffer so what a peer makes us hold is its bytes, whatever the count of pieces.
        self._partial: Optional[bytearray] = None
        self._handshake_hash: Optional[bytes] = None
        self.state = ChannelState.HANDSHAKE
        self.peer_identity: Optional[bytes] = None
        self.safety_number: Optional[str] = None
        self.error: Optional[ConversationFailed] = None

    def __repr__(self) -> str:
        return f"<Channel {self.sid} with {self.peer_nick} {self.state.value}>"

    @property
    def messages_sent(self) -> int:
        return self._sent

    @property
    def messages_received(self) -> int:
        return self._received

    @property
    def unconfirmed(self) -> list[tuple[int, str]]:
        """Our TEXT messages the peer has not confirmed: (number, first words), oldest first."""
        return self._unconfirmed.items

    @property
    def unconfirmed_count(self) -> int:
        """All unconfirmed TEXT messages, including those too many to be named."""
        return self._unconfirmed.count

    # -- handshake --------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """Frames to send once the session is open: message 1 for the initiator."""
        if self._started:
            raise RuntimeError("start() was already called")
        self._started = True
        if not self.initiator:
            return []
        assert self._handshake is not None
        return [self._handshake.write_message(b"")]  # section 10: empty payload

    def receive_frame(self, payload: bytes) -> list[Event]:
        """Handle one decoded FRAME payload from the peer. Never raises for
        anything the network sent: failures come back as ChannelFailed."""
        if self.state in (ChannelState.FAILED, ChannelState.ENDED):
            return []  # dead or over: the relay's CLOSED follows; nothing is shown
        try:
            if self.state is ChannelState.HANDSHAKE:
                return self._handshake_step(bytes(payload))
            if self.state is ChannelState.CLOSING:
                return self._closing(bytes(payload))
            return self._transport(bytes(payload))
        except ConversationFailed as error:
            return self.fail(error)
        except Exception:  # a bug must still end the conversation, not the program
            return self.fail(MessageRejected(
                f"An internal error occurred while reading a message from {self.peer_nick}; "
                "the conversation was stopped."
            ))

    def _handshake_step(self, message: bytes) -> list[Event]:
        hs = self._handshake
        assert hs is not None
        if not self._started:
            raise HandshakeFailed(f"{self.peer_nick} sent data before the conversation was set up.")
        try:
            payload = hs.read_message(message)
        except DecryptError:
            raise HandshakeFailed(
                f"A handshake message from {self.peer_nick} failed authentication: it was altered "
                "or belongs to another session (the relay may be tampering or splicing sessions)."
            ) from None
        except NoiseError:
            raise HandshakeFailed(f"{self.peer_nick} sent a malformed handshake message.") from None
        events: list[Event] = []
        if not self.initiator and not self._answered:  # message 1: answer with our binding
            if payload:
                raise HandshakeFailed(f"{self.peer_nick}'s first handshake message carried unexpected data.")
            self._answered = True
            events.append(SendFrame(hs.write_message(self._identity.binding())))
            return events
        # Message 2 (we initiated) or 3 (we responded): the peer's binding.
        complete = self._check_binding(payload, hs.remote_static)
        if self.initiator:
            events.append(SendFrame(hs.write_message(self._identity.binding())))
        self._finish_handshake(hs)
        return events + [complete]

    def _check_binding(self, binding: bytes, rs: Optional[bytes]) -> HandshakeComplete:
        """Section 10: the binding certifies *this* handshake's rs, and is the pinned key."""
        if rs is None:
            raise HandshakeFailed(f"{self.peer_nick} sent no static key.")
        try:
            identity_pub = verify_binding(binding, rs)
        except BindingError as e:
            raise HandshakeFailed(f"Cannot verify {self.peer_nick}: {e}") from None
        status = self._pins.check(identity_pub)
        if status is PinStatus.CHANGED:
            raise KeyChanged(self.peer_nick, self._pins.pinned(), identity_pub)
        self.peer_identity = identity_pub
        self.safety_number = safety_number(
            self._identity.identity_public, self.local_nick, identity_pub, self.peer_nick
        )
        return HandshakeComplete(identity_pub, identity_fingerprint(identity_pub), self.safety_number, status)

    def _finish_handshake(self, hs: HandshakeState) -> None:
        send, recv = hs.cipher_states
        assert send is not None and recv is not None
        self._send, self._recv = send, recv
        self._handshake_hash = hs.handshake_hash
        self._handshake = None
        self.state = ChannelState.OPEN

    # -- transport ----------------------------------------------------------------------

    def _decrypt(self, ciphertext: bytes) -> bytes:
        """The next transport message in order; counts it, rekeys after every 1000th."""
        recv = self._recv
        assert recv is not None
        try:
            plaintext = recv.decrypt_with_ad(b"", ciphertext)
        except NoiseError:  # DecryptError, or longer than any Noise message
            raise MessageRejected(
                f"A message from {self.peer_nick} failed authentication: it was altered, replayed "
                "or reordered, or one before it was lost. The conversation was stopped."
            ) from None
        self._received += 1
        if self._received % REKEY_INTERVAL == 0:
            recv.rekey()
        return plaintext

    def _transport(self, ciphertext: bytes) -> list[Event]:
        plaintext = self._decrypt(ciphertext)
        if not plaintext:
            raise self._unreadable("an empty message")
        kind, body = plaintext[0], plaintext[1:]
        if self._partial is not None:  # inside a long text: only its pieces and its end may come
            if kind not in (MessageType.TEXT_PART, MessageType.TEXT):
                raise self._unreadable("a long message broken off in the middle")
            if len(self._partial) + len(body) > MAX_MESSAGE_BYTES:
                raise self._unreadable(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
        if kind == MessageType.TEXT_PART:
            if self._partial is None:
                self._partial = bytearray()
            self._partial += body
            return []
        if kind == MessageType.TEXT:
            if self._partial is not None:
                body = bytes(self._partial + body)
                self._partial = None
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise self._unreadable("a message that is not UTF-8 text") from None
            # The final TEXT's number covers its TEXT_PARTs too: "delivered" means the whole text.
            receipt = self._encrypt(MessageType.RECEIPT, receipts.encode(self._received))
            return [MessageReceived(text), SendFrame(receipt)]
        if kind == MessageType.RECEIPT:
            return self._receipt(body)
        if kind == MessageType.CLOSE:
            if body:
                raise self._unreadable("a malformed goodbye")
            self._end()
            return [PeerClosed(True, f"{self.peer_nick} ended the conversation.")]
        if kind == MessageType.SMP:
            return self._smp_received(body)
        return [UnknownMessage(kind, f"{self.peer_nick} sent a message of unknown type 0x{kind:02x}; it was ignored.")]

    def _unreadable(self, what: str) -> MessageRejected:
        """An authenticated message that breaks section 11: the peer's client is at fault."""
        return MessageRejected(f"{self.peer_nick}'s client sent something unreadable ({what}); "
                               "the conversation ended.")

    def _closing(self, ciphertext: bytes) -> list[Event]:
        """After our CLOSE: read in order (the nonces demand it), keep only
        receipts; a crossing TEXT or SMP is not shown, since we said goodbye
        (its sender sees it unconfirmed), and we send nothing more."""
        try:
            plaintext = self._decrypt(ciphertext)
        except MessageRejected:
            self._end()  # we are leaving anyway; what is unconfirmed stays so
            return []
        events: list[Event] = []
        if plaintext[:1] == bytes([MessageType.RECEIPT]):
            events = self._receipt(plaintext[1:])
        if plaintext[:1] == bytes([MessageType.CLOSE]) or not self._unconfirmed:
            self._end()
        return events

    def _receipt(self, body: bytes) -> list[Event]:
        """RECEIPT n: the peer has every message of ours up to number n."""
        delivered = self._unconfirmed.confirm(receipts.decode(body), self._sent)
        if delivered is None:
            raise MessageRejected(f"{self.peer_nick} sent a receipt for messages it cannot have received.")
        return [Delivered(delivered)] if delivered else []

    def _encrypt(self, kind: MessageType, body: bytes) -> bytes:
        if self.state is not ChannelState.OPEN:
            raise self._not_open()
        plaintext = bytes([kind]) + body
        if len(plaintext) + TAG_SIZE > self.max_frame:
            raise MessageTooLong(f"A message is at most {max_text_bytes(self.max_frame)} bytes.")
        send = self._send
        assert send is not None
        ciphertext = send.encrypt_with_ad(b"", plaintext)
        self._sent += 1
        if self._sent % REKEY_INTERVAL == 0:
            send.rekey()
        return ciphertext

    def _not_open(self) -> ConversationFailed:
        if self.state is ChannelState.HANDSHAKE:
            return ConversationClosed(f"The conversation with {self.peer_nick} is not verified yet.")
        if self.error is not None:
            return ConversationClosed(f"The conversation with {self.peer_nick} is over: {self.error}")
        return ConversationClosed(f"The conversation with {self.peer_nick} is over.")

    def send_text(self, text: str) -> bytes:
        """The one FRAME payload carrying ``text``. Raises ConversationClosed or
        MessageTooLong (longer than one frame: :meth:`send_message` splits).

        Its number is ``last_text_number`` afterwards; a :class:`Delivered`
        event names it once the peer confirms it, and until then it is in
        :attr:`unconfirmed`."""
        frame = self._encrypt(MessageType.TEXT, text.encode("utf-8"))
        self._sent_text(text)
        return frame

    def send_message(self, text: str) -> list[bytes]:
        """The FRAME payloads carrying ``text``, split into TEXT_PART pieces when
        it is longer than one frame (section 11); send them in this order, with
        nothing in between. Raises ConversationClosed, or MessageTooLong past
        MAX_MESSAGE_BYTES.

        The text's number (``last_text_number`` afterwards) is its final
        TEXT's, so the peer's RECEIPT for it, sent only once the text is
        whole, means the whole text arrived; the pieces are never confirmed
        on their own."""
        data = text.encode("utf-8")
        if len(data) > MAX_MESSAGE_BYTES:
            raise MessageTooLong(f"A message is at most {MAX_MESSAGE_BYTES} bytes.")
        if self.state is not ChannelState.OPEN:
            raise self._not_open()
        frames = [self._encrypt(kind, piece) for kind, piece in split_text(data, self.max_frame)]
        self._sent_text(text)
        return frames

    def _sent_text(self, text: str) -> None:
        """Our TEXT just encrypted (the last of its pieces) awaits the peer's RECEIPT."""
        self.last_text_number = self._sent
        self._unconfirmed.sent(self._sent, text)

    def close(self) -> Optional[bytes]:
        """Our encrypted goodbye, after which we send nothing; None if there is
        nothing to say (not verified yet, or already over)."""
        if self.state is not ChannelState.OPEN:
            if self.state is ChannelState.HANDSHAKE:
                self.fail(ConversationClosed(f"The conversation with {self.peer_nick} was abandoned."))
            return None
        frame = self._encrypt(MessageType.CLOSE, b"")
        if self._unconfirmed:
            self.state = ChannelState.CLOSING
            self._send = None
            self._smp.abort()
        else:
            self._end()
        return frame

    def stop_waiting(self) -> None:
        """Give up waiting for receipts after close(); what is unconfirmed stays so."""
        if self.state is ChannelState.CLOSING:
            self._end()

    def relay_closed(self, reason: str) -> list[Event]:
        """The relay said ``CLOSED <sid> <reason>``. Without the peer's CLOSE
        first, messages may have been cut off: say so (section 11)."""
        why = closed_reason(reason, self.peer_nick)
        if self.state is ChannelState.HANDSHAKE:
            return self.fail(HandshakeFailed(
                f"The conversation with {self.peer_nick} ended before it was verified: {why}."
            ))
        if self.state is ChannelState.CLOSING:
            self._end()
            return []
        if self.state is ChannelState.OPEN:
            self._end()
            return [PeerClosed(False, (
                f"The conversation with {self.peer_nick} ended without their goodbye: {why}; "
                "the last messages may have been lost."
            ))]
        return []

    def fail(self, error: ConversationFailed) -> list[Event]:
        """Kill the channel for ``error`` (also used by the adapter, e.g. a
        frame the relay refused); reported once."""
        if self.state in (ChannelState.FAILED, ChannelState.ENDED):
            return []
        self.state = ChannelState.FAILED
        self.error = error
        self._drop_secrets()
        return [ChannelFailed(error)]

    def _end(self) -> None:
        self.state = ChannelState.ENDED
        self._drop_secrets()

    def _drop_secrets(self) -> None:
        self._handshake = None
        self._send = self._recv = None
        self._partial = None
        self._smp.abort()

    # -- Socialist Millionaire check (section 14) -----------------------------------------

    def _smp_value(self, secret: str) -> int:
        """The compared value, bound to both identities (initiator first) and
        this handshake: different on each leg of a man in the middle."""
        if self.state is not ChannelState.OPEN or self.peer_identity is None or self._handshake_hash is None:
            raise self._not_open()
        mine = hashlib.sha256(self._identity.identity_public).digest()
        theirs = hashlib.sha256(self.peer_identity).digest()
        first, second = (mine, theirs) if self.initiator else (theirs, mine)
        return smp_secret(first, second, self._handshake_hash, secret)

    def smp_start(self, secret: str) -> bytes:
        """Start a check (aborting any run under way first is the caller's
        choice: this raises SMPUsageError instead). Returns the frame."""
        return self._encrypt(MessageType.SMP, self._smp.start(self._smp_value(secret)))

    def smp_respond(self, secret: str) -> bytes:
        return self._encrypt(MessageType.SMP, self._smp.respond(self._smp_value(secret)))

    def smp_abort(self) -> bytes:
        return self._encrypt(MessageType.SMP, self._smp.abort())

    @property
    def smp_state(self) -> SMPState:
        return self._smp.state

    def _smp_received(self, body: bytes) -> list[Event]:
        smp = self._smp
        try:
            reply = smp.receive(body)
        except SMPUnexpectedMessage:  # usually both started at once, or a message crossed an abort
            return [SendFrame(self._encrypt(MessageType.SMP, smp.abort())), SMPAborted(
                f"The secret check with {self.peer_nick} was reset because two checks crossed; start it again."
            )]
        except SMPError:  # the detail (which proof, which field) is for developers, not a reason to show
            return [SendFrame(self._encrypt(MessageType.SMP, smp.abort())), SMPAborted(
                f"The secret check with {self.peer_nick} was stopped: {self.peer_nick}'s client sent a "
                "check message that does not verify."
            )]
        events: list[Event] = []
        if reply is not None:
            events.append(SendFrame(self._encrypt(MessageType.SMP, reply)))
        if smp.outcome is not None and not smp.in_progress:
            events.append(SMPResult(smp.outcome))
        elif smp.state is SMPState.AWAITING_SECRET:
            events.append(SMPRequested())
        elif smp.peer_aborted:  # an ABORT while idle is ignored (section 14.7)
            events.append(SMPAborted(f"{self.peer_nick} stopped the secret check."))
        return events

