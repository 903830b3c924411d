"""Prometheus metrics and /healthz: the collector over a live hub, and a real daemon scraped."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from relaychat.server.drain import Drainer
from relaychat.server.metrics import HealthPage, LagProbe, MetricsPage, RelayCollector, metrics_site
from relaychat.server.operator import Operator
from relaychat.server.store import Health
from tests.daemon import Daemon, session_pair
from tests.support import Harness

PAYLOAD = "aGVsbG8="


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels, read with prometheus_client's own parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class Collector(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.clock = Clock()
        self.drainer = Drainer(self.h.hub, MultiService(), self.clock, 30.0, lambda: None)
        self.registry = CollectorRegistry()
        self.lag = LagProbe(self.registry, interval=0.5, monotonic=self.clock.seconds)
        self.registry.register(RelayCollector(self.h.hub, self.drainer, self.lag))  # type: ignore[arg-type]

    def scrape(self) -> dict[Any, float]:
        request = DummyRequest([b""])
        body = MetricsPage(self.registry).render_GET(request)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/plain; version=0.0.4; charset=utf-8"])
        return parse(body.decode("utf-8"))

    def test_figures_follow_the_hub(self) -> None:
        before = self.scrape()
        self.assertEqual(value(before, "relaychat_connections", kind="tcp", state="registered"), 0)
        self.assertEqual(value(before, "relaychat_registrations_total"), 0)
        alice, bob = self.h.register("alice"), self.h.register("bob")
        alice[0].link.factory = SimpleNamespace(kind="websocket")  # type: ignore[attr-defined]
        sid = self.h.open_session(alice, bob, "bob")
        for _ in range(3):
            self.h.send(alice[0], f"FRAME {sid} {PAYLOAD}")
        self.h.ask(*bob, "ACK x")  # a syntax error
        waiting, _ = self.h.connect("127.0.0.5")
        self.h.hub.store.add_mail("bob", "alice", self.h.now, b"12345")
        after = self.scrape()
        self.assertEqual(value(after, "relaychat_connections", kind="websocket", state="registered"), 1)
        self.assertEqual(value(after, "relaychat_connections", kind="other", state="registered"), 1)
        self.assertEqual(value(after, "relaychat_connections", kind="other", state="connected"), 1)
        self.assertEqual(value(after, "relaychat_connections_total"), 3)
        self.assertEqual(value(after, "relaychat_registrations_total"), 2)
        self.assertEqual(value(after, "relaychat_online"), 2)
        self.assertEqual(value(after, "relaychat_sessions", state="open"), 1)
        self.assertEqual(value(after, "relaychat_sessions_opened_total"), 1)
        self.assertEqual(value(after, "relaychat_frames_relayed_total"), 3)
        self.assertEqual(value(after, "relaychat_relayed_bytes_total"), 3 * len(f"FRAME {sid} {PAYLOAD}\n"))
        self.assertEqual(value(after, "relaychat_errors_total", code="syntax"), 1)
        self.assertEqual(value(after, "relaychat_violations_total", code="syntax"), 1)
        self.assertEqual(value(after, "relaychat_errors_total", code="no-such-user"), 0)  # every code, from 0
        self.assertEqual(value(after, "relaychat_mail_held"), 1)
        self.assertEqual(value(after, "relaychat_mail_held_bytes"), 5)
        Operator(self.h.hub).kick("alice", "bye")
        self.assertEqual(value(self.scrape(), "relaychat_disconnects_total", reason="kicked"), 1)

    def test_connections_are_counted_by_the_listener_they_came_in_on(self) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from relaychat.certificates import write_self_signed
        from relaychat.config import ListenerConfig
        from relaychat.server.listeners import build
        from relaychat.server.protocol import RelayFactory
        from tests.listener_support import upgrade_request

        cert, key, _ = write_self_signed(Path(self.mktemp()), ["localhost"])
        peer = IPv4Address("TCP", "127.0.0.1", 40001)
        for kind, options in (("tcp", {}), ("tls", {"certificate": cert, "private_key": key}), ("websocket", {})):
            _, factory = build(ListenerConfig(kind, "tcp:0", options), RelayFactory(self.h.hub, self.clock),
                               MemoryReactorClock())
            factory.doStart()
            self.addCleanup(factory.doStop)
            protocol = factory.buildProtocol(peer)
            protocol.makeConnection(StringTransport(peerAddress=peer))
            if kind == "websocket":
                protocol.dataReceived(upgrade_request("/"))
        samples = self.scrape()
        for kind in ("tcp", "tls", "websocket"):
            self.assertEqual(value(samples, "relaychat_connections", kind=kind, state="connected"), 1, kind)

    def test_no_label_holds_a_nickname_address_or_key(self) -> None:
        alice, bob = self.h.register("alice", address="192.0.2.77"), self.h.register("bob")
        self.h.open_session(alice, bob, "bob")
        Operator(self.h.hub).kick("bob", "for the test")
        self.h.ask(*alice, "LOOKUP nobody")
        for family in text_string_to_metric_families(generate(self.registry)):
            for sample in family.samples:
                for label in sample.labels.values():
                    for secret in ("alice", "bob", "192.0.2.77", "for the test"):
                        self.assertNotIn(secret, label, sample)
        vocabulary = {"kind", "state", "code", "reason", "le"}
        labels = {name for f in text_string_to_metric_families(generate(self.registry))
                  for s in f.samples for name in s.labels}
        self.assertLessEqual(labels, vocabulary)

    def test_a_cluster_node_labels_every_sample_with_its_name(self) -> None:
        self.h.register("alice")
        registry = CollectorRegistry()
        lag = LagProbe(registry, interval=0.5, monotonic=self.clock.seconds)
        site = metrics_site(self.h.hub, self.drainer, lag, registry, node="n2")
        page = site.resource.children[b"metrics"]
        text = page.render_GET(DummyRequest([b""])).decode("utf-8")
        samples = parse(text)
        self.assertEqual(value(samples, "target_info", node="n2"), 1)
        self.assertEqual(value(samples, "relaychat_online", node="n2"), 1)
        self.assertEqual(value(samples, "relaychat_event_loop_lag_seconds_count", node="n2"), 0)
        self.assertEqual(value(samples, "relaychat_connections", kind="other", state="registered", node="n2"), 1)
        unlabelled = [(name, labels) for name, labels in samples if "node" not in dict(labels)]
        self.assertEqual(unlabelled, [])
        # One node alone labels nothing (its scrape address is its name).
        alone = parse(metrics_site(self.h.hub, self.drainer).resource.children[b"metrics"].render_GET(
            DummyRequest([b""])).decode("utf-8"))
        self.assertEqual(value(alone, "relaychat_online"), 1)
        self.assertNotIn(("target_info", (("node", "n2"),)), alone)

    def test_event_loop_lag(self) -> None:
        self.lag()
        self.clock.advance(0.5 + 0.3)  # the probe ran 0.3 s late
        self.lag()
        samples = self.scrape()
        self.assertAlmostEqual(value(samples, "relaychat_event_loop_lag_last_seconds"), 0.3)
        self.assertEqual(value(samples, "relaychat_event_loop_lag_seconds_count"), 1)
        self.assertEqual(value(samples, "relaychat_event_loop_lag_seconds_bucket", le="0.25"), 0)
        self.assertEqual(value(samples, "relaychat_event_loop_lag_seconds_bucket", le="0.5"), 1)

    def test_health(self) -> None:
        page = HealthPage(self.h.hub, self.drainer)

        def ask() -> tuple[int, bytes]:
            request = DummyRequest([b""])
            body = page.render_GET(request)
            return request.responseCode or 200, body

        self.assertEqual(ask(), (200, b"serving\n"))
        self.h.hub.store.health = Health.FAILING  # as after a write failed (disk full)
        self.assertEqual(ask(), (503, b"storage refuses writes\n"))
        self.h.hub.store.health = Health.OK
        self.drainer.drain(stop=False)
        self.assertEqual(ask(), (503, b"drained\n"))
        self.assertEqual(value(self.scrape(), "relaychat_draining"), 1)
        self.drainer.undrain()
        self.assertEqual(ask(), (200, b"serving\n"))


def generate(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode("utf-8")


class RealDaemonMetrics(SynchronousTestCase):
    """``twistd relaychat`` with ``[metrics] endpoint``: scraped over HTTP while real clients talk."""

    def setUp(self) -> None:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        config = home / "relaychat.toml"
        config.write_text('[relay]\ndata_dir = "data"\ndrain_grace = 60\n'
                          '[[listener]]\nkind = "tcp"\nendpoint = "tcp:0:interface=127.0.0.1"\n'
                          '[metrics]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
                          '[limits]\npow_bits = 0\n')
        self.daemon = Daemon("--config", str(config), cwd=str(home))
        self.addCleanup(self.daemon.stop)
        self.relay, self.metrics = self.daemon.start(listeners=2)
        self.assertIn(f"relaychat: metrics listener 'tcp:0:interface=127.0.0.1' listening on 127.0.0.1:"
                      f"{self.metrics}", self.daemon.log())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}{path}", timeout=10) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8")

    def test_figures_move_with_real_traffic_and_health_follows_the_drain(self) -> None:
        status, text = self.get("/metrics")
        self.assertEqual(status, 200)
        before = parse(text)
        self.assertEqual(value(before, "relaychat_frames_relayed_total"), 0)
        self.assertIn(("process_open_fds", ()), before)
        self.assertEqual(self.get("/healthz"), (200, "serving\n"))

        alice, bob, sid = session_pair(self.relay, self.addCleanup)
        for i in range(5):
            alice.send(f"FRAME {sid} {PAYLOAD}")
            self.assertEqual(bob.read_line(), f"FRAME {sid} {PAYLOAD}")
        self.assertEqual(alice.ask("ACK 99"), "ERR ACK no-such-mail 99 no such mail for you")

        after = parse(self.get("/metrics")[1])
        self.assertEqual(value(after, "relaychat_connections", kind="tcp", state="registered"), 2)
        self.assertEqual(value(after, "relaychat_registrations_total"), 2)
        self.assertEqual(value(after, "relaychat_sessions", state="open"), 1)
        self.assertEqual(value(after, "relaychat_frames_relayed_total"), 5)
        self.assertEqual(value(after, "relaychat_relayed_bytes_total"), 5 * len(f"FRAME {sid} {PAYLOAD}\n"))
        self.assertEqual(value(after, "relaychat_errors_total", code="no-such-mail"), 1)
        deadline = time.monotonic() + 10
        while value(parse(self.get("/metrics")[1]), "relaychat_event_loop_lag_seconds_count") < 2:
            self.assertLess(time.monotonic(), deadline, "the lag probe does not run")
            time.sleep(0.1)

        self.daemon.terminate()  # a drain: the session keeps the daemon up, /healthz says so
        self.assertEqual(alice.read_line(), "NOTICE the relay is restarting")
        self.assertEqual(self.get("/healthz"), (503, "draining\n"))
        self.assertEqual(value(parse(self.get("/metrics")[1]), "relaychat_draining"), 1)
