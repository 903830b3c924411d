"""``twistd relaychat``: the command-line options, and the one place the daemon is put together.

:func:`compose` builds the whole service tree, and is the map of it::

    (top)                 MultiService
      relay               RelayCore: the hub and its store (closed last)
      tick, mail-purge,   TimerServices: time limits, old mail (and unused
      store-check         nicknames), the database file deleted/replaced/corrupt
      listeners           MultiService: one ListenerService per [[listener]],
                          stopped as one when a drain ends
      drain               Drainer: SIGTERM and the console's drain()
      metrics             MetricsService: /metrics and /healthz (if configured)
      manhole             the admin console's listener (if enabled)
      systemd             Readiness: READY=1 once every listener is bound

Nothing listens until the tree starts. Everything that can be checked
while building (keys, certificates, endpoint strings, the data directory)
is, and so is the database (it opens, it is writable, the disk has room:
:func:`~relaychat.server.store.open_store`), so a daemon that cannot run
refuses to start with one line
(:class:`~relaychat.startup.StartupError`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from relaychat.admin.service import make_manhole_service
from relaychat.config import Config, ConfigError, ListenerConfig, check_endpoint, load
from relaychat.logs import install as install_log
from relaychat.server import listeners
from relaychat.server.clock import make_monotonic
from relaychat.server.drain import Drainer
from relaychat.server.hub import Hub
from relaychat.server.metrics import make_metrics_service
from relaychat.server.process import keep_heap, raise_open_files
from relaychat.server.protocol import RelayFactory
from relaychat.server.service import DATABASE, ListenerService, RelayCore, open_data_dir
from relaychat.server.store import JOURNAL_RESERVE, StorageError, open_store
from relaychat.server.systemd import Readiness, notify
from relaychat.startup import StartupError

log = Logger(namespace="relaychat")

MAIL_PURGE_INTERVAL = 3600.0
STORE_CHECK_INTERVAL = 5.0  # how soon a deleted or replaced database is noticed


class Options(usage.Options):
    synopsis = "[--config FILE] [--data-dir DIR] [--node NAME] [--listen ENDPOINT ...] [--verbose]"
    longdesc = (
        "Run the relaychat relay. With no options it listens for plain TCP on "
        "127.0.0.1:7733 and keeps its data in $XDG_DATA_HOME/relaychat "
        "(~/.local/share/relaychat). See conf/relaychat.toml for every setting."
    )
    optFlags = [
        ["verbose", "v", "Keep Twisted's own informational and debug lines in the log."],
    ]
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: embedded defaults)."],
        ["data-dir", "d", None, "Data directory (overrides relay.data_dir)."],
        ["node", None, None, "This cluster node's name (overrides cluster.node; relaychat@.service gives %i)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Listen for plain TCP on this endpoint string instead of the configured listeners (repeatable)."""
        self["listen"].append(endpoint)

    def postOptions(self) -> None:
        """Read the configuration; a problem is one line and exit status 1 (not twistd's usage text)."""
        install_log(self.parent, bool(self["verbose"]))  # twistd's options: its log observer is made next
        try:
            config = load(self["config"], node=self["node"])
            for endpoint in self["listen"]:
                check_endpoint(endpoint, "--listen")
        except ConfigError as e:
            raise StartupError(str(e)) from None
        if self["data-dir"]:
            config = dataclasses.replace(config, data_dir=Path(self["data-dir"]).resolve())
        if self["listen"]:
            config = dataclasses.replace(config, listeners=tuple(ListenerConfig("tcp", e) for e in self["listen"]))
        self.config: Config = config


def makeService(options: Options) -> IService:
    """twistd's entry point: the daemon for these options, on the global reactor."""
    from twisted.internet import reactor

    make_monotonic(reactor)  # every time-out measures a duration: docs/protocol.rst, section 8
    raise_open_files(options.config.limits.max_connections)  # of this process: not in compose()
    keep_heap()
    return compose(options.config, reactor, signals=True)


def compose(config: Config, reactor: Any, signals: bool = False) -> MultiService:
    """The whole daemon as one service tree (see the module's map).

    :param signals: handle SIGTERM as a drain once the reactor runs (twistd does).
    """
    try:
        return _compose(config, reactor, signals)
    except (ConfigError, StorageError) as e:  # storage refusals name the file, like config errors
        raise StartupError(str(e)) from None


def _compose(config: Config, reactor: Any, signals: bool) -> MultiService:
    data_dir = open_data_dir(config)
    # A delete must fit the journal kept ready: one mail of max_mail and its pages at least.
    reserve = max(JOURNAL_RESERVE, 2 * config.mail.max_mail + (64 << 10))
    store = open_store(os.path.join(data_dir, DATABASE), journal_reserve=reserve)
    hub = Hub(store, config.limits, config.mail, now=reactor.seconds(), names=config.nicknames)
    top = MultiService()
    RelayCore(hub, store).setServiceParent(top)
    if config.cluster.redis is not None:  # before the listeners: a node takes no client until it has joined
        from relaychat.cluster.node import ClusterNode

        ClusterNode(hub, config.cluster, reactor).setServiceParent(top)
    for name, interval, action in (
        ("tick", 1.0, lambda: hub.tick(reactor.seconds())),
        ("mail-purge", MAIL_PURGE_INTERVAL, lambda: housekeeping(hub, hub.wall())),
        ("store-check", STORE_CHECK_INTERVAL, lambda: store.check(reactor.seconds())),
    ):
        timer = TimerService(interval, action)
        timer.clock = reactor
        timer.setName(name)
        timer.setServiceParent(top)

    relay_listeners = MultiService()
    relay_listeners.setName("listeners")
    relay_listeners.setServiceParent(top)
    bound: list[ListenerService] = []
    for index, listener in enumerate(config.listeners):
        factory = RelayFactory(hub, reactor)  # one per listener: build() labels it with the kind
        endpoint, wrapped = listeners.build(listener, factory, reactor, config.backlog)
        service = ListenerService(listener, endpoint, wrapped, reactor)
        service.setName(f"listener-{index}")
        service.setServiceParent(relay_listeners)
        bound.append(service)

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    drainer = Drainer(hub, relay_listeners, reactor, config.drain_grace, stop, notify=notify, signals=signals)
    drainer.setServiceParent(top)
    for extra in (
        make_metrics_service(config, hub, drainer, reactor),
        make_manhole_service(config, hub, top, drainer, data_dir, reactor),
    ):
        if extra is not None:
            extra.setServiceParent(top)
            bound.extend(s for s in _walk(extra) if isinstance(s, ListenerService))
    Readiness(bound).setServiceParent(top)
    return top


def housekeeping(hub: Hub, now: float) -> None:
    """Hourly: expired mail and nicknames go. A storage failure is logged by
    the store and retried next hour; it must not stop the timer."""
    try:
        hub.purge_mail(now)
        expired = hub.quotas.release_unused(hub.online, now)
    except StorageError:
        return
    if expired:
        log.info("relaychat: released {count} nicknames unused for {days} days",
                 count=len(expired), days=hub.names.nickname_expiry_days)


def _walk(service: IService) -> list[IService]:
    """``service`` and, if it has children, every service under it."""
    found = [service]
    for child in getattr(service, "services", ()):
        found.extend(_walk(child))
    return found


def relay_of(top: MultiService) -> Hub:
    """The hub inside a service tree built by :func:`compose`."""
    core = top.getServiceNamed("relay")
    if not isinstance(core, RelayCore):
        raise TypeError(f"not a tree built by compose(): its relay service is {core!r}")
    return core.hub
