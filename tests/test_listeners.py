"""Listener kinds (tcp, tls, websocket): configuration, start-up failures,
the WebSocket adapter in memory, and a real daemon serving all of them."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import ConfigError, ListenerConfig, parse
from relaychat.server import service as service_module
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.listeners import build
from relaychat.server.protocol import RelayFactory
from relaychat.server.service import ListenerError, ListenerService
from relaychat.server.store import Store
from relaychat.server.wsframes import FRAMING
from relaychat.server.websocket import (
    CLOSE_HANDSHAKE_TIMEOUT, MAX_HANDSHAKE, OPEN_HANDSHAKE_TIMEOUT, WebSocketFactory, WebSocketProtocol,
)
from relaychat.certificates import certificate_sha256, format_fingerprint, write_self_signed
from relaychat.wire.codec import b64encode
from tests.daemon import Daemon, LineSocket, register
from tests.listener_support import (
    client_frame, listening, run_twistd, server_frames, toml_listener, upgrade_request, write_config,
)
from tests.support import identity

LOOPBACK = "tcp:0:interface=127.0.0.1"


class SocketTransport(StringTransport):
    """Like a real TCP or TLS transport, unregistering no producer is fine
    (autobahn unregisters on every drop)."""

    def unregisterProducer(self) -> None:
        self.producer = None


def make_cert(test: SynchronousTestCase, *hosts: str) -> tuple[Path, Path]:
    directory = Path(test.mktemp())
    cert, key, _ = write_self_signed(directory, hosts or ("localhost",))
    return cert, key


# == configuration =============================================================


class Configuration(SynchronousTestCase):
    def parse(self, text: str) -> Any:
        import tomllib

        return parse(tomllib.loads(text), base=Path("/etc/relaychat"))

    def test_tls_and_websocket_options_are_read_with_paths_relative_to_the_file(self) -> None:
        config = self.parse(
            toml_listener("tls", "tcp:7734", certificate="tls/cert.pem", private_key="/k/key.pem", minimum_tls="1.3")
            + toml_listener("websocket", "tcp:7735", path="/relay", allowed_origins=["https://chat.example"])
        )
        tls, ws = config.listeners
        self.assertEqual((tls.kind, tls.endpoint), ("tls", "tcp:7734"))
        self.assertEqual(tls.options, {"certificate": Path("/etc/relaychat/tls/cert.pem"),
                                       "private_key": Path("/k/key.pem"), "minimum_tls": "1.3"})
        self.assertEqual(ws.options, {"path": "/relay", "allowed_origins": ["https://chat.example"]})

    def test_unknown_and_mistyped_options_name_the_key(self) -> None:
        for text, message in [
            (toml_listener("tls", "tcp:1", certfile="x"), "unknown key listener[0].certfile for a tls listener"),
            (toml_listener("tls", "tcp:1", minimum_tls=1.2), "listener[0].minimum_tls: expected a string"),
            (toml_listener("tcp", "tcp:1", certificate="x"), "unknown key listener[0].certificate for a tcp listener"),
            (toml_listener("websocket", "tcp:1", allowed_origins="*"),
             "listener[0].allowed_origins: expected a list of strings"),
            (toml_listener("websocket", "tcp:1", allowed_origins=["a", 3]),
             "listener[0].allowed_origins: expected a list of strings"),
            (toml_listener("tls", "tcp:1", certficate="x"),
             "unknown key listener[0].certficate for a tls listener (did you mean certificate?)"),
            (toml_listener("tcp", "tcp:notaport"),
             "listener[0].endpoint 'tcp:notaport': the port must be a number from 0 to 65535, not 'notaport'"),
            (toml_listener("tcp", "tcp:port=99999"),
             "listener[0].endpoint 'tcp:port=99999': the port must be a number"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                self.parse(text)
            self.assertIn(message, str(caught.exception))


class Building(SynchronousTestCase):
    def setUp(self) -> None:
        self.factory = RelayFactory(Hub(Store(":memory:"), Limits(pow_bits=0)), Clock())
        self.cert, self.key = make_cert(self)

    def build(self, kind: str, endpoint: str = "tcp:0", **options: Any) -> tuple[Any, Any]:
        return build(ListenerConfig(kind, endpoint, options), self.factory, MemoryReactor())

    def refused(self, kind: str, endpoint: str = "tcp:0", **options: Any) -> str:
        with self.assertRaises(ConfigError) as caught:
            self.build(kind, endpoint, **options)
        return str(caught.exception)

    def test_tls_serves_the_same_hub_with_tls_in_the_adapter(self) -> None:
        endpoint, factory = self.build("tls", certificate=self.cert, private_key=self.key)
        self.assertIsInstance(factory, RelayFactory)
        self.assertIs(factory.hub, self.factory.hub)
        self.assertIsInstance(factory.tls, ssl.SSLContext)
        self.assertIsNone(self.factory.tls)

    def test_websocket_serves_the_same_relay_and_bounds_messages_by_max_line(self) -> None:
        _, factory = self.build("websocket")
        self.assertIsInstance(factory, WebSocketFactory)
        self.assertIs(factory.hub, self.factory.hub)
        self.assertIsNone(factory.tls)
        protocol = factory.buildProtocol(None)
        self.assertIsInstance(protocol, WebSocketProtocol)
        self.assertEqual(protocol.ws.max_message, 65536)
        _, secure = self.build("websocket", certificate=self.cert, private_key=self.key)
        self.assertIsInstance(secure, WebSocketFactory)
        self.assertIsInstance(secure.tls, ssl.SSLContext)

    def test_certificate_problems_name_the_listener_and_the_file(self) -> None:
        garbage = Path(self.mktemp())
        garbage.write_text("not a certificate\n")
        other_cert, other_key = make_cert(self, "other.example")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        encrypted = Path(self.mktemp())
        encrypted.write_bytes(load_pem_private_key(self.key.read_bytes(), None).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
        missing = Path(self.mktemp())
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        agreeing = Path(self.mktemp())  # a key-agreement key: it cannot sign a handshake
        agreeing.write_bytes(X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        for options, words in [
            ({}, "certificate and private_key are both required"),
            ({"certificate": self.cert, "private_key": agreeing}, "X25519PrivateKey keys cannot serve TLS"),
            ({"certificate": self.cert}, "certificate and private_key are both required"),
            ({"certificate": missing, "private_key": self.key}, f"cannot read certificate '{missing}': No such file"),
            ({"certificate": self.cert, "private_key": missing}, f"cannot read private key '{missing}'"),
            ({"certificate": garbage, "private_key": self.key}, f"certificate '{garbage}': not a PEM certificate"),
            ({"certificate": self.cert, "private_key": garbage}, f"private key '{garbage}': not a PEM private key"),
            ({"certificate": self.cert, "private_key": other_key}, "does not belong to certificate"),
            ({"certificate": self.cert, "private_key": encrypted}, "is encrypted"),
            ({"certificate": self.cert, "private_key": self.key, "minimum_tls": "1.1"},
             "minimum_tls must be one of 1.2, 1.3, not '1.1'"),
        ]:
            message = self.refused("tls", "tcp:7734", **options)
            self.assertTrue(message.startswith("tls listener 'tcp:7734': "), message)
            self.assertIn(words, message)

    def test_endpoint_strings(self) -> None:
        self.assertIn("tls listener 'ssl:7734': use a tcp: endpoint string",
                      self.refused("tls", "ssl:7734", certificate=self.cert, private_key=self.key))
        self.assertIn("tcp listener 'tcp:notaport': bad endpoint string", self.refused("tcp", "tcp:notaport"))
        self.assertIn("websocket listener 'carrier:1': bad endpoint string", self.refused("websocket", "carrier:1"))

    def test_websocket_options(self) -> None:
        self.assertIn("path must start with /", self.refused("websocket", path="relay"))
        self.assertIn("allowed_origins must be a list", self.refused("websocket", allowed_origins=[]))
        self.assertIn("allowed_origins must be a list", self.refused("websocket", allowed_origins=[3]))
        self.assertIn("allowed_origins must be a list", self.refused("websocket", allowed_origins=["chat.example"]))
        _, factory = self.build("websocket", allowed_origins=["https://*.example.org", "http://localhost:8080"])
        self.assertFalse(factory.policy.origin_allowed("null"))
        self.assertEqual(factory.policy.allowed_origins, ("https://*.example.org:443", "http://localhost:8080"))
        self.assertTrue(factory.policy.origin_allowed("https://chat.example.org"))
        self.assertTrue(factory.policy.origin_allowed("https://chat.example.org:443"))
        self.assertFalse(factory.policy.origin_allowed("https://chat.example.org:8443"))
        self.assertFalse(factory.policy.origin_allowed("http://chat.example.org"))
        self.assertTrue(factory.policy.origin_allowed("http://localhost:8080"))
        self.assertFalse(factory.policy.origin_allowed("http://localhost"))
        _, anyone = self.build("websocket")
        self.assertTrue(anyone.policy.origin_allowed("null"))
        self.assertIn("minimum_tls needs certificate", self.refused("websocket", minimum_tls="1.3"))


# == ListenerService: start-up failures ============================================


class FakeEndpoint:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls = 0

    def listen(self, factory: Any) -> defer.Deferred:
        self.calls += 1
        return self.result if isinstance(self.result, defer.Deferred) else (
            defer.fail(self.result) if isinstance(self.result, Exception) else defer.succeed(self.result))


class FakePort:
    def __init__(self) -> None:
        self.stopped = False

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 4321)

    def stopListening(self) -> None:
        self.stopped = True


class FakeReactor:
    running = True
    stopped = 0

    def stop(self) -> None:
        self.stopped += 1


class Starting(SynchronousTestCase):
    listener = ListenerConfig("tls", "tcp:7734:interface=127.0.0.1")

    def test_port_taken_stops_start_up_naming_the_listener(self) -> None:
        endpoint = FakeEndpoint(CannotListenError("127.0.0.1", 7734, OSError(98, "Address already in use")))
        service = ListenerService(self.listener, endpoint, object())
        with self.assertRaises(ListenerError) as caught:
            service.privilegedStartService()
        error = caught.exception
        # twistd's start-up code sees an Exception; leaving twistd it is SystemExit: status 1, message, no traceback
        self.assertIsInstance(error, Exception)
        self.assertIsInstance(error, SystemExit)
        self.assertEqual(str(error), error.code)
        self.assertTrue(str(error).startswith(
            "relaychat: tls listener 'tcp:7734:interface=127.0.0.1' could not start: Couldn't listen on 127.0.0.1:7734"))
        self.assertIn("Address already in use", str(error))

    def test_listens_once_before_privileges_are_dropped(self) -> None:
        port = FakePort()
        endpoint = FakeEndpoint(port)
        service = ListenerService(self.listener, endpoint, object())
        service.privilegedStartService()
        service.startService()
        self.assertEqual(endpoint.calls, 1)
        self.assertIs(service.port, port)
        service.stopService()
        self.assertTrue(port.stopped)

    def test_a_late_failure_stops_the_reactor_with_a_failing_status(self) -> None:
        statuses: list[int] = []
        self.patch(service_module, "_exit_status_after_shutdown", statuses.append)
        later: defer.Deferred = defer.Deferred()
        reactor = FakeReactor()
        service = ListenerService(self.listener, FakeEndpoint(later), object(), reactor=reactor)
        service.startService()
        later.errback(Failure(CannotListenError("127.0.0.1", 7734, OSError(13, "Permission denied"))))
        self.assertEqual((reactor.stopped, statuses), (1, [1]))
        self.assertIsNone(service.port)

    def test_stopping_while_listening_is_pending_cancels_it(self) -> None:
        statuses: list[int] = []
        self.patch(service_module, "_exit_status_after_shutdown", statuses.append)
        later: defer.Deferred = defer.Deferred()
        reactor = FakeReactor()
        service = ListenerService(self.listener, FakeEndpoint(later), object(), reactor=reactor)
        service.startService()
        service.stopService()
        self.assertTrue(later.called)  # cancelled; the service consumed the CancelledError
        self.assertIsNone(service.port)
        # our own cancel is no failure: no exit status 1 for the process, no reactor stop
        self.assertEqual((statuses, reactor.stopped), ([], 0))

    def test_a_port_that_comes_after_stopping_is_closed(self) -> None:
        later: defer.Deferred = defer.Deferred()
        later.cancel = lambda: None  # type: ignore[method-assign]  # an endpoint that cannot cancel
        service = ListenerService(self.listener, FakeEndpoint(later), object(), reactor=FakeReactor())
        service.startService()
        service.stopService()
        port = FakePort()
        later.callback(port)
        self.assertTrue(port.stopped)
        self.assertIsNone(service.port)


# == the WebSocket adapter, in memory ================================================


class WebSocketInMemory(SynchronousTestCase):
    """Real hub, real adapters, the real framing; transports in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(Store(":memory:"), Limits(pow_bits=0, max_line=1024, max_frame=512), now=0.0)
        self.relay = RelayFactory(self.hub, self.clock)
        self.factory = WebSocketFactory(self.relay, self.clock, path="/relay", allowed_origins=["https://chat.example"])
        self.port = 40000

    def connect_ws(self, path: str = "/relay", origin: Any = None, extra: str = "") -> tuple[Any, StringTransport]:
        self.port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.port)
        protocol = self.factory.buildProtocol(peer)
        transport = SocketTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 7735))
        protocol.makeConnection(transport)
        protocol.dataReceived(upgrade_request(path, origin, extra))
        return protocol, transport

    def open_ws(self, **kw: Any) -> tuple[Any, StringTransport]:
        protocol, transport = self.connect_ws(**kw)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value())
        transport.clear()
        return protocol, transport

    def ws_send(self, protocol: Any, transport: StringTransport, line: str) -> list[str]:
        protocol.dataReceived(client_frame(line.encode("utf-8")))
        return self.ws_read(transport)

    def ws_read(self, transport: StringTransport) -> list[str]:
        frames = server_frames(transport.value())
        transport.clear()
        for opcode, payload in frames:
            self.assertEqual(opcode, 1)
            self.assertNotIn(b"\n", payload)
        return [payload.decode("utf-8") for _, payload in frames]

    def connect_tcp(self) -> tuple[Any, StringTransport]:
        self.port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.port)
        protocol = self.relay.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def tcp_send(self, protocol: Any, transport: StringTransport, line: str) -> list[str]:
        protocol.dataReceived(line.encode("utf-8") + b"\n")
        data = transport.value()
        transport.clear()
        return [l.decode("utf-8") for l in data.split(b"\n") if l]

    def session(self) -> tuple[Any, StringTransport, Any, StringTransport, str]:
        """A registered WebSocket 'webby' and TCP 'tcpy' with an open session."""
        ws, ws_t = self.open_ws()
        tcp, tcp_t = self.connect_tcp()
        self.assertEqual(register(lambda l: self.ws_send(ws, ws_t, l)[0], "webby", identity("webby")),
                         "OK PROVE webby new 0")
        self.assertEqual(register(lambda l: self.tcp_send(tcp, tcp_t, l)[0], "tcpy", identity("tcpy")),
                         "OK PROVE tcpy new 0")
        sid = self.ws_send(ws, ws_t, "OFFER tcpy")[0].split(" ")[2]
        self.assertTrue(tcp_t.value().startswith(f"OFFERED {sid} webby ".encode()))
        tcp_t.clear()
        self.assertEqual(self.tcp_send(tcp, tcp_t, f"ACCEPT {sid}"), [f"OK ACCEPT {sid}"])
        self.assertEqual(self.ws_read(ws_t), [f"ACCEPTED {sid}"])
        return ws, ws_t, tcp, tcp_t, sid

    def test_one_line_per_text_message_both_ways(self) -> None:
        ws, ws_t, tcp, tcp_t, sid = self.session()
        self.assertEqual(self.ws_send(ws, ws_t, "WHO")[-1], "OK WHO 2 2")  # several lines: several messages
        ws.dataReceived(client_frame(f"FRAME {sid} aGk=".encode()))
        self.assertEqual(tcp_t.value(), f"FRAME {sid} aGk=\n".encode())
        tcp_t.clear()
        tcp.dataReceived(f"FRAME {sid} aGVsbG8=\nFRAME {sid} d29ybGQ=\n".encode())
        self.assertEqual(self.ws_read(ws_t), [f"FRAME {sid} aGVsbG8=", f"FRAME {sid} d29ybGQ="])

    def test_subprotocol_is_selected_when_offered(self) -> None:
        _, transport = self.connect_ws(extra="Sec-WebSocket-Protocol: chat, relaychat\r\n")
        self.assertIn(b"Sec-WebSocket-Protocol: relaychat\r\n", transport.value())

    def test_binary_and_multi_line_messages_are_syntax_errors_and_count(self) -> None:
        ws, ws_t = self.open_ws()
        ws.dataReceived(client_frame(b"PING x", opcode=2))
        self.assertEqual(self.ws_read(ws_t), ["ERR - syntax a WebSocket message must be text"])
        self.assertEqual(self.ws_send(ws, ws_t, "PING a\nPING b"), ["ERR - syntax one line per WebSocket message, without LF"])
        self.assertEqual(self.ws_send(ws, ws_t, "PING ok"), ["OK PING ok"])
        for _ in range(7):
            ws.dataReceived(client_frame(b"\x00", opcode=2))
        ws.dataReceived(client_frame(b"\x00", opcode=2))
        frames = server_frames(ws_t.value())
        self.assertEqual(frames[-2], (1, b"BYE violations too many protocol errors"))
        self.assertEqual(frames[-1][0], 8)  # then the closing handshake
        self.assertEqual(frames[-1][1][:2], b"\x03\xe8")  # 1000

    def test_a_message_longer_than_max_line_fails_the_connection_before_the_relay_sees_it(self) -> None:
        ws, ws_t = self.open_ws()
        ws.dataReceived(client_frame(b"PING " + b"a" * 1020))  # 1025 > max_line 1024
        (opcode, payload), = server_frames(ws_t.value())
        self.assertEqual((opcode, payload[:2]), (8, b"\x03\xf1"))  # 1009 message too big
        # fragmented: each frame small, the message too big
        ws, ws_t = self.open_ws()
        ws.dataReceived(client_frame(b"a" * 600, fin=False) + client_frame(b"a" * 600, opcode=0))
        self.assertEqual(server_frames(ws_t.value())[-1][1][:2], b"\x03\xf1")
        ws, ws_t = self.open_ws()
        self.assertEqual(self.ws_send(ws, ws_t, "PING " + "b" * 64), ["OK PING " + "b" * 64])

    def test_opening_handshake_is_bounded(self) -> None:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = SocketTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /relay HTTP/1.1\r\nX-Junk: ")
        protocol.dataReceived(b"j" * (MAX_HANDSHAKE - 100))
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"j" * 200)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(Exception("gone")))

    def test_handshakes_time_out_on_the_factorys_clock(self) -> None:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        silent = SocketTransport()
        protocol.makeConnection(silent)
        self.clock.advance(OPEN_HANDSHAKE_TIMEOUT - 0.5)
        self.assertFalse(silent.disconnecting)
        self.clock.advance(1)
        self.assertTrue(silent.disconnecting)
        ws, ws_t = self.open_ws()
        ws.dataReceived(client_frame(b"QUIT"))  # the relay closes; the client never answers the close
        self.assertFalse(ws_t.disconnecting)
        self.clock.advance(CLOSE_HANDSHAKE_TIMEOUT + 0.5)
        self.assertTrue(ws_t.disconnecting)

    def test_unknown_path_and_disallowed_origin_are_refused(self) -> None:
        _, transport = self.connect_ws(path="/elsewhere")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value()[:40])
        for origin in ("https://evil.example", "null", "http://chat.example", "https://chat.example:8443",
                       "https://chat.example.evil.example", "https://evil.example/https://chat.example"):
            _, transport = self.connect_ws(origin=origin)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 403 "), (origin, transport.value()[:60]))
            self.assertTrue(transport.disconnecting)
            self.assertIn(f"origin '{origin}' not allowed".encode(), transport.value())
            self.assertEqual(self.hub.clients, set())
        _, transport = self.connect_ws(origin="https://chat.example")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value()[:40])
        _, transport = self.connect_ws()  # not a browser: no Origin header
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value()[:40])
        self.assertEqual(len(self.hub.clients), 2)  # only the accepted ones reached the relay

    def test_a_slow_websocket_reader_pauses_its_tcp_sender_and_back(self) -> None:
        ws, ws_t, tcp, tcp_t, sid = self.session()
        # the WebSocket adapter is the producer of its own socket
        self.assertIs(ws_t.producer, ws)
        ws_t.producer.pauseProducing()  # the WebSocket client's socket buffer is full
        self.assertEqual(tcp_t.producerState, "paused")  # so the relay stops reading its sender
        ws_t.producer.resumeProducing()
        self.assertEqual(tcp_t.producerState, "producing")

    def test_a_slow_tcp_reader_pauses_its_websocket_sender_and_back(self) -> None:
        ws, ws_t, tcp, tcp_t, sid = self.session()
        tcp_t.producer.pauseProducing()
        self.assertEqual(ws_t.producerState, "paused")  # reading the WebSocket's socket stops
        tcp_t.producer.resumeProducing()
        self.assertEqual(ws_t.producerState, "producing")

    def test_pings_from_a_peer_that_does_not_read_make_the_relay_hold_one_pong(self) -> None:
        ws, ws_t = self.open_ws()
        ws.pauseProducing()  # the client's socket buffer is full
        for i in range(100):
            ws.dataReceived(client_frame(b"ping %d" % i, opcode=9))
        self.assertEqual(ws_t.value(), b"")
        ws.resumeProducing()
        self.assertEqual(server_frames(ws_t.value()), [(10, b"ping 99")])

    def test_quit_says_bye_then_closes_the_websocket(self) -> None:
        ws, ws_t = self.open_ws()
        ws_t.pauseProducing()  # even when reading was paused, the close reply must be readable
        ws.dataReceived(client_frame(b"QUIT"))
        frames = server_frames(ws_t.value())
        self.assertEqual(frames[0], (1, b"BYE quit goodbye"))
        self.assertEqual(frames[1][0], 8)
        self.assertEqual(ws_t.producerState, "producing")
        ws_t.clear()
        ws.dataReceived(client_frame(b"\x03\xe8", opcode=8))  # the client's close reply
        self.assertTrue(ws_t.disconnecting)
        ws.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.hub.clients, set())

    def test_client_going_away_disconnects_from_the_hub(self) -> None:
        ws, ws_t, tcp, tcp_t, sid = self.session()
        ws.connectionLost(Failure(Exception("reset")))
        self.assertEqual(self.tcp_send(tcp, tcp_t, "PING x"), [f"CLOSED {sid} gone", "OK PING x"])
        self.assertEqual(len(self.hub.clients), 1)

    def test_the_relays_own_lines_are_sent_even_when_longer_than_max_line(self) -> None:
        ws, ws_t = self.open_ws()
        ws.write(b"MAIL 1 someone 1700000000 " + b"A" * 2000 + b"\n")  # e.g. a mail event
        (line,) = self.ws_read(ws_t)
        self.assertEqual(len(line), 2026)
        self.assertEqual(ws.ws.max_message, 1024)  # and incoming messages are still bounded
        ws.dataReceived(client_frame(b"PING " + b"a" * 1020))
        self.assertEqual(server_frames(ws_t.value())[-1][1][:2], b"\x03\xf1")

    def test_a_frame_that_is_not_base64_never_reaches_a_websocket(self) -> None:
        ws, ws_t, tcp, tcp_t, sid = self.session()
        tcp.dataReceived(f"FRAME {sid} ".encode() + b"\xff\xfe==\n")
        self.assertEqual(self.ws_read(ws_t), [])
        self.assertEqual(tcp_t.value().split(b" ")[:3], [b"ERR", b"FRAME", b"syntax"])


# == a real daemon ===================================================================


def openssl(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


class RealDaemonListeners(SynchronousTestCase):
    """``twistd -n relaychat`` with tcp, tls, tls (1.3 only), websocket and wss listeners."""

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.cert, self.key, self.fingerprint = write_self_signed(self.home / "tls", ["localhost"])
        config = write_config(
            self.home / "relaychat.toml", self.home / "data",
            toml_listener("tcp", LOOPBACK),
            toml_listener("tls", LOOPBACK, certificate="tls/cert.pem", private_key="tls/key.pem"),
            toml_listener("tls", LOOPBACK, certificate="tls/cert.pem", private_key="tls/key.pem", minimum_tls="1.3"),
            toml_listener("websocket", LOOPBACK, path="/relay", allowed_origins=["https://chat.example"]),
            toml_listener("websocket", LOOPBACK, certificate="tls/cert.pem", private_key="tls/key.pem"),
        )
        self.daemon = Daemon("--config", str(config), cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        self.daemon.start(listeners=5)
        started = listening(self.daemon.log())
        self.assertEqual([kind for kind, _ in started], ["tcp", "tls", "tls", "websocket", "websocket"])
        self.tcp, self.tls, self.tls13, self.ws, self.wss = (port for _, port in started)
        self.closers: list[Any] = []
        self.addCleanup(lambda: [close() for close in self.closers])

    def need_openssl(self) -> None:
        if shutil.which("openssl") is None:
            raise self.skipTest("no openssl command")

    def test_openssl_s_client_completes_a_handshake_and_sees_the_configured_certificate(self) -> None:
        self.need_openssl()
        result = openssl("s_client", "-connect", f"127.0.0.1:{self.tls}", "-servername", "localhost", "-showcerts")
        self.assertIn("subject=CN = localhost", result.stdout)
        self.assertRegex(result.stdout, r"New, TLSv1\.[23], Cipher is")
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", result.stdout, re.S)
        assert pem is not None, result.stdout
        seen = x509.load_pem_x509_certificate(pem.group(0).encode())
        self.assertEqual(format_fingerprint(certificate_sha256(seen)), format_fingerprint(self.fingerprint))

    def test_minimum_tls_versions_are_enforced(self) -> None:
        self.need_openssl()
        refused = openssl("s_client", "-connect", f"127.0.0.1:{self.tls13}", "-tls1_2")
        self.assertIn("alert protocol version", refused.stdout)
        self.assertNotEqual(refused.returncode, 0)
        accepted = openssl("s_client", "-connect", f"127.0.0.1:{self.tls13}", "-tls1_3")
        self.assertIn("New, TLSv1.3, Cipher is", accepted.stdout)
        # TLS 1.1 against the default listener (1.2 and up); OpenSSL 3 offers it only at SECLEVEL=0
        old = openssl("s_client", "-connect", f"127.0.0.1:{self.tls}", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        if "alert protocol version" in old.stdout:
            return  # the relay refused it
        self.assertNotRegex(old.stdout, r"New, TLSv1(\.1)?, Cipher is [A-Z]")
        raise self.skipTest("this openssl cannot offer TLS 1.1:\n" + old.stdout[-500:])

    def test_a_page_from_an_origin_not_allowed_gets_403(self) -> None:
        for origin, status in (("https://evil.example", b"HTTP/1.1 403 "), ("https://chat.example", b"HTTP/1.1 101 ")):
            with socket.create_connection(("127.0.0.1", self.ws), timeout=10) as sock:
                sock.sendall(upgrade_request("/relay", origin))
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            self.assertTrue(answer.startswith(status), (origin, answer[:80]))
        self.assertNotIn("autobahn", self.daemon.log())  # a refusal a peer can repeat is not news

    def test_websocket_client_from_another_library_and_tcp_client_relay_a_session(self) -> None:
        from websockets.sync.client import connect

        web = connect(f"ws://127.0.0.1:{self.ws}/relay", open_timeout=10, close_timeout=5)
        self.closers.append(web.close)
        tcp = LineSocket(self.tcp)
        self.closers.append(tcp.close)

        def ask(line: str) -> str:
            web.send(line)
            return web.recv(timeout=10)

        self.assertEqual(register(ask, "webby", identity("webby")), "OK PROVE webby new 0")
        self.assertEqual(tcp.register("tcpy", identity("tcpy")), "OK PROVE tcpy new 0")
        web.send("WHO")
        who = sorted(web.recv(timeout=10) for _ in range(3))
        self.assertEqual(who, ["OK WHO 2 2", f"USER tcpy {b64encode(identity('tcpy').identity_public)}",
                               f"USER webby {b64encode(identity('webby').identity_public)}"])
        sid = ask("OFFER tcpy").split(" ")[2]
        self.assertTrue(tcp.read_line().startswith(f"OFFERED {sid} webby "))
        self.assertEqual(tcp.ask(f"ACCEPT {sid}"), f"OK ACCEPT {sid}")
        self.assertEqual(web.recv(timeout=10), f"ACCEPTED {sid}")
        web.send(f"FRAME {sid} aGVsbG8gdGNw")
        self.assertEqual(tcp.read_line(), f"FRAME {sid} aGVsbG8gdGNw")
        tcp.send(f"FRAME {sid} aGVsbG8gd2Vi")
        self.assertEqual(web.recv(timeout=10), f"FRAME {sid} aGVsbG8gd2Vi")
        web.send(b"binary")
        self.assertEqual(web.recv(timeout=10), "ERR - syntax a WebSocket message must be text")
        web.close()
        self.assertEqual(tcp.read_line(), f"CLOSED {sid} gone")
        self.assertIn(f"relaychat: websocket listener 'tcp:0:interface=127.0.0.1': WebSocket framing {FRAMING}\n",
                      self.daemon.log())  # said at start-up: C or Python

    def test_secure_websocket_with_the_configured_certificate(self) -> None:
        from websockets.sync.client import connect

        context = ssl.create_default_context(cafile=str(self.cert))
        web = connect(f"wss://127.0.0.1:{self.wss}/", ssl=context, server_hostname="localhost",
                      open_timeout=10, close_timeout=5)
        self.closers.append(web.close)
        web.send("PING secure")
        self.assertEqual(web.recv(timeout=10), "OK PING secure")


class StartUpFailures(SynchronousTestCase):
    """Listener failures stop twistd with one line naming the listener, status 1, no traceback."""

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.cert, self.key, _ = write_self_signed(self.home / "tls", ["localhost"])

    def fails(self, *listeners: str) -> str:
        config = write_config(self.home / "relaychat.toml", self.home / "data", toml_listener("tcp", LOOPBACK), *listeners)
        result = run_twistd(config, self.home)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertNotIn("Traceback", result.stdout)
        return result.stdout

    def test_port_taken(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = self.fails(toml_listener("tls", f"tcp:{port}:interface=127.0.0.1",
                                          certificate="tls/cert.pem", private_key="tls/key.pem"))
        self.assertIn(f"relaychat: tls listener 'tcp:{port}:interface=127.0.0.1' could not start: "
                      f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use.", output)

    def test_bad_certificate(self) -> None:
        (self.home / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
        output = self.fails(toml_listener("websocket", LOOPBACK, certificate="bad.pem", private_key="tls/key.pem"))
        self.assertIn(f"relaychat: websocket listener '{LOOPBACK}': certificate '{self.home / 'bad.pem'}': "
                      f"not a PEM certificate", output)

    def test_unreadable_or_mismatched_key(self) -> None:
        output = self.fails(toml_listener("tls", LOOPBACK, certificate="tls/cert.pem", private_key="nokey.pem"))
        self.assertIn(f"relaychat: tls listener '{LOOPBACK}': cannot read private key "
                      f"'{self.home / 'nokey.pem'}': No such file or directory", output)
        _, other_key, _ = write_self_signed(self.home / "other", ["other.example"])
        output = self.fails(toml_listener("tls", LOOPBACK, certificate="tls/cert.pem", private_key="other/key.pem"))
        self.assertIn("does not belong to certificate", output)
