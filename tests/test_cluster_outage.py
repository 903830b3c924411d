"""Redis killed and restarted while conversations and mail are in flight across two nodes."""

from __future__ import annotations

import threading
import time
from typing import Callable

from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import b64encode
from tests.cluster_support import SharedCluster, wait_for
from tests.daemon import LineSocket, open_session


class Collector:
    """Every line a socket receives, read by a thread (its owner only sends)."""

    def __init__(self, s: LineSocket) -> None:
        self.s = s
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.s.sock.settimeout(None)
        self.s.timeout = 1e9
        try:
            while True:
                self.lines.append(self.s.read_line())
        except (OSError, ConnectionError):
            pass


def keep_doing(stop: threading.Event, step: Callable[[int], None], pause: float) -> threading.Thread:
    def run() -> None:
        i = 0
        while not stop.is_set():
            try:
                step(i)
            except (OSError, ConnectionError, TimeoutError):
                return
            i += 1
            time.sleep(pause)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class RedisRestartUnderLoad(SharedCluster, SynchronousTestCase):
    # Every write on disk before Redis answers it: what a node told a client it accepted survives a crash.
    redis_options = ("--appendfsync", "always")

    def extra_config(self, name: str) -> str:
        return ("[mailbox]\nmail_per_sender = 1000\nmail_per_recipient = 2000\nmail_per_sender_per_hour = 100000\n")

    def test_kill_and_restart_redis_mid_traffic(self) -> None:
        bob_id = Identity.generate()
        alice, bob = self.registered(0, "alice"), self.registered(1, "bob", bob_id)
        dave_id = Identity.generate()
        self.registered(1, "dave", dave_id).close()
        senders = [self.registered(0, "carol"), self.registered(1, "erin")]
        wait_for(lambda: alice.ask("LOOKUP bob").endswith(" online") and bob.ask("LOOKUP alice").endswith(" online"),
                 what="alice and bob see each other")
        wait_for(lambda: alice.ask("LOOKUP dave").endswith(" offline"), what="dave offline")
        sid = open_session(alice, bob, "alice", "bob")
        # And a conversation within node a, which needs no Redis: it must go on untouched.
        near, far = self.registered(0, "near"), self.registered(0, "far")
        local_sid = open_session(near, far, "near", "far")
        heard = {name: Collector(s) for name, s in (("alice", alice), ("bob", bob), ("near", near), ("far", far))}
        stop = threading.Event()
        sent: dict[str, list[str]] = {"alice": [], "bob": [], "near": []}

        def frames(who: str, s: LineSocket, sid: str) -> Callable[[int], None]:
            def step(i: int) -> None:
                if f"CLOSED {sid} gone" in heard[who].lines:
                    return  # as a client does: the session is over
                frame = b64encode(f"{who} {i:06d} ".encode() + b"x" * (i % 900))
                s.send(f"FRAME {sid} {frame}")
                sent[who].append(frame)
            return step

        accepted: dict[str, str] = {}  # mail id -> body
        refused: list[str] = []
        attempted: set[str] = set()

        def mails(n: int, s: LineSocket) -> Callable[[int], None]:
            def step(i: int) -> None:
                body = b64encode(f"mail {n}:{i}".encode())
                attempted.add(body)
                reply = s.ask(f"MAIL dave {body}")
                if reply.startswith("OK MAIL "):
                    accepted[reply.split(" ")[2]] = body
                else:
                    self.assertEqual(reply.split(" ")[:3], ["ERR", "MAIL", "unavailable"], reply)
                    refused.append(reply)
            return step

        threads = [keep_doing(stop, frames("alice", alice, sid), 0.0005), keep_doing(stop, frames("bob", bob, sid), 0.0005),
                   keep_doing(stop, frames("near", near, local_sid), 0.0005)]
        threads += [keep_doing(stop, mails(n, s), 0.01) for n, s in enumerate(senders)]
        self.addCleanup(stop.set)
        wait_for(lambda: len(accepted) >= 20, what="mail flowing before the crash")
        before_crash = len(accepted)
        leaver = self.registered(0, "leaver")
        wait_for(lambda: "leaver" in self.who(senders[1])[0], what="leaver seen from b")
        self.redis.kill()
        near_at_crash = len(sent["near"])
        leaver.close()  # gone while Redis cannot be told
        wait_for(lambda: len(refused) >= 4, what="MAIL refused as unavailable while Redis is down")
        register = _register_line(Identity.generate(), "newcomer")
        newcomer = self.client(0)
        newcomer.ask("HELLO 1")
        self.assertTrue(newcomer.ask(register).startswith("ERR REGISTER unavailable"))
        for daemon in self.daemons:
            wait_for(lambda: "cluster: Redis lost its" in daemon.log(), what="the outage logged")
        wait_for(lambda: len(heard["far"].lines) > near_at_crash + 50, what="same-node frames while Redis is down")
        self.redis.start()  # the same port and data directory
        for daemon in self.daemons:
            wait_for(lambda: daemon.log().count("Redis is back") >= 1, timeout=20, what="the nodes to recover")
        after_restart = len(accepted)
        wait_for(lambda: len(accepted) >= after_restart + 20, what="mail accepted again after the restart")
        stop.set()
        for thread in threads:
            thread.join(10)
        self.assertGreater(before_crash, 0)

        # The conversation: each side got what the other sent, in order, with no gap: either
        # all of it, or a prefix and then CLOSED <sid> gone (a batch Redis could not carry).
        for who, other in (("alice", "bob"), ("bob", "alice")):
            frame_lines = f"FRAME {sid} "
            wait_for(lambda: _settled(heard[other].lines, sid, len(sent[who])), timeout=20,
                     what=f"{other} to get {who}'s frames")
            got = [line[len(frame_lines):] for line in heard[other].lines if line.startswith(frame_lines)]
            self.assertEqual(got, sent[who][:len(got)], f"{other} got {who}'s frames out of order or with a gap")
            closed = [line for line in heard[other].lines if line.startswith("CLOSED ")]
            if len(got) < len(sent[who]):
                self.assertEqual(closed, [f"CLOSED {sid} gone"])

        # Within node a, nothing was lost or cut, Redis or not.
        wait_for(lambda: _settled(heard["far"].lines, local_sid, len(sent["near"])), what="far to get every frame")
        self.assertEqual([line[len(f"FRAME {local_sid} "):] for line in heard["far"].lines if line.startswith("FRAME ")],
                         sent["near"])
        self.assertNotIn(f"CLOSED {local_sid} gone", heard["far"].lines)

        # Every mail a node accepted is there, once, delivered through either node.
        dave = self.client(1)
        reply = dave.register("dave", dave_id)
        self.assertTrue(reply.startswith("OK PROVE dave known "), reply)
        waiting = int(reply.split(" ")[4])
        delivered: dict[str, str] = {}
        for _ in range(waiting):
            line = dave.read_line().split(" ")
            self.assertEqual(line[0], "MAIL")
            delivered[line[1]] = line[4]
        for mail_id, body in accepted.items():
            self.assertEqual(delivered.get(mail_id), body, f"accepted mail {mail_id} lost")
        self.assertLessEqual(set(delivered.values()), attempted)  # a refused one may have been stored: never invented

        # And afterwards: bindings kept, presence back, a new conversation across the nodes works.
        looker = self.registered(0, "looker")
        found = looker.ask("LOOKUP bob")
        self.assertTrue(found.startswith(f"OK LOOKUP bob {b64encode(bob_id.identity_public)} "), found)
        alice2, bob2 = self.registered(0, "alice2"), self.registered(1, "bob2")
        wait_for(lambda: alice2.ask("LOOKUP bob2").endswith(" online"), what="bob2 seen from node a")
        sid2 = open_session(alice2, bob2, "alice2", "bob2")
        alice2.send(f"FRAME {sid2} {b64encode(b'after the restart')}")
        self.assertEqual(bob2.read_line(), f"FRAME {sid2} {b64encode(b'after the restart')}")
        # Who stayed connected through the outage is online again for the other node (re-asserted).
        wait_for(lambda: bob2.ask("LOOKUP carol").endswith(" online"), what="carol re-asserted")
        # ... and who left meanwhile is not: no ghost in WHO on the other node.
        wait_for(lambda: bob2.ask("LOOKUP leaver").endswith(" offline"), what="leaver withdrawn")
        self.assertNotIn("leaver", self.who(bob2)[0])
        wait_for(lambda: looker.ask("LOOKUP erin").endswith(" online"), what="erin re-asserted")


def _settled(lines: list[str], sid: str, expected: int) -> bool:
    frames = sum(1 for line in lines if line.startswith(f"FRAME {sid} "))
    return frames >= expected or f"CLOSED {sid} gone" in lines


def _register_line(identity: Identity, nick: str) -> str:
    return (f"REGISTER {nick} {b64encode(identity.identity_public)} "
            f"{b64encode(identity.static_public)} {b64encode(identity.static_sig)}")
