"""Server-side TLS as a plain object: ciphertext in, cleartext out, and back.

The relay's adapters (:mod:`relaychat.server.protocol`,
:mod:`relaychat.server.websocket`) sit directly on the TCP transport and
run TLS through this layer, the standard library's memory-BIO API
(:class:`ssl.SSLObject`), instead of stacking Twisted's
``TLSMemoryBIOProtocol`` between the socket and the relay. What makes it
cheaper for a relay (bench/README.rst, "TLS and WebSocket"):

* everything one TCP read decrypts is handed on at once (Twisted hands on
  each TLS record, up to 16 KiB, by itself, so the hub ran and wrote once
  per record instead of once per read);
* everything one hub flush encrypts leaves in one socket write, sent at
  once when nothing is queued (:class:`~relaychat.server.prompt.PromptWriter`),
  where Twisted's buffering TLS transport waited one reactor iteration to
  aggregate and the TCP transport another to send;
* the standard library's ``SSLObject`` is C all the way down: 1 us to
  decrypt a small record and 1 us to encrypt one, against 4 and 3 us
  through pyOpenSSL's Python wrappers (the OpenSSL library is the same);
* back-pressure is the TCP transport's own, with no producer membrane.

Closing is not delayed by the peer: :meth:`ServerTLS.close` queues our
``close_notify`` and the adapter closes the TCP connection after it, so a
peer that never answers cannot hold the connection open.
"""

from __future__ import annotations

import enum
import ssl
from pathlib import Path

from relaychat.certificates import server_options

_READ = 65536  # cleartext per SSLObject.read: more than one record holds


class TLSState(enum.Enum):
    HANDSHAKING = 0
    OPEN = 1
    CLOSED = 2  # close_notify sent or received, or the peer broke the protocol


class TLSFailed(Exception):
    """The peer broke TLS (a failed handshake, a bad record). What OpenSSL
    wants to say about it (an alert) is still in :meth:`ServerTLS.data_to_send`."""


def server_context(certificate: Path, private_key: Path, minimum_tls: str = "1.2") -> ssl.SSLContext:
    """The TLS server context of a listener.

    :func:`relaychat.certificates.server_options` checks the files first, so every
    problem with them is a :class:`~relaychat.certificates.CertificateError` with a
    plain message, raised at start-up. The standard library's defaults for
    a server are kept (AEAD ciphers with forward secrecy first, no
    compression, server preference); renegotiation is refused, and no
    session is kept for resumption: no TLS 1.2 ticket (decryptable with
    the process's ticket key, which weakens forward secrecy; Twisted's
    defaults had none either) and no TLS 1.3 ticket, whose server-side
    cache entry cost about 1 KB per connection (measured in process:
    17.6 KB per idle connection with, 16.5 without). Relay clients stay
    connected; a reconnect pays one full handshake.
    """
    server_options(certificate, private_key, minimum_tls)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if minimum_tls == "1.3" else ssl.TLSVersion.TLSv1_2
    context.options |= (ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
                        | ssl.OP_NO_TICKET)
    context.num_tickets = 0
    context.load_cert_chain(str(certificate), str(private_key))
    return context


class ServerTLS:
    """One server-side TLS connection over memory BIOs: no sockets, no reactor."""

    __slots__ = ("_tls", "_incoming", "_outgoing", "state", "_pending", "peer_closed")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.state = TLSState.HANDSHAKING
        self._pending: list[bytes] = []  # cleartext written before the handshake finished
        self.peer_closed = False  # the peer sent close_notify

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext from the socket; return all the cleartext it completes.

        Raises :class:`TLSFailed` if the peer broke TLS; after the peer's
        ``close_notify``, :attr:`peer_closed` is set and our own is queued.
        """
        tls, incoming = self._tls, self._incoming
        incoming.write(data)
        if self.state is TLSState.HANDSHAKING:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except (ssl.SSLError, ValueError) as e:
                self.state = TLSState.CLOSED
                raise TLSFailed(str(e)) from None
            self.state = TLSState.OPEN
            pending, self._pending = self._pending, []
            for chunk in pending:
                self._write(chunk)
        chunks = []
        while incoming.pending or tls.pending():
            try:
                chunk = tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except (ssl.SSLError, ValueError) as e:
                self.state = TLSState.CLOSED
                raise TLSFailed(str(e)) from None
            if not chunk:  # the peer's close_notify
                self.peer_closed = True
                self.close()
                break
            chunks.append(chunk)
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
        tls = self._tls
        try:
            sent = tls.write(data)
            while sent < len(data):  # SSLObject writes everything to a memory BIO; just in case
                data = data[sent:]
                sent = tls.write(data)
        except (ssl.SSLError, ValueError):
            self.state = TLSState.CLOSED

    def close(self) -> None:
        """Queue our ``close_notify``; nothing more is sent after it."""
        if self.state is TLSState.CLOSED:
            return
        handshaking = self.state is TLSState.HANDSHAKING
        self.state = TLSState.CLOSED
        if handshaking:
            return  # nothing to say before the handshake is done
        try:
            self._tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: the peer's close_notify has not come, and need not

    def data_to_send(self) -> bytes:
        """All ciphertext waiting for the socket (b"" if none)."""
        return self._outgoing.read()
