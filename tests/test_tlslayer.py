"""ServerTLS (sans I/O) against the standard library's client, and the
relay adapter with TLS inside it, all in memory."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Optional

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from relaychat.certificates import CertificateError, write_self_signed
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.protocol import RelayFactory
from relaychat.server.store import Store
from relaychat.server.tlslayer import ServerTLS, TLSFailed, TLSState, server_context


class Client:
    """A TLS client over memory BIOs (the standard library's)."""

    def __init__(self, maximum: Optional[ssl.TLSVersion] = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if maximum is not None:
            context.maximum_version = maximum
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def handshake(self) -> bool:
        try:
            self.tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def read(self) -> bytes:
        chunks = []
        for _ in range(100):
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def certificate(test: SynchronousTestCase) -> tuple[Path, Path]:
    cert, key, _ = write_self_signed(Path(test.mktemp()), ["localhost"])
    return cert, key


class Layer(SynchronousTestCase):
    def setUp(self) -> None:
        self.cert, self.key = certificate(self)
        self.server = ServerTLS(server_context(self.cert, self.key))
        self.client = Client()

    def pump(self) -> bytes:
        """Run the handshake (or anything) to quiescence; return the server's cleartext."""
        clear = b""
        for _ in range(10):
            self.client.handshake()
            data = self.client.outgoing.read()
            if data:
                clear += self.server.receive(data)
            out = self.server.data_to_send()
            if out:
                self.client.incoming.write(out)
            if not data and not out:
                break
        return clear

    def test_handshake_then_whole_reads_both_ways(self) -> None:
        self.pump()
        self.assertIs(self.server.state, TLSState.OPEN)
        self.assertEqual(self.client.tls.version(), "TLSv1.3")
        lines = b"".join(b"FRAME s%d QUJD\n" % i for i in range(3000))  # several records in one read
        self.client.tls.write(lines)
        self.assertEqual(self.server.receive(self.client.outgoing.read()), lines)
        self.server.send(b"OK PING x\n")
        self.client.incoming.write(self.server.data_to_send())
        self.assertEqual(self.client.read(), b"OK PING x\n")

    def test_a_record_split_across_reads_is_kept_until_whole(self) -> None:
        self.pump()
        self.client.tls.write(b"PING split\n")
        wire = self.client.outgoing.read()
        self.assertEqual(self.server.receive(wire[:7]), b"")
        self.assertEqual(self.server.receive(wire[7:]), b"PING split\n")

    def test_writes_before_the_handshake_wait_for_it(self) -> None:
        self.server.send(b"early\n")
        self.pump()
        self.assertEqual(self.client.read(), b"early\n")

    def test_peer_close_notify_is_answered(self) -> None:
        self.pump()
        self.client.tls.write(b"QUIT\n")
        try:
            self.client.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.assertEqual(self.server.receive(self.client.outgoing.read()), b"QUIT\n")
        self.assertTrue(self.server.peer_closed)
        self.assertIs(self.server.state, TLSState.CLOSED)
        self.client.incoming.write(self.server.data_to_send())  # our close_notify
        self.client.tls.unwrap()  # completes: both sides said it
        self.server.send(b"too late\n")
        self.assertEqual(self.server.data_to_send(), b"")

    def test_our_close_notify_does_not_wait_for_the_peer(self) -> None:
        self.pump()
        self.server.close()
        self.assertIs(self.server.state, TLSState.CLOSED)
        self.client.incoming.write(self.server.data_to_send())
        self.assertEqual(self.client.tls.read(100), b"")  # the server's close_notify ...
        self.client.tls.unwrap()  # ... so the client's unwrap completes without waiting

    def test_plain_http_fails(self) -> None:
        with self.assertRaises(TLSFailed):
            self.server.receive(b"GET / HTTP/1.1\r\n\r\n")
        self.assertIs(self.server.state, TLSState.CLOSED)

    def test_a_tampered_record_fails(self) -> None:
        self.pump()
        self.client.tls.write(b"PING x\n")
        wire = bytearray(self.client.outgoing.read())
        wire[-1] ^= 1
        with self.assertRaises(TLSFailed):
            self.server.receive(bytes(wire))

    def test_minimum_version(self) -> None:
        server = ServerTLS(server_context(self.cert, self.key, "1.3"))
        client = Client(maximum=ssl.TLSVersion.TLSv1_2)
        client.handshake()
        with self.assertRaises(TLSFailed):
            server.receive(client.outgoing.read())
        self.assertEqual(server.data_to_send()[:1], b"\x15")

    def test_context_checks_the_files_first(self) -> None:
        other_cert, _ = certificate(self)
        with self.assertRaises(CertificateError) as caught:
            server_context(other_cert, self.key)
        self.assertIn("does not belong to certificate", str(caught.exception))


class ClosedBeforeTheHandshake(SynchronousTestCase):
    def test_what_the_hub_says_at_once_is_sent_after_the_handshake_then_closed(self) -> None:
        cert, key = certificate(self)
        clock = Clock()
        hub = Hub(Store(":memory:"), Limits(pow_bits=0, connections_per_address=1), now=0.0)
        factory = RelayFactory(hub, clock).with_tls(server_context(cert, key))
        first = factory.buildProtocol(None)
        first.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4242)))
        protocol = factory.buildProtocol(None)  # over the per-address limit: BYE busy at once
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4243))
        protocol.makeConnection(transport)
        self.assertFalse(transport.disconnecting)  # not before the handshake
        client = Client()
        for _ in range(5):
            client.handshake()
            protocol.dataReceived(client.outgoing.read())
            client.incoming.write(transport.value())
            transport.clear()
        self.assertTrue(client.handshake())
        self.assertEqual(client.read(), b"BYE busy too many connections from your address\n")
        client.tls.unwrap()  # our close_notify came after it
        self.assertTrue(transport.disconnecting)


class AdapterWithTLS(SynchronousTestCase):
    """RelayProtocol with TLS inside: lines in, replies out, close_notify on BYE."""

    def setUp(self) -> None:
        cert, key = certificate(self)
        self.clock = Clock()
        self.hub = Hub(Store(":memory:"), Limits(pow_bits=0), now=0.0)
        factory = RelayFactory(self.hub, self.clock).with_tls(server_context(cert, key))
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4242))
        self.protocol.makeConnection(self.transport)
        self.client = Client()
        for _ in range(5):
            self.client.handshake()
            self.protocol.dataReceived(self.client.outgoing.read())
            self.client.incoming.write(self.transport.value())
            self.transport.clear()
        self.assertTrue(self.client.handshake())

    def ask(self, text: bytes) -> bytes:
        self.client.tls.write(text)
        self.protocol.dataReceived(self.client.outgoing.read())
        self.client.incoming.write(self.transport.value())
        self.transport.clear()
        return self.client.read()

    def test_lines_in_replies_out(self) -> None:
        self.assertIs(self.transport.producer, self.protocol)  # the adapter is its TCP transport's producer
        self.assertEqual(self.ask(b"PING a\nPING b\n"), b"OK PING a\nOK PING b\n")

    def test_quit_says_bye_then_close_notify_then_closes_tcp(self) -> None:
        self.assertEqual(self.ask(b"QUIT\n"), b"BYE quit goodbye\n")
        self.assertTrue(self.transport.disconnecting)  # not waiting for the peer's close_notify
        self.client.tls.unwrap()  # completes: the relay's close_notify came with the BYE

    def test_broken_tls_closes_the_connection_and_leaves_the_hub(self) -> None:
        self.assertEqual(len(self.hub.clients), 1)
        self.protocol.dataReceived(b"\x17\x03\x03\x00\x05hello")
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)
        self.assertEqual(len(self.hub.clients), 0)
