"""Typing and pasting at the chat screen: linear work, whole pastes, line breaks, scrollback.

Issue 15: a 3,000-character paste kept the program busy for minutes (one
quadratic redraw per byte). These tests COUNT the work instead of timing
it: input-row renders, characters measured by ``cell_width``, and bytes
written to the terminal, for a 64 KiB paste and for long typed lines.
"""

from __future__ import annotations

import re

from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from relaychat.chat import editor as editor_module
from relaychat.chat.editor import NEWLINE_MARK, LineEditor
from relaychat.chat.keyboard import PASTE_END, PASTE_START, ChatServerProtocol, PasteFilter
from relaychat.chat.presenter import Kind, Line, text_width
from relaychat.chat.terminal import ChatTerminal

WIDTH, HEIGHT = 80, 12


def paste_of(size: int) -> str:
    """About ``size`` bytes of text over many lines, with non-ASCII in it."""
    lines, total = [], 0
    while total < size:
        line = f"line {len(lines)}: grüße " + "x" * 50
        lines.append(line)
        total += len(line.encode()) + 1
    return "\n".join(lines)


class PasteFilterTests(unittest.TestCase):
    def test_keys_and_paste_apart(self) -> None:
        pieces = PasteFilter().feed(b"ab" + PASTE_START + b"x\ry" + PASTE_END + b"\r")
        self.assertEqual(pieces, [(False, b"ab"), (True, b"x\ry"), (False, b"\r")])

    def test_markers_cut_anywhere_between_reads(self) -> None:
        data = b"k" + PASTE_START + b"pasted\rtext" + PASTE_END + b"z"
        for cut in range(len(data) + 1):
            f = PasteFilter()
            pieces = f.feed(data[:cut]) + f.feed(data[cut:])
            keys = b"".join(p for pasted, p in pieces if not pasted)
            pasted = b"".join(p for is_paste, p in pieces if is_paste)
            self.assertEqual((keys, pasted), (b"kz", b"pasted\rtext"), cut)
            self.assertFalse(f.pasting)

    def test_other_escapes_pass(self) -> None:
        self.assertEqual(PasteFilter().feed(b"\x1b[2~\x1b[D"), [(False, b"\x1b[2~\x1b[D")])


class Screen:
    """A ChatTerminal behind ChatServerProtocol and a StringTransport."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.screen = ChatTerminal(colour=False, width=width, height=height)
        self.lines: list[str] = []
        self.screen.on_line = self.lines.append
        self.server = ChatServerProtocol(lambda: self.screen)
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)

    def feed(self, data: bytes, read: int = 4096) -> None:
        for start in range(0, len(data), read):
            self.server.dataReceived(data[start : start + read])

    def emulate(self) -> list[str]:
        return emulate(self.transport.value().decode("utf-8"), self.screen.width, self.screen.height)


_SEQUENCE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|.", re.DOTALL)


def emulate(data: str, width: int, height: int) -> list[str]:
    """A small terminal for exactly what the screen writes: text, CR, LF
    (scrolling at the bottom), CSI n C, CSI 2K, CSI row;col H; modes,
    colours, titles and bells change nothing visible. (insults' own client
    parser cannot place the cursor: its CSI H always goes home.)"""
    rows = [[" "] * width for _ in range(height)]
    x = y = 0
    for match in _SEQUENCE.finditer(data):
        text = match.group(0)
        final = match.group(2)
        if final == "C":
            x = min(x + int(match.group(1) or 1), width - 1)
        elif final == "K":
            rows[y] = [" "] * width
        elif final == "H":
            row, _, column = (match.group(1) or "1;1").partition(";")
            y, x = min(int(row or 1), height) - 1, min(int(column or 1), width) - 1
        elif final is not None or text.startswith("\x1b]") or text == "\x07":
            continue
        elif text == "\r":
            x = 0
        elif text == "\n":
            if y == height - 1:
                rows = rows[1:] + [[" "] * width]
            else:
                y += 1
        elif x < width:
            rows[y][x] = text
            x += 1
    return ["".join(row).rstrip() for row in rows]


class LinearWorkTests(unittest.TestCase):
    def count_widths(self) -> list[int]:
        calls = [0]
        original = editor_module.cell_width

        def counted(ch: str) -> int:
            calls[0] += 1
            return original(ch)

        self.patch(editor_module, "cell_width", counted)
        return calls

    def test_64_kib_paste_is_one_insert_and_few_renders(self) -> None:
        s = Screen()
        text = paste_of(65536)
        data = PASTE_START + text.encode() + PASTE_END
        reads = -(-len(data) // 4096)
        calls = self.count_widths()
        before = len(s.transport.value())
        renders = s.screen.redraws
        s.feed(data)
        self.assertEqual(s.screen.editor.text, text)
        self.assertEqual(s.lines, [])  # its line breaks are not Enter presses
        # One render per read (not per byte), each looking at about one row of text.
        self.assertLessEqual(s.screen.redraws - renders, reads)
        self.assertLessEqual(calls[0], reads * 3 * WIDTH)
        self.assertLessEqual(len(s.transport.value()) - before, reads * 4 * WIDTH)
        s.feed(b"\r")
        self.assertEqual(s.lines, [text])

    def test_unbracketed_typing_one_read_is_one_render(self) -> None:
        """A terminal without bracketed paste sends a paste as keys: still one render per read."""
        s = Screen()
        renders = s.screen.redraws
        s.feed(b"y" * 65536, read=65536)
        self.assertEqual(s.screen.redraws - renders, 1)
        self.assertEqual(len(s.screen.editor.chars), 65536)

    def test_a_key_costs_the_same_at_any_line_length(self) -> None:
        """Typed one byte per read: the cost of a key does not grow with the line."""
        s = Screen()
        calls = self.count_widths()

        def cost_of_100_keys() -> tuple[int, int]:
            calls[0] = 0
            before = len(s.transport.value())
            for _ in range(100):
                s.server.dataReceived(b"z")
            return calls[0], len(s.transport.value()) - before

        s.feed(b"v" * 200, read=200)  # past one row: the window slides from here on
        short = cost_of_100_keys()
        s.feed(b"w" * 20000, read=20000)
        long = cost_of_100_keys()
        self.assertEqual(short, long)
        self.assertLessEqual(short[0], 100 * 3 * WIDTH)

    def test_render_in_the_middle_of_a_long_text(self) -> None:
        e = LineEditor()
        e.insert("a" * 30000 + "\n" + "b" * 30000)
        e.cursor = 30000
        shown, cursor = e.render("> ", 40)
        self.assertLessEqual(text_width(shown), 39)
        self.assertTrue(shown.startswith("> <"))
        self.assertEqual(shown[cursor], NEWLINE_MARK)

    def test_the_input_is_bounded(self) -> None:
        e = LineEditor(max_chars=10)
        self.assertEqual(e.insert("x" * 25), 15)
        self.assertEqual(len(e.chars), 10)


class WrapWorkTests(unittest.TestCase):
    def test_wrapping_a_long_line_measures_each_character_about_once(self) -> None:
        """Showing a 1 MiB message must not copy or re-measure the rest of it per row."""
        from relaychat.chat import presenter

        calls = [0]
        original = presenter.cell_width

        def counted(ch: str) -> int:
            calls[0] += 1
            return original(ch)

        self.patch(presenter, "cell_width", counted)
        for text in ("x" * 200_000, "word " * 40_000):
            calls[0] = 0
            rows = presenter.wrap(text, 80)
            self.assertEqual("".join(r.strip() for r in rows).replace(" ", ""), text.replace(" ", ""))
            self.assertLessEqual(calls[0], 2 * len(text))


class LineBreakTests(unittest.TestCase):
    def test_alt_enter_inserts_a_line_break(self) -> None:
        s = Screen()
        s.feed(b"first\x1b\rsecond\r")
        self.assertEqual(s.lines, ["first\nsecond"])

    def test_pasted_crlf_and_tabs(self) -> None:
        s = Screen()
        s.feed(PASTE_START + b"a\r\nb\rc\td\x1b[2J" + PASTE_END + b"\r")
        self.assertEqual(s.lines, ["a\nb\nc    d[2J"])  # controls dropped, as when typed

    def test_line_breaks_show_as_a_mark_on_the_input_row(self) -> None:
        s = Screen()
        s.feed(PASTE_START + b"one\ntwo" + PASTE_END)
        self.assertIn(f"> one{NEWLINE_MARK}two", s.emulate())


class ScrollbackTests(unittest.TestCase):
    def setUp(self) -> None:
        self.s = Screen()
        self.s.screen.show([Line(Kind.STATUS, f"*** row {i}") for i in range(40)])

    def test_page_up_and_down(self) -> None:
        s = self.s
        s.feed(b"\x1b[5~")  # PageUp
        rows = s.emulate()
        self.assertEqual(rows[0], "*** row 19")
        self.assertNotIn("*** row 39", rows)
        self.assertTrue(rows[HEIGHT - 2].startswith("-- "), rows)
        s.feed(b"\x1b[6~")  # PageDown, back to the end
        rows = s.emulate()
        self.assertEqual(rows[HEIGHT - 2], "*** row 39")
        self.assertEqual(rows[HEIGHT - 1], ">")

    def test_lines_arriving_while_scrolled_back_wait(self) -> None:
        s = self.s
        s.feed(b"\x1b[5~")
        view = s.emulate()
        s.screen.show([Line(Kind.MESSAGE, "<bob> new one")])
        rows = s.emulate()
        self.assertEqual(rows[: HEIGHT - 2], view[: HEIGHT - 2])  # the view did not move
        self.assertIn("(1 new)", rows[HEIGHT - 2])
        s.feed(b"\x1b[6~\x1b[6~\x1b[6~")
        self.assertEqual(s.emulate()[HEIGHT - 2], "<bob> new one")

    def test_page_up_stops_at_the_oldest_row(self) -> None:
        s = self.s
        s.feed(b"\x1b[5~" * 20)
        self.assertIn("*** row 0", s.emulate())

    def test_typing_while_scrolled_back(self) -> None:
        s = self.s
        s.feed(b"\x1b[5~hello\r")
        self.assertEqual(s.lines, ["hello"])


class AlertTests(unittest.TestCase):
    def test_bell_and_title(self) -> None:
        s = Screen()
        s.screen.alert("relaychat: new message from bob")
        self.assertTrue(s.transport.value().endswith(b"\x07\x1b]0;relaychat: new message from bob\x07"))


class TitleTests(unittest.TestCase):
    def test_title_is_inert(self) -> None:
        s = Screen()
        s.screen.set_title("relaychat: new message from \x1b]0;evil\x07")
        written = s.transport.value()
        self.assertTrue(written.endswith(b"\x1b]0;relaychat: new message from \\x1b]0;evil\\x07\x07"))


class PasteBenchSmoke(unittest.TestCase):
    """bench/paste.py stays runnable (no timing asserted)."""

    def test_both_paths_run(self) -> None:
        from bench import paste

        self.assertGreaterEqual(paste.paste(300, old=False), 0.0)
        self.assertGreaterEqual(paste.paste(40, old=True), 0.0)
