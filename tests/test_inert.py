"""Tests for relaychat.chat.inert: received text cannot act on the terminal."""

from __future__ import annotations

import unicodedata

from twisted.trial import unittest

from relaychat.chat.inert import MAX_MARKS, render_inert


def _terminal_active(text: str) -> list[str]:
    """Characters in ``text`` that a terminal would interpret rather than print."""
    return [
        ch
        for ch in text
        if unicodedata.category(ch) in ("Cc", "Cs")
        or (unicodedata.category(ch) == "Cf" and ch not in "\u200c\u200d")
        or ch in "\u2028\u2029"
    ]


class PlainTextTests(unittest.TestCase):
    def test_ordinary_text_unchanged(self) -> None:
        for text in ["hello", "Grüße, Jürgen!", "日本語のテキスト", "C:\\Users\\bob", "a  b", "", "😀👍"]:
            self.assertEqual(render_inert(text), text)

    def test_emoji_sequences_kept(self) -> None:
        """ZWJ sequences, skin tones and keycaps need ZWJ, VS16 and U+20E3."""
        family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
        keycap = "1\ufe0f\u20e3"
        tone = "\U0001f44d\U0001f3fd"
        for text in [family, keycap, tone]:
            self.assertEqual(render_inert(text), text)

    def test_zwnj_kept(self) -> None:
        persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
        self.assertEqual(render_inert(persian), persian)

    def test_type_checked(self) -> None:
        self.assertRaises(TypeError, render_inert, b"bytes")  # type: ignore[arg-type]


class ControlCharacterTests(unittest.TestCase):
    def test_escape_sequence_shown_as_text(self) -> None:
        self.assertEqual(render_inert("\x1b[2Jgone"), "\\x1b[2Jgone")

    def test_every_c0_and_del_escaped(self) -> None:
        for code in list(range(0x20)) + [0x7F]:
            self.assertEqual(render_inert(chr(code)), f"\\x{code:02x}")

    def test_every_c1_escaped(self) -> None:
        for code in range(0x80, 0xA0):
            self.assertEqual(render_inert(chr(code)), f"\\x{code:02x}")

    def test_single_line_escapes_line_breaks(self) -> None:
        self.assertEqual(render_inert("a\nb\r\nc\rd"), "a\\x0ab\\x0d\\x0ac\\x0dd")
        self.assertEqual(render_inert("a\u2028b\u2029c"), "a\\u2028b\\u2029c")

    def test_tab_and_vertical_motion_escaped(self) -> None:
        self.assertEqual(render_inert("a\tb\x0bc\x0cd\x08e"), "a\\x09b\\x0bc\\x0cd\\x08e")

    def test_osc_title_and_csi_8bit(self) -> None:
        """An OSC window-title sequence and the 8-bit CSI (U+009B) are escaped."""
        self.assertEqual(render_inert("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07")
        self.assertEqual(render_inert("\x9b2J"), "\\x9b2J")

    def test_nel_is_not_a_line_break(self) -> None:
        self.assertEqual(render_inert("a\x85b", multiline=True), "a\\x85b")

    def test_forged_status_line_cannot_reach_left_margin(self) -> None:
        shown = render_inert("hi\r*** bob is verified", multiline=True)
        self.assertEqual(shown, "hi\\x0d*** bob is verified")
        shown = render_inert("hi\n*** bob is verified", multiline=True)
        for line in shown.split("\n")[1:]:
            self.assertTrue(line.startswith("    "))


class MultilineTests(unittest.TestCase):
    def test_line_breaks_indented(self) -> None:
        self.assertEqual(render_inert("one\ntwo", multiline=True), "one\n    two")
        self.assertEqual(render_inert("one\r\ntwo", multiline=True), "one\n    two")
        self.assertEqual(render_inert("a\u2028b\u2029c", multiline=True), "a\n    b\n    c")

    def test_custom_indent(self) -> None:
        self.assertEqual(render_inert("a\nb", multiline=True, indent="| "), "a\n| b")

    def test_empty_indent_refused(self) -> None:
        self.assertRaises(ValueError, render_inert, "a\nb", multiline=True, indent="")

    def test_only_lf_survives(self) -> None:
        nasty = "x\x1b[Ay\r\n\x00\x7f\x9b\u202e\n\n"
        shown = render_inert(nasty, multiline=True)
        self.assertEqual(_terminal_active(shown), ["\n"] * shown.count("\n"))
        self.assertEqual(shown.count("\n"), 3)

    def test_lone_cr_escaped(self) -> None:
        self.assertEqual(render_inert("a\rb", multiline=True), "a\\x0db")

    def test_cr_at_end(self) -> None:
        self.assertEqual(render_inert("a\r", multiline=True), "a\\x0d")


class FormatCharacterTests(unittest.TestCase):
    def test_bidi_controls_escaped(self) -> None:
        for code in list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)):
            self.assertEqual(render_inert(chr(code)), f"\\u{code:04x}")

    def test_rtl_override_cannot_reverse_name(self) -> None:
        self.assertEqual(render_inert("\u202eecila"), "\\u202eecila")

    def test_marks_and_invisibles_escaped(self) -> None:
        for ch in "\u200e\u200f\u061c\u200b\u2060\ufeff\u180e\ufff9\u2061":
            self.assertEqual(render_inert(ch), f"\\u{ord(ch):04x}")
        self.assertEqual(render_inert("soft\u00adhyphen"), "soft\\xadhyphen")

    def test_tag_characters_escaped(self) -> None:
        """Tag characters can smuggle invisible text."""
        self.assertEqual(render_inert("hi\U000e0041\U000e0042"), "hi\\U000e0041\\U000e0042")

    def test_lone_surrogate_escaped(self) -> None:
        shown = render_inert("a\udc80b")
        self.assertEqual(shown, "a\\udc80b")
        shown.encode("utf-8")  # must not raise

    def test_no_format_character_survives(self) -> None:
        every = "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp"))
        self.assertEqual(_terminal_active(render_inert(every)), [])
        multi = render_inert(every, multiline=True)
        self.assertEqual([c for c in _terminal_active(multi) if c != "\n"], [])


class CombiningMarkTests(unittest.TestCase):
    def test_normal_accents_kept(self) -> None:
        text = "e\u0301 a\u0323\u0302 Vie\u0323\u0302t"
        self.assertEqual(render_inert(text), text)

    def test_tower_capped(self) -> None:
        tower = "a" + "\u0300" * (MAX_MARKS + 3)
        shown = render_inert(tower)
        self.assertEqual(shown, "a" + "\u0300" * MAX_MARKS + "\\u0300" * 3)

    def test_count_restarts_on_each_base(self) -> None:
        text = ("a" + "\u0300" * MAX_MARKS) * 3
        self.assertEqual(render_inert(text), text)

    def test_count_restarts_after_line_break(self) -> None:
        text = "a" + "\u0300" * MAX_MARKS + "\n" + "\u0300"
        self.assertEqual(render_inert(text, multiline=True), "a" + "\u0300" * MAX_MARKS + "\n    \u0300")
