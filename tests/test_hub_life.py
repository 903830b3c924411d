"""A connection's life in the hub (one enum), the run forwarding of frames, the operator's verbs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.connection import Life
from relaychat.server.operator import Operator
from relaychat.wire.codec import b64encode
from relaychat.wire.errors import Code
from tests.support import Harness


class ConnectionLife(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()

    def test_open_until_goodbye_then_closing_and_deaf(self) -> None:
        client, link = self.h.register("alice")
        self.assertIs(client.life, Life.OPEN)
        self.assertEqual(self.h.ask(client, link, "QUIT"), ["BYE quit goodbye"])
        self.assertIs(client.life, Life.CLOSING)
        self.assertTrue(link.closed)
        self.assertEqual(self.h.ask(client, link, "PING"), [])  # nothing after BYE
        self.assertIn(client, self.h.hub.clients)  # told BYE, it still holds a socket: still counted
        self.h.hub.disconnect(client, self.h.now)
        self.assertIs(client.life, Life.GONE)  # OPEN -> CLOSING -> GONE, never back
        self.assertNotIn(client, self.h.hub.clients)
        self.assertEqual(self.h.ask(client, link, "PING"), [])

    def test_a_gone_connection_is_not_served(self) -> None:
        client, link = self.h.register("alice")
        self.h.hub.disconnect(client, self.h.now)
        self.assertIs(client.life, Life.GONE)
        self.assertEqual(self.h.ask(client, link, "PING x"), [])
        self.assertNotIn("alice", self.h.hub.online)
        self.h.hub.refuse(client, Code.SYNTAX, "x")
        self.assertEqual(link.lines(), [])
        self.assertEqual(self.h.hub.stats.errors, 0)

    def test_peers_of_a_dismissed_connection_see_their_sessions_end(self) -> None:
        a, b = self.h.register("alice"), self.h.register("bob")
        sid = self.h.open_session(a, b, "bob")
        self.assertTrue(Operator(self.h.hub).kick("bob"))
        self.assertIs(b[0].life, Life.CLOSING)
        self.assertEqual(a[1].lines(), [f"CLOSED {sid} kicked"])


class Runs(SynchronousTestCase):
    def test_runs_of_frames_around_commands_are_forwarded_in_order_and_counted(self) -> None:
        h = Harness()
        a, b, c = h.register("alice"), h.register("bob"), h.register("carol")
        to_b = h.open_session(a, b, "bob")
        to_c = h.open_session(a, c, "carol")
        frames = [f"FRAME {sid} {b64encode(bytes([i]) * 3)}" for i, sid in enumerate([to_b, to_b, to_c, to_b])]
        h.send(a[0], frames[0], frames[1], "PING t", frames[2], frames[3], frames[0])
        self.assertEqual(b[1].lines(), [frames[0], frames[1], frames[3], frames[0]])
        self.assertEqual(c[1].lines(), [frames[2]])
        self.assertEqual(a[1].lines(), ["OK PING t"])
        session = a[0].sessions[to_b.encode()]
        self.assertEqual(session.frames, 4)
        self.assertEqual(session.bytes, sum(len(f) + 1 for f in (frames[0], frames[1], frames[3], frames[0])))
        self.assertEqual(h.hub.stats.frames, 5)
