"""The line being typed: characters, cursor, history. No terminal.

Every operation costs time in proportion to what it changes or shows, never
to the length of the whole text: inserting a pasted block is one slice
assignment, and :meth:`LineEditor.render` looks only at the characters
around the cursor that fit on the row. A 64 KiB paste is therefore one
insert and one render, not 65,536 of each (issue 15: a 3,000-character
paste used to keep the program busy for minutes).
"""

from __future__ import annotations

from relaychat.chat.inert import render_inert
from relaychat.chat.presenter import cell_width, text_width

__all__ = ["LineEditor", "MAX_INPUT", "NEWLINE_MARK"]

#: How a line break inside the text being typed is shown on the input row.
NEWLINE_MARK = "\u21b5"  # ↵
#: The most characters the input holds; a bigger paste is cut here (the
#: library refuses messages past 1 MiB anyway).
MAX_INPUT = 1 << 20


def _allowed(ch: str) -> bool:
    """Characters the input keeps: what render_inert leaves alone, and line breaks."""
    return ch == "\n" or render_inert(ch) == ch


class LineEditor:
    """The text being typed (it may hold line breaks), the cursor and the history.

    Characters are ``str`` code points (UTF-8 is decoded before they get
    here); only characters :func:`render_inert` leaves alone (and ``\\n``)
    are accepted, so a paste cannot smuggle control characters into what
    we send.
    """

    def __init__(self, history_size: int = 500, max_chars: int = MAX_INPUT) -> None:
        self.chars: list[str] = []
        self.cursor = 0
        self.max_chars = max_chars
        self._history: list[str] = []
        self._history_size = history_size
        self._history_pos = 0
        self._draft = ""

    @property
    def text(self) -> str:
        return "".join(self.chars)

    @property
    def lines(self) -> int:
        """How many lines the text has (1 for a plain line)."""
        return self.chars.count("\n") + 1

    def _set(self, text: str) -> None:
        self.chars = list(text)
        self.cursor = len(self.chars)

    def insert(self, text: str) -> int:
        """Insert ``text`` at the cursor in one step; returns how many characters
        were dropped (controls, or past ``max_chars``)."""
        kept = [ch for ch in text if _allowed(ch)]
        room = self.max_chars - len(self.chars)
        dropped = len(text) - len(kept)
        if len(kept) > room:
            dropped += len(kept) - max(room, 0)
            kept = kept[: max(room, 0)]
        self.chars[self.cursor : self.cursor] = kept
        self.cursor += len(kept)
        return dropped

    def backspace(self) -> None:
        if self.cursor > 0:
            self.cursor -= 1
            del self.chars[self.cursor]

    def delete(self) -> None:
        if self.cursor < len(self.chars):
            del self.chars[self.cursor]

    def left(self) -> None:
        self.cursor = max(0, self.cursor - 1)

    def right(self) -> None:
        self.cursor = min(len(self.chars), self.cursor + 1)

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = len(self.chars)

    def kill_to_start(self) -> None:
        del self.chars[: self.cursor]
        self.cursor = 0

    def kill_to_end(self) -> None:
        del self.chars[self.cursor :]

    def kill_word(self) -> None:
        """Delete the word before the cursor (and the spaces after it), like Ctrl-W."""
        start = self.cursor
        while start > 0 and self.chars[start - 1] == " ":
            start -= 1
        while start > 0 and self.chars[start - 1] not in " \n":
            start -= 1
        del self.chars[start : self.cursor]
        self.cursor = start

    def history_previous(self) -> None:
        if self._history_pos == 0:
            return
        if self._history_pos == len(self._history):
            self._draft = self.text
        self._history_pos -= 1
        self._set(self._history[self._history_pos])

    def history_next(self) -> None:
        if self._history_pos >= len(self._history):
            return
        self._history_pos += 1
        if self._history_pos == len(self._history):
            self._set(self._draft)
        else:
            self._set(self._history[self._history_pos])

    def submit(self, remember: bool = True) -> str:
        """Take the text and start anew; ``remember`` adds it to history."""
        line = self.text
        if remember and line.strip() and (not self._history or self._history[-1] != line):
            self._history.append(line)
            del self._history[: -self._history_size]
        self._history_pos = len(self._history)
        self._draft = ""
        self.chars = []
        self.cursor = 0
        return line

    def render(self, prompt: str, width: int) -> tuple[str, int]:
        """The visible part of prompt + text for a ``width``-column row, and the cursor column.

        The last column stays free (some terminals wrap as soon as it is
        written). When the text is longer than the room, the window slides
        so the cursor is always visible; a ``<`` marks text to the left.
        Line breaks show as ``↵``. Work: O(width), whatever the length.
        """
        room = max(width - 1 - text_width(prompt), 8)
        chars = self.chars

        def shown(ch: str) -> str:
            return NEWLINE_MARK if ch == "\n" else ch

        # Walk back from the cursor while the characters (and the cursor's cell) fit.
        start, used = self.cursor, 0
        while start > 0:
            w = cell_width(shown(chars[start - 1]))
            if used + w + 1 > room:
                break
            used += w
            start -= 1
        lead = ""
        if start > 0:  # the text goes on to the left: make room for the mark
            lead = "<"
            while start < self.cursor and len(lead) + used + 1 > room:
                used -= cell_width(shown(chars[start]))
                start += 1
        visible: list[str] = []
        filled = len(lead)
        for index in range(start, len(chars)):
            ch = shown(chars[index])
            w = cell_width(ch)
            if w and filled + w > room:
                break
            visible.append(ch)
            filled += w
        cursor = text_width(prompt) + len(lead) + used
        return prompt + lead + "".join(visible), cursor
