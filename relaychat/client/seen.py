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
and a *horizon* line records the newest time dropped: mail sealed at or
before it is refused, so nothing forgotten can be shown twice.
"""

from __future__ import annotations

import enum
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


class SeenMail:
    """Seen message ids, persisted at ``path`` (mode 0600); in memory if ``path`` is None."""

    def __init__(self, path: Optional[StrPath] = None, max_entries: int = MAX_ENTRIES) -> None:
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self._memory = _Record()

    @classmethod
    def in_directory(cls, directory: StrPath) -> SeenMail:
        return cls(Path(directory) / FILENAME)

    # -- reading

    def _read(self) -> _Record:
        if self.path is None:
            return self._memory
        record = _Record()
        try:
            data = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return record
        for line in data.splitlines():
            fields = line.split()
            try:
                if len(fields) == 2 and fields[0] == _HORIZON:
                    record.horizon = max(record.horizon, int(fields[1]))
                    continue
                message_id, time = bytes.fromhex(fields[0]), int(fields[1])
            except (IndexError, ValueError):
                continue  # a damaged line only costs the duplicate check for one mail
            record.ids[message_id] = max(time, record.ids.get(message_id, time))
            record.lines += 1
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
        return Claim.NEW

    def add(self, message_id: bytes, time: int, now: float) -> None:
        """Record an id (whatever :meth:`claim` would say)."""
        self.claim(message_id, time, now)

    # -- writing

    def _append(self, line: str) -> None:
        assert self.path is not None
        append_private_file(self.path, line.encode("ascii"))

    def _compact(self, record: _Record, now: float) -> None:
        """Forget expired ids, then the oldest past ``max_entries`` (raising the horizon)."""
        kept = sorted((t, k) for k, t in record.ids.items() if not self.too_old(t, now))
        while len(kept) > self.max_entries:
            dropped, _ = kept.pop(0)
            record.horizon = max(record.horizon, dropped)
        record.ids = {k: t for t, k in kept}
        record.lines = len(kept)
        if self.path is not None:
            lines = [f"{_HORIZON} {record.horizon}\n"] if record.horizon else []
            lines += [f"{k.hex()} {t}\n" for t, k in kept]
            write_private_file(self.path, "".join(lines).encode("ascii"))
