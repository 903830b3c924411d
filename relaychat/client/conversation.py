"""One end-to-end conversation as programs see it: a Channel driven by a ChatClient's relay session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall

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
    MessageRejected,
    RelayError,
)
from relaychat.client.feed import Feed
from relaychat.client.trust import PinnedPeer
from relaychat.client.values import Ended, SMPEvent
from relaychat.crypto.pins import PinConflict, PinError, PinStatus

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient


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
            identity=client.identity, pins=PinnedPeer(client, nick), max_frame=client.max_frame,
        )
        self._ready: Deferred = Deferred(self._cancel)
        self._relay_open = True  # the relay still knows this session (or offer)
        self._accepted = not initiator  # the initiator waits for ACCEPTED
        self._timer: Optional[IDelayedCall] = None
        self._messages: Feed[str] = Feed()
        self._ends: Feed[Ended] = Feed()
        self._smp: Feed[SMPEvent] = Feed()
        self._warnings: Feed[str] = Feed()

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
