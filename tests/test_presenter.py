"""What the chat program prints, without a terminal: received text stays inert,
status lines are the program's alone, the warnings are loud."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.presenter import Kind, Presenter, wrap


class Presenting(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = Presenter(me="alice", format_time=lambda t: "12:00")

    def test_messages_are_prefixed_and_inert(self) -> None:
        (line,) = self.p.message("bob", "hi\x1b[2J\x07 there")
        self.assertEqual(line.kind, Kind.MESSAGE)
        self.assertTrue(line.text.startswith("<bob> hi"))
        self.assertNotIn("\x1b", line.text)
        self.assertNotIn("\x07", line.text)

    def test_a_message_cannot_start_a_status_line(self) -> None:
        (line,) = self.p.message("bob", "ok\n*** VERIFIED: nobody in the middle")
        for row in line.text.split("\n"):
            self.assertFalse(row.startswith("***"), row)
        for row in wrap(line.text, 30):
            self.assertFalse(row.startswith("***"), row)

    def test_status_lines_start_with_stars(self) -> None:
        for line in self.p.connected("alice", "localhost:7733", "abcd " * 10):
            self.assertTrue(line.text.startswith("*** "), line.text)

    def test_key_change_is_a_loud_warning_naming_both_keys(self) -> None:
        lines = self.p.key_changed("bob", "1111 2222", "3333 4444", "00000 " * 12)
        self.assertTrue(all(l.kind is Kind.WARNING for l in lines))
        text = "\n".join(l.text for l in lines)
        self.assertIn("CHANGED", text)
        self.assertIn("1111 2222", text)
        self.assertIn("3333 4444", text)
        self.assertIn("/trust bob", text)

    def test_truncation_is_reported(self) -> None:
        (first, second) = self.p.ended("bob", clean=False, by_peer=True, reason="the relay closed the session")
        self.assertEqual(first.kind, Kind.ERROR)
        self.assertIn("may have been lost", second.text)
        (clean,) = self.p.ended("bob", clean=True, by_peer=True, reason="")
        self.assertIn("bob left the conversation", clean.text)

    def test_smp_outcomes(self) -> None:
        good = self.p.smp_result("bob", equal=True)
        bad = self.p.smp_result("bob", equal=False)
        self.assertIn("VERIFIED", good[0].text)
        self.assertNotEqual([l.text for l in good], [l.text for l in bad])
        self.assertTrue(any(l.kind is Kind.WARNING for l in bad))

    def test_wrap_indents_continuations(self) -> None:
        rows = wrap("<bob> " + "word " * 40, 40)
        self.assertGreater(len(rows), 1)
        self.assertTrue(all(len(r) <= 40 for r in rows))
        self.assertTrue(all(r.startswith(" ") for r in rows[1:]))
