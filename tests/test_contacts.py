"""Tests for relaychat.client.contacts: verification that lasts, first and last seen."""

from __future__ import annotations

import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.contacts import Contact, Contacts, How, Verification

RELAY = bytes(range(32))
OTHER_RELAY = bytes(range(1, 33))
KEY_A = bytes([0xA0]) * 32
KEY_B = bytes([0xB0]) * 32


class ContactsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "contacts"
        self.contacts = Contacts(self.path)

    def got(self, server_id: bytes, nick: str, key: bytes, contacts: Contacts | None = None) -> Contact:
        record = (contacts or self.contacts).get(server_id, nick, key)
        assert record is not None, f"no record for {nick}"
        return record

    def test_first_and_last_seen(self) -> None:
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_A))
        first = self.contacts.seen(RELAY, "Bob", KEY_A, 100.5)
        self.assertEqual((first.nick, first.first_seen, first.last_seen, first.verified), ("bob", 100, 100, None))
        self.contacts.seen(RELAY, "bob", KEY_A, 200)
        again = self.got(RELAY, "bob", KEY_A, Contacts(self.path))
        self.assertEqual((again.first_seen, again.last_seen), (100, 200))
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    def test_verification_is_recorded_with_the_key(self) -> None:
        self.contacts.seen(RELAY, "bob", KEY_A, 100)
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 150)
        self.assertEqual(self.got(RELAY, "bob", KEY_A).verified, Verification(How.SMP, 150))
        self.contacts.seen(RELAY, "bob", KEY_A, 300)
        self.assertEqual(self.got(RELAY, "bob", KEY_A).verified, Verification(How.SMP, 150),
                         "a later conversation keeps the record")
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_B), "never carries over to another key")
        self.assertIsNone(self.contacts.get(OTHER_RELAY, "bob", KEY_A), "nor to another relay")

    def test_a_key_change_clears_it(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SAFETY_NUMBER, 100)
        self.contacts.verify(RELAY, "carol", KEY_A, How.SMP, 100)
        self.contacts.forget_other_keys(RELAY, "bob", KEY_B)
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_A))
        self.assertIsNotNone(self.got(RELAY, "carol", KEY_A).verified)

    def test_unverify(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 100)
        self.contacts.unverify(RELAY, "bob", KEY_A)
        record = self.got(RELAY, "bob", KEY_A)
        self.assertIsNone(record.verified)
        self.assertEqual(record.first_seen, 100)

    def test_two_clients_keep_each_others_records(self) -> None:
        other = Contacts(self.path)
        self.contacts.seen(RELAY, "bob", KEY_A, 1)
        other.verify(RELAY, "carol", KEY_B, How.SMP, 2)
        self.contacts.seen(RELAY, "dave", KEY_A, 3)
        self.assertEqual(sorted(c.nick for c in other.on_relay(RELAY)), ["bob", "carol", "dave"])

    def test_damage_fails_safe(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 100)
        text = self.path.read_text().replace("verified=smp:100", "verified=bogus:100")
        self.path.write_text(text + "garbage line\n")
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_A), "unreadable: not verified, never verified")
        self.contacts.seen(RELAY, "carol", KEY_B, 5)
        self.assertIn("garbage line", self.path.read_text(), "kept verbatim")


class GrowthTests(SynchronousTestCase):
    """Every conversation and mail updates a record: appended, compacted, bounded."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "contacts"
        self.contacts = Contacts(self.path)

    def lines(self) -> int:
        return len([line for line in self.path.read_text().splitlines() if not line.startswith("#")])

    def test_updates_are_appended_and_the_file_stays_within_twice_its_records(self) -> None:
        self.contacts.seen(RELAY, "bob", KEY_A, 100)
        inode = self.path.stat().st_ino
        self.contacts.seen(RELAY, "bob", KEY_A, 101)
        self.assertEqual(self.path.stat().st_ino, inode)  # appended, not rewritten
        self.contacts.verify(RELAY, "carol", KEY_B, How.SMP, 102)
        for t in range(103, 1103):
            self.contacts.seen(RELAY, "bob", KEY_A, t)
            self.assertLessEqual(self.lines(), 2 * 2 + 17)
        bob = self.contacts.get(RELAY, "bob", KEY_A)
        assert bob is not None
        self.assertEqual((bob.first_seen, bob.last_seen), (100, 1102))
        carol = self.contacts.get(RELAY, "carol", KEY_B)
        assert carol is not None and carol.verified is not None  # compaction kept the other record whole
        self.assertEqual(len(self.contacts.on_relay(RELAY)), 2)

    def test_a_record_beyond_the_bound_is_refused_and_none_loses_its_verification(self) -> None:
        from relaychat.crypto.pins import PinsFull

        self.patch(Contacts, "max_per_relay", 2)
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 1)
        self.contacts.seen(RELAY, "carol", KEY_B, 1)
        with self.assertRaises(PinsFull):
            self.contacts.seen(RELAY, "dave", bytes([7]) * 32, 2)
        self.assertIsNone(self.contacts.get(RELAY, "dave", bytes([7]) * 32))  # reads as not verified
        bob = self.contacts.get(RELAY, "bob", KEY_A)
        assert bob is not None and bob.verified is not None
        self.contacts.seen(RELAY, "bob", KEY_A, 5)  # known records still update
        self.contacts.seen(OTHER_RELAY, "dave", bytes([7]) * 32, 2)  # another relay has its own room

    def test_taking_a_verification_away_is_an_atomic_rewrite(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SAFETY_NUMBER, 1)
        inode = self.path.stat().st_ino
        self.contacts.unverify(RELAY, "bob", KEY_A)
        self.assertNotEqual(self.path.stat().st_ino, inode)  # replaced, so no cut line leaves "verified" in force
        self.assertNotIn("verified=", self.path.read_text().split("\n", 1)[1])
        bob = self.contacts.get(RELAY, "bob", KEY_A)
        assert bob is not None
        self.assertIsNone(bob.verified)
