"""Every event of issue 15 in words, one sentence each, the same on both sides.

Presenter and library sentences are checked exactly; the controller is
driven with fakes and a task.Clock through a lost connection, a
reconnection, a conversation resumed and one that could not be.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import Clock
from twisted.trial import unittest

from relaychat.chat.controller import ChatController
from relaychat.chat.presenter import Presenter, describe_failure, duration
from relaychat.client import (
    Connected,
    ConversationClosed,
    Disconnected,
    Ended,
    RelayError,
    ResumeFailed,
    Resumed,
    Resuming,
    Resumption,
)
from relaychat.client.channel import closed_reason
from relaychat.wire.refusals import ban_text, parse_ban, parse_holder, taken_text
from tests.test_presenter import FakeClient, FakeConversation, FakeView

P = Presenter()


def texts(lines: Any) -> list[str]:
    return [line.text for line in lines]


class RefusalTextTests(unittest.TestCase):
    """The two refusal texts the relay writes and clients read (protocol sections 2 and 4)."""

    def test_ban_round_trip(self) -> None:
        for kind in ("nick", "key", "address"):
            self.assertEqual(parse_ban(ban_text(kind, 59.2)), (kind, 60))
        self.assertIsNone(parse_ban("banned by the operator"))
        self.assertIsNone(parse_ban("nick soon"))
        self.assertIsNone(parse_ban("nick 99999999999999999999 forever"))

    def test_holder_round_trip(self) -> None:
        self.assertEqual(parse_holder(taken_text("Alice", lookalike=True)), ("Alice", True))
        self.assertEqual(parse_holder(taken_text("alice", lookalike=False)), ("alice", False))
        self.assertIsNone(parse_holder("bound to another key"))
        self.assertIsNone(parse_holder("\x1b[2J is bound to another key"))


class SentenceTests(unittest.TestCase):
    def test_lost_relay(self) -> None:
        self.assertEqual(texts(P.lost()), ["*** Lost the connection to the relay (it may be restarting); reconnecting…"])

    def test_reconnected(self) -> None:
        self.assertEqual(texts(P.reconnected("alice", "relay:7733")), ["*** Reconnected to relay:7733 as alice."])

    def test_kicked(self) -> None:
        self.assertEqual(texts(P.disconnected(Disconnected("kicked", "spamming"))),
                         ["*** The relay operator disconnected you: spamming.", "*** Type /quit to leave."])

    def test_kick_reason_is_inert(self) -> None:
        shown = texts(P.disconnected(Disconnected("kicked", "\x1b[2Jbye\n*** fake")))[0]
        self.assertNotIn("\x1b", shown)
        self.assertNotIn("\n", shown)

    def test_banned_says_which_ban_and_how_long(self) -> None:
        cases = {
            ban_text("nick", 3600): "The relay has banned your nickname for another 60 minutes.",
            ban_text("key", 2 * 86400): "The relay has banned your identity key for another 2 days.",
            ban_text("address", 30): "The relay has banned your address for another 30 seconds.",
            "banned by the operator": "The relay has banned this nickname, your key or your address.",
        }
        for text, sentence in cases.items():
            self.assertEqual(texts(P.disconnected(Disconnected("banned", text)))[0], "*** " + sentence)
            self.assertEqual(describe_failure(RelayError("banned", text, "REGISTER"), "alice"), sentence)

    def test_durations(self) -> None:
        self.assertEqual([duration(s) for s in (1, 45, 150, 3600, 5 * 3600, 3 * 86400)],
                         ["1 second", "45 seconds", "2 minutes", "60 minutes", "5 hours", "3 days"])

    def test_replaced_and_violations(self) -> None:
        self.assertIn("somewhere else", texts(P.disconnected(Disconnected("replaced", "you logged in elsewhere")))[0])
        self.assertIn("too many protocol errors", texts(P.disconnected(Disconnected("violations", "x")))[0])

    def test_lookalike_nickname(self) -> None:
        error = RelayError("taken", taken_text("alice", lookalike=True), "REGISTER")
        self.assertEqual(describe_failure(error, "A1ice"),
                         "A1ice is too similar to alice, which belongs to someone else; choose another with --nick.")
        same = RelayError("taken", taken_text("alice", lookalike=False), "REGISTER")
        self.assertEqual(describe_failure(same, "alice"),
                         "The nickname alice belongs to someone else's key on this relay; choose another with --nick.")

    def test_a_request_cut_off_by_the_connection(self) -> None:
        self.assertEqual(describe_failure(Disconnected("lost", "connection closed"), "bob"),
                         "What you asked about bob was cut off with the connection to the relay.")

    def test_peer_of_a_kicked_user(self) -> None:
        self.assertEqual(closed_reason("kicked", "bob"), "bob was disconnected by the relay")
        self.assertEqual(closed_reason("gone", "bob"), "bob lost the connection to the relay")
        self.assertEqual(closed_reason("\x1b[2J", "bob"), "the relay says: ?")

    def test_offer_withdrawn_is_one_sentence(self) -> None:
        self.assertEqual(texts(P.offer_withdrawn("bob", "The offer from bob timed out.")),
                         ["*** The offer from bob timed out."])

    def test_smp_aborted_is_one_sentence(self) -> None:
        self.assertEqual(texts(P.smp_aborted("bob", "bob stopped the secret check.")),
                         ["*** bob stopped the secret check."])

    def test_resuming_resumed_and_not(self) -> None:
        self.assertEqual(texts(P.resuming("bob", "draining")), [
            "*** The conversation with bob was cut off (the relay is restarting); it resumes with a new handshake "
            "when you are both back. Lines you type for bob wait until then."])
        self.assertEqual(texts(P.resumed("bob", 2))[:2], [
            "*** Re-established the conversation with bob: a new handshake, and bob's key is the one pinned before.",
            "*** Sent the 2 lines that waited for bob."])
        shown = texts(P.resume_failed("bob", "bob could not be reached again within 120 seconds.", ["one", "two\nlines"]))
        self.assertEqual(shown, [
            "*** bob could not be reached again within 120 seconds. The conversation with bob was not taken up again.",
            "*** Not sent to bob: one",
            "*** Not sent to bob: two lines",
        ])

    def test_a_long_unsent_line_is_shortened(self) -> None:
        (_, line) = texts(P.resume_failed("bob", "x", ["y" * 5000]))
        self.assertTrue(line.endswith("… (5000 characters)"))
        self.assertLess(len(line), 200)


class LinkClient(FakeClient):
    def lose(self, code: str, text: str = "gone") -> None:
        self.disconnected = Disconnected(code, text)
        self.observers["disconnect"](str(self.disconnected))


class ControllerLinkTests(unittest.TestCase):
    """The controller through a lost connection, a reconnection and resumed conversations."""

    def setUp(self) -> None:
        self.view = FakeView()
        self.clock = Clock()
        self.exits: list[int] = []
        self.clients = [LinkClient(), LinkClient()]
        self.made: list[LinkClient] = []
        self.controller = ChatController(self.view, Presenter(), self.clock, "relay:7733", self.exits.append)
        self.controller.start(self.connect)
        self.view.take()

    def connect(self) -> defer.Deferred:
        client = self.clients.pop(0)
        self.made.append(client)
        return defer.succeed(client)

    def test_calling_is_said_only_once_the_relay_took_the_offer(self) -> None:
        client = self.made[0]
        client.rings = False
        self.controller.handle_line("/connect bob")
        self.assertEqual(self.view.take(), [])
        client.calls["bob"].errback(RelayError("offline", "not connected", "OFFER"))
        self.assertEqual(self.view.take(), ["*** bob is not online. /mail bob <text> leaves them a sealed message."])
        self.controller.handle_line("/connect carol")
        client.ringing["carol"]()
        self.assertEqual(self.view.take(), ["*** Calling carol ... waiting for them to /accept."])

    def test_lost_reconnects_in_one_line_each_way(self) -> None:
        self.made[0].lose("lost", "connection closed")
        self.assertEqual(self.view.take(), ["*** Lost the connection to the relay (it may be restarting); reconnecting…"])
        self.assertEqual(self.view.prompt, "(reconnecting) > ")
        self.controller.handle_line("/who")
        self.assertEqual(self.view.take(), ["*** Not connected to the relay right now; reconnecting…"])
        self.clock.advance(60)
        self.assertEqual(self.view.take(), ["*** Reconnected to relay:7733 as Alice."])
        self.assertEqual(self.view.prompt, "> ")
        self.assertEqual(len(self.made), 2)

    def test_kicked_is_final(self) -> None:
        self.made[0].lose("kicked", "spamming")
        self.assertEqual(self.view.take(), ["*** The relay operator disconnected you: spamming.",
                                            "*** Type /quit to leave."])
        self.clock.advance(600)
        self.assertEqual(len(self.made), 1)

    def resumption(self, nick: str = "bob") -> Resumption:
        return Resumption(nick, True, b"k" * 32, 120.0, "lost")

    def resuming(self) -> tuple[FakeConversation, Resumption]:
        """A conversation with bob, and the Reconnector taking it up again once it breaks."""
        link = self.controller._link  # white box: the controller's Reconnector
        conversation = FakeConversation("bob")
        self.made[0].calls.clear()
        self.controller.handle_line("/connect bob")
        self.made[0].calls["bob"].callback(conversation)
        self.view.take()
        waiting = self.resumption()
        link._resumptions["bob"] = waiting  # white box: as the Reconnector does on a broken conversation
        link._events.emit(Resuming(waiting))
        return conversation, waiting

    def test_unconfirmed_lines_of_a_broken_conversation_are_named_not_resent(self) -> None:
        """Receipts meet reconnection: what the old session never saw confirmed is
        reported when it breaks, and taking the conversation up again does not resend it."""
        conversation, waiting = self.resuming()
        conversation.end(Ended(False, "cut off", by_peer=False, cause="lost",
                               unconfirmed=("the plan",), unconfirmed_count=1))
        self.assertEqual(self.view.take()[1:], [
            "*** bob never confirmed 1 of your messages; they may not have arrived:",
            "***     \u201cthe plan\u201d",
            "*** Taking the conversation up again does not send them again; repeat what bob lacks.",
        ])
        self.assertEqual(list(waiting.queued), [], "nothing of the old session waits to be resent")

    def test_typed_while_away_waits_then_goes(self) -> None:
        conversation, waiting = self.resuming()
        conversation.end(Ended(False, "cut off", by_peer=False, cause="lost"))
        self.assertEqual(len(self.view.take()), 1, "one line: cut off, resumes")
        self.assertEqual(self.view.prompt, "[bob, waiting] > ")
        self.controller.handle_line("still there?")
        self.assertEqual(self.view.take(), [
            "<Alice> still there?", "*** Not sent yet: it goes to bob when the conversation is back."])
        self.assertEqual(list(waiting.queued), ["still there?"])
        link = self.controller._link  # white box: the controller's Reconnector
        del link._resumptions["bob"]
        again = FakeConversation("bob", first_contact=False)
        link._events.emit(Resumed(waiting, again, 1))
        shown = self.view.take()
        self.assertEqual(shown[0], "*** Re-established the conversation with bob: a new handshake, and bob's key "
                                   "is the one pinned before.")
        self.assertEqual(self.view.prompt, "[bob] > ")
        self.controller.handle_line("and now?")
        self.assertEqual(again.sent, ["and now?"])

    def test_no_second_call_while_resuming(self) -> None:
        link = self.controller._link  # white box
        link._resumptions["bob"] = self.resumption()
        self.controller.handle_line("/connect bob")
        self.assertEqual(self.view.take(), [
            "*** The conversation with bob is being taken up again; /close bob stops that."])
        self.assertNotIn("bob", self.made[0].calls)
        self.controller.handle_line("/close bob")
        self.assertIsNone(link.resumption("bob"))
        self.assertIn("You stopped waiting for bob.", self.view.take()[0])

    def test_unsent_reported_by_name(self) -> None:
        link = self.controller._link  # white box
        waiting = self.resumption()
        waiting.queued.append("hello?")
        link._events.emit(ResumeFailed(waiting, ConversationClosed("bob could not be reached again within 120 seconds."),
                                       ("hello?",)))
        self.assertEqual(self.view.take()[1], "*** Not sent to bob: hello?")

    def test_reconnected_event_again_flag(self) -> None:
        link = self.controller._link  # white box
        link._events.emit(Connected(self.clients[0], again=True))
        self.assertEqual(self.view.take(), ["*** Reconnected to relay:7733 as Alice."])


class AlertingView(FakeView):
    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[str | None] = []
        self.titles: list[str] = []

    def alert(self, title: str | None = None) -> None:
        self.alerts.append(title)

    def set_title(self, title: str) -> None:
        self.titles.append(title)


class AlertTests(unittest.TestCase):
    def setUp(self) -> None:
        self.view = AlertingView()
        self.client = FakeClient()
        self.controller = ChatController(self.view, Presenter(), Clock(), "relay:7733", lambda status: None)
        self.controller.start(lambda: defer.succeed(self.client))

    def open_with(self, nick: str) -> FakeConversation:
        self.controller.handle_line(f"/connect {nick}")
        conversation = FakeConversation(nick)
        self.client.calls[nick].callback(conversation)
        return conversation

    def test_a_message_not_in_front_rings_until_seen(self) -> None:
        bob = self.open_with("bob")
        carol = self.open_with("carol")  # in front now
        carol.emit("messages", "in front: no bell")
        self.assertEqual(self.view.alerts, [])
        bob.emit("messages", "behind")
        self.assertEqual(self.view.alerts, ["relaychat: new message from bob"])
        self.controller.handle_line("/switch bob")
        self.assertEqual(self.view.titles, ["relaychat"])

    def test_an_offer_rings(self) -> None:
        from tests.test_presenter import FakeOffer

        self.client.observers["offers"](FakeOffer("dave"))
        self.assertEqual(self.view.alerts, ["relaychat: a call from dave"])
