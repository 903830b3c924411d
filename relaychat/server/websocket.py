"""WebSocket listeners: one protocol line per WebSocket text message.

A browser cannot open a TCP connection, so a ``websocket`` listener carries
the same protocol inside WebSocket messages (docs/protocol.rst, section 1
and "WebSocket"): each text message is one line without its LF, in both
directions. :class:`WebSocketProtocol` is the hub's Link in its own right,
the second adapter beside :class:`~relaychat.server.protocol.RelayProtocol`
over the same hub; the framing is the sans-IO
:class:`~relaychat.server.wsframes.WebSocketServer`. Back-pressure works
exactly as on TCP, because it is the same TCP transport: a slow WebSocket
reader fills its socket buffer, the hub is told (pauseProducing) and stops
reading its peers; the hub pausing a WebSocket sender stops reading its
socket.

Limits: a message (and a frame) longer than ``max_line`` fails the
connection with close code 1009 before it is buffered; the HTTP opening
handshake is bounded (:data:`~relaychat.server.wsframes.MAX_HANDSHAKE`) and
timed out, and so is the closing handshake. A binary message, or a text
message containing LF, is answered ``ERR - syntax`` and counts as a
protocol violation, as the protocol document says.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory

from relaychat.server.hub import Hub
from relaychat.server.protocol import HubConnection, RelayFactory
from relaychat.server.wsframes import (
    MAX_HANDSHAKE, SUBPROTOCOL, Lines, Opened, Policy, Refused, WebSocketServer, WSState, origin_pattern,
)
from relaychat.wire.errors import Code

__all__ = [
    "CLOSE_HANDSHAKE_TIMEOUT", "MAX_HANDSHAKE", "OPEN_HANDSHAKE_TIMEOUT", "SUBPROTOCOL",
    "WebSocketFactory", "WebSocketProtocol", "origin_pattern",
]

OPEN_HANDSHAKE_TIMEOUT = 10.0
CLOSE_HANDSHAKE_TIMEOUT = 2.0


class WebSocketProtocol(HubConnection):
    """One WebSocket connection: the hub's Link once the opening handshake is accepted."""

    def __init__(self, hub: Hub, clock: IReactorTime, policy: Policy, tls: Optional[ssl.SSLContext] = None) -> None:
        super().__init__(hub, clock, tls)
        self.ws = WebSocketServer(policy, hub.limits.max_line)
        self._timeout: Optional[IDelayedCall] = None
        self._output_full = False  # our transport asked us to stop producing

    def connectionMade(self) -> None:
        super().connectionMade()
        self._timeout = self.clock.callLater(OPEN_HANDSHAKE_TIMEOUT, self._timed_out)

    def received(self, data: bytes) -> None:
        ws = self.ws
        if self.client is not None:
            ws.max_message = self.client.splitter.max_line  # a message is a line: the hub's bound for this connection
        events = ws.receive(data)
        for event in events:
            if type(event) is Lines:
                if self.client is not None:
                    self.hub.receive(self.client, event.data, self.clock.seconds())
            elif type(event) is Opened:
                self._cancel_timeout()
                self.join()
            elif type(event) is Refused:
                self._refuse(event.reason)
        self._flush()

    def _flush(self) -> None:
        """Send what the framing owes, and act on the state it is in."""
        ws = self.ws
        out = ws.data_to_send(pong=not self._output_full)
        if out:
            self.send(out)
        if ws.state is WSState.CLOSED:
            self._cancel_timeout()
            self.close_stream()
        elif ws.state is WSState.CLOSING and self._timeout is None:
            # Read again (the hub may have paused us) so the peer's close
            # reply arrives; anything else it sends is ignored.
            self.transport.resumeProducing()
            self._timeout = self.clock.callLater(CLOSE_HANDSHAKE_TIMEOUT, self._timed_out)

    def _refuse(self, text: str) -> None:
        """An error only the adapter can see; the hub answers and counts it."""
        client = self.client
        if client is None:  # the hub ignores a connection it no longer serves
            return
        self.hub.refuse(client, Code.SYNTAX, text)

    def _timed_out(self) -> None:
        self._timeout = None
        self.close_stream()

    def _cancel_timeout(self) -> None:
        if self._timeout is not None:
            if self._timeout.active():
                self._timeout.cancel()
            self._timeout = None

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_timeout()
        super().connectionLost(reason)

    def pauseProducing(self) -> None:
        self._output_full = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._output_full = False
        super().resumeProducing()
        out = self.ws.data_to_send()  # a pong held back while the peer was not reading
        if out:
            self.send(out)

    # -- Link ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        ws = self.ws
        ws.send_lines(data)
        out = ws.data_to_send(pong=not self._output_full)
        if out:
            self.send(out)

    def close(self) -> None:
        """The hub is done with this connection: start the closing handshake."""
        self.ws.close()
        self._flush()


class WebSocketFactory(Factory):
    """Builds a :class:`WebSocketProtocol` for each connection to a ``websocket`` listener."""

    noisy = False

    def __init__(
        self, relay_factory: RelayFactory, reactor: Any, path: Optional[str] = None,
        allowed_origins: Sequence[str] = ("*",), tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.relay_factory = relay_factory
        self.hub = relay_factory.hub
        self.clock = reactor
        self.tls = tls
        self.policy = Policy(path, tuple(origin_pattern(o) for o in allowed_origins))

    def buildProtocol(self, addr: Any) -> WebSocketProtocol:
        protocol = WebSocketProtocol(self.hub, self.clock, self.policy, self.tls)
        protocol.factory = self
        return protocol
