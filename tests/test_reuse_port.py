"""``reuse_port = true``: several listeners (processes) on one TCP port."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relaychat.config import ConfigError, ListenerConfig
from relaychat.server.listeners import ReusePortEndpoint, build
from tests.redis_server import free_port


class ReusePort(TestCase):
    @inlineCallbacks
    def test_two_listeners_share_a_port_and_a_plain_one_is_refused(self) -> None:
        port = free_port()
        listener = ListenerConfig("tcp", f"tcp:{port}:interface=127.0.0.1", {"reuse_port": True})
        factory = Factory.forProtocol(Protocol)
        ports = []
        for _ in range(2):
            endpoint, wrapped = build(listener, factory, reactor)
            self.assertIsInstance(endpoint, ReusePortEndpoint)
            ports.append((yield endpoint.listen(wrapped)))
            self.addCleanup(ports[-1].stopListening)
        self.assertEqual({p.getHost().port for p in ports}, {port})
        plain, _ = build(ListenerConfig("tcp", f"tcp:{port}:interface=127.0.0.1"), factory, reactor)
        yield self.assertFailure(plain.listen(factory), CannotListenError)


class ReusePortConfig(SynchronousTestCase):
    def test_only_plain_tcp_endpoint_strings_are_accepted(self) -> None:
        factory = Factory.forProtocol(Protocol)
        for endpoint in ("unix:/tmp/x", "tcp:port", "tcp:7733:bogus=1", "tcp:7733:backlog=x", "tcp"):
            listener = ListenerConfig("tcp", endpoint, {"reuse_port": True})
            self.assertRaises(ConfigError, build, listener, factory, reactor)
        endpoint, _ = build(
            ListenerConfig("tcp", "tcp:7733:interface=\\:\\:1:backlog=9", {"reuse_port": True}), factory, reactor)
        self.assertEqual((endpoint.port, endpoint.interface, endpoint.backlog), (7733, "::1", 9))
