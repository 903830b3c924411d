"""Several ``twistd relaychat`` processes as one relay over a real ``redis-server``."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

import relaychat.client as api
from relaychat.client.seen import SeenMail
from relaychat.crypto.pins import KnownPeers

from relaychat.crypto.identity import solve_pow
from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import b64decode, b64encode
from tests.cluster_support import ClusterClients, wait_for
from tests.daemon import Daemon, LineSocket, open_session
from tests.redis_server import REDIS_SERVER, RedisServer

POW_BITS = 4


class ClusterMixin(ClusterClients):
    """A Redis and ``nodes`` relays naming it."""

    nodes = 2

    def setUp(self) -> None:
        if REDIS_SERVER is None:
            raise SkipTest("redis-server is not installed")
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.redis = RedisServer(str(self.home / "redis")).start()
        self.addCleanup(self.redis.stop)
        self.sockets: list[LineSocket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])
        self.daemons = [self.start_node(chr(ord("a") + i)) for i in range(self.nodes)]

    def start_node(self, name: str) -> Daemon:
        config = self.home / f"{name}.toml"
        config.write_text(
            f'[relay]\ndata_dir = "{self.home / name}"\n'
            f'[[listener]]\nkind = "tcp"\nendpoint = "tcp:0:interface=127.0.0.1"\n'
            f'[limits]\npow_bits = {POW_BITS}\n'
            f'[cluster]\nredis = "{self.redis.endpoint}"\nnode = "{name}"\n'
        )
        daemon = Daemon("--config", str(config), cwd=str(self.home))
        daemon.start()
        self.addCleanup(daemon.stop)
        wait_for(lambda: "joined through" in daemon.log(), what=f"node {name} to join:\n{daemon.log()}")
        return daemon



class ClusterCase(ClusterMixin, SynchronousTestCase):
    pass


class Registry(ClusterCase):
    def test_a_nickname_bound_on_one_node_is_bound_on_every_node(self) -> None:
        alice = Identity.generate()
        self.registered(0, "Alice", alice)
        other = self.client(1)
        self.assertEqual(other.ask("HELLO 1").split(" ")[:3], ["OK", "HELLO", "1"])
        mallory = Identity.generate()
        register = (f"REGISTER alice {b64encode(mallory.identity_public)} "
                    f"{b64encode(mallory.static_public)} {b64encode(mallory.static_sig)}")
        self.assertTrue(other.ask(register).startswith("ERR REGISTER taken Alice is bound"), register)
        lookalike = register.replace("alice", "a1ice", 1)
        self.assertTrue(other.ask(lookalike).startswith("ERR REGISTER taken Alice looks the same and is bound to another key"))
        # The owner reclaims it through the other node, without proof of work, and it is not new.
        reply = self.client(1).register("alice", alice)
        self.assertTrue(reply.startswith("OK PROVE Alice known"), reply)

    def test_every_node_gives_the_same_relay_id(self) -> None:
        ids = {self.client(i).ask("HELLO 1").split(" ")[3] for i in range(self.nodes)}
        self.assertEqual(len(ids), 1)

    def test_two_nodes_racing_for_a_nickname_with_different_keys_give_it_to_one(self) -> None:
        for round in range(8):
            nick = f"race{round}"
            sockets = [self.client(0), self.client(1)]
            identities = [Identity.generate(), Identity.generate()]
            proves = []
            for s, identity in zip(sockets, identities):
                server_id = b64decode(s.ask("HELLO 1").split(" ")[3])
                reply = s.ask(f"REGISTER {nick} {b64encode(identity.identity_public)} "
                              f"{b64encode(identity.static_public)} {b64encode(identity.static_sig)}").split(" ")
                self.assertEqual(reply[:2], ["OK", "REGISTER"])
                challenge = b64decode(reply[3])
                proves.append(f"PROVE {b64encode(identity.sign_registration(server_id, challenge, nick))} "
                              f"{b64encode(solve_pow(challenge, int(reply[4])))}")
            barrier = threading.Barrier(2)
            replies: dict[int, str] = {}

            def prove(i: int) -> None:
                barrier.wait()
                replies[i] = sockets[i].ask(proves[i])

            threads = [threading.Thread(target=prove, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            wins = [i for i in range(2) if replies[i].startswith("OK PROVE")]
            self.assertEqual(len(wins), 1, replies)
            loser = 1 - wins[0]
            self.assertTrue(replies[loser].startswith("ERR PROVE taken"), replies)
            for node in range(self.nodes):
                s = self.registered(node, f"look{round}n{node}", Identity.generate())
                found = s.ask(f"LOOKUP {nick}").split(" ")
                self.assertEqual(found[3], b64encode(identities[wins[0]].identity_public))


class Presence(ClusterCase):
    nodes = 3

    def test_who_and_lookup_see_every_nodes_users(self) -> None:
        watcher = self.registered(0, "alice", Identity.generate())
        self.registered(1, "bob", Identity.generate())
        self.registered(2, "carol", Identity.generate())
        wait_for(lambda: self.who(watcher) == ({"alice", "bob", "carol"}, "OK WHO 3 3"), what="WHO 3 3")
        self.assertTrue(watcher.ask("LOOKUP bob").endswith(" online"))

    def test_a_login_on_another_node_replaces_the_first(self) -> None:
        alice = Identity.generate()
        first = self.registered(0, "alice", alice)
        watcher = self.registered(2, "carol", Identity.generate())
        wait_for(lambda: self.who(watcher)[0] == {"alice", "carol"}, what="alice seen on node c")
        self.registered(1, "alice", alice)
        self.assertEqual(first.read_line(), "BYE replaced you logged in elsewhere")
        users, total = self.who(watcher)
        self.assertEqual((users, total), ({"alice", "carol"}, "OK WHO 2 2"))

    def test_a_killed_node_is_noticed_and_no_binding_is_lost(self) -> None:
        watcher = self.registered(0, "alice", Identity.generate())
        bob = Identity.generate()
        self.registered(1, "bob", bob)
        wait_for(lambda: self.who(watcher)[0] == {"alice", "bob"}, what="bob seen")
        process = self.daemons[1].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        started = time.monotonic()
        wait_for(lambda: self.who(watcher) == ({"alice"}, "OK WHO 1 1"), timeout=8, what="bob gone")
        self.assertLess(time.monotonic() - started, 6.0)
        self.assertTrue(watcher.ask("LOOKUP bob").endswith(" offline"))
        # Bob reconnects to another node and carries on under his nickname.
        reply = self.client(2).register("bob", bob)
        self.assertTrue(reply.startswith("OK PROVE bob known"), reply)
        wait_for(lambda: self.who(watcher)[0] == {"alice", "bob"}, what="bob back")


class RedisOutage(ClusterCase):
    def test_redis_down_is_refused_as_unavailable_and_the_nodes_recover(self) -> None:
        alice = Identity.generate()
        watcher = self.registered(0, "alice", alice)
        self.redis.stop()
        s = self.client(1)
        s.ask("HELLO 1")
        bob = Identity.generate()
        register = (f"REGISTER bob {b64encode(bob.identity_public)} "
                    f"{b64encode(bob.static_public)} {b64encode(bob.static_sig)}")
        self.assertTrue(s.ask(register).startswith("ERR REGISTER unavailable"))
        self.assertTrue(watcher.ask("LOOKUP alice").startswith("ERR LOOKUP unavailable"))
        self.assertEqual(watcher.ask("PING x"), "OK PING x")  # what needs no Redis goes on
        wait_for(lambda: "cluster: Redis lost its" in self.daemons[0].log(), what="the outage logged")
        self.redis.start()  # the same port and data directory: the bindings come back from the AOF
        wait_for(lambda: "Redis is back" in self.daemons[1].log(), timeout=20, what="node b to reconnect")
        wait_for(lambda: "Redis is back" in self.daemons[0].log(), timeout=20, what="node a to reconnect")
        reply = self.client(1).register("bob", bob)
        self.assertTrue(reply.startswith("OK PROVE bob new"), reply)
        self.assertTrue(watcher.ask("LOOKUP alice").endswith(" online"))  # re-asserted after the restart
        wait_for(lambda: self.who(watcher)[0] == {"alice", "bob"}, what="both seen after the restart")


class Sessions(ClusterCase):
    def pair(self) -> tuple[LineSocket, LineSocket, str]:
        alice = self.registered(0, "alice", Identity.generate())
        bob = self.registered(1, "bob", Identity.generate())
        wait_for(lambda: self.who(alice)[0] == {"alice", "bob"} and self.who(bob)[0] == {"alice", "bob"},
                 what="both seen")
        return alice, bob, open_session(alice, bob, "alice", "bob")

    def test_offer_accept_frames_in_order_and_close_across_nodes(self) -> None:
        alice, bob, sid = self.pair()
        frames = [b64encode(b"%05d" % i + b"x" * (i % 700)) for i in range(500)]
        alice.sock.sendall("".join(f"FRAME {sid} {f}\n" for f in frames).encode())
        for f in frames:
            self.assertEqual(bob.read_line(), f"FRAME {sid} {f}")
        bob.send(f"FRAME {sid} {frames[1]}")
        self.assertEqual(alice.read_line(), f"FRAME {sid} {frames[1]}")
        self.assertEqual(bob.ask(f"CLOSE {sid}"), f"OK CLOSE {sid}")
        self.assertEqual(alice.read_line(), f"CLOSED {sid} closed")
        self.assertTrue(alice.ask(f"FRAME {sid} {frames[0]}").startswith("ERR FRAME no-session"))

    def test_decline_and_errors_across_nodes_read_as_on_one_node(self) -> None:
        alice = self.registered(0, "alice", Identity.generate())
        bob = self.registered(1, "bob", Identity.generate())
        wait_for(lambda: self.who(alice)[0] == {"alice", "bob"}, what="bob seen")
        sid = alice.ask("OFFER bob").split(" ")[2]
        self.assertTrue(bob.read_line().startswith(f"OFFERED {sid} alice "))
        self.assertEqual(bob.ask(f"DECLINE {sid}"), f"OK DECLINE {sid}")
        self.assertEqual(alice.read_line(), f"CLOSED {sid} declined")
        for _ in range(4):
            alice.ask("OFFER bob")
            bob.read_line()
        self.assertTrue(alice.ask("OFFER bob").startswith("ERR OFFER limit"))

    def test_a_peer_disconnecting_on_its_node_closes_the_session_with_gone(self) -> None:
        alice, bob, sid = self.pair()
        bob.close()
        self.assertEqual(alice.read_line(), f"CLOSED {sid} gone")

    def test_a_node_killed_mid_conversation_ends_its_sessions_with_gone(self) -> None:
        alice, bob, sid = self.pair()
        alice.send(f"FRAME {sid} {b64encode(b'hello')}")
        self.assertEqual(bob.read_line(), f"FRAME {sid} {b64encode(b'hello')}")
        process = self.daemons[1].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        started = time.monotonic()
        alice.sock.settimeout(10)
        alice.timeout = 10
        self.assertEqual(alice.read_line(), f"CLOSED {sid} gone")
        self.assertLess(time.monotonic() - started, 6.0)

    def test_a_reader_that_stops_reading_stops_its_sender_on_the_other_node(self) -> None:
        alice, bob, sid = self.pair()
        frame = f"FRAME {sid} {b64encode(os.urandom(16384))}\n".encode()
        alice.sock.setblocking(False)
        pending = b""
        frames = 0
        last_progress = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not pending:
                pending = frame
                frames += 1
            try:
                pending = pending[alice.sock.send(pending):]
                last_progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - last_progress > 2.0:
                    break
                time.sleep(0.01)
        else:
            self.fail(f"the sender was never stopped ({frames} frames sent)")
        # Bounded: the credit window and the sockets' buffers, not everything offered.
        self.assertLess(frames * len(frame), 32 * 1024 * 1024)
        alice.sock.setblocking(True)
        rest = threading.Thread(target=alice.sock.sendall, args=(pending,))  # blocks until bob reads
        rest.start()
        self.addCleanup(rest.join, 10)
        # The reader reads again: every frame arrives, in order, and the sender goes on.
        bob.timeout = 30
        for _ in range(frames):
            self.assertEqual(bob.read_line(), frame[:-1].decode())
        alice.send(f"FRAME {sid} {b64encode(b'after')}")
        self.assertEqual(bob.read_line(), f"FRAME {sid} {b64encode(b'after')}")


class ClientLibraryAcrossNodes(ClusterMixin, TestCase):
    """The real client library, Noise handshake and all, from a client on node A to one on node B."""

    @inlineCallbacks
    def connect(self, node: int, nick: str, identity: Identity) -> Any:
        directory = self.home / f"client-{nick}"
        directory.mkdir()
        client = yield api.connect(
            reactor, f"tcp:127.0.0.1:{self.daemons[node].ports()[0]}", identity, nick,
            KnownPeers.in_directory(str(directory)), seen_mail=SeenMail.in_directory(str(directory)),
            handshake_timeout=10.0)
        self.addCleanup(lambda: client._protocol.transport.loseConnection())
        return client

    @inlineCallbacks
    def test_a_conversation_from_node_a_to_node_b(self) -> Any:
        from tests.test_client_e2e import Inbox

        alice_id, bob_id = Identity.generate(), Identity.generate()
        alice = yield self.connect(0, "alice", alice_id)
        bob = yield self.connect(1, "bob", bob_id)
        watcher = self.registered(0, "watcher", Identity.generate())
        wait_for(lambda: watcher.ask("LOOKUP bob").endswith(" online"), what="bob seen on node a")
        accepted = Inbox(reactor)  # a real daemon: the real clock
        bob.observe_offers(lambda offer: offer.accept().addCallback(accepted))
        a_conv = yield alice.call("bob")
        b_conv = yield accepted.get()
        self.assertEqual(a_conv.safety_number, b_conv.safety_number)
        self.assertEqual(a_conv.peer_identity, bob_id.identity_public)
        a_msgs, b_msgs = Inbox(reactor), Inbox(reactor)
        a_conv.observe_messages(a_msgs)
        b_conv.observe_messages(b_msgs)
        said = [f"message {i} " + "x" * (i * 37 % 2000) for i in range(40)]
        for text in said:
            a_conv.send(text)
        b_conv.send("and back")
        for text in said:
            self.assertEqual((yield b_msgs.get()), text)
        self.assertEqual((yield a_msgs.get()), "and back")


class MailAcrossNodes(ClusterCase):
    def test_mail_stored_through_a_is_delivered_through_b_and_deleted_after_ack(self) -> None:
        alice = self.registered(0, "alice", Identity.generate())
        bob_id = Identity.generate()
        bob = self.registered(1, "bob", bob_id)
        bob.close()
        wait_for(lambda: alice.ask("LOOKUP bob").endswith(" offline"), what="bob offline")
        sealed = [b64encode(bytes([i]) * (100 + i)) for i in range(3)]
        ids = []
        for body in sealed:
            reply = alice.ask(f"MAIL bob {body}").split(" ")
            self.assertEqual(reply[:2], ["OK", "MAIL"], reply)
            ids.append(reply[2])
        # Through node b (and, after a Redis restart, still there: the AOF keeps it).
        self.redis.stop()
        self.redis.start()
        wait_for(lambda: self.daemons[1].log().count("Redis is back") >= 1, timeout=20, what="node b back")
        again = self.client(1)
        reply = again.register("bob", bob_id)
        self.assertEqual(reply, "OK PROVE bob known 3")
        for mail_id, body in zip(ids, sealed):
            line = again.read_line().split(" ")
            self.assertEqual((line[0], line[1], line[2], line[4]), ("MAIL", mail_id, "alice", body))
        self.assertEqual(again.ask(f"ACK {ids[0]}"), f"OK ACK {ids[0]}")
        self.assertTrue(again.ask(f"ACK {ids[0]}").startswith("ERR ACK no-such-mail"))
        # New mail to bob, online on b, sent through a: delivered at once.
        wait_for(lambda: "Redis is back" in self.daemons[0].log(), timeout=20, what="node a back")
        wait_for(lambda: alice.ask("LOOKUP bob").endswith(" online"), what="bob seen online from a")
        reply = alice.ask(f"MAIL bob {sealed[0]}").split(" ")
        self.assertEqual(reply[:2], ["OK", "MAIL"], reply)
        line = again.read_line().split(" ")
        self.assertEqual((line[0], line[1], line[4]), ("MAIL", reply[2], sealed[0]))
        # Only the unacknowledged mail comes again at the next login, through node a.
        again.close()
        wait_for(lambda: alice.ask("LOOKUP bob").endswith(" offline"), what="bob offline again")
        third = self.client(0)
        self.assertEqual(third.register("bob", bob_id), "OK PROVE bob known 3")

    def test_the_quotas_hold_across_nodes(self) -> None:
        a = self.registered(0, "alice", Identity.generate())
        b = self.registered(1, "carol", Identity.generate())
        self.registered(1, "bob", Identity.generate()).close()
        body = b64encode(b"x" * 50)
        for i in range(20):  # mail_per_sender, through either node
            self.assertTrue((a if i % 2 else b).ask(f"MAIL bob {body}").startswith("OK MAIL"))
        self.assertTrue(a.ask(f"MAIL bob {body}").startswith("OK MAIL"))  # alice has sent 10
        for _ in range(9):
            a.ask(f"MAIL bob {body}")
        self.assertEqual(a.ask(f"MAIL bob {body}"), "ERR MAIL quota you have 20 messages waiting there already")
