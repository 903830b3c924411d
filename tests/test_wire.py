"""Shared wire helpers: strict base64, length prefixes, line splitting."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.wire.codec import EncodingError, b64decode, b64encode, encoded_length, lp
from relaychat.wire.lines import LineSplitter, strip_cr


class Base64(SynchronousTestCase):
    def test_round_trip_and_sizes(self) -> None:
        for n in range(0, 40):
            data = bytes(range(n))
            self.assertEqual(b64decode(b64encode(data)), data)
            self.assertEqual(len(b64encode(data)), encoded_length(n))

    def test_rejects_every_other_spelling(self) -> None:
        for text in ("YWJj=", "YW Jj", "YWI", "YWJ=", "YW\nJj", "YWJj\n", "é", "YWJ-", "YWJ_", "===="):
            with self.assertRaises(EncodingError, msg=text):
                b64decode(text)

    def test_exact_and_maximum_sizes(self) -> None:
        self.assertEqual(b64decode("YWI=", size=2), b"ab")
        with self.assertRaises(EncodingError):
            b64decode("YWI=", size=3)
        with self.assertRaises(EncodingError):
            b64decode(b64encode(b"x" * 10), max_size=9)

    def test_length_prefix(self) -> None:
        self.assertEqual(lp(b"abc"), b"\x00\x03abc")
        with self.assertRaises(ValueError):
            lp(b"x" * 65536)


class Lines(SynchronousTestCase):
    def test_split_across_chunks_keeping_cr(self) -> None:
        s = LineSplitter(100)
        self.assertEqual(s.feed(b"ab"), [])
        self.assertEqual(s.pending, 2)
        self.assertEqual(s.feed(b"c\r\nde\n"), [b"abc\r", b"de"])
        self.assertEqual(strip_cr(b"abc\r"), b"abc")

    def test_overlong_unfinished_line_is_reported_once_and_skipped(self) -> None:
        s = LineSplitter(10)
        self.assertEqual(s.feed(b"x" * 12), [None])
        self.assertEqual(s.pending, 0)
        self.assertEqual(s.feed(b"y" * 1000), [])
        self.assertEqual(s.feed(b"yy\nok\n"), [b"ok"])

    def test_overlong_complete_line(self) -> None:
        s = LineSplitter(10)
        self.assertEqual(s.feed(b"0123456789\r\n01234567890\nok\n"), [b"0123456789\r", None, b"ok"])

    def test_long_and_short_lines_split_alike(self) -> None:
        # Long first lines take the find loop, short ones bytes.split: same result.
        for first in (10, 511, 512, 5000):
            data = b"a" * first + b"\n" + b"b" * 3 + b"\n\n" + b"c" * 700 + b"\nrest"
            s = LineSplitter(100000)
            self.assertEqual(s.feed(data), [b"a" * first, b"bbb", b"", b"c" * 700])
            self.assertEqual(s.pending, 4)

    def test_buffer_is_bounded(self) -> None:
        s = LineSplitter(10)
        for _ in range(100):
            s.feed(b"z" * 7)
            self.assertLessEqual(s.pending, 11)
