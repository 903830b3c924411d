"""Tests for the chat program without a real terminal.

* :class:`Presenter` and :func:`wrap`: the words and the layout, pure.
* :class:`LineEditor`: the input line, pure.
* :class:`ChatTerminal`: keystrokes in, screen out, through insults and a
  terminal emulator (``insults.helper.TerminalBuffer``), no pty.
* :class:`ChatController`: commands and library events, against fakes of
  the ``relaychat.client`` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from OpenSSL import SSL
from twisted.conch.insults import helper, insults
from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.internet.testing import Clock, StringTransport
from twisted.trial import unittest

from relaychat.client import explain_tls_failure
from relaychat.client import (
    ContactInfo,
    Delivery,
    Ended,
    How,
    MailProblem,
    MailRead,
    NotPinned,
    RelayChanged,
    Verification,
    ReceivedMail,
    SMPAborted,
    SMPRequested,
    SMPResult,
    User,
)
from relaychat.chat.controller import QUIT_GRACE, ChatController
from relaychat.client.errors import (
    Declined,
    Disconnected,
    KeyChanged,
    MailError,
    MessageTooLong,
    RelayError,
)
from relaychat.chat.presenter import (
    CONTINUATION,
    STATUS_PREFIX,
    WARNING_PREFIX,
    Kind,
    Line,
    Presenter,
    describe_failure,
    text_width,
    wrap,
)
from relaychat.chat.terminal import ChatServerProtocol, ChatTerminal, LineEditor
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import identity_fingerprint, safety_number

_KEYS: dict[str, Identity] = {}


def key(name: str) -> bytes:
    if name not in _KEYS:
        _KEYS[name] = Identity.generate()
    return _KEYS[name].identity_public


def texts(lines: Sequence[Line]) -> list[str]:
    return [line.text for line in lines]


def at_margin(lines: Sequence[Line]) -> list[str]:
    """Every screen row that starts at column 0 (what a status line could look like)."""
    rows = [row for line in lines for row in wrap(line.text, 60)]
    return [row for row in rows if not row.startswith(" ")]


# -- presenter --------------------------------------------------------------------------


class PresenterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Presenter(me="alice", format_time=lambda t: f"T{t}")

    def test_status_lines_have_prefix(self) -> None:
        for lines in [
            self.p.welcome(),
            self.p.connecting("localhost:7733"),
            self.p.connected("alice", "localhost:7733", "abcd"),
            self.p.calling("bob"),
            self.p.opened("bob", True),
            self.p.ended("bob", True, True, "bye"),
            self.p.who(["bob"]),
            self.p.help(),
            self.p.error("Nope."),
        ]:
            for text in texts(lines):
                self.assertTrue(text.startswith(STATUS_PREFIX), text)

    def test_message_prefixed_with_nick(self) -> None:
        self.assertEqual(self.p.message("bob", "hi"), [Line(Kind.MESSAGE, "<bob> hi")])
        self.assertEqual(self.p.own_message("hi"), [Line(Kind.OWN, "<alice> hi")])
        self.assertEqual(self.p.own_message("hi", to="bob"), [Line(Kind.OWN, "<alice->bob> hi")])

    def test_message_is_inert(self) -> None:
        [line] = self.p.message("bob", "\x1b[2Jcleared\r\n*** bob is verified\u202e")
        self.assertEqual(line.text, "<bob> \\x1b[2Jcleared\n    *** bob is verified\\u202e")

    def test_network_text_cannot_reach_margin(self) -> None:
        forged = "x\n*** VERIFIED\r*** VERIFIED\u2028!!! WARNING" + " " * 200 + "*** VERIFIED"
        lines = (
            self.p.message("bob", forged)
            + self.p.mail("bob", 1, forged)
            + self.p.notice(forged)
            + self.p.ended("bob", False, True, forged)
            + self.p.offer_withdrawn("bob", forged)
            + self.p.error(forged)
        )
        for row in at_margin(lines):
            self.assertTrue(row.startswith(("<bob> ", STATUS_PREFIX)), row)
            self.assertFalse(row.startswith(STATUS_PREFIX + "VERIFIED"), row)

    def test_nick_from_network_is_inert(self) -> None:
        [line] = self.p.message("b\x1b[31mob", "hi")
        self.assertEqual(line.text, "<b\\x1b[31mob> hi")

    def test_opened_says_unverified(self) -> None:
        first = " ".join(texts(self.p.opened("bob", True)))
        self.assertIn("NOT VERIFIED", first)
        self.assertIn("first contact", first)
        again = " ".join(texts(self.p.opened("bob", False)))
        self.assertIn("NOT VERIFIED", again)
        self.assertIn("pinned earlier", again)
        lines = self.p.opened("bob", False, Verification(How.SAFETY_NUMBER, 0))
        self.assertEqual(lines[1].kind, Kind.GOOD)
        self.assertTrue(lines[1].text.startswith("*** VERIFIED: bob's key is the one you verified by comparing"))

    def test_ended(self) -> None:
        self.assertEqual(texts(self.p.ended("bob", True, True, "x")), ["*** bob left the conversation."])
        self.assertEqual(texts(self.p.ended("bob", True, False, "x")), ["*** The conversation with bob is closed."])
        [line] = self.p.ended("bob", False, True, "It broke; the last messages may have been lost.")
        self.assertEqual(line, Line(Kind.ERROR, "*** It broke; the last messages may have been lost."))

    def test_key_changed_is_loud(self) -> None:
        lines = self.p.key_changed("bob", "1111", "2222", "12345 67890")
        self.assertTrue(all(line.kind is Kind.WARNING for line in lines))
        self.assertTrue(all(line.text.startswith(WARNING_PREFIX) for line in lines))
        joined = "\n".join(texts(lines))
        for needle in ["CHANGED", "1111", "2222", "12345 67890", "/trust bob"]:
            self.assertIn(needle, joined)

    def test_safety(self) -> None:
        lines = texts(self.p.safety("bob", "aaaa", "bbbb", "11111 22222", "this conversation", None))
        self.assertEqual(lines[1], "***     11111 22222")
        self.assertEqual(lines[2], "*** Your fingerprint:  aaaa")
        self.assertEqual(lines[3], "*** bob's fingerprint: bbbb")
        self.assertIn("not verified", lines[0])
        verified = texts(self.p.safety("bob", "a", "b", "1", "this conversation", Verification(How.SMP, 0)))
        self.assertIn("VERIFIED", verified[0])

    def test_smp_results(self) -> None:
        good, remembered = self.p.smp_result("bob", True)
        self.assertEqual((good.kind, remembered.kind), (Kind.GOOD, Kind.GOOD))
        self.assertIn("VERIFIED", good.text)
        self.assertIn("Remembered with bob's key", remembered.text)
        bad = self.p.smp_result("bob", False)
        self.assertTrue(all(line.kind is Kind.WARNING for line in bad))
        self.assertIn("FAILED", bad[0].text)

    def test_who(self) -> None:
        self.assertEqual(texts(self.p.who(["carol", "Bob", "alice"])), ["*** Online (3): alice, Bob, carol"])
        self.assertEqual(texts(self.p.who([])), ["*** Nobody is online."])

    def test_mail(self) -> None:
        self.assertEqual(texts(self.p.mail("bob", 7, "see\nyou")),
                         ["*** Mail from bob, sent T7:", "<bob> see\n    you"])

    def test_prompt(self) -> None:
        self.assertEqual(self.p.prompt(None), "> ")
        self.assertEqual(self.p.prompt("bob"), "[bob] > ")
        self.assertEqual(self.p.prompt("bob", verified=True), "[bob, verified] > ")

    def test_help_topic(self) -> None:
        self.assertEqual(texts(self.p.help("quit"))[0], "*** /quit -- Leave relaychat (Ctrl-C also does).")


class FailureSentenceTests(unittest.TestCase):
    def test_relay_codes(self) -> None:
        self.assertEqual(describe_failure(RelayError("offline", "x", "OFFER"), "bob"),
                         "bob is not online. /mail bob <text> leaves them a sealed message.")
        self.assertIn("alice belongs to someone else", describe_failure(RelayError("taken", "x"), "alice"))

    def test_unknown_code_uses_inert_relay_text(self) -> None:
        sentence = describe_failure(RelayError("weird", "\x1b[2Jboom", "OFFER"), "bob")
        self.assertEqual(sentence, "The relay refused OFFER: \\x1b[2Jboom (weird).")

    def test_network_errors(self) -> None:
        self.assertEqual(
            describe_failure(net_error.ConnectionRefusedError(), None, "localhost:7733"),
            "Could not connect to localhost:7733: the connection was refused. Is the relay running there?",
        )
        self.assertIn("host name was not found", describe_failure(net_error.DNSLookupError("x"), None, "nowhere:1"))
        self.assertIn("no answer in time", describe_failure(defer.TimeoutError(), None, "h:1"))

    def test_library_sentences_kept(self) -> None:
        self.assertEqual(describe_failure(Declined("bob declined the conversation.")), "bob declined the conversation.")
        self.assertEqual(describe_failure(MessageTooLong("Too long.")), "Too long.")
        self.assertEqual(describe_failure(Disconnected("idle", "gone")), "Disconnected from the relay: gone.")

    def test_disconnected_while_connecting(self) -> None:
        self.assertEqual(describe_failure(Disconnected("lost", "the relay said \x1b[2Jno."), None, "h:1"),
                         "Could not connect to h:1: the relay said \\x1b[2Jno.")
        untrusted = SSL.Error([("SSL routines", "", "certificate verify failed")])
        sentence = describe_failure(Disconnected("lost", explain_tls_failure(untrusted)), None, "tls:h:1")
        self.assertTrue(sentence.startswith("Could not connect to tls:h:1: the relay's certificate is not signed"))
        self.assertIn("tls:HOST:PORT:fingerprint=sha256:", sentence)

    def test_tls_failure_from_an_endpoint(self) -> None:
        untrusted = SSL.Error([("SSL routines", "", "certificate verify failed")])
        sentence = describe_failure(untrusted, None, "tls:h:1")
        self.assertTrue(sentence.startswith("Could not connect securely to tls:h:1: the relay's certificate"), sentence)
        self.assertNotIn("SSL routines", sentence)

    def test_cancelled(self) -> None:
        self.assertEqual(describe_failure(defer.CancelledError(), "bob"), "Stopped calling bob.")

    def test_bug_is_a_sentence(self) -> None:
        sentence = describe_failure(ZeroDivisionError("division by zero"))
        self.assertIn("This is a bug", sentence)
        self.assertNotIn("Traceback", sentence)


class WrapTests(unittest.TestCase):
    def test_short_line_unchanged(self) -> None:
        self.assertEqual(wrap("*** hello", 40), ["*** hello"])

    def test_continuation_rows_indented(self) -> None:
        rows = wrap("<bob> " + "word " * 30, 40)
        self.assertGreater(len(rows), 1)
        for row in rows:
            self.assertLessEqual(text_width(row), 40)
        for row in rows[1:]:
            self.assertTrue(row.startswith(CONTINUATION))

    def test_padding_cannot_push_text_to_margin(self) -> None:
        """Spaces up to the right margin must not land '*** ...' at column 0."""
        rows = wrap("<bob> " + " " * 34 + "*** bob is verified", 40)
        self.assertEqual([r for r in rows if r.startswith("*")], [])

    def test_long_word_broken(self) -> None:
        rows = wrap("x" * 100, 30)
        self.assertEqual("".join(r.strip() for r in rows), "x" * 100)

    def test_wide_characters_counted_twice(self) -> None:
        rows = wrap("日本語" * 10, 20)
        for row in rows:
            self.assertLessEqual(text_width(row), 20)

    def test_combining_marks_stay_with_base(self) -> None:
        rows = wrap("e\u0301" * 30, 20)
        for row in rows:
            self.assertFalse(row.lstrip().startswith("\u0301"))

    def test_embedded_newlines(self) -> None:
        self.assertEqual(wrap("<bob> a\n    b", 40), ["<bob> a", "    b"])

    def test_tiny_width_still_progresses(self) -> None:
        self.assertTrue(wrap("abc " * 20, 1))


# -- the input line -------------------------------------------------------------------


class LineEditorTests(unittest.TestCase):
    def setUp(self) -> None:
        self.e = LineEditor()

    def test_typing_and_editing(self) -> None:
        self.e.insert("helo")
        self.e.left()
        self.e.insert("l")
        self.assertEqual((self.e.text, self.e.cursor), ("hello", 4))
        self.e.end()
        self.e.backspace()
        self.e.home()
        self.e.delete()
        self.assertEqual(self.e.text, "ell")

    def test_controls_refused(self) -> None:
        self.e.insert("a\x1b[2Jb\u202ec\x85")
        self.assertEqual(self.e.text, "a[2Jbc")

    def test_kill_commands(self) -> None:
        self.e.insert("one two  three")
        self.e.kill_word()
        self.assertEqual(self.e.text, "one two  ")
        self.e.kill_word()
        self.assertEqual(self.e.text, "one ")
        self.e.home()
        self.e.kill_to_end()
        self.assertEqual(self.e.text, "")
        self.e.insert("abc")
        self.e.left()
        self.e.kill_to_start()
        self.assertEqual((self.e.text, self.e.cursor), ("c", 0))

    def test_submit_and_history(self) -> None:
        for line in ["first", "second"]:
            self.e.insert(line)
            self.assertEqual(self.e.submit(), line)
        self.e.insert("draft")
        self.e.history_previous()
        self.assertEqual(self.e.text, "second")
        self.e.history_previous()
        self.e.history_previous()
        self.assertEqual(self.e.text, "first")
        self.e.history_next()
        self.e.history_next()
        self.assertEqual(self.e.text, "draft")

    def test_unremembered_line(self) -> None:
        self.e.insert("/verify secret")
        self.e.submit(remember=False)
        self.e.history_previous()
        self.assertEqual(self.e.text, "")

    def test_render_short(self) -> None:
        self.e.insert("hi")
        self.assertEqual(self.e.render("> ", 40), ("> hi", 4))

    def test_render_scrolls_to_cursor(self) -> None:
        self.e.insert("x" * 100)
        shown, cursor = self.e.render("> ", 40)
        self.assertLessEqual(text_width(shown), 39)
        self.assertTrue(shown.startswith("> <"))
        self.assertLess(cursor, 39)
        self.e.home()
        shown, cursor = self.e.render("> ", 40)
        self.assertEqual((shown, cursor), ("> " + "x" * 37, 2))

    def test_render_wide(self) -> None:
        self.e.insert("日本" * 30)
        shown, cursor = self.e.render("> ", 30)
        self.assertLessEqual(text_width(shown), 29)
        self.assertLessEqual(cursor, 29)


# -- the screen, through insults and a terminal emulator ---------------------------------


class ScreenTests(unittest.TestCase):
    def setUp(self) -> None:
        self.screen = ChatTerminal(colour=True, width=60, height=12)
        self.lines: list[str] = []
        self.interrupts = 0
        self.screen.on_line = self.lines.append
        self.screen.on_interrupt = lambda: setattr(self, "interrupts", self.interrupts + 1)
        self.server = ChatServerProtocol(lambda: self.screen)
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)

    def emulate(self) -> list[str]:
        """What a terminal shows after everything written so far."""
        data = self.transport.value()
        # insults' own client parser cannot read private modes (str + bytes bug).
        for mode in (b"\x1b[?7l", b"\x1b[?7h", b"\x1b[?2004h", b"\x1b[?2004l"):
            data = data.replace(mode, b"")
        buffer = helper.TerminalBuffer()
        buffer.width, buffer.height = 60, 12
        buffer.connectionMade()
        client = insults.ClientProtocol(lambda: buffer)
        client.makeConnection(StringTransport())
        client.dataReceived(data)
        self.cursor = buffer.reportCursorPosition()
        return bytes(buffer).decode("utf-8", "replace").split("\n")

    def test_autowrap_off_and_bracketed_paste_on(self) -> None:
        self.assertTrue(self.transport.value().startswith(b"\x1b[0m\x1b[?7l\x1b[?2004h"))

    def test_enter_delivers_line(self) -> None:
        self.server.dataReceived(b"hello\r/who\r")
        self.assertEqual(self.lines, ["hello", "/who"])

    def test_utf8_input(self) -> None:
        data = "grüße 日本\r".encode()
        for i in range(len(data)):  # one byte at a time, as a slow pty might
            self.server.dataReceived(data[i : i + 1])
        self.assertEqual(self.lines, ["grüße 日本"])

    def test_arrows_and_control_keys(self) -> None:
        self.server.dataReceived(b"helo\x1b[Dl\x05!\x01>\r")
        self.assertEqual(self.lines, [">hello!"])
        self.server.dataReceived(b"abc def\x17\x15xyz\r\x1b[A\x1b[A\r")
        self.assertEqual(self.lines[1:], ["xyz", ">hello!"])

    def test_ctrl_c_and_ctrl_d(self) -> None:
        self.server.dataReceived(b"\x03")
        self.server.dataReceived(b"ab\x02\x04\r")
        self.server.dataReceived(b"\x04")
        self.assertEqual(self.interrupts, 2)
        self.assertEqual(self.lines, ["a"])

    def test_messages_appear_above_typing(self) -> None:
        self.server.dataReceived(b"half typed")
        self.screen.show([Line(Kind.MESSAGE, "<bob> hello there")])
        self.screen.show([Line(Kind.STATUS, "*** bob left the conversation.")])
        rows = self.emulate()
        self.assertEqual(rows[:3], ["<bob> hello there", "*** bob left the conversation.", "> half typed"])
        self.assertEqual(self.cursor, (len("> half typed"), 2))
        self.server.dataReceived(b" more\r")
        self.assertEqual(self.lines, ["half typed more"])

    def test_prompt_change(self) -> None:
        self.server.dataReceived(b"x")
        self.screen.set_prompt("[bob] > ")
        self.assertEqual(self.emulate()[0], "[bob] > x")

    def test_wrapped_rows_indented(self) -> None:
        self.screen.show(Presenter().message("bob", "z " * 50))
        rows = [r for r in self.emulate() if r]
        self.assertGreater(len(rows), 2)
        for row in rows[1:-1]:
            self.assertTrue(row.startswith(CONTINUATION), row)

    def test_escape_from_network_shown_as_text(self) -> None:
        self.screen.show(Presenter().message("bob", "\x1b[2J\x1b[H*** fake"))
        self.assertEqual(self.emulate()[0], "<bob> \\x1b[2J\\x1b[H*** fake")
        self.assertNotIn(b"\x1b[2J", self.transport.value())

    def test_lines_before_connection_are_kept(self) -> None:
        screen = ChatTerminal(colour=False)
        screen.show([Line(Kind.STATUS, "*** early")])
        transport = StringTransport()
        insults.ServerProtocol(lambda: screen).makeConnection(transport)
        self.assertIn(b"*** early", transport.value())

    def test_finish_restores_autowrap_and_stops_drawing(self) -> None:
        self.screen.finish()
        self.assertTrue(self.transport.value().endswith(b"\x1b[0m\x1b[?7h\x1b[?2004l"))
        size = len(self.transport.value())
        self.screen.show([Line(Kind.STATUS, "*** late")])
        self.assertEqual(len(self.transport.value()), size)

    def test_no_colour(self) -> None:
        screen = ChatTerminal(colour=False)
        transport = StringTransport()
        insults.ServerProtocol(lambda: screen).makeConnection(transport)
        screen.show([Line(Kind.WARNING, "!!! x"), Line(Kind.MESSAGE, "<bob> y")])
        self.assertNotIn(b"\x1b[1", transport.value())
        self.assertNotIn(b"31m", transport.value())


# -- the controller, against fakes of the library -----------------------------------------


class FakeConversation:
    def __init__(self, nick: str, first_contact: bool = True) -> None:
        self.nick = nick
        self.first_contact = first_contact
        self.peer_identity = key(nick)
        self.peer_fingerprint = identity_fingerprint(self.peer_identity)
        self.safety_number = safety_number(key("alice"), "alice", self.peer_identity, nick)
        self.sent: list[str] = []
        self.smp: list[tuple[str, str]] = []
        self.closed_calls = 0
        self.ended: Ended | None = None
        self.verified: Verification | None = None
        self.lookalike_of: str | None = None
        self.observers: dict[str, list[Callable[[Any], None]]] = {
            "messages": [], "end": [], "smp": [], "warnings": [], "delivered": []}

    def send(self, text: str) -> int:
        if self.ended is not None:
            from relaychat.client.errors import ConversationClosed

            raise ConversationClosed(f"The conversation with {self.nick} is over.")
        self.sent.append(text)
        return len(self.sent)

    def observe_delivered(self, observer: Callable[[Any], None]) -> None:
        self.observers["delivered"].append(observer)

    def mark_verified(self) -> None:
        self.verified = Verification(How.SAFETY_NUMBER, 100)

    def close(self) -> defer.Deferred:
        self.closed_calls += 1
        self.end(Ended(True, "closed", by_peer=False))
        return defer.succeed(None)

    def end(self, ended: Ended) -> None:
        self.ended = ended
        for observer in self.observers["end"]:
            observer(ended)

    def emit(self, kind: str, item: Any) -> None:
        for observer in self.observers[kind]:
            observer(item)

    def observe_messages(self, observer: Callable[[str], None]) -> None:
        self.observers["messages"].append(observer)

    def observe_end(self, observer: Callable[[Ended], None]) -> None:
        self.observers["end"].append(observer)

    def observe_smp(self, observer: Callable[[Any], None]) -> None:
        self.observers["smp"].append(observer)

    def observe_warnings(self, observer: Callable[[str], None]) -> None:
        self.observers["warnings"].append(observer)

    def smp_start(self, secret: str) -> None:
        self.smp.append(("start", secret))

    def smp_respond(self, secret: str) -> None:
        self.smp.append(("respond", secret))

    def smp_abort(self) -> None:
        self.smp.append(("abort", ""))


class FakeOffer:
    def __init__(self, nick: str, pin: PinStatus = PinStatus.NEW) -> None:
        self.nick = nick
        self.fingerprint = identity_fingerprint(key(nick))
        self.pin = pin
        self.lookalike_of: str | None = None
        self.accepted: defer.Deferred | None = None
        self.declined = False
        self.withdrawn_observers: list[Callable[[str], None]] = []

    def accept(self) -> defer.Deferred:
        self.accepted = defer.Deferred()
        return self.accepted

    def decline(self) -> defer.Deferred:
        self.declined = True
        return defer.succeed(None)

    def observe_withdrawn(self, observer: Callable[[str], None]) -> None:
        self.withdrawn_observers.append(observer)


class FakeClient:
    def __init__(self) -> None:
        self.nick = "Alice"
        self.canonical_nick = "alice"
        self.identity = _KEYS.setdefault("alice", Identity.generate())
        self.calls: dict[str, defer.Deferred] = {}
        self.pins: dict[str, bytes] = {}
        self.new_keys: list[tuple[str, bytes]] = []
        self.mail: list[tuple[str, str]] = []
        self.mail_result: defer.Deferred = defer.succeed(1)
        self.who_result: list[User] = []
        self.quit_result: defer.Deferred = defer.succeed(None)
        self.quits = 0
        self.observers: dict[str, Callable[[Any], None]] = {}
        self.ringing: dict[str, Callable[[], None]] = {}
        self.rings = True
        self.disconnected: Any = None
        self.relay_first_contact = False
        self.relay_address = "relay:7733"
        self.server_id = bytes(32)
        self.verified: dict[str, Verification] = {}

    def verification(self, nick: str, identity_pub: bytes) -> Verification | None:
        return self.verified.get(nick.lower()) if identity_pub == self.pins.get(nick.lower()) else None

    def mark_verified(self, nick: str) -> Any:
        if nick.lower() not in self.pins:
            raise NotPinned(f"You have no key for {nick} yet (or its pin is damaged); talk to them first.")
        self.verified[nick.lower()] = Verification(How.SAFETY_NUMBER, 100)

    def contacts(self) -> list[ContactInfo]:
        return [ContactInfo(n, k, 10, 20, self.verified.get(n)) for n, k in sorted(self.pins.items())]

    def call(self, nick: str, ringing: Callable[[], None] | None = None) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls[nick.lower()] = d
        self.ringing[nick.lower()] = ringing or (lambda: None)
        if self.rings:
            self.ringing[nick.lower()]()  # the relay took the offer at once
        return d

    def observe_conversations(self, observer: Callable[[Any], None]) -> None:
        self.observers["conversations"] = observer

    def who(self) -> defer.Deferred:
        return defer.succeed(self.who_result)

    def lookup(self, nick: str) -> defer.Deferred:
        from relaychat.client import PeerInfo

        return defer.succeed(PeerInfo(nick, key(nick), b"s" * 32, True, PinStatus.MATCH))

    def send_mail(self, nick: str, text: str) -> defer.Deferred:
        self.mail.append((nick, text))
        return self.mail_result

    def pinned_key(self, nick: str) -> bytes | None:
        return self.pins.get(nick.lower())

    def accept_new_key(self, nick: str, identity_pub: bytes) -> None:
        self.new_keys.append((nick, identity_pub))

    def quit(self) -> defer.Deferred:
        self.quits += 1
        return self.quit_result

    def observe_offers(self, observer: Callable[[Any], None]) -> None:
        self.observers["offers"] = observer

    def observe_mail(self, observer: Callable[[Any], None]) -> None:
        self.observers["mail"] = observer

    def observe_notices(self, observer: Callable[[str], None]) -> None:
        self.observers["notices"] = observer

    def observe_disconnect(self, observer: Callable[[str], None]) -> None:
        self.observers["disconnect"] = observer


class FakeView:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.prompt = ""

    def show(self, lines: Sequence[Line]) -> None:
        self.lines.extend(lines)

    def set_prompt(self, prompt: str) -> None:
        self.prompt = prompt

    def take(self) -> list[str]:
        shown, self.lines = [line.text for line in self.lines], []
        return shown


class ControllerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.view = FakeView()
        self.clock = Clock()
        self.exits: list[int] = []
        self.controller = ChatController(self.view, Presenter(format_time=str), self.clock, "relay:7733",
                                         self.exits.append)
        self.client = FakeClient()
        self.controller.start(lambda: defer.succeed(self.client))
        self.view.take()

    def type(self, line: str) -> list[str]:
        self.controller.handle_line(line)
        return self.view.take()

    def open_with(self, nick: str = "bob") -> FakeConversation:
        self.type(f"/connect {nick}")
        conversation = FakeConversation(nick)
        self.client.calls[nick].callback(conversation)
        self.view.take()
        return conversation

    # -- connecting

    def test_connected(self) -> None:
        view = FakeView()
        controller = ChatController(view, Presenter(), self.clock, "relay:7733", self.exits.append)
        controller.start(lambda: defer.succeed(FakeClient()))
        shown = view.take()
        self.assertIn("*** Connecting to relay:7733 ...", shown)
        self.assertIn("*** Connected to relay:7733 as Alice.", shown)
        self.assertEqual(view.prompt, "> ")

    def test_connect_failure_is_a_sentence_and_exits(self) -> None:
        view = FakeView()
        exits: list[int] = []
        controller = ChatController(view, Presenter(), self.clock, "relay:7733", exits.append)
        controller.start(lambda: defer.fail(RelayError("taken", "bound to another key", "REGISTER")), "alice")
        self.assertEqual(view.take()[-1],
                         "*** The nickname alice belongs to someone else's key on this relay; choose another with --nick.")
        self.assertEqual(exits, [1])

    def test_connection_refused(self) -> None:
        view = FakeView()
        exits: list[int] = []
        ChatController(view, Presenter(), self.clock, "relay:7733", exits.append).start(
            lambda: defer.fail(net_error.ConnectionRefusedError()))
        self.assertIn("connection was refused", view.take()[-1])
        self.assertEqual(exits, [1])

    # -- calling and chatting

    def test_call_and_chat(self) -> None:
        self.assertEqual(self.type("/connect bob"), ["*** Calling bob ... waiting for them to /accept."])
        conversation = FakeConversation("bob")
        self.client.calls["bob"].callback(conversation)
        shown = self.view.take()
        self.assertIn("*** Handshake done: end-to-end encrypted conversation with bob.", shown)
        self.assertIn("NOT VERIFIED", shown[1])
        self.assertEqual(self.view.prompt, "[bob] > ")
        self.assertEqual(self.type("hello"), ["<Alice> hello"])
        self.assertEqual(conversation.sent, ["hello"])
        conversation.emit("messages", "hi \x1b[2J")
        self.assertEqual(self.view.take(), ["<bob> hi \\x1b[2J"])

    def test_say_without_conversation(self) -> None:
        self.assertIn("not in a conversation", self.type("hello")[0])

    def test_call_declined(self) -> None:
        self.type("/connect bob")
        self.client.calls["bob"].errback(Declined("bob declined the conversation."))
        self.assertEqual(self.view.take(), ["*** bob declined the conversation."])
        self.assertEqual(self.view.prompt, "> ")

    def test_call_offline(self) -> None:
        self.type("/connect bob")
        self.client.calls["bob"].errback(RelayError("offline", "not connected", "OFFER"))
        self.assertEqual(self.view.take(), ["*** bob is not online. /mail bob <text> leaves them a sealed message."])

    def test_cannot_call_self(self) -> None:
        self.assertEqual(self.type("/connect ALICE"), ["*** That is your own nickname."])

    def test_close_stops_calling(self) -> None:
        self.type("/connect bob")
        self.assertEqual(self.type("/close bob"), ["*** Stopped calling bob."])
        self.type("/connect bob")  # can call again
        self.assertIn("bob", self.client.calls)

    def test_message_too_long(self) -> None:
        conversation = self.open_with()
        conversation.send = lambda text: (_ for _ in ()).throw(MessageTooLong("A message is at most 10 bytes."))
        self.assertEqual(self.type("x" * 20), ["*** A message is at most 10 bytes."])

    def test_two_conversations(self) -> None:
        bob = self.open_with("bob")
        carol = self.open_with("carol")
        self.assertEqual(self.view.prompt, "[carol] > ")
        self.assertEqual(self.type("hi"), ["<Alice->carol> hi"])
        self.assertEqual(self.type("/msg bob psst"), ["<Alice->bob> psst"])
        self.assertEqual(bob.sent, ["psst"])
        self.assertEqual(carol.sent, ["hi"])
        self.assertEqual(self.type("/switch bob"), ["*** Plain lines now go to bob."])
        self.assertEqual(self.view.prompt, "[bob] > ")
        bob.end(Ended(True, "bye", by_peer=True))
        self.assertEqual(self.view.take(), ["*** bob left the conversation.", "*** Plain lines now go to carol."])
        self.assertEqual(self.view.prompt, "[carol] > ")

    def test_peer_left(self) -> None:
        conversation = self.open_with()
        conversation.end(Ended(False, "The conversation with bob ended without their goodbye.", by_peer=True))
        self.assertEqual(self.view.take(), ["*** The conversation with bob ended without their goodbye."])
        self.assertEqual(self.view.prompt, "> ")
        self.assertIn("not in a conversation", self.type("hello?")[0])

    def test_close(self) -> None:
        conversation = self.open_with()
        self.assertEqual(self.type("/close"), ["*** The conversation with bob is closed."])
        self.assertEqual(conversation.closed_calls, 1)

    def test_conversation_warning(self) -> None:
        conversation = self.open_with()
        conversation.emit("warnings", "bob sent a message of an unknown kind\x1b; it was ignored.")
        self.assertEqual(self.view.take(), ["*** bob sent a message of an unknown kind\\x1b; it was ignored."])

    # -- offers

    def test_offer_accept(self) -> None:
        offer = FakeOffer("bob")
        self.client.observers["offers"](offer)
        self.assertIn("bob wants to talk", self.view.take()[0])
        self.assertEqual(self.type("/accept"), ["*** Accepted. Handshake with bob ... checking keys."])
        assert offer.accepted is not None
        offer.accepted.callback(FakeConversation("bob"))
        self.assertEqual(self.view.prompt, "[bob] > ")

    def test_connect_to_offering_peer_accepts(self) -> None:
        offer = FakeOffer("bob")
        self.client.observers["offers"](offer)
        self.type("/connect bob")
        self.assertIsNotNone(offer.accepted)
        self.assertNotIn("bob", self.client.calls)

    def test_offer_decline(self) -> None:
        offer = FakeOffer("bob")
        self.client.observers["offers"](offer)
        self.view.take()
        self.assertEqual(self.type("/decline bob"), ["*** Declined bob's offer."])
        self.assertTrue(offer.declined)
        self.assertIn("Nobody is waiting", self.type("/accept")[0])

    def test_several_offers_need_a_name(self) -> None:
        for nick in ["bob", "carol"]:
            self.client.observers["offers"](FakeOffer(nick))
        self.view.take()
        self.assertIn("Several offers wait (bob, carol)", self.type("/accept")[0])
        self.assertIn("dave has not offered", self.type("/accept dave")[0])

    def test_offer_withdrawn(self) -> None:
        offer = FakeOffer("bob")
        self.client.observers["offers"](offer)
        self.view.take()
        offer.withdrawn_observers[0]("The offer from bob timed out.")
        self.assertEqual(self.view.take(), ["*** The offer from bob timed out."])  # said once, not doubled
        self.assertIn("Nobody is waiting", self.type("/accept")[0])

    def test_offer_with_changed_key_warns(self) -> None:
        self.client.observers["offers"](FakeOffer("bob", PinStatus.CHANGED))
        shown = self.view.take()
        self.assertTrue(shown[1].startswith("!!! This is NOT the key you pinned for bob"))

    # -- trust

    def key_change(self) -> KeyChanged:
        change = KeyChanged("bob", key("old-bob"), key("new-bob"))
        self.type("/connect bob")
        self.client.calls["bob"].errback(change)
        return change

    def test_key_change_warns_and_trust_replaces_pin(self) -> None:
        change = self.key_change()
        shown = self.view.take()
        self.assertTrue(all(text.startswith("!!! ") for text in shown))
        number = safety_number(self.client.identity.identity_public, "alice", change.new_key, "bob")
        self.assertIn(f"!!!   safety number with the new key: {number}", shown)
        self.assertEqual(self.view.prompt, "> ")
        safety = self.type("/safety bob")
        self.assertIn("NEW, not yet trusted", safety[0])
        self.assertEqual(safety[1], f"***     {number}")
        self.assertEqual(self.type("/trust bob"),
                         [f"*** Pinned bob's new key {identity_fingerprint(change.new_key)}. Type /connect bob to talk."])
        self.assertEqual(self.client.new_keys, [("bob", change.new_key)])
        self.assertIn("no changed key for bob", self.type("/trust bob")[0])

    def test_trust_without_change(self) -> None:
        self.assertIn("no changed key for bob", self.type("/trust bob")[0])
        self.assertEqual(self.client.new_keys, [])

    def test_key_change_ending_conversation(self) -> None:
        conversation = self.open_with()
        change = KeyChanged("bob", key("old-bob"), key("new-bob"))
        conversation.end(Ended(False, str(change), by_peer=False, error=change))
        self.assertTrue(self.view.take()[0].startswith("!!! WARNING: bob's identity key has CHANGED"))
        self.type("/trust bob")
        self.assertEqual(self.client.new_keys, [("bob", change.new_key)])

    def test_safety_in_conversation(self) -> None:
        conversation = self.open_with()
        shown = self.type("/safety")
        self.assertEqual(shown[1], f"***     {conversation.safety_number}")
        self.assertIn(conversation.peer_fingerprint, shown[3])
        self.assertIn(identity_fingerprint(self.client.identity.identity_public), shown[2])

    def test_safety_from_pin(self) -> None:
        self.client.pins["bob"] = key("bob")
        self.assertIn("the key you pinned", self.type("/safety bob")[0])
        self.assertIn("no key for carol", self.type("/safety carol")[0])

    def test_verify_started_here(self) -> None:
        conversation = self.open_with()
        self.assertIn("Asked bob to check the secret", self.type("/verify our cat")[0])
        self.assertEqual(conversation.smp, [("start", "our cat")])
        conversation.verified = Verification(How.SMP, 100)  # as the library records it, before telling
        conversation.emit("smp", SMPResult(True))
        self.assertIn("VERIFIED", self.view.take()[0])
        self.assertEqual(self.view.prompt, "[bob, verified] > ")
        self.assertIn("VERIFIED by a shared secret", self.type("/safety")[0])

    def test_verify_answering_peer(self) -> None:
        conversation = self.open_with()
        conversation.emit("smp", SMPRequested())
        self.assertIn("bob asks you to check a shared secret", self.view.take()[0])
        self.assertEqual(self.type("/verify our cat"), ["*** Checking the secret with bob ..."])
        self.assertEqual(conversation.smp, [("respond", "our cat")])
        conversation.emit("smp", SMPResult(False))
        shown = self.view.take()
        self.assertTrue(shown[0].startswith("!!! The secret check with bob FAILED"))
        self.assertEqual(self.view.prompt, "[bob] > ")

    def test_verify_again_restarts(self) -> None:
        from relaychat.crypto.smp import SMPUsageError

        conversation = self.open_with()
        self.type("/verify one")

        def busy(secret: str) -> None:
            conversation.smp_start = FakeConversation.smp_start.__get__(conversation)  # type: ignore[method-assign]
            raise SMPUsageError("a check is under way")

        conversation.smp_start = busy  # type: ignore[method-assign]
        self.type("/verify two")
        self.assertEqual(conversation.smp, [("start", "one"), ("abort", ""), ("start", "two")])

    def test_smp_aborted(self) -> None:
        conversation = self.open_with()
        conversation.emit("smp", SMPAborted("bob stopped the secret check."))
        self.assertEqual(self.view.take(), ["*** bob stopped the secret check."])  # said once, not doubled

    # -- directory and mail

    def test_who(self) -> None:
        self.client.who_result = [User("bob", key("bob")), User("Alice", key("alice"))]
        self.assertEqual(self.type("/who"), ["*** Online (2): Alice, bob"])

    def test_whois(self) -> None:
        shown = self.type("/whois bob")
        self.assertEqual(shown, [f"*** bob is online; key {identity_fingerprint(key('bob'))} (the key you pinned, as the relay claims)."])

    def test_mail(self) -> None:
        self.assertEqual(self.type("/mail bob see you"),
                         ["*** Sealed mail for bob is stored on the relay until they connect."])
        self.assertEqual(self.client.mail, [("bob", "see you")])

    def test_mail_no_such_user(self) -> None:
        self.client.mail_result = defer.fail(RelayError("no-such-user", "no", "LOOKUP"))
        self.assertEqual(self.type("/mail zed hi"), ["*** Nobody is registered as zed on this relay."])

    def test_mail_key_changed(self) -> None:
        self.client.mail_result = defer.fail(KeyChanged("bob", key("old-bob"), key("new-bob")))
        self.assertTrue(self.type("/mail bob hi")[0].startswith("!!! WARNING"))

    def test_mail_received(self) -> None:
        self.client.observers["mail"](ReceivedMail(1, "bob", 42, "hello\x1b]0;x\x07", b"m" * 16, "ffff"))
        self.assertEqual(self.view.take(), ["*** Mail from bob, sent 42:", "<bob> hello\\x1b]0;x\\x07"])

    def test_mail_problems(self) -> None:
        self.client.observers["mail"](MailProblem(1, "bob", 42, MailError("It did not open.")))
        self.assertEqual(self.view.take(), ["*** It did not open. (It reached the relay at 42.)"])
        self.client.observers["mail"](MailProblem(2, "bob", 42, KeyChanged("bob", key("old-bob"), key("new-bob"))))
        self.assertTrue(self.view.take()[0].startswith("!!! WARNING"))

    def test_notice(self) -> None:
        self.client.observers["notices"]("maintenance \x1b[31mtonight")
        self.assertEqual(self.view.take(), ["*** Notice from the relay: maintenance \\x1b[31mtonight"])

    # -- the rest

    def test_bad_command(self) -> None:
        self.assertEqual(self.type("/frob"), ["*** There is no command /frob. Type /help for the list."])
        self.assertEqual(self.type("   "), [])

    def test_help(self) -> None:
        self.assertGreater(len(self.type("/help")), 10)
        self.assertIn("There is no command /nope", self.type("/help nope")[0])

    def test_disconnected(self) -> None:
        self.open_with()
        self.client.disconnected = Disconnected("kicked", "enough")
        self.client.observers["disconnect"](str(self.client.disconnected))
        shown = self.view.take()
        self.assertEqual(shown, ["*** The relay operator disconnected you: enough.", "*** Type /quit to leave."])
        self.assertEqual(self.view.prompt, "> ")
        self.assertEqual(self.type("/who"), ["*** Not connected to the relay. /quit leaves."])
        self.type("/quit")
        self.assertEqual(self.exits, [0])

    def test_quit(self) -> None:
        self.assertEqual(self.type("/quit"), ["*** Leaving ..."])
        self.assertEqual((self.client.quits, self.exits), (1, [0]))
        self.type("/quit")
        self.assertEqual((self.client.quits, self.exits), (1, [0]))

    def test_quit_waits_boundedly(self) -> None:
        self.client.quit_result = defer.Deferred()
        self.type("/quit")
        self.assertEqual(self.exits, [])
        self.clock.advance(QUIT_GRACE)
        self.assertEqual(self.exits, [0])

    def test_quit_hides_own_closing_lines(self) -> None:
        conversation = self.open_with()
        self.type("/quit")
        conversation.end(Ended(True, "closed", by_peer=False))
        self.assertEqual(self.view.take(), [])


class TrustControllerTests(unittest.TestCase):
    """Issue 11 in the program: relay identity, lasting verification, receipts."""

    setUp = ControllerTests.setUp
    type = ControllerTests.type
    open_with = ControllerTests.open_with

    def test_a_changed_relay_is_a_loud_stop_until_trust_relay(self) -> None:
        view, exits = FakeView(), []
        controller = ChatController(view, Presenter(format_time=str), self.clock, "relay:7733", exits.append)
        change = RelayChanged("relay:7733", bytes(32), bytes([1]) * 32)
        attempts: list[bytes | None] = []

        def connect(accept_relay_id: bytes | None = None) -> defer.Deferred:
            attempts.append(accept_relay_id)
            return defer.fail(change) if accept_relay_id is None else defer.succeed(FakeClient())
        controller.start(connect, "alice")
        shown = view.take()
        self.assertIn("!!! WARNING: the relay at relay:7733 has CHANGED its identity. Not registering.", shown)
        self.assertIn(f"!!!   now:        {change.new_fingerprint}", shown)
        self.assertEqual(exits, [], "waits for a decision")
        controller.handle_line("hello")
        self.assertIn("Not connected", view.take()[0])
        controller.handle_line("/trust-relay")
        shown = view.take()
        self.assertTrue(shown[0].startswith("*** Accepting the new identity"))
        self.assertIn("*** Connected to relay:7733 as Alice.", shown)
        self.assertEqual(attempts, [None, change.new_id], "only that very id is accepted")
        controller.handle_line("/trust-relay")
        self.assertIn("No relay is waiting", view.take()[0])

    def test_first_connection_to_a_relay_is_said(self) -> None:
        view = FakeView()
        client = FakeClient()
        client.relay_first_contact = True
        ChatController(view, Presenter(), self.clock, "relay:7733", self.exits.append).start(
            lambda: defer.succeed(client))
        self.assertTrue(any(line.startswith("*** First connection to relay:7733: its identity") for line in view.take()))

    def test_a_conversation_with_a_verified_key_starts_verified(self) -> None:
        self.type("/connect bob")
        conversation = FakeConversation("bob", first_contact=False)
        conversation.verified = Verification(How.SMP, 5)
        self.client.calls["bob"].callback(conversation)
        shown = self.view.take()
        self.assertEqual(shown[1], "*** VERIFIED: bob's key is the one you verified by a shared secret on 5.")
        self.assertEqual(self.view.prompt, "[bob, verified] > ")

    def test_verified_after_comparing_the_number(self) -> None:
        conversation = self.open_with()
        shown = self.type("/verified")
        self.assertTrue(shown[0].startswith("*** Recorded: you compared the safety number with bob"))
        self.assertIs(conversation.verified.how, How.SAFETY_NUMBER)
        self.assertEqual(self.view.prompt, "[bob, verified] > ")
        self.assertIn("VERIFIED by comparing the safety number", self.type("/safety")[0])

    def test_verified_without_a_conversation_uses_the_pin(self) -> None:
        self.assertIn("no key for carol", self.type("/verified carol")[0])
        self.client.pins["carol"] = key("carol")
        self.assertTrue(self.type("/verified carol")[0].startswith("*** Recorded"))
        self.assertIn("VERIFIED", self.type("/safety carol")[0])

    def test_contacts(self) -> None:
        self.assertEqual(self.type("/contacts"), ["*** You have no contacts on this relay yet."])
        self.client.pins["bob"] = key("bob")
        self.client.pins["carol"] = key("carol")
        self.client.verified["carol"] = Verification(How.SMP, 7)
        shown = self.type("/contacts")
        self.assertEqual(shown[0], "*** Contacts on this relay (2):")
        self.assertEqual(shown[1], "***   bob: not verified")
        self.assertEqual(shown[2], f"***     key {identity_fingerprint(key('bob'))}; first seen 10, last seen 20")
        self.assertEqual(shown[3], "***   carol: VERIFIED by a shared secret (7)")

    def test_contacts_with_a_damaged_pin(self) -> None:
        lines = Presenter().contacts([ContactInfo("bob", None, None, None, None)])
        self.assertEqual(lines[1].kind, Kind.WARNING)
        self.assertIn("the pin is damaged", lines[1].text)

    def test_each_message_is_marked_delivered(self) -> None:
        conversation = self.open_with()
        self.type("hello bob")
        conversation.emit("delivered", Delivery(1, "hello bob"))
        self.assertEqual(self.view.take(), ["*** delivered to bob: \u201chello bob\u201d"])

    def test_an_unclean_end_names_the_unconfirmed_messages(self) -> None:
        conversation = self.open_with()
        conversation.end(Ended(False, "The conversation with bob ended without their goodbye.", by_peer=True,
                               unconfirmed=("the meeting moved\u2026", "bring the keys"), unconfirmed_count=3))
        shown = self.view.take()
        self.assertEqual(shown[1:], [
            "*** bob never confirmed 3 of your messages; they may not have arrived:",
            "***     \u201cthe meeting moved\u2026\u201d",
            "***     \u201cbring the keys\u201d",
            "***     and 1 earlier ones",
        ])

    def test_mail_read(self) -> None:
        self.client.observers["mail"](MailRead("bob", "see you at 5", 40, 42))
        self.assertEqual(self.view.take(), ["*** bob read your mail \u201csee you at 5\u201d (sent 40) at 42."])

    def test_a_name_imitating_a_contact_is_a_warning(self) -> None:
        offer = FakeOffer("a1ice")
        offer.lookalike_of = "alice"
        self.client.observers["offers"](offer)
        shown = self.view.take()
        self.assertIn("!!! a1ice is NOT your contact alice: a new name that looks like theirs, "
                      "and no pinned key guards it.", shown)
        self.client.observers["mail"](ReceivedMail(1, "b0b", 42, "hi", b"m" * 16, "ffff", lookalike_of="bob"))
        self.assertTrue(self.view.take()[0].startswith("!!! b0b is NOT your contact bob"))
