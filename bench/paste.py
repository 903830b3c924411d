#!/usr/bin/env python3
"""Pasting into the chat screen: time per paste, before and after issue 15's fix.

    python bench/paste.py

The baseline, measured in the same run, is the input path as it was: one
redraw per byte through ``insults.ServerProtocol``, each redraw re-measuring
the text before the cursor for every start position it tries (quadratic),
so a paste cost O(n^3). Ours is :class:`relaychat.chat.keyboard.ChatServerProtocol`
with bracketed paste: one insert, one O(width) render per read. Printed:
seconds per paste for each size, and the ratio where both were measured
(the baseline stops at 500 bytes: at 1,000 it took 94 s on the reference
machine, 2 shared cores). Target: a 64 KiB paste on screen in well under a second (< 0.1 s here).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.conch.insults import insults  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from relaychat.chat.editor import LineEditor  # noqa: E402
from relaychat.chat.keyboard import PASTE_END, PASTE_START, ChatServerProtocol  # noqa: E402
from relaychat.chat.presenter import cell_width, text_width  # noqa: E402
from relaychat.chat.terminal import ChatTerminal  # noqa: E402

READ = 4096  # bytes per read, as a pty delivers a paste


class OldEditor(LineEditor):
    """The render of before the fix, kept here only as the baseline."""

    def render(self, prompt: str, width: int) -> tuple[str, int]:
        room = max(width - 1 - text_width(prompt), 8)

        def before_cursor(start: int) -> int:
            return text_width("".join(self.chars[start : self.cursor]))

        start, lead = 0, ""
        if before_cursor(0) + 1 > room:
            start, lead = 1, "<"
            while start < self.cursor and len(lead) + before_cursor(start) + 1 > room:
                start += 1
        shown, used = [], len(lead)
        for ch in self.chars[start:]:
            w = cell_width(ch)
            if w and used + w > room:
                break
            shown.append(ch)
            used += w
        return prompt + lead + "".join(shown), text_width(prompt) + len(lead) + before_cursor(start)


def paste(size: int, old: bool) -> float:
    """Seconds to take a ``size``-byte paste and draw it."""
    text = ("hello world, grüße " * (size // 19 + 1))[:size]
    screen = ChatTerminal(colour=False, width=80, height=24)
    if old:
        screen.editor = OldEditor()
        server = insults.ServerProtocol(lambda: screen)  # no batches: a redraw per byte
        data = text.encode()
    else:
        server = ChatServerProtocol(lambda: screen)
        data = PASTE_START + text.encode() + PASTE_END
    server.makeConnection(StringTransport())
    started = time.perf_counter()
    for at in range(0, len(data), READ):
        server.dataReceived(data[at : at + READ])
    elapsed = time.perf_counter() - started
    assert len(screen.editor.text) == len(text)
    return elapsed


def main() -> int:
    rows = []
    for size in (250, 500, 1000, 3000, 65536):
        ours = min(paste(size, old=False) for _ in range(3))
        theirs = paste(size, old=True) if size <= 500 else None  # 1,000 bytes took 94 s on the reference machine
        rows.append((size, ours, theirs))
    print(f"{'paste bytes':>12}  {'before (s)':>11}  {'after (s)':>10}  {'ratio':>8}")
    for size, ours, theirs in rows:
        before = f"{theirs:11.4f}" if theirs is not None else f"{'not run':>11}"
        ratio = f"{theirs / ours:8.0f}" if theirs is not None else f"{'':>8}"
        print(f"{size:>12}  {before}  {ours:10.4f}  {ratio}")
    big = rows[-1][1]
    verdict = "PASS" if big < 0.1 else "MISS"
    print(f"64 KiB paste: {big * 1000:.1f} ms (target < 100 ms): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
