"""Splitting a byte stream into protocol lines, with a hard length limit.

A peer controls how much it sends before a newline, so the buffer must be
bounded: once an unfinished line passes ``max_line`` it is dropped, the
caller learns of it at once, and the rest of it is skipped up to the next LF.
"""

from __future__ import annotations

from typing import Final, Optional

TOO_LONG: Final = None
"""Stands in the output of :meth:`LineSplitter.feed` for a line cut for length."""


class LineSplitter:
    """Turns chunks of bytes into complete lines (without LF; a CR is kept).

    A trailing CR is kept so that forwarded frames stay byte-identical;
    :func:`strip_cr` removes it where the content matters.
    """

    __slots__ = ("max_line", "_buffer", "_discarding")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Optional[bytes]]:
        """Return the complete lines in ``data``; ``None`` marks a line cut for length."""
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data = data[newline + 1:]
            self._discarding = False
        elif self._buffer:
            data = self._buffer + data
            self._buffer = b""
        lines: list[Optional[bytes]] = data.split(b"\n")  # type: ignore[assignment]
        rest = lines.pop()
        limit = self.max_line
        if len(data) > limit:  # only then can a line be too long
            for i, line in enumerate(lines):
                if len(line) > limit + line.endswith(b"\r"):  # type: ignore[arg-type]
                    lines[i] = TOO_LONG
        if len(rest) > limit + 1:  # rest is unfinished: it may still end in CR
            self._discarding = True
            lines.append(TOO_LONG)
        else:
            self._buffer = rest  # type: ignore[assignment]
        return lines


def strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line
