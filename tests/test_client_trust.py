"""Trust a relay cannot reset (issue 11), end to end over a real relay on loopback.

The harness is test_client_e2e's: a real Hub behind a recording factory, and
a line proxy that plays the malicious relay. Here the relay changes its id
(a fresh data directory: a new Hub behind the same port), answers LOOKUP and
OFFER for someone else, replays old mail at a later login, drops the tail of
a conversation, and withholds a read receipt once.
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet.defer import Deferred, inlineCallbacks

from relaychat.client import How, RelayChanged, connect
from relaychat.client.errors import HandshakeFailed, UncertifiedKeys
from relaychat.client.values import Delivery, MailRead, ReceivedMail
from relaychat.crypto.pins import PinStatus
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits
from relaychat.server.store import Store
from tests.memory_network import driven
from tests.support import identity
from tests.test_client_e2e import WAIT, Inbox, ProxyConnection, RelayTestCase, frame_parts


class RelayIdentity(RelayTestCase):
    def rebuild_relay(self) -> Store:
        """The operator (or an impostor) starts a relay with a fresh data
        directory at the same address: a new server_id."""
        store = Store(":memory:")
        self.addCleanup(store.close)
        self.relay.hub = Hub(store, Limits(pow_bits=4), now=self.clock.seconds())
        return store

    @driven
    def test_a_relay_that_changes_its_id_is_a_loud_stop(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, _ = yield self.pair()
        self.assertTrue(alice.relay_first_contact)
        old_id = alice.server_id
        yield a_conv.close()
        for client in (alice, bob):
            yield client.quit()
        again = yield self.connect("alice")
        self.assertFalse(again.relay_first_contact)
        yield again.quit()
        store = self.rebuild_relay()
        error = yield self.assertFailure(self.connect("alice"), RelayChanged)
        self.assertEqual((error.known_id, error.new_id), (old_id, store.server_id))
        self.assertIn("CHANGED its identity", str(error))
        self.assertIsNone(store.binding("alice"), "stopped before REGISTER")
        # Nothing the new relay says can make bob a first contact: it is never asked.
        self.assertEqual(self.peers("alice").pins_on(store.server_id), {})
        yield self.assertFailure(self.connect("alice"), RelayChanged)  # and again, until accepted

    @driven
    def test_accepting_the_new_id_keeps_every_pin(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, _ = yield self.pair()
        a_conv.mark_verified()  # verified earlier, on the old relay
        for client in (alice, bob):
            yield client.quit()
        store = self.rebuild_relay()
        error = yield self.assertFailure(self.connect("alice"), RelayChanged)
        alice = yield self.connect("alice", accept_relay_id=error.new_id)
        self.assertEqual(alice.server_id, store.server_id)
        self.assertEqual(alice.pinned_key("bob"), identity("bob").identity_public, "carried over")
        yield self.connect("bob", accept_relay_id=error.new_id)
        conversation = yield alice.call("bob")
        self.assertFalse(conversation.first_contact)
        self.assertIs(conversation.verified.how, How.SAFETY_NUMBER, "and what the user verified")

    @driven
    def test_lookup_and_offer_answers_for_someone_else_are_refused(self) -> Generator[Deferred, Any, None]:
        alice = yield self.connect("alice", via_proxy=True)
        yield self.connect("bob", via_proxy=True)
        yield self.connect("carol", via_proxy=True)

        def swap(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            if direction == "up" and line in (b"LOOKUP bob", b"OFFER bob"):
                return [line.replace(b"bob", b"carol")]
            return [line]
        self.proxy.attack = swap
        error = yield self.assertFailure(alice.lookup("bob"), UncertifiedKeys)
        self.assertIn("answered with carol's", str(error))
        error = yield self.assertFailure(alice.send_mail("bob", "for bob only"), UncertifiedKeys)
        error = yield self.assertFailure(alice.call("bob"), HandshakeFailed)
        self.assertIn("opened a session with carol", str(error))
        self.assertEqual(alice.known_peers.pins_on(alice.server_id), {}, "nothing pinned for anyone")
        self.assertEqual(self.store.pending_mail("carol"), [])


class SealedMailAcrossLogins(RelayTestCase):
    @inlineCallbacks
    def default_connect(self, nick: str) -> Generator[Deferred, Any, Any]:
        """As a program would: no seen-mail store given."""
        client = yield connect(self.clock, self.network.endpoint(self.relay), identity(nick), nick, self.peers(nick),
                               handshake_timeout=WAIT)
        self.clients.append(client)
        return client

    @driven
    def test_old_mail_replayed_at_a_later_login_is_not_shown(self) -> Generator[Deferred, Any, None]:
        bob = yield self.default_connect("bob")
        yield bob.quit()
        alice = yield self.default_connect("alice")
        yield alice.send_mail("bob", "only once")
        (stored,) = self.store.pending_mail("bob")
        bob = yield self.default_connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        self.assertEqual((yield mail.get()).text, "only once")
        yield bob.ping()
        yield bob.quit()
        self.store.add_mail("bob", "alice", stored.created, stored.body)  # the relay kept a copy
        bob = yield self.default_connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        yield bob.ping()
        yield bob.ping()
        self.assertEqual([m for m in mail.items if isinstance(m, ReceivedMail)], [])
        self.assertEqual(self.store.pending_mail("bob"), [], "acknowledged as a duplicate")

    @driven
    def test_a_read_receipt_reaches_the_sender(self) -> Generator[Deferred, Any, None]:
        bob = yield self.connect("bob")
        yield bob.quit()
        alice = yield self.connect("alice")
        yield alice.send_mail("bob", "see you at the old mill at five")
        yield alice.quit()
        bob = yield self.connect("bob")
        bob_mail = Inbox(self.clock)
        bob.observe_mail(bob_mail)
        yield bob_mail.get()
        for _ in range(50):  # the receipt goes out after LOOKUP and MAIL
            if self.store.pending_mail("alice"):
                break
            yield self.quiet()
        alice = yield self.connect("alice")
        alice_mail = Inbox(self.clock)
        alice.observe_mail(alice_mail)
        read = yield alice_mail.get()
        self.assertIsInstance(read, MailRead)
        self.assertEqual((read.reader, read.first_words), ("bob", "see you at the old mill at five"))
        yield alice.ping()
        self.assertEqual(alice.files.sent_mail.all(), [])

    @driven
    def test_a_receipt_the_relay_refused_goes_at_the_next_login(self) -> Generator[Deferred, Any, None]:
        bob = yield self.connect("bob", via_proxy=True)
        yield bob.quit()
        alice = yield self.connect("alice")
        yield alice.send_mail("bob", "ping me back")
        refused: list[bytes] = []

        def refuse_mail(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            if conn.nick == "bob" and direction == "up" and line.startswith(b"MAIL "):
                refused.append(line)
                conn.send_down(b"ERR MAIL quota alice's mailbox is full")
                return []
            return [line]
        self.proxy.attack = refuse_mail
        bob = yield self.connect("bob", via_proxy=True)
        bob_mail = Inbox(self.clock)
        bob.observe_mail(bob_mail)
        yield bob_mail.get()
        for _ in range(50):
            if refused:
                break
            yield self.quiet()
        yield bob.ping()
        self.assertEqual(len(refused), 1)
        self.assertEqual(len(bob.files.receipts_owed.pending(bob.server_id)), 1, "still owed")
        yield bob.quit()
        self.proxy.attack = None
        bob = yield self.connect("bob", via_proxy=True)
        for _ in range(50):
            if not bob.files.receipts_owed.pending(bob.server_id):
                break
            yield self.quiet()
        self.assertEqual(bob.files.receipts_owed.pending(bob.server_id), [])
        alice_mail = Inbox(self.clock)
        alice.observe_mail(alice_mail)
        read = yield alice_mail.get()  # alice is online: it arrives at once
        self.assertIsInstance(read, MailRead)


    @driven
    def test_rotating_the_static_key(self) -> Generator[Deferred, Any, None]:
        """Re-registering publishes the new binding; mail sealed to the old key still opens."""
        alice = yield self.connect("alice")
        yield self.connect("bob")
        yield alice.send_mail("bob", "sealed to bob's old static key")
        rotated = identity("bob").rotate_static(self.directory("bob"))
        bob = yield connect(self.clock, self.network.endpoint(self.relay), rotated, "bob", self.peers("bob"),
                            handshake_timeout=WAIT)
        self.clients.append(bob)
        peer = yield alice.lookup("bob")
        self.assertEqual(peer.static_pub, rotated.static_public, "contacts see the new binding")
        self.assertEqual(peer.pin, PinStatus.MATCH, "the pin is on the identity key: unchanged")
        yield alice.send_mail("bob", "sealed to the new one")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        texts = [(yield mail.get()).text, (yield mail.get()).text]
        self.assertEqual(texts, ["sealed to bob's old static key", "sealed to the new one"])


class LastingVerification(RelayTestCase):
    @driven
    def test_a_successful_check_is_remembered_and_a_key_change_clears_it(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, b_conv = yield self.pair()
        self.assertIsNone(a_conv.verified)
        a_smp, b_smp = Inbox(self.clock), Inbox(self.clock)
        a_conv.observe_smp(a_smp)
        b_conv.observe_smp(b_smp)
        # Both type /verify at the same moment: the collision resolves itself.
        a_conv.smp_start("the blue door")
        b_conv.smp_start("the blue door")
        self.assertEqual((yield a_smp.get()).equal, True)
        self.assertEqual((yield b_smp.get()).equal, True)
        self.assertIs(a_conv.verified.how, How.SMP)
        yield a_conv.close()
        again = yield alice.call("bob")
        self.assertIs(again.verified.how, How.SMP, "the next conversation starts verified")
        (contact,) = alice.contacts()
        self.assertEqual((contact.nick, contact.identity_pub), ("bob", identity("bob").identity_public))
        self.assertIsNotNone(contact.first_seen)
        self.assertGreaterEqual(contact.last_seen, contact.first_seen)
        self.assertIs(contact.verified.how, How.SMP)
        yield again.close()
        # bob reinstalls: a new key. Accepting it does not carry the verification.
        new_bob = identity("bob-reinstalled").identity_public
        alice.accept_new_key("bob", new_bob)
        (contact,) = alice.contacts()
        self.assertEqual((contact.identity_pub, contact.verified), (new_bob, None))
        self.assertIsNone(alice.verification("bob", identity("bob").identity_public))

    @driven
    def test_verified_after_comparing_the_number(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, _ = yield self.pair()
        a_conv.mark_verified()
        self.assertIs(a_conv.verified.how, How.SAFETY_NUMBER)
        self.assertIs(alice.contacts()[0].verified.how, How.SAFETY_NUMBER)
        alice.unmark_verified("bob")
        self.assertIsNone(alice.contacts()[0].verified)
        self.assertEqual(bob.contacts()[0].verified, None, "bob did not say so")


class Receipts(RelayTestCase):
    @driven
    def test_each_message_is_marked_delivered(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, b_conv = yield self.pair()
        delivered = Inbox(self.clock)
        a_conv.observe_delivered(delivered)
        numbers = [a_conv.send(text) for text in ("one", "two", "three")]
        for number, text in zip(numbers, ("one", "two", "three")):
            self.assertEqual((yield delivered.get()), Delivery(number, text))
        self.assertEqual(a_conv.unconfirmed, [])
        yield a_conv.close()
        self.assertEqual(a_conv.ended.unconfirmed, ())
        yield self.quiet()
        self.assertEqual(self.hub.stats.errors, 0, "our close waited for the last receipt")

    @driven
    def test_our_goodbye_waits_boundedly_for_receipts_that_never_come(self) -> Generator[Deferred, Any, None]:
        from relaychat.client import conversation as conversation_module

        self.patch(conversation_module, "CLOSE_LINGER", 0.2)
        alice, bob, a_conv, b_conv = yield self.pair(via_proxy=True)

        def drop_to_bob(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            return [] if conn.nick == "bob" and direction == "down" and frame_parts(line) else [line]
        self.proxy.attack = drop_to_bob
        a_conv.send("did you get this?")
        yield a_conv.close()
        self.assertTrue(a_conv.ended.clean, "we said goodbye")
        self.assertEqual(a_conv.ended.unconfirmed, ("did you get this?",))

    @driven
    def test_a_relay_that_drops_the_tail_is_caught_naming_the_lost_messages(self) -> Generator[Deferred, Any, None]:
        alice, bob, a_conv, b_conv = yield self.pair(via_proxy=True)
        delivered, ends = Inbox(self.clock), Inbox(self.clock)
        a_conv.observe_delivered(delivered)
        a_conv.observe_end(ends)
        b_messages = Inbox(self.clock)
        b_conv.observe_messages(b_messages)
        a_conv.send("hello bob")
        yield delivered.get()

        def drop_tail(conn: ProxyConnection, direction: str, line: bytes) -> list[bytes]:
            if conn.nick == "bob" and direction == "down" and frame_parts(line) is not None:
                return []
            return [line]
        self.proxy.attack = drop_tail
        a_conv.send("the meeting moved to five in the small room upstairs")
        a_conv.send("bring the keys")
        yield self.quiet()
        for conn in list(self.proxy.live):  # then it cuts bob off
            if isinstance(conn, ProxyConnection) and conn.nick == "bob":
                conn.transport.loseConnection()
        ended = yield ends.get()
        self.assertFalse(ended.clean)
        self.assertEqual(ended.unconfirmed, ("the meeting moved to five in the small\u2026", "bring the keys"))
        self.assertEqual(ended.unconfirmed_count, 2)
        self.assertEqual(b_messages.items, ["hello bob"])
        self.assertEqual(a_conv.unconfirmed and [w for _, w in a_conv.unconfirmed][-1], "bring the keys")
        self.assertEqual(alice.pin_status("bob", identity("bob").identity_public), PinStatus.MATCH)


class LookAlikes(RelayTestCase):
    @driven
    def test_a_first_contact_imitating_a_pinned_name_is_flagged(self) -> Generator[Deferred, Any, None]:
        """An honest relay refuses "a1ice" once alice is bound; a hostile one would not.
        Here the relay is honest, so the look-alike is made by binding it first."""
        bob = yield self.connect("bob")
        yield self.connect("a1ice", who="mallory")
        bob.known_peers.pin(bob.server_id, "alice", identity("alice").identity_public)
        self.assertEqual(bob.lookalike_of("a1ice"), "alice")
        self.assertIsNone(bob.lookalike_of("alice"))
        self.assertIsNone(bob.lookalike_of("carol"))
        mallory = self.clients[-1]
        call = mallory.call("bob")
        offer = yield self.offers["bob"].get()
        self.assertEqual((offer.nick, offer.lookalike_of), ("a1ice", "alice"))
        conversation = yield self.accepted["bob"].get()
        self.assertEqual(conversation.lookalike_of, "alice")
        yield call

    @driven
    def test_an_observer_that_replies_at_once_keeps_the_frames_in_order(self) -> Generator[Deferred, Any, None]:
        """The receipt for a message is encrypted before the observer's reply:
        it must also be sent first, or the peer sees a nonce out of order."""
        alice, bob, a_conv, b_conv = yield self.pair()
        b_conv.observe_messages(lambda text: b_conv.send("re: " + text))
        replies, ends = Inbox(self.clock), Inbox(self.clock)
        a_conv.observe_messages(replies)
        a_conv.observe_end(ends)
        for text in ("one", "two", "three"):
            a_conv.send(text)
        got = []
        for _ in range(3):
            got.append((yield replies.get()))
        self.assertEqual(got, ["re: one", "re: two", "re: three"])
        self.assertEqual(ends.items, [])
