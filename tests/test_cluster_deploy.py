"""Deploying a cluster: conf/relaychat@.service (N instances on one port) and conf/haproxy.cfg
(a balancer in front of N nodes), each checked by its own tool and run for real."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import b64encode
from tests.cluster_support import listening, node_config, wait_for
from tests.daemon import ROOT, Daemon, LineSocket, open_session
from tests.redis_server import REDIS_SERVER, RedisServer, free_port
from tests.test_systemd import analyze_verify

UNIT = ROOT / "conf" / "relaychat.service"
TEMPLATE = ROOT / "conf" / "relaychat@.service"
HAPROXY_CFG = ROOT / "conf" / "haproxy.cfg"


def settings(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


def sockets_of(pid: int) -> int:
    """How many sockets process ``pid`` holds open (its listener, Redis, its clients)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def redis_home(case: SynchronousTestCase) -> tuple[Path, RedisServer]:
    """A directory for the test's nodes, and a redis-server stopped after the test."""
    if REDIS_SERVER is None:
        raise SkipTest("redis-server is not installed")
    home = Path(case.mktemp()).resolve()
    home.mkdir(parents=True)
    redis = RedisServer(str(home / "redis")).start()
    case.addCleanup(redis.stop)
    return home, redis


class Template(SynchronousTestCase):
    def test_systemd_analyze_verify_passes_for_the_template_and_an_instance(self) -> None:
        self.assertEqual(analyze_verify(self, {"relaychat@.service": TEMPLATE}, also=("relaychat@3.service",)), (0, ""))

    def test_the_template_is_the_single_unit_but_for_what_makes_an_instance(self) -> None:
        single, template = settings(UNIT), settings(TEMPLATE)
        differs = {"Description", "After", "ExecStart", "StateDirectory", "Environment"}
        self.assertEqual({k: v for k, v in template.items() if k not in differs},
                         {k: v for k, v in single.items() if k not in differs | {"AmbientCapabilities"}})
        self.assertEqual(template["StateDirectory"], "relaychat/%i")
        self.assertEqual(template["Environment"], "RELAYCHAT_CONFIG=/etc/relaychat/relaychat.toml")
        self.assertIn("--data-dir /var/lib/relaychat/%i --node %i", template["ExecStart"])


class TemplateInstances(SynchronousTestCase):
    """The template's own ExecStart, for instances 1 and 2, over one config file and one port."""

    def test_two_instances_share_the_port_and_act_as_one_relay(self) -> None:
        home, redis = redis_home(self)
        port = free_port()
        config = home / "relaychat.toml"  # what /etc/relaychat/relaychat.toml would say: no node, reuse_port
        config.write_text(node_config(home, "unused", redis.endpoint, listener=f"tcp:{port}:interface=127.0.0.1",
                                      cluster_node=False).replace('kind = "tcp"\n', 'kind = "tcp"\nreuse_port = true\n'))
        exec_start = shlex.split(settings(TEMPLATE)["ExecStart"])
        args = exec_start[exec_start.index("relaychat") + 1:]
        daemons = []
        for instance in ("1", "2"):
            argv = [a.replace("${RELAYCHAT_CONFIG}", str(config)).replace("/var/lib/relaychat", str(home / "lib"))
                    .replace("%i", instance) for a in args]
            daemon = Daemon(*argv, cwd=str(home))
            self.addCleanup(daemon.stop)
            daemon.start()
            daemons.append(daemon)
        for instance, daemon in zip("12", daemons):
            wait_for(lambda: f"node {instance} joined through" in daemon.log(), what=f"instance {instance}:\n{daemon.log()}")
            self.assertTrue((home / "lib" / instance).is_dir())
        self.assertEqual([listening(d, "tcp") for d in daemons], [[port], [port]])
        pids = [d.process.pid for d in daemons if d.process is not None]
        before = [sockets_of(pid) for pid in pids]
        clients = [LineSocket(port) for _ in range(24)]
        self.addCleanup(lambda: [c.close() for c in clients])
        for c in clients:
            self.assertEqual(c.ask("PING x"), "OK PING x")
        grown = [sockets_of(pid) - b for pid, b in zip(pids, before)]
        self.assertEqual(sum(grown), 24)
        self.assertTrue(all(g > 0 for g in grown), grown)  # the kernel gave both some
        # Whichever instance each lands on, they are one relay.
        for i, nick in enumerate(("alice", "bob")):
            self.assertTrue(clients[i].register(nick, Identity.generate()).startswith("OK PROVE"))
        wait_for(lambda: all(clients[i].ask("LOOKUP bob").endswith(" online") for i in range(2)), what="bob seen")


class Haproxy(SynchronousTestCase):
    def haproxy(self) -> str:
        found = shutil.which("haproxy")
        if found is None:
            raise SkipTest("haproxy is not installed (Debian package haproxy; .ci/run installs it)")
        return found

    def test_the_example_passes_haproxy_check(self) -> None:
        result = subprocess.run([self.haproxy(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_clients_through_the_example_reach_both_nodes_and_a_dead_node_is_passed_over(self) -> None:
        haproxy = self.haproxy()
        home, redis = redis_home(self)
        front, relays, checks = free_port(), [free_port(), free_port()], [free_port(), free_port()]
        daemons = []
        for name, relay, check in zip(("n1", "n2"), relays, checks):
            config = home / f"{name}.toml"
            config.write_text(node_config(home, name, redis.endpoint, listener=f"tcp:{relay}:interface=127.0.0.1")
                              + f'[metrics]\nendpoint = "tcp:{check}:interface=127.0.0.1"\n')
            daemon = Daemon("--config", str(config), cwd=str(home))
            self.addCleanup(daemon.stop)
            daemon.start(listeners=2)
            daemons.append(daemon)
        for daemon in daemons:
            wait_for(lambda: "joined through" in daemon.log(), what="a node to join")
        # The shipped example, with this test's ports, and a maxconn this unprivileged test's
        # open-file limit allows (haproxy wants 2 descriptors per connection).
        text = (HAPROXY_CFG.read_text().replace("bind 127.0.0.1:7733", f"bind 127.0.0.1:{front}")
                .replace("maxconn 20000", "maxconn 1000")
                .replace("127.0.0.1:7741 check port 9101", f"127.0.0.1:{relays[0]} check port {checks[0]}")
                .replace("127.0.0.1:7742 check port 9102", f"127.0.0.1:{relays[1]} check port {checks[1]}"))
        self.assertIn("maxconn 1000", text)
        self.assertEqual(text.count(f"check port {checks[0]}") + text.count(f"check port {checks[1]}"), 2)
        (home / "haproxy.cfg").write_text(text)
        balancer = subprocess.Popen([haproxy, "-db", "-f", str(home / "haproxy.cfg")], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def stop_balancer() -> None:
            balancer.terminate()
            balancer.wait(10)
            assert balancer.stdout is not None
            said = balancer.stdout.read().decode("utf-8", "replace")
            balancer.stdout.close()
            if said.strip():
                print("haproxy said:", said)
        self.addCleanup(stop_balancer)
        pids = [d.process.pid for d in daemons if d.process is not None]
        before = [sockets_of(pid) for pid in pids]

        def through() -> LineSocket:
            s = LineSocket(front)
            self.addCleanup(s.close)
            return s

        wait_for(lambda: _answers(front), what="haproxy to listen")
        alice, bob = through(), through()
        self.assertTrue(alice.register("alice", Identity.generate()).startswith("OK PROVE"))
        self.assertTrue(bob.register("bob", Identity.generate()).startswith("OK PROVE"))
        grown = [sockets_of(pid) - b for pid, b in zip(pids, before)]
        self.assertTrue(all(g >= 1 for g in grown), grown)  # leastconn: one each
        wait_for(lambda: alice.ask("LOOKUP bob").endswith(" online"), what="bob seen from alice's node")
        sid = open_session(alice, bob, "alice", "bob")
        alice.send(f"FRAME {sid} {b64encode(b'through haproxy')}")
        self.assertEqual(bob.read_line(), f"FRAME {sid} {b64encode(b'through haproxy')}")
        # Node n2 dies: every new client through haproxy lands on n1.
        assert daemons[1].process is not None
        os.kill(daemons[1].process.pid, signal.SIGKILL)
        daemons[1].process.wait(10)
        for i in range(4):
            s = through()
            self.assertEqual(s.ask("PING x"), "OK PING x")
            self.assertTrue(s.register(f"late{i}", Identity.generate()).startswith("OK PROVE"))


def _answers(port: int) -> bool:
    try:
        s = LineSocket(port, timeout=2)
    except OSError:
        return False
    try:
        return s.ask("PING x") == "OK PING x"
    except (OSError, TimeoutError, ConnectionError):
        return False
    finally:
        s.close()
