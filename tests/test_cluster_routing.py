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

    def test_a_run_counts_its_frames_only_while_every_piece_is_frames_of_one_session(self) -> None:
        from relaychat.cluster.routing import Batches, parse_batch

        f1, f2 = b"FRAME 0123456789abcdef x\n", b"FRAME fedcba9876543210 y\n"
        b = Batches("a")
        b.lines_for("b", "bob", "t1", f1 * 2, 2)
        b.lines_for("b", "bob", "t1", f1, 1)  # the next write, same session: the run goes on, counted
        b.lines_for("b", "carl", "t2", f1, 1)
        b.lines_for("b", "carl", "t2", b"CLOSED 0123456789abcdef gone\n")  # not frames: no count
        b.lines_for("b", "dora", "t3", f1, 1)
        b.lines_for("b", "dora", "t3", f2, 1)  # another session: no count
        payload = b.take()["b"]
        self.assertIn(b"@ bob t1 75 3\n", payload)
        self.assertEqual([item.frames for item in parse_batch(payload)[1]], [3, 0, 0])  # type: ignore[union-attr]
        # A count that is not a number is no count; the run is still cut by its length.
        self.assertEqual(parse_batch(b"N a\n@ bob t1 25 x\n" + f1)[1][0].frames, 0)  # type: ignore[union-attr]

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


class OneNode(SynchronousTestCase):
    """A ClusterNode "a" over a Harness hub, with a clock for a reactor and no Redis connected."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from relaychat.cluster.node import ClusterNode
        from relaychat.config import ClusterConfig

        self.h = Harness()
        self.clock = Clock()
        self.node = ClusterNode(self.h.hub, ClusterConfig("tcp:127.0.0.1:1", "a"), self.clock)
        self.h.hub.ready = True


class NodeAdapterWithoutRedis(OneNode):
    """The adapter's own decisions, with a clock for a reactor and no Redis connected."""

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


class BatchFraming(SynchronousTestCase):
    """Runs carry their length, so the receiver cuts them out without scanning them."""

    def test_a_run_is_cut_out_by_its_length_even_when_its_lines_look_like_markers_inside(self) -> None:
        from relaychat.cluster.routing import Batches, Control, Lines, parse_batch

        b = Batches("a")
        b.lines_for("b", "bob", "t1", b"FRAME s1 x\n")
        b.lines_for("b", "bob", "t1", b"FRAME s1 y\n")
        b.control("b", "C bob 5")
        b.lines_for("b", "bob", "t1", b"FRAME s1 z\n")
        payload = b"".join(b.take_parts("b"))
        self.assertEqual(payload, b"N a\n@ bob t1 22\nFRAME s1 x\nFRAME s1 y\n! C bob 5\n@ bob t1 11\nFRAME s1 z\n")
        self.assertEqual(parse_batch(payload)[1], [Lines("bob", "t1", b"FRAME s1 x\nFRAME s1 y\n"),
                                                  Control(["C", "bob", "5"]), Lines("bob", "t1", b"FRAME s1 z\n")])
        self.assertNotIn("b", b)

    def test_a_length_that_does_not_end_on_a_line_before_a_marker_ends_the_parse(self) -> None:
        from relaychat.cluster.routing import Lines, parse_batch

        good = b"@ bob t1 11\nFRAME s1 x\n"
        for bad in (b"@ bob t1 5\nFRAME s1 x\n", b"@ bob t1 99\nFRAME s1 x\n", b"@ bob t1 x\nFRAME s1 x\n",
                    b"@ bob t1 0\n", b"@ bob t1 6\nFRAME\nFRAME s1 x\n"):
            self.assertEqual(parse_batch(b"N a\n" + good + bad + good)[1], [Lines("bob", "t1", b"FRAME s1 x\n")], bad)

    def test_a_run_without_a_length_from_an_earlier_node_is_still_found_by_its_end(self) -> None:
        from relaychat.cluster.routing import Control, Lines, parse_batch

        items = parse_batch(b"N a\n@ bob t1\nFRAME s1 x\n@ carl t2\nFRAME s2 y\n! C bob 3\n")[1]
        self.assertEqual(items, [Lines("bob", "t1", b"FRAME s1 x\n"), Lines("carl", "t2", b"FRAME s2 y\n"),
                                 Control(["C", "bob", "3"])])

    def test_credit_goes_back_in_steps_or_with_a_batch_going_anyway(self) -> None:
        from relaychat.cluster.routing import Credit

        c = Credit(window=100)
        self.assertEqual(c.step, 25)
        c.received("a", "bob", 10)
        self.assertFalse(c.due(("a", "bob"), anyway=False))
        self.assertTrue(c.due(("a", "bob"), anyway=True))
        c.received("a", "bob", 15)
        self.assertTrue(c.due(("a", "bob"), anyway=False))
        self.assertFalse(c.due(("a", "nobody"), anyway=True))
        self.assertFalse(c.exhausted("b", "carl"))
        c.spend("b", "carl", 100)
        self.assertTrue(c.exhausted("b", "carl"))


class FramePathWithoutRedis(OneNode):
    """Node a's end of a session with bob on node b, with a clock and PUBLISH answered by the test."""

    def setUp(self) -> None:
        super().setUp()
        self.h.hub.directory = LocalDirectory(self.h.hub.registry)
        self.h.hub.shared_mail = None
        self.published: list[tuple[str, bytes, Deferred[Any]]] = []
        self.sessions = self.node.sessions
        self.sessions._publish_batch = self.publish
        self.alice, self.link = self.h.register("alice")
        self.node.presence.login("alice")
        self.node.presence.event(join("bob", "b", "t1"))
        self.sid = "0123456789abcdef"
        self.sessions.control("b", ["O", "1", self.sid, "alice", "bob", "t1", "bob", b64encode(KEY)], self.h.now)
        self.h.send(self.alice, f"ACCEPT {self.sid}")
        self.link.lines()
        self.clock.advance(0)
        self.answer_all()
        self.published.clear()

    def publish(self, node: str, parts: list[bytes]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.published.append((node, b"".join(parts), d))
        return d

    def answer_all(self) -> None:
        for _, _, d in list(self.published):
            if not d.called:
                d.callback(1)

    def frame(self, text: str) -> str:
        return f"FRAME {self.sid} {b64encode(text.encode())}"

    def test_while_a_publish_is_unanswered_the_next_turns_join_one_batch_in_order(self) -> None:
        from relaychat.cluster.routing import Lines, parse_batch

        self.h.send(self.alice, self.frame("one"))
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)
        for text in ("two", "three"):
            self.h.send(self.alice, self.frame(text))
            self.clock.advance(0)
        self.assertEqual(len(self.published), 1)  # held: the first is not answered yet
        self.published[0][2].callback(1)
        self.clock.advance(0)
        self.assertEqual(len(self.published), 2)
        _, items = parse_batch(self.published[1][1])
        self.assertEqual(items, [Lines("bob", "t1", (self.frame("two") + "\n" + self.frame("three") + "\n").encode(), 2)])

    def stream(self) -> None:
        """A batch of at least BULK_BATCH bytes goes (and is answered): a stream to node b is on."""
        from relaychat.cluster.sessions import BULK_BATCH

        big = self.frame("x" * 12000) + "\n"
        self.h.hub.receive(self.alice, (big * (BULK_BATCH // len(big) + 1)).encode(), self.h.now)
        self.clock.advance(0)
        self.answer_all()
        self.published.clear()

    def test_while_a_stream_is_on_a_smaller_batch_waits_a_moment_for_more(self) -> None:
        from relaychat.cluster.routing import parse_batch
        from relaychat.cluster.sessions import BULK_WAIT

        self.stream()
        self.h.send(self.alice, self.frame("one"))
        self.clock.advance(BULK_WAIT / 2)
        self.assertEqual(self.published, [])  # waits for more, though nothing is in flight
        self.h.send(self.alice, self.frame("two"))
        self.clock.advance(BULK_WAIT)  # the wait is over: both go, in order, in one batch
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)
        self.assertEqual(parse_batch(self.published[0][1])[1][0].data,  # type: ignore[union-attr]
                         (self.frame("one") + "\n" + self.frame("two") + "\n").encode())
        self.answer_all()
        self.h.send(self.alice, self.frame("three"))  # that batch was small: the stream is over, no wait
        self.clock.advance(0)
        self.assertEqual(len(self.published), 2)

    def test_a_stream_stays_on_while_its_batches_have_half_of_bulk_batch(self) -> None:
        from relaychat.cluster.sessions import BULK_BATCH, BULK_WAIT

        self.stream()
        big = self.frame("x" * 12000) + "\n"
        self.h.hub.receive(self.alice, (big * (BULK_BATCH // 2 // len(big) + 1)).encode(), self.h.now)
        self.clock.advance(0)
        self.assertEqual(self.published, [])  # under BULK_BATCH: it waits
        self.clock.advance(BULK_WAIT)
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)
        self.answer_all()
        self.h.send(self.alice, self.frame("one"))
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)  # that batch had half of BULK_BATCH: still a stream

    def test_a_batch_with_a_control_line_or_a_big_one_does_not_wait(self) -> None:
        self.stream()
        self.h.send(self.alice, self.frame("one"))
        self.sessions.kick("bob", "x")  # a control line: the batch goes with it
        self.clock.advance(0)
        self.assertEqual(len(self.published), 1)
        self.stream()
        self.stream()  # a second big batch right after the first went at once
        self.assertEqual(len(self.sessions._holds), 0)

    def counted_run(self, sender: str, texts: list[str], frames: int) -> bytes:
        data = "".join(self.frame(t) + "\n" for t in texts).encode()
        token = self.node.presence.local["alice"]
        return f"N {sender}\n@ alice {token} {len(data)} {frames}\n".encode() + data

    def test_a_run_of_frames_says_how_many_and_the_receiver_takes_it_on_that_word(self) -> None:
        from relaychat.cluster.routing import parse_batch

        self.h.hub.receive(self.alice, (self.frame("one") + "\n" + self.frame("two") + "\n").encode(), self.h.now)
        self.clock.advance(0)
        header = self.published[0][1].split(b"\n")[1]
        self.assertEqual(header.split(b" ")[-1], b"2")  # the hub forwarded two frames and nothing else
        self.assertEqual([item.frames for item in parse_batch(self.published[0][1])[1]], [2])
        # The other way: the count is taken as said (stats), the lines passed on as they came.
        frames = self.h.hub.stats.frames
        self.sessions.batch(self.counted_run("b", ["x", "y", "z"], 3))
        self.assertEqual(self.link.lines(), [self.frame(t) for t in ("x", "y", "z")])
        self.assertEqual(self.h.hub.stats.frames, frames + 3)

    def test_a_counted_run_is_passed_on_only_for_an_open_session_with_that_nodes_user(self) -> None:
        self.sessions.batch(self.counted_run("c", ["x"], 1))  # node c does not speak for bob
        self.assertEqual(self.link.lines(), [])
        self.h.send(self.alice, f"CLOSE {self.sid}")
        self.link.lines()
        self.sessions.batch(self.counted_run("b", ["x"], 1))  # ended here already
        self.assertEqual(self.link.lines(), [])

    def test_frames_with_a_reply_among_them_or_of_two_sessions_carry_no_count(self) -> None:
        from relaychat.cluster.routing import parse_batch

        # A reply to the stand-in in the same write (CLOSED after the frame): the receiver must read each line.
        self.h.hub.receive(self.alice, (self.frame("one") + f"\nCLOSE {self.sid}\n").encode(), self.h.now)
        self.clock.advance(0)
        _, items = parse_batch(self.published[0][1])
        self.assertEqual([(item.frames, item.data.count(b"\n")) for item in items], [(0, 2)])  # type: ignore[union-attr]
        # Two sessions with bob's stand-in: its write may hold frames of both, so no count either.
        self.answer_all()
        self.clock.advance(0)
        self.answer_all()
        self.published.clear()
        sids = ["1111111111111111", "2222222222222222"]
        for sid in sids:
            self.sessions.control("b", ["O", "2", sid, "alice", "bob", "t1", "bob", b64encode(KEY)], self.h.now)
            self.h.send(self.alice, f"ACCEPT {sid}")
        self.link.lines()
        self.clock.advance(0)
        self.answer_all()
        self.published.clear()
        self.h.hub.receive(self.alice, f"FRAME {sids[0]} dHdv\n".encode(), self.h.now)
        self.clock.advance(0)
        _, items = parse_batch(self.published[0][1])
        self.assertEqual([item.frames for item in items], [0])  # type: ignore[union-attr]

    def test_a_batch_redis_does_not_take_ends_the_sessions_with_that_node_and_frees_the_next(self) -> None:
        self.h.send(self.alice, self.frame("one"))
        self.clock.advance(0)
        self.published[0][2].errback(Unavailable("Redis is not connected"))
        self.assertEqual(self.link.lines(), [f"CLOSED {self.sid} gone"])
        self.sessions.deliver("bob", b"MAIL x\n")
        self.clock.advance(0)
        self.assertEqual(len(self.published), 2)  # nothing left in flight

    def test_credit_spent_and_given_back_in_one_turn_does_not_pause_the_sender(self) -> None:
        self.sessions.credit.window = 10
        self.sessions.credit.left[("b", "bob")] = 10
        self.h.send(self.alice, self.frame("one"))  # more than is left: spent
        standin = self.sessions.standins["bob"][2]
        self.sessions.control("b", ["C", "bob", "1000"], self.h.now)  # back before the turn ends
        self.clock.advance(0)
        self.assertFalse(standin.congested)
        self.assertTrue(self.link.reading)
        self.h.send(self.alice, self.frame("two"))
        self.clock.advance(0)
        self.assertTrue(standin.congested)  # now it waits for credit
        self.assertFalse(self.link.reading)
        self.sessions.control("b", ["C", "bob", "1000"], self.h.now)
        self.assertFalse(standin.congested)
        self.assertTrue(self.link.reading)

    def test_the_default_window_pauses_the_sender_until_credit_comes_back(self) -> None:
        from relaychat.cluster.routing import CREDIT_WINDOW

        big = (self.frame("x" * 12000) + "\n").encode()
        standin = self.sessions.standins["bob"][2]
        sent = 0
        while not standin.congested:
            self.assertLessEqual(sent, CREDIT_WINDOW)  # never more than the window unanswered
            self.h.hub.receive(self.alice, big * 16, self.h.now)
            sent += len(big) * 16
            self.clock.advance(0)
            self.answer_all()
        self.assertGreater(sent, CREDIT_WINDOW - 16 * len(big))  # and the whole window was usable
        self.assertFalse(self.link.reading)
        self.sessions.control("b", ["C", "bob", str(sent)], self.h.now)
        self.assertFalse(standin.congested)
        self.assertTrue(self.link.reading)

    def test_credit_owed_to_a_congested_reader_goes_back_as_soon_as_it_drains(self) -> None:
        from relaychat.cluster.routing import Control, parse_batch

        self.sessions.credit.step = 1
        self.h.hub.set_congested(self.alice, True, self.h.now)
        line = (self.frame("from bob") + "\n").encode()
        batch = b"N b\n@ alice %s %d\n%s" % (self.node.presence.local["alice"].encode(), len(line), line)
        self.sessions.batch(batch)
        self.clock.advance(0)
        self.assertEqual(self.published, [])  # withheld: alice has not taken it
        self.h.hub.set_congested(self.alice, False, self.h.now)
        self.clock.advance(0)  # a turn, not the fallback's CREDIT_RETRY
        self.assertEqual(len(self.published), 1)
        self.assertEqual(parse_batch(self.published[0][1])[1], [Control(["C", "alice", str(len(line))])])


class BatchEncoding(SynchronousTestCase):
    """The one place relaychat reaches into txredisapi: its command encoder, for batches."""

    def test_a_batch_in_pieces_is_written_as_txredisapi_would_write_it_joined(self) -> None:
        import txredisapi
        from twisted.internet.testing import StringTransport

        from relaychat.cluster.node import Pieces, _Commands

        parts = [b"N a\n", b"@ bob t1 3\n", b"xy\n"]
        protocol = _Commands(charset=None, replyTimeout=None, convertNumbers=False)
        theirs = txredisapi.BaseRedisProtocol._build_command(protocol, b"PUBLISH", b"rc:to:b", b"".join(parts))
        self.assertEqual(protocol._build_command(b"PUBLISH", b"rc:to:b", Pieces(parts)), theirs)
        self.assertEqual(theirs, b"*3\r\n$7\r\nPUBLISH\r\n$7\r\nrc:to:b\r\n$18\r\nN a\n@ bob t1 3\nxy\n\r\n")
        # And execute_command still writes what the encoder returns.
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.execute_command(b"PUBLISH", b"rc:to:b", Pieces(parts))
        self.assertEqual(transport.value(), theirs)
        self.assertEqual(protocol._build_command(b"GET", b"k", 1), b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\n1\r\n")


class RedisConnectionTuning(SynchronousTestCase):
    """What _tune sets on a Redis connection's socket transport, and that Twisted heeds it."""

    def test_a_batch_is_read_and_handed_to_the_socket_in_one_go(self) -> None:
        import socket

        from twisted.internet import abstract, tcp
        from twisted.internet.testing import MemoryReactor

        from relaychat.cluster.node import READ_SIZE, WRITE_SIZE, _tune

        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)
        ours = socket.create_connection(server.getsockname())
        self.addCleanup(ours.close)
        connection = tcp.Connection(ours, None, MemoryReactor())
        _tune(connection)
        self.assertEqual((connection.bufferSize, connection.SEND_LIMIT), (READ_SIZE, WRITE_SIZE))
        self.assertEqual(abstract.FileDescriptor.SEND_LIMIT, 128 * 1024)  # the class default is left alone
        handed: list[int] = []

        class Socket:
            def send(self, data: memoryview) -> int:
                handed.append(len(data))
                return len(data)

        connection.socket = Socket()
        # Twisted's writeSomeData cuts a write at the instance's SEND_LIMIT: a batch bigger
        # than the default goes in one call (if Twisted stops heeding it, this fails).
        self.assertEqual(connection.writeSomeData(b"x" * (WRITE_SIZE + 1)), WRITE_SIZE)
        self.assertEqual(handed, [WRITE_SIZE])
