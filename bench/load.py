"""Load generators. Each runs in its own process, started by ``bench/run.py``.

Protocol with the parent, one JSON object per line:

* the parent writes the task (a JSON object) on stdin;
* the worker sets up its connections (registration, sessions, pairing)
  and prints ``{"ready": ...}``;
* for each ``go`` the parent writes, the worker measures once and prints
  ``{"result": ...}`` (stream and ping-pong connections stay up between
  rounds); ``stop`` (or end of input) lets it close everything and exit.
  Set-up, crypto, flood and idle tasks measure once.

Every loop here is bounded by a deadline (and a count where there is one),
and a worker gives up if the parent says nothing for ``GO_TIMEOUT``.

Written for speed, so that the load generator is not what is measured:
plain sockets and raw epoll, writes straight out of a pre-built buffer,
reads into one reusable buffer; a worker costs about its system calls.

Peers ("kinds"), all carrying the same 100-byte (or 16-KiB) payload,
base64-encoded as relaychat's FRAME does:

``relaychat``  HELLO / REGISTER / PROVE, OFFER / ACCEPT, then
               ``FRAME <sid> <payload>`` lines.
``bare``       a pairing token line, ``OK``, then the same FRAME lines.
``irc``        NICK / USER, then ``PRIVMSG <peer> :<payload>``.
``transit``    ``please relay <token> for side <side>``, ``ok``, then the
               same FRAME lines as raw bytes.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import secrets
import select
import selectors
import socket
import ssl
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GO_TIMEOUT = 300.0
IO_TIMEOUT = 60.0


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def payload(size: int) -> bytes:
    """``size`` bytes of payload, base64-encoded as in a FRAME."""
    raw = bytes((i * 7 + 3) & 0xFF for i in range(size))
    return base64.b64encode(raw)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "p50_us": at(0.50) * 1e6,
        "p90_us": at(0.90) * 1e6,
        "p99_us": at(0.99) * 1e6,
        "max_us": ordered[-1] * 1e6,
        "mean_us": sum(ordered) / len(ordered) * 1e6,
    }


# == blocking connections, for setting things up ===============================


class SetupError(Exception):
    pass


class Conn:
    """A blocking line-oriented connection, used until the measurement starts."""

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None = None, ws: bool = False) -> None:
        sock = socket.create_connection(address, timeout=IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.out = bytearray()  # owed to the socket (set-up load)
        self.watching = select.EPOLLIN  # what the set-up load's poller waits for
        self.ws = ws
        self.lines: list[bytes] = []  # WebSocket: text messages received, not yet read
        if ws:
            self._upgrade(address)

    def _upgrade(self, address: tuple[str, int]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: relaychat\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise SetupError(f"connection closed during the WebSocket handshake: {self.buf[:200]!r}")
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            raise SetupError(f"WebSocket handshake refused: {head[:200]!r}")

    def send(self, data: bytes) -> None:
        if self.ws:
            data = b"".join(ws_frame(line) for line in data.split(b"\n")[:-1])
        self.sock.sendall(data)

    def readline(self) -> bytes:
        if self.ws:
            while not self.lines:
                self.lines.extend(ws_messages(self))
            return self.lines.pop(0)
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise SetupError(f"connection closed; last bytes {self.buf[-200:]!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def expect(self, prefix: bytes, skip: Callable[[bytes], bool] = lambda line: False) -> bytes:
        while True:
            line = self.readline()
            if line.startswith(prefix):
                return line
            if not skip(line):
                raise SetupError(f"expected {prefix!r}, got {line[:200]!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


WS_MASK = b"\x5a\xa5\x3c\xc3"  # one mask for every frame: the server cannot tell, and frames can be pre-built


def ws_frame(line: bytes) -> bytes:
    """One masked client text frame carrying ``line`` (without its LF)."""
    n = len(line)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    masked = (int.from_bytes(line, "little") ^ int.from_bytes((WS_MASK * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")
    return head + WS_MASK + masked


def ws_server_size(line: bytes) -> int:
    """Bytes of the server's frame for ``line`` (without its LF): what a receiver counts."""
    n = len(line)
    return n + (2 if n < 126 else 4)


def ws_messages(conn: "Conn") -> list[bytes]:
    """Read at least one whole server frame; return the text messages in what was read."""
    out: list[bytes] = []
    while True:
        buf = conn.buf
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                break
            if buf[0] & 0x0F == 1:
                out.append(buf[at:at + n])
            elif buf[0] & 0x0F == 8:
                raise SetupError(f"the relay closed the WebSocket: {buf[at:at + n]!r}")
            buf = buf[at + n:]
        conn.buf = buf
        if out:
            return out
        data = conn.sock.recv(65536)
        if not data:
            raise SetupError("connection closed")
        conn.buf += data


def client_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect_many(address: tuple[str, int], count: int, tls: ssl.SSLContext | None, ws: bool = False) -> list[Conn]:
    return [Conn(address, tls, ws) for _ in range(count)]


# -- relaychat ------------------------------------------------------------------


def register_line(nick: str, ident: Any) -> bytes:
    b64 = base64.b64encode
    return b"REGISTER %s %s %s %s\n" % (
        nick.encode(), b64(ident.identity_public), b64(ident.static_public), b64(ident.static_sig),
    )


def rc_register(conns: list[Conn], nicks: list[str], ident: Any, batch: int = 200) -> None:
    """HELLO + REGISTER + PROVE on every connection, pipelined in batches."""
    for start in range(0, len(conns), batch):
        group = list(zip(conns[start:start + batch], nicks[start:start + batch]))
        for conn, nick in group:
            conn.send(b"HELLO 1\n" + register_line(nick, ident))
        for conn, nick in group:
            hello = conn.expect(b"OK HELLO ")
            server_id = base64.b64decode(hello.split(b" ")[3])
            reply = conn.expect(b"OK REGISTER ").decode().split(" ")
            canonical, challenge, bits = reply[2], base64.b64decode(reply[3]), int(reply[4])
            if bits:
                raise SetupError(f"the relay asks for {bits} bits of proof of work; set pow_bits = 0")
            signature = ident.sign_registration(server_id, challenge, canonical)
            conn.send(b"PROVE " + base64.b64encode(signature) + b"\n")
        for conn, _ in group:
            conn.expect(b"OK PROVE ")


def rc_open(a: Conn, b: Conn, b_nick: str) -> bytes:
    """A offers to B, B accepts; returns the session id."""
    a.send(f"OFFER {b_nick}\n".encode())
    sid = a.expect(b"OK OFFER ").split(b" ")[2]
    b.expect(b"OFFERED " + sid)
    b.send(b"ACCEPT " + sid + b"\n")
    b.expect(b"OK ACCEPT " + sid)
    a.expect(b"ACCEPTED " + sid)
    return sid


def identity() -> Any:
    from relaychat.crypto.keypair import Identity

    return Identity.generate()


# == pairs: two connections and the line each sends the other =================


@dataclass
class Pair:
    a: Conn
    b: Conn
    line_ab: bytes
    line_ba: bytes
    # measurement state
    sent: int = 0  # messages the sender has been asked to write
    received: int = 0  # messages B has received
    rx_bytes: int = 0
    owed: int = 0  # bytes the sender still has to write
    phase: int = 0  # where in its line the sender's next byte is
    waiting: bool = False  # the sender's socket is full: wait until it is writable
    pattern: memoryview | None = None  # line_ab repeated: what the sender writes from
    rx_line: int = 0  # length of a received line, once the first one is complete
    head: bytearray = field(default_factory=bytearray)  # the first bytes received
    errors: list[bytes] = field(default_factory=list)


def make_pairs(task: dict[str, Any], count: int, size: int) -> list[Pair]:
    """Connect ``count`` pairs of the task's kind, ready to carry ``size``-byte payloads."""
    kind = task["kind"]
    address = (task["host"], task["port"])
    tls = client_tls() if task.get("tls") else None
    ws = bool(task.get("websocket"))
    body = payload(size)
    tag = task.get("tag", "w")
    pairs = []
    if kind == "relaychat":
        conns = connect_many(address, 2 * count, tls, ws)
        nicks = [f"{tag}x{i}" for i in range(2 * count)]
        rc_register(conns, nicks, identity())
        for i in range(count):
            a, b = conns[2 * i], conns[2 * i + 1]
            sid = rc_open(a, b, nicks[2 * i + 1])
            line = b"FRAME " + sid + b" " + body + b"\n"
            if ws:  # pre-built frames out; frames of a known size in, counted by length
                frame = ws_frame(line[:-1])
                pairs.append(Pair(a, b, frame, frame, rx_line=ws_server_size(line[:-1])))
            else:
                pairs.append(Pair(a, b, line, line))
    elif kind == "bare":
        for i in range(count):
            a, b = Conn(address, tls), Conn(address, tls)
            token = f"{tag}-{i}-{secrets.token_hex(4)}\n".encode()
            a.send(token)
            b.send(token)
            a.expect(b"OK")
            b.expect(b"OK")
            line = b"FRAME " + secrets.token_hex(8).encode() + b" " + body + b"\n"
            pairs.append(Pair(a, b, line, line))
    elif kind == "transit":
        for i in range(count):
            a, b = Conn(address, tls), Conn(address, tls)
            token = secrets.token_hex(32)
            a.send(f"please relay {token} for side {secrets.token_hex(8)}\n".encode())
            b.send(f"please relay {token} for side {secrets.token_hex(8)}\n".encode())
            a.expect(b"ok")
            b.expect(b"ok")
            line = b"FRAME " + secrets.token_hex(8).encode() + b" " + body + b"\n"
            pairs.append(Pair(a, b, line, line))
    elif kind == "irc":
        conns = connect_many(address, 2 * count, tls)
        nicks = [f"{tag}x{i}" for i in range(2 * count)]
        for conn, nick in zip(conns, nicks):
            conn.send(f"NICK {nick}\r\nUSER {nick} 0 * :bench\r\n".encode())
        for conn in conns:
            _irc_welcome(conn)
        for i in range(count):
            a_nick, b_nick = nicks[2 * i].encode(), nicks[2 * i + 1].encode()
            pairs.append(Pair(conns[2 * i], conns[2 * i + 1],
                              b"PRIVMSG " + b_nick + b" :" + body + b"\r\n",
                              b"PRIVMSG " + a_nick + b" :" + body + b"\r\n"))
    else:
        raise SetupError(f"unknown kind {kind!r}")
    return pairs


def _irc_welcome(conn: Conn) -> None:
    """Wait for the end of the welcome burst, then make sure nothing else is queued."""
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        parts = conn.readline().split(b" ")
        if len(parts) > 1 and parts[1] in (b"376", b"422"):  # end of MOTD / no MOTD
            break
        if parts[0] == b"ERROR":
            raise SetupError("IRC server refused: " + b" ".join(parts).decode(errors="replace"))
    conn.send(b"PING :benchsync\r\n")
    while b"benchsync" not in conn.readline():
        if time.monotonic() > deadline:
            raise SetupError("IRC server did not answer PING")


# == measurements =============================================================


def _nonblocking(pairs: list[Pair]) -> None:
    for p in pairs:
        for c in (p.a, p.b):
            if c.buf or c.lines:
                raise SetupError(f"unexpected data before measuring: {(c.buf or c.lines[0])[:200]!r}")
            c.sock.setblocking(False)


RECV_SIZE = 65536  # below malloc's mmap threshold: a larger recv() maps and unmaps its buffer every call


def _recv(sock: socket.socket) -> bytes:
    """Everything readable now (also what TLS already decrypted); b"" at EOF; None if nothing."""
    chunks = []
    while True:
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        if not data:
            if not chunks:
                return b""
            break
        chunks.append(data)
        if (not isinstance(sock, ssl.SSLSocket) or not sock.pending()) and len(data) < RECV_SIZE:
            break
    return b"".join(chunks) if chunks else None  # type: ignore[return-value]


def stream(task: dict[str, Any], pairs: list[Pair]) -> dict[str, Any]:
    """Each pair's A sends to B, keeping ``window`` messages in flight; B counts.

    Written so that the load generator outruns the relays it measures, on one
    core: raw epoll; the sender writes straight out of one pre-built buffer
    (the pair's line repeated), so nothing is allocated or copied per write;
    the receiver reads into one reusable buffer and, once it has seen the
    first whole line (every line of a pair has the same length), counts
    messages by length instead of scanning for newlines.
    """
    window = task["window"]
    duration, warmup = task["duration"], task["warmup"]
    tls = any(isinstance(p.a.sock, ssl.SSLSocket) for p in pairs)
    poller = select.epoll()
    IN, OUT = select.EPOLLIN, select.EPOLLOUT
    rx: dict[int, Pair] = {}
    tx: dict[int, Pair] = {}
    for p in pairs:
        rx[p.b.sock.fileno()] = p
        tx[p.a.sock.fileno()] = p
        poller.register(p.b.sock.fileno(), IN)
        poller.register(p.a.sock.fileno(), IN | OUT if p.owed else IN)  # owed: left from the last round
        if p.pattern is None:
            p.pattern = memoryview(p.line_ab * (window + 1))
    blocked_errors = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
    buffer = bytearray(1 << 20)  # plain TCP: receive into one buffer, no allocation per read
    quickack = task.get("quickack", True)

    def push(p: Pair) -> None:
        """Write as much of what the sender owes as its socket takes."""
        size = len(p.line_ab)
        sock = p.a.sock
        while p.owed:
            chunk = min(p.owed, window * size)  # the pattern holds window + 1 lines: always enough
            try:
                n = sock.send(p.pattern[p.phase:p.phase + chunk])  # type: ignore[index]
            except blocked_errors:
                n = 0
            p.owed -= n
            p.phase = (p.phase + n) % size
            if n < chunk:
                if not p.waiting:
                    p.waiting = True
                    poller.modify(sock.fileno(), IN | OUT)
                return
        if p.waiting:
            p.waiting = False
            poller.modify(sock.fileno(), IN)

    def receive(p: Pair) -> int:
        """Bytes read from B now; -1 at EOF."""
        sock = p.b.sock
        if tls:
            data = _recv(sock)
            if data is None:
                return 0
            if not data:
                return -1
            n = len(data)
            if not p.rx_line:
                p.head += data
        else:
            try:
                n = sock.recv_into(buffer)
            except BlockingIOError:
                return 0
            if not n:
                return -1
            if quickack:  # ACK at once: relays without TCP_NODELAY would otherwise wait for our delayed ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if not p.rx_line:
                p.head += buffer[:n]
        if not p.rx_line and b"\n" in p.head:
            p.rx_line = p.head.index(b"\n") + 1  # the length of every line this pair receives
            del p.head[p.rx_line:]
        return n

    for p in pairs:  # the first time, a full window; after that, what the last round left missing
        need = window - (p.sent - p.received)
        if need > 0:
            p.owed += need * len(p.line_ab)
            p.sent += need
        push(p)
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration
    base_msgs = base_bytes = None
    closed = None
    now = start
    while now < end and closed is None:
        for fd, mask in poller.poll(0.05):
            p = rx.get(fd)
            if p is not None:
                n = receive(p)
                if n <= 0:
                    if n < 0:
                        closed = "receiver connection closed"
                        break
                    continue
                p.rx_bytes += n
                if p.rx_line:
                    p.received = p.rx_bytes // p.rx_line
                    need = window - (p.sent - p.received)
                    if need > 0:
                        p.owed += need * len(p.line_ab)
                        p.sent += need
                        push(p)
                continue
            p = tx[fd]
            if mask & OUT:
                push(p)
            if mask & (IN | select.EPOLLHUP | select.EPOLLERR):
                data = _recv(p.a.sock)
                if data == b"":
                    closed = "sender connection closed"
                    break
                if data and len(p.errors) < 5:
                    p.errors.append(data[:300])
        now = time.perf_counter()
        if base_msgs is None and now >= measure_from:
            base_msgs = sum(p.received for p in pairs)
            base_bytes = sum(p.rx_bytes for p in pairs)
            measure_from = now
            cpu0 = time.process_time()
    elapsed = now - measure_from
    messages = sum(p.received for p in pairs) - (base_msgs or 0)
    rx_bytes = sum(p.rx_bytes for p in pairs) - (base_bytes or 0)
    poller.close()
    heads = [bytes(p.head[:p.rx_line]) for p in pairs if p.rx_line and p.head]  # none for WebSocket (sizes known)
    return {
        "load_cpu_s": time.process_time() - cpu0 if base_msgs is not None else None,
        "messages": messages,
        "bytes": rx_bytes,
        "seconds": elapsed,
        "msgs_per_s": messages / elapsed if elapsed > 0 else 0.0,
        "mb_per_s": rx_bytes / elapsed / 1e6 if elapsed > 0 else 0.0,
        "errors": [e.decode(errors="replace") for p in pairs for e in p.errors][:5],
        "closed": closed,
        "received_line": heads[0][:80].decode(errors="replace") if heads else None,
    }


def pingpong(task: dict[str, Any], pairs: list[Pair]) -> dict[str, Any]:
    """One message in flight: A -> B, B answers B -> A; the round trip is timed."""
    p = pairs[0]
    rounds, duration = task["rounds"], task["duration"]
    a, b = p.a.sock, p.b.sock
    samples: list[float] = []
    clock = time.perf_counter
    end = clock() + duration
    warm = task.get("warm_rounds", 50)

    size = p.rx_line  # WebSocket: the size of the frame that answers; else one line, ending in LF

    def wait_line(sock: socket.socket) -> None:
        got = b""
        while (len(got) < size) if size else not got.endswith(b"\n"):
            data = sock.recv(RECV_SIZE)
            if not data:
                raise SetupError("connection closed during ping-pong")
            got += data

    for i in range(rounds + warm):
        t0 = clock()
        if t0 > end:
            break
        a.sendall(p.line_ab)
        wait_line(b)
        b.sendall(p.line_ba)
        wait_line(a)
        if i >= warm:
            samples.append(clock() - t0)
    return percentiles(samples)


def flood(task: dict[str, Any], pairs: list[Pair]) -> dict[str, Any]:
    """A writes 16-KiB frames as fast as the relay takes them; B never reads."""
    p = pairs[0]
    duration, max_bytes = task["duration"], task["max_bytes"]
    sock = p.a.sock
    sock.setblocking(False)
    chunk = p.line_ab * 16
    view = memoryview(chunk)
    offset = 0
    sent = 0
    stalls = 0
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_WRITE)
    start = time.perf_counter()
    end = start + duration
    samples = []
    while time.perf_counter() < end and sent < max_bytes:
        try:
            n = sock.send(view[offset:])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            stalls += 1
            sel.select(0.05)
            continue
        sent += n
        offset = (offset + n) % len(chunk)
        samples.append((time.perf_counter() - start, sent))
    sel.close()
    # bytes accepted by the relay over time, sampled at ~10 points
    step = max(1, len(samples) // 10)
    return {"bytes_sent": sent, "seconds": time.perf_counter() - start, "stalls": stalls,
            "progress": [(round(t, 2), b) for t, b in samples[::step]]}


# -- session setups -------------------------------------------------------------
#
# Both ends are relaychat's own client state machine (relaychat.client.channel),
# exactly as the chat program drives it: Noise XX, the binding check, the pin
# check and the safety number on each end. Like a real client's, the binding
# check and the safety number are computed in full on first contact with a key
# and remembered after that (identity.verify_binding, safety.safety_number).


FIRST_MESSAGE = "hello, this is the first message"


class SetupPair:
    """A calls B again and again: offer, accept, XX, one message, goodbye.

    A hangs up the way a client does (encrypted goodbye, then ``CLOSE``) and
    calls again in the same write, so the relay sees ``FRAME FRAME FRAME
    CLOSE OFFER`` in one read; B answers the new offer in the same write as
    it takes in the end of the last conversation.
    """

    def __init__(self, a: Conn, b: Conn, a_nick: str, b_nick: str, ident: Any) -> None:
        from relaychat.client.channel import FixedPin

        self.a, self.b = a, b
        self.a_nick, self.b_nick = a_nick, b_nick
        self.ident = ident
        self.pin = FixedPin(ident.identity_public)  # every nickname of a worker has the same identity
        self.chan_a: Any = None  # A's side of its current session ...
        self.sid_a = b""
        self.chan_b: Any = None  # ... and B's, which may still be the one before
        self.sid_b = b""
        self.offered_at = 0.0
        self.started: dict[bytes, float] = {}  # sid -> when A sent its OFFER
        self.done = 0
        self.latencies: list[float] = []

    def begin(self) -> None:
        self.offered_at = time.perf_counter()
        self.a.out += b"OFFER " + self.b_nick.encode() + b"\n"

    def on_line(self, conn: Any, line: bytes, measuring: bool) -> None:
        parts = line.split(b" ")
        event = parts[0]
        if event == b"FRAME" and parts[1] != (self.sid_a if conn is self.a else self.sid_b):
            raise SetupError(f"a frame for a session not open here: {line[:100]!r}")
        if conn is self.a:
            if event == b"FRAME":
                self.a_events(self.chan_a.receive_frame(base64.b64decode(parts[2])))
            elif event == b"OK":
                if parts[1] == b"OFFER":
                    self.started[parts[2]] = self.offered_at
            elif event == b"ACCEPTED":
                self.sid_a = parts[1]
                self.chan_a = self.channel(True, self.sid_a)
                for payload in self.chan_a.start():
                    self.frame(self.a, self.sid_a, payload)
            else:
                raise SetupError(f"initiator got {line[:200]!r}")
        elif event == b"FRAME":
            self.b_events(self.chan_b.receive_frame(base64.b64decode(parts[2])), measuring)
        elif event == b"OFFERED":
            self.sid_b = parts[1]
            self.chan_b = self.channel(False, self.sid_b)
            self.chan_b.start()
            self.b.out += b"ACCEPT " + self.sid_b + b"\n"
        elif event == b"CLOSED":
            if parts[1] == self.sid_b:
                self.chan_b, self.sid_b = None, b""
        elif event != b"OK":
            raise SetupError(f"responder got {line[:200]!r}")

    def channel(self, initiator: bool, sid: bytes) -> Any:
        from relaychat.client.channel import Channel

        me, peer = (self.a_nick, self.b_nick) if initiator else (self.b_nick, self.a_nick)
        return Channel(initiator=initiator, sid=sid.decode(), local_nick=me, peer_nick=peer,
                       identity=self.ident, pins=self.pin)

    def a_events(self, events: list[Any]) -> None:
        from relaychat.client.channel import ChannelState, Delivered, HandshakeComplete, SendFrame

        for event in events:
            if isinstance(event, SendFrame):
                self.frame(self.a, self.sid_a, event.payload)
            elif isinstance(event, HandshakeComplete):
                self.check_pin(event)
                self.frame(self.a, self.sid_a, self.chan_a.send_text(FIRST_MESSAGE))
                self.frame(self.a, self.sid_a, self.chan_a.close())
            elif isinstance(event, Delivered) and self.chan_a.state is ChannelState.ENDED:
                # As the client library does: CLOSE the session once B's
                # receipt for the message is in (protocol section 11).
                self.a.out += b"CLOSE " + self.sid_a + b"\n"
                self.chan_a, self.sid_a = None, b""
                self.begin()
            else:
                self.unexpected(event)

    def b_events(self, events: list[Any], measuring: bool) -> None:
        from relaychat.client.channel import HandshakeComplete, MessageReceived, PeerClosed, SendFrame

        for event in events:
            if isinstance(event, SendFrame):
                self.frame(self.b, self.sid_b, event.payload)
            elif isinstance(event, HandshakeComplete):
                self.check_pin(event)
            elif isinstance(event, MessageReceived):
                if event.text != FIRST_MESSAGE:
                    raise SetupError("the first message arrived altered")
                started = self.started.pop(self.sid_b, None)
                if measuring and started is not None:
                    self.done += 1
                    self.latencies.append(time.perf_counter() - started)
            elif isinstance(event, PeerClosed) and event.clean:
                pass
            else:
                self.unexpected(event)

    @staticmethod
    def check_pin(event: Any) -> None:
        from relaychat.crypto.pins import PinStatus

        if event.pin is not PinStatus.MATCH:
            raise SetupError(f"the peer's identity key is {event.pin.name}, not the pinned one")

    @staticmethod
    def unexpected(event: Any) -> None:
        from relaychat.client.channel import ChannelFailed

        raise SetupError(event.reason if isinstance(event, ChannelFailed) else f"unexpected {event!r}")

    @staticmethod
    def frame(conn: Any, sid: bytes, message: bytes | None) -> None:
        if message is None:
            raise SetupError("the channel had nothing to send")
        conn.out += b"FRAME " + sid + b" " + base64.b64encode(message) + b"\n"


def setups(task: dict[str, Any]) -> dict[str, Any]:
    """Pairs setting up sessions back to back; raw epoll, each socket written
    once per poll with everything owed to it."""
    address = (task["host"], task["port"])
    count = task["pairs"]
    conns = connect_many(address, 2 * count, None)
    tag = task.get("tag", "s")
    nicks = [f"{tag}x{i}" for i in range(2 * count)]
    ident = identity()  # one identity for every nickname of this worker: fewer keys to generate
    rc_register(conns, nicks, ident)
    pairs = [SetupPair(conns[2 * i], conns[2 * i + 1], nicks[2 * i], nicks[2 * i + 1], ident)
             for i in range(count)]
    ready()
    if not wait_go():
        return {"error": "no go from the parent"}
    poller = select.epoll()
    owner: dict[int, tuple[SetupPair, Conn]] = {}
    for p in pairs:
        for c in (p.a, p.b):
            c.sock.setblocking(False)
            owner[c.sock.fileno()] = (p, c)
            poller.register(c.sock.fileno(), select.EPOLLIN)
    start = time.perf_counter()
    measure_from = start + task["warmup"]
    end = measure_from + task["duration"]
    measuring = False
    cpu0 = time.process_time()
    for p in pairs:
        p.begin()
    dirty = {c for p in pairs for c in (p.a,)}
    now = start
    failure = None
    while now < end and failure is None:
        for c in dirty:
            failure = _flush(poller, c) or failure
        dirty = set()
        for fd, mask in poller.poll(0.05):
            p, c = owner[fd]
            if mask & select.EPOLLOUT:
                dirty.add(c)
            if not mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            data = _recv(c.sock)
            if data is None:
                continue
            if data == b"":
                failure = "connection closed by the relay"
                break
            *lines, c.buf = (c.buf + data).split(b"\n")
            try:
                for line in lines:
                    p.on_line(c, line, measuring)
            except Exception as e:  # noqa: BLE001 - reported, stops the run
                failure = f"{type(e).__name__}: {e}"
                break
            dirty.update(x for x in (p.a, p.b) if x.out)
        now = time.perf_counter()
        if not measuring and now >= measure_from:
            measuring = True
            measure_from = now
            cpu0 = time.process_time()
    elapsed = now - measure_from
    cpu = time.process_time() - cpu0
    done = sum(p.done for p in pairs)
    latencies = [x for p in pairs for x in p.latencies]
    poller.close()
    for c in conns:
        c.close()
    return {"setups": done, "seconds": elapsed, "per_s": done / elapsed if elapsed > 0 else 0.0,
            "load_cpu_s": cpu, "latency": percentiles(latencies), "failure": failure}


def _flush(poller: select.epoll, c: Conn) -> str | None:
    """Write what ``c`` owes; watch for writability only while something is left."""
    if c.out:
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            n = 0
        except OSError as e:
            return f"send failed: {e}"
        del c.out[:n]
    want = select.EPOLLIN | (select.EPOLLOUT if c.out else 0)
    if want != c.watching:
        poller.modify(c.sock.fileno(), want)
        c.watching = want
    return None


def crypto_only(task: dict[str, Any]) -> dict[str, Any]:
    """The client-side work of one setup (both ends' Channels, the base64 of
    their frames), with no relay and no sockets: the load generator's ceiling."""
    ident = identity()
    ready()
    if not wait_go():
        return {"error": "no go from the parent"}

    class Loopback(SetupPair):
        """Each end's output goes straight to the other end's on_line."""

        def deliver(self) -> None:
            while self.a.out or self.b.out:
                for src, dst in ((self.a, self.b), (self.b, self.a)):
                    lines, src.out = bytes(src.out).split(b"\n")[:-1], bytearray()
                    for line in lines:
                        if line.startswith(b"FRAME "):  # CLOSE and OFFER are for the relay
                            self.on_line(dst, line, True)

    a, b = (types.SimpleNamespace(out=bytearray()) for _ in range(2))
    pair = Loopback(a, b, "ax", "bx", ident)  # type: ignore[arg-type]
    done = 0
    start = time.perf_counter()
    end = start + task["duration"]
    while time.perf_counter() < end:  # the relay's part, by hand: OK OFFER, OFFERED, ACCEPTED, CLOSED
        pair.begin()
        sid = b"s%d" % done
        pair.a.out.clear()
        pair.on_line(pair.a, b"OK OFFER " + sid, True)
        pair.on_line(pair.b, b"OFFERED " + sid + b" ax", True)
        pair.b.out.clear()
        pair.on_line(pair.a, b"ACCEPTED " + sid, True)
        pair.deliver()  # A's message 1 ... the first message, A's goodbye, B's receipt
        pair.on_line(pair.b, b"CLOSED " + sid, True)
        done += 1
    elapsed = time.perf_counter() - start
    if pair.done != done:
        return {"error": f"only {pair.done} of {done} set-ups completed"}
    return {"setups": done, "seconds": elapsed, "per_s": done / elapsed}


# -- TLS handshakes ---------------------------------------------------------------


def handshakes(task: dict[str, Any]) -> dict[str, Any]:
    """TLS 1.3 handshakes back to back, ``concurrency`` at a time: connect,
    handshake, close (no data), connect again. Any TLS server measures the same."""
    address = (task["host"], task["port"])
    context = client_tls()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    poller = select.epoll()
    live: dict[int, ssl.SSLSocket] = {}
    IN, OUT = select.EPOLLIN, select.EPOLLOUT

    def start() -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setblocking(False)
        raw.connect_ex(address)
        sock = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        live[sock.fileno()] = sock
        poller.register(sock.fileno(), OUT)

    def finish(fd: int) -> None:
        poller.unregister(fd)
        live.pop(fd).close()

    for _ in range(task.get("concurrency", 8)):
        start()
    begin = time.perf_counter()
    measure_from = begin + task["warmup"]
    end = measure_from + task["duration"]
    done = failed = 0
    measuring = False
    cpu0 = time.process_time()
    now = begin
    while now < end:
        for fd, mask in poller.poll(0.05):
            sock = live[fd]
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                poller.modify(fd, IN)
                continue
            except ssl.SSLWantWriteError:
                poller.modify(fd, OUT)
                continue
            except (ssl.SSLError, OSError):
                failed += measuring
                finish(fd)
                start()
                continue
            done += measuring
            finish(fd)
            start()
        now = time.perf_counter()
        if not measuring and now >= measure_from:
            measuring, measure_from, cpu0 = True, now, time.process_time()
    elapsed = now - measure_from
    for fd in list(live):
        finish(fd)
    poller.close()
    return {"handshakes": done, "failed": failed, "seconds": elapsed, "per_s": done / elapsed if elapsed > 0 else 0.0,
            "load_cpu_s": time.process_time() - cpu0}


# -- idle clients -----------------------------------------------------------------


def idle(task: dict[str, Any]) -> dict[str, Any]:
    """Hold ``count`` connections (registered, for relaychat; paired, for bare) until told to stop."""
    raise_fd_limit()
    address = (task["host"], task["port"])
    count = task["count"]
    tag = task.get("tag", "i")
    conns: list[Conn] = []
    if task["kind"] == "relaychat":
        ident = identity()
        batch = 250
        tls = client_tls() if task.get("tls") else None
        for start in range(0, count, batch):
            group = connect_many(address, min(batch, count - start), tls, bool(task.get("websocket")))
            rc_register(group, [f"{tag}x{start + i}" for i in range(len(group))], ident, batch=batch)
            conns.extend(group)
    elif task["kind"] == "bare":
        for i in range(0, count, 2):
            a = Conn(address)
            b = Conn(address) if i + 1 < count else None
            token = f"{tag}-{i}\n".encode()
            a.send(token)
            conns.append(a)
            if b is not None:
                b.send(token)
                a.expect(b"OK")
                b.expect(b"OK")
                conns.append(b)
    else:
        raise SetupError(f"idle clients of kind {task['kind']!r} are not supported")
    ready(connections=len(conns))
    wait_go()  # "stop" (or time-out): either way, let go
    for c in conns:
        c.close()
    return {"connections": len(conns)}


# == the worker's side of the conversation with the parent ========================


def ready(**extra: Any) -> None:
    print(json.dumps({"ready": True, **extra}), flush=True)


def wait_command() -> str | None:
    """The parent's next word (``go``, ``stop``), or None if it said nothing in time."""
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    ok = bool(sel.select(GO_TIMEOUT))
    sel.close()
    return sys.stdin.readline().strip() if ok else None


def wait_go() -> bool:
    return wait_command() is not None


def run_task(task: dict[str, Any]) -> None:
    """Set up, say ready, then measure once per ``go`` (stream and ping-pong
    connections stay up between rounds) until ``stop``."""
    name = task["task"]
    single = {"setups": setups, "crypto": crypto_only, "idle": idle}
    if name in single:
        emit(single[name](task))
        return
    if name == "handshakes":  # nothing to set up; measured once per "go"
        ready()
        while wait_command() == "go":
            emit(handshakes(task))
        return
    measure = {"stream": stream, "pingpong": pingpong, "flood": flood}.get(name)
    if measure is None:
        raise SetupError(f"unknown task {name!r}")
    pairs = make_pairs(task, task.get("pairs", 1), task["size"])
    try:
        if name == "stream":
            _nonblocking(pairs)
        ready()
        while True:
            command = wait_command()
            if command is None:
                emit({"error": "no word from the parent"})
                return
            if command != "go":
                return
            emit(measure(task, pairs))
            if name == "flood":
                return
    finally:
        for p in pairs:
            p.a.close()
            p.b.close()


def emit(result: dict[str, Any]) -> None:
    print(json.dumps({"result": result}), flush=True)


def main() -> None:
    raise_fd_limit()
    task = json.loads(sys.stdin.readline())
    try:
        run_task(task)
    except (SetupError, OSError, ValueError) as e:
        emit({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
