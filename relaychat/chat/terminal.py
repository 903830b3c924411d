"""The chat screen: received lines scroll above an input line you keep typing in.

Built on ``twisted.conch.insults``: ``insults.ServerProtocol`` over Twisted's
``StandardIO`` parses the keyboard (arrows, Home, End, ...) and
:class:`ChatTerminal` draws. No threads: keystrokes and network events are
all reactor callbacks, so a message that arrives while you type is printed
above the input line and the line is redrawn as it was.

Why not ``twisted.conch.recvline.HistoricRecvLine`` itself: it accepts ASCII
only, lets a long input line wrap (after which its cursor arithmetic is
wrong), and starts by resetting (clearing) the whole terminal. Here the
input line is a one-row window that scrolls sideways (:class:`LineEditor`,
pure and unit-tested) and the program writes below whatever was on the
screen, so the scrollback survives.

Two layers keep received text from forging status lines: everything shown
is inert (see ``relaychat.chat.inert``), wrapped by
``relaychat.chat.presenter.wrap`` with indented continuation rows, and
the terminal's auto-wrap mode (DECAWM) is switched off while the program
runs, so a row the width estimate got wrong is cut at the right margin
instead of spilling onto the left margin of the next row.

:func:`raw_terminal` puts the terminal in raw mode and restores it (modes,
auto-wrap, blocking flags) however the program ends.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import struct
import termios
import tty
from collections.abc import Callable, Iterator, Sequence

from twisted.conch.insults import insults

from relaychat.chat.inert import render_inert
from relaychat.chat.presenter import Kind, Line, cell_width, text_width, wrap

__all__ = ["ChatTerminal", "LineEditor", "raw_terminal", "terminal_size"]

CSI = "\x1b["
ERASE_LINE = "\r" + CSI + "2K"
AUTOWRAP_OFF = CSI + "?7l"
AUTOWRAP_ON = CSI + "?7h"
RESET_ATTRIBUTES = CSI + "0m"
#: Written when the program ends, whatever happened: plain attributes,
#: auto-wrap back on, the half-typed input line erased.
RESTORE = (ERASE_LINE + RESET_ATTRIBUTES + AUTOWRAP_ON).encode("ascii")

_COLOURS = {
    Kind.STATUS: CSI + "36m",  # cyan
    Kind.GOOD: CSI + "32m",  # green
    Kind.ERROR: CSI + "31m",  # red
    Kind.WARNING: CSI + "1;31m",  # bold red
}
_BOLD = CSI + "1m"


# -- the input line -------------------------------------------------------------


class LineEditor:
    """The line being typed: characters, cursor, history. No terminal.

    Characters are ``str`` code points (UTF-8 is decoded before they get
    here); only characters :func:`render_inert` leaves alone are accepted,
    so a paste cannot smuggle control characters into what we send.
    """

    def __init__(self, history_size: int = 500) -> None:
        self.chars: list[str] = []
        self.cursor = 0
        self._history: list[str] = []
        self._history_size = history_size
        self._history_pos = 0
        self._draft = ""

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def _set(self, text: str) -> None:
        self.chars = list(text)
        self.cursor = len(self.chars)

    def insert(self, text: str) -> None:
        for ch in text:
            if render_inert(ch) == ch:
                self.chars.insert(self.cursor, ch)
                self.cursor += 1

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
        while start > 0 and self.chars[start - 1] != " ":
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
        """Take the line and start a new one; ``remember`` adds it to history."""
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
        """The visible part of prompt + line for a ``width``-column row, and the cursor column.

        The last column stays free (some terminals wrap as soon as it is
        written). When the line is longer than the room, the window slides
        so the cursor is always visible.
        """
        room = max(width - 1 - text_width(prompt), 8)

        def before_cursor(start: int) -> int:
            return text_width("".join(self.chars[start : self.cursor]))

        start, lead = 0, ""
        if before_cursor(0) + 1 > room:  # +1: the cell the cursor sits on
            start, lead = 1, "<"  # marks that the line goes on to the left
            while start < self.cursor and len(lead) + before_cursor(start) + 1 > room:
                start += 1
        shown: list[str] = []
        used = len(lead)
        for ch in self.chars[start:]:
            w = cell_width(ch)
            if w and used + w > room:
                break
            shown.append(ch)
            used += w
        cursor = text_width(prompt) + len(lead) + before_cursor(start)
        return prompt + lead + "".join(shown), cursor


# -- the screen -----------------------------------------------------------------------


#: Emacs-style control keys, as most shells and chat programs bind them.
_CONTROL_ACTIONS: dict[bytes, str] = {
    b"\x01": "home",  # Ctrl-A
    b"\x02": "left",  # Ctrl-B
    b"\x05": "end",  # Ctrl-E
    b"\x06": "right",  # Ctrl-F
    b"\x08": "backspace",  # Ctrl-H
    b"\x7f": "backspace",
    b"\x0b": "kill_to_end",  # Ctrl-K
    b"\x0e": "history_next",  # Ctrl-N
    b"\x10": "history_previous",  # Ctrl-P
    b"\x15": "kill_to_start",  # Ctrl-U
    b"\x17": "kill_word",  # Ctrl-W
}


def _paint(line: Line, row: str, first: bool, colour: bool) -> str:
    """Add colour to one already-wrapped, inert row (escape codes are ours)."""
    if not colour:
        return row
    code = _COLOURS.get(line.kind)
    if code is not None:
        return code + row + RESET_ATTRIBUTES
    if first and line.kind in (Kind.MESSAGE, Kind.OWN) and row.startswith("<"):
        end = row.find("> ") + 1
        if end > 0:
            return _BOLD + row[:end] + RESET_ATTRIBUTES + row[end:]
    return row


class ChatTerminal(insults.TerminalProtocol):
    """The screen: shows lines above the input row and reads keys into a :class:`LineEditor`.

    ``on_line(text)`` is called with each line the user enters and
    ``on_interrupt()`` on Ctrl-C, or Ctrl-D on an empty line; ``on_lost()``
    when the terminal goes away (stdin closed).
    """

    def __init__(self, colour: bool = True, width: int = 80, height: int = 24) -> None:
        self.editor = LineEditor()
        self.colour = colour
        self.width = width
        self.height = height
        self.prompt = "> "
        self.on_line: Callable[[str], None] = lambda text: None
        self.on_interrupt: Callable[[], None] = lambda: None
        self.on_lost: Callable[[], None] = lambda: None
        self._pending: list[Line] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._connected = False
        self._finished = False

    # -- drawing

    def _write(self, text: str) -> None:
        if self._connected and not self._finished:
            self.terminal.write(text.encode("utf-8"))

    def _input_row(self) -> str:
        visible, cursor = self.editor.render(self.prompt, self.width)
        return ERASE_LINE + visible + "\r" + (f"{CSI}{cursor}C" if cursor else "")

    def redraw_input(self) -> None:
        self._write(self._input_row())

    def show(self, lines: Sequence[Line]) -> None:
        """Print ``lines`` above the input row, then redraw the input row as it was."""
        if not self._connected:
            self._pending.extend(lines)
            return
        out = [ERASE_LINE]
        for line in lines:
            for index, row in enumerate(wrap(line.text, self.width - 1)):
                out.append(_paint(line, row, index == 0, self.colour) + "\n")
        out.append(self._input_row())
        self._write("".join(out))

    def set_prompt(self, prompt: str) -> None:
        self.prompt = prompt
        self.redraw_input()

    def finish(self) -> None:
        """Leave the screen tidy for the shell; nothing is drawn afterwards."""
        self._write(ERASE_LINE + RESET_ATTRIBUTES + AUTOWRAP_ON)
        self._finished = True

    # -- TerminalProtocol

    def connectionMade(self) -> None:
        self._connected = True
        self._write(RESET_ATTRIBUTES + AUTOWRAP_OFF)
        pending, self._pending = self._pending, []
        self.show(pending)  # also draws the input row

    def connectionLost(self, reason: object) -> None:
        self._connected = False
        self.on_lost()

    def terminalSize(self, width: int, height: int) -> None:
        self.width, self.height = max(width, 20), height
        self.redraw_input()

    def unhandledControlSequence(self, seq: bytes) -> None:
        """Keys we do not bind (F-keys with modifiers, mouse...) are ignored."""

    def keystrokeReceived(self, keyID: object, modifier: object) -> None:
        if modifier is not None and modifier == getattr(self.terminal, "ALT", None):
            if keyID == b"\x7f":
                self.editor.kill_word()
                self.redraw_input()
            return
        # insults names special keys with multi-byte tokens such as b"[LEFT_ARROW]"
        # (insults.FUNCTION_KEYS); everything else arrives one byte at a time.
        if keyID in insults.FUNCTION_KEYS:
            self._special(keyID)
        elif isinstance(keyID, bytes) and len(keyID) == 1:
            self._byte(keyID)

    def _special(self, key: object) -> None:
        t = self.terminal
        actions = {
            t.LEFT_ARROW: self.editor.left,
            t.RIGHT_ARROW: self.editor.right,
            t.HOME: self.editor.home,
            t.END: self.editor.end,
            t.DELETE: self.editor.delete,
            t.UP_ARROW: self.editor.history_previous,
            t.DOWN_ARROW: self.editor.history_next,
        }
        action = actions.get(key)
        if action is not None:
            action()
            self.redraw_input()

    def _byte(self, key: bytes) -> None:
        if key in (b"\r", b"\n"):
            self._enter()
        elif key == b"\x03" or (key == b"\x04" and not self.editor.chars):
            self.on_interrupt()
        elif key == b"\x04":
            self.editor.delete()
            self.redraw_input()
        elif key == b"\x0c":  # Ctrl-L: clean up a garbled input row
            self.redraw_input()
        elif key in _CONTROL_ACTIONS:
            getattr(self.editor, _CONTROL_ACTIONS[key])()
            self.redraw_input()
        elif key >= b"\x20":
            text = self._decoder.decode(key)  # "" until a UTF-8 sequence is complete
            if text:
                self.editor.insert(text)
                self.redraw_input()

    def _enter(self) -> None:
        # A typed secret (/verify) is kept out of the history so Up cannot show it.
        secret = self.editor.text.lstrip().lower().startswith(("/verify", "/smp"))
        line = self.editor.submit(remember=not secret)
        self.redraw_input()
        self.on_line(line)


# -- the real terminal ----------------------------------------------------------------


def terminal_size(fd: int) -> tuple[int, int]:
    """(columns, rows) of the terminal on ``fd``; 80x24 if it cannot be asked."""
    try:
        rows, columns, _, _ = struct.unpack("4H", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 80, 24
    return (columns or 80), (rows or 24)


@contextlib.contextmanager
def raw_terminal(fd_in: int = 0, fd_out: int = 1) -> Iterator[None]:
    """Raw mode for the chat screen; everything put back on the way out.

    Restored, even when the program fails: the terminal modes (echo, line
    editing, signals), auto-wrap and text attributes, and the blocking mode
    of stdin and stdout, which Twisted's stdio sets to non-blocking and
    which, on a shared terminal, would otherwise confuse the shell's next
    programs.
    """
    saved_modes = termios.tcgetattr(fd_in)
    saved_flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in {fd_in, fd_out}}
    tty.setraw(fd_in)
    try:
        yield
    finally:
        for fd, flags in saved_flags.items():
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        with contextlib.suppress(OSError):
            os.write(fd_out, RESTORE)
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved_modes)
