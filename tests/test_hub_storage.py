"""The hub against a failing disk and against clients that would fill it, sans I/O."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy
from relaychat.server.quotas import Allowance, address_key
from relaychat.tap import housekeeping
from relaychat.server.store import Health
from relaychat.wire.codec import b64decode, b64encode
from tests.support import FailingStore, Harness, identity, register_line

_UNAVAILABLE_FULL = "unavailable the relay cannot use its storage now: the disk is full"


class StorageErrors(SynchronousTestCase):
    """Every command that touches the store answers ``unavailable`` and the connection stays."""

    def setUp(self) -> None:
        self.store = FailingStore()
        self.h = Harness(store=self.store)
        self.alice = self.h.register("alice")
        self.bob = self.h.register("bob")
        self.h.send(self.alice[0], "MAIL bob AAAA")
        self.bob[1].lines()
        self.alice[1].lines()

    def test_mail_on_a_full_disk(self) -> None:
        self.store.fail("SQLITE_FULL")
        for _ in range(3 * self.h.hub.limits.max_violations):  # not a violation: never a BYE
            self.assertEqual(self.h.ask(*self.alice, "MAIL bob AAAA"), [f"ERR MAIL {_UNAVAILABLE_FULL}"])
        self.assertEqual(self.h.ask(*self.alice, "PING still"), ["OK PING still"])
        self.assertEqual(self.bob[1].lines(), [])  # nothing delivered that was not stored
        self.assertEqual(self.h.hub.stats.storage_errors, 3 * self.h.hub.limits.max_violations)
        self.store.heal()
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob AAAA"), ["OK MAIL 2"])

    def test_ack_when_deleting_fails(self) -> None:
        self.store.fail("SQLITE_IOERR_WRITE")
        self.assertEqual(self.h.ask(*self.bob, "ACK 1"),
                         ["ERR ACK unavailable the relay cannot use its storage now: a disk input/output error"])
        self.store.heal()
        self.assertEqual(self.h.ask(*self.bob, "ACK 1"), ["OK ACK 1"])

    def test_reads_failing(self) -> None:
        self.store.fail("SQLITE_IOERR_WRITE", reads="SQLITE_IOERR_READ")
        for line in ("LOOKUP bob", "MAIL bob AAAA", "ACK 1", "OFFER carol"):
            reply = self.h.ask(*self.alice, line)
            self.assertEqual(len(reply), 1, reply)
            self.assertEqual(reply[0].split(" ")[:3], ["ERR", line.split(" ")[0], "unavailable"])
        self.assertEqual(self.h.ask(*self.alice, "WHO")[-1], "OK WHO 2 2")  # needs no disk

    def test_registration_on_a_failing_disk_can_be_retried(self) -> None:
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.store.fail("SQLITE_FULL")
        self.assertEqual(self.h.claim(client, link, "carol", identity("carol")), [f"ERR PROVE {_UNAVAILABLE_FULL}"])
        self.assertNotIn("carol", self.h.hub.online)
        self.store.fail("SQLITE_READONLY", reads="SQLITE_IOERR_READ")
        self.assertEqual(self.h.ask(client, link, register_line("carol", identity("carol")))[0].split(" ")[:3],
                         ["ERR", "REGISTER", "unavailable"])
        self.store.heal()
        self.assertEqual(self.h.claim(client, link, "carol", identity("carol")), ["OK PROVE carol new 0"])

    def test_prove_failing_on_its_last_read_leaves_nothing_half_done(self) -> None:
        def pending_mail(nick: str) -> list[Any]:
            raise self.store._failed(self.store._error(("SQLITE_IOERR_READ", "disk I/O error")))

        self.store.pending_mail = pending_mail  # type: ignore[method-assign]
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob"))[0].split(" ")[:3],
                         ["ERR", "PROVE", "unavailable"])
        self.assertEqual(self.bob[1].lines(), [])  # not replaced by a login that failed
        self.assertIs(self.h.hub.online["bob"], self.bob[0])
        self.assertEqual(self.h.ask(client, link, "MAIL bob AAAA")[0].split(" ")[:3], ["ERR", "MAIL", "order"])

    def test_a_known_nickname_logs_in_on_a_full_disk(self) -> None:
        # Logging in again with the same keys writes nothing (the use is noted in memory).
        self.store.fail("SQLITE_FULL")
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob"))[0], "OK PROVE bob known 1")
        self.h.hub.disconnect(client, self.h.now)

    def test_a_lost_file_refuses_writes_with_its_reason(self) -> None:
        self.store._lose("the database file was deleted or replaced while the relay ran")
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob AAAA"), [
            "ERR MAIL unavailable the relay cannot use its storage now: "
            "the database file was deleted or replaced while the relay ran"])
        self.assertEqual(self.h.ask(*self.bob, "ACK 1")[0].split(" ")[:3], ["ERR", "ACK", "unavailable"])
        self.assertIs(self.store.health, Health.LOST)

    def test_timers_survive_storage_errors(self) -> None:
        self.store.fail("SQLITE_IOERR_WRITE", reads="SQLITE_IOERR_READ")
        housekeeping(self.h.hub, self.h.now + 40 * 86400)  # must not raise: a raising TimerService stops
        self.h.hub.disconnect(self.alice[0], self.h.now)
        self.h.hub.tick(self.h.now + 1)
        self.assertIs(self.store.check(self.h.now + 10), Health.FAILING)


class MailCaps(SynchronousTestCase):
    def setUp(self) -> None:
        self.policy = MailPolicy(mail_per_sender_per_hour=5, mail_bytes_total=30, mail_per_recipient=1000,
                                 mail_per_sender=1000)
        self.h = Harness(mail=self.policy)
        self.alice = self.h.register("alice")
        for nick in ("bob", "carol", "dave"):
            self.h.register(nick)

    def test_per_sender_per_hour_across_recipients(self) -> None:
        self.h.store.mail_bytes = -10 ** 9  # only the hourly allowance matters here
        for i in range(5):
            self.assertEqual(self.h.ask(*self.alice, f"MAIL {('bob', 'carol', 'dave')[i % 3]} AAAA"), [f"OK MAIL {i + 1}"])
        self.assertEqual(self.h.ask(*self.alice, "MAIL dave AAAA"),
                         ["ERR MAIL quota you may store 5 messages an hour; try again in 12 minutes"])
        self.h.now += 720  # 3600 / 5 seconds: one more
        self.assertEqual(self.h.ask(*self.alice, "MAIL dave AAAA"), ["OK MAIL 6"])
        self.assertEqual(self.h.ask(*self.alice, "MAIL dave AAAA")[0].split(" ")[:3], ["ERR", "MAIL", "quota"])
        bob = self.h.hub.online["bob"]
        self.assertEqual(self.h.ask(bob, bob.link, "MAIL alice AAAA"), ["OK MAIL 7"])  # its own allowance

    def test_total_bytes_held_by_the_relay(self) -> None:
        # 30 bytes in all: 3-byte messages (AAAA) from several senders.
        senders = [self.alice[0]] + [self.h.hub.online[n] for n in ("bob", "carol")]
        stored = 0
        for i in range(10):
            sender = senders[i % 3]
            self.assertEqual(self.h.ask(sender, sender.link, "MAIL dave AAAA")[0], f"OK MAIL {stored + 1}")
            stored += 1
        self.assertEqual(self.h.store.mail_bytes, 30)
        self.assertEqual(self.h.ask(*self.alice, "MAIL dave AAAA"),
                         ["ERR MAIL quota the relay holds all the mail it can; try again later"])
        dave = self.h.hub.online["dave"]
        dave.link.lines()
        self.assertEqual(self.h.ask(dave, dave.link, "ACK 1"), ["OK ACK 1"])
        self.assertEqual(self.h.ask(*self.alice, "MAIL dave AAAA")[0], "OK MAIL 11")


class NicknameCaps(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(limits=Limits(pow_bits=0, connections_per_address=1000),
                         names=NicknamePolicy(registrations_per_address_per_hour=3, max_nicknames=6))

    def new(self, nick: str, address: str = "192.0.2.1") -> list[str]:
        client, link = self.h.connect(address)
        self.h.hello(client, link)
        return self.h.claim(client, link, nick, identity("one-key"))

    def test_new_nicknames_per_address_per_hour(self) -> None:
        for i in range(3):
            self.assertEqual(self.new(f"n{i}"), [f"OK PROVE n{i} new 0"])
        self.assertEqual(self.new("n3"),
                         ["ERR REGISTER quota 3 new nicknames an hour from your address; try again in 20 minutes"])
        self.assertEqual(self.new("n0"), ["OK PROVE n0 known 0"])  # what you hold is never counted
        self.assertEqual(self.new("n3", "192.0.2.2"), ["OK PROVE n3 new 0"])
        self.h.now += 1200
        self.assertEqual(self.new("n4"), ["OK PROVE n4 new 0"])

    def test_the_quota_is_checked_again_at_prove(self) -> None:
        claims = []
        for i in range(5):  # five connections REGISTER before any PROVEs
            client, link = self.h.connect("192.0.2.1")
            self.h.hello(client, link)
            reply = self.h.ask(client, link, register_line(f"p{i}", identity("one-key")))
            self.assertTrue(reply[0].startswith("OK REGISTER"), reply)
            claims.append((client, link, reply[0].split(" ")))
        results = []
        for client, link, reply in claims:
            signature = identity("one-key").sign_registration(self.h.hub.server_id, b64decode(reply[3]), reply[2])
            results.append(self.h.ask(client, link, f"PROVE {b64encode(signature)}")[0].split(" ")[:3])
        self.assertEqual(results, [["OK", "PROVE", f"p{i}"] for i in range(3)] + [["ERR", "PROVE", "quota"]] * 2)

    def test_ipv6_counts_by_slash_64(self) -> None:
        for i in range(3):
            self.assertEqual(self.new(f"v{i}", f"2001:db8::{i + 1}")[0], f"OK PROVE v{i} new 0")
        self.assertEqual(self.new("v3", "2001:db8::ffff:1")[0].split(" ")[:3], ["ERR", "REGISTER", "quota"])
        self.assertEqual(self.new("v3", "2001:db8:0:1::1")[0], "OK PROVE v3 new 0")

    def test_nicknames_overall(self) -> None:
        for i in range(6):
            self.assertEqual(self.new(f"m{i}", f"198.51.100.{i}")[0], f"OK PROVE m{i} new 0")
        self.assertEqual(self.new("m6", "198.51.100.99"),
                         ["ERR REGISTER quota the relay binds no more new nicknames; log in with one you have"])
        self.assertEqual(self.new("m0", "198.51.100.99"), ["OK PROVE m0 known 0"])


class NicknameExpiry(SynchronousTestCase):
    def test_off_by_default(self) -> None:
        h = Harness()
        h.register("alice")
        self.assertEqual(h.hub.quotas.release_unused(h.hub.online, h.now + 10 ** 9), [])

    def test_unused_nicknames_are_released_with_their_mail(self) -> None:
        h = Harness(names=NicknamePolicy(nickname_expiry_days=10))
        alice, bob = h.register("alice"), h.register("bob")
        h.register("carol")
        h.send(alice[0], "MAIL bob AAAA")
        h.hub.disconnect(alice[0], h.now)
        h.hub.disconnect(bob[0], h.now)
        h.now += 9 * 86400
        self.assertEqual(h.hub.quotas.release_unused(h.hub.online, h.now), [])
        client, link = h.connect()  # alice comes back: her ten days start again
        h.hello(client, link)
        h.claim(client, link, "alice", identity("alice"))
        h.hub.disconnect(client, h.now)
        h.now += 2 * 86400
        self.assertEqual(h.hub.quotas.release_unused(h.hub.online, h.now), ["bob"])  # carol is online: never expired
        self.assertIsNone(h.hub.registry.find("bob"))
        self.assertEqual(h.store.pending_mail("bob"), [])
        client, link = h.connect()  # the trade-off: another key may now take it
        h.hello(client, link)
        self.assertEqual(h.claim(client, link, "bob", identity("mallory")), ["OK PROVE bob new 0"])


class Allowances(SynchronousTestCase):
    def test_burst_then_refill_and_forgetting(self) -> None:
        a = Allowance(per_hour=4)
        for _ in range(4):
            self.assertTrue(a.available("k", 0.0))
            a.take("k", 0.0)
        self.assertFalse(a.available("k", 0.0))
        self.assertEqual(a.wait("k", 0.0), 900.0)
        self.assertTrue(a.available("k", 900.0))
        a.sweep(1800.0)
        self.assertEqual(len(a), 1)
        a.sweep(3600.0)
        self.assertEqual(len(a), 0)  # whole again: forgotten

    def test_address_keys(self) -> None:
        self.assertEqual(address_key("192.0.2.7"), "192.0.2.7")
        self.assertEqual(address_key("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(address_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(address_key("fe80::1%eth0"), "fe80::/64")
        self.assertEqual(address_key("unix"), "unix")
