"""Keyboard input: bracketed paste taken apart from keys, and one redraw per read.

``insults.ServerProtocol`` parses keys one byte at a time and tells the
screen about each; left alone, the screen redraws the input row once per
byte. :class:`ChatServerProtocol` wraps every read in a *batch* (the screen
redraws once, at its end) and hands a bracketed paste (``ESC [ 200 ~`` ...
``ESC [ 201 ~``, which the screen asks the terminal for) to the screen as
one piece of text, so its line breaks are part of the message instead of
Enter presses, and its bytes never go through the key parser.

:class:`PasteFilter` is the sans-IO part: bytes in, ``(is_paste, bytes)``
pieces out, markers removed, a marker cut between two reads recognised.
"""

from __future__ import annotations

from typing import Any

from twisted.conch.insults import insults

__all__ = ["BRACKETED_PASTE_OFF", "BRACKETED_PASTE_ON", "ChatServerProtocol", "PASTE_END", "PASTE_START",
           "PasteFilter"]

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"


def _held(data: bytes, marker: bytes) -> int:
    """How many bytes at the end of ``data`` could start ``marker``."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if marker.startswith(data[-size:]):
            return size
    return 0


class PasteFilter:
    """Splits what the terminal sends into keys and pasted text."""

    def __init__(self) -> None:
        self.pasting = False
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """``(is_paste, bytes)`` pieces of ``data``, in order; linear in its size."""
        data = self._pending + data
        self._pending = b""
        pieces: list[tuple[bool, bytes]] = []
        while data:
            marker = PASTE_END if self.pasting else PASTE_START
            at = data.find(marker)
            if at < 0:
                keep = _held(data, marker)
                body, self._pending = (data[:-keep], data[-keep:]) if keep else (data, b"")
                if body:
                    pieces.append((self.pasting, body))
                break
            if at:
                pieces.append((self.pasting, data[:at]))
            self.pasting = not self.pasting
            data = data[at + len(marker):]
        return pieces


class ChatServerProtocol(insults.ServerProtocol):
    """``insults.ServerProtocol`` for :class:`~relaychat.chat.terminal.ChatTerminal`:
    pastes go to ``paste_received``, and each read is one batch of drawing."""

    def __init__(self, protocolFactory: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocolFactory, *args, **kwargs)
        self._paste = PasteFilter()

    def dataReceived(self, data: bytes) -> None:
        screen: Any = self.terminalProtocol  # a ChatTerminal
        screen.begin_batch()
        try:
            for pasted, piece in self._paste.feed(data):
                if pasted:
                    screen.paste_received(piece)
                else:
                    super().dataReceived(piece)
        finally:
            screen.end_batch()
