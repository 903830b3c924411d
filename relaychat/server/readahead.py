"""Read on while the socket has more: fewer, bigger turns for bulk traffic.

Twisted reads a TCP socket ``bufferSize`` bytes at a time, one reactor turn
per read, and the relay sets ``bufferSize`` to ``max_output`` (64 KiB by
default) because the same attribute is the transport's pause threshold
(:func:`relaychat.server.protocol._bound_output`). A reactor turn of the
relay costs about 25 us whatever it carries (``epoll_wait``, the hub's
pass over the read, one ``send`` that wakes the peer's process), so a
sender of 16-KiB frames paid about 15 turns per MB. When Twisted's read
came back full, more is very likely waiting: :class:`ReadAhead` takes it
from the socket in the same turn, up to ``max_read`` bytes in all.
Measured (bench/README.rst, "Reading more per turn"): relay CPU per MB of
16-KiB frames 0.82-1.00 -> 0.60-0.69 ms, 15 -> 4 turns per MB.

Only public API: ``ITCPTransport.getHandle()`` is the connected socket,
which is non-blocking. An end of stream is left where it is, for Twisted's
own next read; an error this read meets is dropped here and shows to
Twisted's next read as the end of the stream, so closing stays Twisted's
either way. Over any other transport (Twisted's TLS of a ``web_client``
listener) nothing is read ahead.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet import tcp


class ReadAhead:
    """Extends a full read of one connection with what its socket holds."""

    __slots__ = ("_socket", "_full", "_more")

    def __init__(self, transport: Any, max_read: int) -> None:
        self._socket: Optional[socket.socket] = None
        self._full = int(getattr(transport, "bufferSize", 0))  # Twisted's read size
        self._more = max_read - self._full
        if isinstance(transport, tcp.Connection) and not transport.TLS and self._more > 0:
            handle = transport.getHandle()
            if isinstance(handle, socket.socket):
                self._socket = handle

    @property
    def active(self) -> bool:
        """True when reads are extended (a plain TCP transport, ``max_read`` above its read size)."""
        return self._socket is not None

    def extend(self, data: bytes) -> bytes:
        """``data`` (one read of Twisted's), and if it filled the read, what follows it."""
        sock = self._socket
        if sock is None or len(data) < self._full:
            return data
        try:
            more = sock.recv(self._more)
        except OSError:  # nothing more yet (EAGAIN), or an error: Twisted's next read then sees the end
            return data
        if not more:  # the end of the stream: Twisted's next read sees it too
            return data
        return data + more
