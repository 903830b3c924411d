"""The client's relay connection without Twisted: bytes in, events out (relaychat/client/connection.py)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.connection import (
    MAX_WHO_LINES,
    Answered,
    Broken,
    ConnectionState,
    FrameRefused,
    Refused,
    RelayConnection,
    Unreadable,
)
from relaychat.wire import messages as m
from relaychat.wire.codec import b64encode

SERVER_ID = bytes(range(32))
KEY = bytes(range(1, 33))
SID = "0123456789abcdef"


def lines(*texts: str) -> bytes:
    return "".join(t + "\n" for t in texts).encode()


class SansIO(SynchronousTestCase):
    def setUp(self) -> None:
        self.c = RelayConnection()

    def greet(self) -> None:
        self.assertEqual(self.c.send(m.Hello()), b"HELLO 1\n")
        [event] = self.c.receive_data(lines(m.HelloOk("1", SERVER_ID, 300, 100, 50).to_line()))
        assert isinstance(event, Answered)
        self.assertEqual(self.c.max_line, 300)

    def test_commands_become_bytes_and_replies_answer_them_in_order(self) -> None:
        self.greet()
        self.assertEqual(self.c.send(m.Lookup("bob")), b"LOOKUP bob\n")
        self.assertEqual(self.c.send(m.Who()), b"WHO\n")
        self.assertEqual(self.c.send(m.Offer("carol")), b"OFFER carol\n")
        self.assertEqual(self.c.send_frame(SID, b"x"), f"FRAME {SID} {b64encode(b'x')}\n".encode())
        self.assertEqual(self.c.waiting, 3)  # FRAME waits for nothing
        events = self.c.receive_data(lines(
            m.LookupOk("Bob", KEY, KEY, bytes(64), False).to_line(),
            m.User("Bob", KEY).to_line(),
            f"FRAME {SID} {b64encode(b'in')}",
            m.WhoOk(1, 1).to_line(),
            "ERR OFFER offline carol is not connected",
        ))
        self.assertEqual(events, [
            Answered("LOOKUP", m.LookupOk("Bob", KEY, KEY, bytes(64), False)),
            m.Frame(SID, b"in"),
            Answered("WHO", m.WhoOk(1, 1), (m.User("Bob", KEY),)),
            Refused("OFFER", m.Err("OFFER", "offline", "carol is not connected")),
        ])
        self.assertEqual(self.c.waiting, 0)

    def test_a_chunk_may_end_anywhere(self) -> None:
        self.c.send(m.Ping("t"))
        self.assertEqual(self.c.receive_data(b"OK PI"), [])
        self.assertEqual(self.c.receive_data(b"NG t\r\nNOTICE hi\n"),
                         [Answered("PING", m.PingOk("t")), m.Notice("hi")])

    def test_what_cannot_be_sent_is_refused_and_not_queued(self) -> None:
        self.greet()
        for command in (m.Lookup("a b"), m.Lookup(""), m.Lookup("x\nQUIT"), m.Lookup("x" * 400)):
            self.assertRaises(ValueError, self.c.send, command)
        self.assertRaises(ValueError, self.c.send_frame, SID, b"x" * 101)
        self.assertEqual(self.c.waiting, 0)

    def test_frames_are_routed_to_their_session(self) -> None:
        self.greet()
        self.assertEqual(self.c.receive_data(lines(
            f"ERR FRAME no-session {SID} no open session", f"FRAME {SID} !!", f"FRAME {SID} {b64encode(b'y' * 101)}",
            "FRAME nothex x", f"FRAME {SID} two tokens")) + self.c.receive_data(f"FRAME {SID} \xff\n".encode("latin-1")), [
            FrameRefused(SID, "no-session", "no open session"),
            FrameRefused(SID, "bad-encoding", "the relay forwarded a frame that is not valid base64", True),
            FrameRefused(SID, "too-big", "the relay forwarded a frame larger than it allows", True),
            FrameRefused(SID, "bad-encoding", "the relay forwarded a frame that is not valid base64", True),
            FrameRefused(SID, "bad-encoding", "the relay forwarded a frame that is not valid base64", True),  # not UTF-8
        ])
        self.assertIs(self.c.state, ConnectionState.OPEN)  # a peer's bytes never end the connection
        self.assertEqual(self.c.malformed, 1)

    def test_an_unreadable_reply_fails_only_its_command(self) -> None:
        self.c.send(m.Lookup("bob"))
        self.c.send(m.Ping())
        self.assertEqual(self.c.receive_data(lines("OK LOOKUP bob x y z online", "OK PING")), [
            Unreadable("LOOKUP", "bad binary field: not base64"), Answered("PING", m.PingOk())])

    def test_protocol_breaks_end_reading(self) -> None:
        for data in (b"OK PING\n", b"NOTICE \xff\n", b"x" * 70000, lines("OK"), lines("ERR PING")):
            c = RelayConnection()
            [event] = c.receive_data(data + lines("NOTICE after"))
            self.assertIsInstance(event, Broken)
            self.assertIs(c.state, ConnectionState.BROKEN)
            self.assertEqual(c.receive_data(lines("NOTICE later")), [])

    def test_endless_who_is_cut(self) -> None:
        self.c.send(m.Who())
        events = self.c.receive_data(lines(*[m.User(f"u{i}", KEY).to_line() for i in range(MAX_WHO_LINES + 1)]))
        self.assertEqual(events, [Broken(f"the relay sent more than {MAX_WHO_LINES} USER lines for one WHO")])

    def test_goodbye_is_kept_and_unknown_events_ignored(self) -> None:
        events = self.c.receive_data(lines("SOMETHING new", "OFFERED bad", "BYE kicked by the operator"))
        self.assertEqual(events, [m.Goodbye("kicked", "by the operator")])
        self.assertEqual(self.c.goodbye, m.Goodbye("kicked", "by the operator"))
        self.assertEqual(self.c.malformed, 1)
