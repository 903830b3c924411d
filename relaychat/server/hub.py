"""The relay's engine: every connection, command, session and limit, sans I/O.

The hub owns no sockets and no reactor. An adapter hands it bytes and the
time (:meth:`Hub.receive`), tells it about connections coming and going and
about output backing up, and calls :meth:`Hub.tick` once a second. The hub
answers through each connection's :class:`~relaychat.server.connection.Link`.

Output is collected per connection and written once at the end of each
entry point, so a read holding fifty frames for one peer costs one write.
"""

from __future__ import annotations

import binascii
import os
import secrets
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import pybase64
from twisted.logger import Logger

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from relaychat.crypto.identity import KeyFormatError, pow_ok, verify_registration, verify_static_sig
from relaychat.server.bans import Bans, key_id
from relaychat.server.connection import Claim, Connection, Life, Link, Session, State
from relaychat.server.directory import RECIPIENT_FULL, SENDER_FULL, Directory, Elsewhere, LocalDirectory, SharedMail
from relaychat.server.limits import FRAME_LINE_OVERHEAD, Limits, MailPolicy, NicknamePolicy
from relaychat.server.quotas import Quotas
from relaychat.server.registry import Registry
from relaychat.server.store import Binding, Mail, StorageError, Store
from relaychat.wire import messages as m
from relaychat.wire.codec import encoded_length
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.lines import strip_cr
from relaychat.wire.messages import FRAME_PREFIX, PROTOCOL_VERSION
from relaychat.wire.nicknames import canonical
from relaychat.wire.refusals import ban_text
from relaychat.wire.tokens import SID_LENGTH, one_line, safe_sid

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
    storage_errors: int = 0
    errors_by_code: dict[Code, int] = field(default_factory=dict)  # ERR replies by code
    byes: dict[Bye, int] = field(default_factory=dict)  # why the relay ended connections
    extra: dict[str, int] = field(default_factory=dict)


Handler = Callable[[Connection, Any, float], None]  # the message is of the command's class


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
        self.offers: dict[bytes, Session] = {}
        self.draining = False
        self.ready = True  # a cluster node is not until it has the cluster's relay id
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
        elif not self.ready:
            self._bye(client, Bye.BUSY, "the relay is starting; try again")
        elif self.bans.banned("address", address, now):
            self._bye(client, Bye.BANNED, ban_text("address", self.bans.remaining("address", address, now)))
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
        self._update_reading(client)

    def _handle(self, client: Connection, lines: list[Optional[bytes]], now: float) -> int:
        """Handle ``lines`` in order; returns how many were handled (fewer
        once the connection is closing or its own output passes ``max_output``)."""
        fast_max = self._fast_frame_max
        max_output = self.limits.max_output
        registered = client.state is _REGISTERED
        sessions = client.sessions
        value = _B64_VALUE
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
                self._end_run(client, run_session, lines[run_start:index], run_pads)  # type: ignore[arg-type]
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
                    pads = _tail_padding(line)
                    if pads >= 0:
                        run_start, run_pads, run_session = index, pads, session
                        run_prefix = line[:_PAYLOAD_AT]
                        continue
                self._frame_error(client, line)
                continue
            self._command(client, line, now)
            if client.waiting:  # the rest stays in the backlog until the answer comes
                handled = index + 1
                break
            registered = client.state is _REGISTERED
        if run_prefix is not None:
            self._end_run(client, run_session, lines[run_start:index + 1], run_pads)  # type: ignore[arg-type]
        return handled

    def _end_run(self, client: Connection, session: Session, run: list[bytes], pads: int) -> None:
        """Forward a run of frames for one session in one piece, once every
        payload in it is strict base64.

        Deleting the alphabet from the run must leave each line's two
        prefix spaces and LF, and the ``pads`` padding characters the loop
        found at line ends: one C pass (``bytes.translate``) over the run,
        with no copy of a payload. Anything else in it (a NUL, ESC, CR, a
        byte that is not ASCII, a space, padding inside a payload) and the
        run is handled frame by frame by :meth:`_frame_error`, which
        forwards the good ones and refuses the others.
        """
        block = b"\n".join([*run, b""])
        if len(block) > _BULK_LINE * len(run):
            # Big frames: pybase64's SIMD decoder checks a payload about ten
            # times faster than translate can (0.06 against 0.8 ns a byte),
            # though a call costs more than translate does on a small frame.
            good = all(_strict_base64(line) for line in run)
        else:
            rest = block.translate(None, _B64_ALPHABET)
            good = len(rest) == 3 * len(run) + pads and rest.count(b"=") == pads
        if not good:
            for line in run:
                self._frame_error(client, line)
            return
        peer = session.other(client)
        if not peer.outbox:
            self._dirty.append(peer)
        peer.outbox.append(block)
        stats = self.stats
        session.frames += len(run)
        session.bytes += len(block)
        stats.frames += len(run)
        stats.bytes += len(block)

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
        self.quotas.sweep(now)
        self._flush()

    def purge_mail(self, now: float) -> int:
        """Delete mail older than the configured expiry at wall time ``now``; returns how many
        (0 when the mail is shared: it answers later)."""
        if self.shared_mail is not None:
            self.shared_mail.purge(now - self.mail.expiry_seconds).addErrback(lambda _: None)
            return 0
        return self.store.purge_mail(now - self.mail.expiry_seconds)

    def adopt_server_id(self, server_id: bytes) -> None:
        """Use ``server_id`` (a cluster's, shared by every node) in ``HELLO``, and be ready."""
        self.server_id = server_id
        self._hello = m.HelloOk(PROTOCOL_VERSION, server_id, self.limits.max_line, self.limits.max_frame,
                                self.mail.max_mail)
        self.ready = True

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
        except StorageError as e:  # the store has logged it; the connection carries on
            self.stats.storage_errors += 1
            self._error(client, name, Code.UNAVAILABLE, str(e))
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

    # -- greeting and registration -------------------------------------------

    def _hello_cmd(self, client: Connection, hello: m.Hello, now: float) -> None:
        if PROTOCOL_VERSION not in hello.versions:
            raise ProtocolError(Code.VERSION, f"supported={PROTOCOL_VERSION}")
        client.state = State.GREETED
        self._send(client, self._hello)

    def _register(self, client: Connection, register: m.Register, now: float) -> None:
        canon = canonical(register.nick)
        self._refuse_banned(canon, register.identity_pub, now)
        try:
            certified = verify_static_sig(register.identity_pub, register.static_pub, register.static_sig)
        except KeyFormatError as e:  # not a usable point: small order, off the curve
            raise ProtocolError(Code.BAD_KEY, str(e)) from None
        if not certified:
            raise ProtocolError(Code.BAD_SIGNATURE, "static_sig does not verify")
        self._await(client, "REGISTER", self.directory.check_claim(register.nick, register.identity_pub),
                    lambda existing: self._challenge(client, register, canon, existing))

    def _challenge(self, client: Connection, register: m.Register, canon: str, existing: Any) -> None:
        if existing is None:
            self.quotas.check_new_name(client.address, self.now)  # before the client works for it
        pow_bits = 0 if existing is not None else self.limits.pow_bits
        challenge = os.urandom(32)
        client.claim = Claim(register.nick, canon, register.identity_pub, register.static_pub,
                             register.static_sig, challenge, pow_bits)
        client.state = State.CHALLENGED
        self._send(client, m.RegisterOk(canon, challenge, pow_bits))

    def _refuse_banned(self, canon: str, identity_pub: bytes, now: float) -> None:
        for kind, value in (("nick", canon), ("key", key_id(identity_pub))):
            if self.bans.banned(kind, value, now):
                raise ProtocolError(Code.BANNED, ban_text(kind, self.bans.remaining(kind, value, now)))

    def _prove(self, client: Connection, prove: m.Prove, now: float) -> None:
        claim = client.claim
        assert claim is not None
        client.claim = None  # the challenge is spent, whatever happens next
        client.state = State.GREETED
        if not verify_registration(
            self.server_id, claim.challenge, claim.identity_pub, claim.static_pub,
            claim.static_sig, claim.canonical, prove.signature,
        ):
            raise ProtocolError(Code.BAD_SIGNATURE, "the signature does not verify")
        if claim.pow_bits:
            nonce = prove.pow_nonce
            if not nonce or not pow_ok(claim.challenge, nonce, claim.pow_bits):
                raise ProtocolError(Code.POW, f"proof of work of {claim.pow_bits} bits needed")
        self._refuse_banned(claim.canonical, claim.identity_pub, now)  # a ban may have come since REGISTER
        if self.shared_mail is None and self.registry.find(claim.canonical) is None:
            self.quotas.check_new_name(client.address, now)  # others from the address may have bound since
        # Stored: a calendar time, not the monotonic clock of this process.
        bound = self.directory.bind(claim.display, claim.identity_pub, claim.static_pub, claim.static_sig,
                                    self.wall())
        shared = self.shared_mail
        if shared is not None:  # the mail waiting, before we say yes: a failure is then a plain refusal
            bound.addCallback(lambda result: shared.pending(result[0].canonical).addCallback(
                lambda mails: (*result, mails)))
        self._await(client, "PROVE", bound, lambda result: self._registered(client, *result))

    def _registered(self, client: Connection, binding: Binding, new: bool, pending: Optional[list[Mail]] = None) -> None:
        if new:
            self.quotas.spent_new_name(client.address, self.now)
        self.store.note_use(binding.canonical, self.wall())
        # The last storage calls: if they fail, nothing below has changed.
        if pending is None:
            pending = self.store.pending_mail(binding.canonical)
        shown: dict[str, str] = {}  # every event names people in their display form
        for mail in pending:
            if mail.sender not in shown:
                sender = self.registry.find(mail.sender) if mail.sender_display is None else None
                shown[mail.sender] = sender.display if sender is not None else mail.sender_display or mail.sender
        previous = self.online.get(binding.canonical)
        if previous is not None:
            self._bye(previous, Bye.REPLACED, "you logged in elsewhere")
        client.state = State.REGISTERED
        client.splitter.max_line = self.limits.max_line
        client.nick = binding.canonical
        client.display = binding.display
        client.identity_pub = binding.identity_pub
        self.online[binding.canonical] = client
        self.stats.registrations += 1
        if self.elsewhere is not None:
            self.elsewhere.joined(client)
        self._send(client, m.ProveOk(binding.display, new, len(pending)))
        for mail in pending:
            self._send(client, m.StoredMail(mail.id, shown[mail.sender], int(mail.created), mail.body))

    # -- directory -------------------------------------------------------------

    def _lookup(self, client: Connection, lookup: m.Lookup, now: float) -> None:
        self._await(client, "LOOKUP", self.directory.find(lookup.nick), lambda b: self._looked_up(client, b))

    def _looked_up(self, client: Connection, binding: Optional[Binding]) -> None:
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        online = self._is_online(binding.canonical)
        self._send(client, m.LookupOk(
            binding.display, binding.identity_pub, binding.static_pub, binding.static_sig, online))

    def _who(self, client: Connection, who: m.Who, now: float) -> None:
        shown = 0
        max_who = self.limits.max_who
        for other in self.online.values():
            if shown >= max_who:
                break
            assert other.display is not None and other.identity_pub is not None
            self._send(client, m.User(other.display, other.identity_pub))
            shown += 1
        total = len(self.online)
        if self.elsewhere is not None:
            remote = self.elsewhere.remote
            total += len(remote)
            for user in remote.values():
                if shown >= max_who:
                    break
                self._send(client, m.User(user.display, user.identity_pub))
                shown += 1
        self._send(client, m.WhoOk(shown, total))

    def _is_online(self, canon: str) -> bool:
        """Whether ``canon`` is connected to this node or, in a cluster, to any."""
        return canon in self.online or (self.elsewhere is not None and canon in self.elsewhere.remote)

    def _ping(self, client: Connection, ping: m.Ping, now: float) -> None:
        self._send(client, m.PingOk(ping.token))

    def _quit(self, client: Connection, quit: m.Quit, now: float) -> None:
        self._bye(client, Bye.QUIT, "goodbye")

    # -- sessions -------------------------------------------------------------

    def _offer(self, client: Connection, offer: m.Offer, now: float) -> None:
        if self.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        canon = canonical(offer.nick)
        target = self.online.get(canon)
        if target is None:
            if self.elsewhere is not None and canon in self.elsewhere.remote:
                self._check_limits(client, None)
                sid = secrets.token_hex(SID_LENGTH // 2).encode("ascii")
                self._await(client, "OFFER", self.elsewhere.offer(client, canon, sid),
                            lambda peer: self._offered(client, peer, sid, now))
                return
            self._await(client, "OFFER", self.directory.find(canon), lambda b: self._not_here(offer.nick, b))
            return
        if target is client:
            raise ProtocolError(Code.INVALID, "you cannot talk to yourself")
        self._check_limits(client, target)
        sid = secrets.token_hex(SID_LENGTH // 2).encode("ascii")
        self._offered(client, target, sid, now)
        assert client.display is not None and client.identity_pub is not None
        self._send(target, m.Offered(sid.decode("ascii"), client.display, client.identity_pub))

    def _check_limits(self, client: Optional[Connection], target: Optional[Connection]) -> None:
        limits = self.limits
        if any(c is not None and len(c.sessions) >= limits.max_sessions for c in (client, target)):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_sessions} sessions each")
        if (
            (client is not None and _pending(client.sessions.values(), initiator=client) >= limits.max_pending_offers)
            or (target is not None and _pending(target.sessions.values(), responder=target) >= limits.max_pending_offers)
        ):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_pending_offers} unanswered offers")

    def _offered(self, client: Connection, target: Connection, sid: bytes, now: float) -> None:
        session = Session(sid, client, target, now)
        client.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        assert target.display is not None
        self._send(client, m.OfferOk(sid.decode("ascii"), target.display))

    # -- sessions with users on other nodes (relaychat.cluster) ----------------
    #
    # A user on another node is a *stand-in* here: a Connection in no table
    # (not in clients, not online) whose link hands what the hub writes to it
    # to that node, batched per node. Both nodes hold the session; the lines
    # one node's hub sends to a stand-in arrive at the other as from_peer().

    def stand_in(self, link: Link, node: str, display: str, identity_pub: bytes) -> Connection:
        """A Connection for ``display``, a user on ``node``."""
        peer = Connection(link, f"node:{node}", self.limits.max_line, self.limits.line_burst, self.now)
        peer.state = State.REGISTERED
        peer.nick = canonical(display)
        peer.display = display
        peer.identity_pub = identity_pub
        return peer

    def offer_from(self, peer: Connection, canon: str, sid: bytes, now: float) -> None:
        """``peer`` (a stand-in) offers a session to our ``canon``; raises what ``OFFER`` would answer."""
        self.now = now
        if self.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        target = self.online.get(canon)
        if target is None:
            raise ProtocolError(Code.OFFLINE, f"{canon} is not connected")
        self._check_limits(None, target)
        session = Session(sid, peer, target, now)
        peer.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        assert peer.display is not None and peer.identity_pub is not None
        self._send(target, m.Offered(sid.decode("ascii"), peer.display, peer.identity_pub))
        self._flush()

    def from_peer(self, node: str, local: Connection, data: bytes, now: float) -> None:
        """What ``node``'s hub wrote to its stand-in for our ``local`` (whole lines): apply it, pass it on.

        The common case, a run of frames of one session, is checked with two
        counts in C and passed on as one chunk, as :meth:`_end_run` does.
        """
        self.now = now
        peer_address = f"node:{node}"
        prefix = data[:_PAYLOAD_AT]
        if prefix.startswith(FRAME_PREFIX) and data.count(b"\n") == data.count(b"\n" + prefix) + 1:
            session = local.sessions.get(prefix[6:22])
            if session is not None and session.open and session.other(local).address == peer_address:
                self._pass_on(local, session, data, data.count(b"\n"))
                self._flush()
            return
        for line in data.split(b"\n")[:-1]:
            if line.startswith(b"MAIL "):  # new mail for ``local``, stored through that node: pass it on
                if local.life is _OPEN:
                    if not local.outbox:
                        self._dirty.append(local)
                    local.outbox.append(line + b"\n")
                    local.outbox_size += len(line) + 1
                continue
            session = local.sessions.get(line[line.find(b" ") + 1:][:SID_LENGTH])
            if session is None or session.other(local).address != peer_address:
                continue  # ended here already (both nodes time offers out), or not that node's to speak for
            if line.startswith(FRAME_PREFIX):
                if session.open:
                    self._pass_on(local, session, line + b"\n", 1)
            elif line.startswith(b"ACCEPTED ") and not session.open and session.initiator is local:
                session.open = True
                self.offers.pop(session.sid, None)
                self.stats.sessions_opened += 1
                self._send(local, m.Accepted(session.sid.decode("ascii")))
                self._update_reading(local)
            elif line.startswith(b"CLOSED "):
                reason = line.rsplit(b" ", 1)[-1].decode("ascii", "replace")
                self._end_session(session, Closed(reason) if reason in _CLOSED else Closed.GONE, notify=(local,))
        self._flush()

    def _pass_on(self, local: Connection, session: Session, data: bytes, frames: int) -> None:
        if local.life is not _OPEN:
            return
        if not local.outbox:
            self._dirty.append(local)
        local.outbox.append(data)
        local.outbox_size += len(data)
        session.frames += frames
        session.bytes += len(data)
        self.stats.frames += frames
        self.stats.bytes += len(data)

    def _not_here(self, nick: str, binding: Optional[Binding]) -> None:
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        raise ProtocolError(Code.OFFLINE, f"{nick} is not connected")

    def _accept(self, client: Connection, accept: m.Accept, now: float) -> None:
        session = self._offered_to(client, accept.sid)
        session.open = True
        del self.offers[session.sid]
        self.stats.sessions_opened += 1
        sid = session.sid.decode("ascii")
        self._send(client, m.AcceptOk(sid))
        self._send(session.initiator, m.Accepted(sid))
        self._update_reading(session.initiator)
        self._update_reading(session.responder)

    def _decline(self, client: Connection, decline: m.Decline, now: float) -> None:
        session = self._offered_to(client, decline.sid)
        self._send(client, m.DeclineOk(decline.sid))
        self._end_session(session, Closed.DECLINED, notify=(session.initiator,))

    def _close(self, client: Connection, close: m.Close, now: float) -> None:
        session = self._own_session(client, close.sid)
        self._send(client, m.CloseOk(close.sid))
        self._end_session(session, Closed.CLOSED, notify=(session.other(client),))

    def _frame_error(self, client: Connection, line: bytes) -> None:
        """The hot path did not take this FRAME line: forward it if it is good
        once a CR before the LF is removed, else say why not."""
        parts = strip_cr(line).split(b" ")
        sid = parts[1].decode("ascii", "replace") if len(parts) > 1 else "-"
        if len(parts) != 3 or len(parts[1]) != SID_LENGTH or not parts[2]:
            self._error(client, "FRAME", Code.SYNTAX, f"{safe_sid(sid)} FRAME takes a session id and one payload")
            return
        session = client.sessions.get(parts[1])
        if session is None or not session.open:
            self._error(client, "FRAME", Code.NO_SESSION, f"{safe_sid(sid)} no open session with that id")
            return
        clean = b" ".join(parts)
        size = _payload_size(clean) if len(clean) <= self._frame_line_max else -2
        if size == -1:
            self._error(client, "FRAME", Code.SYNTAX, f"{sid} the payload is not base64 (RFC 4648, with padding)")
        elif not 0 < size <= self.limits.max_frame:
            self._error(client, "FRAME", Code.TOO_BIG,
                        f"{sid} a frame payload is at most {self.limits.max_frame} bytes once decoded")
        else:
            peer = session.other(client)
            if not peer.outbox:
                self._dirty.append(peer)
            peer.outbox.append(clean + b"\n")
            session.frames += 1
            session.bytes += len(clean) + 1
            self.stats.frames += 1
            self.stats.bytes += len(clean) + 1

    def _offered_to(self, client: Connection, sid: str) -> Session:
        session = self._own_session(client, sid)
        if session.open or session.responder is not client:
            raise ProtocolError(Code.NO_SESSION, f"{session.sid.decode('ascii')} is not an offer to you")
        return session

    def _own_session(self, client: Connection, sid: str) -> Session:
        session = client.sessions.get(sid.encode("utf-8"))
        if session is None:
            raise ProtocolError(Code.NO_SESSION, f"{safe_sid(sid)} no such session")
        return session

    # -- mail -------------------------------------------------------------------

    def _mail(self, client: Connection, mail: m.Mail, now: float) -> None:
        self._await(client, "MAIL", self.directory.find(mail.nick), lambda b: self._mail_to(client, mail, b, now))

    def _mail_to(self, client: Connection, mail: m.Mail, binding: Optional[Binding], now: float) -> None:
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        policy = self.mail
        body = mail.payload
        if len(body) > policy.max_mail:  # the limit counts decoded bytes (max_line bounds the decoding)
            raise ProtocolError(Code.TOO_BIG, f"a mail payload is at most {policy.max_mail} bytes once decoded")
        sender = client.nick
        assert sender is not None
        self.quotas.check_mail(sender, len(body), now)
        created = self.wall()  # stored: a calendar time, not the monotonic clock of this process
        if self.shared_mail is not None:
            deposited = self.shared_mail.deposit(binding.canonical, sender, created, body, policy)
            self._await(client, "MAIL", deposited, lambda mail_id: self._mailed(client, binding, body, created, mail_id))
            return
        count, size = self.store.mail_usage(binding.canonical)
        if count >= policy.mail_per_recipient or size + len(body) > policy.mail_bytes_per_recipient:
            mail_id = RECIPIENT_FULL
        elif self.store.mail_count_from(binding.canonical, sender) >= policy.mail_per_sender:
            mail_id = SENDER_FULL
        else:
            mail_id = self.store.add_mail(binding.canonical, sender, created, body)
        self._mailed(client, binding, body, created, mail_id)

    def _mailed(self, client: Connection, binding: Binding, body: bytes, created: float, mail_id: int) -> None:
        if mail_id == RECIPIENT_FULL:
            raise ProtocolError(Code.QUOTA, f"{binding.display}'s mailbox is full")
        if mail_id == SENDER_FULL:
            raise ProtocolError(Code.QUOTA, f"you have {self.mail.mail_per_sender} messages waiting there already")
        assert client.nick is not None
        self.quotas.spent_mail(client.nick, self.now)
        self.stats.mail_stored += 1
        self._send(client, m.MailOk(mail_id))
        assert client.display is not None
        stored = m.StoredMail(mail_id, client.display, int(created), body)
        recipient = self.online.get(binding.canonical)
        if recipient is not None:
            self._send(recipient, stored)
        elif self.elsewhere is not None and binding.canonical in self.elsewhere.remote:
            self.elsewhere.deliver(binding.canonical, stored.to_line().encode("utf-8") + b"\n")

    def _ack(self, client: Connection, ack: m.Ack, now: float) -> None:
        assert client.nick is not None
        if self.shared_mail is not None:
            self._await(client, "ACK", self.shared_mail.ack(client.nick, ack.mail_id),
                        lambda deleted: self._acked(client, ack.mail_id, deleted))
            return
        self._acked(client, ack.mail_id, self.store.delete_mail(ack.mail_id, client.nick))

    def _acked(self, client: Connection, mail_id: int, deleted: bool) -> None:
        if not deleted:
            raise ProtocolError(Code.NO_SUCH_MAIL, f"{mail_id} no such mail for you")
        self._send(client, m.AckOk(mail_id))

    # == plumbing =============================================================

    def _await(self, client: Connection, command: str, answer: "Deferred[Any]", then: Callable[[Any], None]) -> None:
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
            self._go_on(client, command, early[0], then)
            return
        early.append(None)  # from now on an answer comes later
        client.waiting = True
        self._update_reading(client)

    def _go_on(self, client: Connection, command: str, result: Any, then: Callable[[Any], None]) -> None:
        if client.life is not _OPEN:
            return
        try:
            if isinstance(result, Failure):
                result.raiseException()
            then(result)
        except ProtocolError as e:
            self._error(client, command, e.code, e.text)
        except StorageError as e:  # the local store failed (it has logged it); the connection carries on
            self.stats.storage_errors += 1
            self._error(client, command, Code.UNAVAILABLE, str(e))
        except Exception:
            self._error(client, command, Code.UNAVAILABLE, "the relay cannot reach its shared state; try again")

    def _resume(self, client: Connection, command: str, result: Any, then: Callable[[Any], None]) -> None:
        client.waiting = False
        self._go_on(client, command, result, then)
        if client.life is _OPEN and not client.waiting:
            self._work(client, self.now)  # the lines that came meanwhile, in order
        elif client.life is _OPEN:
            self._update_reading(client)
        self._flush()

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
            self.store.note_use(client.nick, self.wall())  # saved with the next store check, no I/O here
            if self.elsewhere is not None:
                self.elsewhere.left(client)
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
                if self.draining and not client.sessions and client in self.clients:
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


_CLOSED = {reason.value for reason in Closed}

_ORDER_HINTS = {
    State.CONNECTED: "say HELLO first",
    State.GREETED: "REGISTER first",
    State.CHALLENGED: "PROVE, or REGISTER again",
    State.REGISTERED: "already registered; reconnect to change nickname",
}


def _pending(sessions: Iterable[Session], initiator: Optional[Connection] = None, responder: Optional[Connection] = None) -> int:
    return sum(
        1 for s in sessions
        if not s.open and (s.initiator is initiator if initiator is not None else s.responder is responder)
    )


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = bytes(_B64_ALPHABET.find(bytes([i])) & 0xFF for i in range(256))


def _payload_size(line: bytes) -> int:
    """Decoded size of the payload of ``FRAME <sid> <payload>``, or -1 if the
    payload is not strict base64 (RFC 4648 alphabet, padding only at the end,
    length a multiple of 4, unused bits zero: one spelling per byte string).

    The caller has checked the prefix, so deleting the alphabet from the
    whole line must leave exactly its two spaces and the padding: one C
    pass over the bytes, with no copy of the payload.
    """
    chars = len(line) - _PAYLOAD_AT
    if chars & 3:
        return -1
    rest = line.translate(None, _B64_ALPHABET)
    if rest == b"  ":
        return chars // 4 * 3
    if rest == b"  =" and line[-1] == 61 and not _B64_VALUE[line[-2]] & 3:
        return chars // 4 * 3 - 1
    if rest == b"  ==" and line.endswith(b"==") and not _B64_VALUE[line[-3]] & 15:
        return chars // 4 * 3 - 2
    return -1


_BULK_LINE = 2048  # bytes per frame line from which _strict_base64 is the faster check


def _strict_base64(line: bytes) -> bool:
    """The payload of a FRAME line is RFC 4648 base64, padding at the end
    only (pybase64 in validate mode; the unused bits are checked apart, by
    the run loop or _tail_padding)."""
    try:
        pybase64.b64decode(memoryview(line)[_PAYLOAD_AT:], validate=True)
    except binascii.Error:
        return False
    return True


_PAD_MASK = (0, 3, 15)  # the bits a last data character may not carry before one or two "="


def _tail_padding(line: bytes) -> int:
    """How many ``=`` end ``line`` (0 to 2), or -1 if the character before
    them carries bits the padding says are unused (a second spelling)."""
    if line[-1] != 61:
        return 0
    pads = 2 if line[-2] == 61 else 1
    return -1 if _B64_VALUE[line[-1 - pads]] & _PAD_MASK[pads] else pads
