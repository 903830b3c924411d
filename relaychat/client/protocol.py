"""The relay line protocol, client side, for Twisted: a thin adapter.

:class:`RelayClientProtocol` writes what :class:`~relaychat.client.connection.RelayConnection`
(the sans-IO protocol state) gives it, feeds it what arrives, and turns its
events into Deferred results (for commands) and :class:`RelayEvents` calls
(for everything the relay says unasked). It adds only what needs a reactor:
the keep-alive ``PING`` and the end of the connection. It knows nothing
about encryption: ``FRAME`` and ``MAIL`` payloads are opaque bytes here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from relaychat.client import endpoints
from relaychat.client.connection import (
    DEFAULT_MAX_LINE,
    MAX_LINE_CEILING,
    MAX_WHO_LINES,
    Answered,
    Broken,
    FrameRefused,
    Refused,
    RelayConnection,
    Unreadable,
)
from relaychat.client.errors import Disconnected, RelayError, TooMuchWork
from relaychat.crypto.identity import MAX_POW_BITS, solve_pow
from relaychat.crypto.keypair import Identity
from relaychat.wire import messages as m
from relaychat.wire.errors import ProtocolError
from relaychat.wire.lines import LineSplitter

__all__ = [
    "DEFAULT_MAX_LINE",
    "HelloInfo",
    "LookupResult",
    "MAX_LINE_CEILING",
    "MAX_WHO_LINES",
    "Registered",
    "RelayClientProtocol",
    "RelayEvents",
    "WhoResult",
]

KEEPALIVE = 300.0  # half the relay's default idle_timeout (section 3)
R = TypeVar("R", bound=m.Reply)
T = TypeVar("T")

HelloInfo = m.HelloOk
"""What the relay said in ``OK HELLO``: version, server id, limits, and options of a newer relay."""

LookupResult = m.LookupOk
"""The relay's *claim* in ``OK LOOKUP``; the caller verifies static_sig and the pin."""


@dataclass(frozen=True)
class Registered:
    nick: str  # as the relay shows it
    canonical: str
    new: bool  # the nickname was bound just now
    pending_mail: int


@dataclass(frozen=True)
class WhoResult:
    users: list[tuple[str, bytes]]
    shown: int
    online: int


class RelayEvents:
    """What the relay says unasked. Subclass and override; all do nothing by default."""

    def relay_offered(self, sid: str, nick: str, identity_pub: bytes) -> None: ...
    def relay_accepted(self, sid: str) -> None: ...
    def relay_closed(self, sid: str, reason: str) -> None: ...
    def relay_frame(self, sid: str, payload: bytes) -> None: ...
    def relay_frame_error(self, sid: str, error: RelayError) -> None: ...
    def relay_frame_unreadable(self, sid: str) -> None: ...
    def relay_mail(self, mail_id: int, sender: str, time: int, payload: bytes) -> None: ...
    def relay_notice(self, text: str) -> None: ...
    def relay_bye(self, code: str, text: str) -> None: ...
    def relay_disconnected(self, error: Disconnected) -> None: ...


@dataclass
class _Pending:
    command: str
    deferred: Deferred[Any]
    result: Callable[[Answered], Any]


class RelayClientProtocol(Protocol):
    """One connection to a relay. ``events`` receives everything unasked."""

    def __init__(self, events: Optional[RelayEvents] = None, clock: Optional[IReactorTime] = None,
                 keepalive: float = KEEPALIVE) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.events = events if events is not None else RelayEvents()
        self.clock: IReactorTime = clock
        self.keepalive = keepalive
        self.relay = RelayConnection()
        self.connected = False
        self._pending: deque[_Pending] = deque()  # one per command the relay connection awaits
        self._last_write = 0.0
        self._keepalive_call: Optional[IDelayedCall] = None
        self._lost_reason: Optional[Disconnected] = None
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def hello_info(self) -> Optional[HelloInfo]:
        return self.relay.hello

    @property
    def splitter(self) -> LineSplitter:
        return self.relay.splitter

    @property
    def malformed(self) -> int:
        """Events from the relay we could not read (and ignored)."""
        return self.relay.malformed

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self._last_write = self.clock.seconds()
        if self.keepalive:
            self._keepalive_call = self.clock.callLater(self.keepalive, self._keepalive_check)

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.connected = False
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None
        goodbye = self.relay.goodbye
        if self._lost_reason is not None:
            error = self._lost_reason
        elif goodbye is not None:
            error = Disconnected(goodbye.code, goodbye.text or goodbye.code)
        else:
            text = endpoints.explain(reason) if reason is not None else "connection closed"  # TLS failures in words
            code = "tls" if endpoints.is_verification_failure(reason) else "lost"  # "tls" is not retried
            error = Disconnected(code, text.rstrip("."))
        self._lost_reason = error
        pending, self._pending = self._pending, deque()
        for item in pending:
            item.deferred.errback(Failure(error))
        self.events.relay_disconnected(error)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _abort(self, text: str) -> None:
        """The relay broke the protocol: drop the connection, saying why."""
        if self._lost_reason is None:
            self._lost_reason = Disconnected("protocol", text)
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", self.transport.loseConnection)
            abort()

    def _keepalive_check(self) -> None:
        self._keepalive_call = None
        if not self.connected:
            return
        idle = self.clock.seconds() - self._last_write
        if idle >= self.keepalive:
            self.ping().addErrback(lambda _: None)
            idle = 0.0
        self._keepalive_call = self.clock.callLater(self.keepalive - idle, self._keepalive_check)

    # -- incoming --------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        events = self.events
        for event in self.relay.receive_data(data):
            if not self.connected or self._lost_reason is not None:
                return
            if isinstance(event, m.Frame):
                events.relay_frame(event.sid, event.payload)
            elif isinstance(event, (Answered, Refused, Unreadable)):
                self._answer(event)
            elif isinstance(event, FrameRefused) and event.forwarded:
                events.relay_frame_unreadable(event.sid)  # the peer's doing (the relay passes payloads on unread)
            elif isinstance(event, FrameRefused):
                events.relay_frame_error(event.sid, RelayError(event.code, event.text or event.code, "FRAME"))
            elif isinstance(event, Broken):
                self._abort(event.text)
            elif isinstance(event, m.Offered):
                events.relay_offered(event.sid, event.nick, event.identity_pub)
            elif isinstance(event, m.Accepted):
                events.relay_accepted(event.sid)
            elif isinstance(event, m.SessionClosed):
                events.relay_closed(event.sid, event.reason)
            elif isinstance(event, m.StoredMail):
                events.relay_mail(event.mail_id, event.sender, event.time, event.payload)
            elif isinstance(event, m.Notice):
                events.relay_notice(event.text)
            elif isinstance(event, m.Goodbye):
                events.relay_bye(event.code, event.text or event.code)

    def _answer(self, event: Answered | Refused | Unreadable) -> None:
        head = self._pending.popleft()
        if head.deferred.called:  # cancelled by the caller (a timeout): nobody is waiting
            return
        if isinstance(event, Refused):
            error = event.error
            head.deferred.errback(Failure(RelayError(error.code, error.text or error.code, head.command)))
            return
        try:
            if isinstance(event, Unreadable):
                raise ValueError(event.problem)
            result = head.result(event)
        except (ValueError, ProtocolError):
            head.deferred.errback(Failure(RelayError(
                "bad-reply", "the relay's reply could not be understood", head.command)))
            return
        head.deferred.callback(result)

    # -- outgoing --------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self._last_write = self.clock.seconds()
        self.transport.write(data)

    def _command(self, command: m.Command, reply: type[R], result: Callable[[R, Answered], T]) -> Deferred[T]:
        if not self.connected or self._lost_reason is not None:
            return fail(self._lost_reason or Disconnected("lost", "not connected"))
        try:
            data = self.relay.send(command)
        except ValueError as e:
            return fail(e)
        def read(answered: Answered) -> T:
            if not isinstance(answered.reply, reply):
                raise ValueError(f"not an OK {command.NAME}")
            return result(answered.reply, answered)

        pending = _Pending(command.NAME, Deferred(), read)
        self._pending.append(pending)
        self._write(data)
        return pending.deferred

    def hello(self) -> Deferred[HelloInfo]:
        """``HELLO 1``; fires with :class:`HelloInfo` (the relay connection adopts its ``max_line``)."""
        return self._command(m.Hello(), m.HelloOk, lambda r, a: r)

    def register(self, nick: str, identity: Identity) -> Deferred[Registered]:
        """``REGISTER`` then ``PROVE`` (with proof of work when asked); fires with :class:`Registered`."""
        hello = self.relay.hello
        if hello is None:
            return fail(RuntimeError("say hello() first"))
        server_id = hello.server_id
        started = self._command(
            m.Register(nick, identity.identity_public, identity.static_public, identity.static_sig),
            m.RegisterOk, lambda r, a: r)

        def prove(claim: m.RegisterOk) -> Deferred[Registered]:
            signature = identity.sign_registration(server_id, claim.challenge, claim.canonical)
            if claim.pow_bits > MAX_POW_BITS:
                raise TooMuchWork(claim.pow_bits, MAX_POW_BITS)
            nonce = solve_pow(claim.challenge, claim.pow_bits) if claim.pow_bits else None
            return self._command(m.Prove(signature, nonce), m.ProveOk, lambda r, a: Registered(
                r.nick, claim.canonical, r.new, r.pending_mail))
        return started.addCallback(prove)

    def lookup(self, nick: str) -> Deferred[LookupResult]:
        return self._command(m.Lookup(nick), m.LookupOk, lambda r, a: r)

    def who(self) -> Deferred[WhoResult]:
        return self._command(m.Who(), m.WhoOk, lambda r, a: WhoResult(
            [(user.nick, user.identity_pub) for user in a.users], r.shown, r.online))

    def offer(self, nick: str) -> Deferred[tuple[str, str]]:
        """Fires with ``(sid, nick)``."""
        return self._command(m.Offer(nick), m.OfferOk, lambda r, a: (r.sid, r.nick))

    def accept(self, sid: str) -> Deferred[None]:
        return self._command(m.Accept(sid), m.AcceptOk, _nothing)

    def decline(self, sid: str) -> Deferred[None]:
        return self._command(m.Decline(sid), m.DeclineOk, _nothing)

    def close(self, sid: str) -> Deferred[None]:
        return self._command(m.Close(sid), m.CloseOk, _nothing)

    def send_frame(self, sid: str, payload: bytes) -> None:
        """``FRAME``: no reply on success; a failure arrives as ``relay_frame_error``."""
        if not self.connected or self._lost_reason is not None:
            raise self._lost_reason or Disconnected("lost", "not connected")
        self._write(self.relay.send_frame(sid, payload))

    def mail(self, nick: str, payload: bytes) -> Deferred[int]:
        """Fires with the relay's mail id."""
        return self._command(m.Mail(nick, payload), m.MailOk, lambda r, a: r.mail_id)

    def ack(self, mail_id: int) -> Deferred[None]:
        return self._command(m.Ack(mail_id), m.AckOk, _nothing)

    def ping(self, token: Optional[str] = None) -> Deferred[Optional[str]]:
        return self._command(m.Ping(token or None), m.PingOk, lambda r, a: r.token)

    def quit(self) -> Deferred[None]:
        """``QUIT``: the relay answers ``BYE quit`` (not OK) and closes; fires when the connection is gone."""
        done = self.when_lost()
        if self.connected and self._lost_reason is None:
            self._write(self.relay.send(m.Quit()))
        return done

    def when_lost(self) -> Deferred[None]:
        """Fires (with None) once the connection is gone."""
        done: Deferred[None] = Deferred()
        if self.connected:
            self._lost_waiters.append(done)
        else:
            done.callback(None)
        return done


def _nothing(reply: m.Reply, answered: Answered) -> None:
    return None
