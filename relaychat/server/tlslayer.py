"""Server-side TLS as a plain object: ciphertext in, cleartext out, and back.

The relay's adapters (:mod:`relaychat.server.protocol`,
:mod:`relaychat.server.websocket`) sit directly on the TCP transport and
run TLS through this layer, pyOpenSSL's public memory-BIO API, instead of
stacking Twisted's ``TLSMemoryBIOProtocol`` between the socket and the
relay. Three things make it cheaper for a relay (bench/README.rst, "TLS and
WebSocket"):

* everything one TCP read decrypts is handed on at once (Twisted hands on
  each TLS record, up to 16 KiB, by itself, so the hub ran and wrote once
  per record instead of once per read);
* everything one hub flush encrypts leaves in one socket write, sent at
  once when nothing is queued (:class:`~relaychat.server.prompt.PromptWriter`),
  where Twisted's buffering TLS transport waited one reactor iteration to
  aggregate and the TCP transport another to send;
* back-pressure is the TCP transport's own, with no producer membrane.

Closing is not delayed by the peer: :meth:`ServerTLS.close` queues our
``close_notify`` and the adapter closes the TCP connection after it, so a
peer that never answers cannot hold the connection open.
"""

from __future__ import annotations

import enum

from OpenSSL import SSL

RECORD = 16384
"""Cleartext per TLS record: the most one ``SSL_read`` returns."""
_CHUNK = 65536  # ciphertext per bio_read: below malloc's mmap threshold


class TLSState(enum.Enum):
    HANDSHAKING = 0
    OPEN = 1
    CLOSED = 2  # close_notify sent or received, or the peer broke the protocol


class TLSFailed(Exception):
    """The peer broke TLS (a failed handshake, a bad record). What OpenSSL
    wants to say about it (an alert) is still in :meth:`ServerTLS.data_to_send`."""


class ServerTLS:
    """One server-side TLS connection over memory BIOs: no sockets, no reactor."""

    __slots__ = ("_conn", "state", "_pending", "peer_closed")

    def __init__(self, context: SSL.Context) -> None:
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self.state = TLSState.HANDSHAKING
        self._pending: list[bytes] = []  # cleartext written before the handshake finished
        self.peer_closed = False  # the peer sent close_notify

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext from the socket; return all the cleartext it completes.

        Raises :class:`TLSFailed` if the peer broke TLS; after the peer's
        ``close_notify``, :attr:`peer_closed` is set and our own is queued.
        """
        conn = self._conn
        conn.bio_write(data)
        if self.state is TLSState.HANDSHAKING:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                return b""
            except SSL.Error as e:
                self.state = TLSState.CLOSED
                raise TLSFailed(_describe(e)) from None
            self.state = TLSState.OPEN
            pending, self._pending = self._pending, []
            for chunk in pending:
                self._write(chunk)
        chunks = []
        while True:
            try:
                chunks.append(conn.recv(RECORD))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.peer_closed = True
                self.close()
                break
            except SSL.Error as e:
                self.state = TLSState.CLOSED
                raise TLSFailed(_describe(e)) from None
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def send(self, data: bytes) -> None:
        """Encrypt cleartext (kept until the handshake is done); dropped once closed."""
        if self.state is TLSState.OPEN:
            self._write(data)
        elif self.state is TLSState.HANDSHAKING:
            self._pending.append(data)

    def _write(self, data: bytes) -> None:
        conn = self._conn
        view = memoryview(data)
        while view:
            try:
                sent = conn.send(view)  # one record per call (pyOpenSSL sets partial writes)
            except SSL.Error:
                self.state = TLSState.CLOSED
                return
            view = view[sent:]

    def close(self) -> None:
        """Queue our ``close_notify``; nothing more is sent after it."""
        if self.state is TLSState.CLOSED:
            return
        self.state = TLSState.CLOSED
        try:
            self._conn.shutdown()
        except SSL.Error:
            pass  # mid-handshake there may be nothing to say

    def data_to_send(self) -> bytes:
        """All ciphertext waiting for the socket (b"" if none)."""
        conn = self._conn
        chunks = []
        while True:
            try:
                chunk = conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _CHUNK:
                break
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


def _describe(error: SSL.Error) -> str:
    details = error.args[0] if error.args else []
    if isinstance(details, list) and details and isinstance(details[0], tuple):
        return "; ".join(str(d[-1]) for d in details)
    return str(error) or type(error).__name__
