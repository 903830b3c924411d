"""Read receipts for sealed mail (protocol section 12): what we wait for, what we owe.

* :class:`SentMail` remembers each mail we sealed (by its ``message_id``,
  with the recipient and the text's first words) until its read receipt
  comes back, so the program can say "bob read your mail 'see you at 5...'".
  A receipt is accepted only from the recipient the mail was sealed to, on
  the same relay; anything else is ignored.
* :class:`ReceiptOutbox` holds the receipts we owe for mail we opened until
  the relay has stored them: a receipt that cannot be sent now (the relay
  refused, the connection dropped) goes out at the next login.

Both are line files in the profile directory, changed only under the
profile lock (``relaychat.crypto.pins.locked``), so two clients on one
profile keep each other's lines. Both are append-only logs: a record is one
line, appended (again, if it is added again: the last one counts), and a
record that is done is a ``- <its first three fields>`` line appended after
it, so adding or finishing one costs O(1) writes. Both are bounded (a relay
can deliver any amount of mail to open, and a peer may never answer): at
most ``limit`` live records, none older than :data:`MAX_AGE`, the oldest
going first; the file is compacted (rewritten atomically) when it would
pass ``2 * limit`` lines of at most ``max_line`` bytes, or when its oldest
record has expired, so it never holds more than that many bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Optional, TypeVar

from relaychat.crypto.identity import SERVER_ID_SIZE
from relaychat.crypto.keyfiles import StrPath, append_private_file, write_private_file
from relaychat.crypto.pins import locked
from relaychat.client.mail import MESSAGE_ID_SIZE

__all__ = ["MAX_AGE", "Owed", "ReceiptOutbox", "Sent", "SentMail"]

MAX_AGE = 90 * 86400  # as long as seen-mail ids are kept
MAX_SENT = 5000
MAX_OWED = 1000

R = TypeVar("R")


@dataclass(frozen=True)
class Sent:
    message_id: bytes
    server_id: bytes
    nick: str
    time: int
    first_words: str


@dataclass(frozen=True)
class Owed:
    server_id: bytes
    nick: str
    message_id: bytes  # of the mail we opened
    time: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class _Records(Generic[R]):
    """A locked, append-only line file of records, oldest first, bounded by age and count."""

    limit = 0
    max_line = 0  # bytes a line can take, with its LF

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)

    def _parse(self, fields: list[str]) -> R:
        raise NotImplementedError

    def _format(self, record: R) -> str:
        raise NotImplementedError

    @staticmethod
    def _time(record: R) -> int:
        return record.time  # type: ignore[attr-defined, no-any-return]

    def _key(self, record: R) -> tuple[str, ...]:
        """What names a record (its first three fields): a later line with it replaces it, ``- KEY`` ends it."""
        return tuple(self._format(record).split()[:3])

    def _read(self) -> list[R]:
        """Live records, oldest first, at most ``limit``."""
        try:
            text = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return []
        live: dict[tuple[str, ...], R] = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[0] == "-":
                live.pop(tuple(fields[1:]), None)
                continue
            try:
                record = self._parse(fields)
            except (ValueError, IndexError, binascii.Error):
                continue  # damaged: at worst one receipt is not shown or not sent
            key = self._key(record)
            live.pop(key, None)
            live[key] = record
        return list(live.values())[-self.limit:]

    def _oldest_time(self) -> Optional[int]:
        """The time of the file's first record line (the oldest appended), reading only its start."""
        try:
            with self.path.open("r", encoding="ascii", errors="replace") as f:
                for line in f:
                    try:
                        return self._time(self._parse(line.split()))
                    except (ValueError, IndexError, binascii.Error):
                        continue
        except FileNotFoundError:
            pass
        return None

    def _append(self, line: str, now: float) -> None:
        """Append one line under the lock, or compact with it when the file would pass its bound."""
        data = (line + "\n").encode("ascii")
        if len(data) > self.max_line:
            raise ValueError("record too long")
        with locked(self.path):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            oldest = self._oldest_time()
            if size + len(data) <= 2 * self.limit * self.max_line and (oldest is None or oldest >= now - MAX_AGE):
                append_private_file(self.path, data)
                return
            append_private_file(self.path, data)  # so the compaction below reads it like any other line
            records = [r for r in self._read() if self._time(r) >= now - MAX_AGE]
            write_private_file(self.path, "".join(self._format(r) + "\n" for r in records).encode("ascii"))

    def all(self) -> list[R]:
        return self._read()


class SentMail(_Records[Sent]):
    """Mail we sealed whose read receipt has not come back."""

    FILENAME = "sent_mail"
    limit = MAX_SENT
    max_line = 512  # 32 + 44 + 24 + 11 + base64 of 40 characters' UTF-8 (first_words), spaces, LF

    @classmethod
    def in_directory(cls, directory: StrPath) -> SentMail:
        return cls(Path(directory) / cls.FILENAME)

    def _parse(self, fields: list[str]) -> Sent:
        message_id, server_id = bytes.fromhex(fields[0]), _unb64(fields[1])
        if len(message_id) != MESSAGE_ID_SIZE or len(server_id) != SERVER_ID_SIZE:
            raise ValueError("bad line")
        return Sent(message_id, server_id, fields[2], int(fields[3]), _unb64(fields[4]).decode("utf-8"))

    def _format(self, r: Sent) -> str:
        return f"{r.message_id.hex()} {_b64(r.server_id)} {r.nick} {r.time} {_b64(r.first_words.encode('utf-8'))}"

    def add(self, message_id: bytes, server_id: bytes, nick: str, first_words: str, now: float) -> None:
        self._append(self._format(Sent(bytes(message_id), bytes(server_id), nick.lower(), int(now), first_words)), now)

    def take(self, message_id: bytes, server_id: bytes, nick: str, now: float) -> Optional[Sent]:
        """The mail a receipt from ``nick`` names, forgotten now; None if it is not
        ours, not to them, or not on this relay (then nothing changes)."""
        nick = nick.lower()
        found = next((r for r in self._read()
                      if r.message_id == message_id and r.server_id == server_id and r.nick == nick), None)
        if found is not None:
            self._append("- " + " ".join(self._key(found)), now)
        return found


class ReceiptOutbox(_Records[Owed]):
    """Receipts we owe for mail we opened, until the relay has stored them."""

    FILENAME = "mail_receipts"
    limit = MAX_OWED
    max_line = 128  # 44 + 24 + 32 + 11, spaces and LF

    @classmethod
    def in_directory(cls, directory: StrPath) -> ReceiptOutbox:
        return cls(Path(directory) / cls.FILENAME)

    def _parse(self, fields: list[str]) -> Owed:
        server_id, message_id = _unb64(fields[0]), bytes.fromhex(fields[2])
        if len(message_id) != MESSAGE_ID_SIZE or len(server_id) != SERVER_ID_SIZE:
            raise ValueError("bad line")
        return Owed(server_id, fields[1], message_id, int(fields[3]))

    def _format(self, r: Owed) -> str:
        return f"{_b64(r.server_id)} {r.nick} {r.message_id.hex()} {r.time}"

    def add(self, server_id: bytes, nick: str, message_id: bytes, now: float) -> Owed:
        record = Owed(bytes(server_id), nick.lower(), bytes(message_id), int(now))
        self._append(self._format(record), now)
        return record

    def pending(self, server_id: bytes) -> list[Owed]:
        return [r for r in self._read() if r.server_id == server_id]

    def done(self, owed: Owed, now: float) -> None:
        self._append("- " + " ".join(self._key(owed)), now)
