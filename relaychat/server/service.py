"""Composing the daemon: one MultiService holding the relay, its timers and listeners."""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.config import Config, ConfigError, ListenerConfig
from relaychat.server.hub import Hub
from relaychat.server.listeners import KINDS
from relaychat.server.protocol import RelayFactory
from relaychat.server.store import Store

log = Logger(namespace="relaychat")

DATABASE = "relaychat.sqlite3"
MAIL_PURGE_INTERVAL = 3600.0


class ListenerError(Exception):
    """A listener could not start; the message names it."""


class RelayCore(Service):
    """Owns the hub and its store, so stopping the daemon closes the database."""

    name = "relay"

    def __init__(self, hub: Hub, store: Store) -> None:
        self.hub = hub
        self.store = store

    def stopService(self) -> None:
        super().stopService()
        self.store.close()


class ListenerService(Service):
    """Listens on one endpoint; a failure to listen stops start-up, naming the listener."""

    def __init__(self, listener: ListenerConfig, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.listener = listener
        self.endpoint = endpoint
        self.factory = factory
        self.port: Optional[IListeningPort] = None
        self._listening: Optional[Deferred] = None

    def describe(self) -> str:
        return f"{self.listener.kind} listener {self.listener.endpoint!r}"

    def startService(self) -> None:
        super().startService()
        outcome: list[Any] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            # Listening on TCP fails synchronously: raise so twistd stops with the reason.
            raise ListenerError(f"{self.describe()} could not start: {outcome[0].getErrorMessage()}")
        if outcome:
            self._listened(outcome[0])
        else:
            self._listening.addCallback(lambda _: self._listened(outcome[0]))
            self._listening.addErrback(self._failed_late)

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        log.info(
            "relaychat: {listener} listening on {host}:{port}",
            listener=self.describe(), host=getattr(address, "host", "?"), port=getattr(address, "port", "?"),
        )

    def _failed_late(self, failure: Failure) -> None:
        from twisted.internet import reactor

        log.critical("relaychat: {listener} could not start: {error}", listener=self.describe(),
                     error=failure.getErrorMessage())
        reactor.stop()  # type: ignore[attr-defined]

    def stopService(self) -> Optional[Deferred]:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def open_data_dir(config: Config) -> str:
    path = config.data_dir
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"data directory {str(path)!r}: {e.strerror}") from None
    return str(path)


def make_service(config: Config, reactor: Any) -> MultiService:
    """Build the whole daemon as one MultiService (nothing listens until it starts)."""
    data_dir = open_data_dir(config)
    store = Store(os.path.join(data_dir, DATABASE))
    hub = Hub(store, config.limits, config.mail, now=reactor.seconds())
    top = MultiService()
    core = RelayCore(hub, store)
    core.setServiceParent(top)
    for name, interval, action in (
        ("tick", 1.0, lambda: hub.tick(reactor.seconds())),
        ("mail-purge", MAIL_PURGE_INTERVAL, lambda: hub.purge_mail(reactor.seconds())),
    ):
        timer = TimerService(interval, action)
        timer.clock = reactor
        timer.setName(name)
        timer.setServiceParent(top)
    factory = RelayFactory(hub, reactor)
    for index, listener in enumerate(config.listeners):
        endpoint, wrapped = KINDS[listener.kind].build(listener, factory, reactor)
        service = ListenerService(listener, endpoint, wrapped)
        service.setName(f"listener-{index}")
        service.setServiceParent(top)
    return top


def relay_of(top: IService) -> Hub:
    """The hub inside a service built by :func:`make_service`."""
    return top.getServiceNamed("relay").hub  # type: ignore[attr-defined]
