"""The chat screen: received lines scroll above an input line you keep typing in.

Built on ``twisted.conch.insults``: ``insults.ServerProtocol`` over Twisted's
``StandardIO`` parses the keyboard (arrows, Home, End, ...) and
:class:`ChatTerminal` draws. No threads: keystrokes and network events are
all reactor callbacks, so a message that arrives while you type is printed
above the input line and the line is redrawn as it was.

Why not ``twisted.conch.recvline.HistoricRecvLine`` itself: it accepts ASCII
only, lets a long input line wrap (after which its cursor arithmetic is
wrong), and starts by resetting (clearing) the whole terminal. Here the
input line is a one-row window that scrolls sideways
(:class:`~relaychat.chat.editor.LineEditor`, pure and unit-tested; line
breaks in it show as ``↵``) and the program writes below whatever was on
the screen, so the terminal's own scrollback survives; PageUp and PageDown
page through the rows the program keeps itself. Pastes arrive whole
(bracketed paste, :mod:`relaychat.chat.keyboard`), and each read from the
terminal redraws the input row once, so input costs time in proportion to
its size.

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
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from twisted.conch.insults import insults


from relaychat.chat.editor import LineEditor
from relaychat.chat.inert import render_inert
from relaychat.chat.keyboard import BRACKETED_PASTE_OFF, BRACKETED_PASTE_ON, ChatServerProtocol
from relaychat.chat.presenter import Kind, Line, wrap

__all__ = ["ChatServerProtocol", "ChatTerminal", "LineEditor", "SCROLLBACK_ROWS", "raw_terminal", "terminal_size"]

CSI = "\x1b["
ERASE_LINE = "\r" + CSI + "2K"
AUTOWRAP_OFF = CSI + "?7l"
AUTOWRAP_ON = CSI + "?7h"
RESET_ATTRIBUTES = CSI + "0m"
BELL = "\a"
#: Written when the program ends, whatever happened: plain attributes,
#: auto-wrap back on, bracketed paste off, the half-typed input line erased.
RESTORE = (ERASE_LINE + RESET_ATTRIBUTES + AUTOWRAP_ON + BRACKETED_PASTE_OFF).encode("ascii")
#: Screen rows kept for PageUp.
SCROLLBACK_ROWS = 5000

_COLOURS = {
    Kind.STATUS: CSI + "36m",  # cyan
    Kind.GOOD: CSI + "32m",  # green
    Kind.ERROR: CSI + "31m",  # red
    Kind.WARNING: CSI + "1;31m",  # bold red
}
_BOLD = CSI + "1m"


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

    ``on_line(text)`` is called with each message or command the user enters
    (a paste, or Alt-Enter, puts line breaks in it) and ``on_interrupt()``
    on Ctrl-C, or Ctrl-D on an empty line; ``on_lost()`` when the terminal
    goes away (stdin closed).

    Drawing is batched: :class:`~relaychat.chat.keyboard.ChatServerProtocol`
    calls :meth:`begin_batch` and :meth:`end_batch` around each read, and the
    input row is redrawn once at the end, however many keys the read held.
    The rows shown are kept (``SCROLLBACK_ROWS``) for PageUp and PageDown.
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
        self.redraws = 0  # input-row renders, counted so tests can show the work is linear
        self._pending: list[Line] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._connected = False
        self._finished = False
        self._batch = 0
        self._dirty = False
        self._rows: deque[str] = deque(maxlen=SCROLLBACK_ROWS)
        self._scroll = 0  # rows above the newest one the view is scrolled back by
        self._unseen = 0  # rows that arrived while scrolled back

    # -- drawing

    def _write(self, text: str) -> None:
        if self._connected and not self._finished:
            self.terminal.write(text.encode("utf-8"))

    def _input_row(self) -> str:
        self.redraws += 1
        visible, cursor = self.editor.render(self.prompt, self.width)
        return ERASE_LINE + visible + "\r" + (f"{CSI}{cursor}C" if cursor else "")

    def redraw_input(self) -> None:
        if self._batch:
            self._dirty = True
            return
        self._write(self._input_row())

    def begin_batch(self) -> None:
        """Keys until :meth:`end_batch` redraw the input row once, at the end."""
        self._batch += 1

    def end_batch(self) -> None:
        self._batch -= 1
        if not self._batch and self._dirty:
            self._dirty = False
            self._write(self._input_row())

    def show(self, lines: Sequence[Line]) -> None:
        """Print ``lines`` above the input row, then redraw the input row as it was.

        While scrolled back (PageUp) they are kept, not drawn, and the
        bottom of the view counts them; PageDown to the end shows them.
        """
        if not self._connected:
            self._pending.extend(lines)
            return
        rows = [_paint(line, row, index == 0, self.colour)
                for line in lines for index, row in enumerate(wrap(line.text, self.width - 1))]
        self._rows.extend(rows)
        if self._scroll:
            self._scroll = min(self._scroll + len(rows), max(len(self._rows) - self._view_rows, 0))
            self._unseen += len(rows)
            self._draw_view()
            return
        self._dirty = False
        self._write("".join([ERASE_LINE, *(row + "\n" for row in rows), self._input_row()]))

    def set_prompt(self, prompt: str) -> None:
        self.prompt = prompt
        self.redraw_input()

    def alert(self, title: str | None = None) -> None:
        """Something arrived that is not in front: ring the bell, and put
        ``title`` in the window title (see :meth:`set_title`)."""
        self._write(BELL)
        if title is not None:
            self.set_title(title)

    def set_title(self, title: str) -> None:
        """The window title; made inert first (it may hold a nickname)."""
        self._write(f"\x1b]0;{render_inert(title)}\x07")

    def finish(self) -> None:
        """Leave the screen tidy for the shell; nothing is drawn afterwards."""
        self._write(ERASE_LINE + RESET_ATTRIBUTES + AUTOWRAP_ON + BRACKETED_PASTE_OFF)
        self._finished = True

    # -- scrollback

    @property
    def _view_rows(self) -> int:
        return max(self.height - 1, 1)

    def page(self, direction: int) -> None:
        """PageUp (-1) or PageDown (+1) through the rows shown so far."""
        step = max(self._view_rows - 1, 1)
        top = max(len(self._rows) - self._view_rows, 0)
        scroll = min(max(self._scroll - direction * step, 0), top)
        if scroll == self._scroll:
            return
        self._scroll = scroll
        if not scroll:
            self._unseen = 0
        self._draw_view()

    def _draw_view(self) -> None:
        """Draw the view rows (scrolled back by ``_scroll``) and the input row, absolutely placed."""
        rows = list(self._rows)
        end = len(rows) - self._scroll
        window = rows[max(end - self._view_rows, 0) : end]
        window = [""] * (self._view_rows - len(window)) + window
        if self._scroll:
            more = f"-- {self._scroll} more rows below"
            more += f" ({self._unseen} new)" if self._unseen else ""
            window[-1] = CSI + "7m" + more + "; PageDown --" + RESET_ATTRIBUTES
        out = [f"{CSI}{index + 1};1H{CSI}2K{row}" for index, row in enumerate(window)]
        out.append(f"{CSI}{self.height};1H")
        self._dirty = False
        self._write("".join(out) + self._input_row())

    # -- TerminalProtocol

    def connectionMade(self) -> None:
        self._connected = True
        self._write(RESET_ATTRIBUTES + AUTOWRAP_OFF + BRACKETED_PASTE_ON)
        pending, self._pending = self._pending, []
        self.show(pending)  # also draws the input row

    def connectionLost(self, reason: object) -> None:
        self._connected = False
        self.on_lost()

    def terminalSize(self, width: int, height: int) -> None:
        self.width, self.height = max(width, 20), max(height, 2)
        if self._scroll:
            self._draw_view()
        else:
            self.redraw_input()

    def unhandledControlSequence(self, seq: bytes) -> None:
        """Keys we do not bind (F-keys with modifiers, mouse...) are ignored."""

    def paste_received(self, data: bytes) -> None:
        """Pasted bytes (bracketed paste): text for the input, line breaks included."""
        text = self._decoder.decode(data)
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
        self.editor.insert(text)
        self.redraw_input()

    def keystrokeReceived(self, keyID: object, modifier: object) -> None:
        if modifier is not None and modifier == getattr(self.terminal, "ALT", None):
            if keyID == b"\x7f":
                self.editor.kill_word()
                self.redraw_input()
            elif keyID in (b"\r", b"\n"):  # Alt-Enter: a line break in the message
                self.editor.insert("\n")
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
        if key in (t.PGUP, t.PGDN):
            self.page(-1 if key == t.PGUP else 1)
            return
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
