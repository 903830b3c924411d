"""The thin Twisted side of a relay connection: bytes in, bytes out.

Everything the relay decides happens in :class:`~relaychat.server.hub.Hub`;
this adapter only carries bytes, time and back-pressure between a Twisted
transport and the hub, and is the hub's :class:`~relaychat.server.connection.Link`.
"""

from __future__ import annotations

import socket
from typing import Optional

from twisted.internet import abstract, tcp
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from relaychat.server.connection import Connection
from relaychat.server.hub import Hub


@implementer(IPushProducer)
class RelayProtocol(Protocol):
    """One connection. It is also registered as the producer of its own
    transport, so the transport tells it (pauseProducing) when output backs
    up: that is how a slow reader stops its senders."""

    def __init__(self, hub: Hub, clock: IReactorTime) -> None:
        self.hub = hub
        self.clock = clock
        self.client: Optional[Connection] = None
        self._wakeup: Optional[IDelayedCall] = None
        self._abort: Optional[IDelayedCall] = None
        self._socket: Optional[socket.socket] = None  # set for plain TCP: see write()

    def connectionMade(self) -> None:
        transport = self.transport
        transport.registerProducer(self, True)
        # The hub already writes once per read, so Nagle's algorithm can only
        # hold a reply back (until the peer's delayed ACK, tens of ms).
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except (OSError, AttributeError, NotImplementedError):
                pass
        if type(transport) is tcp.Server and not transport.TLS:
            self._socket = transport.getHandle()
        _bound_output(transport, self.hub.limits.max_output)
        peer = self.transport.getPeer()
        address = getattr(peer, "host", None) or str(peer)
        self.client = self.hub.connect(self, address, self.clock.seconds())

    def dataReceived(self, data: bytes) -> None:
        self.hub.receive(self.client, data, self.clock.seconds())  # type: ignore[arg-type]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        for call in (self._wakeup, self._abort):
            if call is not None and call.active():
                call.cancel()
        if self.client is not None:
            self.hub.disconnect(self.client, self.clock.seconds())

    # -- IPushProducer: our own transport's output is full / drained --------

    def pauseProducing(self) -> None:
        self.hub.set_congested(self.client, True, self.clock.seconds())  # type: ignore[arg-type]

    def resumeProducing(self) -> None:
        self.hub.set_congested(self.client, False, self.clock.seconds())  # type: ignore[arg-type]

    def stopProducing(self) -> None:
        pass  # connectionLost follows and does the cleaning up

    # -- Link --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send now if nothing is queued before us (plain TCP only), else queue.

        ``transport.write`` only queues: the bytes leave one reactor
        iteration later, after another epoll wait and two epoll updates.
        The hub writes once per read, so sending at once when the
        transport's queue is empty saves that round for almost every
        read, and a big write no longer fills the queue (and pauses the
        peers) just because it has not been tried yet. Whatever the kernel
        does not take, and every error, goes to ``transport.write``, so
        ordering, back-pressure and error handling stay Twisted's.
        """
        transport = self.transport
        sock = self._socket
        if sock is not None:
            try:  # FileDescriptor's queue: the list not yet joined, and the buffer being sent
                idle = (
                    not transport._tempDataLen
                    and transport.offset == len(transport.dataBuffer)
                    and transport.connected
                    and not transport.disconnecting
                )
            except AttributeError:  # a Twisted without these internals: always queue
                self._socket = None
                idle = False
            if idle:
                try:
                    sent = sock.send(data)
                except OSError:  # would block, or the connection broke: Twisted's write path sees it
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
        transport.write(data)

    def set_reading(self, reading: bool) -> None:
        if reading:
            self.transport.resumeProducing()
        else:
            self.transport.pauseProducing()

    def close(self) -> None:
        """Close once the queued output (the ``BYE``) is written, and for sure
        within ``close_timeout``.

        A transport must not wait for its producer's output while closing,
        so we stop being its producer first: TLS (``TLSMemoryBIOProtocol``)
        does not even start its close while a producer is registered, and
        TCP's close would wait for a paused producer to resume. Reading is
        resumed so that TLS can receive the peer's ``close_notify`` and a
        WebSocket its closing handshake (the hub ignores anything else a
        closing connection sends). A peer that never reads, or never answers
        the close, is cut off after ``close_timeout`` seconds.
        """
        transport = self.transport
        transport.unregisterProducer()
        transport.resumeProducing()
        transport.loseConnection()
        if self._abort is None:
            self._abort = self.clock.callLater(self.hub.limits.close_timeout, transport.abortConnection)

    def wake_after(self, seconds: float) -> None:
        self._wakeup = self.clock.callLater(seconds, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self.hub.wake(self.client, self.clock.seconds())  # type: ignore[arg-type]


def _bound_output(transport: object, size: int) -> None:
    """Make the socket's transport, under any TLS or WebSocket layer, call
    pauseProducing once more than ``size`` bytes wait in it: that is
    ``max_output``, the unsent output past which a connection is not read.

    ``bufferSize`` is FileDescriptor's public threshold for exactly that
    (Twisted's default is 64 KiB); each layer above it exposes the one
    below as ``transport``.
    """
    for _ in range(4):
        if isinstance(transport, abstract.FileDescriptor):
            if transport.bufferSize != size:
                transport.bufferSize = size
            return
        transport = getattr(transport, "transport", None)


class RelayFactory(Factory):
    """Builds :class:`RelayProtocol` for any listener: TCP, TLS or WebSocket."""

    noisy = False

    def __init__(self, hub: Hub, clock: IReactorTime) -> None:
        self.hub = hub
        self.clock = clock

    def buildProtocol(self, addr: object) -> RelayProtocol:
        protocol = RelayProtocol(self.hub, self.clock)
        protocol.factory = self
        return protocol
