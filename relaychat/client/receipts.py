"""End-to-end delivery receipts (protocol section 11, type 0x04 RECEIPT), sans I/O.

The peer answers every TEXT with ``RECEIPT n``: "I have every message you
sent up to your number ``n``". :class:`Unconfirmed` is the sender's side:
the TEXTs not yet confirmed, each remembered only by its first words (what
the user is told if the conversation is cut off), and bounded, since a peer
that never confirms (an older client) must not make us hold every message.
The channel (``channel.py``) encrypts and numbers; this module only counts.
"""

from __future__ import annotations

__all__ = ["MAX_UNCONFIRMED", "PREVIEW_CHARS", "RECEIPT_SIZE", "Unconfirmed", "decode", "encode", "first_words"]

RECEIPT_SIZE = 8
MAX_UNCONFIRMED = 10000  # named by their first words; older ones are only counted
PREVIEW_CHARS = 40


def first_words(text: str, limit: int = PREVIEW_CHARS) -> str:
    """How a sent message is named when telling whether it arrived: its first
    words, white space collapsed, cut at a word boundary near ``limit``."""
    shown = ""
    for word in text.split():
        candidate = f"{shown} {word}" if shown else word
        if len(candidate) > limit:
            return (shown or word[:limit]) + "\u2026"
        shown = candidate
    return shown


def encode(number: int) -> bytes:
    return number.to_bytes(RECEIPT_SIZE, "big")


def decode(body: bytes) -> int:
    """The number in a RECEIPT body; 0 (never valid) if the body is malformed."""
    return int.from_bytes(body, "big") if len(body) == RECEIPT_SIZE else 0


class Unconfirmed:
    """Our TEXT messages the peer has not confirmed yet, oldest first."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = MAX_UNCONFIRMED if limit is None else limit
        self._words: dict[int, str] = {}
        self._forgotten = 0  # unconfirmed, but past the limit: counted, not named
        self.confirmed = 0  # the peer has every message of ours up to this number

    def __bool__(self) -> bool:
        return bool(self._words) or bool(self._forgotten)

    @property
    def items(self) -> list[tuple[int, str]]:
        return list(self._words.items())

    @property
    def count(self) -> int:
        return len(self._words) + self._forgotten

    def sent(self, number: int, text: str) -> None:
        if len(self._words) >= self._limit and self._words:
            del self._words[next(iter(self._words))]
            self._forgotten += 1
        self._words[number] = first_words(text)

    def confirm(self, number: int, sent: int) -> tuple[tuple[int, str], ...] | None:
        """Apply ``RECEIPT number`` (``sent``: how many messages we have sent).

        Returns the TEXTs now delivered as (number, first words), or None if
        the receipt is impossible (not after the last one, or beyond what was
        sent)."""
        if not self.confirmed < number <= sent:
            return None
        self.confirmed = number
        delivered = tuple((n, w) for n, w in self._words.items() if n <= number)
        for n, _ in delivered:
            del self._words[n]
        if not self._words:
            self._forgotten = 0  # receipts are cumulative: the older ones are in too
        return delivered
