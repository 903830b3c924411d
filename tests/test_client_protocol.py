"""The relay line protocol, client side, over an in-memory transport (sections 1-9)."""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.errors import Disconnected, RelayError, TooMuchWork
from relaychat.client.protocol import (
    HelloInfo,
    LookupResult,
    Registered,
    RelayClientProtocol,
    RelayEvents,
    WhoResult,
)
from relaychat.crypto.identity import MAX_POW_BITS, pow_ok, verify_registration
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.protocol import RelayFactory
from relaychat.server.store import Store
from relaychat.wire.codec import b64decode, b64encode
from tests.support import identity

SERVER_ID = bytes(range(32))
HELLO = f"OK HELLO 1 {b64encode(SERVER_ID)} max_line=2048 max_frame=1024 max_mail=512 future=yes"
SID = "0123456789abcdef"


class Recorder(RelayEvents):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def relay_offered(self, sid: str, nick: str, identity_pub: bytes) -> None:
        self.seen.append(("offered", sid, nick, identity_pub))

    def relay_accepted(self, sid: str) -> None:
        self.seen.append(("accepted", sid))

    def relay_closed(self, sid: str, reason: str) -> None:
        self.seen.append(("closed", sid, reason))

    def relay_frame(self, sid: str, payload: bytes) -> None:
        self.seen.append(("frame", sid, payload))

    def relay_frame_error(self, sid: str, error: RelayError) -> None:
        self.seen.append(("frame-error", sid, error.code, error.text))

    def relay_frame_unreadable(self, sid: str) -> None:
        self.seen.append(("frame-unreadable", sid))

    def relay_mail(self, mail_id: int, sender: str, time: int, payload: bytes) -> None:
        self.seen.append(("mail", mail_id, sender, time, payload))

    def relay_notice(self, text: str) -> None:
        self.seen.append(("notice", text))

    def relay_bye(self, code: str, text: str) -> None:
        self.seen.append(("bye", code, text))

    def relay_disconnected(self, error: Disconnected) -> None:
        self.seen.append(("disconnected", error.code))


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events = Recorder()
        self.protocol = RelayClientProtocol(self.events, self.clock)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def sent(self) -> list[str]:
        data = self.transport.value().decode()
        self.transport.clear()
        return data.splitlines()

    def feed(self, *lines: str) -> None:
        self.protocol.dataReceived("".join(line + "\n" for line in lines).encode())

    def hello(self) -> HelloInfo:
        d = self.protocol.hello()
        self.assertEqual(self.sent(), ["HELLO 1"])
        self.feed(HELLO)
        return self.successResultOf(d)


class Replies(Base):
    def test_hello_adopts_limits(self) -> None:
        info = self.hello()
        self.assertEqual(info, HelloInfo("1", SERVER_ID, 2048, 1024, 512, {"future": "yes"}))
        self.assertEqual(self.protocol.splitter.max_line, 2048)

    def test_replies_are_matched_first_in_first_out(self) -> None:
        self.hello()
        lookup = self.protocol.lookup("bob")
        who = self.protocol.who()
        ping = self.protocol.ping("t1")
        offer = self.protocol.offer("carol")
        key = identity("bob")
        self.assertEqual(self.sent(), ["LOOKUP bob", "WHO", "PING t1", "OFFER carol"])
        self.feed(
            f"OK LOOKUP Bob {b64encode(key.identity_public)} {b64encode(key.static_public)} "
            f"{b64encode(key.static_sig)} online",
            f"USER Bob {b64encode(key.identity_public)}",
            f"USER alice {b64encode(identity('alice').identity_public)}",
            "OK WHO 2 7",
            "OK PING t1",
            "ERR OFFER offline carol is not connected",
        )
        self.assertEqual(self.successResultOf(lookup), LookupResult(
            "Bob", key.identity_public, key.static_public, key.static_sig, True))
        self.assertEqual(self.successResultOf(who), WhoResult(
            [("Bob", key.identity_public), ("alice", identity("alice").identity_public)], 2, 7))
        self.assertEqual(self.successResultOf(ping), "t1")
        error = self.failureResultOf(offer, RelayError).value
        self.assertEqual((error.code, error.text, error.command), ("offline", "carol is not connected", "OFFER"))
        self.assertIn("carol is not connected", str(error))

    def test_frame_errors_are_routed_by_session_not_queue(self) -> None:
        self.hello()
        ping = self.protocol.ping()
        self.protocol.send_frame(SID, b"abc")
        self.assertEqual(self.sent(), ["PING", f"FRAME {SID} {b64encode(b'abc')}"])
        self.feed(f"ERR FRAME no-session {SID} no open session with that id")
        self.assertNoResult(ping)
        self.feed("OK PING")
        self.assertIsNone(self.successResultOf(ping))
        self.assertEqual(self.events.seen, [("frame-error", SID, "no-session", "no open session with that id")])

    def test_register_signs_and_solves_the_proof_of_work(self) -> None:
        self.hello()
        me = identity("alice")
        d = self.protocol.register("Alice", me)
        self.assertEqual(self.sent(), [
            f"REGISTER Alice {b64encode(me.identity_public)} {b64encode(me.static_public)} {b64encode(me.static_sig)}"
        ])
        challenge = bytes(range(100, 132))
        self.feed(f"OK REGISTER alice {b64encode(challenge)} 8")
        (prove,) = self.sent()
        _, signature, nonce = prove.split(" ")
        self.assertTrue(verify_registration(SERVER_ID, challenge, me.identity_public, me.static_public,
                                            me.static_sig, "alice", b64decode(signature)))
        self.assertTrue(pow_ok(challenge, b64decode(nonce), 8))
        self.feed("OK PROVE Alice new 3")
        self.assertEqual(self.successResultOf(d), Registered("Alice", "alice", True, 3))

    def test_register_refuses_more_work_than_it_does(self) -> None:
        """A relay asking for 2**60 hashes must not keep the client busy for
        ever: it says no at once, and sends no PROVE."""
        self.hello()
        d = self.protocol.register("alice", identity("alice"))
        self.sent()
        self.feed(f"OK REGISTER alice {b64encode(bytes(32))} {MAX_POW_BITS + 1}")
        error = self.failureResultOf(d, TooMuchWork).value
        self.assertEqual(error.bits, MAX_POW_BITS + 1)
        self.assertEqual(str(error), f"Not registering: the relay asks for {MAX_POW_BITS + 1} bits of proof of "
                                     f"work and this client does at most {MAX_POW_BITS}.")
        self.assertEqual(self.sent(), [])

    def test_register_errors(self) -> None:
        self.hello()
        d = self.protocol.register("alice", identity("alice"))
        self.sent()
        self.feed("ERR REGISTER taken alice is bound to another key")
        self.assertEqual(self.failureResultOf(d, RelayError).value.code, "taken")

    def test_unknown_error_codes_are_kept(self) -> None:
        self.hello()
        d = self.protocol.ack(5)
        self.feed("ERR ACK surprising something new")
        self.assertEqual(self.failureResultOf(d, RelayError).value.code, "surprising")

    def test_err_dash_answers_the_head(self) -> None:
        self.hello()
        d = self.protocol.ping()
        self.feed("ERR - too-long a line is at most 2048 bytes")
        self.assertEqual(self.failureResultOf(d, RelayError).value.code, "too-long")

    def test_malformed_result_fails_that_command_only(self) -> None:
        self.hello()
        lookup = self.protocol.lookup("bob")
        ping = self.protocol.ping()
        self.feed("OK LOOKUP bob not-base64 x y online", "OK PING")
        self.assertEqual(self.failureResultOf(lookup, RelayError).value.code, "bad-reply")
        self.successResultOf(ping)

    def test_a_reply_out_of_order_drops_the_connection(self) -> None:
        self.hello()
        d = self.protocol.ping()
        self.feed("OK WHO 0 0")
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(Exception("gone")))
        error = self.failureResultOf(d, Disconnected).value
        self.assertEqual(error.code, "protocol")
        self.assertIn("answered WHO when PING was expected", str(error))

    def test_a_tls_failure_is_lost_in_words(self) -> None:
        """An untrusted certificate ends the connection with a sentence saying
        what to do, not OpenSSL's error tuple."""
        d = self.protocol.ping()
        self.protocol.connectionLost(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")])))
        error = self.failureResultOf(d, Disconnected).value
        self.assertEqual(error.code, "tls")  # its own code: a refused certificate is not retried quietly
        self.assertIn("not signed by an authority this computer trusts", error.text)
        self.assertNotIn("SSL routines", error.text)

    def test_an_unasked_reply_drops_the_connection(self) -> None:
        self.feed("OK PING")
        self.assertTrue(self.transport.disconnecting)

    def test_cancelled_command_ignores_its_late_reply(self) -> None:
        self.hello()
        d = self.protocol.ping()
        d.cancel()
        self.failureResultOf(d)
        later = self.protocol.ping("two")
        self.feed("OK PING", "OK PING two")
        self.assertEqual(self.successResultOf(later), "two")

    def test_arguments_must_be_tokens(self) -> None:
        self.hello()
        self.failureResultOf(self.protocol.lookup("bob\nQUIT"), ValueError)
        self.failureResultOf(self.protocol.lookup("bob alice"), ValueError)
        self.failureResultOf(self.protocol.lookup(""), ValueError)
        self.assertEqual(self.sent(), [])


class Events(Base):
    def test_events_are_dispatched(self) -> None:
        self.hello()
        key = identity("carol").identity_public
        self.feed(
            f"OFFERED {SID} Carol {b64encode(key)}",
            f"ACCEPTED {SID}",
            f"FRAME {SID} {b64encode(b'payload')}",
            f"CLOSED {SID} gone",
            f"MAIL 42 carol 1700000000 {b64encode(b'sealed')}",
            "NOTICE maintenance at 10:00 UTC",
            "SOMETHINGNEW from a future relay",
            "BYE draining the relay is restarting",
        )
        self.assertEqual(self.events.seen, [
            ("offered", SID, "Carol", key),
            ("accepted", SID),
            ("frame", SID, b"payload"),
            ("closed", SID, "gone"),
            ("mail", 42, "carol", 1700000000, b"sealed"),
            ("notice", "maintenance at 10:00 UTC"),
            ("bye", "draining", "the relay is restarting"),
        ])

    def test_malformed_frame_is_reported_to_the_session(self) -> None:
        """The peer's doing, not a refusal of one of ours: a separate event."""
        self.hello()
        self.feed(f"FRAME {SID} not*base64")
        self.assertEqual(self.events.seen, [("frame-unreadable", SID)])

    def test_malformed_events_are_counted_not_fatal(self) -> None:
        self.hello()
        self.feed("OFFERED xyz", f"ACCEPTED {SID} extra", "CLOSED nothex!nothex!! gone", f"ACCEPTED {SID}")
        self.assertEqual(self.events.seen, [("accepted", SID)])
        self.assertEqual(self.protocol.malformed, 3)
        self.assertFalse(self.transport.disconnecting)

    def test_bye_then_loss_fails_pending_with_the_reason(self) -> None:
        self.hello()
        d = self.protocol.who()
        self.feed("BYE kicked by the operator")
        self.protocol.connectionLost(Failure(Exception("closed")))
        error = self.failureResultOf(d, Disconnected).value
        self.assertEqual((error.code, error.text), ("kicked", "by the operator"))
        self.assertEqual(self.events.seen[-1], ("disconnected", "kicked"))
        self.failureResultOf(self.protocol.ping(), Disconnected)
        self.assertRaises(Disconnected, self.protocol.send_frame, SID, b"x")


class LineLimits(Base):
    def test_relay_line_longer_than_max_line_drops_the_connection(self) -> None:
        self.hello()
        d = self.protocol.ping()
        self.protocol.dataReceived(b"NOTICE " + b"x" * 3000)
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(Exception("closed")))
        self.assertIn("longer than 2048", str(self.failureResultOf(d, Disconnected).value))

    def test_announced_max_line_is_capped_by_our_ceiling(self) -> None:
        from relaychat.client.protocol import MAX_LINE_CEILING

        d = self.protocol.hello()
        self.feed(HELLO.replace("max_line=2048", "max_line=999999999999"))
        self.assertEqual(self.successResultOf(d).max_line, 999999999999)
        self.assertEqual(self.protocol.splitter.max_line, MAX_LINE_CEILING)

    def test_endless_who_data_drops_the_connection(self) -> None:
        from relaychat.client.protocol import MAX_WHO_LINES

        self.hello()
        d = self.protocol.who()
        self.sent()
        self.feed(*[f"USER u{i} {'A' * 43}=" for i in range(MAX_WHO_LINES + 1)])
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(Exception("closed")))
        self.assertIn("USER lines", str(self.failureResultOf(d, Disconnected).value))

    def test_non_utf8_from_the_relay_drops_the_connection(self) -> None:
        self.protocol.dataReceived(b"NOTICE \xff\n")
        self.assertTrue(self.transport.disconnecting)

    def test_our_lines_respect_max_line_and_max_frame(self) -> None:
        self.hello()
        self.failureResultOf(self.protocol.lookup("x" * 3000), ValueError)
        self.assertRaises(ValueError, self.protocol.send_frame, SID, b"x" * 1025)
        self.assertEqual(self.sent(), [])

    def test_keepalive_ping_when_silent(self) -> None:
        self.hello()
        self.clock.advance(299)
        self.assertEqual(self.sent(), [])
        self.clock.advance(1)
        self.assertEqual(self.sent(), ["PING"])
        self.feed("OK PING")
        self.clock.advance(200)
        self.protocol.send_frame(SID, b"x")  # activity postpones the next ping
        self.sent()
        self.clock.advance(250)
        self.assertEqual(self.sent(), [])
        self.clock.advance(50)
        self.assertEqual(self.sent(), ["PING"])
        self.protocol.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_quit_fires_when_the_connection_is_gone(self) -> None:
        self.hello()
        d = self.protocol.quit()
        self.assertEqual(self.sent(), ["QUIT"])
        self.feed("BYE quit goodbye")
        self.assertNoResult(d)
        self.protocol.connectionLost(Failure(Exception("closed")))
        self.successResultOf(d)


class AgainstTheRealHub(SynchronousTestCase):
    """The same protocol wired to the relay's own adapter in memory (iosim)."""

    def test_register_offer_frame(self) -> None:
        clock = Clock()
        factory = RelayFactory(Hub(Store(":memory:"), Limits(pow_bits=4), now=0), clock)
        pumps, clients = [], []
        for name in ("alice", "bob"):
            events = Recorder()
            client = RelayClientProtocol(events, clock)
            server = factory.buildProtocol(None)
            _, _, pump = iosim.connectedServerAndClient(lambda s=server: s, lambda c=client: c)
            pumps.append(pump)
            clients.append((client, events))

        def flush() -> None:
            for _ in range(3):
                for pump in pumps:
                    pump.flush()

        results = []
        for (client, _), name in zip(clients, ("alice", "bob")):
            d = client.hello().addCallback(lambda _, c=client, n=name: c.register(n, identity(n)))
            flush()
            results.append(self.successResultOf(d))
        self.assertEqual([r.new for r in results], [True, True])
        (alice, alice_events), (bob, bob_events) = clients
        offer = alice.offer("bob")
        flush()
        sid, nick = self.successResultOf(offer)
        self.assertEqual(nick, "bob")
        self.assertEqual(bob_events.seen, [("offered", sid, "alice", identity("alice").identity_public)])
        accept = bob.accept(sid)
        flush()
        self.successResultOf(accept)
        self.assertIn(("accepted", sid), alice_events.seen)
        alice.send_frame(sid, b"\x00binary\xff")
        flush()
        self.assertEqual(bob_events.seen[-1], ("frame", sid, b"\x00binary\xff"))
        for client, _ in clients:
            client.transport.loseConnection()
        flush()


class WhatARelayCanMakeUsHold(SynchronousTestCase):
    """A relay flooding OFFERED at a program that has not answered (or not
    started observing) cannot make the client hold them without bound."""

    def setUp(self) -> None:
        from relaychat.client import ChatClient
        from relaychat.crypto.pins import KnownPeers

        self.client = ChatClient(Clock(), identity("alice"), KnownPeers(self.mktemp()))
        self.client.server_id = SERVER_ID  # as after HELLO
        self.transport = StringTransport()
        self.client._protocol.makeConnection(self.transport)

    def offer(self, count: int, start: int = 0) -> None:
        key = identity("bob").identity_public
        for i in range(start, start + count):
            self.client.relay_offered(f"{i:016x}", "bob", key)

    def test_unanswered_offers_past_the_cap_are_declined(self) -> None:
        from relaychat.client import MAX_UNANSWERED_OFFERS

        self.offer(MAX_UNANSWERED_OFFERS + 3)
        self.assertEqual(len(self.client.offers), MAX_UNANSWERED_OFFERS)
        declines = [line for line in self.transport.value().decode().splitlines() if line.startswith("DECLINE ")]
        self.assertEqual(declines, [f"DECLINE {i:016x}" for i in range(MAX_UNANSWERED_OFFERS, MAX_UNANSWERED_OFFERS + 3)])

    def test_unobserved_events_keep_only_the_newest(self) -> None:
        """Offers the relay withdrew still wait in the feed for a first
        observer; that backlog is bounded too, oldest dropped."""
        for round_ in range(12):
            self.offer(100, start=round_ * 100)
            for i in range(round_ * 100, round_ * 100 + 100):
                self.client.relay_closed(f"{i:016x}", "withdrawn")
        seen: list = []
        self.client.observe_offers(seen.append)
        self.assertEqual(len(seen), 1000)
        self.assertEqual(seen[0].sid, f"{200:016x}")

    def test_mail_before_anyone_observes_it_is_bounded_and_never_acked(self) -> None:
        from relaychat.client import UNOBSERVED_KEPT

        for i in range(UNOBSERVED_KEPT + 5):
            self.client.relay_mail(i, "bob", 0, b"sealed")
        self.assertEqual(len(self.client._raw_mail), UNOBSERVED_KEPT)
        self.assertEqual(self.client._raw_mail[0][0], 5)
        self.assertNotIn("ACK", self.transport.value().decode())


class ConversationStateTableTests(SynchronousTestCase):
    """The one table of a conversation's moves (relaychat.client.conversation)."""

    def test_every_state_can_end_and_close_and_nothing_leaves_closed(self) -> None:
        from relaychat.client.conversation import _TRANSITIONS, ConversationState, _Step

        for state in ConversationState:
            self.assertIs(_TRANSITIONS[(state, _Step.SESSION_GONE)], ConversationState.CLOSED)
            self.assertIn(_TRANSITIONS[(state, _Step.END)], (ConversationState.ENDED, ConversationState.CLOSED))
        leaving_closed = {to for (origin, _), to in _TRANSITIONS.items() if origin is ConversationState.CLOSED}
        self.assertEqual(leaving_closed, {ConversationState.CLOSED})

    def test_only_a_waiting_conversation_opens_a_session_and_only_an_open_session_verifies(self) -> None:
        from relaychat.client.conversation import _TRANSITIONS, ConversationState, _Step

        opening = {origin for (origin, step) in _TRANSITIONS if step is _Step.SESSION_OPEN}
        self.assertEqual(opening, {ConversationState.CALLING, ConversationState.ACCEPTING})
        verifying = {origin for (origin, step) in _TRANSITIONS if step is _Step.VERIFIED}
        self.assertEqual(verifying, {ConversationState.HANDSHAKE, ConversationState.ACCEPTING})
        self.assertEqual({to for (_, step), to in _TRANSITIONS.items() if step is _Step.VERIFIED},
                         {ConversationState.OPEN})

