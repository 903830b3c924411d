"""Connections in memory (twisted.test.iosim) on a Clock, for end-to-end tests
whose subject is not the sockets: deterministic, no ports, no real waiting.

:class:`MemoryNetwork` hands out client endpoints that connect to a server
factory through a pair of iosim FakeTransports; :meth:`MemoryNetwork.run_until`
moves bytes until a Deferred fires, and when nothing moves it advances the
Clock to the next scheduled call (a time-out, a keep-alive), so a test that
waits for something that never comes fails at its time-out, in no real time.
:func:`driven` runs an ``inlineCallbacks``-style test method that way.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Generator

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump
from zope.interface import implementer
from twisted.internet.interfaces import IStreamClientEndpoint


class MemoryNetwork:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pumps: list[IOPump] = []
        self._quiet: list[Deferred[None]] = []
        self._port = 40000

    def endpoint(self, server: IProtocolFactory) -> "MemoryEndpoint":
        return MemoryEndpoint(self, server)

    def _connect(self, server_factory: IProtocolFactory, client_factory: IProtocolFactory) -> Protocol:
        self._port += 1
        client_address = IPv4Address("TCP", "127.0.0.1", self._port)
        server_address = IPv4Address("TCP", "127.0.0.1", 7733)
        client = client_factory.buildProtocol(server_address)
        server = server_factory.buildProtocol(client_address)
        client_io = FakeTransport(client, isServer=False, hostAddress=client_address, peerAddress=server_address)
        server_io = FakeTransport(server, isServer=True, hostAddress=server_address, peerAddress=client_address)
        server.makeConnection(server_io)
        client.makeConnection(client_io)
        self.pumps.append(IOPump(client, server, client_io, server_io, False, self.clock))
        return client  # type: ignore[no-any-return]

    def pump(self) -> bool:
        """Move what is waiting on every connection once; True if anything moved."""
        moved = False
        for pump in list(self.pumps):
            if pump.pump(advanceClock=False):
                moved = True
            elif pump.clientIO.disconnected and pump.serverIO.disconnected:
                self.pumps.remove(pump)
        return moved

    def when_quiet(self) -> Deferred[None]:
        """Fires once everything sent so far has been delivered and handled."""
        d: Deferred[None] = Deferred()
        self._quiet.append(d)
        return d

    def settle(self) -> None:
        """Move bytes (and run calls due now) until nothing moves."""
        for _ in range(100000):
            self.clock.advance(0)
            if self.pump():
                continue
            if not self._quiet:
                return
            waiters, self._quiet = self._quiet, []
            for waiter in waiters:
                waiter.callback(None)
        raise RuntimeError("the network never settles")

    def run_until(self, d: Deferred[Any], limit: float = 3600.0) -> None:
        """Run the network, and the Clock when it is quiet, until ``d`` has fired."""
        start = self.clock.seconds()
        while not d.called:
            self.settle()
            if d.called:
                return
            calls = self.clock.getDelayedCalls()
            if not calls:
                raise RuntimeError("nothing left to happen and the test still waits")
            next_call = min(call.getTime() for call in calls)
            if next_call - start > limit:
                raise RuntimeError(f"still waiting after {limit} virtual seconds")
            self.clock.advance(max(0.0, next_call - self.clock.seconds()))


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    def __init__(self, network: MemoryNetwork, server: IProtocolFactory) -> None:
        self.network = network
        self.server = server

    def connect(self, factory: IProtocolFactory) -> Deferred[Protocol]:
        return succeed(self.network._connect(self.server, factory))


def driven(method: Callable[..., Generator[Any, Any, Any]]) -> Callable[[Any], Any]:
    """A test method written with ``yield`` (as for inlineCallbacks), run on
    ``self.network`` until it finishes; its failure fails the test."""
    body = inlineCallbacks(method)

    @functools.wraps(method)
    def run(self: Any) -> Any:
        d = body(self)
        self.network.run_until(d)
        return self.successResultOf(d)
    run.driven = True  # type: ignore[attr-defined]
    return run


def require_driven(cls: type) -> None:
    """Refuse a test method written with ``yield`` but not :func:`driven`: a
    synchronous test case would never wait for it, and it would pass unrun."""
    for name, value in vars(cls).items():
        wrapped = getattr(value, "__wrapped__", None)
        if name.startswith("test_") and inspect.isgeneratorfunction(wrapped) and not getattr(value, "driven", False):
            raise TypeError(f"{cls.__name__}.{name} yields: decorate it with @driven, not @inlineCallbacks")
