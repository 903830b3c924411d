"""The relay's engine: every connection, command, session and limit, sans I/O.

The hub owns no sockets and no reactor. An adapter hands it bytes and the
time (:meth:`Hub.receive`), tells it about connections coming and going and
about output backing up, and calls :meth:`Hub.tick` once a second. The hub
answers through each connection's :class:`~relaychat.server.connection.Link`.

Output is collected per connection and written once at the end of each
entry point, so a read holding fifty frames for one peer costs one write.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from twisted.logger import Logger

from twisted.internet.defer import Deferred

from relaychat.server.bans import Bans
from relaychat.server.connection import Connection, Life, Link, Session, State
from relaychat.server.limits import FRAME_LINE_OVERHEAD, Limits, MailPolicy
from relaychat.server.frames import B64_VALUE, FrameForwarding, tail_padding
from relaychat.server.mailbox import MailCommands
from relaychat.server.registration import RegistrationCommands
from relaychat.server.registry import Registry
from relaychat.server.sessions import SessionCommands
from relaychat.server.store import Store
from relaychat.wire import messages as m
from relaychat.wire.codec import encoded_length
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.lines import strip_cr
from relaychat.wire.messages import FRAME_PREFIX, PROTOCOL_VERSION
from relaychat.wire.nicknames import canonical
from relaychat.wire.tokens import SID_LENGTH, one_line

DEFAULT_DRAIN_TEXT = "the relay is restarting"

log = Logger(namespace="relaychat")

_PAYLOAD_AT = FRAME_LINE_OVERHEAD  # len(FRAME_PREFIX) + SID_LENGTH + 1
assert _PAYLOAD_AT == len(FRAME_PREFIX) + SID_LENGTH + 1
# Enum members are slow to look up on their class (~70 ns in 3.11); receive() reads these per line.
_OPEN = Life.OPEN
_REGISTERED = State.REGISTERED


@dataclass
class Stats:
    """Counters for the operator; totals only, never contents."""

    started: float
    connections_total: int = 0
    registrations: int = 0
    sessions_opened: int = 0
    frames: int = 0
    bytes: int = 0
    errors: int = 0
    disconnects_for_violations: int = 0
    mail_stored: int = 0
    errors_by_code: dict[Code, int] = field(default_factory=dict)  # ERR replies by code
    byes: dict[Bye, int] = field(default_factory=dict)  # why the relay ended connections
    extra: dict[str, int] = field(default_factory=dict)


Handler = Callable[[Connection, Any, float], None]  # the message is of the command's class


class Hub(RegistrationCommands, SessionCommands, MailCommands, FrameForwarding):
    def __init__(
        self,
        store: Store,
        limits: Limits = Limits(),
        mail: MailPolicy = MailPolicy(),
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``now`` and every time an adapter passes in are from a monotonic
        clock: they measure durations (time-outs, rates, bans), which a
        change of the system clock must not stretch or end. ``wall`` gives
        the calendar time, used only where a user sees it or it is stored:
        mail timestamps (and mail expiry, which compares them), when a
        nickname was bound."""
        self.wall = wall
        self.store = store
        self.registry = Registry(store)
        self.limits = limits
        self.mail = mail
        self.server_id = store.server_id
        self.stats = Stats(started=now)
        self.bans = Bans()
        self.clients: set[Connection] = set()
        self.online: dict[str, Connection] = {}
        self.offers: dict[bytes, Session] = {}
        self.draining = False
        self.now = now  # the latest time an adapter told us
        self.drain_text = DEFAULT_DRAIN_TEXT  # what newcomers and leavers are told while draining
        self._drained_waiters: list[Deferred[None]] = []
        self._per_address: dict[str, int] = {}
        self._dirty: list[Connection] = []
        self._closing: list[Connection] = []
        self._frame_line_max = _PAYLOAD_AT + encoded_length(limits.max_frame)
        # The fast path takes payloads whose every decoding fits max_frame;
        # the few longer ones (up to 2 bytes over) are checked exactly by _frame_error.
        self._fast_frame_max = _PAYLOAD_AT + 4 * (limits.max_frame // 3)
        self._hello = m.HelloOk(PROTOCOL_VERSION, self.server_id, limits.max_line, limits.max_frame, mail.max_mail)
        anyone = frozenset(State)
        registered = frozenset({State.REGISTERED})
        self._handlers: dict[str, tuple[Optional[Handler], frozenset[State]]] = {
            "HELLO": (self._hello_cmd, frozenset({State.CONNECTED})),
            "PING": (self._ping, anyone),
            "QUIT": (self._quit, anyone),
            "REGISTER": (self._register, frozenset({State.GREETED, State.CHALLENGED})),
            "PROVE": (self._prove, frozenset({State.CHALLENGED})),
            # The directory is for registered users: WHO and LOOKUP answer far
            # more than they cost to ask, and need not serve anonymous scrapers.
            "LOOKUP": (self._lookup, registered),
            "WHO": (self._who, registered),
            "OFFER": (self._offer, registered),
            "ACCEPT": (self._accept, registered),
            "DECLINE": (self._decline, registered),
            "CLOSE": (self._close, registered),
            "FRAME": (None, registered),  # receive()'s hot path forwards it; _command refuses a bare one
            "MAIL": (self._mail, registered),
            "ACK": (self._ack, registered),
        }

    # == entry points used by adapters ======================================

    def connect(self, link: Link, address: str, now: float) -> Connection:
        """A connection arrived; it may be refused at once with ``BYE``."""
        self.now = now
        limits = self.limits
        # Before registration a line need only carry REGISTER: a connection
        # that has proved nothing may not make us hold max_line bytes.
        client = Connection(link, address, limits.max_line_unregistered, limits.line_burst, now)
        self.clients.add(client)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.stats.connections_total += 1
        if self.draining:
            self._bye(client, Bye.DRAINING, self.drain_text)
        elif self.bans.banned("address", address, now):
            self._bye(client, Bye.BANNED, "this address is banned")
        elif len(self.clients) > limits.max_connections:
            self._bye(client, Bye.BUSY, "the relay is full")
        elif self._per_address[address] > limits.connections_per_address:
            self._bye(client, Bye.BUSY, "too many connections from your address")
        self._flush()
        return client

    def receive(self, client: Connection, data: bytes, now: float) -> None:
        """Bytes arrived from ``client``: handle the complete lines in them,
        as many as its line budget and its own unsent output allow.

        The rest wait, in order, in ``client.backlog`` (reading stays paused
        meanwhile, so that is at most one read) until tokens refill
        (:meth:`wake`) or the output drains (:meth:`set_congested`).
        """
        self.now = now
        if client.life is not _OPEN:
            return
        client.bytes_in += len(data)
        lines = client.splitter.feed(data)
        if not lines:
            return
        client.last_seen = now
        if client.backlog:
            client.backlog.extend(lines)
        else:
            client.backlog = lines
        self._work(client, now)
        self._flush()

    def _work(self, client: Connection, now: float) -> None:
        """Handle waiting lines up to the tokens ``client`` has and until its
        own output passes ``max_output``; arrange to go on later."""
        backlog = client.backlog
        if not client.congested:
            self._refill(client, now)
            allowed = int(client.tokens)
            if allowed > 0:
                done = self._handle(client, backlog if len(backlog) <= allowed else backlog[:allowed], now)
                client.tokens -= done
                client.lines_in += done
                backlog = client.backlog = backlog[done:] if done < len(backlog) else []
        if client.life is not _OPEN:
            client.backlog = []
            return
        if backlog and not client.congested and not client.throttled:
            limits = self.limits
            client.throttled = True  # a wake-up is pending
            if client.tokens < 1:
                wanted = min(len(backlog), limits.line_burst)
                client.link.wake_after((wanted - client.tokens) / limits.lines_per_second)
            else:  # stopped for our own output: go on once it has been handed to the transport
                client.link.wake_after(0.0)
        self._update_reading(client)

    def _handle(self, client: Connection, lines: list[Optional[bytes]], now: float) -> int:
        """Handle ``lines`` in order; returns how many were handled (fewer
        once the connection is closing or its own output passes ``max_output``)."""
        fast_max = self._fast_frame_max
        max_output = self.limits.max_output
        registered = client.state is _REGISTERED
        sessions = client.sessions
        value = B64_VALUE
        # A run: consecutive frames for one session. Its first frame takes the
        # full path below; the rest need only match "FRAME <sid> ". Per line
        # only the length and the padding at its end are looked at; the
        # payloads of the whole run are checked in one C pass when the run
        # ends (_end_run). Nothing but a command can change the session, the
        # peer or our state, so a run ends at the first other line.
        run_prefix: Optional[bytes] = None
        run_session: Optional[Session] = None
        run_start = run_pads = 0
        index = -1
        handled = len(lines)
        for line in lines:
            index += 1
            if run_prefix is not None:
                if line is not None and line.startswith(run_prefix):
                    size = len(line)
                    if _PAYLOAD_AT < size <= fast_max and not (size - _PAYLOAD_AT) & 3:
                        if line[-1] != 61:
                            continue
                        if line[-2] != 61:
                            if not value[line[-2]] & 3:
                                run_pads += 1
                                continue
                        elif not value[line[-3]] & 15:
                            run_pads += 2
                            continue
                self._end_run(client, run_session, lines[run_start:index], run_pads)
                run_prefix = None
            if client.life is not _OPEN or client.outbox_size > max_output:
                handled = index
                break
            if line is None:
                self._error(client, "-", Code.TOO_LONG, f"a line is at most {client.splitter.max_line} bytes")
                continue
            if registered and line.startswith(FRAME_PREFIX):
                # The hot path: forward the line as it came, without decoding.
                session = sessions.get(line[6:22])
                size = len(line)
                if (
                    session is not None
                    and session.open
                    and _PAYLOAD_AT < size <= fast_max
                    and line[22] == 32
                    and not (size - _PAYLOAD_AT) & 3
                ):
                    pads = tail_padding(line)
                    if pads >= 0:
                        run_start, run_pads, run_session = index, pads, session
                        run_prefix = line[:_PAYLOAD_AT]
                        continue
                self._frame_error(client, line)
                continue
            self._command(client, line, now)
            registered = client.state is _REGISTERED
        if run_prefix is not None:
            self._end_run(client, run_session, lines[run_start:index + 1], run_pads)
        return handled

    def wake(self, client: Connection, now: float) -> None:
        """The pause asked for by ``wake_after`` is over."""
        self.now = now
        client.throttled = False
        if client.backlog and client.life is _OPEN:
            self._work(client, now)
            self._flush()
        else:
            self._update_reading(client)

    def refuse(self, client: Connection, code: Code, text: str) -> None:
        """An adapter found bad input the hub never saw (a WebSocket binary
        message): answer it like any other, violations counted."""
        if client.life is not _OPEN:
            return
        self._error(client, "-", code, text)
        self._flush()

    def set_congested(self, client: Connection, congested: bool, now: float) -> None:
        """``client``'s output is backed up (or drained): stop (or resume)
        reading it and its peers. Backed up for longer than
        ``output_timeout`` ends it (:meth:`tick`)."""
        self.now = now
        if congested == client.congested:
            return
        client.congested = congested
        if congested:
            client.congested_at = now
        for session in client.sessions.values():
            if session.open:
                self._update_reading(session.other(client))
        if not congested and client.backlog and client.life is _OPEN and not client.throttled:
            self._work(client, now)
            self._flush()
        else:
            self._update_reading(client)

    def disconnect(self, client: Connection, now: float) -> None:
        """The connection is gone; tell its peers. Safe to call more than once."""
        self.now = now
        self._drop(client, Closed.GONE)
        self._flush()

    def tick(self, now: float) -> None:
        """Enforce every time limit; call about once a second."""
        self.now = now
        limits = self.limits
        for client in list(self.clients):
            if client.life is not _OPEN:
                continue
            if client.state is not State.REGISTERED:
                if now - client.connected_at > limits.registration_timeout:
                    self._bye(client, Bye.TIMEOUT, "registration took too long")
            elif client.reading and now - client.last_seen > limits.idle_timeout:
                self._bye(client, Bye.IDLE, "no activity")
            if client.congested and client.life is _OPEN and now - client.congested_at > limits.output_timeout:
                self._bye(client, Bye.SLOW, "you did not read what the relay sent")
        for session in list(self.offers.values()):
            if now - session.created > limits.offer_timeout:
                self._end_session(session, Closed.TIMEOUT, notify=(session.initiator, session.responder))
        self.bans.expire(now)
        self._flush()

    def purge_mail(self, now: float) -> int:
        """Delete mail older than the configured expiry at wall time ``now``; returns how many."""
        return self.store.purge_mail(now - self.mail.expiry_seconds)

    # == what the operator's verbs are built on (relaychat.server.operator) ====

    def dismiss(self, client: Connection, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None:
        """Say ``BYE`` to ``client``, end its sessions (peers see ``session_reason``) and close it."""
        self._bye(client, bye, text, session_reason=session_reason)
        self._flush()

    def broadcast(self, message: m.Message) -> int:
        """Send ``message`` to every registered connection; returns how many."""
        for client in self.online.values():
            self._send(client, message)
        self._flush()
        return len(self.online)

    def drain(self, text: str = DEFAULT_DRAIN_TEXT) -> None:
        """Refuse new sessions and connections, and let each client go once its sessions end.

        New connections are still accepted, and answered ``BYE draining
        <text>``: a user sees the operator's words, not "connection refused".
        """
        self.draining = True
        self.drain_text = one_line(text)
        for client in list(self.online.values()):
            self._send(client, m.Notice(self.drain_text))
        for session in list(self.offers.values()):
            self._end_session(session, Closed.DRAINING, notify=(session.initiator, session.responder))
        for client in list(self.clients):
            if not client.sessions:
                self._bye(client, Bye.DRAINING, self.drain_text)
        self._flush()
        self._check_drained()

    def close_all(self) -> int:
        """The drain's grace is over: ``BYE draining`` to everyone still here. Returns how many."""
        stragglers = [c for c in self.clients if c.life is _OPEN]  # not those closing already
        for client in stragglers:
            self._bye(client, Bye.DRAINING, self.drain_text, session_reason=Closed.DRAINING)
        self._flush()
        self._check_drained()
        return len(stragglers)

    def undrain(self) -> None:
        """Serve again after :meth:`drain`: new connections and sessions are accepted."""
        self.draining = False
        self.drain_text = DEFAULT_DRAIN_TEXT

    def when_drained(self) -> Deferred[None]:
        """Fires (with None) once a drain has let every client go; at once if it has."""
        done: Deferred[None] = Deferred()
        if self.draining and not self.clients:
            done.callback(None)
        else:
            self._drained_waiters.append(done)
        return done

    # == command dispatch ====================================================

    def _command(self, client: Connection, line: bytes, now: float) -> None:
        try:
            text = strip_cr(line).decode("utf-8")
        except UnicodeDecodeError:
            self._error(client, "-", Code.BAD_ENCODING, "a line must be UTF-8")
            return
        if "\x00" in text:
            self._error(client, "-", Code.BAD_ENCODING, "a line must not contain NUL")
            return
        parts = text.split(" ")
        name = parts[0]
        if not name:  # an empty line, or one starting with a space
            self._error(client, "-", Code.SYNTAX, "a line starts with a command")
            return
        entry = self._handlers.get(name)
        if entry is None:
            shown = name if name.isascii() and name.isalpha() and name.isupper() and len(name) <= 16 else "-"
            self._error(client, shown, Code.UNKNOWN, "no such command")
            return
        handler, allowed = entry
        if client.state not in allowed:
            self._error(client, name, Code.ORDER, _ORDER_HINTS[client.state])
            return
        if "" in parts:
            self._error(client, name, Code.SYNTAX, "tokens are separated by exactly one space")
            return
        if handler is None:
            self._frame_error(client, line)
            return
        try:
            message = m.COMMANDS[name].from_tokens(parts[1:])
        except ProtocolError as e:
            if name == "PROVE":  # the challenge is spent by a malformed PROVE too
                client.claim = None
                client.state = State.GREETED
            self._error(client, name, e.code, e.text)
            return
        try:
            handler(client, message, now)
        except ProtocolError as e:
            self._error(client, name, e.code, e.text)
        except Exception as e:  # a bug: answer it, keep the connection, log it once
            self._internal(client, name, e)

    def _internal(self, client: Connection, name: str, error: Exception) -> None:
        """An unexpected exception in a handler: ``ERR <CMD> internal``.

        The log names the exception's type and where it was raised, never its
        message or any value: those may hold a key or a payload. A half-done
        registration is abandoned, so the connection is in a state it could
        reach by itself.
        """
        where = "".join(traceback.format_tb(error.__traceback__))
        log.error("relaychat: internal error in {command}: {kind}\n{where}", command=name,
                  kind=type(error).__qualname__, where=where)
        if client.state is State.CHALLENGED:
            client.claim = None
            client.state = State.GREETED
        self.stats.extra["internal_errors"] = self.stats.extra.get("internal_errors", 0) + 1
        self._error(client, name, Code.INTERNAL, "the relay failed to handle this; it had no effect")

    # -- directory -------------------------------------------------------------

    def _lookup(self, client: Connection, lookup: m.Lookup, now: float) -> None:
        binding = self.registry.find(lookup.nick)
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        online = binding.canonical in self.online
        self._send(client, m.LookupOk(
            binding.display, binding.identity_pub, binding.static_pub, binding.static_sig, online))

    def _who(self, client: Connection, who: m.Who, now: float) -> None:
        shown = 0
        for other in self.online.values():
            if shown >= self.limits.max_who:
                break
            assert other.display is not None and other.identity_pub is not None
            self._send(client, m.User(other.display, other.identity_pub))
            shown += 1
        self._send(client, m.WhoOk(shown, len(self.online)))

    def _ping(self, client: Connection, ping: m.Ping, now: float) -> None:
        self._send(client, m.PingOk(ping.token))

    def _quit(self, client: Connection, quit: m.Quit, now: float) -> None:
        self._bye(client, Bye.QUIT, "goodbye")

    # == plumbing =============================================================

    def _send(self, client: Connection, message: m.Message) -> None:
        if client.life is not _OPEN:
            return
        if not client.outbox:
            self._dirty.append(client)
        data = message.to_line().encode("utf-8") + b"\n"
        client.outbox.append(data)
        client.outbox_size += len(data)

    def _error(self, client: Connection, command: str, code: Code, text: str) -> None:
        stats = self.stats
        stats.errors += 1
        stats.errors_by_code[code] = stats.errors_by_code.get(code, 0) + 1
        self._send(client, m.Err.of(command, code, text))
        if code.is_violation:
            client.violations += 1
            if client.violations >= self.limits.max_violations:
                self.stats.disconnects_for_violations += 1
                self._bye(client, Bye.VIOLATIONS, "too many protocol errors")

    def _bye(self, client: Connection, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None:
        """Say goodbye, end the client's sessions now, and close once output is written."""
        if client.life is not _OPEN:
            return
        self._send(client, m.Goodbye(bye.value, text))
        self.stats.byes[bye] = self.stats.byes.get(bye, 0) + 1
        self._closing.append(client)
        client.life = Life.CLOSING
        client.backlog = []
        self._leave(client, session_reason)

    def _leave(self, client: Connection, reason: Closed) -> None:
        """``client`` takes part no more: offline, its sessions ended. Idempotent."""
        if client.nick is not None and self.online.get(client.nick) is client:
            del self.online[client.nick]
        for session in list(client.sessions.values()):
            self._end_session(session, reason, notify=(session.other(client),))

    def _drop(self, client: Connection, reason: Closed) -> None:
        """The connection is gone: out of every table, its sessions ended. Until
        then a CLOSING connection still counts towards the connection limits:
        it still holds a socket."""
        if client.life is Life.GONE:
            return
        client.life = Life.GONE
        self._leave(client, reason)
        self.clients.discard(client)
        remaining = self._per_address.get(client.address, 1) - 1
        if remaining:
            self._per_address[client.address] = remaining
        else:
            self._per_address.pop(client.address, None)
        self._check_drained()

    def _end_session(self, session: Session, reason: Closed, notify: Iterable[Connection]) -> None:
        session.initiator.sessions.pop(session.sid, None)
        session.responder.sessions.pop(session.sid, None)
        self.offers.pop(session.sid, None)
        line = m.SessionClosed(session.sid.decode("ascii"), reason.value)
        for client in notify:
            self._send(client, line)
        for client in (session.initiator, session.responder):
            if client.life is _OPEN:
                self._update_reading(client)
                if self.draining and not client.sessions:
                    self._bye(client, Bye.DRAINING, self.drain_text)

    def _flush(self) -> None:
        """Write each connection's collected output in one call, then close who must go."""
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for client in dirty:
                if client.outbox:
                    data = b"".join(client.outbox)
                    client.outbox.clear()
                    client.outbox_size = 0
                    client.link.write(data)
        while self._closing:
            closing, self._closing = self._closing, []
            for client in closing:
                client.link.close()

    def _update_reading(self, client: Connection) -> None:
        """Read from ``client`` only if it is within its rate and no peer is backed up."""
        # A connection whose own output is backed up is not paused at once (a
        # slow reader that sends nothing would cost two epoll changes for every
        # fill and drain): the first read that arrives meanwhile waits in the
        # backlog, and that pauses it.
        reading = not (client.throttled or client.backlog) and client.life is _OPEN and not any(
            s.open and s.other(client).congested for s in client.sessions.values()
        )
        if reading != client.reading:
            client.reading = reading
            if reading:
                client.last_seen = self.now  # time spent paused is not idleness
            client.link.set_reading(reading)

    def _refill(self, client: Connection, now: float) -> None:
        limits = self.limits
        client.tokens = min(
            float(limits.line_burst), client.tokens + (now - client.tokens_at) * limits.lines_per_second
        )
        client.tokens_at = now

    def _check_drained(self) -> None:
        if self.draining and not self.clients and self._drained_waiters:
            waiters, self._drained_waiters = self._drained_waiters, []
            for done in waiters:
                done.callback(None)


_ORDER_HINTS = {
    State.CONNECTED: "say HELLO first",
    State.GREETED: "REGISTER first",
    State.CHALLENGED: "PROVE, or REGISTER again",
    State.REGISTERED: "already registered; reconnect to change nickname",
}
