"""The admin console's helpers against a live hub: their effects are real, their output readable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from relaychat.admin.helpers import Console, Text
from relaychat.config import Config, ListenerConfig
from relaychat.crypto.safety import identity_fingerprint
from relaychat.server.bans import key_id
from relaychat.server.drain import LINGER, Drainer, DrainState
from tests.support import Harness, identity

ADMIN = "SHA256:operator-key-fingerprint"
PAYLOAD = "c2VjcmV0LXBheWxvYWQtbm9ib2R5LXNlZXM="  # base64 of a secret the relay must never show


def _config() -> Config:
    return Config(data_dir=Path("unused"), listeners=(ListenerConfig("tcp", "tcp:0:interface=127.0.0.1"),))


class HelperCase(SynchronousTestCase):
    """A hub with alice and bob online, and a console acting as ``ADMIN``."""

    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.bob = self.h.register("bob", address="127.0.0.2")
        self.console = Console(self.h.hub, _config(), lambda: self.h.now, admin=ADMIN)

    def logged(self, action: Any) -> tuple[Any, list[str]]:
        """Run ``action()``; return its result and the log lines it wrote."""
        with capturedLogs() as events:
            result = action()
        return result, [formatEvent(e) for e in events]

    def relogin(self, nick: str, address: str = "127.0.0.1") -> list[str]:
        client, link = self.h.connect(address)
        if link.closed:
            return link.lines()
        self.h.hello(client, link)
        return self.h.claim(client, link, nick, identity(nick))


class Kick(HelperCase):
    def test_kick_disconnects_and_tells_why(self) -> None:
        sid = self.h.open_session(self.alice, self.bob, "bob")
        result, log = self.logged(lambda: self.console.kick("Bob", "spamming the relay"))
        self.assertEqual(result, "kicked bob")
        self.assertEqual(self.bob[1].lines(), ["BYE kicked spamming the relay"])
        self.assertTrue(self.bob[1].closed)
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} kicked"])
        self.assertEqual(log, [f"admin {ADMIN}: kick bob ('spamming the relay'): kicked bob"])
        self.assertNotIn("bob", self.h.hub.online)

    def test_kick_someone_offline_or_not_a_nickname(self) -> None:
        result, log = self.logged(lambda: self.console.kick("carol"))
        self.assertEqual(result, "carol is not online")
        self.assertIn(ADMIN, log[0])
        self.assertRaises(ValueError, self.console.kick, "not a nick")

    def test_kick_can_come_back(self) -> None:
        self.console.kick("bob")
        self.assertEqual(self.relogin("bob"), ["OK PROVE bob known 0"])


class Ban(HelperCase):
    def test_nick_ban_holds_until_it_ends(self) -> None:
        result, log = self.logged(lambda: self.console.ban("bob", 60))
        bob_key = identity_fingerprint(identity("bob").identity_public)
        self.assertTrue(result.startswith(f"banned nick bob with its identity key {bob_key} for 1m 0s (until "), result)
        self.assertTrue(result.endswith("; 1 connections closed"), result)
        self.assertIn(f"admin {ADMIN}: ban nick bob for 60s", log[0])
        self.assertEqual(self.bob[1].lines(), ["BYE banned nick 60 this nickname is banned for 60 more seconds"])
        self.assertTrue(self.bob[1].closed)
        self.assertEqual(self.relogin("bob"), ["ERR REGISTER banned nick 60 this nickname is banned for 60 more seconds"])
        self.h.now += 59
        self.assertEqual(self.relogin("bob"), ["ERR REGISTER banned nick 1 this nickname is banned for 1 more second"])
        self.h.now += 2
        self.h.hub.tick(self.h.now)
        self.assertEqual(self.relogin("bob"), ["OK PROVE bob known 0"])

    def test_nick_ban_bans_its_key_under_any_nickname(self) -> None:
        """Banning bob keeps bob's identity key out under a new nickname too,
        and closes every connection registered with it; others are untouched."""
        bob2 = self.h.register("bobby", "bob")
        result = self.console.ban("bob", 60)
        self.assertTrue(result.endswith("; 2 connections closed"), result)
        self.assertTrue(self.bob[1].closed and bob2[1].closed)
        self.assertFalse(self.alice[1].closed)
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.assertEqual(self.h.claim(client, link, "robert", identity("bob")),
                         ["ERR REGISTER banned key 60 this identity key is banned for 60 more seconds"])
        self.assertEqual(self.relogin("carol"), ["OK PROVE carol new 0"])
        self.console.unban("bob")
        self.assertEqual(self.h.claim(client, link, "robert", identity("bob")), ["OK PROVE robert new 0"])

    def test_ban_of_an_unregistered_nickname_bans_no_key(self) -> None:
        self.assertTrue(self.console.ban("nobody", 60).startswith("banned nick nobody for 1m 0s"))
        self.assertIn("1 bans", self.console.bans())

    def test_address_ban_refuses_connections_from_it_only(self) -> None:
        result = self.console.ban("127.0.0.2", 3600)
        self.assertTrue(result.startswith("banned address 127.0.0.2 for 1h 0m 0s"), result)
        self.assertTrue(self.bob[1].closed)
        self.assertFalse(self.alice[1].closed)
        self.assertEqual(self.relogin("carol", "127.0.0.2"), ["BYE banned address 3600 this address is banned for 3600 more seconds"])
        self.assertEqual(self.relogin("carol", "127.0.0.1"), ["OK PROVE carol new 0"])

    def test_unban_lets_them_back_at_once(self) -> None:
        self.console.ban("bob", 600)
        self.console.ban("127.0.0.9", 600)
        listing = self.console.bans()
        bob_key = identity_fingerprint(identity("bob").identity_public)
        self.assertIn("3 bans", listing)
        self.assertIn("nick     bob", listing)
        self.assertIn(f"key      {bob_key}  10m 0s", listing)
        self.assertIn("address  127.0.0.9", listing)
        result, log = self.logged(lambda: self.console.unban("Bob"))
        self.assertEqual(result, f"unbanned nick bob and key {bob_key}")
        self.assertEqual(log, [f"admin {ADMIN}: unban nick bob: unbanned nick bob and key {bob_key}"])
        self.assertEqual(self.relogin("bob"), ["OK PROVE bob known 0"])
        self.assertEqual(self.console.unban("127.0.0.9"), "unbanned address 127.0.0.9")
        self.assertEqual(self.console.unban("bob"), "no ban on nick bob")
        self.assertEqual(self.console.bans(), "0 bans")

    def test_ipv6_addresses_are_written_as_the_relay_sees_them(self) -> None:
        self.assertTrue(self.console.ban("0:0::1", 5).startswith("banned address ::1 "))

    def test_bad_arguments_are_refused_before_anything_happens(self) -> None:
        for seconds in (0, -5, float("inf"), float("nan")):
            self.assertRaises(ValueError, self.console.ban, "bob", seconds)
        for seconds in ("60", True, None):
            self.assertRaises(TypeError, self.console.ban, "bob", seconds)
        self.assertRaises(ValueError, self.console.ban, "b", 60)
        self.assertRaises(TypeError, self.console.ban, 42, 60)
        self.assertFalse(self.bob[1].closed)
        self.assertEqual(self.console.bans(), "0 bans")


class Notice(HelperCase):
    def test_notice_reaches_every_registered_client(self) -> None:
        _, link = self.h.connect()
        result, log = self.logged(lambda: self.console.notice("maintenance\nat noon"))
        self.assertEqual(result, "notice sent to 2 clients")
        self.assertEqual(self.alice[1].lines(), ["NOTICE maintenance at noon"])
        self.assertEqual(self.bob[1].lines(), ["NOTICE maintenance at noon"])
        self.assertEqual(link.lines(), [])
        self.assertEqual(log, [f"admin {ADMIN}: notice 'maintenance\\nat noon': notice sent to 2 clients"])


class Looking(HelperCase):
    """who, sessions and stats show counts and byte totals, never what was relayed."""

    def setUp(self) -> None:
        super().setUp()
        self.sid = self.h.open_session(self.alice, self.bob, "bob")
        for _ in range(3):
            self.h.send(self.alice[0], f"FRAME {self.sid} {PAYLOAD}")
        self.frame_bytes = 3 * len(f"FRAME {self.sid} {PAYLOAD}\n")
        self.h.connect("127.0.0.3")  # not registered yet
        self.h.now += 75

    def test_who(self) -> None:
        text = self.console.who()
        lines = text.splitlines()
        self.assertEqual(lines[0], "2 online, 3 connections")
        self.assertEqual(lines[1].split(), ["nick", "address", "connected", "sessions", "lines", "in", "bytes", "in"])
        alice = lines[2].split()
        # HELLO, REGISTER, PROVE, OFFER and three frames
        self.assertEqual(alice[:6], ["alice", "127.0.0.1", "1m", "15s", "1", "7"])
        self.assertEqual(alice[6], f"{self.alice[0].bytes_in:,}")
        self.assertEqual(lines[3].split()[:2], ["bob", "127.0.0.2"])
        self.assertNotIn(PAYLOAD, text)

    def test_sessions(self) -> None:
        text = self.console.sessions()
        lines = text.splitlines()
        self.assertEqual(lines[0], "1 open, 0 offered")
        row = lines[2].split()
        self.assertEqual(row, [self.sid[:8], "alice", "bob", "open", "1m", "15s", "3", f"{self.frame_bytes:,}"])
        self.assertNotIn(PAYLOAD, text)
        self.assertNotIn(self.sid, text)  # a prefix names it well enough

    def test_offers_are_listed_apart(self) -> None:
        carol = self.h.register("carol")
        self.h.ask(*carol, "OFFER alice")
        self.assertEqual(self.console.sessions().splitlines()[0], "1 open, 1 offered")

    def test_stats(self) -> None:
        text = self.console.stats()
        rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines())
        self.assertEqual(rows["uptime"], "1m 15s")
        self.assertEqual(rows["connections"], "3 now, 3 since start")
        self.assertEqual(rows["online"], "2")
        self.assertEqual(rows["frames relayed"], "3")
        self.assertEqual(rows["bytes relayed"], f"{self.frame_bytes:,}")
        self.assertEqual(rows["sessions"], "1 open, 0 offered, 1 opened since start")
        self.assertEqual(rows["errors"], "0 (0 disconnects for violations)")
        self.assertEqual(rows["draining"], "no")
        self.assertNotIn(PAYLOAD, text)

    def test_errors_are_counted(self) -> None:
        self.h.send(self.alice[0], "FLY away")
        self.assertIn("errors          1 (0 disconnects", self.console.stats())

    def test_looking_is_not_logged_as_an_action(self) -> None:
        _, log = self.logged(lambda: (self.console.who(), self.console.sessions(), self.console.stats()))
        self.assertEqual(log, [])

    def test_answers_print_as_text_in_the_shell(self) -> None:
        text = self.console.stats()
        self.assertIsInstance(text, Text)
        self.assertEqual(repr(text), str(text))


class Namespace(HelperCase):
    def test_shell_namespace_holds_the_live_objects_and_helpers(self) -> None:
        names = self.console.namespace()
        self.assertIs(names["relay"], self.h.hub)
        self.assertIs(names["registry"], self.h.hub.registry)
        self.assertIs(names["config"], self.console.config)
        for helper in Console.HELPERS:
            self.assertTrue(callable(names[helper]), helper)

    def test_help_lists_every_helper_and_documents_one(self) -> None:
        text = self.console.help()
        for helper in Console.HELPERS:
            self.assertIn(f"  {helper}(", text)
        self.assertIn("\n  ban(target, seconds)\n      Ban a nickname or an IP address for seconds;", text)
        self.assertIn("\n  kick(nick, reason='kicked by the operator')\n", text)
        self.assertIn("Ban a nickname or an IP address", self.console.help(self.console.ban))


class Release(HelperCase):
    def test_release_frees_the_nickname_for_a_new_key_and_says_who_did_it(self) -> None:
        old_key = identity("alice").identity_public
        self.h.hub.store.add_mail("alice", "bob", self.h.now, b"sealed to the lost key")
        result, lines = self.logged(lambda: self.console.release("Alice"))
        self.assertEqual(result, f"released alice (was identity key {key_id(old_key)}); 1 waiting mail deleted")
        self.assertIn(f"admin {ADMIN}: release alice: {result}", lines)
        self.assertEqual(self.alice[1].lines(), ["BYE kicked your nickname was released by the operator"])
        self.assertTrue(self.alice[1].closed)
        self.assertEqual(self.relogin("alice", "127.0.0.3")[0], "OK PROVE alice new 0")
        self.assertEqual(self.console.operator.bound_key("alice"), identity("alice").identity_public)
        # a new key, under the released name
        self.assertEqual(self.console.release("alice").split(" ")[0], "released")
        client, link = self.h.connect("127.0.0.4")
        self.h.hello(client, link)
        self.assertEqual(self.h.claim(client, link, "alice", identity("new-alice"))[0], "OK PROVE alice new 0")
        self.assertEqual(self.h.store.pending_mail("alice"), [])

    def test_release_of_a_free_nickname_changes_nothing(self) -> None:
        result, lines = self.logged(lambda: self.console.release("nobody"))
        self.assertEqual(result, "nobody is not bound to any key")
        self.assertIn(f"admin {ADMIN}: release nobody: nobody is not bound to any key", lines)
        self.assertRaises(ValueError, self.console.release, "not a nick!")


class Drain(SynchronousTestCase):
    """drain() and undrain() through the daemon's Drainer on a clock: the relay's
    listeners stay open while clients are told; stragglers go at the deadline."""

    def setUp(self) -> None:
        self.h = Harness()
        self.clock = Clock()
        self.listeners = MultiService()
        self.listeners.startService()
        self.stops: list[bool] = []
        self.drainer = Drainer(self.h.hub, self.listeners, self.clock, 30.0, lambda: self.stops.append(True))
        self.console = Console(self.h.hub, _config(), lambda: self.h.now, daemon=MultiService(),
                               drainer=self.drainer, admin=ADMIN)

    def test_drain_tells_clients_keeps_listening_and_stops_when_sessions_end(self) -> None:
        alice, bob, carol = self.h.register("alice"), self.h.register("bob"), self.h.register("carol")
        sid = self.h.open_session(alice, bob, "bob")
        with capturedLogs() as events:
            result = self.console.drain("back in five minutes")
        self.assertEqual(result, "draining: 3 connections left; the daemon stops when the last one closes, "
                                 "or in 30s")  # carol's socket too, until it closes
        self.assertIn(f"admin {ADMIN}: drain ('back in five minutes', stop=True, grace=30.0s)",
                      " ".join(formatEvent(e) for e in events))
        self.assertTrue(self.listeners.running)
        late, newcomer = self.h.connect("127.0.0.9")
        self.assertEqual(newcomer.lines(), ["BYE draining back in five minutes"])
        self.assertEqual(carol[1].lines(), ["NOTICE back in five minutes", "BYE draining back in five minutes"])
        self.assertTrue(carol[1].closed)
        self.assertEqual(alice[1].lines(), ["NOTICE back in five minutes"])
        self.assertFalse(alice[1].closed)
        self.assertEqual(self.console.drain(), "already draining; 4 connections left")
        self.h.send(alice[0], f"CLOSE {sid}")
        self.assertTrue(alice[1].closed and bob[1].closed)
        self.gone(alice, bob, carol)
        self.assertEqual(self.drainer.state, DrainState.DRAINING)  # the newcomer's socket is still open
        self.gone((late, newcomer))
        self.assertEqual(self.drainer.state, DrainState.STOPPING)
        self.assertFalse(self.listeners.running)
        self.assertEqual(self.stops, [True])  # every socket is closed: nothing to wait for

    def test_stragglers_are_closed_at_the_deadline(self) -> None:
        alice, bob = self.h.register("alice"), self.h.register("bob")
        self.h.open_session(alice, bob, "bob")
        self.console.drain("restarting", grace=10)
        self.clock.advance(9.9)
        self.assertFalse(alice[1].closed)
        self.clock.advance(0.1)
        for link in (alice[1], bob[1]):
            self.assertEqual(link.lines()[-1], "BYE draining restarting")
            self.assertTrue(link.closed)
        self.assertEqual(self.drainer.state, DrainState.STOPPING)
        self.gone(alice)
        self.assertEqual(self.stops, [])  # bob's socket has not closed: wait, at most LINGER
        self.clock.advance(LINGER)
        self.assertEqual(self.stops, [True])

    def test_drain_with_nobody_connected_stops_at_once(self) -> None:
        self.assertEqual(self.console.drain(), "drained: no connections left; the daemon stops now")
        self.clock.advance(0)
        self.assertEqual(self.stops, [True])

    def test_drain_without_stop_keeps_refusing_until_undrain(self) -> None:
        alice = self.h.register("alice")
        self.assertEqual(self.console.drain(stop=False), "draining: 1 connections left; the relay refuses "
                                                         "everyone until undrain() when the last one closes, "
                                                         "or in 30s")
        self.assertEqual(alice[1].lines()[-1], "BYE draining the relay is restarting")
        self.gone(alice)
        self.assertEqual(self.drainer.state, DrainState.DRAINED)
        self.clock.advance(3600)
        self.assertEqual(self.stops, [])
        _, refused = self.h.connect()
        self.assertEqual(refused.lines(), ["BYE draining the relay is restarting"])
        result, lines = self.logged(self.console.undrain)
        self.assertEqual(result, "serving again")
        self.assertIn(f"admin {ADMIN}: undrain: serving again", lines)
        self.assertFalse(self.h.hub.draining)
        self.h.register("alice")  # asserts OK PROVE
        self.assertEqual(self.console.undrain(), "not draining")

    def test_sigterm_stops_a_drain_at_once_or_after_one_without_stop(self) -> None:
        alice, bob = self.h.register("alice"), self.h.register("bob")
        self.h.open_session(alice, bob, "bob")
        self.drainer.terminate()
        self.assertEqual(self.drainer.state, DrainState.DRAINING)
        self.assertFalse(alice[1].closed)
        self.drainer.terminate()
        self.assertEqual(self.drainer.state, DrainState.STOPPING)
        self.assertTrue(alice[1].closed and bob[1].closed)
        self.assertEqual(self.stops, [])
        self.clock.advance(LINGER)  # their sockets never closed
        self.assertEqual(self.stops, [True])
        self.drainer.terminate()  # a third changes nothing
        self.clock.advance(LINGER)
        self.assertEqual(self.stops, [True])

    def test_sigterm_after_a_drain_without_stop(self) -> None:
        self.console.drain(stop=False)
        self.assertEqual(self.drainer.state, DrainState.DRAINED)
        self.drainer.terminate()
        self.assertEqual(self.drainer.state, DrainState.STOPPING)
        self.clock.advance(0)
        self.assertEqual(self.stops, [True])

    def test_undrain_during_the_grace_cancels_the_deadline(self) -> None:
        alice, bob = self.h.register("alice"), self.h.register("bob")
        sid = self.h.open_session(alice, bob, "bob")
        self.console.drain(grace=10)
        self.assertEqual(self.console.undrain(), "serving again")
        self.clock.advance(60)
        self.assertFalse(alice[1].closed)
        self.assertEqual(self.stops, [])
        self.assertEqual(self.h.ask(*alice, f"CLOSE {sid}"), [f"OK CLOSE {sid}"])
        self.assertEqual(self.h.ask(*alice, "OFFER bob")[0].split(" ")[:2], ["OK", "OFFER"])

    def gone(self, *clients: Any) -> None:
        """Their sockets close, as a transport's do once a BYE is written."""
        for client, link in clients:
            self.assertTrue(link.closed)
            self.h.hub.disconnect(client, self.h.now)

    def logged(self, action: Any) -> tuple[Any, list[str]]:
        with capturedLogs() as events:
            result = action()
        return result, [formatEvent(e) for e in events]
