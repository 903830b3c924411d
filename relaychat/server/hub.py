"""The relay's engine: every connection, command, session and limit, sans I/O.

The hub owns no sockets and no reactor. An adapter hands it bytes and the
time (:meth:`Hub.receive`), tells it about connections coming and going and
about output backing up, and calls :meth:`Hub.tick` once a second. The hub
answers through each connection's :class:`~relaychat.server.client.Link`.

Output is collected per connection and written once at the end of each
entry point, so a read holding fifty frames for one peer costs one write.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from relaychat.crypto.identity import KeyFormatError, pow_ok, verify_registration, verify_static_sig
from relaychat.server.bans import Bans, key_id
from relaychat.server.client import Claim, Client, Link, Session, State
from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy
from relaychat.server.nicknames import canonical
from relaychat.server.quotas import Quotas
from relaychat.server.registry import Registry
from relaychat.server.store import StorageError, Store
from relaychat.wire.codec import EncodingError, b64decode, b64encode, encoded_length
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.lines import strip_cr

PROTOCOL_VERSION = "1"
_SID_LENGTH = 16
_FRAME_PREFIX = b"FRAME "
_PAYLOAD_AT = len(_FRAME_PREFIX) + _SID_LENGTH + 1


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
    extra: dict[str, int] = field(default_factory=dict)


Handler = Callable[[Client, list[str], float], None]


class Hub:
    def __init__(
        self,
        store: Store,
        limits: Limits = Limits(),
        mail: MailPolicy = MailPolicy(),
        now: float = 0.0,
        names: NicknamePolicy = NicknamePolicy(),
    ) -> None:
        self.store = store
        self.registry = Registry(store)
        self.limits = limits
        self.mail = mail
        self.names = names
        self.quotas = Quotas(store, mail, names)
        self.server_id = store.server_id
        self.stats = Stats(started=now)
        self.bans = Bans()
        self.clients: set[Client] = set()
        self.online: dict[str, Client] = {}
        self.offers: dict[bytes, Session] = {}
        self.draining = False
        self.now = now  # the latest time an adapter told us
        self.on_drained: Optional[Callable[[], None]] = None
        self._per_address: dict[str, int] = {}
        self._dirty: list[Client] = []
        self._closing: list[Client] = []
        self._frame_line_max = _PAYLOAD_AT + encoded_length(limits.max_frame) + 1  # + CR
        self._hello = (
            f"OK HELLO {PROTOCOL_VERSION} {b64encode(self.server_id)} max_line={limits.max_line} "
            f"max_frame={limits.max_frame} max_mail={mail.max_mail}"
        )
        anyone = frozenset(State)
        greeted = frozenset({State.GREETED, State.CHALLENGED, State.REGISTERED})
        registered = frozenset({State.REGISTERED})
        self._handlers: dict[str, tuple[Handler, frozenset[State]]] = {
            "HELLO": (self._hello_cmd, frozenset({State.CONNECTED})),
            "PING": (self._ping, anyone),
            "QUIT": (self._quit, anyone),
            "REGISTER": (self._register, frozenset({State.GREETED, State.CHALLENGED})),
            "PROVE": (self._prove, frozenset({State.CHALLENGED})),
            "LOOKUP": (self._lookup, greeted),
            "WHO": (self._who, greeted),
            "OFFER": (self._offer, registered),
            "ACCEPT": (self._accept, registered),
            "DECLINE": (self._decline, registered),
            "CLOSE": (self._close, registered),
            "FRAME": (self._frame_malformed, registered),
            "MAIL": (self._mail, registered),
            "ACK": (self._ack, registered),
        }

    # == entry points used by adapters ======================================

    def connect(self, link: Link, address: str, now: float) -> Client:
        """A connection arrived; it may be refused at once with ``BYE``."""
        self.now = now
        limits = self.limits
        client = Client(link, address, limits.max_line, limits.line_burst, now)
        self.clients.add(client)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.stats.connections_total += 1
        if self.draining:
            self._bye(client, Bye.DRAINING, "the relay is shutting down")
        elif self.bans.banned("address", address, now):
            self._bye(client, Bye.BANNED, "this address is banned")
        elif len(self.clients) > limits.max_connections:
            self._bye(client, Bye.BUSY, "the relay is full")
        elif self._per_address[address] > limits.connections_per_address:
            self._bye(client, Bye.BUSY, "too many connections from your address")
        self._flush()
        return client

    def receive(self, client: Client, data: bytes, now: float) -> None:
        """Bytes arrived from ``client``: handle every complete line in them."""
        self.now = now
        if client.closing:
            return
        lines = client.splitter.feed(data)
        if not lines:
            return
        client.last_seen = now
        self._spend(client, len(lines), now)
        frame_line_max = self._frame_line_max
        registered = client.state is State.REGISTERED
        sessions = client.sessions
        stats = self.stats
        # A run: consecutive frames for one session. Its first frame takes the
        # full path below; the rest need only match "FRAME <sid> " and be a
        # well-formed payload. Nothing but a command can change the session,
        # the peer or our state, so a run ends at the first other line, and
        # its counters are added up before that line is handled.
        run_prefix = run_out = run_session = None
        run_frames = run_bytes = run_start = 0
        index = -1
        for line in lines:
            index += 1
            if run_prefix is not None and line is not None and line.startswith(run_prefix):
                size = len(line)
                if _PAYLOAD_AT < size <= frame_line_max and line.find(b" ", _PAYLOAD_AT) < 0:
                    run_frames += 1
                    run_bytes += size + 1
                    continue
            if run_frames:
                run_out.append(b"\n".join([*lines[run_start:index], b""]))  # type: ignore[union-attr, list-item]
                run_session.frames += run_frames  # type: ignore[union-attr]
                run_session.bytes += run_bytes  # type: ignore[union-attr]
                stats.frames += run_frames
                stats.bytes += run_bytes
                run_frames = run_bytes = 0
                run_prefix = None
            if client.closing:
                break
            if line is None:
                self._error(client, "-", Code.TOO_LONG, f"a line is at most {self.limits.max_line} bytes")
                continue
            if registered and line.startswith(_FRAME_PREFIX):
                # The hot path: forward the line as it came, without decoding.
                session = sessions.get(line[6:22])
                if (
                    session is not None
                    and session.open
                    and _PAYLOAD_AT < len(line) <= frame_line_max
                    and line[22] == 32
                    and line.find(b" ", _PAYLOAD_AT) < 0
                ):
                    peer = session.responder if session.initiator is client else session.initiator
                    run_out = peer.outbox
                    if not run_out:
                        self._dirty.append(peer)
                    run_start = index
                    run_prefix = line[:_PAYLOAD_AT]
                    run_session = session
                    run_frames = 1
                    run_bytes = len(line) + 1
                    continue
                self._frame_error(client, line)
                continue
            self._command(client, line, now)
            registered = client.state is State.REGISTERED
        if run_frames:
            run_out.append(b"\n".join([*lines[run_start:], b""]))  # type: ignore[union-attr, list-item]
            run_session.frames += run_frames  # type: ignore[union-attr]
            run_session.bytes += run_bytes  # type: ignore[union-attr]
            stats.frames += run_frames
            stats.bytes += run_bytes
        client.lines_in += len(lines)
        client.bytes_in += len(data)
        self._flush()
        if client.tokens < 0 and not client.throttled and not client.closing:
            client.throttled = True
            self._update_reading(client)
            client.link.wake_after(-client.tokens / self.limits.lines_per_second)

    def wake(self, client: Client, now: float) -> None:
        """The pause asked for by ``wake_after`` is over."""
        self.now = now
        client.throttled = False
        self._refill(client, now)
        self._update_reading(client)

    def refuse(self, client: Client, code: Code, text: str) -> None:
        """An adapter found bad input the hub never saw (a WebSocket binary
        message): answer it like any other, violations counted."""
        self._error(client, "-", code, text)
        self._flush()

    def set_congested(self, client: Client, congested: bool) -> None:
        """``client``'s output is backed up (or drained): stop (or resume) its peers."""
        client.congested = congested
        for session in client.sessions.values():
            if session.open:
                self._update_reading(session.other(client))

    def disconnect(self, client: Client, now: float) -> None:
        """The connection is gone; tell its peers. Safe to call more than once."""
        self.now = now
        self._drop(client, Closed.GONE)
        self._flush()

    def tick(self, now: float) -> None:
        """Enforce every time limit; call about once a second."""
        self.now = now
        limits = self.limits
        for client in list(self.clients):
            if client.closing:
                continue
            if client.state is not State.REGISTERED:
                if now - client.connected_at > limits.registration_timeout:
                    self._bye(client, Bye.TIMEOUT, "registration took too long")
            elif client.reading and now - client.last_seen > limits.idle_timeout:
                self._bye(client, Bye.IDLE, "no activity")
        for session in list(self.offers.values()):
            if now - session.created > limits.offer_timeout:
                self._end_session(session, Closed.TIMEOUT, notify=(session.initiator, session.responder))
        self.bans.expire(now)
        self.quotas.sweep(now)
        self._flush()

    def purge_mail(self, now: float) -> int:
        """Delete mail older than the configured expiry; returns how many."""
        return self.store.purge_mail(now - self.mail.expiry_seconds)

    def expire_nicknames(self, now: float) -> list[str]:
        """Release nicknames unused for ``nickname_expiry_days`` (if set) and
        not connected now, with their mail; returns them."""
        if not self.names.expiry_seconds:
            return []
        for nick in self.online:  # in use now; saved by the store with the next batch
            self.store.note_use(nick, now)
        expired: list[str] = []
        while batch := self.store.expire_bindings(now - self.names.expiry_seconds, self.online):
            expired.extend(batch)
        return expired

    # == operator actions (the manhole's helpers wrap these) ================

    def kick(self, nick: str, reason: str = "kicked by the operator") -> bool:
        client = self.online.get(nick.lower())
        if client is None:
            return False
        self._bye(client, Bye.KICKED, reason, session_reason=Closed.KICKED)
        self._flush()
        return True

    def ban(self, kind: str, value: str, seconds: float, now: float) -> int:
        """Ban a nickname or an address for ``seconds``; kicks who is on. Returns how many.

        A nickname's ban also bans the identity key it is bound to, so the
        same person cannot come back under another nickname with the key
        their contacts have pinned.
        """
        value = value.lower() if kind == "nick" else value
        self.bans.add(kind, value, now + seconds)
        key = self.bound_key(value) if kind == "nick" else None
        if key is not None:
            self.bans.add("key", key_id(key), now + seconds)
        if kind == "address":
            victims = [c for c in self.clients if not c.closing and c.address == value]
        else:
            victims = [c for c in self.clients if not c.closing and (c.nick == value or (key and c.identity_pub == key))]
        for client in victims:
            self._bye(client, Bye.BANNED, "banned by the operator", session_reason=Closed.KICKED)
        self._flush()
        return len(victims)

    def unban(self, kind: str, value: str) -> list[tuple[str, str]]:
        """Lift a ban, a nickname's with its key's; returns the bans lifted."""
        value = value.lower() if kind == "nick" else value
        lifted = [(kind, value)] if self.bans.remove(kind, value) else []
        key = self.bound_key(value) if kind == "nick" else None
        if key is not None and self.bans.remove("key", key_id(key)):
            lifted.append(("key", key_id(key)))
        return lifted

    def bound_key(self, nick: str) -> Optional[bytes]:
        """The identity key ``nick`` is registered with, if it is."""
        binding = self.registry.find(nick)
        return binding.identity_pub if binding is not None else None

    def notice(self, text: str) -> int:
        """Send ``text`` to every registered client; returns how many."""
        line = "NOTICE " + _one_line(text)
        count = 0
        for client in self.online.values():
            self._send(client, line)
            count += 1
        self._flush()
        return count

    def drain(self, text: str = "the relay is restarting") -> None:
        """Refuse new sessions and connections, and let each client go once its sessions end."""
        self.draining = True
        for client in list(self.online.values()):
            self._send(client, "NOTICE " + _one_line(text))
        for session in list(self.offers.values()):
            self._end_session(session, Closed.DRAINING, notify=(session.initiator, session.responder))
        for client in list(self.clients):
            if not client.sessions:
                self._bye(client, Bye.DRAINING, _one_line(text))
        self._flush()
        self._check_drained()

    # == command dispatch ====================================================

    def _command(self, client: Client, line: bytes, now: float) -> None:
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
        entry = self._handlers.get(name)
        if entry is None:
            shown = name if name.isalpha() and name.isupper() and len(name) <= 16 else "-"
            self._error(client, shown, Code.UNKNOWN, "no such command")
            return
        handler, allowed = entry
        if client.state not in allowed:
            self._error(client, name, Code.ORDER, _ORDER_HINTS[client.state])
            return
        if "" in parts:
            self._error(client, name, Code.SYNTAX, "tokens are separated by exactly one space")
            return
        try:
            handler(client, parts[1:], now)
        except ProtocolError as e:
            self._error(client, name, e.code, e.text)
        except StorageError as e:  # the store has logged it; the connection carries on
            self.stats.storage_errors += 1
            self._error(client, name, Code.UNAVAILABLE, str(e))

    # -- greeting and registration -------------------------------------------

    def _hello_cmd(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 1, 8)
        if PROTOCOL_VERSION not in args:
            raise ProtocolError(Code.VERSION, f"supported={PROTOCOL_VERSION}")
        client.state = State.GREETED
        self._send(client, self._hello)

    def _register(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 4, 4)
        nick, identity_b64, static_b64, sig_b64 = args
        canon = canonical(nick)
        identity_pub = _decode_key(identity_b64, 32)
        self._refuse_banned(canon, identity_pub, now)
        static_pub = _decode_key(static_b64, 32)
        static_sig = _decode_key(sig_b64, 64)
        try:
            certified = verify_static_sig(identity_pub, static_pub, static_sig)
        except KeyFormatError as e:  # not a usable point: small order, off the curve
            raise ProtocolError(Code.BAD_KEY, str(e)) from None
        if not certified:
            raise ProtocolError(Code.BAD_SIGNATURE, "static_sig does not verify")
        existing = self.registry.check_claim(nick, identity_pub)
        if existing is None:
            self.quotas.check_new_name(client.address, now)  # before the client works for it
        pow_bits = 0 if existing is not None else self.limits.pow_bits
        challenge = os.urandom(32)
        client.claim = Claim(nick, canon, identity_pub, static_pub, static_sig, challenge, pow_bits)
        client.state = State.CHALLENGED
        self._send(client, f"OK REGISTER {canon} {b64encode(challenge)} {pow_bits}")

    def _refuse_banned(self, canon: str, identity_pub: bytes, now: float) -> None:
        if self.bans.banned("nick", canon, now):
            raise ProtocolError(Code.BANNED, "this nickname is banned")
        if self.bans.banned("key", key_id(identity_pub), now):
            raise ProtocolError(Code.BANNED, "this identity key is banned")

    def _prove(self, client: Client, args: list[str], now: float) -> None:
        claim = client.claim
        assert claim is not None
        client.claim = None  # the challenge is spent, whatever happens next
        client.state = State.GREETED
        _arity(args, 1, 2)
        signature = _decode_key(args[0], 64)
        if not verify_registration(
            self.server_id, claim.challenge, claim.identity_pub, claim.static_pub,
            claim.static_sig, claim.canonical, signature,
        ):
            raise ProtocolError(Code.BAD_SIGNATURE, "the signature does not verify")
        if claim.pow_bits:
            nonce = _decode_key(args[1], None, 32) if len(args) == 2 else b""
            if not nonce or not pow_ok(claim.challenge, nonce, claim.pow_bits):
                raise ProtocolError(Code.POW, f"proof of work of {claim.pow_bits} bits needed")
        self._refuse_banned(claim.canonical, claim.identity_pub, now)  # a ban may have come since REGISTER
        existing = self.registry.find(claim.canonical)
        if existing is None:
            self.quotas.check_new_name(client.address, now)  # others from the address may have bound since
        binding = self.registry.bind(claim.display, claim.identity_pub, claim.static_pub, claim.static_sig, now)
        if existing is None:
            self.quotas.spent_new_name(client.address, now)
        self.store.note_use(binding.canonical, now)
        pending = self.store.pending_mail(binding.canonical)  # the last storage call: nothing changed if it fails
        previous = self.online.get(binding.canonical)
        if previous is not None:
            self._bye(previous, Bye.REPLACED, "you logged in elsewhere")
        client.state = State.REGISTERED
        client.nick = binding.canonical
        client.display = binding.display
        client.identity_pub = binding.identity_pub
        self.online[binding.canonical] = client
        self.stats.registrations += 1
        self._send(client, f"OK PROVE {binding.display} {'known' if existing else 'new'} {len(pending)}")
        for mail in pending:
            self._send(client, _mail_event(mail.id, mail.sender, mail.created, mail.body))

    # -- directory -------------------------------------------------------------

    def _lookup(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 1, 1)
        binding = self.registry.find(args[0])
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        presence = "online" if binding.canonical in self.online else "offline"
        self._send(
            client,
            f"OK LOOKUP {binding.display} {b64encode(binding.identity_pub)} "
            f"{b64encode(binding.static_pub)} {b64encode(binding.static_sig)} {presence}",
        )

    def _who(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 0, 0)
        shown = 0
        for other in self.online.values():
            if shown >= self.limits.max_who:
                break
            self._send(client, f"USER {other.display} {b64encode(other.identity_pub)}")  # type: ignore[arg-type]
            shown += 1
        self._send(client, f"OK WHO {shown} {len(self.online)}")

    def _ping(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 0, 1)
        if args and len(args[0]) > 64:
            raise ProtocolError(Code.SYNTAX, "a PING token is at most 64 characters")
        self._send(client, " ".join(["OK", "PING", *args]))

    def _quit(self, client: Client, args: list[str], now: float) -> None:
        self._bye(client, Bye.QUIT, "goodbye")

    # -- sessions -------------------------------------------------------------

    def _offer(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 1, 1)
        if self.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        canon = canonical(args[0])
        target = self.online.get(canon)
        if target is None:
            if self.store.binding(canon) is None:
                raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
            raise ProtocolError(Code.OFFLINE, f"{args[0]} is not connected")
        if target is client:
            raise ProtocolError(Code.INVALID, "you cannot talk to yourself")
        limits = self.limits
        if len(client.sessions) >= limits.max_sessions or len(target.sessions) >= limits.max_sessions:
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_sessions} sessions each")
        if (
            _pending(client.sessions.values(), initiator=client) >= limits.max_pending_offers
            or _pending(target.sessions.values(), responder=target) >= limits.max_pending_offers
        ):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_pending_offers} unanswered offers")
        sid = secrets.token_hex(_SID_LENGTH // 2).encode("ascii")
        session = Session(sid, client, target, now)
        client.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        text_sid = sid.decode("ascii")
        self._send(client, f"OK OFFER {text_sid} {target.display}")
        self._send(target, f"OFFERED {text_sid} {client.display} {b64encode(client.identity_pub)}")  # type: ignore[arg-type]

    def _accept(self, client: Client, args: list[str], now: float) -> None:
        session = self._offered_to(client, args)
        session.open = True
        del self.offers[session.sid]
        self.stats.sessions_opened += 1
        sid = session.sid.decode("ascii")
        self._send(client, f"OK ACCEPT {sid}")
        self._send(session.initiator, f"ACCEPTED {sid}")
        self._update_reading(session.initiator)
        self._update_reading(session.responder)

    def _decline(self, client: Client, args: list[str], now: float) -> None:
        session = self._offered_to(client, args)
        self._send(client, f"OK DECLINE {session.sid.decode('ascii')}")
        self._end_session(session, Closed.DECLINED, notify=(session.initiator,))

    def _close(self, client: Client, args: list[str], now: float) -> None:
        session = self._own_session(client, args)
        self._send(client, f"OK CLOSE {session.sid.decode('ascii')}")
        self._end_session(session, Closed.CLOSED, notify=(session.other(client),))

    def _frame_malformed(self, client: Client, args: list[str], now: float) -> None:
        """A bare ``FRAME`` with no arguments; the hot path handles all others."""
        raise ProtocolError(Code.SYNTAX, "- FRAME takes a session id and one payload")

    def _frame_error(self, client: Client, line: bytes) -> None:
        """Explain why the hot path refused a FRAME line."""
        parts = strip_cr(line).split(b" ")
        sid = parts[1].decode("ascii", "replace") if len(parts) > 1 else "-"
        if len(parts) != 3 or len(parts[1]) != _SID_LENGTH or not parts[2]:
            self._error(client, "FRAME", Code.SYNTAX, f"{_safe_sid(sid)} FRAME takes a session id and one payload")
            return
        session = client.sessions.get(parts[1])
        if session is None or not session.open:
            self._error(client, "FRAME", Code.NO_SESSION, f"{_safe_sid(sid)} no open session with that id")
        else:
            self._error(client, "FRAME", Code.TOO_BIG, f"{_safe_sid(sid)} a frame is at most {self.limits.max_frame} bytes")

    def _offered_to(self, client: Client, args: list[str]) -> Session:
        session = self._own_session(client, args)
        if session.open or session.responder is not client:
            raise ProtocolError(Code.NO_SESSION, f"{session.sid.decode('ascii')} is not an offer to you")
        return session

    def _own_session(self, client: Client, args: list[str]) -> Session:
        _arity(args, 1, 1)
        session = client.sessions.get(args[0].encode("utf-8"))
        if session is None:
            raise ProtocolError(Code.NO_SESSION, f"{_safe_sid(args[0])} no such session")
        return session

    # -- mail -------------------------------------------------------------------

    def _mail(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 2, 2)
        nick, payload = args
        binding = self.registry.find(nick)
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        policy = self.mail
        if len(payload) > encoded_length(policy.max_mail):
            raise ProtocolError(Code.TOO_BIG, f"mail is at most {policy.max_mail} bytes")
        try:
            body = b64decode(payload)
        except EncodingError:
            raise ProtocolError(Code.SYNTAX, "the payload is not base64") from None
        count, size = self.store.mail_usage(binding.canonical)
        if count >= policy.mail_per_recipient or size + len(body) > policy.mail_bytes_per_recipient:
            raise ProtocolError(Code.QUOTA, f"{binding.display}'s mailbox is full")
        if self.store.mail_count_from(binding.canonical, client.nick) >= policy.mail_per_sender:  # type: ignore[arg-type]
            raise ProtocolError(Code.QUOTA, f"you have {policy.mail_per_sender} messages waiting there already")
        self.quotas.check_mail(client.nick, len(body), now)  # type: ignore[arg-type]
        mail_id = self.store.add_mail(binding.canonical, client.nick, now, body)  # type: ignore[arg-type]
        self.quotas.spent_mail(client.nick, now)  # type: ignore[arg-type]
        self.stats.mail_stored += 1
        self._send(client, f"OK MAIL {mail_id}")
        recipient = self.online.get(binding.canonical)
        if recipient is not None:
            self._send(recipient, _mail_event(mail_id, client.nick, now, body))  # type: ignore[arg-type]

    def _ack(self, client: Client, args: list[str], now: float) -> None:
        _arity(args, 1, 1)
        if not args[0].isdigit() or len(args[0]) > 19:
            raise ProtocolError(Code.SYNTAX, "a mail id is a decimal number")
        if not self.store.delete_mail(int(args[0]), client.nick):  # type: ignore[arg-type]
            raise ProtocolError(Code.NO_SUCH_MAIL, f"{args[0]} no such mail for you")
        self._send(client, f"OK ACK {args[0]}")

    # == plumbing =============================================================

    def _send(self, client: Client, line: str) -> None:
        if client.closing:
            return
        if not client.outbox:
            self._dirty.append(client)
        client.outbox.append(line.encode("utf-8") + b"\n")

    def _error(self, client: Client, command: str, code: Code, text: str) -> None:
        self.stats.errors += 1
        self._send(client, f"ERR {command} {code.word} {_one_line(text)}")
        if code.is_violation:
            client.violations += 1
            if client.violations >= self.limits.max_violations:
                self.stats.disconnects_for_violations += 1
                self._bye(client, Bye.VIOLATIONS, "too many protocol errors")

    def _bye(self, client: Client, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None:
        """Say goodbye, end the client's sessions now, and close once output is written."""
        if client.closing:
            return
        self._send(client, f"BYE {bye.value} {_one_line(text)}")
        client.closing = True
        self._closing.append(client)
        self._drop(client, session_reason)

    def _drop(self, client: Client, reason: Closed) -> None:
        if client.dropped:
            return
        client.dropped = True
        self.clients.discard(client)
        remaining = self._per_address.get(client.address, 1) - 1
        if remaining:
            self._per_address[client.address] = remaining
        else:
            self._per_address.pop(client.address, None)
        if client.nick is not None and self.online.get(client.nick) is client:
            del self.online[client.nick]
            self.store.note_use(client.nick, self.now)  # saved with the next store check, no I/O here
        for session in list(client.sessions.values()):
            self._end_session(session, reason, notify=(session.other(client),))
        self._check_drained()

    def _end_session(self, session: Session, reason: Closed, notify: Iterable[Client]) -> None:
        session.initiator.sessions.pop(session.sid, None)
        session.responder.sessions.pop(session.sid, None)
        self.offers.pop(session.sid, None)
        line = f"CLOSED {session.sid.decode('ascii')} {reason.value}"
        for client in notify:
            self._send(client, line)
        for client in (session.initiator, session.responder):
            if not client.dropped:
                self._update_reading(client)
                if self.draining and not client.sessions:
                    self._bye(client, Bye.DRAINING, "the relay is restarting")

    def _flush(self) -> None:
        """Write each connection's collected output in one call, then close who must go."""
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for client in dirty:
                if client.outbox:
                    data = b"".join(client.outbox)
                    client.outbox.clear()
                    client.link.write(data)
        while self._closing:
            closing, self._closing = self._closing, []
            for client in closing:
                client.link.close()

    def _update_reading(self, client: Client) -> None:
        """Read from ``client`` only if it is within its rate and no peer is backed up."""
        reading = not client.throttled and not client.closing and not any(
            s.open and s.other(client).congested for s in client.sessions.values()
        )
        if reading != client.reading:
            client.reading = reading
            if reading:
                client.last_seen = self.now  # time spent paused is not idleness
            client.link.set_reading(reading)

    def _spend(self, client: Client, lines: int, now: float) -> None:
        self._refill(client, now)
        client.tokens -= lines

    def _refill(self, client: Client, now: float) -> None:
        limits = self.limits
        client.tokens = min(
            float(limits.line_burst), client.tokens + (now - client.tokens_at) * limits.lines_per_second
        )
        client.tokens_at = now

    def _check_drained(self) -> None:
        if self.draining and not self.clients and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()


_ORDER_HINTS = {
    State.CONNECTED: "say HELLO first",
    State.GREETED: "REGISTER first",
    State.CHALLENGED: "PROVE, or REGISTER again",
    State.REGISTERED: "already registered; reconnect to change nickname",
}


def _arity(args: list[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ProtocolError(Code.SYNTAX, f"expected {want} arguments, got {len(args)}")


def _decode_key(text: str, size: Optional[int], max_size: Optional[int] = None) -> bytes:
    try:
        return b64decode(text, size=size, max_size=max_size if size is None else size)
    except EncodingError as e:
        raise ProtocolError(Code.BAD_KEY, f"bad binary field: {e}") from None


def _pending(sessions: Iterable[Session], initiator: Optional[Client] = None, responder: Optional[Client] = None) -> int:
    return sum(
        1 for s in sessions
        if not s.open and (s.initiator is initiator if initiator is not None else s.responder is responder)
    )


def _mail_event(mail_id: int, sender: str, created: float, body: bytes) -> str:
    return f"MAIL {mail_id} {sender} {int(created)} {b64encode(body)}"


def _one_line(text: str) -> str:
    """Keep operator or error text on one line so it cannot forge protocol lines."""
    return " ".join(text.split()) or "-"


def _safe_sid(text: str) -> str:
    """Echo a session id only if it looks like one, so errors cannot carry junk."""
    return text if len(text) == _SID_LENGTH and all(c in "0123456789abcdef" for c in text) else "-"
