"""The thin Twisted side of a relay connection: bytes in, bytes out.

Everything the relay decides happens in :class:`~relaychat.server.hub.Hub`;
an adapter only carries bytes, time and back-pressure between a Twisted TCP
transport and the hub, and is the hub's :class:`~relaychat.server.connection.Link`.
There are two adapters over the one hub, as in the transit relay: this
module's :class:`RelayProtocol` (protocol lines straight on the stream) and
:class:`~relaychat.server.websocket.WebSocketProtocol` (one line per
WebSocket message). What they share is :class:`HubConnection`: TLS, when
the listener has it, runs inside the adapter on the TCP transport itself
(:mod:`relaychat.server.tlslayer`), so both kinds sit directly on the
socket, reads reach the hub whole and writes leave at once.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

from twisted.internet import abstract
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from relaychat.server.connection import Connection
from relaychat.server.hub import Hub
from relaychat.server.prompt import PromptWriter
from relaychat.server.readahead import ReadAhead
from relaychat.server.tlslayer import ServerTLS, TLSFailed, TLSState


@implementer(IPushProducer)
class HubConnection(Protocol):
    """One connection to the hub over a TCP transport, with TLS if the listener has it.

    It is registered as the producer of its own transport, so the transport
    tells it (pauseProducing) when output backs up: that is how a slow
    reader stops its senders. Subclasses say what the cleartext means
    (:meth:`received`) and when the hub meets the connection (:meth:`join`).
    """

    transport: Any  # a Twisted TCP transport: ITCPTransport, IPushProducer and IConsumer

    def __init__(self, hub: Hub, clock: IReactorTime, tls: Optional[ssl.SSLContext] = None) -> None:
        self.hub = hub
        self.clock = clock
        self.client: Optional[Connection] = None
        self._context = tls
        self._tls: Optional[ServerTLS] = None
        self._out: PromptWriter  # made in connectionMade, on the transport
        self._ahead: ReadAhead  # likewise
        self._wakeup: Optional[IDelayedCall] = None
        self._abort: Optional[IDelayedCall] = None
        self._registered = False  # we are our transport's producer
        self._close_after_handshake = False  # closed while TLS was still handshaking

    def connectionMade(self) -> None:
        transport = self.transport
        transport.registerProducer(self, True)
        self._registered = True
        # The hub already writes once per read, so Nagle's algorithm can only
        # hold a reply back (until the peer's delayed ACK, tens of ms).
        no_delay(transport)
        _bound_output(transport, self.hub.limits.max_output)
        self._out = PromptWriter(transport)
        self._ahead = ReadAhead(transport, self.hub.limits.max_read)
        if self._context is not None:
            self._tls = ServerTLS(self._context)

    def join(self) -> None:
        """Meet the hub: from now on this connection is the hub's Link."""
        peer = self.transport.getPeer()
        address = getattr(peer, "host", None) or str(peer)
        self.client = self.hub.connect(self, address, self.clock.seconds())

    def dataReceived(self, data: bytes) -> None:
        data = self._ahead.extend(data)
        tls = self._tls
        if tls is not None:
            try:
                data = tls.receive(data)
            except TLSFailed:
                self._send_ciphertext(tls.data_to_send())  # the alert saying why
                self.transport.loseConnection()
                return
            self._send_ciphertext(tls.data_to_send())
            if self._close_after_handshake:
                if tls.state is not TLSState.HANDSHAKING:
                    self._close_after_handshake = False
                    self.close_stream()  # what the hub said was sent with the handshake's end
                return
            if tls.peer_closed:
                if data:
                    self.received(data)
                self.transport.loseConnection()
                return
            if not data:
                return
        self.received(data)

    def received(self, data: bytes) -> None:
        """Cleartext from the peer."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Link: lines from the hub."""
        raise NotImplementedError

    def close(self) -> None:
        """Link: the hub is done with this connection."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        """Cleartext to the peer, through TLS if there is TLS."""
        tls = self._tls
        if tls is not None:
            tls.send(data)
            data = tls.data_to_send()
            if not data:
                return
        self._out.write(data)

    def _send_ciphertext(self, data: bytes) -> None:
        if data:
            self._out.write(data)

    def close_stream(self) -> None:
        """End TLS (our close_notify) and the TCP connection once the queued
        output (the ``BYE``) is written, and for sure within ``close_timeout``.

        A transport must not wait for its producer's output while closing,
        so we stop being its producer first: a TCP transport whose streaming
        producer is paused resumes the producer when its buffer drains,
        instead of closing (and Twisted's TLS does not even start its close
        while a producer is registered, on a ``web_client`` listener).
        Reading is resumed so that a WebSocket's closing handshake can
        arrive (the hub ignores anything else a closing connection sends).
        A peer that never reads is cut off after ``close_timeout`` seconds;
        our own ``close_notify`` never waits for the peer's.
        """
        transport = self.transport
        if self._registered:
            self._registered = False
            transport.unregisterProducer()
        transport.resumeProducing()
        if self._abort is None:
            self._abort = self.clock.callLater(self.hub.limits.close_timeout, transport.abortConnection)
        tls = self._tls
        if tls is not None:
            if tls.state is TLSState.HANDSHAKING:
                # The hub closed at once (BYE busy): its words can only be
                # sent once the handshake is done, so finish it first.
                self._close_after_handshake = True
                return
            tls.close()
            self._send_ciphertext(tls.data_to_send())
        transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in (self._wakeup, self._abort):
            if call is not None and call.active():
                call.cancel()
        if self.client is not None:
            self.hub.disconnect(self.client, self.clock.seconds())

    # -- IPushProducer: our own transport's output is full / drained --------

    def pauseProducing(self) -> None:
        if self.client is not None:
            self.hub.set_congested(self.client, True, self.clock.seconds())

    def resumeProducing(self) -> None:
        if self.client is not None:
            self.hub.set_congested(self.client, False, self.clock.seconds())

    def stopProducing(self) -> None:
        pass  # connectionLost follows and does the cleaning up

    # -- Link (write and close are the subclass's) ----------------------------

    def set_reading(self, reading: bool) -> None:
        if reading:
            self.transport.resumeProducing()
        else:
            self.transport.pauseProducing()

    def wake_after(self, seconds: float) -> None:
        self._wakeup = self.clock.callLater(seconds, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        if self.client is not None:
            self.hub.wake(self.client, self.clock.seconds())


def no_delay(transport: object) -> None:
    """``TCP_NODELAY`` on ``transport`` if it is TCP (ITCPTransport.setTcpNoDelay); else nothing."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except (OSError, AttributeError, NotImplementedError):
            pass


def _bound_output(transport: object, size: int) -> None:
    """Make the socket's transport, under any layer (Twisted's TLS and the
    connection bound of a ``web_client`` listener), call pauseProducing
    once more than ``size`` bytes wait in it: that is ``max_output``, the
    unsent output past which a connection is not read.

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


class RelayProtocol(HubConnection):
    """Protocol lines straight on the stream (a ``tcp`` or ``tls`` listener)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.join()

    def received(self, data: bytes) -> None:
        client = self.client
        if client is not None:  # always: it joined in connectionMade
            self.hub.receive(client, data, self.clock.seconds())

    def write(self, data: bytes) -> None:
        self.send(data)

    def close(self) -> None:
        self.close_stream()


class RelayFactory(Factory):
    """Builds :class:`RelayProtocol` for a ``tcp`` listener, or with ``tls`` a ``tls`` one."""

    noisy = False

    transport: Any  # a Twisted TCP transport: ITCPTransport, IPushProducer and IConsumer

    def __init__(self, hub: Hub, clock: IReactorTime, tls: Optional[ssl.SSLContext] = None) -> None:
        self.hub = hub
        self.clock = clock
        self.tls = tls

    def with_tls(self, context: ssl.SSLContext) -> "RelayFactory":
        """The same relay behind TLS with ``context`` (a ``tls`` listener)."""
        return RelayFactory(self.hub, self.clock, context)

    def buildProtocol(self, addr: object) -> RelayProtocol:
        protocol = RelayProtocol(self.hub, self.clock, self.tls)
        protocol.factory = self
        return protocol
