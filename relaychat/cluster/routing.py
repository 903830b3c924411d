"""Which node holds which user: the cluster's routing core, sans I/O.

Every node keeps a mirror of the users online on the *other* nodes, fed by
the presence events Redis publishes (:mod:`relaychat.cluster.scripts` holds the
scripts that change the shared presence table and publish, in the same
atomic step, what changed; so every node sees the changes in one order).
This module only reads those events and says what follows from them; it
owns no connection and no reactor, and the tests drive it with bytes.

Events, one per message on the events channel (fields separated by one
space; nicknames, node names and tokens never hold a space, identity keys
are base64)::

    J <canonical> <node> <token> <display> <identity-b64> <replaced-token|->
    L <canonical> <node> <token>

``J``: a login on ``node``; it replaced the login with ``replaced-token``
(wherever that was). ``L``: that login ended (or its node was declared gone).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from relaychat.server.directory import RemoteUser
from relaychat.wire.codec import b64decode, b64encode

NODE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
"""A node's name: what it is called in Redis keys and in the console."""


def presence_value(node: str, token: str, display: str, identity_pub: bytes) -> bytes:
    """The presence table's value for one login (also the middle of its ``J`` event)."""
    return f"{node} {token} {display} {b64encode(identity_pub)}".encode("ascii")


def parse_presence(value: bytes) -> RemoteUser:
    node, token, display, identity = value.decode("ascii").split(" ")
    return RemoteUser(node, token, display, b64decode(identity, size=32))


@dataclass(frozen=True)
class Replaced:
    """A local login another node's newer login has replaced: say ``BYE replaced``."""

    canonical: str


@dataclass
class Presence:
    """The mirror of other nodes' users, and the tokens of this node's logins."""

    node: str
    remote: dict[str, RemoteUser] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)  # canonical -> this node's login token

    def login(self, canonical: str) -> str:
        """A new login here: its token (which a later login anywhere names to replace it)."""
        token = secrets.token_hex(8)
        self.local[canonical] = token
        self.remote.pop(canonical, None)
        return token

    def logout(self, canonical: str) -> Optional[str]:
        """The login here ended: its token, to withdraw it from the shared table."""
        return self.local.pop(canonical, None)

    def load(self, table: Mapping[bytes, bytes]) -> None:
        """Replace the mirror with the shared presence table (after (re)connecting)."""
        remote = {}
        for canon, value in table.items():
            try:
                user = parse_presence(value)
            except (ValueError, UnicodeDecodeError):
                continue  # not ours to judge; never fatal
            if user.node != self.node:
                remote[canon.decode("ascii")] = user
        self.remote = remote

    def event(self, data: bytes) -> Optional[Replaced]:
        """Apply one event; returns what this node must do about it, if anything."""
        try:
            fields = data.decode("ascii").split(" ")
        except UnicodeDecodeError:
            return None
        if fields[0] == "J" and len(fields) == 7:
            _, canon, node, token, display, identity, replaced = fields
            try:
                user = RemoteUser(node, token, display, b64decode(identity, size=32))
            except ValueError:
                return None
            mine = self.local.get(canon)
            if node == self.node:
                self.remote.pop(canon, None)
                return None
            self.remote[canon] = user
            if mine is not None and mine == replaced:
                del self.local[canon]
                return Replaced(canon)
        elif fields[0] == "L" and len(fields) == 4:
            _, canon, node, token = fields
            user_there = self.remote.get(canon)
            if user_there is not None and user_there.token == token:
                del self.remote[canon]
        return None

    def nodes(self) -> set[str]:
        """The other nodes users are on, as far as this mirror knows."""
        return {user.node for user in self.remote.values()}


# == between nodes: batches, requests, credit ===================================
#
# Everything one node sends another in one reactor turn is one PUBLISH on the
# receiver's channel (rc:to:<node>), so a read holding fifty frames for users
# on node B costs one Redis command, not fifty; while one PUBLISH to a node
# awaits Redis's answer, what follows for that node joins the next batch, so
# under load batches grow instead of commands multiplying. A batch is lines:
#
#     N <from-node>                       first line
#     @ <canonical> <token> <bytes>       the next <bytes> bytes are lines for that login here
#     @ <canonical> <token> <bytes> <frames>   ... and they are <frames> FRAME lines of one session
#     <relay protocol lines>              as the sender's hub wrote them to its stand-in
#     ! O <id> <sid> <to> <from> <token> <display> <identity-b64>   offer request
#     ! R <id> OK | ! R <id> ERR <code> <text>                       its answer
#     ! C <canonical> <bytes>             credit: send that many more bytes to our user
#
# Protocol lines never start with "@" or "!", so the markers are unambiguous.
# The length lets the receiver cut a run out without scanning it (a scan for
# the next marker runs at about 1 GB/s: a millisecond per MB of frames). A
# "@" line without a length (a node of an earlier version) ends its run at
# the next line that starts with a marker, found by scanning. The frame count
# is the sender's word (its hub checked every frame and wrote nothing else in
# those bytes): the receiver then checks only the session its first line
# names, not every line (two scans, a third of its CPU per MB). A node of an
# earlier version does not read a fourth field: a cluster runs one version.

CREDIT_WINDOW = 4 * 1024 * 1024
"""Bytes a node may have in flight to one user on another node before that
user's senders are paused (as a congested local reader pauses them). It
must cover what one round trip through Redis carries at full speed (a few
milliseconds at hundreds of MB/s) on a machine where the nodes and Redis
wait for each other's cores: at 2 MiB a 16-KiB stream across nodes was
paused 100-130 times per 270 MB (bench/cluster.py), at 4 MiB 14-28 times,
and each pause is a round of sleeping and waking processes. What Redis may
have to hold for a node is at most this per user receiving there."""


class Batches:
    """What this node will publish to each other node at the end of this turn."""

    def __init__(self, node: str) -> None:
        self._header = b"N " + node.encode("ascii") + b"\n"
        self._pending: dict[str, list[bytes]] = {}
        # The run being added to, per node: (canonical, token), where its "@"
        # line goes in the parts (written with the run's length once it ends), its bytes,
        # its frames (-1 once a piece is not frames only) and the session they are of.
        self._open: dict[str, list[Any]] = {}
        self._sizes: dict[str, int] = {}  # node -> bytes of protocol lines waiting for it
        self._controls: set[str] = set()  # nodes a control line waits for

    def lines_for(self, node: str, canonical: str, token: str, data: bytes, frames: int = 0) -> None:
        """Add ``data`` (whole lines) for that login on ``node``; ``frames`` > 0: it is that many
        FRAME lines of one session, and nothing else."""
        parts = self._parts(node)
        run = self._open.get(node)
        if run is None or run[0] != (canonical, token):
            self._close(node)
            parts.append(b"")
            run = self._open[node] = [(canonical, token), len(parts) - 1, 0, 0, data[6:22]]
        parts.append(data)
        run[2] += len(data)
        self._sizes[node] = self._sizes.get(node, 0) + len(data)
        if frames > 0 and run[3] >= 0 and data[6:22] == run[4]:
            run[3] += frames
        else:
            run[3] = -1

    def control(self, node: str, line: str) -> None:
        self._close(node)
        self._controls.add(node)
        self._parts(node).append(b"! " + line.encode("utf-8") + b"\n")

    def _close(self, node: str) -> None:
        run = self._open.pop(node, None)
        if run is not None:
            (canonical, token), at, size, frames, _ = run
            count = f" {frames}" if frames > 0 else ""
            self._pending[node][at] = f"@ {canonical} {token} {size}{count}\n".encode("ascii")

    def _parts(self, node: str) -> list[bytes]:
        parts = self._pending.get(node)
        if parts is None:
            parts = self._pending[node] = [self._header]
        return parts

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __contains__(self, node: str) -> bool:
        return node in self._pending

    def size(self, node: str) -> int:
        """Bytes of protocol lines waiting for ``node`` (its runs, not the control lines)."""
        return self._sizes.get(node, 0)

    def has_control(self, node: str) -> bool:
        """Whether a control line (credit, an offer request or its answer, a kick) waits for ``node``."""
        return node in self._controls

    def nodes(self) -> list[str]:
        """The nodes something is waiting for."""
        return list(self._pending)

    def take_parts(self, node: str) -> list[bytes]:
        """The batch for ``node`` as the pieces it is made of (joined once, where it is sent)."""
        self._close(node)
        self._sizes.pop(node, None)
        self._controls.discard(node)
        return self._pending.pop(node, [])

    def take(self) -> dict[str, bytes]:
        """Every batch, one payload per node, and start afresh."""
        return {node: b"".join(self.take_parts(node)) for node in self.nodes()}


@dataclass(frozen=True)
class Lines:
    """Protocol lines for one login here: ``data`` is whole lines, each ending in a newline."""

    canonical: str
    token: str
    data: bytes
    frames: int = 0  # > 0: the sender says data is that many FRAME lines of one session

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Control:
    fields: list[str]


def parse_batch(payload: bytes) -> tuple[str, list["Lines | Control"]]:
    """The sending node and the batch's items, in order; malformed parts are skipped.

    A run of protocol lines stays one bytes object (cut out by its length,
    not split line by line): the receiving hub can often pass it on whole. A
    run whose length does not end on a line followed by a marker (or the
    end) ends the parse: what follows cannot be trusted to be framed right.
    """
    if not payload.startswith(b"N "):
        return "", []
    end = payload.find(b"\n")
    if end < 0:
        return "", []
    sender = payload[2:end].decode("ascii", "replace")
    items: list[Lines | Control] = []
    at = end + 1
    size = len(payload)
    # Where the next "\n@ " and "\n! " are, found once each and searched for
    # again only once passed: a batch of many runs is scanned once, not once per run.
    next_at = next_bang = -2
    while at < size:
        end = payload.find(b"\n", at)
        if end < 0:
            break
        marker = payload[at:at + 2]
        if marker == b"! ":
            items.append(Control(payload[at + 2:end].decode("utf-8", "replace").split(" ")))
            at = end + 1
        elif marker == b"@ ":
            fields = payload[at + 2:end].decode("ascii", "replace").split(" ")
            start = end + 1
            if len(fields) in (3, 4):
                stop = start + int(fields[2]) if fields[2].isdigit() else -1
                frames = int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else 0
                if not (start < stop <= size and payload[stop - 1] == 10  # b"\n"
                        and (stop == size or payload[stop:stop + 2] in (b"@ ", b"! "))):
                    break
                items.append(Lines(fields[0], fields[1], payload[start:stop], frames))
                at = stop
                continue
            # Markers start lines, so the run ends at the next "\n@ " or "\n! ", found in C.
            if next_at != -1 and next_at < end:
                next_at = payload.find(b"\n@ ", end)
            if next_bang != -1 and next_bang < end:
                next_bang = payload.find(b"\n! ", end)
            stops = [i + 1 for i in (next_at, next_bang) if i >= 0]
            stop = min(stops) if stops else size
            if stop == size and not payload.endswith(b"\n"):
                stop = payload.rfind(b"\n") + 1  # a torn last line is dropped
            if len(fields) == 2 and stop > start:
                items.append(Lines(fields[0], fields[1], payload[start:stop]))
            at = stop
        else:
            at = end + 1  # a line outside any "@" run: not ours to guess at
    return sender, items


class Credit:
    """Credit one way across nodes: bytes this node may still send to a remote user."""

    def __init__(self, window: int = CREDIT_WINDOW, step: int = 0) -> None:
        self.window = window
        # Credit goes back in steps of at least this (or with a batch that goes to
        # that node anyway), not once per batch: a quarter of the window keeps
        # three quarters of it in flight and costs four small messages per window.
        self.step = step or max(1, window // 4)
        self.left: dict[tuple[str, str], int] = {}  # (node, canonical) -> bytes we may send
        self.owed: dict[tuple[str, str], int] = {}  # (node, our canonical) -> bytes to give back

    def spend(self, node: str, canonical: str, size: int) -> bool:
        """We sent ``size`` bytes; False once we must stop."""
        key = (node, canonical)
        left = self.left.get(key, self.window) - size
        self.left[key] = left
        return left > 0

    def exhausted(self, node: str, canonical: str) -> bool:
        """Whether nothing may be sent to ``canonical`` on ``node`` until credit comes back."""
        return self.left.get((node, canonical), self.window) <= 0

    def grant(self, node: str, canonical: str, size: int) -> bool:
        """``node`` gave credit back; True if we may send again."""
        key = (node, canonical)
        left = min(self.window, self.left.get(key, self.window) + size)
        self.left[key] = left
        return left > 0

    def received(self, node: str, canonical: str, size: int) -> None:
        """Bytes for our ``canonical`` arrived from ``node``; owe them back once delivered."""
        key = (node, canonical)
        self.owed[key] = self.owed.get(key, 0) + size

    def due(self, key: tuple[str, str], anyway: bool) -> bool:
        """Whether to give back what is owed for ``key`` now: a whole step of it,
        or any of it when a batch goes to that node ``anyway``.

        Holding back less than a step cannot stall a sender: it stops only
        with a whole window (more than a step) unanswered, and all of that
        is owed once delivered."""
        owed = self.owed.get(key, 0)
        return owed >= self.step or (anyway and owed > 0)

    def forget(self, node: str, canonical: str) -> None:
        self.left.pop((node, canonical), None)
