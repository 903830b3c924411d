"""WebSocket listeners: one protocol line per WebSocket text message.

A browser cannot open a TCP connection, so a ``websocket`` listener carries
the same protocol inside WebSocket messages (docs/protocol.rst, section 1
and "WebSocket"): each text message is one line without its LF, in both
directions. The relay logic is not repeated here: every connection is an
ordinary :class:`~relaychat.server.protocol.RelayProtocol` whose transport
is a small shim (:class:`LineMessageTransport`) that sends each line the
hub writes as one text message. The shim passes producer registration and
pause/resume of reading straight to the TCP (or TLS) transport underneath,
so back-pressure works exactly as on TCP: a slow WebSocket reader fills
its socket buffer, the hub is told (pauseProducing) and stops reading its
peers; the hub pausing a WebSocket sender stops reading its socket.

Limits: a message (and a frame) longer than ``max_line`` fails the
connection with close code 1009 before it is buffered, and the HTTP opening
handshake is bounded too (:data:`MAX_HANDSHAKE`) and timed out. A binary
message, or a text message containing LF, is answered ``ERR - syntax`` and
counts as a protocol violation, as the protocol document says.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from relaychat.server.protocol import RelayFactory, RelayProtocol
from relaychat.wire.errors import Code

MAX_HANDSHAKE = 65536
"""Bytes of HTTP opening handshake (request line and headers) we will buffer."""
OPEN_HANDSHAKE_TIMEOUT = 10.0
CLOSE_HANDSHAKE_TIMEOUT = 2.0
SUBPROTOCOL = "relaychat"
"""Selected when a client offers it; clients need not offer any subprotocol."""


@implementer(ITransport, IPushProducer)
class LineMessageTransport:
    """The transport a :class:`RelayProtocol` sees on a WebSocket connection."""

    def __init__(self, websocket: "RelayWebSocketProtocol") -> None:
        self._websocket = websocket
        self._partial = b""
        self.lost = False
        self.disconnecting = False

    # -- output: the hub writes whole lines; each becomes one text message

    def write(self, data: bytes) -> None:
        if self.disconnecting or self.lost:
            return  # like a TCP transport after loseConnection
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._websocket.send_line(line)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.disconnecting and not self.lost:
            self.disconnecting = True
            self._websocket.close_after_output()

    def abortConnection(self) -> None:
        self._websocket.dropConnection(abort=True)

    @property
    def transport(self) -> Any:
        """The TCP (or TLS) transport the WebSocket runs on."""
        return self._websocket.transport

    def getPeer(self) -> Any:
        return self._websocket.transport.getPeer()

    def getHost(self) -> Any:
        return self._websocket.transport.getHost()

    # -- flow control: straight through to the socket underneath

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._websocket.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._websocket.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self._websocket.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._websocket.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.abortConnection()


class RelayWebSocketProtocol(WebSocketServerProtocol):
    """Moves lines between WebSocket messages and one :class:`RelayProtocol`."""

    factory: "RelayWebSocketFactory"

    def __init__(self, relay: RelayProtocol) -> None:
        super().__init__()
        self.relay = relay
        self.lines: Optional[LineMessageTransport] = None

    def dataReceived(self, data: bytes) -> None:
        client = self.relay.client
        if client is not None:
            # A message is a line: before registration, only as long as an
            # unregistered line may be (autobahn buffers up to this bound).
            self.maxMessagePayloadSize = self.maxFramePayloadSize = client.splitter.max_line
        super().dataReceived(data)
        # autobahn buffers the opening handshake without limit until its
        # time-out; a peer must not make us hold more than MAX_HANDSHAKE.
        if self.state == self.STATE_CONNECTING and len(self.data) > MAX_HANDSHAKE:
            self.dropConnection(abort=True)

    def dropConnection(self, abort: bool = False) -> None:
        """After a clean closing handshake close the TCP (or TLS) connection
        in order, not with the reset autobahn uses: both sides are done, and
        RFC 6455 (7.1.1) wants the server to close first. Unclean endings
        (a protocol failure, a handshake time-out) still abort."""
        super().dropConnection(abort=abort and not self.wasClean)

    def onConnect(self, request: Any) -> Optional[str]:
        if self.factory.path is not None and request.path != self.factory.path:
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "no relay here")
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def onOpen(self) -> None:
        self.lines = LineMessageTransport(self)
        self.relay.makeConnection(self.lines)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.lines is None or self.lines.lost:
            return
        if isBinary:
            self._refuse("a WebSocket message must be text")
        elif b"\n" in payload:
            self._refuse("one line per WebSocket message, without LF")
        else:
            self.relay.dataReceived(payload + b"\n")

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self.lines is not None and not self.lines.lost:
            self.lines.lost = True
            self.relay.connectionLost(Failure(ConnectionDone(f"WebSocket closed ({code})")))

    def send_line(self, line: bytes) -> None:
        if self.state != self.STATE_OPEN:
            return
        if not line.isascii():
            # FRAME lines are forwarded undecoded; a text message must be UTF-8.
            line = line.decode("utf-8", "replace").encode("utf-8")
        limit = self.maxMessagePayloadSize
        if 0 < limit < len(line):
            # autobahn applies the inbound bound to outbound messages too;
            # the hub's own lines (a MAIL event) may exceed max_line.
            self.maxMessagePayloadSize = 0
            try:
                self.sendMessage(line, isBinary=False)
            finally:
                self.maxMessagePayloadSize = limit
        else:
            self.sendMessage(line, isBinary=False)

    def close_after_output(self) -> None:
        """The hub is done with this connection: start the closing handshake."""
        if self.state == self.STATE_OPEN:
            # Read again (the hub may have paused us) so the peer's close
            # reply arrives; anything else it sends is ignored by the hub.
            self.transport.resumeProducing()
            self.sendClose(code=1000)
        else:
            self.dropConnection(abort=False)

    def _refuse(self, text: str) -> None:
        """An error only the adapter can see; the hub answers and counts it."""
        hub, client = self.relay.hub, self.relay.client
        if client is None:  # the hub ignores a connection it no longer serves
            return
        hub.refuse(client, Code.SYNTAX, text)


class _Timers:
    """autobahn's time-outs (opening and closing handshakes) on the factory's
    reactor: txaio's batched timer, autobahn's default, always uses the
    global reactor, which an injected clock in tests cannot drive."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> "_Call":
        return _Call(self._reactor.callLater(delay, function, *args, **kwargs))


class _Call:
    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


def origin_pattern(pattern: str) -> str:
    """autobahn matches ``scheme://host:port`` with the port always present;
    let operators write ``https://chat.example`` for ``https://chat.example:443``."""
    scheme, separator, rest = pattern.partition("://")
    if not separator or ":" in rest.split("/", 1)[0]:
        return pattern
    port = {"https": "443", "http": "80"}.get(scheme.lower())
    return f"{pattern}:{port}" if port else pattern


class RelayWebSocketFactory(WebSocketServerFactory):
    """Builds a :class:`RelayWebSocketProtocol` around each relay connection."""

    noisy = False

    def __init__(
        self, relay_factory: RelayFactory, reactor: Any, path: Optional[str] = None,
        allowed_origins: Sequence[str] = ("*",),
    ) -> None:
        super().__init__(reactor=reactor, server="relaychat")
        self.relay_factory = relay_factory
        self.path = path
        self._batched_timer = _Timers(reactor)
        max_line = relay_factory.hub.limits.max_line
        self.setProtocolOptions(
            maxFramePayloadSize=max_line,
            maxMessagePayloadSize=max_line,
            webStatus=False,  # no HTML page for plain HTTP requests
            failByDrop=False,  # send a close frame saying why (e.g. 1009 too big)
            openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            allowedOrigins=[origin_pattern(o) for o in allowed_origins],
            # A sandboxed page or a file: URL sends "Origin: null"; allow it only when any origin is allowed.
            allowNullOrigin=list(allowed_origins) == ["*"],
        )

    def buildProtocol(self, addr: Any) -> RelayWebSocketProtocol:
        protocol = RelayWebSocketProtocol(self.relay_factory.buildProtocol(addr))
        protocol.factory = self
        return protocol
