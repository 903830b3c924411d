"""The relay's engine: connections, their lines and output, limits and time, sans I/O.

The hub owns no sockets and no reactor. An adapter hands it bytes and the
time (:meth:`Hub.receive`), tells it about connections coming and going and
about output backing up, and calls :meth:`Hub.tick` once a second. The hub
answers through each connection's :class:`~relaychat.server.connection.Link`.

Output is collected per connection and written once at the end of each
entry point, so a read holding fifty frames for one peer costs one write.

What the commands do is in components the hub holds, objects with their
own state that talk back through the hub's named methods (:meth:`send`,
:meth:`queue`, :meth:`bye`, :meth:`await_answer`, ...):
:class:`~relaychat.server.commands.Commands` (dispatch),
:class:`~relaychat.server.registration.Registration`,
:class:`~relaychat.server.sessions.Sessions` and
:class:`~relaychat.server.mailbox.Mailbox`.

``FRAME`` is the exception: its hot path (:meth:`Hub._handle`) is
hand-written here, with the byte checks of :mod:`relaychat.server.frames`,
because a frame is most of what a relay does and a line there costs a few
comparisons. A component costs a command one attribute load more than a
mixin would (tens of nanoseconds against the microseconds a command
takes), and no frame pays it; in return each piece can be read, and
tested, with only its own state in view.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from relaychat.server.bans import Bans
from relaychat.server.commands import Commands
from relaychat.server.connection import Connection, Life, Link, Session, State
from relaychat.server.directory import Directory, Elsewhere, LocalDirectory, SharedMail
from relaychat.server.frames import B64_VALUE, PAYLOAD_AT, check_frame, run_is_strict, tail_padding
from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy
from relaychat.server.mailbox import Mailbox
from relaychat.server.quotas import Quotas
from relaychat.server.registration import Registration
from relaychat.server.registry import Registry
from relaychat.server.sessions import Sessions
from relaychat.server.stats import Stats
from relaychat.server.store import Store
from relaychat.wire import messages as m
from relaychat.wire.codec import encoded_length
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.messages import FRAME_PREFIX
from relaychat.wire.refusals import ban_text
from relaychat.wire.tokens import one_line

DEFAULT_DRAIN_TEXT = "the relay is restarting"

# Enum members are slow to look up on their class (~70 ns in 3.11); receive() reads these per line.
_OPEN = Life.OPEN
_REGISTERED = State.REGISTERED


class Hub:
    def __init__(
        self,
        store: Store,
        limits: Limits = Limits(),
        mail: MailPolicy = MailPolicy(),
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
        directory: Optional[Directory] = None,
        names: NicknamePolicy = NicknamePolicy(),
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
        self.directory: Directory = directory if directory is not None else LocalDirectory(self.registry)
        self.elsewhere: Optional[Elsewhere] = None  # the other nodes of a cluster, if any
        self.shared_mail: Optional[SharedMail] = None  # a cluster's mailboxes, instead of the store's
        self.limits = limits
        self.mail = mail
        self.names = names
        self.quotas = Quotas(store, mail, names)
        self.server_id = store.server_id
        self.stats = Stats(started=now)
        self.bans = Bans()
        self.clients: set[Connection] = set()
        self.online: dict[str, Connection] = {}
        self.draining = False
        self.ready = True  # a cluster node is not until it has the cluster's relay id
        self.now = now  # the latest time an adapter told us
        self.drain_text = DEFAULT_DRAIN_TEXT  # what newcomers and leavers are told while draining
        self._drained_waiters: list[Deferred[None]] = []
        self._per_address: dict[str, int] = {}
        self._dirty: list[Connection] = []
        self._closing: list[Connection] = []
        self._frame_line_max = PAYLOAD_AT + encoded_length(limits.max_frame)
        # The fast path takes payloads whose every decoding fits max_frame;
        # the few longer ones (up to 2 bytes over) are checked exactly by forward_frame.
        self._fast_frame_max = PAYLOAD_AT + 4 * (limits.max_frame // 3)
        self.registration = Registration(self)
        self.sessions = Sessions(self)
        self.mailbox = Mailbox(self)
        self.commands = Commands(self)

    @property
    def offers(self) -> dict[bytes, Session]:
        """The sessions offered and not yet accepted, by id (:class:`Sessions` holds them)."""
        return self.sessions.offers

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
            self.bye(client, Bye.DRAINING, self.drain_text)
        elif not self.ready:
            self.bye(client, Bye.BUSY, "the relay is starting; try again")
        elif self.bans.banned("address", address, now):
            self.bye(client, Bye.BANNED, ban_text("address", self.bans.remaining("address", address, now)))
        elif len(self.clients) > limits.max_connections:
            self.bye(client, Bye.BUSY, "the relay is full")
        elif self._per_address[address] > limits.connections_per_address:
            self.bye(client, Bye.BUSY, "too many connections from your address")
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
        if not client.congested and not client.waiting:
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
        if backlog and not client.congested and not client.throttled and not client.waiting:
            limits = self.limits
            client.throttled = True  # a wake-up is pending
            if client.tokens < 1:
                wanted = min(len(backlog), limits.line_burst)
                client.link.wake_after((wanted - client.tokens) / limits.lines_per_second)
            else:  # stopped for our own output: go on once it has been handed to the transport
                client.link.wake_after(0.0)
        self.update_reading(client)

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
                    if PAYLOAD_AT < size <= fast_max and not (size - PAYLOAD_AT) & 3:
                        if line[-1] != 61:
                            continue
                        if line[-2] != 61:
                            if not value[line[-2]] & 3:
                                run_pads += 1
                                continue
                        elif not value[line[-3]] & 15:
                            run_pads += 2
                            continue
                self._end_run(client, run_session, lines[run_start:index], run_pads)  # type: ignore[arg-type]  # run_session is set whenever run_prefix is; no assert on the hot path
                run_prefix = None
            if client.life is not _OPEN or client.outbox_size > max_output:
                handled = index
                break
            if line is None:
                self.error(client, "-", Code.TOO_LONG, f"a line is at most {client.splitter.max_line} bytes")
                continue
            if registered and line.startswith(FRAME_PREFIX):
                # The hot path: forward the line as it came, without decoding.
                session = sessions.get(line[6:22])
                size = len(line)
                if (
                    session is not None
                    and session.open
                    and PAYLOAD_AT < size <= fast_max
                    and line[22] == 32
                    and not (size - PAYLOAD_AT) & 3
                ):
                    pads = tail_padding(line)
                    if pads >= 0:
                        run_start, run_pads, run_session = index, pads, session
                        run_prefix = line[:PAYLOAD_AT]
                        continue
                self.forward_frame(client, line)
                continue
            self.commands.handle(client, line, now)
            if client.waiting:  # the rest stays in the backlog until the answer comes
                handled = index + 1
                break
            registered = client.state is _REGISTERED
        if run_prefix is not None:
            self._end_run(client, run_session, lines[run_start:index + 1], run_pads)  # type: ignore[arg-type]  # run_session is set whenever run_prefix is; no assert on the hot path
        return handled

    def _end_run(self, client: Connection, session: Session, run: list[bytes], pads: int) -> None:
        """Forward a run of frames for one session in one piece, once every
        payload in it is strict base64 (:func:`~relaychat.server.frames.run_is_strict`);
        else the run is handled frame by frame by :meth:`forward_frame`,
        which forwards the good ones and refuses the others."""
        block = b"\n".join([*run, b""])
        if not run_is_strict(run, block, pads):
            for line in run:
                self.forward_frame(client, line)
            return
        peer = session.other(client)
        if not peer.outbox:
            self._dirty.append(peer)
        peer.outbox.append(block)
        peer.frames_out += len(run)
        peer.frame_bytes_out += len(block)
        session.frames += len(run)
        session.bytes += len(block)
        stats = self.stats
        stats.frames += len(run)
        stats.bytes += len(block)

    def forward_frame(self, client: Connection, line: bytes) -> None:
        """The hot path did not take this FRAME line: forward it if it is good
        once a CR before the LF is removed, else say why not."""
        try:
            session, clean = check_frame(line, client.sessions, self._frame_line_max, self.limits.max_frame)
        except ProtocolError as e:
            self.error(client, "FRAME", e.code, e.text)
            return
        peer = session.other(client)
        if not peer.outbox:
            self._dirty.append(peer)
        peer.outbox.append(clean + b"\n")
        peer.frames_out += 1
        peer.frame_bytes_out += len(clean) + 1
        session.frames += 1
        session.bytes += len(clean) + 1
        self.stats.frames += 1
        self.stats.bytes += len(clean) + 1

    def wake(self, client: Connection, now: float) -> None:
        """The pause asked for by ``wake_after`` is over."""
        self.now = now
        client.throttled = False
        if client.backlog and client.life is _OPEN:
            self._work(client, now)
            self._flush()
        else:
            self.update_reading(client)

    def refuse(self, client: Connection, code: Code, text: str) -> None:
        """An adapter found bad input the hub never saw (a WebSocket binary
        message): answer it like any other, violations counted."""
        if client.life is not _OPEN:
            return
        self.error(client, "-", code, text)
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
                self.update_reading(session.other(client))
        if not congested and client.backlog and client.life is _OPEN and not client.throttled:
            self._work(client, now)
            self._flush()
        else:
            self.update_reading(client)

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
                    self.bye(client, Bye.TIMEOUT, "registration took too long")
            elif client.reading and now - client.last_seen > limits.idle_timeout:
                self.bye(client, Bye.IDLE, "no activity")
            if client.congested and client.life is _OPEN and now - client.congested_at > limits.output_timeout:
                self.bye(client, Bye.SLOW, "you did not read what the relay sent")
        self.sessions.expire(now)
        self.bans.expire(now)
        self.quotas.sweep(now)
        self._flush()

    def purge_mail(self, now: float) -> int:
        """Delete mail past its expiry at wall time ``now``; how many (:meth:`Mailbox.purge`)."""
        return self.mailbox.purge(now)

    def adopt_server_id(self, server_id: bytes) -> None:
        """Use ``server_id`` (a cluster's, shared by every node) in ``HELLO``, and be ready."""
        self.server_id = server_id
        self.registration.renew_greeting()
        self.ready = True

    # == what a cluster node calls (relaychat.cluster; the work is Sessions') ==

    def stand_in(self, link: Link, node: str, display: str, identity_pub: bytes) -> Connection:
        """A Connection for ``display``, a user on ``node`` (:meth:`Sessions.stand_in`)."""
        return self.sessions.stand_in(link, node, display, identity_pub)

    def offer_from(self, peer: Connection, canon: str, sid: bytes, now: float) -> None:
        """``peer`` (a stand-in) offers a session to our ``canon``; raises what ``OFFER`` would answer."""
        self.now = now
        self.sessions.offer_from(peer, canon, sid, now)
        self._flush()

    def from_peer(self, node: str, local: Connection, data: bytes, now: float, frames: int = 0) -> None:
        """What ``node``'s hub wrote to its stand-in for our ``local`` (whole lines; ``frames`` of one session if > 0)."""
        self.now = now
        self.sessions.from_peer(node, local, data, frames)
        self._flush()

    # == what the operator's verbs are built on (relaychat.server.operator) ====

    def dismiss(self, client: Connection, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None:
        """Say ``BYE`` to ``client``, end its sessions (peers see ``session_reason``) and close it."""
        self.bye(client, bye, text, session_reason=session_reason)
        self._flush()

    def broadcast(self, message: m.Message) -> int:
        """Send ``message`` to every registered connection; returns how many."""
        for client in self.online.values():
            self.send(client, message)
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
            self.send(client, m.Notice(self.drain_text))
        self.sessions.withdraw_offers()
        for client in list(self.clients):
            if not client.sessions:
                self.bye(client, Bye.DRAINING, self.drain_text)
        self._flush()
        self._check_drained()

    def close_all(self) -> int:
        """The drain's grace is over: ``BYE draining`` to everyone still here. Returns how many."""
        stragglers = [c for c in self.clients if c.life is _OPEN]  # not those closing already
        for client in stragglers:
            self.bye(client, Bye.DRAINING, self.drain_text, session_reason=Closed.DRAINING)
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

    # == plumbing, and what the components call (send, queue, error, bye, ...) ==

    def await_answer(self, client: Connection, command: str, answer: "Deferred[Any]", then: Callable[[Any], None]) -> None:
        """Go on with ``then(result)`` once the directory's ``answer`` fires.

        An answer already there (the local directory) is used at once. Else
        ``client``'s further lines wait in its backlog, in order, and it is not read,
        until the answer comes: a client sees replies in the order it asked.
        A failure other than a :class:`ProtocolError` is ``ERR <command> unavailable``.
        """
        early: list[Any] = []

        def answered(result: Any) -> None:
            if not early:
                early.append(result)
            else:
                self._resume(client, command, result, then)

        answer.addBoth(answered)
        if early:
            self.commands.go_on(client, command, early[0], then)
            return
        early.append(None)  # from now on an answer comes later
        client.waiting = True
        self.update_reading(client)

    def _resume(self, client: Connection, command: str, result: Any, then: Callable[[Any], None]) -> None:
        client.waiting = False
        self.commands.go_on(client, command, result, then)
        if client.life is _OPEN and not client.waiting:
            self._work(client, self.now)  # the lines that came meanwhile, in order
        elif client.life is _OPEN:
            self.update_reading(client)
        self._flush()

    def send(self, client: Connection, message: m.Message) -> None:
        """Queue ``message`` for ``client`` (unless it is closing); written at the end of the entry point."""
        if client.life is not _OPEN:  # queue()'s body: every reply passes here, a call saved is 3% of a PING
            return
        if not client.outbox:
            self._dirty.append(client)
        data = message.to_line().encode("utf-8") + b"\n"
        client.outbox.append(data)
        client.outbox_size += len(data)

    def queue(self, client: Connection, data: bytes) -> None:
        """Queue whole lines for ``client``, counted in its output (``max_output``), unless it is closing."""
        if client.life is not _OPEN:
            return
        if not client.outbox:
            self._dirty.append(client)
        client.outbox.append(data)
        client.outbox_size += len(data)

    def error(self, client: Connection, command: str, code: Code, text: str) -> None:
        """Answer ``ERR <command> <code> <text>``; too many violations end the connection."""
        stats = self.stats
        stats.errors += 1
        stats.errors_by_code[code] = stats.errors_by_code.get(code, 0) + 1
        self.send(client, m.Err.of(command, code, text))
        if code.is_violation:
            client.violations += 1
            if client.violations >= self.limits.max_violations:
                self.stats.disconnects_for_violations += 1
                self.bye(client, Bye.VIOLATIONS, "too many protocol errors")

    def bye(self, client: Connection, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None:
        """Say goodbye, end the client's sessions now, and close once output is written."""
        if client.life is not _OPEN:
            return
        self.send(client, m.Goodbye(bye.value, text))
        self.stats.byes[bye] = self.stats.byes.get(bye, 0) + 1
        self._closing.append(client)
        client.life = Life.CLOSING
        client.backlog = []
        self._leave(client, session_reason)

    def _leave(self, client: Connection, reason: Closed) -> None:
        """``client`` takes part no more: offline, its sessions ended. Idempotent."""
        if client.nick is not None and self.online.get(client.nick) is client:
            del self.online[client.nick]
            self.store.note_use(client.nick, self.wall())  # saved with the next store check, no I/O here
            if self.elsewhere is not None:
                self.elsewhere.left(client)
        for session in list(client.sessions.values()):
            self.sessions.end(session, reason, notify=(session.other(client),))

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

    def _flush(self) -> None:
        """Write each connection's collected output in one call, then close who must go."""
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for client in dirty:
                if client.outbox:
                    data = b"".join(client.outbox)
                    client.outbox.clear()
                    client.outbox_size = 0
                    client.link.write(data)  # a stand-in's link reads frames_out, frame_bytes_out
                    client.frames_out = client.frame_bytes_out = 0
        while self._closing:
            closing, self._closing = self._closing, []
            for client in closing:
                client.link.close()

    def update_reading(self, client: Connection) -> None:
        """Read from ``client`` only if it is within its rate and no peer is backed up."""
        # A connection whose own output is backed up is not paused at once (a
        # slow reader that sends nothing would cost two epoll changes for every
        # fill and drain): the first read that arrives meanwhile waits in the
        # backlog, and that pauses it. One waiting for a directory answer is not read.
        reading = not (client.throttled or client.backlog or client.waiting) and client.life is _OPEN and not any(
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
