"""The admin console's helpers against a live hub: their effects are real, their output readable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relaychat.admin.helpers import Console, Text
from relaychat.admin.service import ConsoleListener
from relaychat.config import Config, ListenerConfig
from relaychat.server.service import ListenerService
from relaychat.crypto.safety import identity_fingerprint
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
        self.stops: list[bool] = []
        self.console = Console(self.h.hub, _config(), lambda: self.h.now, stop=lambda: self.stops.append(True),
                               admin=ADMIN)

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
        self.assertEqual(self.bob[1].lines(), ["BYE banned banned by the operator"])
        self.assertTrue(self.bob[1].closed)
        self.assertEqual(self.relogin("bob"), ["ERR REGISTER banned this nickname is banned"])
        self.h.now += 59
        self.assertEqual(self.relogin("bob"), ["ERR REGISTER banned this nickname is banned"])
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
                         ["ERR REGISTER banned this identity key is banned"])
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
        self.assertEqual(self.relogin("carol", "127.0.0.2"), ["BYE banned this address is banned"])
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


class Drain(TestCase):
    """drain() against real listeners: they stop, clients are told, the daemon stops when all are gone."""

    def setUp(self) -> Any:
        self.h = Harness()
        self.daemon = MultiService()
        self.relay = ListenerService(ListenerConfig("tcp", "tcp:0:interface=127.0.0.1"),
                                     TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                                     Factory.forProtocol(Protocol), reactor)
        self.relay.setName("listener-0")
        self.relay.setServiceParent(self.daemon)
        self.console_listener = ConsoleListener(ListenerConfig("ssh", "tcp:0:interface=127.0.0.1"),
                                                TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                                                Factory.forProtocol(Protocol), reactor)
        self.console_listener.setName("manhole")
        self.console_listener.setServiceParent(self.daemon)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        self.relay_port = self.relay.port.getHost().port  # type: ignore[union-attr]
        self.stops: list[bool] = []
        self.console = Console(self.h.hub, _config(), lambda: self.h.now, daemon=self.daemon,
                               stop=lambda: self.stops.append(True), admin=ADMIN)

    async def test_drain_stops_listening_tells_clients_and_stops_when_sessions_end(self) -> None:
        alice, bob, carol = self.h.register("alice"), self.h.register("bob"), self.h.register("carol")
        sid = self.h.open_session(alice, bob, "bob")
        with capturedLogs() as events:
            result = self.console.drain("back in five minutes")
        self.assertEqual(result, "draining: 1 listeners stopped; 3 connections left; "
                                 "the daemon stops when the last one closes")
        self.assertIn(f"admin {ADMIN}: drain ('back in five minutes', stop=True)",
                      " ".join(formatEvent(e) for e in events))
        await self.console.listeners_stopped
        with self.assertRaises(ConnectionRefusedError):
            await TCP4ClientEndpoint(reactor, "127.0.0.1", self.relay_port).connect(Factory.forProtocol(Protocol))
        self.assertTrue(self.console_listener.running)
        self.assertEqual(carol[1].lines(), ["NOTICE back in five minutes", "BYE draining back in five minutes"])
        self.assertTrue(carol[1].closed)
        self.assertEqual(alice[1].lines(), ["NOTICE back in five minutes"])
        self.assertFalse(alice[1].closed)
        self.assertEqual(self.console.drain(), "already draining; 3 connections left")  # carol's socket too
        self.assertEqual(self.stops, [])
        self.h.send(alice[0], f"CLOSE {sid}")
        self.assertTrue(alice[1].closed and bob[1].closed)
        for client in (alice[0], bob[0], carol[0]):
            self.h.hub.disconnect(client, self.h.now)
        self.assertEqual(self.stops, [True])

    def test_drain_with_nobody_connected_stops_at_once(self) -> None:
        self.assertEqual(self.console.drain(), "draining: 1 listeners stopped; no connections left, "
                                               "the daemon stops now")
        self.assertEqual(self.stops, [True])
        return self.console.listeners_stopped

    def test_drain_without_stop_leaves_the_daemon_running(self) -> None:
        self.assertEqual(self.console.drain(stop=False), "draining: 1 listeners stopped; no connections left, "
                                                         "the relay idles now")
        self.assertEqual(self.stops, [])
        self.assertTrue(self.h.hub.draining)
        return self.console.listeners_stopped

    def test_whoever_waited_for_the_drain_is_still_told(self) -> None:
        told: list[bool] = []
        self.h.hub.on_drained = lambda: told.append(True)
        self.console.drain()
        self.assertEqual((told, self.stops), ([True], [True]))
        return self.console.listeners_stopped
