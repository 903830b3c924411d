"""Two ChatClients over a real relay on loopback sockets, and a malicious relay.

The relay is the real one (Hub + RelayFactory on 127.0.0.1:0) with its
adapter subclassed only to record every byte it wrote and read, so a test
can assert that no plaintext ever passed through it. The malicious relay is
a man-in-the-middle line proxy between the clients and that relay: it can
flip bits, replay, drop, reorder, splice sessions and run its own Noise
handshake with a swapped static key. Every attack must end the affected
conversation with a sentence, and nothing unauthenticated may be shown.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Generator, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import relaychat.client as api
from relaychat.client import (
    ChatClient,
    Conversation,
    Ended,
    IncomingOffer,
    MailProblem,
    ReceivedMail,
)
from relaychat.client.conversation import ConversationState
from relaychat.client.offer import OfferState
from relaychat.client.channel import PROTOCOL_NAME, SMPRequested, SMPResult, prologue
from relaychat.client.errors import (
    ConversationClosed,
    Declined,
    HandshakeFailed,
    KeyChanged,
    MailError,
    MessageRejected,
    RelayError,
)
from relaychat.client.seen import SeenMail
from relaychat.crypto.noise import HandshakeState
from relaychat.crypto.pins import KnownPeers, PinStatus
from relaychat.crypto.safety import identity_fingerprint
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.protocol import RelayFactory, RelayProtocol
from relaychat.server.store import Store
from relaychat.wire.codec import b64decode, b64encode
from relaychat.wire.lines import LineSplitter
from tests.memory_network import MemoryNetwork, driven, require_driven
from tests.support import identity

WAIT = 10.0  # virtual seconds (the Clock of a MemoryNetwork): a hang fails at this time-out, at once


class Inbox:
    """Collects what an observer is given; ``get()`` fires with the next item."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.items: list[Any] = []
        self._taken = 0
        self._waiting: list[Deferred] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        while self._waiting and self._taken < len(self.items):
            waiter = self._waiting.pop(0)
            self._taken += 1
            waiter.callback(self.items[self._taken - 1])

    def get(self) -> Deferred:
        d: Deferred = Deferred()
        if self._taken < len(self.items) and not self._waiting:
            self._taken += 1
            d.callback(self.items[self._taken - 1])
        else:
            self._waiting.append(d)
        return d.addTimeout(WAIT, self.clock)


# -- the relay, recording -----------------------------------------------------------


class RecordingRelayProtocol(RelayProtocol):
    def connectionMade(self) -> None:
        self.factory.live.add(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.factory.record.append(data)
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self.factory.record.append(data)
        super().write(data)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.factory.live.discard(self)


class RecordingRelayFactory(RelayFactory):
    def __init__(self, hub: Hub, clock: Clock) -> None:
        super().__init__(hub, clock)
        self.record: list[bytes] = []
        self.live: set[RecordingRelayProtocol] = set()

    def buildProtocol(self, addr: object) -> RecordingRelayProtocol:
        protocol = RecordingRelayProtocol(self.hub, self.clock)
        protocol.factory = self
        return protocol


# -- the malicious relay: a line proxy ---------------------------------------------------

Hook = Callable[["ProxyConnection", str, bytes], list[bytes]]


class ProxyConnection(Protocol):
    """One client's connection through the proxy. ``nick`` is sniffed from REGISTER."""

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy
        self.nick: Optional[str] = None
        self.upstream: Optional[_Upstream] = None
        self._up = LineSplitter(1 << 20)
        self._down = LineSplitter(1 << 20)
        self._early: list[bytes] = []

    def connectionMade(self) -> None:
        self.proxy.live.add(self)
        connectProtocol(self.proxy.relay, _Upstream(self)).addCallback(self._connected)

    def _connected(self, upstream: "_Upstream") -> None:
        self.upstream = upstream
        early, self._early = self._early, []
        for line in early:
            upstream.transport.write(line + b"\n")

    def dataReceived(self, data: bytes) -> None:
        for line in self._up.feed(data):
            if line.startswith(b"REGISTER "):
                self.nick = line.split(b" ")[1].decode().lower()
            for out in self.proxy.hook(self, "up", line):
                self.send_up(out)

    def send_up(self, line: bytes) -> None:
        if self.upstream is None:
            self._early.append(line)
        else:
            self.upstream.transport.write(line + b"\n")

    def send_down(self, line: bytes) -> None:
        self.transport.write(line + b"\n")

    def from_relay(self, data: bytes) -> None:
        for line in self._down.feed(data):
            for out in self.proxy.hook(self, "down", line):
                self.send_down(out)

    def connectionLost(self, reason: Any = None) -> None:
        self.proxy.live.discard(self)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class _Upstream(Protocol):
    def __init__(self, downstream: ProxyConnection) -> None:
        self.downstream = downstream

    def connectionMade(self) -> None:
        self.downstream.proxy.live.add(self)

    def dataReceived(self, data: bytes) -> None:
        self.downstream.from_relay(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.downstream.proxy.live.discard(self)
        self.downstream.transport.loseConnection()


class Proxy(Factory):
    noisy = False

    def __init__(self, relay: IStreamClientEndpoint) -> None:
        self.relay = relay
        self.live: set[Protocol] = set()
        self.attack: Optional[Hook] = None

    def hook(self, conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
        if self.attack is None:
            return [line]
        return self.attack(conn, direction, line)

    def buildProtocol(self, addr: object) -> ProxyConnection:
        return ProxyConnection(self)


def frame_parts(line: bytes) -> Optional[tuple[str, bytes]]:
    if not line.startswith(b"FRAME "):
        return None
    _, sid, payload = line.split(b" ")
    return sid.decode(), b64decode(payload)


def frame_line(sid: str, payload: bytes) -> bytes:
    return f"FRAME {sid} {b64encode(payload)}".encode()


# -- fixture --------------------------------------------------------------------------------


class RelayTestCase(SynchronousTestCase):
    """The real relay and clients, connected in memory (tests/memory_network.py):
    what these tests check is the protocol and the crypto, not the sockets."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        require_driven(cls)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.network = MemoryNetwork(self.clock)
        self.store = Store(":memory:")
        self.hub = Hub(self.store, Limits(pow_bits=4), now=self.clock.seconds())
        self.relay = RecordingRelayFactory(self.hub, self.clock)
        self.proxy = Proxy(self.network.endpoint(self.relay))
        self.clients: list[ChatClient] = []
        self.offers: dict[str, Inbox] = {}
        self.accepted: dict[str, Inbox] = {}

    def tearDown(self) -> None:
        for client in self.clients:
            if client._protocol.connected:
                client._protocol.transport.loseConnection()
        self.network.settle()
        self.assertEqual((self.relay.live, self.proxy.live), (set(), set()), "connections left open")
        self.store.close()

    def assertFailure(self, d: Deferred[Any], *expected: type[BaseException]) -> Deferred[Any]:
        """Fires with the exception ``d`` fails with, which must be one of ``expected``
        (trial's asynchronous TestCase has this; a driven test is synchronous)."""
        def succeeded(result: Any) -> None:
            self.fail(f"{d!r} succeeded with {result!r}; expected one of {expected}")

        def failed(failure: Failure) -> BaseException:
            failure.trap(*expected)
            return failure.value
        return d.addCallbacks(succeeded, failed)

    def quiet(self) -> Deferred[None]:
        """Fires once everything sent so far has arrived and been handled."""
        return self.network.when_quiet()

    def directory(self, nick: str) -> str:
        if not hasattr(self, "_dirs"):
            self._dirs: dict[str, str] = {}
        if nick not in self._dirs:
            import os

            self._dirs[nick] = self.mktemp()
            os.makedirs(self._dirs[nick])
        return self._dirs[nick]

    def peers(self, nick: str) -> KnownPeers:
        return KnownPeers.in_directory(self.directory(nick))

    @inlineCallbacks
    def connect(self, nick: str, via_proxy: bool = False, who: Optional[str] = None,
                auto_accept: bool = True, **options: Any) -> Generator[Deferred, Any, ChatClient]:
        endpoint = self.network.endpoint(self.proxy if via_proxy else self.relay)
        client = yield api.connect(
            self.clock, endpoint, identity(who or nick), nick, self.peers(nick),
            seen_mail=SeenMail.in_directory(self.directory(nick)), handshake_timeout=WAIT, **options,
        )
        self.clients.append(client)
        self.offers[nick] = Inbox(self.clock)
        self.accepted[nick] = Inbox(self.clock)
        if auto_accept:
            def accept(offer: IncomingOffer) -> None:
                self.offers[nick](offer)
                # A failure is delivered as its exception, so tests can inspect it.
                offer.accept().addBoth(
                    lambda r: self.accepted[nick](r.value if isinstance(r, Failure) else r))
            client.observe_offers(accept)
        else:
            client.observe_offers(self.offers[nick])
        return client

    @inlineCallbacks
    def pair(self, via_proxy: bool = False) -> Generator[Deferred, Any, tuple]:
        alice = yield self.connect("alice", via_proxy)
        bob = yield self.connect("bob", via_proxy)
        a_conv = yield alice.call("bob")
        b_conv = yield self.accepted["bob"].get()
        self.assertIsInstance(b_conv, Conversation)
        return alice, bob, a_conv, b_conv

    def watch(self, conversation: Conversation) -> tuple[Inbox, Inbox]:
        messages, ends = Inbox(self.clock), Inbox(self.clock)
        conversation.observe_messages(messages)
        conversation.observe_end(ends)
        return messages, ends


# -- the happy path, and what the relay saw ---------------------------------------------------


class Conversations(RelayTestCase):
    @driven
    def test_handshake_and_messages_both_ways_without_plaintext_at_the_relay(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair()
        self.assertEqual(a_conv.safety_number, b_conv.safety_number)
        self.assertEqual(a_conv.peer_identity, identity("bob").identity_public)
        self.assertEqual(b_conv.peer_identity, identity("alice").identity_public)
        self.assertTrue(a_conv.first_contact and b_conv.first_contact)
        self.assertEqual(alice.known_peers.get(alice.server_id, "bob"), identity("bob").identity_public)
        a_msgs, _ = self.watch(a_conv)
        b_msgs, _ = self.watch(b_conv)
        secrets = ["the eagle lands at midnight", "bring the blue folder, not the red one",
                   "ünïcödé sécret ✓ with some length to it"]
        a_conv.send(secrets[0])
        b_conv.send(secrets[1])
        a_conv.send(secrets[2])
        self.assertEqual((yield b_msgs.get()), secrets[0])
        self.assertEqual((yield a_msgs.get()), secrets[1])
        self.assertEqual((yield b_msgs.get()), secrets[2])
        seen = b"".join(self.relay.record)
        self.assertIn(b"FRAME ", seen)
        for secret in secrets:
            raw = secret.encode()
            self.assertNotIn(raw, seen)
            for shift in range(3):  # its base64 at every alignment
                encoded = base64.b64encode(bytes(shift) + raw)
                core = encoded[4 if shift else 0:-4]
                self.assertNotIn(core, seen)

    @driven
    def test_second_session_matches_the_pin_and_keeps_the_safety_number(self) -> Generator:
        alice, bob, first, _ = yield self.pair()
        yield first.close()
        again = yield alice.call("bob")
        self.assertFalse(again.first_contact)
        self.assertEqual(again.safety_number, first.safety_number)

    @driven
    def test_clean_close(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair()
        b_msgs, b_end = self.watch(b_conv)
        a_conv.send("last words")
        yield a_conv.close()
        self.assertEqual((yield b_msgs.get()), "last words")
        ended = yield b_end.get()
        self.assertEqual(ended, Ended(True, "alice ended the conversation.", by_peer=True))
        self.assertTrue(a_conv.ended.clean)
        self.assertRaises(ConversationClosed, a_conv.send, "more")
        self.assertRaises(ConversationClosed, b_conv.send, "more")
        yield b_conv.close()  # closing what the peer closed is harmless
        yield bob.quit()
        yield self.quiet()
        self.assertEqual(self.hub.stats.errors, 0, "closing must not cause relay errors")

    @driven
    def test_states_through_a_conversations_life(self) -> Generator:
        """Open once verified; ENDED while the relay session lasts (the peer's
        goodbye arrived), CLOSED once it is gone; forgotten by the client then."""
        alice, bob, a_conv, b_conv = yield self.pair()
        self.assertEqual((a_conv.state, b_conv.state), (ConversationState.OPEN, ConversationState.OPEN))
        self.assertEqual(alice.conversations, [a_conv])
        _, b_end = self.watch(b_conv)
        closing = a_conv.close()
        self.assertIs(a_conv.state, ConversationState.CLOSED)  # we said CLOSE: the session is gone for us
        self.assertEqual(alice.conversations, [])
        yield closing
        yield b_end.get()
        self.assertIn(b_conv.state, (ConversationState.ENDED, ConversationState.CLOSED))
        yield self.quiet()
        self.assertIs(b_conv.state, ConversationState.CLOSED)  # the relay's CLOSED followed
        self.assertEqual(bob.sessions.conversations(), [])

    @driven
    def test_states_of_a_declined_call(self) -> Generator:
        alice = yield self.connect("alice")
        yield self.connect("bob", auto_accept=False)
        call = alice.call("bob")
        offer = yield self.offers["bob"].get()
        yield self.quiet()  # alice has her OK OFFER too
        self.assertIs(offer.state, OfferState.OPEN)
        [calling] = alice.sessions.conversations()
        self.assertIs(calling.state, ConversationState.CALLING)
        self.assertEqual(alice.conversations, [])  # not verified: not listed
        yield offer.decline()
        self.assertIs(offer.state, OfferState.ANSWERED)
        yield self.assertFailure(call, Declined)
        self.assertIs(calling.state, ConversationState.CLOSED)
        self.assertEqual(alice.sessions.conversations(), [])

    @driven
    def test_peer_disconnecting_is_truncation(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair()
        _, a_end = self.watch(a_conv)
        bob._protocol.transport.loseConnection()
        ended = yield a_end.get()
        self.assertFalse(ended.clean)
        self.assertIn("bob lost the connection to the relay", ended.reason)
        self.assertEqual(ended.cause, "gone")
        self.assertTrue(ended.connection_broke)

    @driven
    def test_decline_and_offline(self) -> Generator:
        alice = yield self.connect("alice")
        yield self.connect("bob", auto_accept=False)
        call = alice.call("bob")
        offer = yield self.offers["bob"].get()
        self.assertEqual((offer.nick, offer.pin), ("alice", PinStatus.NEW))
        yield offer.decline()
        error = yield self.assertFailure(call, Declined)
        self.assertEqual(str(error), "bob declined the conversation.")
        error = yield self.assertFailure(alice.call("nobody"), RelayError)
        self.assertEqual(error.code, "no-such-user")

    @driven
    def test_withdrawn_offer(self) -> Generator:
        alice = yield self.connect("alice")
        yield self.connect("bob", auto_accept=False)
        call = alice.call("bob")
        offer = yield self.offers["bob"].get()
        yield self.quiet()  # alice has her OK OFFER too
        withdrawn = Inbox(self.clock)
        offer.observe_withdrawn(withdrawn)
        call.cancel()
        yield self.assertFailure(call, ConversationClosed)
        self.assertIn("withdrew", (yield withdrawn.get()))
        self.assertTrue(offer.withdrawn)
        self.failureResultOf(offer.accept(), ConversationClosed)

    @driven
    def test_who_and_lookup(self) -> Generator:
        alice = yield self.connect("alice")
        yield self.connect("Bob")
        users = yield alice.who()
        self.assertEqual(sorted(u.nick for u in users), ["Bob", "alice"])
        info = yield alice.lookup("bob")
        self.assertEqual((info.nick, info.online, info.pin), ("bob", True, PinStatus.NEW))
        self.assertEqual(info.static_pub, identity("Bob").static_public)

    @driven
    def test_changed_key_stops_the_conversation_until_accepted(self) -> Generator:
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        old = identity("old-alice").identity_public
        bob.known_peers.pin(bob.server_id, "alice", old)
        call = alice.call("bob")
        error = yield self.accepted["bob"].get()
        self.assertIsInstance(error, KeyChanged)
        self.assertIn("CHANGED", str(error))
        self.assertEqual(bob.known_peers.get(bob.server_id, "alice"), old, "the new key must not be pinned")
        # Alice verified Bob (message 2) before Bob refused her (message 3): her
        # side opens, then ends at once without a goodbye.
        a_conv = yield call
        _, a_end = self.watch(a_conv)
        self.assertFalse((yield a_end.get()).clean)
        bob.accept_new_key("alice", error.new_key)
        conversation = yield alice.call("bob")
        accepted = yield self.accepted["bob"].get()
        self.assertFalse(accepted.first_contact)
        self.assertEqual(accepted.safety_number, conversation.safety_number)

    @driven
    def test_shared_secret_check(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair()
        a_smp, b_smp = Inbox(self.clock), Inbox(self.clock)
        a_conv.observe_smp(a_smp)
        b_conv.observe_smp(b_smp)
        for secret_a, secret_b, equal in (("our first pet", "our first pet", True), ("red", "blue", False)):
            a_conv.smp_start(secret_a)
            self.assertEqual((yield b_smp.get()), SMPRequested())
            b_conv.smp_respond(secret_b)
            self.assertEqual((yield b_smp.get()), SMPResult(equal))
            self.assertEqual((yield a_smp.get()), SMPResult(equal))
        self.assertNotIn(b"our first pet", b"".join(self.relay.record))


class Mail(RelayTestCase):
    @inlineCallbacks
    def sent_while_offline(self, text: str) -> Generator:
        bob = yield self.connect("bob")
        yield bob.quit()
        alice = yield self.connect("alice")
        mail_id = yield alice.send_mail("bob", text)
        self.assertEqual(alice.known_peers.get(alice.server_id, "bob"), identity("bob").identity_public)
        return mail_id

    @driven
    def test_sealed_mail_is_delivered_when_the_peer_returns_and_acked(self) -> Generator:
        yield self.sent_while_offline("meet me at the old mill")
        self.assertEqual(len(self.store.pending_mail("bob")), 1)
        self.assertNotIn(b"old mill", b"".join(self.relay.record))
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        received = yield mail.get()
        self.assertIsInstance(received, ReceivedMail)
        self.assertEqual((received.sender, received.text), ("alice", "meet me at the old mill"))
        self.assertEqual(received.sender_fingerprint, identity_fingerprint(identity("alice").identity_public))
        yield bob.ping()  # the ACK went before the PING: the relay has handled it
        self.assertEqual(self.store.pending_mail("bob"), [])

    @driven
    def test_a_replayed_mail_is_not_shown_twice(self) -> Generator:
        yield self.sent_while_offline("only once")
        (stored,) = self.store.pending_mail("bob")
        self.store.add_mail("bob", "alice", stored.created, stored.body)  # the relay keeps a copy
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        yield mail.get()
        yield bob.ping()
        self.assertEqual(len(mail.items), 1)
        self.assertEqual(self.store.pending_mail("bob"), [], "the duplicate is acknowledged too")
        yield bob.quit()
        self.store.add_mail("bob", "alice", stored.created, stored.body)  # ...and at a later login
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        yield bob.ping()
        self.assertEqual(mail.items, [])

    @driven
    def test_a_mail_with_a_forged_sender_is_reported(self) -> Generator:
        yield self.sent_while_offline("from alice really")
        (stored,) = self.store.pending_mail("bob")
        self.store.delete_mail(stored.id, "bob")
        self.store.add_mail("bob", "carol", stored.created, stored.body)
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        problem = yield mail.get()
        self.assertIsInstance(problem, MailProblem)
        self.assertIsInstance(problem.error, MailError)
        self.assertIn("could not be opened", problem.reason)

    @driven
    def test_mail_from_a_changed_key_stays_on_the_relay(self) -> Generator:
        yield self.sent_while_offline("are you there")
        peers = self.peers("bob")
        peers.pin(self.hub.server_id, "alice", identity("old-alice").identity_public)
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        problem = yield mail.get()
        self.assertIsInstance(problem.error, KeyChanged)
        yield bob.ping()
        self.assertEqual(len(self.store.pending_mail("bob")), 1)

    @driven
    def test_no_mail_to_a_changed_key(self) -> Generator:
        alice = yield self.connect("alice")
        yield self.connect("bob")
        alice.known_peers.pin(alice.server_id, "bob", identity("old-bob").identity_public)
        yield self.assertFailure(alice.send_mail("bob", "hello"), KeyChanged)
        self.assertEqual(self.store.pending_mail("bob"), [])


# -- the malicious relay ---------------------------------------------------------------------


class MaliciousRelay(RelayTestCase):
    """A man in the middle between the clients and the relay."""

    @inlineCallbacks
    def attacked(self, attack: Callable[[bytes], list[bytes]], messages: int = 2) -> Generator:
        """Open a conversation through the proxy, then apply ``attack`` to the
        transport frames going down to bob while alice sends ``messages``."""
        alice, bob, a_conv, b_conv = yield self.pair(via_proxy=True)
        b_msgs, b_end = self.watch(b_conv)
        _, a_end = self.watch(a_conv)
        a_conv.send("before the attack")
        self.assertEqual((yield b_msgs.get()), "before the attack")

        def hook(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            if conn.nick == "bob" and direction == "down" and line.startswith(b"FRAME "):
                return attack(line)
            return [line]
        self.proxy.attack = hook
        for i in range(messages):
            a_conv.send(f"message {i}")
        ended = yield b_end.get()
        self.assertIsInstance(ended.error, MessageRejected)
        self.assertIn("failed authentication", ended.reason)
        self.assertFalse(ended.clean)
        alice_ended = yield a_end.get()
        self.assertFalse(alice_ended.clean)
        self.assertIn("may have been lost", alice_ended.reason)
        return b_msgs.items[1:]

    @driven
    def test_bit_flip(self) -> Generator:
        def flip(line: bytes) -> list[bytes]:
            sid, payload = frame_parts(line)
            return [frame_line(sid, bytes([payload[0] ^ 1]) + payload[1:])]
        shown = yield self.attacked(flip, messages=1)
        self.assertEqual(shown, [])

    @driven
    def test_replay(self) -> Generator:
        shown = yield self.attacked(lambda line: [line, line], messages=1)
        self.assertEqual(shown, ["message 0"], "shown once, the copy detected")

    @driven
    def test_drop(self) -> Generator:
        dropped: list[bytes] = []

        def drop(line: bytes) -> list[bytes]:
            if not dropped:
                dropped.append(line)
                return []
            return [line]
        shown = yield self.attacked(drop)
        self.assertEqual(shown, [])

    @driven
    def test_reorder(self) -> Generator:
        held: list[bytes] = []

        def reorder(line: bytes) -> list[bytes]:
            if not held:
                held.append(line)
                return []
            return [line, held.pop()]
        shown = yield self.attacked(reorder)
        self.assertEqual(shown, [])

    @driven
    def test_dropped_goodbye_is_reported_as_truncation(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair(via_proxy=True)
        _, b_end = self.watch(b_conv)

        def drop_frames(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            return [] if conn.nick == "bob" and line.startswith(b"FRAME ") else [line]
        self.proxy.attack = drop_frames
        yield a_conv.close()
        ended = yield b_end.get()
        self.assertFalse(ended.clean)
        self.assertIn("may have been lost", ended.reason)

    @inlineCallbacks
    def swapped(self, binding_of: str, pinned: Optional[bytes]) -> Generator:
        """Mallory (the relay) answers alice's message 1 herself, with her own
        static key and the binding of ``binding_of``; bob never sees it."""
        alice = yield self.connect("alice", via_proxy=True)
        yield self.connect("bob", via_proxy=True)
        if pinned is not None:
            alice.known_peers.pin(alice.server_id, "bob", pinned)

        def mitm(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            parts = frame_parts(line)
            if conn.nick == "alice" and direction == "up" and parts is not None:
                sid, msg1 = parts
                mallory = HandshakeState(PROTOCOL_NAME, False, prologue(sid, "alice", "bob"),
                                         s=identity("mallory").static_private)
                mallory.read_message(msg1)
                conn.send_down(frame_line(sid, mallory.write_message(identity(binding_of).binding())))
                self.proxy.attack = None
                return []
            return [line]
        self.proxy.attack = mitm
        error = yield self.assertFailure(alice.call("bob"), HandshakeFailed)
        bob_result = yield self.accepted["bob"].get()
        self.assertIsInstance(bob_result, HandshakeFailed)
        return alice, error

    @driven
    def test_static_key_swap_with_the_genuine_binding(self) -> Generator:
        alice, error = yield self.swapped("bob", pinned=None)
        self.assertNotIsInstance(error, KeyChanged)
        self.assertIn("did not certify the key used in this conversation", str(error))
        self.assertIsNone(alice.known_peers.get(alice.server_id, "bob"), "nothing pinned on failure")

    @driven
    def test_static_key_swap_with_the_relays_own_identity(self) -> Generator:
        genuine = identity("bob").identity_public
        alice, error = yield self.swapped("mallory", pinned=genuine)
        self.assertIsInstance(error, KeyChanged)
        self.assertEqual(error.new_key, identity("mallory").identity_public)
        self.assertEqual(alice.known_peers.get(alice.server_id, "bob"), genuine)

    @driven
    def test_splicing_two_sessions(self) -> Generator:
        """The relay delivers each session's first message in the other session."""
        alice = yield self.connect("alice", via_proxy=True)
        yield self.connect("bob", via_proxy=True)
        held: list[tuple[str, bytes]] = []

        def splice(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            parts = frame_parts(line)
            if conn.nick == "bob" and direction == "down" and parts is not None:
                held.append(parts)
                if len(held) == 2:
                    (sid1, msg1), (sid2, msg2) = held
                    self.proxy.attack = None
                    return [frame_line(sid2, msg1), frame_line(sid1, msg2)]
                return []
            return [line]
        self.proxy.attack = splice
        first, second = alice.call("bob"), alice.call("bob")
        for call in (first, second):
            error = yield self.assertFailure(call, HandshakeFailed)
            self.assertIn("belongs to another session", str(error))
        for _ in range(2):
            result = yield self.accepted["bob"].get()
            self.assertIsInstance(result, HandshakeFailed)

    @driven
    def test_garbage_frames_never_crash(self) -> Generator:
        alice, bob, a_conv, b_conv = yield self.pair(via_proxy=True)
        _, b_end = self.watch(b_conv)

        def garbage(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            parts = frame_parts(line)
            if conn.nick == "bob" and parts is not None:
                return [b"FRAME " + parts[0].encode() + b" !!notbase64!!"]
            return [line]
        self.proxy.attack = garbage
        a_conv.send("x")
        ended = yield b_end.get()
        self.assertIsInstance(ended.error, MessageRejected)
        # Said as the peer's doing; never as a relay that did not deliver.
        self.assertEqual(ended.reason, "alice's client sent something unreadable; the conversation ended.")
        self.assertNotIn("did not deliver", ended.reason)


class Profile(TestCase):
    """``open_profile``: the identity is created once, 0600, optionally passphrase-protected."""

    def test_created_on_first_run_then_loaded(self) -> None:
        import os
        import stat

        directory = self.mktemp()
        first, peers, seen = api.open_profile(directory)
        for name in ("identity.pem", "static.pem"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode), 0o600)
        again, _, _ = api.open_profile(directory)
        self.assertEqual(again.identity_public, first.identity_public)
        self.assertEqual(peers.path, KnownPeers.in_directory(directory).path)
        self.assertEqual(seen.path.parent, peers.path.parent)

    def test_passphrase(self) -> None:
        from relaychat.crypto import keyfiles

        self.patch(keyfiles, "SCRYPT_N", 2**10)
        directory = self.mktemp()
        created, _, _ = api.open_profile(directory, b"correct horse")
        self.assertRaises(keyfiles.PassphraseRequired, api.open_profile, directory)
        self.assertRaises(keyfiles.WrongPassphrase, api.open_profile, directory, b"wrong")
        loaded, _, _ = api.open_profile(directory, b"correct horse")
        self.assertEqual(loaded.identity_public, created.identity_public)


class Fixture(SynchronousTestCase):
    def test_a_yielding_test_must_be_driven(self) -> None:
        """A synchronous test case would not wait for an inlineCallbacks test: it
        would pass without having run, so such a class is refused outright."""
        with self.assertRaises(TypeError):
            class Forgotten(RelayTestCase):
                @inlineCallbacks
                def test_never_run(self) -> Generator:
                    yield None
