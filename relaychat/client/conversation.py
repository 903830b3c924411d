"""One end-to-end conversation as programs see it: a Channel driven by a ChatClient's relay session.

Its life is one enum, :class:`ConversationState`, and one table of the
moves between its states (``_TRANSITIONS``, h11's ``_state.py`` is the
model): every change of state goes through :meth:`Conversation._advance`,
so what a conversation can do next is read in one place. The Channel
keeps the cryptographic state (handshake, open, failed); this enum adds
what only the relay session knows (offered, accepted, still open).
"""

from __future__ import annotations

import enum
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from relaychat.client.channel import (
    MAX_MESSAGE_BYTES,
    Channel,
    ChannelFailed,
    ChannelState,
    Delivered,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerClosed,
    SendFrame,
    SMPAborted,
    SMPRequested,
    SMPResult,
    UnknownMessage,
)
from relaychat.client.errors import (
    ConversationClosed,
    ConversationFailed,
    Declined,
    Disconnected,
    HandshakeFailed,
    KeyChanged,
    MessageRejected,
    NotPinned,
    RelayError,
)
from relaychat.client.feed import Feed
from relaychat.client.trust import PinnedPeer
from relaychat.client.contacts import How, Verification
from relaychat.client.values import Delivery, Ended, SMPEvent
from relaychat.crypto.pins import PinConflict, PinError, PinStatus

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient
    from relaychat.client.sessions import Sessions

#: Seconds :meth:`Conversation.close` waits for the peer's receipts of our
#: last messages before closing the relay session (protocol section 11).
CLOSE_LINGER = 2.0


class ConversationState(enum.Enum):
    """Where a conversation is in its life."""

    CALLING = "calling"  # we offered; waiting for the relay's ACCEPTED
    ACCEPTING = "accepting"  # we accepted an offer; waiting for the relay to confirm
    HANDSHAKE = "handshake"  # the relay session is open; the Noise handshake is under way
    OPEN = "open"  # the handshake is verified: messages flow
    CLOSING = "closing"  # we said goodbye; the peer's last receipts may still come (CLOSE_LINGER)
    ENDED = "ended"  # over; the relay session is still open (its CLOSE or CLOSED is due)
    CLOSED = "closed"  # the relay session is gone (over, or about to be reported so)


class _Step(enum.Enum):
    """What moves a conversation from one state to the next."""

    SESSION_OPEN = "session-open"  # ACCEPTED arrived, or our ACCEPT was confirmed
    VERIFIED = "verified"  # the handshake completed and the key is pinned
    GOODBYE = "goodbye"  # we sent our CLOSE with messages still unconfirmed
    END = "end"  # it ended (cleanly or not); reported to the observers
    SESSION_GONE = "session-gone"  # we sent CLOSE, or the relay closed it, or the connection died


_S = ConversationState
_LIVE = (_S.CALLING, _S.ACCEPTING, _S.HANDSHAKE, _S.OPEN, _S.CLOSING)
_TRANSITIONS: dict[tuple[ConversationState, _Step], ConversationState] = {
    (_S.CALLING, _Step.SESSION_OPEN): _S.HANDSHAKE,
    (_S.ACCEPTING, _Step.SESSION_OPEN): _S.HANDSHAKE,
    (_S.HANDSHAKE, _Step.VERIFIED): _S.OPEN,
    (_S.ACCEPTING, _Step.VERIFIED): _S.OPEN,  # a relay may confirm our ACCEPT after the peer's frames
    (_S.OPEN, _Step.GOODBYE): _S.CLOSING,
    **{(state, _Step.END): _S.ENDED for state in _LIVE},
    (_S.ENDED, _Step.END): _S.ENDED,
    (_S.CLOSED, _Step.END): _S.CLOSED,
    **{(state, _Step.SESSION_GONE): _S.CLOSED for state in ConversationState},
}


class Conversation:
    """An end-to-end encrypted conversation whose handshake has been verified.

    Attributes: ``nick`` (peer, canonical), ``sid``, ``initiator`` (we called),
    ``peer_identity`` (32 bytes), ``peer_fingerprint``, ``safety_number``
    (both screens show the same 12 groups), ``first_contact`` (the key was
    pinned just now), ``ended`` (an :class:`Ended` once over, else None),
    ``state`` (a :class:`ConversationState`), ``verified`` (how and when the
    user verified this very key, from the contacts record, or None).

    Programs use the methods above "driven by the ChatClient"; the
    ChatClient uses the ones below it.
    """

    def __init__(self, client: ChatClient, sid: str, nick: str, initiator: bool) -> None:
        self._client = client
        self._sessions: Sessions = client.sessions
        self.state = ConversationState.CALLING if initiator else ConversationState.ACCEPTING
        self.sid = sid
        self.nick = nick
        self.initiator = initiator
        self.peer_identity: Optional[bytes] = None
        self.peer_fingerprint: Optional[str] = None
        self.safety_number: Optional[str] = None
        self.first_contact = False
        self.lookalike_of: Optional[str] = None  # first contact with a name imitating a pinned one
        self.verified: Optional[Verification] = None
        self.ended: Optional[Ended] = None
        self._cause: Optional[str] = None  # why the relay session went away, for Ended.cause
        self._channel = Channel(
            initiator=initiator, sid=sid, local_nick=client.canonical_nick, peer_nick=nick,
            identity=client.identity, pins=PinnedPeer(client, nick), max_frame=client.max_frame,
        )
        self._ready: Deferred[Any] = Deferred(self._cancel)
        self._timer: Optional[IDelayedCall] = None
        self._messages: Feed[str] = Feed()
        self._ends: Feed[Ended] = Feed()
        self._smp: Feed[SMPEvent] = Feed()
        self._warnings: Feed[str] = Feed()
        self._deliveries: Feed[Delivery] = Feed()
        self._closed: Deferred[Any] = Deferred()  # fires once the relay session is closed after our goodbye

    def __repr__(self) -> str:
        return f"<Conversation {self.sid} with {self.nick}>"

    # -- public -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.ended is not None

    @property
    def max_text_bytes(self) -> int:
        """The longest message (UTF-8 bytes) :meth:`send` accepts; longer than
        one frame is split and joined again (section 11, TEXT_PART)."""
        return MAX_MESSAGE_BYTES

    def send(self, text: str) -> int:
        """Encrypt and send one message, in as many frames as it needs; returns
        its number, which a :class:`Delivery` names once the peer confirms it
        (the whole of it: a long text is confirmed only once it is joined).
        Raises ConversationClosed or MessageTooLong."""
        for frame in self._channel.send_message(text):
            self._send(frame)
        return self._channel.last_text_number

    @property
    def unconfirmed(self) -> list[tuple[int, str]]:
        """Our messages the peer has not confirmed yet: (number, first words)."""
        return self._channel.unconfirmed

    def observe_delivered(self, observer: Callable[[Delivery], None]) -> None:
        """Call ``observer(delivery)`` as the peer confirms each of our messages."""
        self._deliveries.add(observer)

    def close(self) -> Deferred[Any]:
        """End cleanly: our encrypted CLOSE tells the peer nothing was cut off.

        The relay session stays open until the peer's receipts for our last
        messages are in (at most ``CLOSE_LINGER`` seconds), so the ending
        can say whether everything arrived. Fires when the relay has closed
        the session."""
        if self.state is ConversationState.CLOSING:
            return self._closed
        if self.ended is not None and self.ended.by_peer and self.ended.clean:
            return succeed(None)  # the peer said goodbye and closes the session itself (section 11)
        if self.ended is None:
            frame = self._channel.close()
            if frame is not None:
                self._send(frame, quiet=True)
            if not self._ready.called:
                self._ready.errback(ConversationClosed(f"The conversation with {self.nick} was abandoned."))
            if self._channel.state is ChannelState.CLOSING and self._advance(_Step.GOODBYE):
                self._cancel_timer()
                self._timer = self._client.reactor.callLater(CLOSE_LINGER, self._linger_over)
                return self._closed
            self._closed_by_us()
        return self._close_relay()

    def _linger_over(self) -> None:
        self._timer = None
        self._channel.stop_waiting()
        self._closed_by_us()

    def _closed_by_us(self) -> None:
        """Our goodbye is complete (receipts in, or no longer awaited): report, CLOSE."""
        self._cancel_timer()
        self._end(self._ending(True, f"You ended the conversation with {self.nick}.", by_peer=False))
        done = self._close_relay()
        if not self._closed.called:
            done.chainDeferred(self._closed)

    def _ending(self, clean: bool, reason: str, by_peer: bool,
                error: Optional[ConversationFailed] = None) -> Ended:
        unconfirmed = self._channel.unconfirmed
        return Ended(clean, reason, by_peer, error, unconfirmed=tuple(words for _, words in unconfirmed),
                     unconfirmed_count=self._channel.unconfirmed_count)

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

    # -- driven by the ChatClient (and IncomingOffer) -----------------------------

    @property
    def relay_session_open(self) -> bool:
        """The relay still knows this session (or our offer): a CLOSE may still be due."""
        return self.state is not ConversationState.CLOSED

    def when_verified(self) -> Deferred[Any]:
        """The one Deferred that fires with this conversation once the handshake is
        verified (or fails with why not); cancelling it abandons the conversation."""
        return self._ready

    def session_open(self) -> None:
        """The relay session is open (ACCEPTED, or our ACCEPT confirmed): start the
        handshake, and give it a deadline. Ignored unless we were waiting for that."""
        if not self._advance(_Step.SESSION_OPEN):
            return
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

    def frame_received(self, payload: bytes) -> None:
        """A FRAME for this session arrived."""
        lingering = self.state is ConversationState.CLOSING
        self._handle(self._channel.receive_frame(payload))
        if lingering and self._channel.state is not ChannelState.CLOSING:
            self._closed_by_us()  # the last receipt (or the peer's own goodbye) is in

    def relay_closed(self, reason: str) -> None:
        """The relay said CLOSED: declined or timed out if we were calling, else over."""
        calling = self.state is ConversationState.CALLING
        self._cause = reason
        lingering = self.state is ConversationState.CLOSING
        self._advance(_Step.SESSION_GONE)
        self._sessions.forget(self)  # before anyone hears of it: the relay knows it no more
        if calling:
            texts = {
                "declined": f"{self.nick} declined the conversation.",
                "timeout": f"{self.nick} did not answer in time.",
                "gone": f"{self.nick} disconnected before answering.",
                "kicked": f"{self.nick} was disconnected by the relay before answering.",
                "draining": f"The relay is shutting down; the call to {self.nick} was stopped.",
            }
            error = Declined(texts.get(reason, f"{self.nick} did not accept the conversation."), reason)
            self._handle(self._channel.fail(error))
        else:
            self._handle(self._channel.relay_closed(reason))
        if lingering:
            self._closed_by_us()

    def frame_refused(self, error: RelayError) -> None:
        """The relay refused one of our frames: the conversation cannot go on."""
        if error.code == "no-session":
            self._advance(_Step.SESSION_GONE)
            self._sessions.forget(self)
        text = f"The relay did not deliver a message to {self.nick} ({error.code}); the conversation was stopped."
        self._handle(self._channel.fail(MessageRejected(text)))

    def frame_unreadable(self) -> None:
        """A FRAME for us whose payload is not what a client can send (not UTF-8, not
        strict base64, too big): it is said as the peer's, and only this session fails."""
        self._handle(self._channel.fail(MessageRejected(
            f"{self.nick}'s client sent something unreadable; the conversation ended."
        )))

    def connection_lost(self, error: Disconnected) -> None:
        """The relay connection ended, and this session with it."""
        self._cause = "lost"
        lingering = self.state is ConversationState.CLOSING
        self._advance(_Step.SESSION_GONE)
        if not self._ready.called:
            self._ready.errback(error)
        self._handle(self._channel.fail(ConversationClosed(
            f"The conversation with {self.nick} was cut off with the connection to the relay."
        )))
        if lingering:
            self._closed_by_us()

    def accept_refused(self, failure: Failure) -> None:
        """The relay refused our ACCEPT of the offer this conversation answers."""
        self._advance(_Step.SESSION_GONE)
        self._sessions.forget(self)
        if not self._ready.called:
            self._ready.errback(failure)
        self._handle(self._channel.fail(ConversationClosed(f"The offer from {self.nick} could not be accepted.")))

    # -- inside -----------------------------------------------------------------

    def _advance(self, step: _Step) -> bool:
        """Move to the state ``_TRANSITIONS`` gives for ``step``; False (and no
        change) if the table has no such move from here."""
        following = _TRANSITIONS.get((self.state, step))
        if following is None:
            return False
        self.state = following
        return True

    def mark_verified(self) -> None:
        """The user compared the safety number with the peer: record it for this key."""
        if self.peer_identity is None:
            raise ConversationClosed(f"The conversation with {self.nick} is not verified yet.")
        self.verified = self._client.mark_verified(self.nick, How.SAFETY_NUMBER, self.peer_identity).verified

    def _record_verification(self, how: How) -> None:
        """A check succeeded (section 14): it lasts, for this very key (section 13)."""
        if self.peer_identity is None:
            return
        try:
            self.verified = self._client.mark_verified(self.nick, how, self.peer_identity).verified
        except (NotPinned, PinError, OSError):
            pass  # the pin changed meanwhile: the result holds for this session only

    def _cancel(self, ready: Deferred[Any]) -> None:
        self._handle(self._channel.fail(ConversationClosed(
            f"The conversation with {self.nick} was cancelled."
        )))

    def _handle(self, events: list[Event]) -> None:
        # Every frame the channel encrypted goes out before any observer runs:
        # an observer that sends (a reply to a message) would otherwise put its
        # frame, with a later nonce, ahead of ours (the receipt for that message).
        for event in events:
            if isinstance(event, SendFrame):
                self._send(event.payload, quiet=True)
        for event in events:
            if isinstance(event, SendFrame):
                continue
            elif isinstance(event, HandshakeComplete):
                self._verified(event)
            elif isinstance(event, MessageReceived):
                self._messages.emit(event.text)
            elif isinstance(event, PeerClosed):
                self._end(self._ending(event.clean, event.reason, by_peer=True))
            elif isinstance(event, Delivered):
                for number, words in event.messages:
                    self._deliveries.emit(Delivery(number, words))
            elif isinstance(event, ChannelFailed):
                self._failed(event.error)
            elif isinstance(event, UnknownMessage):
                self._warnings.emit(event.reason)
            elif isinstance(event, SMPResult):
                if event.equal:
                    self._record_verification(How.SMP)
                self._smp.emit(event)
            elif isinstance(event, (SMPRequested, SMPAborted)):
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
        self.lookalike_of = self._client.lookalike_of(self.nick) if self.first_contact else None
        self.verified = self._client.saw(self.nick, event.peer_identity)
        self._advance(_Step.VERIFIED)
        self._cancel_timer()
        self._client.conversation_verified(self)
        if not self._ready.called:
            self._ready.callback(self)

    def _failed(self, error: ConversationFailed) -> None:
        self._cancel_timer()
        if not self._ready.called:
            self._ready.errback(error)
        self._end(self._ending(False, str(error), by_peer=False, error=error))
        self._close_relay()  # section 11: stop, CLOSE the session, report

    def _end(self, ended: Ended) -> None:
        if self.ended is not None:
            return
        self._cancel_timer()
        self._advance(_Step.END)
        if self._cause is not None and ended.cause is None:
            ended = replace(ended, cause=self._cause)
        self.ended = ended
        self._ends.emit(ended)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _send(self, payload: bytes, quiet: bool = False) -> None:
        try:
            self._sessions.send_frame(self.sid, payload)
        except Disconnected as e:
            if not quiet:
                raise ConversationClosed(f"The conversation with {self.nick} is over: {e}") from None

    def _close_relay(self) -> Deferred[Any]:
        """Say ``CLOSE`` once (only the side that ends sends it, so the relay never
        sees two); fires when done, whatever the relay answers."""
        if not self.relay_session_open:
            return succeed(None)
        self._advance(_Step.SESSION_GONE)
        self._sessions.forget(self)
        closing = self._sessions.close(self.sid)
        return closing.addErrback(lambda _: None)
