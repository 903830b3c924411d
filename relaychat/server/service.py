"""The daemon's own services: the relay core and a listener.

They are put together in one place, :func:`relaychat.tap.makeService`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.config import Config, ConfigError, ListenerConfig
from relaychat.server.hub import Hub
from relaychat.server.listeners import describe as describe_listener
from relaychat.server.store import Store
from relaychat.startup import StartupError

log = Logger(namespace="relaychat")

DATABASE = "relaychat.sqlite3"


class ListenerError(StartupError):
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
    """Listens on one endpoint; a failure to listen stops start-up, naming the listener.

    Like Twisted's ``StreamServerEndpointService`` it listens in
    :meth:`privilegedStartService`, so twistd binds a port below 1024 before
    it drops privileges (``--uid``).
    """

    def __init__(self, listener: ListenerConfig, endpoint: IStreamServerEndpoint, factory: IProtocolFactory,
                 reactor: Any = None) -> None:
        self.listener = listener
        self.endpoint = endpoint
        self.factory = factory
        self.reactor = reactor  # for stopping on a late failure; default: the global reactor
        self.port: Optional[IListeningPort] = None
        self._listening: Optional[Deferred[IListeningPort]] = None
        self._failure: Optional[Failure] = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def describe(self) -> str:
        return describe_listener(self.listener)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()  # when nobody called privilegedStartService (not under twistd)

    def _listen(self) -> None:
        if self._listening is not None:
            return
        outcome: list[Any] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addBoth(outcome.append)
        if not outcome:  # some endpoints answer later
            self._listening.addCallback(lambda _: self._listened(outcome[0]))
            return
        if isinstance(outcome[0], Failure):
            # TCP, TLS and WebSocket listeners fail here, synchronously: stop
            # start-up. Not logged: the one line twistd prints is the report.
            self._failure = outcome[0]
            raise ListenerError(self._could_not_start(outcome[0]))
        self._listened(outcome[0])

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the port once it listens, or fails as the listener did."""
        if self.port is not None:
            return succeed(self.port)
        if self._failure is not None:
            return fail(self._failure)
        waiting: Deferred[IListeningPort] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def _tell(self, outcome: Any) -> None:
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            if isinstance(outcome, Failure):
                done.errback(outcome)
            else:
                done.callback(outcome)

    def _could_not_start(self, failure: Failure) -> str:
        return f"relaychat: {self.describe()} could not start: {failure.getErrorMessage()}"

    def _listened(self, result: Any) -> None:
        if self._listening is None:  # stopService came while the endpoint was still answering
            # A failure now (our own cancel in stopService) is no reason to exit 1;
            # a port that came anyway is closed.
            if not isinstance(result, Failure):
                result.stopListening()
            return
        if isinstance(result, Failure):
            if self.running:  # else: stopService cancelled the attempt
                self._failed_late(result)
            return
        self.port = result
        address = result.getHost()
        log.info(
            "relaychat: {listener} listening on {host}:{port}",
            listener=self.describe(), host=getattr(address, "host", "?"), port=getattr(address, "port", "?"),
        )
        self._tell(result)

    def _failed_late(self, failure: Failure) -> None:
        """An endpoint that failed after start-up: log, stop the reactor, exit 1."""
        self._failure = failure
        self._tell(failure)
        log.critical("{message}", message=self._could_not_start(failure))
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        _exit_status_after_shutdown(1)
        if reactor.running:
            reactor.stop()

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        listening, self._listening = self._listening, None
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        if listening is not None and not listening.called:
            listening.cancel()
        return None


def _exit_status_after_shutdown(status: int) -> None:
    """Make the process exit with ``status`` once twistd has finished (pid
    file removed, logs flushed): twistd itself exits 0 after a reactor stop."""
    import atexit
    import sys

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(status)

    atexit.register(exit_now)


def open_data_dir(config: Config) -> str:
    path = config.data_dir
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"data directory {str(path)!r}: {e.strerror}") from None
    return str(path)
