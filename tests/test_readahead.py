"""ReadAhead: a full read of Twisted's is extended with what the socket holds.

Real ``tcp.Server`` transports over loopback TCP connections, with a memory reactor
(as in tests.test_prompt): ``doRead`` is called by hand, so each test says
exactly which bytes were waiting when the relay read.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.limits import Limits
from relaychat.server.protocol import HubConnection
from relaychat.server.readahead import ReadAhead
from relaychat.server.tlslayer import server_context
from tests.test_prompt import _Port

PAYLOAD = bytes(range(256)) * 800  # 204,800 bytes, no two neighbouring chunks alike


def _server(protocol: Protocol) -> tuple[tcp.Server, socket.socket]:
    # Buffers big enough for PAYLOAD, set before the handshake (the window
    # scale is fixed by it): each sendall has arrived when it returns.
    listener, peer = socket.socket(), socket.socket()
    for sock in (listener, peer):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    peer.connect(listener.getsockname())
    ours, _ = listener.accept()
    listener.close()
    ours.setblocking(False)
    peer.settimeout(5)
    transport = tcp.Server(ours, protocol, ("127.0.0.1", 4242), _Port(), 1, MemoryReactor())  # type: ignore[arg-type]
    transport.connected = True
    return transport, peer


class Extend(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport, self.peer = _server(Protocol())
        self.addCleanup(self.peer.close)
        self.addCleanup(self.transport.socket.close)
        self.transport.bufferSize = 4096
        self.ahead = ReadAhead(self.transport, 65536)

    def first_read(self) -> bytes:
        return self.transport.socket.recv(self.transport.bufferSize)

    def test_a_full_read_takes_what_follows_up_to_max_read(self) -> None:
        self.assertTrue(self.ahead.active)
        self.peer.sendall(PAYLOAD)
        got: list[bytes] = []
        while sum(map(len, got)) < len(PAYLOAD):
            got.append(self.ahead.extend(self.first_read()))
        self.assertEqual(b"".join(got), PAYLOAD)  # nothing lost, nothing reordered
        self.assertEqual([len(chunk) for chunk in got[:3]], [65536] * 3)

    def test_a_short_read_is_left_alone(self) -> None:
        self.peer.sendall(b"x" * 100)
        data = self.first_read()
        self.peer.sendall(b"y" * 10000)  # waiting, but the read that came back was not full
        self.assertEqual(self.ahead.extend(data), b"x" * 100)
        self.assertEqual(self.first_read(), b"y" * 4096)

    def test_nothing_more_waiting(self) -> None:
        self.peer.sendall(b"z" * 4096)
        self.assertEqual(self.ahead.extend(self.first_read()), b"z" * 4096)

    def test_the_end_of_the_stream_is_left_for_twisteds_read(self) -> None:
        self.peer.sendall(b"a" * 5000)
        self.peer.shutdown(socket.SHUT_WR)
        self.assertEqual(self.ahead.extend(self.first_read()), b"a" * 5000)
        self.assertEqual(self.first_read(), b"")  # Twisted's next read still sees the end

    def test_inactive_when_max_read_is_no_more_than_twisteds_read(self) -> None:
        ahead = ReadAhead(self.transport, 4096)
        self.assertFalse(ahead.active)
        self.peer.sendall(b"b" * 8192)
        self.assertEqual(ahead.extend(self.first_read()), b"b" * 4096)

    def test_inactive_over_anything_but_plain_tcp(self) -> None:
        self.assertFalse(ReadAhead(StringTransport(), 1 << 20).active)
        self.transport.TLS = True  # Twisted's startTLS on this transport: its socket carries ciphertext
        self.assertFalse(ReadAhead(self.transport, 1 << 20).active)

    def test_max_read_has_a_floor(self) -> None:
        with self.assertRaises(ValueError):
            Limits(max_read=1024)


class _Hub:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits


class _Collect(HubConnection):
    def __init__(self, limits: Limits, tls: Any = None) -> None:
        super().__init__(_Hub(limits), MemoryReactor(), tls)  # type: ignore[arg-type]
        self.calls: list[bytes] = []

    def received(self, data: bytes) -> None:
        self.calls.append(data)


class InTheAdapter(SynchronousTestCase):
    """One reactor turn hands the hub everything up to max_read, in TCP and in TLS."""

    def connect(self, limits: Limits, tls: Any = None) -> tuple[_Collect, tcp.Server, socket.socket]:
        protocol = _Collect(limits, tls)
        transport, peer = _server(protocol)
        self.addCleanup(peer.close)
        self.addCleanup(transport.socket.close)
        protocol.makeConnection(transport)
        return protocol, transport, peer

    def test_plain_tcp(self) -> None:
        protocol, transport, peer = self.connect(Limits(max_output=16384, max_read=131072))
        self.assertEqual(transport.bufferSize, 16384)  # Twisted's read size is max_output ...
        peer.sendall(PAYLOAD)
        transport.doRead()
        self.assertEqual(protocol.calls, [PAYLOAD[:131072]])  # ... and one turn took max_read
        transport.doRead()
        self.assertEqual(b"".join(protocol.calls), PAYLOAD)

    def test_tls(self) -> None:
        from tests.test_tlslayer import certificate as fresh_certificate

        certificate, key = fresh_certificate(self)
        protocol, transport, peer = self.connect(Limits(max_output=16384, max_read=1 << 20),
                                                 server_context(certificate, key))
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context.wrap_bio(incoming, outgoing)
        while True:  # the handshake, one flight at a time
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                peer.sendall(outgoing.read())
                transport.doRead()
                incoming.write(peer.recv(65536))
        peer.sendall(outgoing.read())
        client.write(PAYLOAD)
        peer.sendall(outgoing.read())
        transport.doRead()
        self.assertEqual(protocol.calls, [PAYLOAD])  # every record of one turn's ciphertext, decrypted in one call
