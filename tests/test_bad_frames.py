"""A bad FRAME fails that one session, never the relay connection (issue 10,
point 2, client side): the relay now refuses such frames, but a client must
not let a relay (or a relay that misses one) end all its sessions."""

from __future__ import annotations

from typing import Any, Generator

from twisted.trial.unittest import SynchronousTestCase

from tests.memory_network import driven
from tests.test_client_e2e import ProxyConnection, RelayTestCase
from tests.test_client_protocol import SID, Base

OTHER = "fedcba9876543210"
BAD_PAYLOADS = [b"\xff\xfe==", b"QU\x00D", b"\x1b[2J", b"QUJD\rQUJD", b"QUJ=", b"QUJD QUJD", b"====", b"\xc3"]


class Protocol(Base):
    def test_each_bad_frame_fails_its_session_and_the_connection_goes_on(self) -> None:
        self.hello()
        for payload in BAD_PAYLOADS:
            self.events.seen.clear()
            self.protocol.dataReceived(b"FRAME " + SID.encode() + b" " + payload + b"\n"
                                       + f"FRAME {OTHER} QUJD\n".encode())
            self.assertEqual([e[:3] for e in self.events.seen],
                             [("frame-unreadable", SID), ("frame", OTHER, b"ABC")], payload)
            self.assertFalse(self.transport.disconnecting, payload)

    def test_a_bad_frame_without_a_session_id_is_only_counted(self) -> None:
        self.hello()
        self.protocol.dataReceived(b"FRAME \xff\xfe\n")
        self.assertEqual((self.events.seen, self.protocol.malformed), ([], 1))
        self.assertFalse(self.transport.disconnecting)


class Conversations(RelayTestCase):
    """bob talks to alice and carol; a relay damages a frame of alice's session."""

    @driven
    def test_only_the_damaged_conversation_ends(self) -> Generator[Any, Any, None]:
        alice = yield self.connect("alice", via_proxy=True)
        bob = yield self.connect("bob", via_proxy=True)
        carol = yield self.connect("carol", via_proxy=True)
        c_conv = yield carol.call("bob")
        b_carol = yield self.accepted["bob"].get()
        carol_msgs, carol_end = self.watch(b_carol)
        for payload in BAD_PAYLOADS[:3]:
            a_conv = yield alice.call("bob")
            b_alice = yield self.accepted["bob"].get()
            _, b_end = self.watch(b_alice)
            sid = a_conv.sid

            def damage(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
                if conn.nick == "bob" and direction == "down" and line.startswith(f"FRAME {sid} ".encode()):
                    return [f"FRAME {sid} ".encode() + payload]
                return [line]
            self.proxy.attack = damage
            a_conv.send("this one is damaged")
            ended = yield b_end.get()
            self.assertEqual(ended.reason, "alice's client sent something unreadable; the conversation ended.")
            self.proxy.attack = None
            c_conv.send(f"still here after {payload!r}")
            self.assertEqual((yield carol_msgs.get()), f"still here after {payload!r}")
        self.assertEqual(carol_end.items, [])
        self.assertTrue(bob._protocol.connected)


class RelayRefuses(SynchronousTestCase):
    """The relay's side: in a run of frames, small or big, the bad one is refused
    and every good one around it is forwarded, in order."""

    def test_a_bad_frame_in_a_run_is_refused_and_the_rest_forwarded(self) -> None:
        from relaychat.wire.codec import b64encode
        from tests.support import Harness

        damages = [b"\x00", b"\x1b", b"\r", b"\xff", b" ", b"=", b"\n"]
        for size in (100, 5000, 16384):
            h = Harness()
            alice, bob = h.register("alice"), h.register("bob")
            sid = h.open_session(alice, bob, "bob").encode()
            good = [b"FRAME %s %s" % (sid, b64encode(bytes([i]) * size).encode()) for i in range(3)]
            for damage in damages:
                bad = bytearray(good[1])
                bad[len(bad) // 2] = damage[0]
                h.hub.receive(alice[0], b"\n".join([good[0], bytes(bad), good[2], b""]), h.now)
                forwarded = b"".join(bob[1].written).split(b"\n")[:-1]
                bob[1].written.clear()
                if damage == b"\n":  # two lines, neither a frame of the right shape
                    self.assertEqual((forwarded[0], forwarded[-1]), (good[0], good[2]), size)
                else:
                    self.assertEqual(forwarded, [good[0], good[2]], (size, damage))
                errors = alice[1].lines()
                if damage != b"\n":  # there the rest of the line is a command of its own
                    self.assertEqual([e.split(" ")[:3] for e in errors], [["ERR", "FRAME", "syntax"]], (size, damage))

    def test_padding_and_unused_bits_are_checked_in_a_run(self) -> None:
        from tests.support import Harness

        for size in (100, 5000):
            h = Harness()
            alice, bob = h.register("alice"), h.register("bob")
            sid = h.open_session(alice, bob, "bob").encode()
            body = b"QUJD" * (size // 4)
            good = b"FRAME %s %sQQ==" % (sid, body)
            for bad in (body + b"QR==", body + b"QU=x", body[:-4] + b"Q===", b"QQ==" + body):
                line = b"FRAME %s %s" % (sid, bad)
                h.hub.receive(alice[0], b"\n".join([good, line, good, b""]), h.now)
                self.assertEqual(b"".join(bob[1].written), (good + b"\n") * 2, (size, bad[-6:]))
                bob[1].written.clear()
                self.assertEqual([e.split(" ")[:3] for e in alice[1].lines()], [["ERR", "FRAME", "syntax"]], bad[-6:])
