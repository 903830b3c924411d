"""The relay engine, sans I/O: every command, error path, limit and timer."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.limits import Limits, MailPolicy
from relaychat.server.operator import Operator as Verbs
from relaychat.wire.codec import b64decode, b64encode
from tests.support import FakeLink, Harness, identity, register_line


class Greeting(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.client, self.link = self.h.connect()

    def test_hello_announces_version_server_and_limits(self) -> None:
        reply = self.h.ask(self.client, self.link, "HELLO 1")
        self.assertEqual(
            reply,
            [f"OK HELLO 1 {b64encode(self.h.hub.server_id)} max_line=65536 max_frame=32768 max_mail=16384"],
        )

    def test_unknown_version(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "HELLO 7 8"), ["ERR HELLO version supported=1"])

    def test_commands_before_hello_are_out_of_order(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "WHO"), ["ERR WHO order say HELLO first"])

    def test_hello_twice(self) -> None:
        self.h.hello(self.client, self.link)
        self.assertEqual(self.h.ask(self.client, self.link, "HELLO 1")[0].split(" ")[:3], ["ERR", "HELLO", "order"])

    def test_ping_echoes_token_in_any_state(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "PING abc"), ["OK PING abc"])
        self.assertEqual(self.h.ask(self.client, self.link, "PING"), ["OK PING"])
        self.assertEqual(self.h.ask(self.client, self.link, "PING " + "x" * 65)[0].split(" ")[:3], ["ERR", "PING", "syntax"])

    def test_quit_says_bye_and_closes(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "QUIT"), ["BYE quit goodbye"])
        self.assertTrue(self.link.closed)

    def test_unknown_command_and_junk_names(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "FLY away")[0], "ERR FLY unknown no such command")
        self.assertEqual(self.h.ask(self.client, self.link, "\x1b[2J")[0], "ERR - unknown no such command")

    def test_empty_tokens_are_syntax_errors(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "HELLO  1")[0].split(" ")[:3], ["ERR", "HELLO", "syntax"])
        self.assertEqual(self.h.ask(self.client, self.link, "HELLO 1 ")[0].split(" ")[:3], ["ERR", "HELLO", "syntax"])

    def test_bad_utf8_and_nul(self) -> None:
        self.h.hub.receive(self.client, b"\xff\xfe\n", self.h.now)
        self.h.hub.receive(self.client, b"PING a\x00b\n", self.h.now)
        lines = self.link.lines()
        self.assertEqual([l.split(" ")[:3] for l in lines], [["ERR", "-", "bad-encoding"]] * 2)

    def test_crlf_is_tolerated(self) -> None:
        self.h.hub.receive(self.client, b"PING x\r\n", self.h.now)
        self.assertEqual(self.link.lines(), ["OK PING x"])

    def test_too_long_line_is_refused_and_stream_recovers(self) -> None:
        self.h.hub.receive(self.client, b"PING " + b"a" * 600, self.h.now)
        self.assertEqual(self.link.lines(), ["ERR - too-long a line is at most 512 bytes"])
        self.h.hub.receive(self.client, b"aaaa\nPING ok\n", self.h.now)
        self.assertEqual(self.link.lines(), ["OK PING ok"])


class Registration(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.client, self.link = self.h.connect()
        self.h.hello(self.client, self.link)

    def test_new_then_known(self) -> None:
        reply = self.h.claim(self.client, self.link, "Alice", identity("alice"))
        self.assertEqual(reply, ["OK PROVE Alice new 0"])
        again, link = self.h.connect()
        self.h.hello(again, link)
        self.assertEqual(self.h.claim(again, link, "ALICE", identity("alice")), ["OK PROVE Alice known 0"])

    def test_register_replies_with_canonical_nick_and_fresh_challenge(self) -> None:
        first = self.h.ask(self.client, self.link, register_line("Alice", identity("alice")))[0].split(" ")
        second = self.h.ask(self.client, self.link, register_line("Alice", identity("alice")))[0].split(" ")
        self.assertEqual(first[:3], ["OK", "REGISTER", "alice"])
        self.assertNotEqual(first[3], second[3])

    def test_another_key_cannot_take_a_bound_nickname(self) -> None:
        self.h.register("alice")
        reply = self.h.claim(self.client, self.link, "alice", identity("mallory"))
        self.assertEqual(reply, ["ERR REGISTER taken alice is bound to another key"])

    def test_lookalikes_are_taken(self) -> None:
        self.h.register("alice")
        for fake in ("a1ice", "AL1CE", "alIce"):
            reply = self.h.claim(self.client, self.link, fake, identity("mallory"))
            self.assertEqual(reply[0].split(" ")[:3], ["ERR", "REGISTER", "taken"], fake)
            self.assertEqual(reply[0].split(" ")[3], "alice", "the text names the holder first (section 4)")
        reply = self.h.claim(self.client, self.link, "a1ice", identity("mallory"))
        self.assertEqual(reply, ["ERR REGISTER taken alice looks the same and is bound to another key"])

    def test_bad_nicknames(self) -> None:
        for nick in ("a", "1abc", "x" * 25, "al ice", "ålice", "-abc"):
            line = register_line("placeholder", identity("alice")).replace("placeholder", nick, 1)
            reply = self.h.ask(self.client, self.link, line)
            self.assertIn(reply[0].split(" ")[2], ("bad-nick", "syntax"), nick)

    def test_bad_keys_and_static_signature(self) -> None:
        ident = identity("alice")
        good = register_line("alice", ident).split(" ")
        short = list(good)
        short[2] = b64encode(b"x" * 31)
        self.assertEqual(self.h.ask(self.client, self.link, " ".join(short))[0].split(" ")[2], "bad-key")
        noncanonical = list(good)
        noncanonical[4] = noncanonical[4][:-3] + "=="  # wrong length / padding
        self.assertEqual(self.h.ask(self.client, self.link, " ".join(noncanonical))[0].split(" ")[2], "bad-key")
        forged = list(good)
        forged[3] = b64encode(identity("bob").static_public)
        self.assertEqual(self.h.ask(self.client, self.link, " ".join(forged))[0].split(" ")[2], "bad-signature")

    def test_weak_keys_are_refused_not_crashed_on(self) -> None:
        ident = identity("alice")
        weak_identity = (b"\x01" + b"\x00" * 31)  # the neutral point: anyone could sign for it
        zero_sig = b64encode(bytes(64))
        line = f"REGISTER alice {b64encode(weak_identity)} {b64encode(ident.static_public)} {zero_sig}"
        self.assertEqual(self.h.ask(self.client, self.link, line)[0].split(" ")[:3], ["ERR", "REGISTER", "bad-key"])
        weak_static = b"\x00" * 32
        line = f"REGISTER alice {b64encode(ident.identity_public)} {b64encode(weak_static)} {b64encode(ident.static_sig)}"
        self.assertEqual(self.h.ask(self.client, self.link, line)[0].split(" ")[:3], ["ERR", "REGISTER", "bad-key"])

    def test_wrong_proof_spends_the_challenge(self) -> None:
        self.h.ask(self.client, self.link, register_line("alice", identity("alice")))
        reply = self.h.ask(self.client, self.link, "PROVE " + b64encode(b"\x00" * 64))
        self.assertEqual(reply, ["ERR PROVE bad-signature the signature does not verify"])
        self.assertEqual(self.h.ask(self.client, self.link, "PROVE " + b64encode(b"\x00" * 64))[0].split(" ")[2], "order")

    def test_prove_without_register(self) -> None:
        self.assertEqual(self.h.ask(self.client, self.link, "PROVE AAAA")[0], "ERR PROVE order REGISTER first")

    def test_proof_of_work_is_required_for_new_nicknames_only(self) -> None:
        h = Harness(limits=Limits(pow_bits=8))
        client, link = h.connect()
        h.hello(client, link)
        reply = h.ask(client, link, register_line("alice", identity("alice")))
        self.assertEqual(reply[0].split(" ")[-1], "8")
        challenge = reply[0].split(" ")[3]
        signature = identity("alice").sign_registration(h.hub.server_id, b64decode(challenge), "alice")
        self.assertEqual(h.ask(client, link, f"PROVE {b64encode(signature)}")[0].split(" ")[2], "pow")
        self.assertEqual(h.claim(client, link, "alice", identity("alice")), ["OK PROVE alice new 0"])
        other, other_link = h.connect()
        h.hello(other, other_link)
        self.assertEqual(h.ask(other, other_link, register_line("alice", identity("alice")))[0].split(" ")[-1], "0")

    def test_new_login_replaces_old_connection(self) -> None:
        old, old_link = self.h.register("alice")
        self.h.register("alice")
        self.assertEqual(old_link.lines(), ["BYE replaced you logged in elsewhere"])
        self.assertTrue(old_link.closed)

    def test_registered_client_cannot_register_again(self) -> None:
        client, link = self.h.register("alice")
        self.assertEqual(self.h.ask(client, link, register_line("bob", identity("bob")))[0].split(" ")[2], "order")

    def test_binding_survives_a_restart(self) -> None:
        from relaychat.server.store import Store

        path = self.mktemp()
        h = Harness(store=Store(path))
        h.register("alice")
        server_id = h.hub.server_id
        h.store.close()
        h2 = Harness(store=Store(path))
        self.assertEqual(h2.hub.server_id, server_id)
        client, link = h2.connect()
        h2.hello(client, link)
        self.assertEqual(h2.claim(client, link, "alice", identity("mallory"))[0].split(" ")[2], "taken")
        self.assertEqual(h2.claim(client, link, "alice", identity("alice")), ["OK PROVE alice known 0"])


class Directory(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.bob = self.h.register("Bob")

    def test_lookup_online_and_offline(self) -> None:
        ident = identity("Bob")
        reply = self.h.ask(*self.alice, "LOOKUP bob")
        self.assertEqual(
            reply,
            [f"OK LOOKUP Bob {b64encode(ident.identity_public)} {b64encode(ident.static_public)} "
             f"{b64encode(ident.static_sig)} online"],
        )
        self.h.hub.disconnect(self.bob[0], self.h.now)
        self.assertTrue(self.h.ask(*self.alice, "LOOKUP bob")[0].endswith(" offline"))
        self.assertEqual(self.h.ask(*self.alice, "LOOKUP carol"), ["ERR LOOKUP no-such-user no such nickname"])

    def test_who_lists_online_nicknames_with_keys(self) -> None:
        reply = self.h.ask(*self.alice, "WHO")
        self.assertEqual(reply[-1], "OK WHO 2 2")
        self.assertEqual(
            sorted(reply[:-1]),
            sorted(f"USER {n} {b64encode(identity(n).identity_public)}" for n in ("alice", "Bob")),
        )

    def test_who_is_capped(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, max_who=1))
        a = h.register("alice")
        h.register("bob")
        reply = h.ask(*a, "WHO")
        self.assertEqual(len(reply), 2)
        self.assertEqual(reply[-1], "OK WHO 1 2")


class Sessions(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.bob = self.h.register("bob")

    def test_offer_accept_relay_both_ways_close(self) -> None:
        reply = self.h.ask(*self.alice, "OFFER Bob")
        sid = reply[0].split(" ")[2]
        self.assertRegex(sid, r"^[0-9a-f]{16}$")
        self.assertEqual(reply, [f"OK OFFER {sid} bob"])
        self.assertEqual(self.bob[1].lines(), [f"OFFERED {sid} alice {b64encode(identity('alice').identity_public)}"])
        self.assertEqual(self.h.ask(*self.bob, f"ACCEPT {sid}"), [f"OK ACCEPT {sid}"])
        self.assertEqual(self.alice[1].lines(), [f"ACCEPTED {sid}"])
        self.h.send(self.alice[0], f"FRAME {sid} aGVsbG8=")
        self.assertEqual(self.bob[1].lines(), [f"FRAME {sid} aGVsbG8="])
        self.assertEqual(self.alice[1].lines(), [])
        self.h.send(self.bob[0], f"FRAME {sid} d29ybGQ=")
        self.assertEqual(self.alice[1].lines(), [f"FRAME {sid} d29ybGQ="])
        self.assertEqual(self.h.ask(*self.bob, f"CLOSE {sid}"), [f"OK CLOSE {sid}"])
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} closed"])
        self.assertEqual(self.h.ask(*self.alice, f"FRAME {sid} AAAA")[0], f"ERR FRAME no-session {sid} no open session with that id")
        self.assertEqual(self.h.hub.stats.sessions_opened, 1)
        self.assertEqual(self.h.hub.stats.frames, 2)

    def test_frames_are_forwarded_byte_identical_and_batched(self) -> None:
        sid = self.h.open_session(self.alice, self.bob, "bob")
        data = b"".join(b"FRAME %s QUJD\n" % sid.encode() for _ in range(50))
        self.h.hub.receive(self.alice[0], data, self.h.now)
        self.assertEqual(self.bob[1].written, [data])
        self.bob[1].written.clear()
        self.h.hub.receive(self.alice[0], data.replace(b"\n", b"\r\n"), self.h.now)  # the CR is removed
        self.assertEqual(b"".join(self.bob[1].written), data)

    def test_frame_errors(self) -> None:
        sid = self.h.open_session(self.alice, self.bob, "bob")
        big = "A" * (4 * (32768 // 3 + 1) + 4)
        cases = {
            f"FRAME {sid} {big}": f"ERR FRAME too-big {sid} a frame payload is at most 32768 bytes once decoded",
            "FRAME 0123456789abcdef AAAA": "ERR FRAME no-session 0123456789abcdef no open session with that id",
            f"FRAME {sid} AA AA": f"ERR FRAME syntax {sid} FRAME takes a session id and one payload",
            "FRAME nonsense": "ERR FRAME syntax - FRAME takes a session id and one payload",
            "FRAME": "ERR FRAME syntax - FRAME takes a session id and one payload",
            f"FRAME {sid}": f"ERR FRAME syntax {sid} FRAME takes a session id and one payload",
        }
        for line, expected in cases.items():
            self.assertEqual(self.h.ask(*self.alice, line), [expected], line[:40])
        self.assertEqual(self.bob[1].lines(), [])

    def test_frame_before_accept_or_registration(self) -> None:
        sid = self.h.ask(*self.alice, "OFFER bob")[0].split(" ")[2]
        self.assertEqual(self.h.ask(*self.alice, f"FRAME {sid} AAAA")[0].split(" ")[2], "no-session")
        stranger, link = self.h.connect()
        self.h.hello(stranger, link)
        self.assertEqual(self.h.ask(stranger, link, f"FRAME {sid} AAAA")[0], "ERR FRAME order REGISTER first")

    def test_decline(self) -> None:
        sid = self.h.ask(*self.alice, "OFFER bob")[0].split(" ")[2]
        self.assertEqual(self.h.ask(*self.bob, f"DECLINE {sid}"), [f"OK DECLINE {sid}"])
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} declined"])
        self.assertEqual(self.h.ask(*self.bob, f"ACCEPT {sid}")[0].split(" ")[2], "no-session")

    def test_only_the_callee_accepts(self) -> None:
        sid = self.h.ask(*self.alice, "OFFER bob")[0].split(" ")[2]
        self.assertEqual(self.h.ask(*self.alice, f"ACCEPT {sid}")[0], f"ERR ACCEPT no-session {sid} is not an offer to you")
        carol = self.h.register("carol")
        self.assertEqual(self.h.ask(*carol, f"ACCEPT {sid}")[0], f"ERR ACCEPT no-session {sid} no such session")

    def test_caller_withdraws_offer(self) -> None:
        sid = self.h.ask(*self.alice, "OFFER bob")[0].split(" ")[2]
        self.bob[1].lines()
        self.assertEqual(self.h.ask(*self.alice, f"CLOSE {sid}"), [f"OK CLOSE {sid}"])
        self.assertEqual(self.bob[1].lines(), [f"CLOSED {sid} closed"])
        self.assertEqual(self.h.hub.offers, {})

    def test_offer_errors(self) -> None:
        self.assertEqual(self.h.ask(*self.alice, "OFFER alice")[0], "ERR OFFER invalid you cannot talk to yourself")
        self.assertEqual(self.h.ask(*self.alice, "OFFER nobody")[0], "ERR OFFER no-such-user no such nickname")
        self.h.register("carol")
        self.h.hub.disconnect(self.h.hub.online["carol"], self.h.now)
        self.assertEqual(self.h.ask(*self.alice, "OFFER carol")[0], "ERR OFFER offline carol is not connected")
        self.assertEqual(self.h.ask(*self.alice, "OFFER")[0].split(" ")[2], "syntax")

    def test_pending_offer_and_session_limits(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, max_pending_offers=2, max_sessions=3))
        alice = h.register("alice")
        bob = h.register("bob")
        carol = h.register("carol")
        self.assertTrue(h.ask(*alice, "OFFER bob")[0].startswith("OK"))
        self.assertTrue(h.ask(*alice, "OFFER bob")[0].startswith("OK"))
        self.assertEqual(h.ask(*alice, "OFFER bob")[0], "ERR OFFER limit at most 2 unanswered offers")
        self.assertEqual(h.ask(*carol, "OFFER bob")[0], "ERR OFFER limit at most 2 unanswered offers")
        sid = h.ask(*carol, "OFFER alice")[0].split(" ")[2]
        h.ask(*alice, f"ACCEPT {sid}")
        self.assertEqual(h.ask(*alice, "OFFER carol")[0], "ERR OFFER limit at most 3 sessions each")

    def test_several_sessions_at_once(self) -> None:
        carol = self.h.register("carol")
        s1 = self.h.open_session(self.alice, self.bob, "bob")
        s2 = self.h.open_session(self.alice, carol, "carol")
        self.h.send(self.alice[0], f"FRAME {s1} AAAA", f"FRAME {s2} BBBB")
        self.assertEqual(self.bob[1].lines(), [f"FRAME {s1} AAAA"])
        self.assertEqual(carol[1].lines(), [f"FRAME {s2} BBBB"])

    def test_disconnect_tells_peer(self) -> None:
        sid = self.h.open_session(self.alice, self.bob, "bob")
        self.h.hub.disconnect(self.bob[0], self.h.now)
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} gone"])
        self.assertNotIn("bob", self.h.hub.online)
        self.h.hub.disconnect(self.bob[0], self.h.now)  # idempotent
        self.assertEqual(self.alice[1].lines(), [])

    def test_offer_timeout_tells_both(self) -> None:
        sid = self.h.ask(*self.alice, "OFFER bob")[0].split(" ")[2]
        self.bob[1].lines()
        self.h.now += 61
        self.h.send(self.alice[0], "PING")  # keep them from idling out
        self.h.send(self.bob[0], "PING")
        self.alice[1].lines(), self.bob[1].lines()
        self.h.hub.tick(self.h.now)
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} timeout"])
        self.assertEqual(self.bob[1].lines(), [f"CLOSED {sid} timeout"])


class FlowControl(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.bob = self.h.register("bob")
        self.carol = self.h.register("carol")
        self.sid = self.h.open_session(self.alice, self.bob, "bob")

    def test_slow_reader_pauses_its_senders_only(self) -> None:
        self.h.open_session(self.carol, self.bob, "bob")
        dave = self.h.register("dave")
        self.h.open_session(dave, self.carol, "carol")
        self.h.hub.set_congested(self.bob[0], True, self.h.now)
        self.assertFalse(self.alice[1].reading)
        self.assertFalse(self.carol[1].reading)
        self.assertTrue(dave[1].reading)
        self.h.hub.set_congested(self.bob[0], False, self.h.now)
        self.assertTrue(self.alice[1].reading)
        self.assertTrue(self.carol[1].reading)

    def test_closing_the_session_releases_the_sender(self) -> None:
        self.h.hub.set_congested(self.bob[0], True, self.h.now)
        self.assertFalse(self.alice[1].reading)
        self.h.send(self.alice[0], f"CLOSE {self.sid}")  # already on its way when alice was paused
        self.assertTrue(self.alice[1].reading)

    def test_session_opening_towards_a_congested_peer_pauses(self) -> None:
        sid = self.h.ask(*self.carol, "OFFER alice")[0].split(" ")[2]
        self.h.hub.set_congested(self.carol[0], True, self.h.now)
        self.assertEqual(self.h.ask(*self.alice, f"ACCEPT {sid}"), [f"OK ACCEPT {sid}"])
        self.assertFalse(self.alice[1].reading)

    def test_rate_limit_pauses_reading_without_dropping(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, lines_per_second=10, line_burst=20))
        alice = h.register("alice")
        bob = h.register("bob")
        sid = h.open_session(alice, bob, "bob")
        alice[1].wakeups.clear()
        h.now += 10  # a full budget of 20
        h.send(alice[0], *[f"FRAME {sid} AAAA"] * 30, "PING last")
        self.assertEqual(len(bob[1].lines()), 20)  # the burst, within one read
        self.assertFalse(alice[1].reading)
        self.assertEqual(len(alice[1].wakeups), 1)
        self.assertGreater(alice[1].wakeups[0], 1.0)  # until the 11 waiting lines can go
        h.now += alice[1].wakeups[0]
        h.hub.wake(alice[0], h.now)
        self.assertEqual(len(bob[1].lines()), 10)  # nothing dropped, in order
        self.assertEqual(alice[1].lines()[-1], "OK PING last")
        self.assertTrue(alice[1].reading)


class Abuse(SynchronousTestCase):
    def test_repeated_violations_end_only_that_connection(self) -> None:
        h = Harness()
        alice = h.register("alice")
        bob = h.register("bob")
        sid = h.open_session(alice, bob, "bob")
        bad, link = h.connect()
        h.send(bad, *["GARBAGE"] * 12)
        lines = link.lines()
        self.assertEqual(len([l for l in lines if l.startswith("ERR")]), 10)
        self.assertEqual(lines[-1], "BYE violations too many protocol errors")
        self.assertTrue(link.closed)
        h.send(alice[0], f"FRAME {sid} AAAA")
        self.assertEqual(bob[1].lines(), [f"FRAME {sid} AAAA"])
        self.assertEqual(h.hub.stats.disconnects_for_violations, 1)

    def test_ordinary_refusals_are_not_violations(self) -> None:
        h = Harness()
        alice = h.register("alice")
        h.send(alice[0], *["LOOKUP nobody"] * 12)
        self.assertFalse(alice[1].closed)

    def test_connections_per_address(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, connections_per_address=2))
        h.connect("10.0.0.1")
        h.connect("10.0.0.1")
        _, link = h.connect("10.0.0.1")
        self.assertEqual(link.lines(), ["BYE busy too many connections from your address"])
        self.assertTrue(link.closed)
        _, other = h.connect("10.0.0.2")
        self.assertFalse(other.closed)

    def test_max_connections(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, max_connections=1))
        h.connect("10.0.0.1")
        _, link = h.connect("10.0.0.2")
        self.assertEqual(link.lines(), ["BYE busy the relay is full"])

    def test_freed_connection_slots_are_reusable(self) -> None:
        h = Harness(limits=Limits(pow_bits=0, connections_per_address=1))
        client, _ = h.connect()
        h.hub.disconnect(client, h.now)
        _, link = h.connect()
        self.assertFalse(link.closed)

    def test_registration_timeout(self) -> None:
        h = Harness()
        client, link = h.connect()
        h.now += 29
        h.hub.tick(h.now)
        self.assertFalse(link.closed)
        h.now += 2
        h.hub.tick(h.now)
        self.assertEqual(link.lines(), ["BYE timeout registration took too long"])
        self.assertTrue(link.closed)

    def test_idle_timeout_spares_paused_connections(self) -> None:
        h = Harness()
        alice = h.register("alice")
        bob = h.register("bob")
        h.open_session(alice, bob, "bob")
        h.hub.set_congested(bob[0], True, h.now)  # alice is paused on bob's account
        h.now += 601
        h.hub.tick(h.now)
        self.assertEqual(bob[1].lines()[0], "BYE idle no activity")
        self.assertFalse(alice[1].closed)


class Mail(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(mail=MailPolicy(mail_per_recipient=3, mail_per_sender=2, max_mail=100))
        self.alice = self.h.register("alice")
        self.h.register("bob")
        self.h.hub.disconnect(self.h.hub.online["bob"], self.h.now)

    def test_mail_is_held_delivered_and_redelivered_until_acked(self) -> None:
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob c2VhbGVk"), ["OK MAIL 1"])
        client, link = self.h.connect()
        self.h.hello(client, link)
        reply = self.h.claim(client, link, "bob", identity("bob"))
        self.assertEqual(reply, ["OK PROVE bob known 1", f"MAIL 1 alice {int(self.h.now)} c2VhbGVk"])
        self.h.hub.disconnect(client, self.h.now)
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob"))[1], f"MAIL 1 alice {int(self.h.now)} c2VhbGVk")
        self.assertEqual(self.h.ask(client, link, "ACK 1"), ["OK ACK 1"])
        self.assertEqual(self.h.ask(client, link, "ACK 1"), ["ERR ACK no-such-mail 1 no such mail for you"])
        self.assertEqual(self.h.store.pending_mail("bob"), [])

    def test_mail_to_an_online_user_arrives_at_once(self) -> None:
        bob = self.h.register("bob")
        self.h.send(self.alice[0], "MAIL bob AAAA")
        self.assertEqual(bob[1].lines(), [f"MAIL 1 alice {int(self.h.now)} AAAA"])

    def test_only_the_recipient_can_ack(self) -> None:
        self.h.send(self.alice[0], "MAIL bob AAAA")
        self.assertEqual(self.h.ask(*self.alice, "ACK 1")[0].split(" ")[2], "no-such-mail")
        self.assertEqual(len(self.h.store.pending_mail("bob")), 1)

    def test_quotas_and_sizes(self) -> None:
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob " + "A" * 140)[0], "ERR MAIL too-big a mail payload is at most 100 bytes once decoded")
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob !!!!")[0], "ERR MAIL syntax the payload is not base64")
        self.assertEqual(self.h.ask(*self.alice, "MAIL nobody AAAA")[0], "ERR MAIL no-such-user no such nickname")
        self.h.send(self.alice[0], "MAIL bob AAAA", "MAIL bob AAAA")
        self.alice[1].lines()
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob AAAA")[0], "ERR MAIL quota you have 2 messages waiting there already")
        carol = self.h.register("carol")
        self.assertEqual(self.h.ask(*carol, "MAIL bob AAAA"), ["OK MAIL 3"])
        self.assertEqual(self.h.ask(*carol, "MAIL bob AAAA")[0], "ERR MAIL quota bob's mailbox is full")

    def test_expiry(self) -> None:
        self.h.send(self.alice[0], "MAIL bob AAAA")
        self.assertEqual(self.h.hub.purge_mail(self.h.now + 29 * 86400), 0)
        self.assertEqual(self.h.hub.purge_mail(self.h.now + 31 * 86400), 1)


class Operator(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.bob = self.h.register("bob")

    def test_kick_tells_client_and_peer(self) -> None:
        sid = self.h.open_session(self.alice, self.bob, "bob")
        self.assertTrue(Verbs(self.h.hub).kick("Bob", "spamming"))
        self.assertEqual(self.bob[1].lines(), ["BYE kicked spamming"])
        self.assertTrue(self.bob[1].closed)
        self.assertEqual(self.alice[1].lines(), [f"CLOSED {sid} kicked"])
        self.assertFalse(Verbs(self.h.hub).kick("bob"))

    def test_nick_ban_lasts_until_it_ends(self) -> None:
        self.assertEqual(Verbs(self.h.hub).ban("nick", "Bob", 60, self.h.now), 1)
        self.assertEqual(self.bob[1].lines(), ["BYE banned nick 60 this nickname is banned for 60 more seconds"])
        client, link = self.h.connect()
        self.h.hello(client, link)
        self.h.now += 20.5  # the time left is counted down, rounded up
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob")),
                         ["ERR REGISTER banned nick 40 this nickname is banned for 40 more seconds"])
        self.h.now += 41
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob")), ["OK PROVE bob known 0"])

    def prove_after_ban(self, nick: str, who: str, banned: str) -> list[str]:
        """Register ``nick`` with ``who``'s key, let the operator ban ``banned``, then prove."""
        client, link = self.h.connect()
        self.h.hello(client, link)
        reply = self.h.ask(client, link, register_line(nick, identity(who)))[0].split(" ")
        Verbs(self.h.hub).ban("nick", banned, 60, self.h.now)
        signature = identity(who).sign_registration(self.h.hub.server_id, b64decode(reply[3]), nick)
        return self.h.ask(client, link, f"PROVE {b64encode(signature)}")

    def test_ban_between_register_and_prove_holds(self) -> None:
        self.assertEqual(self.prove_after_ban("carol", "carol", "carol"), ["ERR PROVE banned nick 60 this nickname is banned for 60 more seconds"])

    def test_ban_between_register_and_prove_holds_for_the_key_too(self) -> None:
        self.assertEqual(self.prove_after_ban("bobby", "bob", "bob"),
                         ["ERR PROVE banned key 60 this identity key is banned for 60 more seconds"])
        self.assertNotIn("bobby", self.h.hub.online)

    def test_address_ban(self) -> None:
        Verbs(self.h.hub).ban("address", "127.0.0.1", 60, self.h.now)
        self.assertTrue(self.alice[1].closed and self.bob[1].closed)
        _, link = self.h.connect("127.0.0.1")
        self.assertEqual(link.lines(), ["BYE banned address 60 this address is banned for 60 more seconds"])
        _, other = self.h.connect("127.0.0.2")
        self.assertFalse(other.closed)

    def test_notice_goes_to_registered_clients(self) -> None:
        waiting, link = self.h.connect()
        self.assertEqual(Verbs(self.h.hub).notice("maintenance\nat noon"), 2)
        self.assertEqual(self.alice[1].lines(), ["NOTICE maintenance at noon"])
        self.assertEqual(link.lines(), [])

    def test_drain_waits_for_sessions_then_reports(self) -> None:
        carol = self.h.register("carol")
        sid = self.h.open_session(self.alice, self.bob, "bob")
        done: list[bool] = []
        self.h.hub.when_drained().addCallback(lambda _: done.append(True))
        self.h.hub.drain("restarting soon")
        self.assertEqual(carol[1].lines(), ["NOTICE restarting soon", "BYE draining restarting soon"])
        self.assertFalse(self.alice[1].closed)
        self.assertEqual(self.h.ask(*self.alice, "OFFER bob")[0], "ERR OFFER draining the relay is shutting down")
        late, newcomer = self.h.connect()
        self.assertEqual(newcomer.lines(), ["BYE draining restarting soon"])
        self.assertEqual(done, [])
        self.h.send(self.alice[0], f"CLOSE {sid}")
        self.assertTrue(self.alice[1].closed and self.bob[1].closed)
        for client in (carol[0], self.alice[0], self.bob[0]):
            self.h.hub.disconnect(client, self.h.now)
        self.assertEqual(done, [])  # a connection told BYE is there until its socket closes
        self.h.hub.disconnect(late, self.h.now)
        self.assertEqual(done, [True])


class FakeLinkSelfCheck(SynchronousTestCase):
    def test_lines_forgets(self) -> None:
        link = FakeLink()
        link.write(b"a\nb\n")
        self.assertEqual(link.lines(), ["a", "b"])
        self.assertEqual(link.lines(), [])
