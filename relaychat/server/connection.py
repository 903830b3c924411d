"""Per-connection and per-session state held by the hub.

Plain slotted objects: at ten thousand idle clients every attribute costs,
so these hold only what the hub reads, and nothing with a reactor in it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Protocol

from relaychat.wire.lines import LineSplitter


class Link(Protocol):
    """What the hub needs from a connection; the Twisted adapter provides it."""

    def write(self, data: bytes) -> None: ...
    def set_reading(self, reading: bool) -> None: ...
    def close(self) -> None: ...
    def wake_after(self, seconds: float) -> None: ...


class State(enum.Enum):
    """Where a connection is in the protocol (docs/protocol.rst, section 3)."""

    CONNECTED = 0
    GREETED = 1
    CHALLENGED = 2
    REGISTERED = 3


class Life(enum.Enum):
    """Whether the hub still serves a connection; it only ever moves away from OPEN.

    Both other states are offline and have ended their sessions: CLOSING
    has a ``BYE`` queued and the link closes once it is written (it still
    counts towards the connection limits: it still holds a socket); GONE
    was closed, by us, the other side or the network, and has left the hub.
    """

    OPEN = 0
    CLOSING = 1
    GONE = 2


@dataclass(frozen=True)
class Claim:
    """A registration in progress: what REGISTER asked for and the challenge sent."""

    display: str
    canonical: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes
    challenge: bytes
    pow_bits: int


class Connection:
    __slots__ = (
        "link", "address", "splitter", "state", "nick", "display", "identity_pub", "claim",
        "sessions", "outbox", "outbox_size", "backlog", "congested_at", "violations", "tokens", "tokens_at",
        "last_seen", "connected_at", "congested", "reading", "throttled", "life", "lines_in", "bytes_in",
        "waiting", "frames_out", "frame_bytes_out",
    )

    def __init__(self, link: Link, address: str, max_line: int, burst: int, now: float) -> None:
        self.link = link
        self.address = address
        self.splitter = LineSplitter(max_line)
        self.state = State.CONNECTED
        self.nick: Optional[str] = None  # canonical, once registered
        self.display: Optional[str] = None
        self.identity_pub: Optional[bytes] = None
        self.claim: Optional[Claim] = None
        self.sessions: dict[bytes, Session] = {}
        self.outbox: list[bytes] = []  # written at the end of the hub's entry point
        self.outbox_size = 0  # bytes of replies in it (frames forwarded to it are not counted: see below)
        # The frame lines the hub's hot path put in the outbox, and their bytes (reset when it is
        # written): a write of frame_bytes_out bytes is frames only, so a cluster node can say so.
        self.frames_out = 0
        self.frame_bytes_out = 0
        self.backlog: list[Optional[bytes]] = []  # lines read but not yet handled, in order
        self.congested_at = now
        self.violations = 0
        self.tokens = float(burst)
        self.tokens_at = now
        self.last_seen = now
        self.connected_at = now
        self.congested = False  # our output is backed up: peers must wait
        self.reading = True
        self.throttled = False  # over the line rate: we must wait
        self.life = Life.OPEN
        self.lines_in = 0
        self.bytes_in = 0
        self.waiting = False  # for a directory answer: its further lines wait in the backlog

    def __repr__(self) -> str:
        return f"<Connection {self.display or '?'} from {self.address}>"


class Session:
    __slots__ = ("sid", "initiator", "responder", "open", "created", "frames", "bytes")

    def __init__(self, sid: bytes, initiator: Connection, responder: Connection, created: float) -> None:
        self.sid = sid
        self.initiator = initiator
        self.responder = responder
        self.open = False
        self.created = created
        self.frames = 0
        self.bytes = 0

    def other(self, client: Connection) -> Connection:
        return self.responder if client is self.initiator else self.initiator
