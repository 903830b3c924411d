"""The known-peers file: trust on first use (protocol section 13).

One line per pin::

    <server_id_b64> <canonical_nick> <identity_pub_b64>

Blank lines and lines starting with ``#`` are comments. The file is re-read
on every call (it is small) so two clients sharing it see each other's pins,
and rewritten atomically with mode 0600 under an advisory lock.

Damage is never fatal and never silent: an unreadable line is kept verbatim
on rewrite and reported in ``KnownPeers.problems``. If a damaged line can
still be attributed to a (relay, nickname) - its first two fields are
readable - that pin is *disputed*: ``check`` answers CHANGED for any key
until the user accepts one with ``replace``. Otherwise a corrupted pin would
read as "never seen", and the next key, perhaps an attacker's, would be
pinned without a warning.

The file is bounded: at most :data:`MAX_PINS_PER_RELAY` nicknames per relay
(a hostile relay can present any number of nicknames, each a first
contact). A pin is never dropped to make room, since a dropped pin would
let its nickname's next key through unwarned: at the bound a first contact
is refused with :class:`PinsFull` (the conversation does not start, the
mail stays on the relay), saying how to make room. A new pin is appended
(O(1)); only ``replace``, after the user decided, rewrites the file, atomically.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TypeVar

from relaychat.crypto.identity import KEY_SIZE, SERVER_ID_SIZE
from relaychat.crypto.keyfiles import StrPath, append_private_file, make_private_dir, write_private_file
from relaychat.wire.codec import EncodingError, b64decode, b64encode
from relaychat.wire.nicknames import is_nickname

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FILENAME", "MAX_PINS_PER_RELAY", "KnownPeers", "PinConflict", "PinError", "PinFile", "PinStatus", "PinsFull",
    "data_lines", "locked", "read_lines",
]

FILENAME = "known_peers"
MAX_PINS_PER_RELAY = 10_000  # nicknames pinned per relay id: about 1.2 MB of file
HEADER = (
    b"# relaychat known peers: <server_id_b64> <canonical_nick> <identity_pub_b64>\n"
    b"# A changed key for a pinned nickname stops the conversation until accepted.\n"
)



@contextlib.contextmanager
def locked(path: StrPath) -> Iterator[None]:
    """Serialise read-modify-write of ``path`` between processes sharing it.

    The lock is on a side file (``<name>.lock``) because the file itself is
    replaced by rename on every write. Every profile file that two clients
    may share (pins, known relays, seen mail, contacts) is changed only
    under this lock, after re-reading it, so neither erases the other's
    additions.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    make_private_dir(path.parent)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class PinStatus(enum.Enum):
    NEW = "new"  # nothing pinned for this relay and nickname
    MATCH = "match"  # the pinned key is this key
    CHANGED = "changed"  # a different key is pinned, or the pin is disputed


class PinError(Exception):
    """Base class; ``str(e)`` is a sentence for the user."""


class PinConflict(PinError):
    """``pin`` was asked to pin over a different (or disputed) pin."""


class PinsFull(PinError):
    """A first contact beyond a profile file's bound: refused, never made room for."""


@dataclass
class _Entry:
    keys: list[bytes] = field(default_factory=list)
    damaged: bool = False


@dataclass
class _State:
    lines: list[bytes]
    entries: dict[tuple[bytes, str], _Entry]
    attributed: dict[int, tuple[bytes, str]]  # line index -> its (relay, nick)
    problems: list[str]


def _canonical(nick: str) -> str:
    if not isinstance(nick, str):
        raise TypeError("nick must be a string")
    if not is_nickname(nick):
        raise ValueError(f"{nick!r} is not a valid nickname.")
    return nick.lower()


def _check(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise ValueError(f"The {what} must be {size} bytes.")
    return bytes(value)


def _same_key(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def read_lines(path: Path, what: str) -> list[bytes]:
    """The lines of a profile file without their LF (``[]`` if it does not exist);
    PinError with a sentence if it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise PinError(f"The {what} file {path} cannot be read: {e.strerror}.") from e
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def data_lines(lines: list[bytes]) -> Iterator[tuple[int, Optional[str]]]:
    """(index, text) of each line that is neither blank nor a ``#`` comment; text
    is None for a line that is not UTF-8 (the caller keeps it verbatim)."""
    for index, raw in enumerate(lines):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        try:
            yield index, line.decode("utf-8")
        except UnicodeDecodeError:
            yield index, None


class PinFile:
    """What every trust-on-first-use file has: a path in the profile
    directory, and the sentences about its damaged lines."""

    FILENAME = ""

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self._problems: list[str] = []

    @classmethod
    def in_directory(cls: type[_P], directory: StrPath) -> _P:
        """The file in a profile (config) directory."""
        return cls(Path(directory) / cls.FILENAME)

    @property
    def problems(self) -> list[str]:
        """Sentences describing damaged lines, as of the last read."""
        return list(self._problems)


_P = TypeVar("_P", bound=PinFile)


class KnownPeers(PinFile):
    """Pinned identity keys per (relay ``server_id``, canonical nickname)."""

    FILENAME = FILENAME
    max_per_relay = MAX_PINS_PER_RELAY

    # -- reading ---------------------------------------------------------

    def _read(self) -> _State:
        lines = read_lines(self.path, "known-peers")
        entries: dict[tuple[bytes, str], _Entry] = {}
        attributed: dict[int, tuple[bytes, str]] = {}
        problems: list[str] = []
        for index, text in data_lines(lines):
            where = f"{self.path}, line {index + 1}"
            if text is None:
                problems.append(f"{where}: not UTF-8 text; the line is kept but ignored.")
                continue
            fields = text.split()
            server_id = nick = None
            if fields:
                try:
                    server_id = b64decode(fields[0], size=SERVER_ID_SIZE)
                except EncodingError:
                    server_id = None
            if server_id is not None and len(fields) >= 2 and is_nickname(fields[1]):
                # A hand-edited "Alice" still guards "alice" rather than
                # leaving it unpinned.
                nick = fields[1].lower()
            key = None
            if nick is not None and len(fields) == 3:
                try:
                    key = b64decode(fields[2], size=KEY_SIZE)
                except EncodingError:
                    key = None
            if server_id is not None and nick is not None:
                entry = entries.setdefault((server_id, nick), _Entry())
                attributed[index] = (server_id, nick)
                if key is not None:
                    if entry.keys and not any(_same_key(k, key) for k in entry.keys):
                        problems.append(
                            f"{where}: a second, different key for {nick!r}; "
                            "the pin is disputed until a key is accepted."
                        )
                    entry.keys.append(key)
                    continue
                entry.damaged = True
                problems.append(
                    f"{where}: the key pinned for {nick!r} is unreadable; "
                    "the pin is disputed until a key is accepted."
                )
                continue
            problems.append(f"{where}: not '<relay> <nickname> <key>'; the line is kept but ignored.")
        self._problems = problems
        return _State(lines, entries, attributed, problems)

    @staticmethod
    def _status(entry: _Entry | None, identity_pub: bytes) -> PinStatus:
        if entry is None:
            return PinStatus.NEW
        if entry.damaged or not entry.keys:
            return PinStatus.CHANGED
        # Evaluate every comparison (no short-circuit) so the time taken does
        # not depend on which stored key differs.
        results = [_same_key(k, identity_pub) for k in entry.keys]
        return PinStatus.MATCH if all(results) else PinStatus.CHANGED

    def check(self, server_id: bytes, nick: str, identity_pub: bytes) -> PinStatus:
        """NEW (never seen), MATCH (pinned key), or CHANGED (stop and warn)."""
        key = (_check(server_id, SERVER_ID_SIZE, "server id"), _canonical(nick))
        identity_pub = _check(identity_pub, KEY_SIZE, "identity key")
        return self._status(self._read().entries.get(key), identity_pub)

    def get(self, server_id: bytes, nick: str) -> bytes | None:
        """The pinned key, or None if nothing is pinned.

        Raises ``PinError`` for a disputed pin (damaged or conflicting lines):
        returning either key, or None, would let a caller skip the warning.
        """
        key = (_check(server_id, SERVER_ID_SIZE, "server id"), _canonical(nick))
        entry = self._read().entries.get(key)
        if entry is None:
            return None
        first = entry.keys[0] if entry.keys else None
        if first is None or entry.damaged or not all(_same_key(k, first) for k in entry.keys):
            raise PinError(
                f"The pin for {key[1]!r} in {self.path} is damaged or contradictory; "
                "check the key with its owner and accept it again."
            )
        return first

    def pins_on(self, server_id: bytes) -> dict[str, bytes | None]:
        """Every nickname pinned on this relay, with its key; None for a
        disputed pin (damaged or contradictory lines)."""
        server_id = _check(server_id, SERVER_ID_SIZE, "server id")
        found: dict[str, bytes | None] = {}
        for (relay, nick), entry in self._read().entries.items():
            if relay == server_id:
                first = entry.keys[0] if entry.keys else None
                clean = first is not None and not entry.damaged and all(_same_key(k, first) for k in entry.keys)
                found[nick] = first if clean else None
        return found

    # -- writing ---------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.path)

    @staticmethod
    def _line(server_id: bytes, nick: str, identity_pub: bytes) -> bytes:
        return f"{b64encode(server_id)} {nick} {b64encode(identity_pub)}".encode("ascii")

    def _write(self, lines: list[bytes]) -> None:
        write_private_file(self.path, b"".join(line + b"\n" for line in lines))

    def _with_header(self, lines: list[bytes]) -> list[bytes]:
        if lines:
            return lines
        return HEADER.rstrip(b"\n").split(b"\n")

    def pin(self, server_id: bytes, nick: str, identity_pub: bytes) -> PinStatus:
        """Pin a key seen for the first time; returns NEW, or MATCH if already pinned.

        Raises ``PinConflict`` if a different key is pinned or the pin is
        disputed: only ``replace``, after the user decided, may overwrite.
        """
        server_id = _check(server_id, SERVER_ID_SIZE, "server id")
        canonical = _canonical(nick)
        identity_pub = _check(identity_pub, KEY_SIZE, "identity key")
        with self._locked():
            state = self._read()
            status = self._status(state.entries.get((server_id, canonical)), identity_pub)
            if status is PinStatus.MATCH:
                return status
            if status is PinStatus.CHANGED:
                raise PinConflict(
                    f"A different key is already pinned for {canonical!r}; "
                    "it can only be replaced after you accept the new key."
                )
            if sum(1 for relay, _ in state.entries if relay == server_id) >= self.max_per_relay:
                raise PinsFull(
                    f"{canonical!r} is a first contact, but {self.max_per_relay} nicknames are already pinned "
                    f"for this relay, the most kept; none is dropped to make room (that would let its next "
                    f"key through unwarned). Delete the lines of contacts you no longer need from {self.path}."
                )
            head = b"" if state.lines else HEADER
            append_private_file(self.path, head + self._line(server_id, canonical, identity_pub) + b"\n")
            return PinStatus.NEW

    def replace(self, server_id: bytes, nick: str, identity_pub: bytes) -> None:
        """Pin ``identity_pub`` after the user accepted it as the peer's new key.

        Every line for this relay and nickname, including damaged ones, is
        removed; all other lines, damaged or not, are kept as they were.
        """
        server_id = _check(server_id, SERVER_ID_SIZE, "server id")
        canonical = _canonical(nick)
        identity_pub = _check(identity_pub, KEY_SIZE, "identity key")
        target = (server_id, canonical)
        with self._locked():
            state = self._read()
            kept = [
                line
                for index, line in enumerate(state.lines)
                if state.attributed.get(index) != target
            ]
            lines = self._with_header(kept)
            lines.append(self._line(server_id, canonical, identity_pub))
            self._write(lines)
            self._read()  # refresh ``problems``
