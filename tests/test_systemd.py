"""Supervision by systemd: the unit passes systemd-analyze, readiness over a fake NOTIFY_SOCKET,
socket activation through a ``systemd:`` endpoint, the open-file limit and the listen backlog."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import ListenerConfig
from relaychat.server.listeners import server_endpoint, with_backlog
from relaychat.server.process import SPARE_FILES, raise_open_files
from relaychat.server.service import ListenerError, ListenerService
from relaychat.server.systemd import Readiness, notify
from tests.daemon import ROOT, TWISTD, Daemon, LineSocket
from tests.support import identity

UNIT = ROOT / "conf" / "relaychat.service"
SOCKET_UNIT = ROOT / "conf" / "relaychat.socket"


class FakeNotifySocket:
    """A datagram socket standing in for systemd's, at a path or an abstract name."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(20)

    def receive(self) -> str:
        return self.sock.recv(4096).decode("utf-8")

    def close(self) -> None:
        self.sock.close()


def _socket_path(test: SynchronousTestCase) -> str:
    """A short absolute path for a UNIX socket (trial's temp paths pass the 108-byte limit)."""
    directory = tempfile.mkdtemp(prefix="rc-")
    test.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "notify")


def analyze_verify(case: SynchronousTestCase, units: dict[str, Path], also: tuple[str, ...] = ()) -> tuple[int, str]:
    """``systemd-analyze verify`` of ``units`` as shipped (copied under their names), and of
    ``also`` (instances of a template): its exit status and what it said."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise case.skipTest("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    here = Path(case.mktemp())
    here.mkdir()
    # verify checks that ExecStart's program exists: point it at this venv's twistd, the rest as shipped.
    twistd = Path(sys.executable).parent / "twistd"
    for name, path in units.items():
        text = path.read_text()
        if name.endswith(".service"):
            case.assertIn("ExecStart=/opt/relaychat/venv/bin/twistd ", text)
        (here / name).write_text(text.replace("/opt/relaychat/venv/bin/twistd", str(twistd)))
    result = subprocess.run([analyze, "verify", *units, *also], cwd=here, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


class Unit(SynchronousTestCase):
    def test_systemd_analyze_verify_passes(self) -> None:
        self.assertEqual(analyze_verify(self, {"relaychat.service": UNIT, "relaychat.socket": SOCKET_UNIT}), (0, ""))

    def test_the_unit_says_what_the_daemon_does(self) -> None:
        settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                        if "=" in line and not line.startswith("#"))
        self.assertEqual(settings["Type"], "notify")
        self.assertEqual(settings["Restart"], "on-failure")
        self.assertEqual(settings["KillSignal"], "SIGTERM")
        from relaychat.config import DEFAULT_DRAIN_GRACE
        from relaychat.server.limits import Limits

        self.assertGreater(float(settings["TimeoutStopSec"].rstrip("s")), DEFAULT_DRAIN_GRACE + 5)
        self.assertGreaterEqual(int(settings["LimitNOFILE"]), Limits().max_connections + SPARE_FILES)
        for hardening in ("DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=relaychat",
                          "NoNewPrivileges=yes", "PrivateTmp=yes"):
            key, value = hardening.split("=")
            self.assertEqual(settings[key], value)
        self.assertIn("--data-dir /var/lib/relaychat", settings["ExecStart"])


class Notify(SynchronousTestCase):
    def test_sends_one_datagram_to_a_path_or_an_abstract_socket(self) -> None:
        path = _socket_path(self)
        fake = FakeNotifySocket(path)
        self.addCleanup(fake.close)
        self.assertTrue(notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": path}))
        self.assertEqual(fake.receive(), "READY=1\nSTATUS=serving")
        name = f"relaychat-test-{os.getpid()}"
        abstract = FakeNotifySocket("\0" + name)
        self.addCleanup(abstract.close)
        self.assertTrue(notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(abstract.receive(), "STOPPING=1")

    def test_nothing_without_notify_socket_and_a_warning_if_it_is_gone(self) -> None:
        self.assertFalse(notify("READY=1", {}))
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}))
        with capturedLogs() as events:
            self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"}))
        self.assertIn("cannot notify systemd at '/nonexistent/notify'", formatEvent(events[0]))

    def test_ready_only_once_every_listener_listens(self) -> None:
        path = _socket_path(self)
        fake = FakeNotifySocket(path)
        self.addCleanup(fake.close)
        fake.sock.settimeout(0.01)
        later: defer.Deferred = defer.Deferred()
        now, pending = _listener(defer.succeed(_Port())), _listener(later)
        readiness = Readiness([now, pending], {"NOTIFY_SOCKET": path})
        for service in (now, pending, readiness):
            service.startService()
        self.assertRaises(TimeoutError, fake.receive)
        later.callback(_Port())
        self.assertEqual(fake.receive(), "READY=1\nSTATUS=serving on 2 listeners")
        self.assertTrue(self.successResultOf(readiness.ready))

    def test_no_ready_when_a_listener_fails(self) -> None:
        failing = _listener(defer.fail(CannotListenError("127.0.0.1", 1, OSError(98, "in use"))))
        self.assertRaises(ListenerError, failing.privilegedStartService)
        readiness = Readiness([failing], {"NOTIFY_SOCKET": "/nonexistent"})
        readiness.startService()
        self.assertFalse(self.successResultOf(readiness.ready))


class _Port:
    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 1)

    def stopListening(self) -> None:
        pass


class _Endpoint:
    def __init__(self, result: defer.Deferred) -> None:
        self.result = result

    def listen(self, factory: Any) -> defer.Deferred:
        return self.result


def _listener(result: defer.Deferred) -> ListenerService:
    return ListenerService(ListenerConfig("tcp", "tcp:1"), _Endpoint(result), object())  # type: ignore[arg-type]


class RealDaemonUnderSystemd(SynchronousTestCase):
    """The daemon as systemd runs it: READY=1 after the ports are bound, STOPPING=1 on SIGTERM."""

    def test_readiness_and_stopping_over_notify_socket(self) -> None:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        path = _socket_path(self)
        fake = FakeNotifySocket(path)
        self.addCleanup(fake.close)
        daemon = Daemon("--data-dir", str(home / "data"), "--listen", "tcp:0:interface=127.0.0.1",
                        cwd=str(home), env={"NOTIFY_SOCKET": path})
        self.addCleanup(daemon.stop)
        (port,) = daemon.start()
        self.assertEqual(fake.receive(), "READY=1\nSTATUS=serving on 1 listeners")
        client = LineSocket(port)  # bound before READY: it answers at once
        self.addCleanup(client.close)
        self.assertTrue(client.ask("HELLO 1").startswith("OK HELLO 1 "))
        daemon.terminate()
        self.assertEqual(fake.receive(), "STOPPING=1")
        self.assertEqual(client.read_line(), "BYE draining the relay is restarting")
        self.assertEqual(daemon.wait(), 0)

    def test_socket_activation_through_a_systemd_endpoint(self) -> None:
        """systemd passes bound sockets from fd 3 with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID
        (sd_listen_fds(3))."""
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        (home / "relaychat.toml").write_text(
            '[relay]\ndata_dir = "data"\n[[listener]]\nkind = "tcp"\nendpoint = "systemd:domain=INET:index=0"\n'
            '[limits]\npow_bits = 0\n')
        bound = socket.socket()
        bound.bind(("127.0.0.1", 0))
        bound.listen(16)
        self.addCleanup(bound.close)
        port = bound.getsockname()[1]
        activate = (  # what systemd does before exec: the socket at fd 3, the variables naming this pid
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1';"
            "os.environ['LISTEN_FDNAMES'] = 'relaychat.socket';"
            "os.environ['LISTEN_PID'] = str(os.getpid());"
            "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]] + sys.argv[3:])"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", activate, str(bound.fileno()), TWISTD, "--nodaemon", "--pidfile=",
             "--logfile=-", "relaychat", "--config", str(home / "relaychat.toml")],
            cwd=home, env=dict(os.environ, PYTHONPATH=str(ROOT)), pass_fds=(bound.fileno(),),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        bound.close()  # the daemon holds it now
        client = LineSocket(port)
        self.addCleanup(client.close)
        self.assertEqual(client.register("alice", identity("alice")), "OK PROVE alice new 0")
        process.terminate()
        self.assertEqual(client.read_line(), "NOTICE the relay is restarting")
        self.assertEqual(client.read_line(), "BYE draining the relay is restarting")
        self.assertEqual(process.wait(20), 0)
        log = process.stdout.read()  # type: ignore[union-attr]
        self.assertIn("relaychat: tcp listener 'systemd:domain=INET:index=0' listening on 127.0.0.1:", log)


class OpenFiles(SynchronousTestCase):
    def limits(self, soft: int, hard: int, refuse: bool = False) -> tuple[tuple[int, int], list[Any], list[str]]:
        calls: list[Any] = []

        def setrlimit(which: int, value: tuple[int, int]) -> None:
            if refuse:
                raise ValueError("not allowed to raise maximum limit")
            calls.append(value)

        with capturedLogs() as events:
            result = raise_open_files(20000, lambda which: (soft, hard), setrlimit)
        return result, calls, [formatEvent(e) for e in events]

    def test_soft_limit_is_raised_to_the_hard_one(self) -> None:
        self.assertEqual(self.limits(1024, 1048576), ((1048576, 1048576), [(1048576, 1048576)], []))

    def test_a_hard_limit_too_low_is_named_with_the_soft_one(self) -> None:
        result, calls, logged = self.limits(1024, 4096)
        self.assertEqual((result, calls), ((4096, 4096), [(4096, 4096)]))
        self.assertEqual(logged, [
            "relaychat: max_connections = 20000 needs about 20064 open files, but the limit is 4096 (hard limit "
            "4096): raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower limits.max_connections"])

    def test_refused_raise_and_unlimited_hard_limit(self) -> None:
        result, _, logged = self.limits(1024, 4096, refuse=True)
        self.assertEqual(result, (1024, 4096))
        self.assertIn("cannot raise the open-file limit from 1024 to 4096", logged[0])
        self.assertIn("the limit is 1024 (hard limit 4096)", logged[1])
        result, calls, logged = self.limits(1024, resource.RLIM_INFINITY)
        self.assertEqual((result[0], calls, logged), (20000 + SPARE_FILES, [(20064, resource.RLIM_INFINITY)], []))

    def test_the_daemon_raises_its_own(self) -> None:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard <= 1024:
            raise self.skipTest(f"the hard open-file limit here ({hard}) leaves nothing to show")
        # the daemon starts with a soft limit of 1024, as most logins give
        daemon = Daemon("--data-dir", str(home / "data"), "--listen", "tcp:0:interface=127.0.0.1", cwd=str(home),
                        preamble=f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, {hard})); ")
        self.addCleanup(daemon.stop)
        daemon.start()
        line = next(l for l in Path(f"/proc/{daemon.process.pid}/limits").read_text().splitlines()  # type: ignore
                    if l.startswith("Max open files"))
        self.assertEqual(line.split()[3:5], [str(hard), str(hard)], line)
        self.assertEqual(daemon.stop(), 0)


class Backlog(SynchronousTestCase):
    def test_added_unless_given_or_meaningless(self) -> None:
        self.assertEqual(with_backlog("tcp:7733:interface=127.0.0.1", 4096), "tcp:7733:interface=127.0.0.1:backlog=4096")
        self.assertEqual(with_backlog("unix:/run/r.sock", 128), "unix:/run/r.sock:backlog=128")
        self.assertEqual(with_backlog("tcp:7733:backlog=10", 4096), "tcp:7733:backlog=10")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0", 4096), "systemd:domain=INET:index=0")

    def test_a_real_daemons_listening_socket_has_it(self) -> None:
        ss = shutil.which("ss")
        if ss is None:
            raise self.skipTest("ss (iproute2) is not installed")
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        (home / "relaychat.toml").write_text('[relay]\ndata_dir = "data"\nbacklog = 1234\n[[listener]]\n'
                                             'kind = "tcp"\nendpoint = "tcp:0:interface=127.0.0.1"\n')
        daemon = Daemon("--config", str(home / "relaychat.toml"), cwd=str(home))
        self.addCleanup(daemon.stop)
        (port,) = daemon.start()
        listing = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=30).stdout
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        self.assertEqual(listing.split()[2], str(min(1234, somaxconn)), listing)  # Send-Q: the listen backlog

    def test_the_listening_socket_gets_it(self) -> None:
        reactor = MemoryReactor()
        server_endpoint(reactor, "tcp:7733:interface=127.0.0.1", 4096, "here").listen(object())  # type: ignore[arg-type]
        self.assertEqual(reactor.tcpServers[0][2], 4096)
