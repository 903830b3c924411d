"""Reconnecting: the policy alone (Backoff, retry_after), the Reconnector on a
task.Clock with a fake connection, and the library against a real relay
daemon that is stopped and started again on the same port and data dir."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable, Generator, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

import relaychat.client as api
from relaychat.client import (
    Backoff,
    RelayChanged,
    Connected,
    Disconnected,
    GaveUp,
    LinkState,
    Lost,
    Reconnector,
    RelayError,
    ResumeFailed,
    Resumed,
    Resuming,
    Resumption,
    Retrying,
    retry_after,
)
from tests.daemon import Daemon

WAIT = 30.0


class BackoffTests(SynchronousTestCase):
    def test_exponential_capped(self) -> None:
        b = Backoff(initial=1, factor=2, maximum=10, jitter=0, random=lambda: 0.5)
        self.assertEqual([b.next_delay() for _ in range(6)], [1, 2, 4, 8, 10, 10])
        b.reset()
        self.assertEqual(b.next_delay(), 1)

    def test_jitter_spreads_within_the_bound(self) -> None:
        values = iter([0.0, 1.0, 0.5])
        b = Backoff(initial=4, factor=1, maximum=4, jitter=0.5, random=lambda: next(values))
        self.assertEqual([b.next_delay() for _ in range(3)], [4.0, 2.0, 3.0])

    def test_nonsense_refused(self) -> None:
        self.assertRaises(ValueError, Backoff, initial=0)
        self.assertRaises(ValueError, Backoff, jitter=2)

    def test_what_is_worth_a_retry(self) -> None:
        for code in ("lost", "draining", "idle", "busy", "timeout"):
            self.assertTrue(retry_after(Disconnected(code, "x")), code)
        for code in ("kicked", "banned", "replaced", "quit", "violations", "tls"):
            self.assertFalse(retry_after(Disconnected(code, "x")), code)
        self.assertTrue(retry_after(ConnectionRefusedError()))
        self.assertFalse(retry_after(RelayError("banned", "this nickname is banned", "REGISTER")))
        self.assertFalse(retry_after(RelayError("taken", "alice looks the same and is bound to another key", "REGISTER")))
        self.assertTrue(retry_after(RelayError("draining", "x", "REGISTER")))
        # A relay back with another identity: the user decides (/trust-relay), never a retry loop.
        self.assertFalse(retry_after(RelayChanged("relay:7733", bytes(32), b"\x01" * 32)))


class FakeClient:
    """Just what the Reconnector uses of a ChatClient."""

    def __init__(self) -> None:
        self.disconnected: Optional[Disconnected] = None
        self._disconnect: list[Callable[[str], None]] = []
        self.quits = 0

    def observe_conversations(self, observer: Any) -> None:
        pass

    def observe_offers(self, observer: Any) -> None:
        pass

    def observe_disconnect(self, observer: Callable[[str], None]) -> None:
        self._disconnect.append(observer)

    def lose(self, code: str = "lost") -> None:
        self.disconnected = Disconnected(code, "gone")
        for observer in self._disconnect:
            observer(str(self.disconnected))

    def quit(self) -> Deferred:
        self.quits += 1
        return succeed(None)


class ReconnectorClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.results: list[Any] = []  # what each connect() gives: a client or an exception
        self.clients: list[FakeClient] = []
        self.events: list[Any] = []
        self.link = Reconnector(self.clock, self.connect,
                                backoff=Backoff(initial=1, factor=2, maximum=8, jitter=0))
        self.link.observe(self.events.append)

    def connect(self) -> Deferred:
        outcome = self.results.pop(0) if self.results else FakeClient()
        if isinstance(outcome, BaseException):
            return fail(outcome)
        self.clients.append(outcome)
        return succeed(outcome)

    def test_lost_then_back_after_the_backoff(self) -> None:
        self.link.start()
        self.results = [ConnectionRefusedError(), ConnectionRefusedError()]
        self.clients[0].lose("draining")
        self.assertEqual(self.events[-1], Lost(self.clients[0].disconnected, 1.0))
        self.assertIs(self.link.state, LinkState.WAITING)
        self.clock.advance(1.0)
        self.assertIsInstance(self.events[-1], Retrying)
        self.assertEqual(self.events[-1].retry_in, 2.0)
        self.clock.advance(2.0)
        self.assertEqual(self.events[-1].retry_in, 4.0)
        self.assertEqual(len(self.clients), 1)
        self.clock.advance(3.9)
        self.assertEqual(len(self.clients), 1)  # not before its time
        self.clock.advance(0.1)
        self.assertEqual(self.events[-1], Connected(self.clients[1], again=True))
        self.assertIs(self.link.client, self.clients[1])
        self.clients[1].lose()
        self.assertEqual(self.events[-1].retry_in, 1.0)  # a success resets the backoff

    def test_kicked_is_not_retried(self) -> None:
        self.link.start()
        self.clients[0].lose("kicked")
        self.assertEqual(self.events[-1], Lost(self.clients[0].disconnected, None))
        self.assertIs(self.link.state, LinkState.STOPPED)
        self.clock.advance(1000)
        self.assertEqual(len(self.clients), 1)

    def test_banned_while_reconnecting_gives_up(self) -> None:
        self.link.start()
        banned = RelayError("banned", "this nickname is banned", "REGISTER")
        self.results = [banned]
        self.clients[0].lose()
        self.clock.advance(1.0)
        self.assertEqual(self.events[-1], GaveUp(banned))
        self.clock.advance(1000)
        self.assertEqual(len(self.clients), 1)

    def test_stop_ends_the_waiting(self) -> None:
        self.link.start()
        self.clients[0].lose()
        self.link.stop()
        self.clock.advance(1000)
        self.assertEqual(len(self.clients), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_first_failure_is_the_callers(self) -> None:
        self.results = [ConnectionRefusedError()]
        self.failureResultOf(self.link.start(), ConnectionRefusedError)
        self.assertIs(self.link.state, LinkState.STOPPED)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FakeConversation:
    def __init__(self, key: bytes, first_contact: bool = False) -> None:
        self.nick = "bob"
        self.peer_identity = key
        self.first_contact = first_contact
        self.sent: list[str] = []
        self.closed = False

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close(self) -> Deferred:
        self.closed = True
        return succeed(None)


class ResumptionKeyTests(SynchronousTestCase):
    """A resumed conversation must show the key of the one that broke."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.link = Reconnector(self.clock, lambda: succeed(FakeClient()))
        self.events: list[Any] = []
        self.link.observe(self.events.append)
        self.waiting = Resumption("bob", True, b"k" * 32, 120.0, "lost")
        self.waiting.send("queued line")
        self.link._resumptions["bob"] = self.waiting  # white box: as _resume does

    def test_same_key_sends_what_waited(self) -> None:
        again = FakeConversation(b"k" * 32)
        self.link._back(self.waiting, again)  # white box: the call or the accept succeeded
        self.assertEqual(again.sent, ["queued line"])
        self.assertIsInstance(self.events[-1], Resumed)

    def test_another_key_or_a_first_contact_is_not_the_same_conversation(self) -> None:
        for again in (FakeConversation(b"x" * 32), FakeConversation(b"k" * 32, first_contact=True)):
            waiting = Resumption("bob", True, b"k" * 32, 120.0, "lost")
            waiting.send("queued line")
            self.link._resumptions["bob"] = waiting
            self.link._back(waiting, again)
            self.assertEqual(again.sent, [])
            self.assertTrue(again.closed)
            (failed,) = [e for e in self.events if isinstance(e, ResumeFailed) and e.resumption is waiting]
            self.assertEqual(failed.unsent, ("queued line",))
            self.assertIn("did not show the key pinned before", str(failed.error))


class FakeOffer:
    def __init__(self, key: bytes, pin: Any) -> None:
        self.nick = "bob"
        self.identity_pub = key
        self.pin = pin
        self.accepted: Optional[Deferred] = None

    def accept(self) -> Deferred:
        self.accepted = Deferred()
        return self.accepted


class ResponderTests(SynchronousTestCase):
    """The side that answered before accepts only an offer with the same pinned key."""

    def setUp(self) -> None:
        from relaychat.crypto.pins import PinStatus

        self.PinStatus = PinStatus
        self.link = Reconnector(Clock(), lambda: succeed(FakeClient()))
        self.program: list[Any] = []
        self.link.observe_offers(self.program.append)
        self.events: list[Any] = []
        self.link.observe(self.events.append)
        self.waiting = Resumption("bob", False, b"k" * 32, 120.0, "gone")
        self.link._resumptions["bob"] = self.waiting  # white box: as _resume does

    def test_the_same_key_is_accepted_without_asking(self) -> None:
        offer = FakeOffer(b"k" * 32, self.PinStatus.MATCH)
        self.link._offered(offer)  # white box: the client's offer observer
        self.assertEqual(self.program, [])
        assert offer.accepted is not None
        offer.accepted.callback(FakeConversation(b"k" * 32))
        self.assertIsInstance(self.events[-1], Resumed)

    def test_another_key_goes_to_the_person(self) -> None:
        for offer in (FakeOffer(b"x" * 32, self.PinStatus.CHANGED), FakeOffer(b"k" * 32, self.PinStatus.NEW)):
            self.link._offered(offer)
            self.assertIsNone(offer.accepted)
        self.assertEqual(len(self.program), 2)
        self.assertIs(self.link.resumption("bob"), self.waiting)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RelayRestartTests(TestCase):
    """A real ``twistd relaychat``, stopped and started on the same port and data dir."""

    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        (self.dir / "relay.toml").write_text("[limits]\npow_bits = 0\n")
        self.port = _free_port()
        self.relay = self.daemon()
        self.relay.start()
        self.addCleanup(lambda: self.relay.stop())

    def daemon(self) -> Daemon:
        return Daemon("--config", str(self.dir / "relay.toml"), "--data-dir", str(self.dir / "data"),
                      "--listen", f"tcp:{self.port}:interface=127.0.0.1", cwd=str(self.dir))

    @inlineCallbacks
    def restart(self) -> Generator:
        yield deferToThread(self.relay.stop)
        self.relay = self.daemon()
        yield deferToThread(self.relay.start)

    def link(self, nick: str) -> tuple[Reconnector, list[Any]]:
        identity, peers, seen = api.open_profile(self.dir / nick)
        link = Reconnector(reactor, lambda: api.connect(
            reactor, f"tcp:127.0.0.1:{self.port}", identity, nick, peers, seen_mail=seen),
            backoff=Backoff(initial=0.2, maximum=1.0), call_backoff=Backoff(initial=0.2, maximum=0.5))
        events: list[Any] = []
        link.observe(events.append)
        self.addCleanup(link.stop)
        return link, events

    @inlineCallbacks
    def until(self, what: str, probe: Callable[[], Any]) -> Generator:
        for _ in range(int(WAIT / 0.05)):
            found = probe()
            if found:
                return found
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"timed out waiting for {what}")

    @inlineCallbacks
    def test_reconnect_register_and_resume_after_restart(self) -> Generator:
        alice, alice_events = self.link("alice")
        bob, bob_events = self.link("bob")
        alice_client = yield alice.start()
        yield bob.start()
        offers: list[Any] = []
        bob.observe_offers(offers.append)
        calling = alice_client.call("bob")
        yield self.until("bob's offer", lambda: offers)
        bob_conversation = yield offers[0].accept()
        alice_conversation = yield calling
        first_number = alice_conversation.safety_number

        yield self.restart()

        # Both are told, both reconnect and register again by themselves.
        lost = yield self.until("alice's Lost", lambda: [e for e in alice_events if isinstance(e, Lost)])
        self.assertIsNotNone(lost[0].retry_in)
        self.assertIn(lost[0].error.code, ("draining", "lost"))
        for events in (alice_events, bob_events):
            self.assertTrue([e for e in events if isinstance(e, Resuming)])
        # A line typed while away waits in bob's Resumption.
        bob.resumption("alice").send("typed while the relay was down")
        for events in (alice_events, bob_events):
            yield self.until("reconnected", lambda: [e for e in events if isinstance(e, Connected) and e.again])
        resumed = yield self.until("alice resumed", lambda: [e for e in alice_events if isinstance(e, Resumed)])
        bob_resumed = yield self.until("bob resumed", lambda: [e for e in bob_events if isinstance(e, Resumed)])
        again = resumed[0].conversation
        self.assertIsNot(again, alice_conversation)  # a new handshake...
        self.assertNotEqual(again.sid, alice_conversation.sid)
        self.assertEqual(again.peer_identity, alice_conversation.peer_identity)  # ...with the same key
        self.assertEqual(again.safety_number, first_number)
        self.assertFalse(again.first_contact)
        self.assertEqual(bob_resumed[0].sent, 1)
        received: list[str] = []
        again.observe_messages(received.append)
        yield self.until("the waiting line", lambda: received)
        self.assertEqual(received, ["typed while the relay was down"])
        self.assertEqual([e for e in alice_events + bob_events if isinstance(e, ResumeFailed)], [])
        self.assertIsNot(bob_conversation, bob_resumed[0].conversation)

    @inlineCallbacks
    def test_unsent_lines_come_back_by_name(self) -> Generator:
        """The peer never comes back: what waited for it is returned, not lost."""
        alice, alice_events = self.link("alice")
        bob, _ = self.link("bob")
        alice.resume_window = 3.0
        alice_client = yield alice.start()
        bob_client = yield bob.start()
        offers: list[Any] = []
        bob.observe_offers(offers.append)
        calling = alice_client.call("bob")
        yield self.until("bob's offer", lambda: offers)
        yield offers[0].accept()
        yield calling
        bob.stop()  # bob's program ends without closing: the relay says "gone"
        bob_client.protocol.transport.abortConnection()
        yield self.until("resuming", lambda: alice.resumption("bob"))
        alice.resumption("bob").send("are you there?")
        failed = yield self.until("given up", lambda: [e for e in alice_events if isinstance(e, ResumeFailed)])
        self.assertEqual(failed[0].unsent, ("are you there?",))
        self.assertEqual(str(failed[0].error), "bob could not be reached again within 3 seconds.")
