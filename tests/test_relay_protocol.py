"""The Twisted adapter: bytes, time and back-pressure between a transport and the hub."""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.protocol import RelayFactory
from relaychat.server.store import Store
from tests.support import identity, register_line


def make_factory(limits: Limits = Limits(pow_bits=0)) -> tuple[RelayFactory, Clock]:
    clock = Clock()
    return RelayFactory(Hub(Store(":memory:"), limits, now=clock.seconds()), clock), clock


def connect(factory: RelayFactory, host: str = "127.0.0.1"):
    from twisted.internet.address import IPv4Address

    protocol = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 4242))
    protocol.makeConnection(transport)
    return protocol, transport


def lines(transport: StringTransport) -> list[str]:
    data = transport.value().decode()
    transport.clear()
    return [l for l in data.split("\n") if l]


class Adapter(SynchronousTestCase):
    def test_registers_itself_as_streaming_producer_of_its_transport(self) -> None:
        factory, _ = make_factory()
        protocol, transport = connect(factory)
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        self.assertEqual(protocol.client.address, "127.0.0.1")

    def test_lines_in_replies_out(self) -> None:
        factory, _ = make_factory()
        protocol, transport = connect(factory)
        protocol.dataReceived(b"PING a\nPI")
        protocol.dataReceived(b"NG b\n")
        self.assertEqual(lines(transport), ["OK PING a", "OK PING b"])

    def test_bye_closes_transport(self) -> None:
        factory, _ = make_factory()
        protocol, transport = connect(factory)
        protocol.dataReceived(b"QUIT\n")
        self.assertEqual(lines(transport), ["BYE quit goodbye"])
        self.assertTrue(transport.disconnecting)

    def test_closing_stops_being_the_producer_and_reads_again(self) -> None:
        # A transport whose producer is still registered may wait for it
        # before closing (TLS does not even start): see RelayProtocol.close.
        factory, _ = make_factory()
        protocol, transport = connect(factory)
        transport.pauseProducing()
        protocol.dataReceived(b"QUIT\n")
        self.assertIsNone(transport.producer)
        self.assertEqual(transport.producerState, "producing")
        self.assertTrue(transport.disconnecting)

    def test_a_peer_that_never_lets_the_close_finish_is_cut_off(self) -> None:
        factory, clock = make_factory(Limits(pow_bits=0, close_timeout=7.0))
        protocol, transport = connect(factory)
        protocol.dataReceived(b"QUIT\n")
        self.assertEqual(len(factory.hub.clients), 1)  # its socket still counts
        clock.advance(6.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.2)
        self.assertTrue(transport.disconnected)  # StringTransport.abortConnection
        protocol.connectionLost(None)
        self.assertEqual((len(factory.hub.clients), clock.getDelayedCalls()), (0, []))

    def test_a_close_that_finishes_cancels_the_cut_off(self) -> None:
        factory, clock = make_factory()
        protocol, transport = connect(factory)
        protocol.dataReceived(b"QUIT\n")
        protocol.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connection_lost_leaves_the_hub(self) -> None:
        factory, _ = make_factory()
        protocol, transport = connect(factory)
        self.assertEqual(len(factory.hub.clients), 1)
        protocol.connectionLost(None)
        self.assertEqual(len(factory.hub.clients), 0)

    def test_output_backing_up_pauses_the_peer_transport(self) -> None:
        factory, clock = make_factory()
        alice, alice_t = connect(factory)
        bob, bob_t = connect(factory)
        sid = open_session(alice, alice_t, bob, bob_t)
        bob.pauseProducing()  # what bob's transport does when its buffer fills
        self.assertEqual(alice_t.producerState, "paused")
        bob.resumeProducing()
        self.assertEqual(alice_t.producerState, "producing")
        alice.dataReceived(f"FRAME {sid} QUJD\n".encode())
        self.assertEqual(lines(bob_t), [f"FRAME {sid} QUJD"])

    def test_rate_limit_pauses_then_resumes_on_the_clock(self) -> None:
        factory, clock = make_factory(Limits(pow_bits=0, lines_per_second=100, line_burst=10))
        protocol, transport = connect(factory)
        protocol.dataReceived(b"PING\n" * 30)
        self.assertEqual(len(lines(transport)), 10)  # the burst; the other 20 wait
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.1)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.15)
        self.assertEqual(len(lines(transport)), 20)
        self.assertEqual(transport.producerState, "producing")

    def test_pending_wakeup_is_cancelled_on_disconnect(self) -> None:
        factory, clock = make_factory(Limits(pow_bits=0, lines_per_second=10, line_burst=1))
        protocol, _ = connect(factory)
        protocol.dataReceived(b"PING\n" * 5)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        protocol.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])


def open_session(alice, alice_t, bob, bob_t) -> str:
    for protocol, transport, nick in ((alice, alice_t, "alice"), (bob, bob_t, "bob")):
        register(protocol, transport, nick)
    alice.dataReceived(b"OFFER bob\n")
    sid = lines(alice_t)[0].split(" ")[2]
    bob.dataReceived(f"ACCEPT {sid}\n".encode())
    lines(alice_t), lines(bob_t)
    return sid


def register(protocol, transport, nick: str) -> None:
    from relaychat.wire.codec import b64decode, b64encode

    protocol.dataReceived(b"HELLO 1\n" + register_line(nick, identity(nick)).encode() + b"\n")
    reply = lines(transport)[-1].split(" ")
    signature = identity(nick).sign_registration(protocol.hub.server_id, b64decode(reply[3]), reply[2])
    protocol.dataReceived(f"PROVE {b64encode(signature)}\n".encode())
    assert lines(transport)[0].startswith("OK PROVE"), nick


class LineClient(Protocol):
    """A minimal peer for iosim: collects lines."""

    def connectionMade(self) -> None:
        self.received: list[str] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.extend(l for l in data.decode().split("\n") if l)


class InMemoryPair(SynchronousTestCase):
    def test_iosim_round_trip(self) -> None:
        factory, _ = make_factory()
        client, server, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None), LineClient, greet=False
        )
        client.transport.write(b"HELLO 1\nPING x\n")
        pump.flush()
        self.assertEqual(client.received[1], "OK PING x")
        self.assertTrue(client.received[0].startswith("OK HELLO 1 "))


class OutputBound(SynchronousTestCase):
    """max_output is the socket transport's pause threshold, under TLS and WebSocket too."""

    def test_the_socket_transport_pauses_at_max_output(self) -> None:
        from twisted.internet import abstract

        from relaychat.server.protocol import _bound_output

        class Socket(abstract.FileDescriptor):
            pass

        class Layer:
            def __init__(self, below: object) -> None:
                self.transport = below

        for depth in range(3):
            bottom = Socket()
            top: object = bottom
            for _ in range(depth):
                top = Layer(top)
            _bound_output(top, 4096)
            self.assertEqual(bottom.bufferSize, 4096, depth)
        self.assertEqual(abstract.FileDescriptor.bufferSize, 65536)  # the class default is left alone
