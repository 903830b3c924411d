"""Read receipts for sealed mail (protocol section 12): what we wait for, what we owe.

* :class:`SentMail` remembers each mail we sealed (by its ``message_id``,
  with the recipient and the text's first words) until its read receipt
  comes back, so the program can say "bob read your mail 'see you at 5...'".
  A receipt is accepted only from the recipient the mail was sealed to, on
  the same relay; anything else is ignored.
* :class:`ReceiptOutbox` holds the receipts we owe for mail we opened until
  the relay has stored them: a receipt that cannot be sent now (the relay
  refused, the connection dropped) goes out at the next login.

Both are small line files in the profile directory, changed only under the
profile lock after re-reading (``relaychat.crypto.pins.locked``), so two
clients on one profile keep each other's lines; both are bounded (a relay
can deliver any amount of mail to open, and a peer may never answer), by
age and by count, the oldest going first.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Optional, Protocol, TypeVar

from relaychat.crypto.identity import SERVER_ID_SIZE
from relaychat.crypto.keyfiles import StrPath, write_private_file
from relaychat.crypto.pins import locked
from relaychat.client.mail import MESSAGE_ID_SIZE

__all__ = ["MAX_AGE", "Owed", "ReceiptOutbox", "Sent", "SentMail"]

MAX_AGE = 90 * 86400  # as long as seen-mail ids are kept
MAX_SENT = 5000
MAX_OWED = 1000

class _Timed(Protocol):
    @property
    def time(self) -> int: ...


R = TypeVar("R", bound=_Timed)


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
    """A locked line file of records, oldest first, bounded by age and count."""

    limit = 0

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)

    def _parse(self, fields: list[str]) -> R:
        raise NotImplementedError

    def _format(self, record: R) -> str:
        raise NotImplementedError

    @staticmethod
    def _time(record: R) -> int:
        return record.time

    def _read(self) -> list[R]:
        try:
            text = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                records.append(self._parse(line.split()))
            except (ValueError, IndexError, binascii.Error):
                continue  # damaged: at worst one receipt is not shown or not sent
        return records

    def _change(self, change: Callable[[list[R]], list[R]], now: float) -> None:
        with locked(self.path):
            records = [r for r in change(self._read()) if self._time(r) >= now - MAX_AGE]
            records = records[-self.limit:]
            write_private_file(self.path, "".join(self._format(r) + "\n" for r in records).encode("ascii"))

    def all(self) -> list[R]:
        return self._read()


class SentMail(_Records[Sent]):
    """Mail we sealed whose read receipt has not come back."""

    FILENAME = "sent_mail"
    limit = MAX_SENT

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
        record = Sent(bytes(message_id), bytes(server_id), nick.lower(), int(now), first_words)
        self._change(lambda records: records + [record], now)

    def take(self, message_id: bytes, server_id: bytes, nick: str, now: float) -> Optional[Sent]:
        """The mail a receipt from ``nick`` names, forgotten now; None if it is not
        ours, not to them, or not on this relay (then nothing changes)."""
        found: list[Sent] = []

        def change(records: list[Sent]) -> list[Sent]:
            for r in records:
                if r.message_id == message_id and r.server_id == server_id and r.nick == nick.lower():
                    found.append(r)
            return [r for r in records if r not in found]
        if not any(r.message_id == message_id for r in self._read()):
            return None
        self._change(change, now)
        return found[0] if found else None


class ReceiptOutbox(_Records[Owed]):
    """Receipts we owe for mail we opened, until the relay has stored them."""

    FILENAME = "mail_receipts"
    limit = MAX_OWED

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
        self._change(lambda records: [r for r in records if r != record] + [record], now)
        return record

    def pending(self, server_id: bytes) -> list[Owed]:
        return [r for r in self._read() if r.server_id == server_id]

    def done(self, owed: Owed, now: float) -> None:
        self._change(lambda records: [r for r in records if r != owed], now)
