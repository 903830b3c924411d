"""Tests for relaychat.client.contacts: verification that lasts, first and last seen."""

from __future__ import annotations

import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.contacts import Contacts, How, Verification

RELAY = bytes(range(32))
OTHER_RELAY = bytes(range(1, 33))
KEY_A = bytes([0xA0]) * 32
KEY_B = bytes([0xB0]) * 32


class ContactsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "contacts"
        self.contacts = Contacts(self.path)

    def test_first_and_last_seen(self) -> None:
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_A))
        first = self.contacts.seen(RELAY, "Bob", KEY_A, 100.5)
        self.assertEqual((first.nick, first.first_seen, first.last_seen, first.verified), ("bob", 100, 100, None))
        self.contacts.seen(RELAY, "bob", KEY_A, 200)
        again = Contacts(self.path).get(RELAY, "bob", KEY_A)
        self.assertEqual((again.first_seen, again.last_seen), (100, 200))
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    def test_verification_is_recorded_with_the_key(self) -> None:
        self.contacts.seen(RELAY, "bob", KEY_A, 100)
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 150)
        self.assertEqual(self.contacts.get(RELAY, "bob", KEY_A).verified, Verification(How.SMP, 150))
        self.contacts.seen(RELAY, "bob", KEY_A, 300)
        self.assertEqual(self.contacts.get(RELAY, "bob", KEY_A).verified, Verification(How.SMP, 150),
                         "a later conversation keeps the record")
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_B), "never carries over to another key")
        self.assertIsNone(self.contacts.get(OTHER_RELAY, "bob", KEY_A), "nor to another relay")

    def test_a_key_change_clears_it(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SAFETY_NUMBER, 100)
        self.contacts.verify(RELAY, "carol", KEY_A, How.SMP, 100)
        self.contacts.forget_other_keys(RELAY, "bob", KEY_B)
        self.assertIsNone(self.contacts.get(RELAY, "bob", KEY_A))
        self.assertIsNotNone(self.contacts.get(RELAY, "carol", KEY_A).verified)

    def test_unverify(self) -> None:
        self.contacts.verify(RELAY, "bob", KEY_A, How.SMP, 100)
        self.contacts.unverify(RELAY, "bob", KEY_A)
        record = self.contacts.get(RELAY, "bob", KEY_A)
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
