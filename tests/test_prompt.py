"""PromptWriter reads three private attributes of Twisted's TCP transport.

These tests fail loudly when a Twisted release renames them or changes
what they mean, instead of letting the relay fall back to queueing every
write (the bench's small-frame and ping-pong figures would drop; see
relaychat/server/prompt.py). They use a real ``tcp.Server`` over a socket
pair, with a memory reactor: nothing runs the event loop, so whatever the
peer socket receives was sent at once.
"""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server import prompt
from relaychat.server.prompt import PromptWriter


class _Port:
    _realPortNumber = 7733


class TwistedInternals(SynchronousTestCase):
    def setUp(self) -> None:
        ours, self.peer = socket.socketpair()
        ours.setblocking(False)
        self.peer.settimeout(5)
        self.addCleanup(self.peer.close)
        self.addCleanup(ours.close)
        self.reactor = MemoryReactor()
        self.transport = tcp.Server(ours, Protocol(), ("127.0.0.1", 4242), _Port(), 1, self.reactor)  # type: ignore[arg-type]
        self.transport.connected = True

    def received(self) -> bytes:
        self.peer.setblocking(False)
        try:
            return self.peer.recv(65536)
        except BlockingIOError:
            return b""

    def test_a_plain_tcp_server_has_the_internals_read(self) -> None:
        for name in prompt.INTERNALS:
            self.assertTrue(hasattr(self.transport, name), f"Twisted's tcp.Server lost {name}: see prompt.py")
        self.assertTrue(PromptWriter(self.transport).prompt)

    def test_an_idle_transport_is_written_at_once(self) -> None:
        PromptWriter(self.transport).write(b"now\n")
        self.assertEqual(self.received(), b"now\n")
        self.assertNotIn(self.transport, self.reactor.getWriters())  # nothing was queued

    def test_behind_queued_bytes_it_queues_so_order_holds(self) -> None:
        # What the internals mean: transport.write only queues (_tempDataLen) ...
        self.transport.write(b"first\n")
        self.assertEqual(self.received(), b"")
        self.assertEqual(self.transport._tempDataLen, len(b"first\n"))
        writer = PromptWriter(self.transport)
        writer.write(b"second\n")
        self.assertEqual(self.received(), b"")  # not sent ahead of "first"
        self.transport.doWrite()  # the reactor's turn: the queue leaves in order
        self.assertEqual(self.received(), b"first\nsecond\n")
        # ... and once drained (offset == len(dataBuffer)), writes go at once again
        self.assertEqual(self.transport.offset, len(self.transport.dataBuffer))
        writer.write(b"third\n")
        self.assertEqual(self.received(), b"third\n")

    def test_what_the_kernel_does_not_take_is_queued(self) -> None:
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"x" * (1 << 20)
        PromptWriter(self.transport).write(big)
        self.assertGreater(self.transport._tempDataLen, 0)
        got = b""
        self.peer.setblocking(True)
        while len(got) < len(big):  # the reactor's part by hand: write what is queued, then read
            if self.transport._tempDataLen or self.transport.offset < len(self.transport.dataBuffer):
                self.transport.doWrite()
            got += self.peer.recv(1 << 20)
        self.assertEqual(got, big)

    def test_after_lose_connection_writes_go_through_twisted(self) -> None:
        self.transport.disconnecting = True
        PromptWriter(self.transport).write(b"late\n")
        self.assertEqual(self.received(), b"")


class OtherTransports(SynchronousTestCase):
    def test_anything_but_a_plain_tcp_server_is_only_queued(self) -> None:
        transport = StringTransport()
        writer = PromptWriter(transport)
        self.assertFalse(writer.prompt)
        writer.write(b"a\n")
        self.assertEqual(transport.value(), b"a\n")
