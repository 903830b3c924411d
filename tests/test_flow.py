"""What one connection can make the relay hold (issue 10, point 1), sans I/O:
its own unsent output, its lines within one read, its unregistered lines."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.limits import Limits
from tests.support import Harness


class OwnOutput(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(Limits(pow_bits=0, max_output=4096, line_burst=100000, lines_per_second=100000.0))
        for i in range(40):
            self.h.register(f"user{i:02d}", address=f"10.0.0.{i}")
        self.client, self.link = self.h.register("asker")
        self.link.wakeups.clear()

    def written(self) -> int:
        size = sum(len(chunk) for chunk in self.link.written)
        self.link.written.clear()
        return size

    def test_a_read_is_handled_only_until_its_output_passes_the_bound(self) -> None:
        self.h.send(self.client, *["WHO"] * 1000, "PING last")
        who = 41 * 70  # one WHO answer: 41 USER lines and OK WHO, about 70 bytes each
        self.assertLess(self.written(), 4096 + who)
        self.assertEqual(len(self.client.backlog) > 900, True)
        self.assertFalse(self.link.reading)
        self.assertEqual(self.link.wakeups, [0.0])  # go on once this output is with the transport

    def test_the_rest_waits_in_order_and_stops_while_the_output_is_full(self) -> None:
        self.h.send(self.client, *["WHO"] * 20, "PING last")
        self.written()
        self.h.hub.set_congested(self.client, True, self.h.now)  # the transport's buffer is full
        self.h.hub.wake(self.client, self.h.now)
        self.assertEqual(self.written(), 0)
        self.assertFalse(self.link.reading)
        replies = []
        while self.client.backlog:
            self.h.hub.set_congested(self.client, False, self.h.now)  # it drained
            replies += self.link.lines()
            if self.client.backlog:
                self.h.hub.wake(self.client, self.h.now)
                replies += self.link.lines()
        self.assertEqual(replies[-1], "OK PING last")
        self.assertTrue(self.link.reading)

    def test_a_connection_whose_output_is_full_is_not_read(self) -> None:
        self.h.hub.set_congested(self.client, True, self.h.now)
        self.h.send(self.client, "PING held")  # at most one read is taken meanwhile
        self.assertEqual(self.link.lines(), [])
        self.assertFalse(self.link.reading)
        self.h.hub.set_congested(self.client, False, self.h.now)
        self.assertEqual(self.link.lines(), ["OK PING held"])
        self.assertTrue(self.link.reading)

    def test_staying_full_past_output_timeout_says_bye(self) -> None:
        self.h.hub.set_congested(self.client, True, self.h.now)
        self.h.now += Limits().output_timeout
        self.h.hub.tick(self.h.now)
        self.assertFalse(self.link.closed)
        self.h.now += 1.5
        self.h.hub.tick(self.h.now)
        self.assertEqual(self.link.lines(), ["BYE slow you did not read what the relay sent"])
        self.assertTrue(self.link.closed)


class LinesWithinARead(SynchronousTestCase):
    def test_a_big_read_is_handled_up_to_the_tokens_then_waits(self) -> None:
        h = Harness(Limits(pow_bits=0, line_burst=50, lines_per_second=100.0))
        client, link = h.connect()
        h.now += 100
        h.hub.receive(client, b"PING\n" * 16384, h.now)  # one 64-KiB read
        self.assertEqual(len(link.lines()), 50)
        self.assertEqual(len(client.backlog), 16384 - 50)
        self.assertFalse(link.reading)
        self.assertEqual(link.wakeups, [0.5])  # until a full burst has come back
        h.now += 0.5
        h.hub.wake(client, h.now)
        self.assertEqual(len(link.lines()), 50)


class BeforeRegistration(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(Limits(pow_bits=0, max_line_unregistered=300))
        self.client, self.link = self.h.connect()
        self.h.hello(self.client, self.link)

    def test_a_line_is_at_most_max_line_unregistered_until_registered(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "PING " + "x" * 300),
                         ["ERR - too-long a line is at most 300 bytes"])
        self.assertEqual(self.client.splitter.pending, 0)
        self.h.hub.receive(self.client, b"PING " + b"y" * 1000, self.h.now)  # an unfinished line is not kept
        self.assertLessEqual(self.client.splitter.pending, 301)
        self.h.hub.receive(self.client, b"\n", self.h.now)
        self.link.lines()
        client, link = self.h.register("alice")  # REGISTER fits
        self.assertEqual(self.h.ask(client, link, "PING " + "x" * 64), ["OK PING " + "x" * 64])
        self.h.hub.receive(client, b"NOTHING " + b"z" * 1000 + b"\n", self.h.now)
        self.assertEqual(link.lines(), ["ERR NOTHING unknown no such command"])

    def test_who_and_lookup_need_a_registration(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "WHO"), ["ERR WHO order REGISTER first"])
        self.assertEqual(self.h.ask(self.client, self.link, "LOOKUP bob"), ["ERR LOOKUP order REGISTER first"])

    def test_the_limit_cannot_be_below_what_register_needs(self) -> None:
        with self.assertRaises(ValueError):
            Limits(max_line_unregistered=200)
        with self.assertRaises(ValueError):
            Limits(max_line=2048, max_line_unregistered=4096)


class WebSocketBeforeRegistration(SynchronousTestCase):
    """A WebSocket message is a line: max_line_unregistered bounds it until registered."""

    def test_the_message_bound_follows_the_line_bound(self) -> None:
        from tests.daemon import register
        from tests.listener_support import client_frame, server_frames
        from tests.support import identity
        from tests.test_listeners import WebSocketInMemory

        harness = WebSocketInMemory("setUp")
        harness.setUp()
        self.addCleanup(harness.factory.doStop)
        ws, ws_t = harness.open_ws()
        ws.dataReceived(client_frame(b"PING " + b"a" * 600))  # 605 > max_line_unregistered 512
        (opcode, payload), = server_frames(ws_t.value())
        self.assertEqual((opcode, payload[:2]), (8, b"\x03\xf1"))  # 1009 message too big, before buffering more
        ws, ws_t = harness.open_ws()
        self.assertEqual(register(lambda line: harness.ws_send(ws, ws_t, line)[0], "webby", identity("webby")),
                         "OK PROVE webby new 0")
        self.assertEqual(harness.ws_send(ws, ws_t, "NOTHING " + "a" * 900), ["ERR NOTHING unknown no such command"])
