"""The cluster's sans-IO parts: the presence mirror, and the hub waiting for a shared directory."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from relaychat.cluster.routing import Presence, Replaced, parse_presence, presence_value
from relaychat.server.directory import LocalDirectory, RemoteUser, Unavailable
from relaychat.wire.codec import b64encode
from tests.support import Harness, identity, register_line

KEY = bytes(range(32))


def join(canon: str, node: str, token: str, replaced: str = "-") -> bytes:
    return b"J " + canon.encode() + b" " + presence_value(node, token, canon, KEY) + b" " + replaced.encode()


class PresenceMirror(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = Presence("a")

    def test_users_on_other_nodes_are_mirrored_and_leave_only_by_their_own_token(self) -> None:
        self.assertIsNone(self.p.event(join("bob", "b", "t1")))
        self.assertEqual(self.p.remote, {"bob": RemoteUser("b", "t1", "bob", KEY)})
        self.p.event(b"L bob b t0")  # an older login's leaving
        self.assertIn("bob", self.p.remote)
        self.p.event(b"L bob b t1")
        self.assertEqual(self.p.remote, {})

    def test_a_newer_login_elsewhere_replaces_only_the_login_it_names(self) -> None:
        token = self.p.login("alice")
        self.assertIsNone(self.p.event(join("alice", "b", "t9", replaced="other")))
        self.assertEqual(self.p.local, {"alice": token})
        self.assertEqual(self.p.event(join("alice", "c", "t10", replaced=token)), Replaced("alice"))
        self.assertEqual(self.p.local, {})
        self.assertEqual(self.p.remote["alice"].node, "c")

    def test_our_own_join_takes_the_user_out_of_the_remote_mirror(self) -> None:
        self.p.event(join("alice", "b", "t1"))
        token = self.p.login("alice")
        self.p.event(join("alice", "a", token, replaced="t1"))
        self.assertEqual(self.p.remote, {})

    def test_load_keeps_only_other_nodes_and_skips_junk(self) -> None:
        self.p.load({b"bob": presence_value("b", "t", "Bob", KEY), b"me": presence_value("a", "t", "me", KEY),
                     b"bad": b"not a value"})
        self.assertEqual(set(self.p.remote), {"bob"})
        self.assertEqual(self.p.nodes(), {"b"})

    def test_malformed_events_change_nothing(self) -> None:
        for junk in (b"", b"J", b"J a b c d e", b"J bob b t bob !!! -", b"\xff", b"G b", b"L bob"):
            self.assertIsNone(self.p.event(junk))
        self.assertEqual(self.p.remote, {})

    def test_presence_values_round_trip(self) -> None:
        self.assertEqual(parse_presence(presence_value("n1", "tok", "Bob", KEY)), RemoteUser("n1", "tok", "Bob", KEY))


class SlowDirectory(LocalDirectory):
    """The local registry, answering only when the test says so (as Redis would, a round trip later)."""

    def __init__(self, registry: Any) -> None:
        super().__init__(registry)
        self.waiting: list[tuple[Deferred, Any]] = []

    def _later(self, answer: Deferred) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append((d, answer))
        return d

    def check_claim(self, nick: str, identity_pub: bytes) -> Deferred:
        return self._later(super().check_claim(nick, identity_pub))

    def bind(self, *args: Any) -> Deferred:
        return self._later(super().bind(*args))

    def find(self, nick: str) -> Deferred:
        return self._later(super().find(nick))

    def answer(self, fail: Optional[Exception] = None) -> None:
        d, answer = self.waiting.pop(0)
        if fail is not None:
            d.errback(fail)
        else:
            answer.chainDeferred(d)


class HeldLines(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.slow = SlowDirectory(self.h.hub.registry)
        self.h.hub.directory = self.slow

    def test_lines_after_a_waiting_command_are_held_in_order_and_reading_stops(self) -> None:
        client, link = self.h.connect()
        self.h.send(client, "HELLO 1")
        link.lines()
        self.h.send(client, register_line("alice", identity("alice")), "PING one")
        self.assertEqual(link.lines(), [])
        self.assertFalse(link.reading)
        self.h.send(client, "PING two")  # arrived anyway (already in flight): held too
        self.slow.answer()
        lines = link.lines()
        self.assertTrue(lines[0].startswith("OK REGISTER alice "), lines)
        self.assertEqual(lines[1:], ["OK PING one", "OK PING two"])
        self.assertTrue(link.reading)

    def test_an_unreachable_directory_is_err_unavailable_and_the_connection_goes_on(self) -> None:
        client, link = self.h.connect()
        self.h.send(client, "HELLO 1")
        link.lines()
        self.h.send(client, register_line("bob", identity("bob")), "PING after")
        self.slow.answer(Unavailable("Redis is not connected"))
        self.assertEqual(link.lines(), ["ERR REGISTER unavailable the relay cannot reach its shared state; try again",
                                        "OK PING after"])
        self.assertEqual(client.violations, 0)

    def test_a_connection_gone_while_waiting_gets_nothing_and_breaks_nothing(self) -> None:
        client, link = self.h.connect()
        self.h.send(client, "HELLO 1", register_line("alice", identity("alice")))
        self.h.hub.disconnect(client, self.h.now)
        link.lines()
        self.slow.answer()
        self.assertEqual(link.lines(), [])
        self.assertEqual(self.h.hub.clients, set())

    def test_a_registration_waits_at_each_step_and_completes(self) -> None:
        client, link = self.h.connect()
        self.h.send(client, "HELLO 1")
        ident = identity("alice")
        link.lines()
        self.h.send(client, register_line("alice", ident))
        self.slow.answer()
        _, _, canon, challenge, bits = link.lines()[0].split(" ")
        from relaychat.wire.codec import b64decode

        signature = ident.sign_registration(self.h.hub.server_id, b64decode(challenge), canon)
        self.h.send(client, f"PROVE {b64encode(signature)}", "WHO")
        self.assertEqual(link.lines(), [])
        self.slow.answer()
        self.assertEqual(link.lines(), ["OK PROVE alice new 0", f"USER alice {b64encode(ident.identity_public)}",
                                        "OK WHO 1 1"])
        self.assertIs(self.h.hub.online["alice"], client)


class ClusterConfigParsing(SynchronousTestCase):
    def parse(self, table: dict) -> Any:
        from pathlib import Path

        from relaychat.config import parse

        return parse({"cluster": table}, base=Path("/etc/relaychat")).cluster

    def test_off_by_default_and_on_with_an_endpoint_and_a_node_name(self) -> None:
        from pathlib import Path

        from relaychat.config import ClusterConfig, parse

        self.assertEqual(parse({}, base=Path("/")).cluster, ClusterConfig())
        on = self.parse({"redis": "tls:redis.example:6380", "node": "n-1", "password_file": "redis.pw"})
        self.assertEqual(on, ClusterConfig("tls:redis.example:6380", "n-1", Path("/etc/relaychat/redis.pw")))

    def test_mistakes_name_the_key(self) -> None:
        from relaychat.config import ConfigError

        for table, key in (({"node": "a"}, "cluster.redis"), ({"redis": "tcp:h:1"}, "cluster.node"),
                           ({"redis": "tcp:h:1", "node": "Has Space"}, "cluster.node"),
                           ({"redis": "h:1", "node": "a"}, "cluster.redis"), ({"redis": "tcp:h:1", "node": "a", "x": 1}, "cluster.x")):
            e = self.assertRaises(ConfigError, self.parse, table)
            self.assertIn(key, str(e))


class BetweenNodes(SynchronousTestCase):
    def test_a_turn_makes_one_payload_per_node_and_parses_back_in_order(self) -> None:
        from relaychat.cluster.routing import Batches, Control, Lines, parse_batch

        b = Batches("a")
        b.lines_for("b", "bob", "t1", b"FRAME s1 x\nFRAME s1 y\n")
        b.lines_for("b", "bob", "t1", b"FRAME s1 z\n")
        b.control("b", "C bob 10")
        b.lines_for("b", "carl", "t2", b"CLOSED s2 gone\n")
        b.lines_for("c", "dora", "t3", b"ACCEPTED s3\n")
        out = b.take()
        self.assertEqual(set(out), {"b", "c"})
        self.assertFalse(b)
        self.assertEqual(out["b"].count(b"@ bob t1"), 1)  # a run needs its header once
        sender, items = parse_batch(out["b"])
        self.assertEqual(sender, "a")
        self.assertEqual(items, [
            Lines("bob", "t1", b"FRAME s1 x\nFRAME s1 y\nFRAME s1 z\n"),
            Control(["C", "bob", "10"]),
            Lines("carl", "t2", b"CLOSED s2 gone\n"),
        ])
        self.assertEqual(items[0].size, 33)
        torn = parse_batch(b"N a\n@ bob t1\nFRAME s1 x\nFRAME s1")[1]
        self.assertEqual(torn, [Lines("bob", "t1", b"FRAME s1 x\n")])

    def test_junk_batches_give_nothing(self) -> None:
        from relaychat.cluster.routing import parse_batch

        self.assertEqual(parse_batch(b""), ("", []))
        self.assertEqual(parse_batch(b"FRAME x\n"), ("", []))
        self.assertEqual(parse_batch(b"N a\nFRAME orphan\n@ bad\nFRAME x\n")[1], [])

    def test_credit_stops_at_the_window_and_comes_back(self) -> None:
        from relaychat.cluster.routing import Credit

        c = Credit(window=100)
        self.assertTrue(c.spend("b", "bob", 60))
        self.assertFalse(c.spend("b", "bob", 60))
        self.assertFalse(c.grant("b", "bob", 10))
        self.assertTrue(c.grant("b", "bob", 60))
        self.assertEqual(c.left[("b", "bob")], 50)
        c.grant("b", "bob", 10**9)
        self.assertEqual(c.left[("b", "bob")], 100)  # never more than the window
        c.received("a", "carol", 5)
        c.received("a", "carol", 7)
        self.assertEqual(c.owed, {("a", "carol"): 12})


class NodeAdapterWithoutRedis(SynchronousTestCase):
    """The adapter's own decisions, with a clock for a reactor and no Redis connected."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from relaychat.cluster.node import ClusterNode
        from relaychat.config import ClusterConfig

        self.h = Harness()
        self.clock = Clock()
        self.node = ClusterNode(self.h.hub, ClusterConfig("tcp:127.0.0.1:1", "a"), self.clock)
        self.h.hub.ready = True

    def local_registry(self) -> None:
        """Register through the node's own SQLite (the test is about what comes after)."""
        self.h.hub.directory = LocalDirectory(self.h.hub.registry)
        self.h.hub.shared_mail = None

    def test_a_kick_for_a_user_on_another_node_goes_to_that_node_and_is_obeyed_there(self) -> None:
        from relaychat.cluster.routing import Control, parse_batch
        from relaychat.server.operator import Operator

        self.node.presence.event(join("bob", "b", "t1"))
        self.assertTrue(Operator(self.h.hub).kick("Bob", "spam  again"))
        sender, items = parse_batch(self.node.sessions.batches.take()["b"])
        self.assertEqual(items, [Control(["K", "bob", "t1", "spam", "again"])])
        self.assertFalse(Operator(self.h.hub).kick("nobody"))
        self.local_registry()
        # Node b's side: a K naming the current login kicks it; an old token does nothing.
        carol, link = self.h.register("carol")
        token = self.node.presence.login("carol")
        self.node.sessions.control("b", ["K", "carol", "old"], self.h.now)
        self.assertFalse(link.closed)
        self.node.sessions.control("b", ["K", "carol", token, "by", "the", "operator"], self.h.now)
        self.assertEqual(link.lines(), ["BYE kicked by the operator"])
        self.assertTrue(link.closed)

    def test_requests_without_redis_are_unavailable(self) -> None:
        client, link = self.h.connect()
        self.h.send(client, "HELLO 1", register_line("bob", identity("bob")))
        self.assertEqual(link.lines()[1], "ERR REGISTER unavailable the relay cannot reach its shared state; try again")

    def test_an_offer_to_a_node_that_never_answers_is_unavailable_after_the_timeout(self) -> None:
        from relaychat.cluster.sessions import OFFER_TIMEOUT

        self.local_registry()
        alice, link = self.h.register("alice")
        self.node.presence.login("alice")
        self.node.presence.event(join("bob", "b", "t1"))
        self.h.send(alice, "OFFER bob", "PING after")
        self.assertEqual(link.lines(), [])
        self.clock.advance(OFFER_TIMEOUT)
        self.assertEqual(link.lines(), ["ERR OFFER unavailable the relay cannot reach its shared state; try again",
                                        "OK PING after"])
        self.assertEqual(alice.sessions, {})
