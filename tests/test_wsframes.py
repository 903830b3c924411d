"""The sans-IO WebSocket server (RFC 6455) the relay's WebSocket adapter drives."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.server.wsframes import (
    COMPILED, FRAMING, MAX_HANDSHAKE, Lines, Opened, Policy, Refused, WebSocketServer, WSState,
)
from tests.listener_support import client_frame, server_frames, upgrade_request


class Framing(SynchronousTestCase):
    """Every test class here runs twice: over the C frame loops (``compiled = True``)
    and over the Python ones (the ``...InPython`` classes at the end)."""

    compiled = True

    def setUp(self) -> None:
        if self.compiled and not COMPILED:
            raise SkipTest(f"the framing runs {FRAMING} (tests.test_wsframes_compiled says whether that may be)")

    def server(self, policy: Policy = Policy(), limit: int = 1024) -> WebSocketServer:
        return WebSocketServer(policy, limit, compiled=self.compiled)

    def opened(self, limit: int = 1024, policy: Policy = Policy()) -> WebSocketServer:
        ws = self.server(policy, limit)
        assert ws.receive(upgrade_request()) == [Opened()]
        ws.data_to_send()
        return ws


def lines(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Lines))


def close_code(ws: WebSocketServer) -> int:
    (opcode, payload), = server_frames(ws.data_to_send())
    assert opcode == 8
    return int.from_bytes(payload[:2], "big")


class OpeningHandshake(Framing):
    def answer(self, request: bytes, policy: Policy = Policy(path="/relay", allowed_origins=("https://chat.example:443",))
               ) -> tuple[list, bytes, WebSocketServer]:
        ws = self.server(policy, 1024)
        events = ws.receive(request)
        return events, ws.data_to_send(), ws

    def test_accepts_with_the_rfc_accept_key_and_the_subprotocol_when_offered(self) -> None:
        events, out, ws = self.answer(upgrade_request("/relay", extra="Sec-WebSocket-Protocol: chat, relaychat\r\n"))
        self.assertEqual(events, [Opened()])
        self.assertTrue(out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", out)  # RFC 6455 section 1.3
        self.assertIn(b"Sec-WebSocket-Protocol: relaychat\r\n", out)
        self.assertIs(ws.state, WSState.OPEN)
        _, out, _ = self.answer(upgrade_request("/relay"))
        self.assertNotIn(b"Sec-WebSocket-Protocol", out)

    def test_refusals(self) -> None:
        for request, status in [
            (upgrade_request("/elsewhere"), b"404"),
            (upgrade_request("/relay?x=1", origin="https://evil.example"), b"403"),
            (upgrade_request("/relay", origin="null"), b"403"),
            (b"GET /relay HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
            (upgrade_request("/relay").replace(b"Version: 13", b"Version: 8"), b"426"),
            (upgrade_request("/relay").replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), b"400"),
            (b"POST /relay HTTP/1.1\r\n\r\n", b"400"),
        ]:
            events, out, ws = self.answer(request)
            self.assertEqual(events, [])
            self.assertTrue(out.startswith(b"HTTP/1.1 " + status + b" "), (request, out))
            self.assertIs(ws.state, WSState.CLOSED)

    def test_origins(self) -> None:
        policy = Policy(allowed_origins=("https://*.example.org:443",))
        self.assertTrue(policy.origin_allowed(None))  # not a browser
        self.assertTrue(policy.origin_allowed("https://a.example.org"))
        self.assertTrue(policy.origin_allowed("HTTPS://A.EXAMPLE.ORG:443"))
        self.assertFalse(policy.origin_allowed("https://a.example.org.evil"))
        self.assertFalse(policy.origin_allowed("http://a.example.org"))
        self.assertFalse(policy.origin_allowed("null"))
        self.assertTrue(Policy().origin_allowed("null"))

    def test_a_head_in_pieces_and_frames_in_the_same_read(self) -> None:
        ws = self.server(Policy(), 1024)
        request = upgrade_request()
        self.assertEqual(ws.receive(request[:10]), [])
        events = ws.receive(request[10:] + client_frame(b"HELLO 1"))
        self.assertEqual(events, [Opened(), Lines(b"HELLO 1\n")])

    def test_an_endless_head_is_dropped_unanswered(self) -> None:
        ws = self.server(Policy(), 1024)
        ws.receive(b"GET / HTTP/1.1\r\nX: " + b"j" * (MAX_HANDSHAKE - 100))
        self.assertIs(ws.state, WSState.HANDSHAKE)
        ws.receive(b"j" * 200)
        self.assertIs(ws.state, WSState.CLOSED)
        self.assertEqual(ws.data_to_send(), b"")


class Messages(Framing):
    def test_a_read_of_many_messages_is_one_buffer_of_lines(self) -> None:
        ws = self.opened()
        data = b"".join(client_frame(b"FRAME s%d QUJD" % i) for i in range(200)) + client_frame(b"P" * 300)
        self.assertEqual(ws.receive(data), [Lines(b"".join(b"FRAME s%d QUJD\n" % i for i in range(200)) + b"P" * 300 + b"\n")])

    # runs in two classes (C and Python loops): the same test on purpose
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    @given(st.lists(st.binary(max_size=400).map(lambda b: b.replace(b"\n", b"")), max_size=20), st.data())
    def test_any_messages_split_anywhere(self, messages: list[bytes], data: st.DataObject) -> None:
        messages = [m.decode("latin-1").encode("utf-8") for m in messages]  # valid UTF-8
        ws = self.opened(limit=4096)
        wire = b"".join(client_frame(m) for m in messages)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
        got = b""
        for start, end in zip([0] + cuts, cuts + [len(wire)]):
            got += lines(ws.receive(wire[start:end]))
        self.assertEqual(got, b"".join(m + b"\n" for m in messages))
        self.assertIs(ws.state, WSState.OPEN)

    def test_binary_and_lf_messages_are_refused_in_order(self) -> None:
        ws = self.opened()
        events = ws.receive(client_frame(b"PING a") + client_frame(b"PING b\nPING c") + client_frame(b"PING d") + client_frame(b"\x00", opcode=2)
                            + client_frame(b"PING e"))
        self.assertEqual(events, [Lines(b"PING a\n"), Refused("one line per WebSocket message, without LF"),
                                  Lines(b"PING d\n"), Refused("a WebSocket message must be text"), Lines(b"PING e\n")])

    def test_fragmented_messages_with_a_ping_in_between(self) -> None:
        ws = self.opened()
        events = ws.receive(client_frame(b"PING ", fin=False) + client_frame(b"ping", opcode=9) + client_frame(b"frag", opcode=0, fin=False)
                            + client_frame(b"ments", opcode=0))
        self.assertEqual(lines(events), b"PING fragments\n")
        self.assertEqual(server_frames(ws.data_to_send()), [(10, b"ping")])  # the pong

    def test_invalid_utf8_fails_with_1007(self) -> None:
        ws = self.opened()
        events = ws.receive(client_frame(b"PING a") + client_frame(b"\xff\xfe"))
        self.assertEqual(lines(events), b"")  # the run with the bad message is not handed on
        self.assertEqual(close_code(ws), 1007)
        ws = self.opened()
        ws.receive(client_frame(b"\xc3", fin=False) + client_frame(b"(", opcode=0))
        self.assertEqual(close_code(ws), 1007)

    def test_protocol_errors_fail_with_1002(self) -> None:
        for frame in [
            b"\x81\x05hello",  # unmasked
            client_frame(b"x", rsv=0x40),  # reserved bit
            client_frame(b"x", opcode=0),  # continuation of nothing
            client_frame(b"x", opcode=3),  # unknown opcode
            client_frame(b"x" * 126, opcode=9),  # control frame too long
            client_frame(b"x", opcode=9, fin=False),  # fragmented control frame
            client_frame(b"a", fin=False) + client_frame(b"b"),  # a new message inside a fragmented one
        ]:
            ws = self.opened()
            ws.receive(frame + b"\x00" * 6)
            self.assertEqual(close_code(ws), 1002, frame)
            self.assertIs(ws.state, WSState.CLOSING)

    def test_too_big_fails_with_1009_from_the_header_alone(self) -> None:
        ws = self.opened(limit=1024)
        ws.receive(client_frame(b"a" * 1025)[:8])  # the header and mask only
        self.assertEqual(close_code(ws), 1009)
        ws = self.opened(limit=1024)
        ws.receive(client_frame(b"a" * 600, fin=False) + client_frame(b"a" * 600, opcode=0)[:8])
        self.assertEqual(close_code(ws), 1009)
        ws = self.opened(limit=100)  # the short path honours small limits too
        ws.receive(client_frame(b"a" * 101))
        self.assertEqual(close_code(ws), 1009)


class Pings(Framing):
    def test_a_ping_is_answered_with_its_payload(self) -> None:
        ws = self.opened()
        ws.receive(client_frame(b"are you there", opcode=9))
        self.assertEqual(server_frames(ws.data_to_send()), [(10, b"are you there")])

    def test_while_the_peer_does_not_read_only_the_latest_ping_is_answered_later(self) -> None:
        ws = self.opened()
        for i in range(1000):
            ws.receive(client_frame(b"ping %d" % i, opcode=9))
            self.assertEqual(ws.data_to_send(pong=False), b"")
        self.assertEqual(server_frames(ws.data_to_send()), [(10, b"ping 999")])
        self.assertEqual(ws.data_to_send(), b"")


class FastPath(Framing):
    """Whole text frames with a 7-bit or 16-bit length take one short loop
    (``WebSocketServer._frames``); whatever it leaves must come out the same."""

    RUN = [b"FRAME s1 " + b"A" * 40, b"FRAME s2 " + b"B" * 140, b"x" * 125, b"y" * 126, b"\xc3\xa9" * 300, b""]

    def wire(self) -> tuple[bytes, bytes]:
        """A run mixing 7- and 16-bit lengths, a ping in the middle and a fragmented message."""
        frames = [client_frame(m) for m in self.RUN]
        frames[3:3] = [client_frame(b"hi", opcode=9), client_frame(b"C" * 130, fin=False), client_frame(b"D", opcode=0)]
        expected = self.RUN[:3] + [b"C" * 130 + b"D"] + self.RUN[3:]
        return b"".join(frames), b"".join(m + b"\n" for m in expected)

    def test_a_run_split_at_every_byte_position(self) -> None:
        wire, expected = self.wire()
        for cut in range(len(wire) + 1):
            ws = self.opened(limit=4096)
            got = lines(ws.receive(wire[:cut])) + lines(ws.receive(wire[cut:]))
            self.assertEqual(got, expected, cut)
            self.assertIs(ws.state, WSState.OPEN)
            self.assertEqual(server_frames(ws.data_to_send()), [(10, b"hi")])

    def test_a_run_fed_one_byte_at_a_time(self) -> None:
        wire, expected = self.wire()
        ws = self.opened(limit=4096)
        self.assertEqual(b"".join(lines(ws.receive(wire[i:i + 1])) for i in range(len(wire))), expected)

    def test_the_limit_holds_on_the_16_bit_path(self) -> None:
        ws = self.opened(limit=300)
        self.assertEqual(lines(ws.receive(client_frame(b"a" * 300))), b"a" * 300 + b"\n")  # exactly the limit
        ws.receive(client_frame(b"ok") + client_frame(b"a" * 301)[:8])  # the header and mask only
        self.assertEqual(close_code(ws), 1009)
        ws = self.opened(limit=300)
        self.assertEqual(lines(ws.receive(client_frame(b"ok") + client_frame(b"a" * 301))), b"ok\n")  # whole, still too big
        self.assertEqual(close_code(ws), 1009)

    def test_a_non_minimal_16_bit_length_is_read_like_a_short_one(self) -> None:
        ws = self.opened()
        frame = b"\x81\xfe\x00\x03" + b"\x00" * 4 + b"abc"  # length 3 written in 16 bits, zero mask
        self.assertEqual(ws.receive(frame + client_frame(b"d")), [Lines(b"abc\nd\n")])

    def test_a_whole_16_bit_text_frame_inside_a_fragmented_message_fails_with_1002(self) -> None:
        ws = self.opened()
        ws.receive(client_frame(b"a", fin=False) + client_frame(b"b" * 200))
        self.assertEqual(close_code(ws), 1002)

    def test_unmasked_or_reserved_16_bit_frames_fail_with_1002(self) -> None:
        for frame in [b"\x81\x7e\x00\xc8" + b"u" * 200, client_frame(b"r" * 200, rsv=0x40)]:
            ws = self.opened()
            events = ws.receive(client_frame(b"PING a") + frame)
            self.assertEqual(events, [Lines(b"PING a\n")])
            self.assertEqual(close_code(ws), 1002)

    def test_long_messages_with_and_without_lf(self) -> None:
        ws = self.opened(limit=8192)  # messages of 1 KiB and more are checked for LF one by one
        sent = [b"a" * 3000, b"b" * 1500 + b"\n" + b"c" * 10, b"d" * 2000, b"\n" * 1100]
        events = ws.receive(b"".join(client_frame(m) for m in sent))
        refused = Refused("one line per WebSocket message, without LF")
        self.assertEqual(events, [Lines(b"a" * 3000 + b"\n"), refused, Lines(b"d" * 2000 + b"\n"), refused])

    def test_long_lines_out_written_in_pieces(self) -> None:
        sent = [b"x" * 2000, b"", b"y" * 5, b"z" * 3000, b"w" * 1024]
        data = b"".join(line + b"\n" for line in sent) + b"v" * 1500
        for cut in (0, 1, 1999, 2000, 2001, 2003, 5000, len(data) - 1):
            ws = self.opened()
            ws.send_lines(data[:cut])
            ws.send_lines(data[cut:])
            self.assertEqual(server_frames(ws.data_to_send()), [(1, line) for line in sent], cut)
            ws.send_lines(b"\n")
            self.assertEqual(server_frames(ws.data_to_send()), [(1, b"v" * 1500)])

    def test_invalid_utf8_in_a_16_bit_frame_fails_with_1007(self) -> None:
        ws = self.opened()
        self.assertEqual(lines(ws.receive(client_frame(b"PING a") + client_frame(b"\xff" * 200))), b"")
        self.assertEqual(close_code(ws), 1007)


class Closing(Framing):
    def test_the_peer_closes_and_we_answer(self) -> None:
        ws = self.opened()
        events = ws.receive(client_frame(b"PING a") + client_frame(b"\x03\xe9bye", opcode=8) + client_frame(b"PING late"))
        self.assertEqual(events, [Lines(b"PING a\n")])
        self.assertEqual(close_code(ws), 1001)
        self.assertEqual(ws.close_code, 1001)
        self.assertIs(ws.state, WSState.CLOSED)
        ws.send_lines(b"OK late\n")
        self.assertEqual(ws.data_to_send(), b"")

    def test_we_close_then_ignore_all_but_the_peers_close(self) -> None:
        ws = self.opened()
        ws.send_lines(b"BYE quit goodbye\n")
        ws.close()
        frames = server_frames(ws.data_to_send())
        self.assertEqual(frames[0], (1, b"BYE quit goodbye"))
        self.assertEqual(frames[1], (8, b"\x03\xe8"))
        self.assertIs(ws.state, WSState.CLOSING)
        self.assertEqual(ws.receive(client_frame(b"PING ignored") + client_frame(b"ping", opcode=9)), [])
        self.assertEqual(ws.data_to_send(), b"")  # no pong once closing
        ws.receive(client_frame(b"\x03\xe8", opcode=8))
        self.assertIs(ws.state, WSState.CLOSED)
        self.assertEqual(ws.data_to_send(), b"")  # the handshake is complete: nothing more to say

    def test_while_closing_a_frame_too_big_ends_it_rather_than_being_buffered(self) -> None:
        ws = self.opened(limit=1024)
        ws.close()
        ws.data_to_send()
        ws.receive(client_frame(b"a" * 70000)[:14])  # a header announcing more than max_line
        self.assertIs(ws.state, WSState.CLOSED)


class Output(Framing):
    def test_each_line_is_one_text_frame_of_any_length(self) -> None:
        ws = self.opened()
        sent = [b"a" * 125, b"b" * 126, b"c" * 65535, b"d" * 65536, b""]
        ws.send_lines(b"".join(line + b"\n" for line in sent))
        self.assertEqual(server_frames(ws.data_to_send()), [(1, line) for line in sent])

    def test_a_line_written_in_pieces_is_one_message(self) -> None:
        ws = self.opened()
        ws.send_lines(b"OK PI")
        ws.send_lines(b"NG x\nOK")
        ws.send_lines(b" PING y\n")
        self.assertEqual(server_frames(ws.data_to_send()), [(1, b"OK PING x"), (1, b"OK PING y")])

    def test_bytes_that_are_not_utf8_become_valid_text(self) -> None:
        ws = self.opened()
        ws.send_lines(b"FRAME s \xff==\n")
        self.assertEqual(server_frames(ws.data_to_send()), [(1, "FRAME s \ufffd==".encode())])


# the same tests over the Python loops, the reference the C ones are compared with
for _case in (OpeningHandshake, Messages, Pings, FastPath, Closing, Output):
    globals()[f"{_case.__name__}InPython"] = type(f"{_case.__name__}InPython", (_case,), {"compiled": False})
del _case
