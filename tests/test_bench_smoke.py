"""Keep the benchmark code (bench/) from rotting: a fraction of a second of each.

The relays run in trial's reactor (the bare baseline, and relaychat's own hub
and Twisted adapter on an in-memory store); the load generator runs in a
thread, exactly the functions ``bench/run.py`` runs in its load processes.
No timing is asserted: only that messages went through and that the results
have the shape the report reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import Factory
from twisted.trial import unittest

from bench import bare_relay, load, peers, run
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.protocol import RelayFactory
from relaychat.server.store import Store


class Tracking:
    """Wraps a factory so the test can close every connection it made."""

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.protocols: list = []
        original = factory.buildProtocol

        def build(addr: object) -> object:
            protocol = original(addr)
            self.protocols.append(protocol)
            lost = protocol.connectionLost
            protocol.done = defer.Deferred()

            def connection_lost(reason: object = None) -> None:
                lost(reason)
                protocol.done.callback(None)

            protocol.connectionLost = connection_lost
            return protocol

        factory.buildProtocol = build

    def close_all(self) -> defer.Deferred:
        for protocol in self.protocols:
            protocol.transport.loseConnection()
        return defer.DeferredList([p.done for p in self.protocols])


class BenchSmoke(unittest.TestCase):
    timeout = 60

    def listen(self, factory: Factory) -> int:
        tracking = Tracking(factory)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(tracking.close_all)
        return port.getHost().port

    def measure(self, kind: str, port: int, **transport: object) -> dict:
        """What a load process does: connect pairs, stream for a moment, ping-pong a little."""
        task = {"kind": kind, "host": "127.0.0.1", "port": port, "tag": "smoke", "window": 8, "duration": 0.2,
                "warmup": 0.05, **transport}
        pairs = load.make_pairs(task, 2, 100)
        try:
            load._nonblocking(pairs)
            streamed = load.stream(task, pairs)
            for p in pairs:
                p.a.sock.setblocking(True)
                p.b.sock.setblocking(True)
            # drain what the stream left in flight, so ping-pong starts clean
            for p in pairs:
                owed = p.sent * p.rx_line - p.rx_bytes
                while owed > 0:
                    owed -= len(p.b.sock.recv(65536))
            ponged = load.pingpong({"rounds": 20, "duration": 1.0, "warm_rounds": 2}, pairs[:1])
        finally:
            for p in pairs:
                p.a.close()
                p.b.close()
        return {"stream": streamed, "pingpong": ponged}

    def check(self, result: dict) -> None:
        streamed, ponged = result["stream"], result["pingpong"]
        self.assertGreater(streamed["messages"], 0)
        self.assertGreater(streamed["msgs_per_s"], 0)
        self.assertEqual(streamed["errors"], [])
        self.assertIsNone(streamed["closed"])
        if streamed["received_line"] is not None:  # WebSocket frames are counted by their known size
            self.assertTrue(streamed["received_line"].startswith("FRAME "))
        self.assertEqual(ponged["count"], 20)
        self.assertLessEqual(ponged["p50_us"], ponged["p99_us"])

    @defer.inlineCallbacks
    def test_bare_relay(self) -> defer.Generator:
        port = self.listen(bare_relay.BareFactory())
        self.check((yield threads.deferToThread(self.measure, "bare", port)))

    @defer.inlineCallbacks
    def test_relaychat_hub_registers_opens_sessions_and_relays(self) -> defer.Generator:
        hub = Hub(Store(":memory:"), Limits(pow_bits=0), now=reactor.seconds())
        port = self.listen(RelayFactory(hub, reactor))
        self.check((yield threads.deferToThread(self.measure, "relaychat", port)))
        self.assertGreater(hub.stats.frames, 0)
        self.assertEqual(hub.stats.registrations, 4)

    @defer.inlineCallbacks
    def test_relaychat_over_tls_websocket_and_wss(self) -> defer.Generator:
        from relaychat.certificates import write_self_signed
        from relaychat.server.tlslayer import server_context
        from relaychat.server.websocket import WebSocketFactory

        cert, key, _ = write_self_signed(Path(self.mktemp()), ["localhost"])
        context = server_context(cert, key)
        hub = Hub(Store(":memory:"), Limits(pow_bits=0), now=reactor.seconds())
        relay = RelayFactory(hub, reactor)
        for factory, transport in [(relay.with_tls(context), {"tls": True, "tag": "tls"}),
                                   (WebSocketFactory(relay, reactor), {"websocket": True, "tag": "ws"}),
                                   (WebSocketFactory(relay, reactor, tls=context), {"websocket": True, "tls": True, "tag": "wss"})]:
            frames = hub.stats.frames
            port = self.listen(factory)
            self.check((yield threads.deferToThread(self.measure, "relaychat", port, **transport)))
            self.assertGreater(hub.stats.frames, frames, transport)

    @defer.inlineCallbacks
    def test_tls_handshakes(self) -> defer.Generator:
        from relaychat.certificates import write_self_signed
        from relaychat.server.tlslayer import server_context

        cert, key, _ = write_self_signed(Path(self.mktemp()), ["localhost"])
        hub = Hub(Store(":memory:"), Limits(pow_bits=0), now=reactor.seconds())
        port = self.listen(RelayFactory(hub, reactor).with_tls(server_context(cert, key)))
        task = {"host": "127.0.0.1", "port": port, "concurrency": 2, "duration": 0.3, "warmup": 0.05}
        result = yield threads.deferToThread(load.handshakes, task)
        self.assertGreater(result["handshakes"], 0)
        self.assertEqual(result["failed"], 0)

    @defer.inlineCallbacks
    def test_session_setups_through_the_hub(self) -> defer.Generator:
        """Both ends' Channels complete XX, the pin check and a first message,
        again and again; the relay sees every session opened and closed."""
        self.patch(load, "ready", lambda **extra: None)
        self.patch(load, "wait_go", lambda: True)
        hub = Hub(Store(":memory:"), Limits(pow_bits=0), now=reactor.seconds())
        port = self.listen(RelayFactory(hub, reactor))
        task = {"host": "127.0.0.1", "port": port, "pairs": 2, "tag": "smoke", "duration": 0.4, "warmup": 0.05}
        result = yield threads.deferToThread(load.setups, task)
        self.assertIsNone(result["failure"])
        self.assertGreater(result["setups"], 0)
        self.assertEqual(result["latency"]["count"], result["setups"])
        self.assertGreaterEqual(hub.stats.sessions_opened, result["setups"])

    def test_client_work_alone(self) -> None:
        self.patch(load, "ready", lambda **extra: None)
        self.patch(load, "wait_go", lambda: True)
        result = load.crypto_only({"duration": 0.1})
        self.assertNotIn("error", result)
        self.assertGreater(result["setups"], 0)

    def test_report_table_and_process_probes(self) -> None:
        rows = [
            run.Row("small frames, 1 pair: msg/s vs bare relay", 120000.0, "/s", "bare", 100000.0, 1.2,
                    "ratio >= 1.2", "PASS", "relay CPU per msg: ..."),
            run.Row("flood: relay RSS growth", 1 << 20, "MiB", target="< 64 MiB", status="PASS"),
            run.Row("setups/s", None, "/s", target=">= 2,000/s", status="MISS"),
        ]
        table = run.render(rows)
        self.assertIn("bare relay 100,000/s", table)
        self.assertIn("1.20", table)
        self.assertIn("MISS", table)
        self.assertIn("n/a", table)
        self.assertGreater(peers.rss_bytes(os.getpid()), 0)
        self.assertGreaterEqual(peers.cpu_seconds(os.getpid()), 0.0)
        self.assertEqual(load.percentiles([])["count"], 0)


class BenchConfig(unittest.SynchronousTestCase):
    """The full bench builds its daemon's TLS listener from relaychat's own
    option table: a rename there must fail here, not turn every TLS and
    WebSocket figure into ``n/a`` in the next full run."""

    def test_tls_listener_options_are_filled(self) -> None:
        options = run.tls_options(Path(self.mktemp()).resolve().parent)
        self.assertIsInstance(options, dict, options)
        assert isinstance(options, dict)
        self.assertEqual(set(options), {"certificate", "private_key"})
        for path in options.values():
            self.assertTrue(Path(path).is_file(), path)
