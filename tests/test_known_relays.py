"""Tests for relaychat.client.known_relays: the relay id remembered per address."""

from __future__ import annotations

import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.known_relays import KnownRelays, relay_address
from relaychat.crypto.pins import PinConflict, PinError, PinStatus
from relaychat.wire.codec import b64encode

RELAY = bytes(range(32))
IMPOSTOR = bytes(range(1, 33))


class AddressTests(SynchronousTestCase):
    def test_forms_of_one_relay_are_one_address(self) -> None:
        for spec in ("relay.example", "Relay.Example:7733", "tcp:relay.example:7733",
                     "tls:relay.example:7733", "tls:relay.example:7733:fingerprint=sha256:AB:CD",
                     " relay.example:7733 "):
            self.assertEqual(relay_address(spec), "relay.example:7733", spec)

    def test_ports_and_ipv6(self) -> None:
        self.assertEqual(relay_address("127.0.0.1:9000"), "127.0.0.1:9000")
        self.assertEqual(relay_address("[::1]:9000"), "[::1]:9000")
        self.assertEqual(relay_address("tls:[::1]:9000"), "[::1]:9000")
        self.assertNotEqual(relay_address("relay:1"), relay_address("relay:2"))

    def test_other_endpoint_strings_are_kept_as_one_word(self) -> None:
        self.assertEqual(relay_address("tcp:host=relay:port=7733"), "tcp:host=relay:port=7733")
        self.assertEqual(relay_address("unix:/tmp/a b"), "unix:/tmp/a%20b")
        self.assertEqual(relay_address("relay:99999"), "relay:99999")  # not a port: kept as typed


class KnownRelaysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "known_relays"
        self.relays = KnownRelays(self.path)

    def test_first_contact_is_remembered(self) -> None:
        self.assertEqual(self.relays.check("relay:7733", RELAY), PinStatus.NEW)
        self.assertEqual(self.relays.remember("relay:7733", RELAY), PinStatus.NEW)
        self.assertEqual(self.relays.remember("relay:7733", RELAY), PinStatus.MATCH)
        self.assertEqual(self.relays.check("relay:7733", RELAY), PinStatus.MATCH)
        self.assertEqual(self.relays.get("relay:7733"), RELAY)
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)
        self.assertTrue(self.path.read_text().startswith("# relaychat known relays"))

    def test_a_changed_id_is_refused_until_replaced(self) -> None:
        self.relays.remember("relay:7733", RELAY)
        self.assertEqual(self.relays.check("relay:7733", IMPOSTOR), PinStatus.CHANGED)
        self.assertRaises(PinConflict, self.relays.remember, "relay:7733", IMPOSTOR)
        self.assertEqual(self.relays.get("relay:7733"), RELAY, "nothing replaced silently")
        self.relays.replace("relay:7733", IMPOSTOR)
        self.assertEqual(self.relays.check("relay:7733", IMPOSTOR), PinStatus.MATCH)
        self.assertEqual(self.relays.check("relay:7733", RELAY), PinStatus.CHANGED)
        self.assertNotIn(b64encode(RELAY), self.path.read_text())

    def test_addresses_are_independent(self) -> None:
        self.relays.remember("a:1", RELAY)
        self.assertEqual(self.relays.check("b:1", IMPOSTOR), PinStatus.NEW)

    def test_two_clients_on_one_profile_keep_each_others_lines(self) -> None:
        other = KnownRelays(self.path)
        self.relays.remember("a:1", RELAY)
        other.remember("b:1", IMPOSTOR)
        self.relays.remember("c:1", RELAY)
        for address in ("a:1", "b:1", "c:1"):
            self.assertIsNotNone(other.get(address))

    def test_damage_disputes_the_address_and_is_kept(self) -> None:
        self.path.parent.mkdir(parents=True)
        self.path.write_bytes(b"relay:7733 !!notbase64\nother:1 " + b64encode(RELAY).encode() + b"\n\xff\xfe\n")
        self.assertEqual(self.relays.check("relay:7733", RELAY), PinStatus.CHANGED)
        self.assertEqual(self.relays.check("other:1", RELAY), PinStatus.MATCH)
        self.assertRaises(PinError, self.relays.get, "relay:7733")
        self.assertEqual(len(self.relays.problems), 2)
        self.assertRaises(PinConflict, self.relays.remember, "relay:7733", RELAY)
        self.relays.replace("relay:7733", RELAY)
        self.assertEqual(self.relays.check("relay:7733", RELAY), PinStatus.MATCH)
        self.assertIn(b"\xff\xfe", self.path.read_bytes(), "an unreadable line is kept verbatim")

    def test_two_ids_for_one_address_are_a_dispute(self) -> None:
        self.path.parent.mkdir(parents=True)
        self.path.write_text(f"r:1 {b64encode(RELAY)}\nr:1 {b64encode(IMPOSTOR)}\n")
        self.assertEqual(self.relays.check("r:1", RELAY), PinStatus.CHANGED)
        self.assertEqual(self.relays.check("r:1", IMPOSTOR), PinStatus.CHANGED)

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, self.relays.check, "two words", RELAY)
        self.assertRaises(ValueError, self.relays.check, "r:1", b"short")
