"""Message ids of sealed mail already shown (protocol section 12).

The relay redelivers mail until it is acknowledged, and a hostile relay
could keep a copy and deliver it again later as new. Remembering every
``message_id`` shown, in a file in the profile directory, makes both
harmless; the library uses that file unless told otherwise.

Two clients on one profile must not erase each other's ids, so the file is
never rewritten from a private copy: :meth:`SeenMail.claim` takes the
profile lock (``relaychat.crypto.pins.locked``), re-reads the file, and
appends the id only if no one has recorded it yet. Claiming is therefore
atomic across processes: of two clients offered the same mail, exactly one
shows it.

The record cannot grow forever. Ids older than ``MAX_AGE`` (by the mail's
own sealed time) are forgotten when the file is compacted, and mail sealed
before that is refused as a possible replay; mail sealed more than
``MAX_SKEW`` in the future is refused too, since its id would never age out.
If a flood of mail still fills ``MAX_ENTRIES`` ids, the oldest are dropped
(down to nine tenths of it) and a *horizon* line records the newest time
dropped: mail sealed at or before it is refused, so nothing forgotten can be
shown twice. A claim appends one line and reads only what other clients
appended since its last read, so it costs O(1) amortised, not a read of
the whole file.
"""

from __future__ import annotations

import enum
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from relaychat.crypto.keyfiles import StrPath, append_private_file, write_private_file
from relaychat.crypto.pins import locked

__all__ = ["FILENAME", "MAX_AGE", "MAX_ENTRIES", "MAX_SKEW", "Claim", "SeenMail"]

FILENAME = "seen_mail"
MAX_AGE = 90 * 86400  # three times the relay's default mail expiry
MAX_SKEW = 86400
MAX_ENTRIES = 100_000  # about 4.5 MB of file
_HORIZON = "horizon"
_GENERATION = "generation"


class Claim(enum.Enum):
    NEW = "new"  # first time: show it
    DUPLICATE = "duplicate"  # shown before (here or by another client on this profile)
    TOO_OLD = "too-old"  # sealed before what is remembered: a replay cannot be ruled out
    FUTURE = "future"  # sealed implausibly far ahead


class _Record:
    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.horizon = 0  # mail sealed at or before this is refused
        self.lines = 0  # entries in the file, expired or not


@dataclass
class _Cache:
    ident: tuple[int, int]  # the file's (device, inode)
    first: bytes  # its first line
    offset: int  # bytes read and parsed into ``record``
    record: _Record


class SeenMail:
    """Seen message ids, persisted at ``path`` (mode 0600); in memory if ``path`` is None."""

    def __init__(self, path: Optional[StrPath] = None, max_entries: int = MAX_ENTRIES) -> None:
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self._memory = _Record()
        self._cache: Optional[_Cache] = None

    @classmethod
    def in_directory(cls, directory: StrPath) -> SeenMail:
        return cls(Path(directory) / FILENAME)

    # -- reading

    def _read(self) -> _Record:
        """The record as the file has it now. Only what was appended since the
        last read is read and parsed: the file is append-only between
        compactions, and a compaction (by any client on the profile) is seen
        as another inode or another first line (each starts with a fresh
        random ``generation`` line), and then the whole file is read again."""
        if self.path is None:
            return self._memory
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            self._cache = None
            return _Record()
        with f:
            st = os.fstat(f.fileno())
            first = f.readline()
            cache = self._cache
            if cache is not None and cache.ident == (st.st_dev, st.st_ino) and cache.first == first \
                    and st.st_size >= cache.offset:
                record, offset = cache.record, cache.offset
            else:
                record, offset = _Record(), 0
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being appended is read once it is whole
        for line in data[:end].decode("ascii", errors="replace").splitlines():
            fields = line.split()
            try:
                if len(fields) == 2 and fields[0] == _HORIZON:
                    record.horizon = max(record.horizon, int(fields[1]))
                    continue
                if fields and fields[0] == _GENERATION:
                    continue
                message_id, time = bytes.fromhex(fields[0]), int(fields[1])
            except (IndexError, ValueError):
                continue  # a damaged line only costs the duplicate check for one mail
            record.ids[message_id] = max(time, record.ids.get(message_id, time))
            record.lines += 1
        self._cache = _Cache((st.st_dev, st.st_ino), first, offset + end, record)
        return record

    # -- the rules

    def _verdict(self, record: _Record, message_id: bytes, time: int, now: float) -> Optional[Claim]:
        if message_id in record.ids:
            return Claim.DUPLICATE
        if time <= record.horizon or self.too_old(time, now):
            return Claim.TOO_OLD
        if time > now + MAX_SKEW:
            return Claim.FUTURE
        return None

    @staticmethod
    def too_old(time: int, now: float) -> bool:
        return time < now - MAX_AGE

    def __contains__(self, message_id: bytes) -> bool:
        return bytes(message_id) in self._read().ids

    def claim(self, message_id: bytes, time: int, now: float) -> Claim:
        """Record ``message_id`` unless it was seen, or is too old or too new to
        judge; say which. Atomic between processes sharing the file."""
        message_id = bytes(message_id)
        if self.path is None:
            return self._claim(self._memory, message_id, time, now)
        with locked(self.path):
            return self._claim(self._read(), message_id, time, now)

    def _claim(self, record: _Record, message_id: bytes, time: int, now: float) -> Claim:
        verdict = self._verdict(record, message_id, time, now)
        if verdict is not None:
            return verdict
        record.ids[message_id] = time
        record.lines += 1
        expired = sum(1 for t in record.ids.values() if self.too_old(t, now))
        if len(record.ids) > self.max_entries or (expired and 2 * expired >= record.lines):
            self._compact(record, now)
        elif self.path is not None:
            self._append(f"{message_id.hex()} {time}\n")
            if self._cache is not None and self._cache.record is record:  # already counted: skip our own line
                self._cache.offset = self.path.stat().st_size
        return Claim.NEW

    def add(self, message_id: bytes, time: int, now: float) -> None:
        """Record an id (whatever :meth:`claim` would say)."""
        self.claim(message_id, time, now)

    # -- writing

    def _append(self, line: str) -> None:
        assert self.path is not None
        append_private_file(self.path, line.encode("ascii"))

    def _compact(self, record: _Record, now: float) -> None:
        """Forget expired ids, then, past ``max_entries``, the oldest down to nine
        tenths of it (raising the horizon), so that a flood rewrites the file
        once per tenth of the bound, not once per mail."""
        kept = sorted((t, k) for k, t in record.ids.items() if not self.too_old(t, now))
        if len(kept) > self.max_entries:
            cut = len(kept) - self.max_entries * 9 // 10
            record.horizon = max(record.horizon, kept[cut - 1][0])
            kept = kept[cut:]
        record.ids = {k: t for t, k in kept}
        record.lines = len(kept)
        if self.path is not None:
            lines = [f"{_GENERATION} {secrets.token_hex(16)}\n"]  # so every reader sees a rewrite as one
            lines += [f"{_HORIZON} {record.horizon}\n"] if record.horizon else []
            lines += [f"{k.hex()} {t}\n" for t, k in kept]
            write_private_file(self.path, "".join(lines).encode("ascii"))
            self._cache = None
