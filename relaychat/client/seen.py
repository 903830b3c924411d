"""Message ids of sealed mail already shown (protocol section 12).

The relay redelivers mail until it is acknowledged, and a hostile relay
could keep a copy and deliver it again later as new. Remembering every
``message_id`` shown, in a file in the config directory, makes both
harmless. The record cannot grow forever: ids older than ``MAX_AGE`` (by
the mail's own sealed time, which only the sender can choose) are
forgotten, and mail sealed longer ago than that is refused as a possible
replay. ``MAX_AGE`` is three times the relay's default mail expiry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from relaychat.crypto.keyfiles import StrPath, write_private_file

__all__ = ["FILENAME", "MAX_AGE", "SeenMail"]

FILENAME = "seen_mail"
MAX_AGE = 90 * 86400


class SeenMail:
    """A set of (message_id, time); persisted at ``path`` (mode 0600) unless it is None."""

    def __init__(self, path: Optional[StrPath] = None) -> None:
        self.path = Path(path) if path is not None else None
        self._seen: dict[bytes, int] = {}
        if self.path is not None:
            self._load()

    @classmethod
    def in_directory(cls, directory: StrPath) -> SeenMail:
        return cls(Path(directory) / FILENAME)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return
        for line in data.splitlines():
            fields = line.split()
            try:
                self._seen[bytes.fromhex(fields[0])] = int(fields[1])
            except (IndexError, ValueError):
                continue  # a damaged line only costs the duplicate check for one mail

    def too_old(self, time: int, now: float) -> bool:
        return time < now - MAX_AGE

    def __contains__(self, message_id: bytes) -> bool:
        return bytes(message_id) in self._seen

    def add(self, message_id: bytes, time: int, now: float) -> None:
        self._seen[bytes(message_id)] = time
        self._seen = {k: t for k, t in self._seen.items() if not self.too_old(t, now)}
        if self.path is not None:
            lines = "".join(f"{k.hex()} {t}\n" for k, t in self._seen.items())
            write_private_file(self.path, lines.encode("ascii"))
