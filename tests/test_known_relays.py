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


class CheckRelayTests(SynchronousTestCase):
    """connecting.check_relay: the rule applied between HELLO and REGISTER."""

    def setUp(self) -> None:
        from relaychat.client.trust import ProfileFiles
        from relaychat.crypto.pins import KnownPeers

        self.dir = Path(self.mktemp())
        self.files = ProfileFiles.beside(KnownPeers.in_directory(self.dir))

    def test_first_then_same_then_changed(self) -> None:
        from relaychat.client.connecting import check_relay
        from relaychat.client.errors import RelayChanged

        relays = self.files.known_relays
        self.assertTrue(check_relay(relays, "r:1", RELAY))
        self.assertFalse(check_relay(relays, "r:1", RELAY))
        error = self.assertRaises(RelayChanged, check_relay, relays, "r:1", IMPOSTOR)
        self.assertEqual((error.address, error.known_id, error.new_id), ("r:1", RELAY, IMPOSTOR))
        self.assertRaises(RelayChanged, check_relay, relays, "r:1", IMPOSTOR, bytes(32), self.files)
        self.assertEqual(relays.get("r:1"), RELAY, "accepting another id than the one shown changes nothing")

    def test_accepting_carries_pins_and_verification_over(self) -> None:
        from relaychat.client.connecting import check_relay
        from relaychat.client.contacts import How

        key = bytes([7]) * 32
        check_relay(self.files.known_relays, "r:1", RELAY)
        self.files.known_peers.pin(RELAY, "bob", key)
        self.files.contacts.verify(RELAY, "bob", key, How.SMP, 5)
        self.assertFalse(check_relay(self.files.known_relays, "r:1", IMPOSTOR, IMPOSTOR, self.files))
        self.assertEqual(self.files.known_relays.get("r:1"), IMPOSTOR)
        self.assertEqual(self.files.known_peers.get(IMPOSTOR, "bob"), key)
        record = self.files.contacts.get(IMPOSTOR, "bob", key)
        assert record is not None and record.verified is not None
        self.assertIs(record.verified.how, How.SMP)

    def test_a_damaged_record_is_a_change(self) -> None:
        from relaychat.client.connecting import check_relay
        from relaychat.client.errors import RelayChanged

        path = self.files.known_relays.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("r:1 garbage\n")
        error = self.assertRaises(RelayChanged, check_relay, self.files.known_relays, "r:1", RELAY)
        self.assertIsNone(error.known_id)
        self.assertIn("(unreadable record)", str(error))


class BoundTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "known_relays"
        self.known = KnownRelays(self.path)
        self.patch(KnownRelays, "max_relays", 2)

    def test_a_new_address_beyond_the_bound_is_refused_and_none_is_forgotten(self) -> None:
        from relaychat.client.known_relays import MAX_RELAYS, __doc__ as doc
        from relaychat.crypto.pins import PinsFull

        self.known.remember("a:1", bytes([1]) * 32)
        inode = self.path.stat().st_ino
        self.known.remember("b:1", bytes([2]) * 32)
        self.assertEqual(self.path.stat().st_ino, inode)  # appended, not rewritten
        with self.assertRaises(PinsFull) as caught:
            self.known.remember("c:1", bytes([3]) * 32)
        self.assertIn(str(self.path), str(caught.exception))
        self.assertEqual(self.known.check("c:1", bytes([3]) * 32), PinStatus.NEW)
        self.assertEqual(self.known.check("a:1", bytes([9]) * 32), PinStatus.CHANGED)  # still guarded
        self.assertEqual(self.known.remember("b:1", bytes([2]) * 32), PinStatus.MATCH)
        self.assertIn("MAX_RELAYS", doc or "")
        self.assertGreaterEqual(MAX_RELAYS, 100)
