"""The wire vocabulary (relaychat/wire/messages.py): each line kind once, both ways."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.wire import messages as m
from relaychat.wire.errors import Code, ProtocolError
from relaychat.wire.nicknames import NicknameError, canonical, is_nickname, skeleton

K32, K64 = bytes(range(32)), bytes(range(64))
SID = "0123456789abcdef"

COMMANDS = [
    m.Hello(), m.Hello(("1", "2")), m.Register("Alice", K32, K32[::-1], K64), m.Prove(K64), m.Prove(K64, b"\x01\x02"),
    m.Lookup("bob"), m.Who(), m.Ping(), m.Ping("tok"), m.Quit(), m.Offer("bob"), m.Accept(SID), m.Decline(SID),
    m.Close(SID), m.Frame(SID, b"\x00payload"), m.Mail("bob", b"sealed"), m.Ack(42),
]
FROM_RELAY = [
    m.HelloOk("1", K32, 65536, 32768, 16384), m.HelloOk("1", K32, 1, 2, 3, {"future": "x"}),
    m.RegisterOk("alice", K32, 16), m.ProveOk("Alice", True, 3), m.ProveOk("Alice", False, 0),
    m.LookupOk("Bob", K32, K32, K64, True), m.WhoOk(1, 2), m.PingOk(), m.PingOk("tok"), m.OfferOk(SID, "Bob"),
    m.AcceptOk(SID), m.DeclineOk(SID), m.CloseOk(SID), m.MailOk(7), m.AckOk(7),
    m.Err("OFFER", "offline", "bob is not connected"), m.Err("-", "some-future-code", "text"),
    m.User("Bob", K32), m.Offered(SID, "Alice", K32), m.Accepted(SID), m.SessionClosed(SID, "declined"),
    m.StoredMail(9, "alice", 1700000000, b"sealed"), m.Notice("the relay restarts at noon"),
    m.Goodbye("quit", "goodbye"), m.Frame(SID, b"x"),
]


class RoundTrip(SynchronousTestCase):
    def test_every_command_reads_back_as_itself(self) -> None:
        for command in COMMANDS:
            line = command.to_line()
            self.assertEqual(m.parse_command(line), command, line)
            self.assertEqual(type(command).from_line(line), command, line)

    def test_every_relay_line_reads_back_as_itself(self) -> None:
        for message in FROM_RELAY:
            line = message.to_line()
            self.assertEqual(m.parse_from_relay(line), message, line)

    def test_the_maps_cover_every_class_once(self) -> None:
        self.assertEqual(set(m.COMMANDS), {c.NAME for c in map(type, COMMANDS)})
        # every command but QUIT (answered by BYE) and FRAME (answered only when it fails) has its OK
        self.assertEqual(set(m.REPLIES), set(m.COMMANDS) - {"QUIT", "FRAME"})
        for name, reply in m.REPLIES.items():
            self.assertEqual(reply.PREFIX, ("OK", name))

    def test_shapes_match_the_protocol_document(self) -> None:
        self.assertEqual(m.HelloOk("1", b"\x00" * 32, 10, 20, 30).to_line(),
                         "OK HELLO 1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= max_line=10 max_frame=20 max_mail=30")
        self.assertEqual(m.Err.of("FRAME", Code.NO_SESSION, f"{SID} no open session").to_line(),
                         f"ERR FRAME no-session {SID} no open session")
        self.assertEqual(m.Err("FRAME", "too-big", f"{SID} big").sid, SID)
        self.assertEqual(m.StoredMail(1, "a", 2, b"").to_line().split(" ")[:4], ["MAIL", "1", "a", "2"])
        self.assertEqual(m.ProveOk("Al", False, 0).to_line(), "OK PROVE Al known 0")
        self.assertEqual(m.frame_line(SID, b"ab"), m.Frame(SID, b"ab").to_line())
        self.assertEqual(m.PROTOCOL_VERSION, "1")
        self.assertTrue(m.FRAME_PREFIX == b"FRAME " and m.SID_LENGTH == len(SID))


class TextStaysOnOneLine(SynchronousTestCase):
    def test_text_fields_cannot_forge_a_line(self) -> None:
        for message in (m.Notice("hi\nOK PROVE x"), m.Goodbye("kicked", "a\r\nb"), m.Err("-", "syntax", "a\nb")):
            line = message.to_line()
            self.assertNotIn("\n", line)
            self.assertNotIn("\r", line)
        self.assertEqual(m.Notice("  ").to_line(), "NOTICE -")
        self.assertEqual(m.Goodbye("quit", "two  words").to_line(), "BYE quit two words")


class Refusals(SynchronousTestCase):
    def code(self, parse: object, line: str) -> str:
        with self.assertRaises(ProtocolError, msg=line) as caught:
            parse(line)  # type: ignore[operator]
        return caught.exception.code.word

    def test_commands_are_refused_with_the_relays_codes(self) -> None:
        c = m.parse_command
        self.assertEqual(self.code(c, "NOPE"), "unknown")
        self.assertEqual(self.code(c, "REGISTER alice"), "syntax")
        self.assertEqual(self.code(c, "REGISTER 1alice AAAA AAAA AAAA"), "bad-nick")
        self.assertEqual(self.code(c, f"REGISTER alice {'A' * 43}= AAAA AAAA"), "bad-key")
        self.assertEqual(self.code(c, "PROVE " + "A" * 86 + "== !!"), "bad-key")
        self.assertEqual(self.code(c, "PING " + "x" * 65), "syntax")
        self.assertEqual(self.code(c, "MAIL bob !!"), "syntax")
        for mail_id in ("x", "007", "\u00b2", "1" * 20):  # unicode digits are not numbers on the wire
            self.assertEqual(self.code(c, f"ACK {mail_id}"), "syntax", mail_id)

    def test_relay_lines_are_refused_when_malformed(self) -> None:
        r = m.parse_from_relay
        for line in ("OK", "OK NOPE", "OK HELLO 1", "OK HELLO 1 AAAA max_line=1 max_frame=2 max_mail=3",
                     "OK HELLO 1 " + "A" * 43 + "= max_line=1 max_frame=2 junk", "OK PROVE a maybe 0",
                     "OFFERED nothex alice " + "A" * 43 + "=", "ACCEPTED", "ERR", "BYE", f"FRAME {SID} !!",
                     "MAIL 1 alice 01 AAAA", "USER alice"):
            with self.assertRaises(ProtocolError, msg=line):
                r(line)

    def test_unknown_events_are_left_to_the_caller(self) -> None:
        self.assertIsNone(m.parse_from_relay("SOMETHING new from a newer relay"))


class Nicknames(SynchronousTestCase):
    def test_one_rule(self) -> None:
        self.assertEqual(canonical("Alice_1"), "alice_1")
        for bad in ("a", "1abc", "a" * 25, "al ice", "\u212alaus", "ali\u00e7e", "", None, 5):
            self.assertFalse(is_nickname(bad), bad)
            with self.assertRaises(NicknameError):
                canonical(bad)
        self.assertEqual(skeleton("a1ice"), skeleton("alice"))

    def test_the_error_is_both_a_relay_error_and_a_value_error(self) -> None:
        with self.assertRaises(ValueError):
            canonical("1")
        try:
            canonical("1")
        except ProtocolError as e:
            self.assertIs(e.code, Code.BAD_NICK)
