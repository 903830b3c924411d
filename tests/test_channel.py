"""The end-to-end channel and sealed mail, sans I/O (docs/protocol.rst sections 10-14).

Two channels are wired back to back by hand, so every attack a relay could
make on the frames between them (flip, replay, reorder, drop, splice, key
swap) is one line of test code. Each must end the channel with a sentence,
deliver nothing it did not authenticate, and never raise.
"""

from __future__ import annotations

from typing import Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.client import channel as channel_module
from relaychat.client import mail, receipts
from relaychat.client.channel import (
    PROTOCOL_NAME,
    REKEY_INTERVAL,
    Channel,
    ChannelFailed,
    ChannelState,
    Event,
    FixedPin,
    HandshakeComplete,
    MessageReceived,
    MessageType,
    PeerClosed,
    SendFrame,
    SMPAborted,
    SMPRequested,
    SMPResult,
    MAX_MESSAGE_BYTES,
    UnknownMessage,
    max_text_bytes,
    prologue,
    split_text,
)
from relaychat.client.errors import (
    ConversationClosed,
    HandshakeFailed,
    KeyChanged,
    MailError,
    MessageRejected,
    MessageTooLong,
)
from relaychat.crypto.noise import HandshakeState
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import safety_number
from tests.support import identity

try:
    from noise.connection import Keypair as TheirKeypair
    from noise.connection import NoiseConnection as TheirConnection
except ImportError:  # test-only dependency (PyPI: noiseprotocol)
    TheirConnection = None

SID = "0123456789abcdef"
OTHER_SID = "fedcba9876543210"


def make(initiator: bool, me: str, peer: str, sid: str = SID, pin: Optional[bytes] = None,
         who: Optional[str] = None) -> Channel:
    return Channel(initiator=initiator, sid=sid, local_nick=me, peer_nick=peer,
                   identity=identity(who or me), pins=FixedPin(pin))


def frames(events: list[Event]) -> list[bytes]:
    return [e.payload for e in events if isinstance(e, SendFrame)]


def others(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, SendFrame)]


def failure(events: list[Event]) -> ChannelFailed:
    failed = [e for e in events if isinstance(e, ChannelFailed)]
    assert len(failed) == 1, events
    return failed[0]


def handshake(alice: Channel, bob: Channel) -> tuple[list[Event], list[Event]]:
    """Run the three messages; return (alice's events, bob's events)."""
    (msg1,) = alice.start()
    bob.start()
    bob_events = bob.receive_frame(msg1)
    (msg2,) = frames(bob_events)
    alice_events = alice.receive_frame(msg2)
    (msg3,) = frames(alice_events)
    bob_events += bob.receive_frame(msg3)
    return alice_events, bob_events


def say(src: Channel, dst: Channel, text: str) -> list[Event]:
    """``src`` sends ``text``; ``dst``'s receipt goes straight back. Returns
    ``dst``'s events other than frames, and checks the receipt named the message."""
    events = dst.receive_frame(src.send_text(text))
    number = src.last_text_number
    for frame in frames(events):
        (delivered,) = src.receive_frame(frame)
        assert delivered.numbers == (number,), delivered
    return others(events)


def opened() -> tuple[Channel, Channel]:
    alice, bob = make(True, "alice", "bob"), make(False, "bob", "alice")
    handshake(alice, bob)
    assert alice.state is bob.state is ChannelState.OPEN
    return alice, bob


class Handshake(SynchronousTestCase):
    def test_both_sides_verify_and_agree_on_the_safety_number(self) -> None:
        alice, bob = make(True, "alice", "bob"), make(False, "bob", "alice")
        a_events, b_events = handshake(alice, bob)
        (a_done,) = others(a_events)
        (b_done,) = others(b_events)
        self.assertIsInstance(a_done, HandshakeComplete)
        self.assertEqual(a_done.peer_identity, identity("bob").identity_public)
        self.assertEqual(b_done.peer_identity, identity("alice").identity_public)
        self.assertEqual(a_done.safety_number, b_done.safety_number)
        self.assertEqual(a_done.safety_number, safety_number(
            identity("alice").identity_public, "alice", identity("bob").identity_public, "bob"))
        self.assertEqual(a_done.pin, PinStatus.NEW)
        self.assertRegex(a_done.peer_fingerprint, r"^([0-9a-f]{4} ){9}[0-9a-f]{4}$")

    def test_safety_number_is_stable_across_sessions(self) -> None:
        first = others(handshake(make(True, "alice", "bob"), make(False, "bob", "alice"))[0])[0]
        second = others(handshake(make(True, "alice", "bob", OTHER_SID),
                                  make(False, "bob", "alice", OTHER_SID))[1])[0]
        self.assertEqual(first.safety_number, second.safety_number)

    def test_pinned_key_matches(self) -> None:
        alice = make(True, "alice", "bob", pin=identity("bob").identity_public)
        bob = make(False, "bob", "alice", pin=identity("alice").identity_public)
        a_events, b_events = handshake(alice, bob)
        self.assertEqual(others(a_events)[0].pin, PinStatus.MATCH)
        self.assertEqual(others(b_events)[0].pin, PinStatus.MATCH)

    def test_message_sizes_and_empty_first_payload(self) -> None:
        alice, bob = make(True, "alice", "bob"), make(False, "bob", "alice")
        (msg1,) = alice.start()
        self.assertEqual(len(msg1), 32)  # e only: section 10's empty payload
        bob.start()
        (msg2,) = frames(bob.receive_frame(msg1))
        self.assertEqual(len(msg2), 32 + 48 + 97 + 16)

    def test_nothing_is_sent_before_verification(self) -> None:
        alice, bob = make(True, "alice", "bob"), make(False, "bob", "alice")
        self.assertRaises(ConversationClosed, alice.send_text, "too early")
        (msg1,) = alice.start()
        bob.start()
        (msg2,) = frames(bob.receive_frame(msg1))
        # Bob has sent his binding but not checked Alice's yet: he must stay silent.
        self.assertRaises(ConversationClosed, bob.send_text, "too early")
        self.assertRaises(ConversationClosed, bob.smp_start, "secret")
        self.assertIsNone(bob.close())
        self.assertEqual(bob.state, ChannelState.FAILED)

    def test_pin_mismatch_is_key_changed(self) -> None:
        old = identity("old-bob").identity_public
        alice = make(True, "alice", "bob", pin=old)
        bob = make(False, "bob", "alice")
        (msg1,) = alice.start()
        bob.start()
        (msg2,) = frames(bob.receive_frame(msg1))
        events = alice.receive_frame(msg2)
        error = failure(events).error
        self.assertIsInstance(error, KeyChanged)
        self.assertEqual(error.nick, "bob")
        self.assertEqual(error.new_key, identity("bob").identity_public)
        self.assertEqual(error.pinned_key, old)
        self.assertIn("CHANGED", str(error))
        self.assertEqual(frames(events), [], "message 3 must not be sent after a key change")
        self.assertIsNone(alice.peer_identity)

    def test_remembered_binding_still_meets_the_pin(self) -> None:
        """A binding verified (and remembered) in one conversation is compared
        with the pin again in the next: a changed pin is still a key change."""
        first = make(True, "alice", "bob", pin=identity("bob").identity_public)
        _, _ = handshake(first, make(False, "bob", "alice"))
        self.assertEqual(first.state, ChannelState.OPEN)
        alice = make(True, "alice", "bob", sid=OTHER_SID, pin=identity("old-bob").identity_public)
        bob = make(False, "bob", "alice", sid=OTHER_SID)
        (msg1,) = alice.start()
        bob.start()
        (msg2,) = frames(bob.receive_frame(msg1))
        self.assertIsInstance(failure(alice.receive_frame(msg2)).error, KeyChanged)

    def test_responder_detects_changed_initiator_key(self) -> None:
        alice = make(True, "alice", "bob")
        bob = make(False, "bob", "alice", pin=identity("old-alice").identity_public)
        _, b_events = handshake(alice, bob)
        self.assertIsInstance(failure(b_events).error, KeyChanged)
        self.assertRaises(ConversationClosed, bob.send_text, "x")

    def test_tampered_handshake_messages(self) -> None:
        for index in range(3):
            alice, bob = make(True, "alice", "bob"), make(False, "bob", "alice")
            (msg,) = alice.start()
            bob.start()
            sender, receiver = alice, bob
            for step in range(index):
                out = frames(receiver.receive_frame(msg))
                (msg,) = out
                sender, receiver = receiver, sender
            tampered = bytearray(msg)
            tampered[-1 if index else 5] ^= 0x01
            events = receiver.receive_frame(bytes(tampered))
            if index == 0:  # msg1 is not encrypted: the damage shows at the initiator
                events = alice.receive_frame(frames(events)[0])
                receiver = alice
            error = failure(events).error
            self.assertIsInstance(error, HandshakeFailed, index)
            self.assertEqual(receiver.state, ChannelState.FAILED)

    def test_first_message_with_a_payload_is_refused(self) -> None:
        bob = make(False, "bob", "alice")
        bob.start()
        smuggler = HandshakeState(PROTOCOL_NAME, True, prologue(SID, "alice", "bob"),
                                  s=identity("alice").static_private)
        events = bob.receive_frame(smuggler.write_message(b"data before keys"))
        self.assertIn("unexpected data", failure(events).reason)

    def test_truncated_and_garbage_handshake(self) -> None:
        for junk in (b"", b"x", b"\x00" * 31):
            bob = make(False, "bob", "alice")
            bob.start()
            self.assertIn("malformed", failure(bob.receive_frame(junk)).reason)
        alice = make(True, "alice", "bob")
        alice.start()
        self.assertIsInstance(failure(alice.receive_frame(b"\x01" * 200)).error, HandshakeFailed)

    def test_frame_before_start(self) -> None:
        bob = make(False, "bob", "alice")
        self.assertIsInstance(failure(bob.receive_frame(b"x" * 32)).error, HandshakeFailed)


class Splicing(SynchronousTestCase):
    """The prologue binds the session id and both nicknames (section 10)."""

    def _attempt(self, bob: Channel) -> ChannelFailed:
        alice = make(True, "alice", "bob")
        (msg1,) = alice.start()
        bob.start()
        (msg2,) = frames(bob.receive_frame(msg1))
        return failure(alice.receive_frame(msg2))

    def test_other_session_id(self) -> None:
        result = self._attempt(make(False, "bob", "alice", sid=OTHER_SID))
        self.assertIsInstance(result.error, HandshakeFailed)
        self.assertIn("another session", result.reason)

    def test_other_initiator_nickname(self) -> None:
        # The relay tells Bob the call is from carol (whose key it may control).
        result = self._attempt(make(False, "bob", "carol", who="bob"))
        self.assertIn("another session", result.reason)

    def test_other_responder_nickname(self) -> None:
        result = self._attempt(make(False, "bobby", "alice", who="bob"))
        self.assertIn("another session", result.reason)

    def test_prologue_layout(self) -> None:
        self.assertEqual(
            prologue(SID, "alice", "bob"),
            b"relaychat-e2e-v1" + b"\x00\x10" + SID.encode() + b"\x00\x05alice" + b"\x00\x03bob",
        )


class StaticKeySwap(SynchronousTestCase):
    """A relay in the middle runs its own Noise handshake with its own static key."""

    def _mallory(self, initiator: bool) -> HandshakeState:
        return HandshakeState(PROTOCOL_NAME, initiator, prologue(SID, "alice", "bob"),
                              s=identity("mallory").static_private)

    def test_genuine_binding_on_a_swapped_static_key_fails(self) -> None:
        """Mallory answers Alice with Bob's (public) binding but her own static key."""
        alice = make(True, "alice", "bob")
        mallory = self._mallory(False)
        (msg1,) = alice.start()
        mallory.read_message(msg1)
        msg2 = mallory.write_message(identity("bob").binding())
        result = failure(alice.receive_frame(msg2))
        self.assertIsInstance(result.error, HandshakeFailed)
        self.assertNotIsInstance(result.error, KeyChanged)
        self.assertIn("did not certify", result.reason)

    def test_swap_towards_the_responder_fails(self) -> None:
        bob = make(False, "bob", "alice")
        mallory = self._mallory(True)
        bob.start()
        (msg2,) = frames(bob.receive_frame(mallory.write_message(b"")))
        mallory.read_message(msg2)
        result = failure(bob.receive_frame(mallory.write_message(identity("alice").binding())))
        self.assertIn("did not certify", result.reason)

    def test_own_identity_against_a_pin_is_key_changed(self) -> None:
        alice = make(True, "alice", "bob", pin=identity("bob").identity_public)
        mallory = self._mallory(False)
        (msg1,) = alice.start()
        mallory.read_message(msg1)
        result = failure(alice.receive_frame(mallory.write_message(identity("mallory").binding())))
        self.assertIsInstance(result.error, KeyChanged)
        self.assertEqual(result.error.new_key, identity("mallory").identity_public)

    def test_own_identity_on_first_contact_shows_a_different_safety_number(self) -> None:
        """TOFU cannot catch this one; the safety number does."""
        alice = make(True, "alice", "bob")
        mallory = self._mallory(False)
        (msg1,) = alice.start()
        mallory.read_message(msg1)
        done = others(alice.receive_frame(mallory.write_message(identity("mallory").binding())))[0]
        genuine = safety_number(identity("alice").identity_public, "alice", identity("bob").identity_public, "bob")
        self.assertNotEqual(done.safety_number, genuine)


class Transport(SynchronousTestCase):
    def test_messages_both_ways(self) -> None:
        alice, bob = opened()
        for i in range(5):
            self.assertEqual(say(alice, bob, f"hello {i}"), [MessageReceived(f"hello {i}")])
            self.assertEqual(say(bob, alice, f"hi {i} ✓"), [MessageReceived(f"hi {i} ✓")])
        self.assertEqual((alice.unconfirmed, bob.unconfirmed), ([], []))

    def test_plaintext_is_not_in_the_frame(self) -> None:
        alice, _ = opened()
        frame = alice.send_text("attack at dawn")
        self.assertNotIn(b"attack at dawn", frame)
        self.assertEqual(len(frame), 1 + len("attack at dawn") + 16)

    def test_rekey_boundary_both_directions(self) -> None:
        alice, bob = opened()
        rounds = REKEY_INTERVAL + 3  # each round: a TEXT and a RECEIPT each way
        total = 2 * rounds
        keys = []
        for i in range(1, rounds + 1):
            before = alice._send._k  # white box: the key must change exactly here
            self.assertEqual(say(alice, bob, str(i)), [MessageReceived(str(i))])
            after_text = alice._send._k
            self.assertEqual(say(bob, alice, str(-i)), [MessageReceived(str(-i))])
            if after_text != before:
                keys.append(2 * i - 1)
            if alice._send._k != after_text:
                keys.append(2 * i)
        self.assertEqual(keys, [REKEY_INTERVAL, 2 * REKEY_INTERVAL])
        self.assertEqual(alice.messages_sent, total)
        self.assertEqual(bob.messages_received, total)
        self.assertEqual(alice._send.nonce, total)  # white box: the nonce is not reset

    def test_a_receiver_that_does_not_rekey_fails_at_1001(self) -> None:
        """The rekey has teeth: a sender that rekeys alone is not understood."""
        alice, bob = opened()
        self.patch(channel_module, "REKEY_INTERVAL", 10**9)  # neither side rekeys...
        for _ in range(REKEY_INTERVAL):
            bob.receive_frame(alice.send_text("x"))
        alice._send.rekey()  # white box: ...except alice, after message 1000
        self.assertIsInstance(failure(bob.receive_frame(alice.send_text("1001"))).error, MessageRejected)

    def test_too_long_is_refused_and_the_channel_survives(self) -> None:
        alice, bob = opened()
        limit = max_text_bytes()
        self.assertEqual(limit, 32768 - 17)
        self.assertRaises(MessageTooLong, alice.send_text, "x" * (limit + 1))
        self.assertEqual(say(alice, bob, "x" * limit), [MessageReceived("x" * limit)])

    def test_reprs_do_not_show_text_or_keys(self) -> None:
        alice, _ = opened()
        self.assertNotIn("secret text", repr(MessageReceived("secret text")))
        self.assertNotIn("k=", repr(alice))


class LongMessages(SynchronousTestCase):
    """Section 11's TEXT_PART: a text longer than one frame is split and joined."""

    def deliver(self, sender: Channel, receiver: Channel, text: str) -> list[Event]:
        """The receiver's events other than frames (its receipt is checked to
        confirm the whole text, and handed back)."""
        events: list[Event] = []
        for frame in sender.send_message(text):
            events += receiver.receive_frame(frame)
        number = sender.last_text_number
        for frame in frames(events):
            (delivered,) = sender.receive_frame(frame)
            assert delivered.numbers == (number,), delivered
        return others(events)

    def test_the_types_on_the_wire(self) -> None:
        """0x04 is RECEIPT (it came first); TEXT_PART is the next free type."""
        self.assertEqual((MessageType.RECEIPT, MessageType.TEXT_PART), (0x04, 0x05))

    def test_one_frame_is_one_text(self) -> None:
        alice, bob = opened()
        limit = max_text_bytes()
        (frame,) = alice.send_message("x" * limit)
        events = bob.receive_frame(frame)
        self.assertEqual(others(events), [MessageReceived("x" * limit)])
        alice.receive_frame(frames(events)[0])  # its receipt, so the next one is in order
        self.assertEqual(self.deliver(alice, bob, "short"), [MessageReceived("short")])

    def test_split_at_every_size_around_the_boundary(self) -> None:
        """Cut inside multi-byte characters too: only the joined whole is decoded."""
        for max_frame in (40, 41, 64):
            alice = Channel(initiator=True, sid=SID, local_nick="alice", peer_nick="bob",
                            identity=identity("alice"), pins=FixedPin(None), max_frame=max_frame)
            bob = Channel(initiator=False, sid=SID, local_nick="bob", peer_nick="alice",
                          identity=identity("bob"), pins=FixedPin(None), max_frame=max_frame)
            handshake(alice, bob)
            room = max_text_bytes(max_frame)
            for n in (room - 1, room, room + 1, 3 * room, 3 * room + 2):
                text = ("grüße ✓ " * n)[:n]
                frames_ = alice.send_message(text)
                self.assertEqual(len(frames_), max(1, -(-len(text.encode()) // room)))
                events: list[Event] = []
                for frame in frames_:
                    self.assertLessEqual(len(frame), max_frame)
                    events += bob.receive_frame(frame)
                self.assertEqual(others(events), [MessageReceived(text)])

    def test_64_kib_paste_with_newlines(self) -> None:
        alice, bob = opened()
        text = "\n".join(f"line {i}: " + "é" * 60 for i in range(1000))
        self.assertGreater(len(text.encode()), 65536)
        self.assertEqual(self.deliver(alice, bob, text), [MessageReceived(text)])
        self.assertEqual(self.deliver(bob, alice, "ok"), [MessageReceived("ok")])  # both ways still fine

    def test_pieces_are_the_documented_layout(self) -> None:
        pieces = split_text(b"abcdefghij", max_frame=17 + 4)
        self.assertEqual(pieces, [(MessageType.TEXT_PART, b"abcd"), (MessageType.TEXT_PART, b"efgh"),
                                  (MessageType.TEXT, b"ij")])
        self.assertEqual(split_text(b"", 100), [(MessageType.TEXT, b"")])

    def test_longer_than_the_message_limit_is_refused_when_sending(self) -> None:
        alice, bob = opened()
        self.assertRaises(MessageTooLong, alice.send_message, "x" * (MAX_MESSAGE_BYTES + 1))
        self.assertEqual(self.deliver(alice, bob, "still open"), [MessageReceived("still open")])

    def test_a_peer_that_never_ends_its_message_is_stopped(self) -> None:
        """What a peer makes us hold for one message is bounded."""
        alice, bob = opened()
        piece = b"x" * max_text_bytes()
        events: list[Event] = []
        while not events:
            events = bob.receive_frame(alice._encrypt(MessageType.TEXT_PART, piece))  # white box: a hostile sender
        self.assertIsInstance(failure(events).error, MessageRejected)
        self.assertIn(f"longer than {MAX_MESSAGE_BYTES} bytes", failure(events).reason)
        self.assertIsNone(bob._partial)  # white box: the pieces were dropped

    def test_other_messages_inside_a_long_one_fail(self) -> None:
        for kind, body in ((MessageType.CLOSE, b""), (MessageType.SMP, b"\x00"),
                           (MessageType.RECEIPT, (1).to_bytes(8, "big"))):
            alice, bob = opened()
            bob.receive_frame(alice._encrypt(MessageType.TEXT_PART, b"half a mess"))  # white box
            result = failure(bob.receive_frame(alice._encrypt(kind, body)))
            self.assertEqual(result.reason, "alice's client sent something unreadable (a long message broken "
                                            "off in the middle); the conversation ended.")

    def test_empty_pieces_cost_nothing_and_still_join(self) -> None:
        alice, bob = opened()
        for body in (b"", b"ab", b"", b"c"):
            self.assertEqual(bob.receive_frame(alice._encrypt(MessageType.TEXT_PART, body)), [])  # white box
        self.assertEqual(others(bob.receive_frame(alice._encrypt(MessageType.TEXT, b""))), [MessageReceived("abc")])

    def test_joined_text_must_be_utf8(self) -> None:
        alice, bob = opened()
        bob.receive_frame(alice._encrypt(MessageType.TEXT_PART, b"\xc3"))  # white box
        result = failure(bob.receive_frame(alice._encrypt(MessageType.TEXT, b"(")))
        self.assertIsInstance(result.error, MessageRejected)
        self.assertEqual(result.reason, "alice's client sent something unreadable (a message that is not UTF-8 "
                                        "text); the conversation ended.")

    def test_a_long_text_is_confirmed_once_and_whole(self) -> None:
        """Its pieces get no receipt; the one for its final TEXT covers them all."""
        alice, bob = opened()
        alice.max_frame = bob.max_frame = 17 + 10
        text = "a long text that needs several frames"
        pieces = alice.send_message(text)
        self.assertGreater(len(pieces), 2)
        self.assertEqual(alice.last_text_number, len(pieces))
        self.assertEqual(alice.unconfirmed, [(len(pieces), "a long text that needs several frames")])
        for piece in pieces[:-1]:
            self.assertEqual(bob.receive_frame(piece), [], "a piece alone is neither shown nor confirmed")
        events = bob.receive_frame(pieces[-1])
        self.assertEqual(others(events), [MessageReceived(text)])
        (receipt,) = frames(events)
        self.assertEqual(alice.receive_frame(receipt), [channel_module.Delivered(((len(pieces), text),))])
        self.assertEqual(alice.unconfirmed, [])

    def test_a_long_text_cut_off_is_unconfirmed(self) -> None:
        """The relay forwards the pieces but not the end: nothing is delivered."""
        alice, bob = opened()
        alice.max_frame = bob.max_frame = 17 + 10
        pieces = alice.send_message("the whole plan, in more words than fit")
        for piece in pieces[:-1]:
            self.assertEqual(bob.receive_frame(piece), [])
        (ended,) = alice.relay_closed("gone")
        self.assertFalse(ended.clean)
        self.assertEqual(alice.unconfirmed, [(len(pieces), "the whole plan, in more words than fit")])

    def test_a_crossing_long_text_is_not_shown_while_closing(self) -> None:
        alice, bob = opened()
        alice.max_frame = bob.max_frame = 17 + 10
        last = alice.send_text("bye")
        alice.close()
        crossing = bob.send_message("a crossing long message")
        (receipt,) = frames(bob.receive_frame(last))
        for frame in crossing:
            self.assertEqual(alice.receive_frame(frame), [])
        self.assertEqual(alice.receive_frame(receipt), [channel_module.Delivered(((1, "bye"),))])
        self.assertIs(alice.state, ChannelState.ENDED)


class Attacks(SynchronousTestCase):
    """Section 11: every changed, replayed, reordered or missing frame."""

    def assertRejected(self, events: list[Event], receiver: Channel) -> None:
        result = failure(events)
        self.assertIsInstance(result.error, MessageRejected)
        self.assertIn("failed authentication", result.reason)
        self.assertTrue(result.reason.endswith("."))
        self.assertFalse([e for e in events if isinstance(e, MessageReceived)])
        self.assertEqual(receiver.state, ChannelState.FAILED)
        # Dead for good: later genuine frames are not shown, sending is refused.
        self.assertEqual(receiver.receive_frame(b"anything"), [])
        self.assertRaises(ConversationClosed, receiver.send_text, "x")

    def test_bit_flips_anywhere(self) -> None:
        for position in (0, 5, -17, -1):
            alice, bob = opened()
            frame = bytearray(alice.send_text("pay 100 to carol"))
            frame[position] ^= 0x80
            self.assertRejected(bob.receive_frame(bytes(frame)), bob)

    def test_truncated_and_extended(self) -> None:
        for change in (lambda f: f[:-1], lambda f: f + b"\x00", lambda f: b"", lambda f: f[:15]):
            alice, bob = opened()
            self.assertRejected(bob.receive_frame(change(alice.send_text("hello"))), bob)

    def test_replay(self) -> None:
        alice, bob = opened()
        frame = alice.send_text("transfer done")
        self.assertEqual(others(bob.receive_frame(frame)), [MessageReceived("transfer done")])
        self.assertRejected(bob.receive_frame(frame), bob)

    def test_reorder(self) -> None:
        alice, bob = opened()
        alice.send_text("first")  # held back by the relay...
        self.assertRejected(bob.receive_frame(alice.send_text("second")), bob)

    def test_drop(self) -> None:
        alice, bob = opened()
        alice.send_text("lost")
        self.assertRejected(bob.receive_frame(alice.send_text("after")), bob)

    def test_reflection(self) -> None:
        """A relay bouncing Alice's frame back to her."""
        alice, bob = opened()
        self.assertRejected(alice.receive_frame(alice.send_text("echo")), alice)

    def test_cross_session(self) -> None:
        """A genuine frame from another conversation between the same people."""
        alice, bob = opened()
        other_alice, _ = opened()
        self.assertRejected(bob.receive_frame(other_alice.send_text("hi")), bob)

    def test_malformed_authenticated_plaintexts(self) -> None:
        for kind, body, words in ((None, b"", "empty"), (MessageType.TEXT, b"\xff\xfe", "UTF-8"),
                                  (MessageType.CLOSE, b"x", "goodbye")):
            alice, bob = opened()
            if kind is None:
                frame = alice._send.encrypt_with_ad(b"", b"")
                alice._sent += 1
            else:
                frame = alice._encrypt(kind, body)
            result = failure(bob.receive_frame(frame))
            self.assertIn(words, result.reason)

    def test_garbage_never_raises(self) -> None:
        import os

        for size in (0, 1, 16, 17, 100, 70000):
            alice, bob = opened()
            events = bob.receive_frame(os.urandom(size))
            self.assertIsInstance(failure(events).error, MessageRejected)


class Closing(SynchronousTestCase):
    def test_clean_close(self) -> None:
        alice, bob = opened()
        say(alice, bob, "bye now")
        frame = alice.close()
        self.assertEqual(alice.state, ChannelState.ENDED)
        self.assertRaises(ConversationClosed, alice.send_text, "more")
        events = bob.receive_frame(frame)
        self.assertEqual(events, [PeerClosed(True, "alice ended the conversation.")])
        self.assertEqual(bob.relay_closed("closed"), [], "the relay's CLOSED after a goodbye is expected")
        self.assertIsNone(alice.close())

    def test_truncation_is_reported(self) -> None:
        alice, bob = opened()
        bob.receive_frame(alice.send_text("one"))
        alice.send_text("two: dropped by the relay")
        (event,) = bob.relay_closed("closed")
        self.assertIsInstance(event, PeerClosed)
        self.assertFalse(event.clean)
        self.assertIn("may have been lost", event.reason)

    def test_dropped_goodbye_is_truncation(self) -> None:
        alice, bob = opened()
        alice.close()  # never delivered
        (event,) = bob.relay_closed("gone")
        self.assertFalse(event.clean)
        self.assertEqual(event.reason, "The conversation with alice ended without their goodbye: alice lost the "
                                       "connection to the relay; the last messages may have been lost.")

    def test_peer_of_a_kicked_user_is_told_so(self) -> None:
        alice, bob = opened()
        (event,) = bob.relay_closed("kicked")
        self.assertIn("alice was disconnected by the relay", event.reason)
        self.assertNotIn("withdrew", event.reason)

    def test_closed_during_handshake(self) -> None:
        alice = make(True, "alice", "bob")
        alice.start()
        result = failure(alice.relay_closed("gone"))
        self.assertIn("before it was verified", result.reason)

    def test_relay_reason_is_shown_inert(self) -> None:
        alice, bob = opened()
        (event,) = bob.relay_closed("\x1b[2Jevil")
        self.assertNotIn("\x1b", event.reason)

    def test_unknown_type_is_reported_and_ignored(self) -> None:
        alice, bob = opened()
        (event,) = bob.receive_frame(alice._encrypt(0x7F, b"future"))
        self.assertIsInstance(event, UnknownMessage)
        self.assertEqual(event.type, 0x7F)
        self.assertIn("0x7f", event.reason)
        self.assertEqual(say(alice, bob, "still here"), [MessageReceived("still here")])


class SharedSecretCheck(SynchronousTestCase):
    def _check(self, alice: Channel, bob: Channel, secret_a: str, secret_b: str) -> tuple[list, list]:
        events_b = bob.receive_frame(alice.smp_start(secret_a))
        self.assertEqual(events_b, [SMPRequested()])
        (smp3,) = frames(alice.receive_frame(bob.smp_respond(secret_b)))
        events_b = bob.receive_frame(smp3)
        events_a = alice.receive_frame(frames(events_b)[0])
        return others(events_a), others(events_b)

    def test_equal_secrets(self) -> None:
        alice, bob = opened()
        self.assertEqual(self._check(alice, bob, "blue whale", "blue whale"), ([SMPResult(True)], [SMPResult(True)]))

    def test_unequal_secrets(self) -> None:
        alice, bob = opened()
        self.assertEqual(self._check(alice, bob, "blue whale", "red whale"), ([SMPResult(False)], [SMPResult(False)]))

    def test_either_side_may_start(self) -> None:
        alice, bob = opened()
        self.assertEqual(self._check(bob, alice, "x y", " x y "), ([SMPResult(True)], [SMPResult(True)]))

    def test_both_start_at_the_same_moment(self) -> None:
        """Issue 11: "Received SMP1 while in state EXPECT2" every time. Now the
        session initiator's check goes on and the other becomes its answer."""
        for secret_b, equal in (("blue whale", True), ("red whale", False)):
            alice, bob = opened()
            to_bob, to_alice = alice.smp_start("blue whale"), bob.smp_start(secret_b)
            self.assertEqual(alice.receive_frame(to_alice), [], "the initiator ignores the crossing request")
            smp2 = bob.receive_frame(to_bob)
            self.assertEqual(others(smp2), [], "the responder answers with the secret it typed")
            (smp3,) = frames(alice.receive_frame(frames(smp2)[0]))
            events_b = bob.receive_frame(smp3)
            events_a = alice.receive_frame(frames(events_b)[0])
            self.assertEqual((others(events_a), others(events_b)), ([SMPResult(equal)], [SMPResult(equal)]))

    def test_man_in_the_middle_fails_with_the_same_secret(self) -> None:
        """Two legs (alice-mallory, mallory-bob): SMP relayed between them compares
        values bound to different handshakes, so it fails."""
        alice = make(True, "alice", "bob")
        mallory_b = make(False, "bob", "alice", who="mallory")
        handshake(alice, mallory_b)
        mallory_a = make(True, "alice", "bob", who="mallory")
        bob = make(False, "bob", "alice")
        handshake(mallory_a, bob)

        def relay(frame: bytes, into: Channel, out_of: Channel) -> list[Event]:
            # Mallory re-encrypts the SMP body from one leg into the other.
            plain = out_of._recv.decrypt_with_ad(b"", frame)
            out_of._received += 1
            forwarded = into._encrypt(plain[0], plain[1:])
            return forwarded

        smp1 = relay(alice.smp_start("same"), mallory_a, mallory_b)
        self.assertEqual(bob.receive_frame(smp1), [SMPRequested()])
        smp2 = relay(bob.smp_respond("same"), mallory_b, mallory_a)
        smp3 = relay(frames(alice.receive_frame(smp2))[0], mallory_a, mallory_b)
        events_b = bob.receive_frame(smp3)
        self.assertIn(SMPResult(False), events_b)
        smp4 = relay(frames(events_b)[0], mallory_b, mallory_a)
        self.assertEqual(alice.receive_frame(smp4), [SMPResult(False)])

    def test_abort_and_garbage(self) -> None:
        alice, bob = opened()
        bob.receive_frame(alice.smp_start("s"))
        self.assertEqual(alice.receive_frame(bob.smp_abort()), [SMPAborted("bob stopped the secret check.")])
        events = bob.receive_frame(alice._encrypt(MessageType.SMP, b"\x02junk"))
        self.assertEqual(others(events), [SMPAborted(
            "The secret check with alice was stopped: alice's client sent a check message that does not verify.")])
        self.assertEqual(len(frames(events)), 1, "an SMP error is answered with an abort")
        self.assertEqual(bob.state, ChannelState.OPEN, "a failed check does not end the conversation")

    def test_crossed_checks_say_so_without_state_names(self) -> None:
        alice, bob = opened()
        bob.receive_frame(alice.smp_start("s"))
        alice.smp_abort()  # alice gives up and starts again; her SMP2 expectation is gone
        smp2 = bob.smp_respond("s")
        (event,) = others(alice.receive_frame(smp2))
        self.assertEqual(event, SMPAborted("The secret check with bob was reset because two checks crossed; start it again."))
        self.assertNotRegex(event.reason, r"EXPECT|SMP\d|state")

    def test_not_before_verification(self) -> None:
        alice = make(True, "alice", "bob")
        self.assertRaises(ConversationClosed, alice.smp_start, "x")


class IndependentNoise(SynchronousTestCase):
    """The channel against the ``noiseprotocol`` package playing the peer."""

    def setUp(self) -> None:
        if TheirConnection is None:
            raise SkipTest("noiseprotocol is not installed")

    def _theirs(self, initiator: bool, who: str) -> object:
        conn = TheirConnection.from_name(PROTOCOL_NAME.encode())
        conn.set_prologue(prologue(SID, "alice", "bob"))
        conn.set_keypair_from_private_bytes(TheirKeypair.STATIC, identity(who).static_private.private_bytes_raw())
        conn.set_as_initiator() if initiator else conn.set_as_responder()
        conn.start_handshake()
        return conn

    def _transport(self, ours: Channel, theirs: object) -> None:
        """Past two rekeys both ways; ``theirs`` rekeys by hand, as section 11 says."""
        inbound = 0

        def read(frame: bytes) -> bytes:
            nonlocal inbound
            plain = bytes(theirs.decrypt(frame))
            inbound += 1
            if inbound % REKEY_INTERVAL == 0:
                theirs.rekey_inbound_cipher()
            return plain

        for i in range(1, REKEY_INTERVAL + 3):  # two messages in (TEXT and RECEIPT) per round
            self.assertEqual(read(ours.send_text(f"o{i}")), b"\x01" + f"o{i}".encode())
            events = ours.receive_frame(theirs.encrypt(b"\x01" + f"t{i}".encode()))
            self.assertEqual(others(events), [MessageReceived(f"t{i}")])
            (receipt,) = frames(events)
            self.assertEqual(read(receipt), b"\x04" + i.to_bytes(8, "big"))
            if i % REKEY_INTERVAL == 0:
                theirs.rekey_outbound_cipher()
        self.assertEqual(ours.receive_frame(theirs.encrypt(b"\x02")), [PeerClosed(True, f"{ours.peer_nick} ended the conversation.")])

    def test_ours_initiates(self) -> None:
        ours = make(True, "alice", "bob")
        theirs = self._theirs(False, "bob")
        (msg1,) = ours.start()
        self.assertEqual(bytes(theirs.read_message(msg1)), b"")
        events = ours.receive_frame(bytes(theirs.write_message(identity("bob").binding())))
        self.assertIsInstance(others(events)[0], HandshakeComplete)
        self.assertEqual(bytes(theirs.read_message(frames(events)[0])), identity("alice").binding())
        self._transport(ours, theirs)

    def test_ours_responds(self) -> None:
        ours = make(False, "bob", "alice")
        theirs = self._theirs(True, "alice")
        ours.start()
        (msg2,) = frames(ours.receive_frame(bytes(theirs.write_message(b""))))
        self.assertEqual(bytes(theirs.read_message(msg2)), identity("bob").binding())
        events = ours.receive_frame(bytes(theirs.write_message(identity("alice").binding())))
        self.assertIsInstance(others(events)[0], HandshakeComplete)
        self.assertEqual(ours.peer_identity, identity("alice").identity_public)
        self._transport(ours, theirs)


class SealedMail(SynchronousTestCase):
    """Section 12, pure: seal with Noise_X, open, and every way it must fail."""

    def _seal(self, text: str = "see you at noon", sender: str = "alice", recipient: str = "bob",
              to: str = "bob", time: int = 1_700_000_000) -> bytes:
        return mail.seal(identity(sender), sender, recipient, identity(to).static_public, text, time, 16384)

    def test_round_trip(self) -> None:
        sealed = self._seal()
        self.assertNotIn(b"see you", sealed)
        opened_mail = mail.open_mail(identity("bob"), "alice", "bob", sealed)
        self.assertEqual(opened_mail.text, "see you at noon")
        self.assertEqual(opened_mail.time, 1_700_000_000)
        self.assertEqual(opened_mail.identity_pub, identity("alice").identity_public)
        self.assertEqual(len(opened_mail.message_id), 16)
        self.assertNotEqual(mail.open_mail(identity("bob"), "alice", "bob", self._seal()).message_id,
                            opened_mail.message_id)

    def test_wrong_sender_recipient_or_key(self) -> None:
        sealed = self._seal()
        for who, sender, recipient in (("bob", "carol", "bob"), ("bob", "alice", "bobby"), ("carol", "alice", "bob")):
            with self.assertRaises(MailError) as caught:
                mail.open_mail(identity(who), sender, recipient, sealed)
            self.assertIn("could not be opened", str(caught.exception))

    def test_tampering(self) -> None:
        sealed = self._seal()
        for position in (0, 40, 100, -1):
            changed = bytearray(sealed)
            changed[position] ^= 1
            self.assertRaises(MailError, mail.open_mail, identity("bob"), "alice", "bob", bytes(changed))
        self.assertRaises(MailError, mail.open_mail, identity("bob"), "alice", "bob", sealed[:50])

    def test_read_receipt(self) -> None:
        """0xFF never starts UTF-8 text, so a receipt cannot be mistaken for one."""
        original = mail.open_mail(identity("bob"), "alice", "bob", self._seal())
        receipt = mail.seal_receipt(identity("bob"), "bob", "alice", identity("alice").static_public,
                                    original.message_id, 1_700_000_100)
        opened_receipt = mail.open_mail(identity("alice"), "bob", "alice", receipt)
        self.assertEqual(opened_receipt.receipt_for, original.message_id)
        self.assertEqual(opened_receipt.text, "")
        self.assertIsNone(original.receipt_for)
        self.assertNotEqual(opened_receipt.message_id, original.message_id)

    def test_mail_sealed_to_the_previous_static_key_still_opens(self) -> None:
        """Sealed before the sender learned bob's rotated key: opens with the old one."""
        sealed_before = self._seal()
        rotated = identity("bob").rotate_static(self.mktemp())
        self.assertEqual(mail.open_mail(rotated, "alice", "bob", sealed_before).text, "see you at noon")
        sealed_after = mail.seal(identity("alice"), "alice", "bob", rotated.static_public, "new key", 1, 16384)
        self.assertEqual(mail.open_mail(rotated, "alice", "bob", sealed_after).text, "new key")
        self.assertRaises(MailError, mail.open_mail, identity("bob"), "alice", "bob", sealed_after)

    def test_unknown_control_message(self) -> None:
        for body in (b"\xff\x02" + bytes(16), b"\xff\x01" + bytes(15), b"\xff"):
            hs = HandshakeState(mail.PROTOCOL_NAME, True, mail.prologue("alice", "bob"),
                                s=identity("alice").static_private, rs=identity("bob").static_public)
            sealed = hs.write_message(identity("alice").binding() + bytes(8) + bytes(16) + body)
            with self.assertRaises(MailError) as caught:
                mail.open_mail(identity("bob"), "alice", "bob", sealed)
            self.assertIn("control message", str(caught.exception))

    def test_binding_must_certify_the_sealing_key(self) -> None:
        """Mallory seals with her static key but Alice's (public) binding."""
        hs = HandshakeState(mail.PROTOCOL_NAME, True, mail.prologue("alice", "bob"),
                            s=identity("mallory").static_private, rs=identity("bob").static_public)
        forged = hs.write_message(identity("alice").binding() + bytes(8) + bytes(16) + b"hi")
        with self.assertRaises(MailError) as caught:
            mail.open_mail(identity("bob"), "alice", "bob", forged)
        self.assertIn("not certified", str(caught.exception))

    def test_size_limit(self) -> None:
        limit = mail.max_text_bytes(16384)
        self.assertEqual(len(self._seal("x" * limit)), 16384)
        self.assertRaises(MessageTooLong, self._seal, "x" * (limit + 1))

    def test_weak_recipient_key_is_refused(self) -> None:
        self.assertRaises(MailError, mail.seal, identity("alice"), "alice", "bob", bytes(32), "x", 0, 16384)

    def test_independent_noise_opens_ours(self) -> None:
        if TheirConnection is None:
            raise SkipTest("noiseprotocol is not installed")
        theirs = TheirConnection.from_name(mail.PROTOCOL_NAME.encode())
        theirs.set_prologue(mail.prologue("alice", "bob"))
        theirs.set_keypair_from_private_bytes(TheirKeypair.STATIC, identity("bob").static_private.private_bytes_raw())
        theirs.set_as_responder()
        theirs.start_handshake()
        payload = bytes(theirs.read_message(self._seal("interop")))
        self.assertEqual(payload[:97], identity("alice").binding())
        self.assertTrue(payload.endswith(b"interop"))


class Receipts(SynchronousTestCase):
    """Section 11's RECEIPT: the sender learns which messages arrived."""

    def test_each_message_is_confirmed(self) -> None:
        alice, bob = opened()
        payloads = [alice.send_text(t) for t in ("one", "two words here", "three")]
        self.assertEqual(alice.last_text_number, 3)
        self.assertEqual(alice.unconfirmed, [(1, "one"), (2, "two words here"), (3, "three")])
        receipts = [frames(bob.receive_frame(p))[0] for p in payloads]
        for number, text, receipt in zip((1, 2, 3), ("one", "two words here", "three"), receipts):
            self.assertEqual(alice.receive_frame(receipt), [channel_module.Delivered(((number, text),))])
        self.assertEqual(alice.unconfirmed, [])

    def test_a_receipt_confirms_everything_before_it(self) -> None:
        """A receiver may confirm several at once (cumulative, like TCP)."""
        alice, bob = opened()
        for text in ("a", "b", "c"):
            alice.send_text(text)
        batched = bob._encrypt(MessageType.RECEIPT, (3).to_bytes(8, "big"))
        (delivered,) = alice.receive_frame(batched)
        self.assertEqual(delivered.messages, ((1, "a"), (2, "b"), (3, "c")))

    def test_a_dropped_tail_is_named_by_its_first_words(self) -> None:
        """The relay forwards the first message and drops the rest, then closes."""
        alice, bob = opened()
        first = alice.send_text("hello bob")
        for text in ("the meeting moved to 5 pm in the small room upstairs", "bring the keys"):
            alice.send_text(text)
        alice.receive_frame(frames(bob.receive_frame(first))[0])
        (ended,) = alice.relay_closed("gone")
        self.assertFalse(ended.clean)
        self.assertEqual(alice.unconfirmed, [(2, "the meeting moved to 5 pm in the small\u2026"),
                                             (3, "bring the keys")])
        self.assertEqual(alice.unconfirmed_count, 2)

    def test_receipts_are_strict(self) -> None:
        for body in (b"", bytes(8), (5).to_bytes(8, "big"), b"\x00" * 7 + b"\x01\x00"):
            alice, bob = opened()
            alice.send_text("x")
            result = failure(alice.receive_frame(bob._encrypt(MessageType.RECEIPT, body)))
            self.assertIsInstance(result.error, MessageRejected)
            self.assertIn("receipt", result.reason)

    def test_a_repeated_receipt_is_refused(self) -> None:
        alice, bob = opened()
        (receipt,) = frames(bob.receive_frame(alice.send_text("x")))
        alice.receive_frame(receipt)
        again = bob._encrypt(MessageType.RECEIPT, (1).to_bytes(8, "big"))
        self.assertIsInstance(failure(alice.receive_frame(again)).error, MessageRejected)

    def test_a_peer_that_never_confirms_costs_bounded_memory(self) -> None:
        self.patch(receipts, "MAX_UNCONFIRMED", 3)
        alice, bob = opened()
        for i in range(10):
            alice.send_text(f"m{i}")
        self.assertEqual([w for _, w in alice.unconfirmed], ["m7", "m8", "m9"])
        self.assertEqual(alice.unconfirmed_count, 10)

    def test_first_words(self) -> None:
        self.assertEqual(receipts.first_words("  short   text\n"), "short text")
        self.assertEqual(receipts.first_words("x" * 100, 10), "x" * 10 + "\u2026")
        self.assertEqual(receipts.first_words("one two three", 8), "one two\u2026")
        self.assertEqual(receipts.first_words(""), "")

    def test_closing_waits_for_the_last_receipts(self) -> None:
        """Our CLOSE goes out at once; the peer's receipts for what came before
        it still count, so even our own goodbye says what arrived."""
        alice, bob = opened()
        last = alice.send_text("last words")
        goodbye = alice.close()
        self.assertIs(alice.state, ChannelState.CLOSING)
        self.assertRaises(ConversationClosed, alice.send_text, "more")
        crossing = bob.send_text("a crossing message")
        (receipt,) = frames(bob.receive_frame(last))
        self.assertEqual(others(bob.receive_frame(goodbye)), [PeerClosed(True, "alice ended the conversation.")])
        self.assertEqual(alice.receive_frame(crossing), [], "not shown after our goodbye")
        self.assertEqual(alice.receive_frame(receipt), [channel_module.Delivered(((1, "last words"),))])
        self.assertIs(alice.state, ChannelState.ENDED)
        self.assertEqual(alice.unconfirmed, [])

    def test_closing_with_everything_confirmed_ends_at_once(self) -> None:
        alice, bob = opened()
        say(alice, bob, "confirmed")
        alice.close()
        self.assertIs(alice.state, ChannelState.ENDED)

    def test_giving_up_on_receipts(self) -> None:
        alice, bob = opened()
        alice.send_text("into the void")
        alice.close()
        alice.stop_waiting()
        self.assertIs(alice.state, ChannelState.ENDED)
        self.assertEqual(alice.unconfirmed, [(1, "into the void")])
        self.assertEqual(alice.relay_closed("closed"), [])
