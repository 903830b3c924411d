"""The operator console of any node shows and acts on the whole cluster: real nodes, real Redis, real ssh."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto.keypair import Identity
from relaychat.server.bans import key_id
from tests.cluster_support import SharedCluster, wait_for
from tests.support import strict_dir
from relaychat.wire.codec import b64encode
from tests.test_manhole import SSHProcess, _ssh_available

_CONSOLE = re.compile(r"admin console \(ssh\) '[^']*' listening on [\d.]+:(\d+)")


class _Borrowed:
    """Lends strict_dir a test case whose clean-ups run when the class's shared nodes go."""

    def __init__(self, case: SynchronousTestCase, cleanups: list[Callable[[], object]]) -> None:
        self.case = case
        self.cleanups = cleanups

    def mktemp(self) -> str:
        return self.case.mktemp()

    def addCleanup(self, f: Callable[..., object], *args: Any) -> None:
        self.cleanups.append(lambda: f(*args))

    def skipTest(self, reason: str) -> None:
        self.case.skipTest(reason)


class Requests(SynchronousTestCase):
    """The console's requests and answers as bytes on Redis channels, without Redis."""

    def setUp(self) -> None:
        from twisted.internet.defer import succeed
        from twisted.internet.task import Clock

        from relaychat.cluster.console import ClusterConsole
        from tests.support import Harness

        self.h = Harness()
        self.clock = Clock()
        self.published: list[tuple[bytes, bytes]] = []

        def call(*command: Any) -> Any:
            if command[0] == b"PUBLISH":
                self.published.append((command[1], command[2]))
                return succeed(2)
            return succeed(None)

        self.console = ClusterConsole(self.h.hub, "a", call, lambda nick: succeed(None), self.clock)

    def test_garbage_and_unknown_requests_are_answered_or_ignored_never_fatal(self) -> None:
        for junk in (b"", b"Q", b"\xff\xfe", b"Q 1 b", b"A nobody b {}", b"Q 1 b who {not json"):
            self.console.message(b"rc:admin", junk)
        self.console.message(b"rc:admin", b"Q 7 b launch {}")
        channel, answer = self.published[-1]
        self.assertEqual(channel, b"rc:admin:b")
        self.assertTrue(answer.startswith(b'A 7 a {"error": "ValueError: no such request'), answer)

    def test_answers_are_awaited_as_many_as_heard_or_until_the_time_out(self) -> None:
        self.h.register("alice")
        asked = self.console.ask("who")
        request = self.published[-1][1].split(b" ")[1]
        self.assertNoResult(asked)
        self.console.message(b"rc:admin:a", b"A " + request + b' b {"users": [], "online": 0, "connections": 0}')
        self.assertNoResult(asked)  # two heard it
        self.clock.advance(3.0)
        answers = self.successResultOf(asked)
        self.assertEqual((sorted(answers.by_node), answers.silent), (["b"], 1))
        own = self.console.ask("who")
        request = self.published[-1][1]
        self.console.message(b"rc:admin", request)  # this node hears its own request and answers it
        self.console.message(b"rc:admin:a", self.published[-1][1])
        self.console.message(b"rc:admin:a", b"A " + request.split(b" ")[1] + b' b {"users": [], "online": 0, "connections": 0}')
        answers = self.successResultOf(own)
        self.assertEqual(answers.by_node["a"]["online"], 1)
        self.assertEqual(answers.silent, 0)


class Reload(SynchronousTestCase):
    """A node that did not hear a ban (its Redis connection was down) applies it when it reconnects."""

    def test_bans_reloaded_replace_the_old_ones_and_close_who_they_match(self) -> None:
        from twisted.internet.defer import succeed
        from twisted.internet.task import Clock

        from relaychat.cluster.console import ClusterConsole
        from tests.support import Harness, identity

        h = Harness()
        clock = Clock()
        clock.advance(h.now)
        banned, kept = h.register("mallory"), h.register("alice")
        other_key = h.register("sybil")
        h.hub.bans.add("nick", "olduser", h.now + 100)  # lifted elsewhere while this node was away
        stored = [b"nick mallory", b"1000100.0", f"key {key_id(identity('sybil').identity_public)}".encode(), b"1000050.0",
                  b"bogus entry", b"1000100.0"]
        console = ClusterConsole(h.hub, "a", lambda *command: succeed(stored), lambda nick: succeed(None), clock,
                                 wall=lambda: 1000000.0)
        self.successResultOf(console.reload())
        self.assertEqual(banned[1].lines()[-1].split(" ")[:3], ["BYE", "banned", "nick"])
        self.assertEqual(other_key[1].lines()[-1].split(" ")[:3], ["BYE", "banned", "key"])
        self.assertEqual(kept[1].lines(), [])
        self.assertEqual(sorted(h.hub.bans.active(clock.seconds())), [("key", key_id(identity("sybil").identity_public)),
                                                                      ("nick", "mallory")])
        self.assertAlmostEqual(h.hub.bans.remaining("nick", "mallory", clock.seconds()), 100.0)


class ConsoleAcrossNodes(SharedCluster, SynchronousTestCase):
    def setUp(self) -> None:
        reason = _ssh_available()
        if reason:
            self.skipTest(reason)
        super().setUp()

    def prepare_home(self, home: Path, cleanups: list[Callable[[], object]]) -> None:
        keys = strict_dir(_Borrowed(self, cleanups))  # type: ignore[arg-type]
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test", "-f", str(keys / "admin")],
                       check=True, timeout=30)
        (keys / "authorized_keys").write_bytes((keys / "admin.pub").read_bytes())
        SharedCluster._shared[type(self)]["extra"]["keys"] = keys

    def extra_config(self, name: str) -> str:
        keys = SharedCluster._shared[type(self)]["extra"]["keys"]
        return (f'[manhole]\nenabled = true\nendpoint = "tcp:0:interface=127.0.0.1"\n'
                f'authorized_keys = "{keys / "authorized_keys"}"\n')

    def console_port(self, node: int) -> int:
        daemon = self.daemons[node]
        wait_for(lambda: _CONSOLE.search(daemon.log()) is not None, what="the console to listen")
        found = _CONSOLE.search(daemon.log())
        assert found is not None
        return int(found.group(1))

    def ssh(self, node: int, *options: str, command: str = "") -> SSHProcess:
        keys = self.extra["keys"]
        process = SSHProcess([
            "ssh", "-F", "/dev/null", "-p", str(self.console_port(node)), "-i", str(keys / "admin"),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR", *options, "admin@127.0.0.1", *([command] if command else []),
        ])
        self.addCleanup(process.kill)
        return process

    def console(self, node: int, command: str) -> str:
        """``ssh admin@node COMMAND``: what it printed (it must exit 0)."""
        process = self.ssh(node, command=command)
        self.assertEqual(process.wait(30), 0, process.output)
        return process.output.decode("utf-8")

    def test_who_and_stats_of_any_node_show_every_node(self) -> None:
        self.registered(0, "OnA", Identity.generate())
        self.registered(1, "OnB", Identity.generate())
        self.registered(1, "AlsoOnB", Identity.generate())
        who = self.console(0, "who()")
        self.assertIn("2 nodes: a (this one), b", who)
        rows = {line.split()[0]: line.split()[1:3] for line in who.splitlines()[2:] if line.strip()}
        self.assertEqual(rows["OnA"], ["a", "127.0.0.1"])
        self.assertEqual(rows["OnB"], ["b", "127.0.0.1"])
        self.assertEqual(rows["AlsoOnB"], ["b", "127.0.0.1"])
        stats = self.console(1, "stats()")
        self.assertIn("2 nodes: a, b (this one)", stats)
        sections = dict(re.findall(r"== (node a|node b \(this one\)|cluster total)\n((?:.+\n?)+?)(?===|\Z)", stats))
        self.assertEqual(set(sections), {"node a", "node b (this one)", "cluster total"})

        def figure(section: str, name: str) -> int:
            return int(re.search(rf"^{name} +([\d,]+)", sections[section], re.M).group(1).replace(",", ""))  # type: ignore[union-attr]

        self.assertGreaterEqual(figure("node a", "online"), 1)
        self.assertGreaterEqual(figure("node b (this one)", "online"), 2)
        self.assertEqual(figure("cluster total", "online"),
                         figure("node a", "online") + figure("node b (this one)", "online"))
        self.assertIn("uptime", sections["node a"])
        self.assertNotIn("mail held", sections["node a"])  # a node's own store holds none in a cluster
        # The mail waiting in Redis is the cluster's, counted once.
        before = figure("cluster total", "mail waiting")
        writer = self.registered(0, "statsmailer")
        self.registered(1, "statsreader").close()
        wait_for(lambda: writer.ask("LOOKUP statsreader").endswith(" offline"), what="statsreader offline")
        self.assertTrue(writer.ask(f"MAIL statsreader {b64encode(b'x')}").startswith("OK MAIL"))
        again = self.console(0, "stats()")
        self.assertEqual(int(re.search(r"^mail waiting +([\d,]+)", again, re.M).group(1)), before + 1)  # type: ignore[union-attr]

    def test_the_interactive_console_shows_the_answer_when_the_nodes_have_given_it(self) -> None:
        self.registered(1, "Shown", Identity.generate())
        session = self.ssh(0, "-tt")
        session.expect("relaychat admin console")
        session.type("who()\r")
        session.expect("(asking every node)")
        seen = session.expect("2 nodes: a (this one), b")
        self.assertRegex(seen, r"Shown +b +127\.0\.0\.1")
        self.assertNotIn("Deferred", seen)
        session.type("\x04")
        self.assertEqual(session.wait(), 0)

    def test_kick_reaches_a_user_on_another_node(self) -> None:
        user = self.registered(1, "kickme", Identity.generate())
        self.assertEqual(self.console(0, "kick('kickme', 'maintenance')"), "kicked kickme on node b\n")
        self.assertEqual(user.read_line(), "BYE kicked maintenance")
        self.assertEqual(self.console(0, "kick('kickme')"), "kickme is not online on any node\n")

    def test_notice_reaches_every_node(self) -> None:
        on_a = self.registered(0, "hearsa", Identity.generate())
        on_b = self.registered(1, "hearsb", Identity.generate())
        said = self.console(1, "notice('relay maintenance at noon')")
        self.assertRegex(said, r"^notice sent to \d+ clients \(a: \d+, b: \d+\)\n$")
        for user in (on_a, on_b):
            self.assertEqual(user.read_line(), "NOTICE relay maintenance at noon")

    def test_a_ban_through_one_node_holds_on_every_node_and_lasts(self) -> None:
        bob = Identity.generate()
        on_b = self.registered(1, "banme", bob)
        said = self.console(0, "ban('banme', 600)")
        self.assertIn(f"banned nick banme with its identity key {key_id(bob.identity_public)} on every node for 10m",
                      said)
        self.assertRegex(said, r"; 1 connections closed \(a: 0, b: 1\)\n$")
        self.assertTrue(on_b.read_line().startswith("BYE banned nick "), "kicked where it was")
        for node in (0, 1):  # refused through either node, under its nickname or its key under another
            self.assertIn("ERR REGISTER banned nick", _register(self.client(node), "banme", bob))
            self.assertIn("ERR REGISTER banned key", _register(self.client(node), f"other{node}", bob))
        # Lasting: a node started afresh refuses it too (the bans come from Redis, not its memory).
        restarted = self.daemons[1]
        restarted.stop()
        restarted.start()
        self.joined(restarted)
        self.assertIn("ERR REGISTER banned nick", _register(self.client(1), "banme", bob))
        self.assertIn("banme", self.console(1, "bans()"))
        # Lifted through the other node: welcome back through either.
        self.assertEqual(self.console(1, "unban('banme')"),
                         f"unbanned nick banme and key {key_id(bob.identity_public)} on every node\n")
        self.assertTrue(self.client(0).register("banme", bob).startswith("OK PROVE banme known"))

    def test_release_through_another_node_frees_the_nickname_everywhere(self) -> None:
        old = Identity.generate()
        holder = self.registered(0, "lostkey", old)
        holder.close()
        sender = self.registered(1, "writer", Identity.generate())
        wait_for(lambda: sender.ask("LOOKUP lostkey").endswith(" offline"), what="lostkey offline")
        self.assertTrue(sender.ask(f"MAIL lostkey {b64encode(b'sealed to the old key')}").startswith("OK MAIL"))
        holder = self.client(0)
        self.assertEqual(holder.register("lostkey", old), "OK PROVE lostkey known 1")
        holder.read_line()  # the mail, not acknowledged
        said = self.console(1, "release('lostkey')")
        self.assertEqual(said, f"released lostkey (was identity key {key_id(old.identity_public)}); "
                               "1 waiting mail deleted\n")
        self.assertEqual(holder.read_line(), "BYE kicked your nickname was released by the operator")
        self.assertEqual(self.client(0).register("lostkey", Identity.generate()), "OK PROVE lostkey new 0")
        self.assertEqual(self.console(0, "release('neverbound')"), "neverbound is not bound to any key\n")

    def test_an_address_ban_refuses_connections_at_every_node(self) -> None:
        user = self.registered(1, "fromhere", Identity.generate())
        said = self.console(0, "ban('127.0.0.1', 120)")
        self.assertIn("banned address 127.0.0.1 on every node for 2m", said)
        self.assertTrue(user.read_line().startswith("BYE banned address "))
        for node in (0, 1):
            self.assertTrue(self.client(node).read_line().startswith("BYE banned address "))
        self.assertEqual(self.console(1, "unban('127.0.0.1')"), "unbanned address 127.0.0.1 on every node\n")
        self.assertEqual(self.client(0).ask("PING x"), "OK PING x")


def _register(s: Any, nick: str, identity: Identity) -> str:
    """REGISTER (without PROVE): the reply, which a ban refuses."""
    from relaychat.wire.codec import b64encode

    s.ask("HELLO 1")
    return str(s.ask(f"REGISTER {nick} {b64encode(identity.identity_public)} "
                     f"{b64encode(identity.static_public)} {b64encode(identity.static_sig)}"))



class Layout(SynchronousTestCase):
    """How the console lays out the nodes' answers, silent and broken ones included."""

    def test_who_and_stats_text(self) -> None:
        from relaychat.admin.cluster_view import stats_text, who_text
        from relaychat.admin.figures import TOTALLED, Answers

        answers = Answers({
            "b": {"users": [["Zed", "10.0.0.2", 65, 1, 3, 400]], "online": 3, "connections": 4},
            "a": {"users": [["amy", "10.0.0.1", 5, 0, 1, 20]], "online": 1, "connections": 1},
        }, silent=1)
        text = who_text(answers, "a")
        self.assertEqual(text.splitlines()[0],
                         "4 online, 5 connections; 2 nodes: a (this one), b; 1 more did not answer in time")
        self.assertEqual([line.split()[:3] for line in text.splitlines()[2:]],
                         [["amy", "a", "10.0.0.1"], ["Zed", "b", "10.0.0.2"], ["...", "2", "more"]])
        numbers = {name: 1 for name in TOTALLED}
        stats = stats_text(Answers({"a": {"rows": [["online", "1"]], "numbers": numbers},
                                    "b": {"error": "KeyError: 'x'"}}), "b")
        self.assertIn("== node a\nonline  1", stats)
        self.assertIn("== node b: KeyError: 'x'", stats)
        self.assertRegex(stats, r"== cluster total\n(.+\n)*online +1\n")
