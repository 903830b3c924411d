"""The relay line protocol, client side (docs/protocol.rst sections 1-9), for Twisted.

:class:`RelayClientProtocol` turns commands into lines and lines into
Deferred results and events. It knows nothing about encryption: ``FRAME``
and ``MAIL`` payloads are opaque bytes here.

Replies are matched to commands with a first-in first-out queue, as
section 2 prescribes: every command but ``FRAME`` gets exactly one
``OK``/``ERR`` reply, in order; ``FRAME`` is answered only when it fails,
and those ``ERR FRAME`` lines carry the session id, so they are routed to
the session (:meth:`RelayEvents.relay_frame_error`) and never pop the
queue. ``USER`` data lines are collected for the ``WHO`` at the head of the
queue. Everything else is an event for the :class:`RelayEvents` listener.

Lines longer than the relay's ``max_line`` are never sent (the command
fails locally), and a longer line from the relay ends the connection: the
splitter enforces the limit announced in the ``HELLO`` reply.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from relaychat.client import endpoints
from relaychat.client.errors import Disconnected, RelayError, TooMuchWork
from relaychat.crypto.identity import MAX_POW_BITS, solve_pow
from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import EncodingError, b64decode, b64encode, decimal
from relaychat.wire.lines import LineSplitter, strip_cr

__all__ = [
    "DEFAULT_MAX_LINE",
    "HelloInfo",
    "LookupResult",
    "PROTOCOL_VERSION",
    "Registered",
    "RelayClientProtocol",
    "RelayEvents",
    "WhoResult",
]

PROTOCOL_VERSION = "1"
DEFAULT_MAX_LINE = 65536
# Our own ceilings on what a relay may announce or send: the relay is a
# remote party too, and must not make us buffer without bound.
MAX_LINE_CEILING = 1 << 20
MAX_WHO_LINES = 10000
KEEPALIVE = 300.0  # half the relay's default idle_timeout (section 3)


@dataclass(frozen=True)
class HelloInfo:
    version: str
    server_id: bytes
    max_line: int
    max_frame: int
    max_mail: int
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registered:
    nick: str  # as the relay shows it
    canonical: str
    new: bool  # the nickname was bound just now
    pending_mail: int


@dataclass(frozen=True)
class LookupResult:
    """The relay's *claim*; the caller verifies static_sig and the pin."""

    nick: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes
    online: bool


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


class _ReplyError(ValueError):
    """The relay's reply is not what section 2 says it should be."""


@dataclass
class _Pending:
    command: str
    deferred: Deferred
    parse: Callable[[list[str]], Any]
    data: list[list[str]] = field(default_factory=list)


class RelayClientProtocol(Protocol):
    """One connection to a relay. ``events`` receives everything unasked."""

    def __init__(self, events: Optional[RelayEvents] = None, clock: Optional[IReactorTime] = None,
                 keepalive: float = KEEPALIVE) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        self.events = events if events is not None else RelayEvents()
        self.clock = clock
        self.keepalive = keepalive
        self.splitter = LineSplitter(DEFAULT_MAX_LINE)
        self.hello_info: Optional[HelloInfo] = None
        self.connected = False
        self.malformed = 0  # lines from the relay we could not use
        self._pending: deque[_Pending] = deque()
        self._bye: Optional[tuple[str, str]] = None
        self._last_write = 0.0
        self._keepalive_call: Optional[IDelayedCall] = None
        self._lost_reason: Optional[Disconnected] = None
        self._lost_waiters: list[Deferred] = []

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self._last_write = self.clock.seconds()
        if self.keepalive:
            self._keepalive_call = self.clock.callLater(self.keepalive, self._keepalive_check)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = False
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None
        if self._lost_reason is not None:
            error = self._lost_reason
        elif self._bye is not None:
            error = Disconnected(self._bye[0], self._bye[1])
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
        for line in self.splitter.feed(data):
            if not self.connected or self._lost_reason is not None:
                return
            if line is None:
                self._abort(f"the relay sent a line longer than {self.splitter.max_line} bytes")
                return
            try:
                text = strip_cr(line).decode("utf-8")
            except UnicodeDecodeError:
                if line.startswith(b"FRAME "):  # a peer's bytes: that session fails, not the connection
                    self._bad_frame(line[6:22].decode("latin-1"))
                    continue
                self._abort("the relay sent a line that is not UTF-8")
                return
            self._line(text)

    def _line(self, text: str) -> None:
        parts = text.split(" ")
        kind = parts[0]
        if kind in ("OK", "ERR"):
            self._reply(kind, parts, text)
            return
        handler = self._EVENTS.get(kind)
        if handler is None:
            return  # an event from a newer relay: ignore (section 2 lets relays add)
        try:
            handler(self, parts)
        except (ValueError, IndexError, EncodingError):
            self.malformed += 1

    def _reply(self, kind: str, parts: list[str], text: str) -> None:
        if len(parts) < 2:
            self._abort("the relay sent a malformed reply")
            return
        command = parts[1]
        if kind == "ERR" and len(parts) < 3:
            self._abort("the relay sent a malformed error")
            return
        if command == "FRAME":  # never queued: route to the session (section 2)
            if kind == "ERR":  # ERR FRAME <code> <sid> <text>
                sid = parts[3] if len(parts) > 3 else "-"
                self.events.relay_frame_error(sid, RelayError(parts[2], " ".join(parts[4:]) or parts[2], "FRAME"))
            return
        if not self._pending:
            self._abort(f"the relay sent a reply to {command} that nobody asked for")
            return
        head = self._pending[0]
        if command != head.command and command != "-":
            self._abort(f"the relay answered {command} when {head.command} was expected")
            return
        self._pending.popleft()
        if head.deferred.called:  # cancelled by the caller (a timeout): nobody is waiting
            return
        if kind == "ERR":
            head.deferred.errback(Failure(RelayError(parts[2], " ".join(parts[3:]) or parts[2], head.command)))
            return
        try:
            # WHO's data lines come last in its parse input.
            result = head.parse(parts[2:] + ([head.data] if head.command == "WHO" else []))
        except (ValueError, IndexError, EncodingError):
            head.deferred.errback(Failure(RelayError(
                "bad-reply", "the relay's reply could not be understood", head.command)))
            return
        head.deferred.callback(result)

    # events ---

    def _user(self, parts: list[str]) -> None:
        if not self._pending or self._pending[0].command != "WHO" or len(parts) != 3:
            raise ValueError("USER outside WHO")
        if len(self._pending[0].data) >= MAX_WHO_LINES:
            self._abort(f"the relay sent more than {MAX_WHO_LINES} USER lines for one WHO")
            return
        self._pending[0].data.append(parts[1:])

    def _offered(self, parts: list[str]) -> None:
        _, sid, nick, key = parts
        self.events.relay_offered(_sid(sid), nick, b64decode(key, size=32))

    def _accepted(self, parts: list[str]) -> None:
        _, sid = parts
        self.events.relay_accepted(_sid(sid))

    def _closed(self, parts: list[str]) -> None:
        _, sid, reason = parts
        self.events.relay_closed(_sid(sid), reason)

    def _frame(self, parts: list[str]) -> None:
        sid = _sid(parts[1] if len(parts) > 1 else "")
        limit = self.hello_info.max_frame if self.hello_info else None
        try:
            if len(parts) != 3:
                raise EncodingError("not one payload")
            data = b64decode(parts[2], max_size=limit)
        except EncodingError:
            self._bad_frame(sid)
            return
        self.events.relay_frame(sid, data)

    def _bad_frame(self, sid: str) -> None:
        """A FRAME whose payload is not what a peer can send (not UTF-8, not
        strict base64, too big): only that session can have been harmed, so
        only that session fails. A line with no session id is counted."""
        try:
            sid = _sid(sid)
        except ValueError:
            self.malformed += 1
            return
        self.events.relay_frame_unreadable(sid)  # the peer's doing (the relay passes payloads on unread)

    def _mail(self, parts: list[str]) -> None:
        _, mail_id, sender, time, payload = parts
        self.events.relay_mail(_number(mail_id), sender, _number(time), b64decode(payload))

    def _notice(self, parts: list[str]) -> None:
        self.events.relay_notice(" ".join(parts[1:]))

    def _bye_event(self, parts: list[str]) -> None:
        self._bye = (parts[1], " ".join(parts[2:]) or parts[1])
        self.events.relay_bye(*self._bye)

    _EVENTS: ClassVar[dict[str, Callable[[RelayClientProtocol, list[str]], None]]] = {
        "USER": _user,
        "OFFERED": _offered,
        "ACCEPTED": _accepted,
        "CLOSED": _closed,
        "FRAME": _frame,
        "MAIL": _mail,
        "NOTICE": _notice,
        "BYE": _bye_event,
    }

    # -- outgoing --------------------------------------------------------------------

    def _write(self, line: str) -> None:
        data = line.encode("utf-8")
        if len(data) > self.splitter.max_line:
            raise ValueError(f"a line is at most {self.splitter.max_line} bytes")
        self._last_write = self.clock.seconds()
        self.transport.write(data + b"\n")

    def _command(self, command: str, args: tuple[str, ...], parse: Callable[[list[str]], Any]) -> Deferred:
        if not self.connected or self._lost_reason is not None:
            return fail(self._lost_reason or Disconnected("lost", "not connected"))
        for arg in args:
            if not arg or " " in arg or "\n" in arg or "\r" in arg:
                return fail(ValueError(f"{command}: arguments are single non-empty tokens"))
        try:
            self._write(" ".join((command, *args)))
        except ValueError as e:
            return fail(e)
        pending = _Pending(command, Deferred(), parse)
        self._pending.append(pending)
        return pending.deferred

    def hello(self) -> Deferred:
        """``HELLO 1``; fires with :class:`HelloInfo` and adopts its ``max_line``."""
        def parse(r: list[str]) -> HelloInfo:
            version, server_id, *options = r
            values = dict(o.split("=", 1) for o in options)
            info = HelloInfo(
                version, b64decode(server_id, size=32), _number(values.pop("max_line")),
                _number(values.pop("max_frame")), _number(values.pop("max_mail")), values,
            )
            self.hello_info = info
            self.splitter.max_line = min(info.max_line, MAX_LINE_CEILING)
            return info
        return self._command("HELLO", (PROTOCOL_VERSION,), parse)

    def register(self, nick: str, identity: Identity) -> Deferred:
        """``REGISTER`` then ``PROVE`` (with proof of work when asked); fires with :class:`Registered`."""
        if self.hello_info is None:
            return fail(RuntimeError("say hello() first"))
        server_id = self.hello_info.server_id
        started = self._command(
            "REGISTER",
            (nick, b64encode(identity.identity_public), b64encode(identity.static_public),
             b64encode(identity.static_sig)),
            lambda r: (r[0], b64decode(r[1], size=32), _number(r[2])),
        )

        def prove(claim: tuple[str, bytes, int]) -> Deferred:
            canonical, challenge, bits = claim
            args = [b64encode(identity.sign_registration(server_id, challenge, canonical))]
            if bits > MAX_POW_BITS:
                raise TooMuchWork(bits, MAX_POW_BITS)
            if bits:
                args.append(b64encode(solve_pow(challenge, bits)))
            return self._command("PROVE", tuple(args), lambda r: Registered(
                r[0], canonical, {"new": True, "known": False}[r[1]], _number(r[2])))
        return started.addCallback(prove)

    def lookup(self, nick: str) -> Deferred:
        return self._command("LOOKUP", (nick,), lambda r: LookupResult(
            r[0], b64decode(r[1], size=32), b64decode(r[2], size=32), b64decode(r[3], size=64),
            {"online": True, "offline": False}[r[4]]))

    def who(self) -> Deferred:
        def parse(r: list[Any]) -> WhoResult:
            shown, online, data = r
            users = [(nick, b64decode(key, size=32)) for nick, key in data]
            return WhoResult(users, _number(shown), _number(online))
        return self._command("WHO", (), parse)

    def offer(self, nick: str) -> Deferred:
        """Fires with ``(sid, nick)``."""
        return self._command("OFFER", (nick,), lambda r: (_sid(r[0]), r[1]))

    def accept(self, sid: str) -> Deferred:
        return self._command("ACCEPT", (sid,), _nothing)

    def decline(self, sid: str) -> Deferred:
        return self._command("DECLINE", (sid,), _nothing)

    def close(self, sid: str) -> Deferred:
        return self._command("CLOSE", (sid,), _nothing)

    def send_frame(self, sid: str, payload: bytes) -> None:
        """``FRAME``: no reply on success; a failure arrives as ``relay_frame_error``."""
        if not self.connected or self._lost_reason is not None:
            raise self._lost_reason or Disconnected("lost", "not connected")
        if self.hello_info is not None and len(payload) > self.hello_info.max_frame:
            raise ValueError(f"a frame is at most {self.hello_info.max_frame} bytes")
        self._write(f"FRAME {sid} {b64encode(payload)}")

    def mail(self, nick: str, payload: bytes) -> Deferred:
        """Fires with the relay's mail id."""
        return self._command("MAIL", (nick, b64encode(payload)), lambda r: _number(r[0]))

    def ack(self, mail_id: int) -> Deferred:
        return self._command("ACK", (str(mail_id),), _nothing)

    def ping(self, token: Optional[str] = None) -> Deferred:
        return self._command("PING", (token,) if token else (), lambda r: r[0] if r else None)

    def quit(self) -> Deferred:
        """``QUIT``: the relay answers ``BYE quit`` (not OK) and closes; fires when the connection is gone."""
        done = self.when_lost()
        if self.connected and self._lost_reason is None:
            self._write("QUIT")
        return done

    def when_lost(self) -> Deferred:
        """Fires (with None) once the connection is gone."""
        done: Deferred = Deferred()
        if self.connected:
            self._lost_waiters.append(done)
        else:
            done.callback(None)
        return done


def _nothing(r: list[str]) -> None:
    return None


def _number(text: str) -> int:
    return decimal(text)  # the one reader of wire integers (an EncodingError is a ValueError)


def _sid(text: str) -> str:
    if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("not a session id")
    return text
