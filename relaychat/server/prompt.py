"""Send now when nothing is queued: the one place that reads Twisted's internals.

``transport.write`` on a Twisted TCP transport only queues: the bytes leave
one reactor iteration later, after another ``epoll_wait`` and two
``epoll_ctl`` calls. The relay writes once per read, so sending at once when
the transport's queue is empty saves that round trip through the reactor
for almost every read, and a big write no longer fills Twisted's buffer
(pausing the peers) just because it has not been tried yet. Measured
(bench/README.rst, "TLS and WebSocket"), quick runs with and without it:
ping-pong p50 138 against 162 us (1.00 against 1.19 times the bare relay,
whose target is 1.2), relay CPU per small frame 0.66 against 0.77 us at
one pair and 0.50 against 0.58 at 100 pairs. It serves TLS too, now that
TLS runs in the adapter on the TCP transport.

Deciding "nothing is queued" needs three private attributes of
:class:`twisted.internet.abstract.FileDescriptor` (``_tempDataLen``,
``dataBuffer``, ``offset``). They are read here and nowhere else;
``tests.test_prompt`` fails loudly if a Twisted release renames them or
changes what they mean, rather than letting the relay fall back silently.
Whatever the kernel does not take, and every error, goes to
``transport.write``, so ordering, back-pressure and error handling stay
Twisted's.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet import tcp

INTERNALS = ("_tempDataLen", "dataBuffer", "offset", "connected", "disconnecting")
"""What :meth:`PromptWriter.write` reads of a ``tcp.Server`` besides its socket."""


class PromptWriter:
    """Writes to one transport, sending at once when that is safe."""

    __slots__ = ("transport", "_socket")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._socket: Optional[socket.socket] = None
        if type(transport) is tcp.Server and not transport.TLS and supported(transport):
            self._socket = transport.getHandle()

    @property
    def prompt(self) -> bool:
        """True when writes may bypass Twisted's queue (a plain ``tcp.Server``)."""
        return self._socket is not None

    def write(self, data: bytes) -> None:
        transport = self.transport
        sock = self._socket
        if (
            sock is not None
            and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = sock.send(data)
            except OSError:  # would block, or the connection broke: Twisted's write path sees it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


def supported(transport: Any) -> bool:
    """Whether ``transport`` has the internals :class:`PromptWriter` reads."""
    return all(hasattr(transport, name) for name in INTERNALS)
