"""Prometheus metrics and a health answer, on their own endpoint (``[metrics] endpoint``).

``GET /metrics`` is the Prometheus text format, made by ``prometheus_client``
(``generate_latest``, or OpenMetrics when asked for) on the reactor thread, from a collector that reads the
hub's own counters when scraped: nothing is counted twice and the relay's
hot path does no metrics work. (``prometheus_client.twisted.MetricsResource``
is not used: it is a WSGI resource run on the reactor's thread pool, which
would read the hub from another thread, and it imports the global reactor.)

Counts only: no label ever holds a nickname, an address or a key; labels
are listener kinds, connection states, error codes and BYE reasons, all
from fixed vocabularies, and, in a cluster, the operator's own node name
(``node``, on every sample, and ``target_info{node=...}``).

``GET /healthz`` is for load balancers and supervisors: ``200 serving``, or
``503`` with the reason while draining or while storage refuses writes.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.web.resource import Resource
from twisted.web.server import Site

from relaychat.config import Config, ListenerConfig
from relaychat.server.connection import Connection, State
from relaychat.server.drain import Drainer, DrainState
from relaychat.server.hub import Hub
from relaychat.server.listeners import server_endpoint
from relaychat.server.service import ListenerService
from relaychat.wire.errors import Bye, Code

LAG_INTERVAL = 0.5
"""Seconds between event-loop lag probes."""
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))


def listener_kind(client: Connection) -> str:
    """The kind of listener ``client`` came in on: the factory that made its
    connection was labelled by :func:`relaychat.server.listeners.build`."""
    return str(getattr(getattr(client.link, "factory", None), "kind", "other"))


def health(hub: Hub, drainer: Optional[Drainer]) -> Optional[str]:
    """Why the relay should not be sent new users, or None when it is serving."""
    if drainer is not None and drainer.state is not DrainState.SERVING:
        return str(drainer.state.value)
    if hub.draining:
        return "draining"
    if not hub.store.writable:
        return "storage refuses writes"
    return None


class LagProbe:
    """Event-loop lag: how late a timer that should run every ``interval`` runs.

    A relay whose loop is blocked (a slow disk, a console command, a burst
    of work) delays every client; this is the number that shows it.
    """

    def __init__(self, registry: CollectorRegistry, interval: float = LAG_INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.monotonic = monotonic
        self.last = 0.0
        self._expected: Optional[float] = None
        self.histogram = Histogram("relaychat_event_loop_lag_seconds", "How late the event loop ran a timer.",
                                   buckets=_LAG_BUCKETS, registry=registry)

    def __call__(self) -> None:
        now = self.monotonic()
        if self._expected is not None:
            self.last = max(0.0, now - self._expected)
            self.histogram.observe(self.last)
        self._expected = now + self.interval


class RelayCollector:
    """Reads the hub's counters and state at scrape time (a prometheus_client custom collector)."""

    def __init__(self, hub: Hub, drainer: Optional[Drainer], lag: Optional[LagProbe] = None) -> None:
        self.hub = hub
        self.drainer = drainer
        self.lag = lag

    def describe(self) -> list[Metric]:
        return []  # collected on demand; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        hub, stats = self.hub, self.hub.stats
        connections = GaugeMetricFamily("relaychat_connections", "Open connections by listener kind and state.",
                                        labels=["kind", "state"])
        counts: dict[tuple[str, str], int] = {}
        paused = 0
        for client in hub.clients:
            key = (listener_kind(client), client.state.name.lower())
            counts[key] = counts.get(key, 0) + 1
            paused += not client.reading
        for kind in sorted({k for k, _ in counts} | {"tcp"}):
            for state in State:
                connections.add_metric([kind, state.name.lower()], counts.get((kind, state.name.lower()), 0))
        yield connections
        yield GaugeMetricFamily("relaychat_paused_connections",
                                "Connections not being read (over their rate, or a peer backed up).", value=paused)
        yield GaugeMetricFamily("relaychat_online", "Registered clients online.", value=len(hub.online))
        yield _counter("relaychat_connections", "Connections accepted since start.", stats.connections_total)
        yield _counter("relaychat_registrations", "Successful registrations (PROVE) since start.",
                       stats.registrations)
        opened = sum(1 for c in hub.clients for s in c.sessions.values() if s.open and s.initiator is c)
        sessions = GaugeMetricFamily("relaychat_sessions", "Sessions now, open or offered.", labels=["state"])
        sessions.add_metric(["open"], opened)
        sessions.add_metric(["offered"], len(hub.offers))
        yield sessions
        yield _counter("relaychat_sessions_opened", "Sessions opened (accepted) since start.", stats.sessions_opened)
        yield _counter("relaychat_frames_relayed", "FRAME lines relayed.", stats.frames)
        yield _counter("relaychat_relayed_bytes", "Bytes of FRAME lines relayed.", stats.bytes)
        yield _counter("relaychat_mail_stored", "Offline mail messages stored since start.", stats.mail_stored)
        held, held_bytes = hub.store.mail_totals()
        yield GaugeMetricFamily("relaychat_mail_held", "Offline mail messages waiting.", value=held)
        yield GaugeMetricFamily("relaychat_mail_held_bytes", "Bytes of offline mail waiting.", value=held_bytes)
        errors = {code.word: stats.errors_by_code.get(code, 0) for code in Code}
        yield _labelled_counter("relaychat_errors", "ERR replies by code.", "code", errors)
        yield _labelled_counter("relaychat_violations", "ERR replies that count as protocol violations, by code.",
                                "code", {code.word: errors[code.word] for code in Code if code.is_violation})
        yield _labelled_counter("relaychat_disconnects", "Connections the relay ended, by BYE reason.", "reason",
                                {bye.value: stats.byes.get(bye, 0) for bye in Bye})
        yield GaugeMetricFamily("relaychat_bans", "Bans in force.", value=len(hub.bans.active(hub.now)))
        yield GaugeMetricFamily("relaychat_draining", "1 while draining.",
                                value=1 if health(hub, self.drainer) in ("draining", "drained", "stopping") else 0)
        yield GaugeMetricFamily("relaychat_storage_writable", "0 while storage refuses writes.",
                                value=1 if hub.store.writable else 0)
        if self.lag is not None:
            yield GaugeMetricFamily("relaychat_event_loop_lag_last_seconds", "The latest event-loop lag probe.",
                                    value=self.lag.last)


class NodeLabelled:
    """Every metric of ``inner``, each sample labelled ``node="<name>"``: a cluster node's scrape.

    N nodes may be scraped through one address (a shared port, a balancer),
    so the scraper's ``instance`` label cannot tell them apart; the node's
    name, unique in the cluster, can. The registry's ``target_info`` says it
    too, for whoever joins on it.
    """

    def __init__(self, inner: CollectorRegistry, node: str) -> None:
        self.inner = inner
        self.node = node

    @classmethod
    def registry(cls, inner: CollectorRegistry, node: str) -> CollectorRegistry:
        """A registry exposing ``inner`` labelled with ``node``, and ``target_info{node=...}``."""
        exposed = CollectorRegistry(target_info={"node": node})
        exposed.register(cls(inner, node))
        return exposed

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [sample._replace(labels={**sample.labels, "node": self.node})
                                for sample in family.samples]
            yield labelled


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled_counter(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class MetricsPage(Resource):
    """``/metrics``: the registry in the format the scraper asks for (Prometheus
    text, or OpenMetrics), chosen and rendered by prometheus_client, here on
    the reactor thread."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept")
        encode, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return encode(self.registry)


class HealthPage(Resource):
    """``/healthz``: 200 ``serving``, or 503 and the reason."""

    isLeaf = True

    def __init__(self, hub: Hub, drainer: Optional[Drainer]) -> None:
        super().__init__()
        self.hub = hub
        self.drainer = drainer

    def render_GET(self, request: Any) -> bytes:
        problem = health(self.hub, self.drainer)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        if problem is not None:
            request.setResponseCode(503)
            return f"{problem}\n".encode("utf-8")
        return b"serving\n"


def metrics_site(hub: Hub, drainer: Optional[Drainer], lag: Optional[LagProbe] = None,
                 registry: Optional[CollectorRegistry] = None, node: Optional[str] = None) -> Site:
    """The web site of ``/metrics`` and ``/healthz`` (its own registry, not the process-global one);
    with ``node`` (a cluster node's name) every sample is labelled with it."""
    if registry is None:
        registry = CollectorRegistry()
    registry.register(RelayCollector(hub, drainer, lag))
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry if node is None else NodeLabelled.registry(registry, node)))
    root.putChild(b"healthz", HealthPage(hub, drainer))
    site = _QuietSite(root)
    site.noisy = False
    site.displayTracebacks = False
    return site


class _QuietSite(Site):
    """No access log: a scrape every few seconds is not news."""

    def log(self, request: Any) -> None:
        pass


class MetricsListener(ListenerService):
    """The metrics listener: failures named as such, and left open by a drain (``/healthz`` says 503)."""

    def describe(self) -> str:
        return f"metrics listener {self.listener.endpoint!r}"


def make_metrics_service(config: Config, hub: Hub, drainer: Drainer, reactor: Any) -> Optional[MultiService]:
    """The metrics listener and its lag probe, or None when ``[metrics] endpoint`` is not set."""
    endpoint = config.metrics.endpoint
    if endpoint is None:
        return None
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # open files, memory, CPU of this process
    lag = LagProbe(registry)

    service = MultiService()
    service.setName("metrics")
    probe = TimerService(lag.interval, lag)
    probe.clock = reactor
    probe.setServiceParent(service)
    listener = ListenerConfig("metrics", endpoint)
    parsed = server_endpoint(reactor, endpoint, config.backlog,
                             f"metrics.endpoint {endpoint!r}")
    node = config.cluster.node if config.cluster.redis is not None else None
    site = metrics_site(hub, drainer, lag, registry, node=node)
    MetricsListener(listener, parsed, site, reactor).setServiceParent(service)
    return service
