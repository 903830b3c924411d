"""Tests for relaychat.crypto.pins (protocol section 13, trust on first use)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto import pins
from relaychat.crypto.pins import KnownPeers, PinConflict, PinError, PinStatus
from relaychat.wire.codec import b64encode

RELAY = bytes(range(32))
OTHER_RELAY = bytes(range(1, 33))
KEY_A = bytes([0xA0]) * 32
KEY_B = bytes([0xB0]) * 32
KEY_C = bytes([0xC0]) * 32


def _line(server_id: bytes, nick: str, key: bytes) -> str:
    return f"{b64encode(server_id)} {nick} {b64encode(key)}"


class KnownPeersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.path = self.dir / "known_peers"
        self.peers = KnownPeers(self.path)

    def test_new_when_no_file(self) -> None:
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.NEW)
        self.assertIsNone(self.peers.get(RELAY, "alice"))
        self.assertFalse(self.path.exists())

    def test_pin_then_match(self) -> None:
        self.assertEqual(self.peers.pin(RELAY, "alice", KEY_A), PinStatus.NEW)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertEqual(self.peers.get(RELAY, "alice"), KEY_A)
        self.assertEqual(self.peers.pin(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertIn(_line(RELAY, "alice", KEY_A), self.path.read_text().splitlines())
        self.assertEqual(self.path.read_text().count(b64encode(KEY_A)), 1)

    def test_changed(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.CHANGED)
        with self.assertRaises(PinConflict) as cm:
            self.peers.pin(RELAY, "alice", KEY_B)
        self.assertIn("accept", str(cm.exception))
        self.assertEqual(self.peers.get(RELAY, "alice"), KEY_A)

    def test_replace(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        self.peers.replace(RELAY, "alice", KEY_B)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.MATCH)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.CHANGED)
        self.assertNotIn(b64encode(KEY_A), self.path.read_text())

    def test_replace_unpinned(self) -> None:
        self.peers.replace(RELAY, "bob", KEY_C)
        self.assertEqual(self.peers.get(RELAY, "bob"), KEY_C)

    def test_scoped_by_relay_and_nick(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        self.assertEqual(self.peers.check(OTHER_RELAY, "alice", KEY_B), PinStatus.NEW)
        self.assertEqual(self.peers.check(RELAY, "bob", KEY_A), PinStatus.NEW)
        self.peers.pin(OTHER_RELAY, "alice", KEY_B)
        self.assertEqual(self.peers.get(RELAY, "alice"), KEY_A)
        self.assertEqual(self.peers.get(OTHER_RELAY, "alice"), KEY_B)

    def test_nick_case_insensitive(self) -> None:
        self.peers.pin(RELAY, "Alice", KEY_A)
        self.assertEqual(self.peers.check(RELAY, "ALICE", KEY_A), PinStatus.MATCH)
        self.assertIn(" alice ", self.path.read_text())

    def test_persistence(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        self.peers.pin(RELAY, "bob", KEY_B)
        again = KnownPeers(self.path)
        self.assertEqual(again.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertEqual(again.check(RELAY, "bob", KEY_B), PinStatus.MATCH)
        self.assertEqual(again.check(RELAY, "bob", KEY_A), PinStatus.CHANGED)

    def test_sees_other_writers(self) -> None:
        """Two KnownPeers on one file (two clients) see each other's pins."""
        other = KnownPeers(self.path)
        other.pin(RELAY, "alice", KEY_A)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.CHANGED)

    def test_modes(self) -> None:
        old = os.umask(0)
        try:
            self.peers.pin(RELAY, "alice", KEY_A)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.dir).st_mode), 0o700)
        os.chmod(self.path, 0o644)
        self.peers.replace(RELAY, "alice", KEY_B)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(self.dir)), ["known_peers", "known_peers.lock"])

    def test_header_comment(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        first = self.path.read_text().splitlines()[0]
        self.assertTrue(first.startswith("#"))

    def test_comments_and_blanks_kept(self) -> None:
        self.dir.mkdir()
        self.path.write_text(
            "# my pins\n\n" + _line(RELAY, "alice", KEY_A) + "\n   # indented comment\n"
        )
        self.peers.pin(RELAY, "bob", KEY_B)
        lines = self.path.read_text().splitlines()
        self.assertEqual(lines[:4], ["# my pins", "", _line(RELAY, "alice", KEY_A), "   # indented comment"])
        self.assertEqual(lines[4], _line(RELAY, "bob", KEY_B))
        self.assertEqual(self.peers.problems, [])

    def test_crlf_and_extra_spaces_tolerated(self) -> None:
        self.dir.mkdir()
        self.path.write_bytes(
            (f"{b64encode(RELAY)}  alice\t{b64encode(KEY_A)}\r\n").encode("ascii")
        )
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, self.peers.check, RELAY[:31], "alice", KEY_A)
        self.assertRaises(ValueError, self.peers.check, RELAY, "alice", KEY_A + b"\0")
        self.assertRaises(ValueError, self.peers.check, RELAY, "no spaces", KEY_A)
        self.assertRaises(ValueError, self.peers.pin, RELAY, "x", KEY_A)
        self.assertFalse(self.path.exists())

    def test_in_directory(self) -> None:
        peers = KnownPeers.in_directory(self.dir)
        self.assertEqual(peers.path, self.dir / pins.FILENAME)


class CorruptFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "known_peers"
        self.peers = KnownPeers(self.path)

    def write(self, *lines: str | bytes) -> None:
        self.path.write_bytes(
            b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
        )

    def test_unattributable_line_reported_and_kept(self) -> None:
        garbage = "this is not a pin"
        self.write(_line(RELAY, "alice", KEY_A), garbage, _line(RELAY, "bob", KEY_B))
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertEqual(self.peers.check(RELAY, "bob", KEY_B), PinStatus.MATCH)
        problems = self.peers.problems
        self.assertEqual(len(problems), 1)
        self.assertIn("line 2", problems[0])
        self.peers.pin(RELAY, "carol", KEY_C)
        lines = self.path.read_text().splitlines()
        self.assertIn(garbage, lines)
        self.assertIn(_line(RELAY, "alice", KEY_A), lines)
        self.assertIn(_line(RELAY, "bob", KEY_B), lines)
        self.assertIn(_line(RELAY, "carol", KEY_C), lines)

    def test_non_utf8_line_kept_verbatim(self) -> None:
        junk = b"\xff\xfe binary \x00 junk"
        self.write(junk, _line(RELAY, "alice", KEY_A))
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertIn("UTF-8", self.peers.problems[0])
        self.peers.pin(RELAY, "bob", KEY_B)
        self.assertTrue(self.path.read_bytes().startswith(junk + b"\n"))

    def test_damaged_key_disputes_the_pin(self) -> None:
        """A pinned nickname whose key became unreadable must not look NEW."""
        self.write(f"{b64encode(RELAY)} alice {b64encode(KEY_A)[:-2]}")
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.CHANGED)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.CHANGED)
        self.assertIn("alice", self.peers.problems[0])
        self.assertRaises(PinConflict, self.peers.pin, RELAY, "alice", KEY_B)
        self.assertRaises(PinError, self.peers.get, RELAY, "alice")

    def test_missing_key_disputes_the_pin(self) -> None:
        self.write(f"{b64encode(RELAY)} alice")
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.CHANGED)

    def test_conflicting_duplicates(self) -> None:
        self.write(_line(RELAY, "alice", KEY_A), _line(RELAY, "alice", KEY_B))
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.CHANGED)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.CHANGED)
        self.assertIn("line 2", self.peers.problems[0])
        self.assertRaises(PinError, self.peers.get, RELAY, "alice")

    def test_identical_duplicates_are_harmless(self) -> None:
        self.write(_line(RELAY, "alice", KEY_A), _line(RELAY, "alice", KEY_A))
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertEqual(self.peers.problems, [])

    def test_replace_resolves_dispute_and_keeps_the_rest(self) -> None:
        garbage = "garbage line"
        self.write(
            f"{b64encode(RELAY)} alice not-base64!",
            garbage,
            _line(RELAY, "alice", KEY_A),
            _line(RELAY, "bob", KEY_B),
        )
        self.peers.replace(RELAY, "alice", KEY_C)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_C), PinStatus.MATCH)
        self.assertEqual(self.peers.check(RELAY, "bob", KEY_B), PinStatus.MATCH)
        text = self.path.read_text()
        self.assertIn(garbage, text)
        self.assertNotIn("not-base64!", text)
        self.assertNotIn(b64encode(KEY_A), text)
        self.assertEqual(len(self.peers.problems), 1)

    def test_upper_case_nick_in_file_still_guards(self) -> None:
        self.write(_line(RELAY, "Alice", KEY_A))
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.MATCH)
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_B), PinStatus.CHANGED)

    def test_unreadable_file(self) -> None:
        self.path.mkdir()  # reading a directory fails with an OSError
        with self.assertRaises(PinError) as cm:
            self.peers.check(RELAY, "alice", KEY_A)
        self.assertIn("cannot be read", str(cm.exception))

    def test_non_canonical_base64_is_damage(self) -> None:
        # Same bytes, spelled without padding: the codec is strict.
        self.write(f"{b64encode(RELAY)} alice {b64encode(KEY_A).rstrip('=')}")
        self.assertEqual(self.peers.check(RELAY, "alice", KEY_A), PinStatus.CHANGED)
        self.assertEqual(len(self.peers.problems), 1)

    def test_pins_on_a_relay(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        self.peers.pin(RELAY, "bob", KEY_B)
        self.peers.pin(OTHER_RELAY, "carol", KEY_C)
        self.path.write_text(self.path.read_text() + f"{b64encode(RELAY)} dave !!damaged\n")
        self.assertEqual(self.peers.pins_on(RELAY), {"alice": KEY_A, "bob": KEY_B, "dave": None})


class BoundTests(SynchronousTestCase):
    """A relay can present any number of first contacts: the file is bounded,
    and at the bound a first contact is refused, never made room for."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "known_peers"
        self.peers = KnownPeers(self.path)
        self.patch(KnownPeers, "max_per_relay", 3)

    def test_first_contact_beyond_the_bound_is_refused_and_no_pin_is_dropped(self) -> None:
        for n in range(3):
            self.peers.pin(RELAY, f"user{n}", bytes([n]) * 32)
        with self.assertRaises(pins.PinsFull) as caught:
            self.peers.pin(RELAY, "mallory", KEY_A)
        self.assertIn(str(self.path), str(caught.exception))  # says where to make room
        self.assertEqual(self.peers.check(RELAY, "mallory", KEY_A), PinStatus.NEW)  # not pinned
        for n in range(3):  # every earlier pin still guards its nickname
            self.assertEqual(self.peers.check(RELAY, f"user{n}", KEY_B), PinStatus.CHANGED)
        # a known contact still matches, and another relay has its own room
        self.assertEqual(self.peers.pin(RELAY, "user1", bytes([1]) * 32), PinStatus.MATCH)
        self.assertEqual(self.peers.pin(OTHER_RELAY, "mallory", KEY_A), PinStatus.NEW)
        self.assertTrue(issubclass(pins.PinsFull, PinError))  # callers that stop on PinError stop here too

    def test_the_default_bound_is_documented_in_the_module(self) -> None:
        self.assertIn("MAX_PINS_PER_RELAY", pins.__doc__ or "")
        self.assertGreaterEqual(pins.MAX_PINS_PER_RELAY, 1000)


class AppendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "known_peers"
        self.peers = KnownPeers(self.path)

    def test_a_new_pin_is_appended_not_rewritten(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        inode = self.path.stat().st_ino
        before = self.path.read_bytes()
        self.peers.pin(RELAY, "bob", KEY_B)
        self.assertEqual(self.path.stat().st_ino, inode)  # the same file, grown: no rewrite
        self.assertTrue(self.path.read_bytes().startswith(before))
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    def test_a_line_cut_short_by_a_crash_is_not_glued_to_the_next_pin(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        with self.path.open("ab") as f:
            f.write(_line(RELAY, "bob", KEY_B).encode()[:50])  # a crash in the middle of an append
        self.assertEqual(self.peers.pin(RELAY, "carol", KEY_C), PinStatus.NEW)
        self.assertEqual(self.peers.get(RELAY, "carol"), KEY_C)
        self.assertEqual(self.peers.check(RELAY, "bob", KEY_B), PinStatus.CHANGED)  # the cut pin is disputed
        self.assertEqual(self.peers.get(RELAY, "alice"), KEY_A)

    def test_replace_is_an_atomic_rewrite(self) -> None:
        self.peers.pin(RELAY, "alice", KEY_A)
        inode = self.path.stat().st_ino
        self.peers.replace(RELAY, "alice", KEY_B)
        self.assertNotEqual(self.path.stat().st_ino, inode)  # a new file renamed into place
        self.assertEqual([p.name for p in self.path.parent.iterdir() if p.name.endswith(".tmp")], [])
