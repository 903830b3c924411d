"""Splitting a byte stream into protocol lines, with a hard length limit.

A peer controls how much it sends before a newline, so the buffer must be
bounded: once an unfinished line passes ``max_line`` it is dropped, the
caller learns of it at once, and the rest of it is skipped up to the next LF.
"""

from __future__ import annotations

from typing import Final, Optional, cast

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
        lines, rest = _split(data)
        found = cast("list[Optional[bytes]]", lines)  # the same list; a line cut for length becomes TOO_LONG
        limit = self.max_line
        if len(data) > limit:  # only then can a line be too long
            for i, line in enumerate(lines):
                if len(line) > limit + line.endswith(b"\r"):
                    found[i] = TOO_LONG
        if len(rest) > limit + 1:  # rest is unfinished: it may still end in CR
            self._discarding = True
            found.append(TOO_LONG)
        else:
            self._buffer = rest
        return found


_LONG_LINE = 512


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines and the unfinished rest.

    ``bytes.split`` on one byte steps through the data a byte at a time,
    while ``find`` uses memchr: for a few long lines (bulk frames) a
    ``find`` loop is about ten times faster; for many short ones the single
    C call of ``split`` wins. The first line's length tells which case this is.
    """
    first = data.find(b"\n")
    if first < 0:
        return [], data
    if first < _LONG_LINE:
        lines = data.split(b"\n")
        return lines, lines.pop()
    lines = []
    start, find = 0, data.find
    end = first
    while end >= 0:
        lines.append(data[start:end])
        start = end + 1
        end = find(b"\n", start)
    return lines, data[start:]


def strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line
