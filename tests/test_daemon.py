"""The real thing: ``twistd -n relaychat`` as a process, real sockets, a restart."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import ROOT, TWISTD, Daemon, LineSocket, open_session, session_pair
from tests.support import identity


class RealDaemon(SynchronousTestCase):
    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.data = self.home / "data"
        self.daemon = Daemon("--data-dir", str(self.data), "--listen", "tcp:0:interface=127.0.0.1",
                             cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        self.sockets: list[LineSocket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    def client(self, port: int) -> LineSocket:
        s = LineSocket(port)
        self.sockets.append(s)
        return s

    def test_register_relay_both_ways_restart_and_binding_survives(self) -> None:
        (port,) = self.daemon.start()
        alice, bob = self.client(port), self.client(port)
        self.assertEqual(alice.register("alice", identity("alice")), "OK PROVE alice new 0")
        self.assertEqual(bob.register("bob", identity("bob")), "OK PROVE bob new 0")
        sid = open_session(alice, bob, "alice", "bob")
        alice.send(f"FRAME {sid} aGVsbG8gYm9i")
        self.assertEqual(bob.read_line(), f"FRAME {sid} aGVsbG8gYm9i")
        bob.send(f"FRAME {sid} aGVsbG8gYWxpY2U=")
        self.assertEqual(alice.read_line(), f"FRAME {sid} aGVsbG8gYWxpY2U=")

        # SIGTERM drains: both are told, the session may finish, then the daemon exits 0.
        self.daemon.terminate()
        self.assertEqual(alice.read_line(), "NOTICE the relay is restarting")
        self.assertEqual(bob.read_line(), "NOTICE the relay is restarting")
        newcomer = self.client(port)  # the listener stays open during the drain, and says why
        self.assertEqual(newcomer.read_line(), "BYE draining the relay is restarting")
        bob.send(f"FRAME {sid} c3RpbGwgaGVyZQ==")
        self.assertEqual(alice.read_line(), f"FRAME {sid} c3RpbGwgaGVyZQ==")
        self.assertEqual(alice.ask(f"CLOSE {sid}"), f"OK CLOSE {sid}")
        self.assertEqual(alice.read_line(), "BYE draining the relay is restarting")
        self.assertEqual(bob.read_line(), f"CLOSED {sid} closed")
        self.assertEqual(bob.read_line(), "BYE draining the relay is restarting")
        self.assertEqual(self.daemon.wait(), 0)
        self.assertIn("relaychat: drain over (every client has left)", self.daemon.log())
        self.assertIn("Server Shut Down.", self.daemon.log())
        self.assertEqual(stat.S_IMODE(os.stat(self.data).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.data / "relaychat.sqlite3").st_mode), 0o600)

        (port,) = self.daemon.start()
        thief = self.client(port)
        thief.ask("HELLO 1")
        ident = identity("mallory")
        from relaychat.wire.codec import b64encode
        reply = thief.ask(f"REGISTER alice {b64encode(ident.identity_public)} "
                          f"{b64encode(ident.static_public)} {b64encode(ident.static_sig)}")
        self.assertEqual(reply, "ERR REGISTER taken alice is bound to another key")
        self.assertEqual(self.client(port).register("alice", identity("alice")), "OK PROVE alice known 0")

    def test_defaults_need_no_config_and_log_one_line_per_listener(self) -> None:
        daemon = Daemon(cwd=str(self.home), env={"XDG_DATA_HOME": str(self.home / "xdg"), "HOME": str(self.home)})
        self.addCleanup(daemon.stop)
        try:
            ports = daemon.start()
        except AssertionError as e:
            if "Address already in use" in str(e):
                self.skipTest("the default port 7733 is taken on this machine")
            raise
        self.assertEqual(ports, [7733])
        self.assertIn("listener 'tcp:7733:interface=127.0.0.1' listening on 127.0.0.1:7733", daemon.log())
        self.assertTrue((self.home / "xdg" / "relaychat" / "relaychat.sqlite3").exists())

    def test_bad_config_stops_start_up_naming_the_key(self) -> None:
        bad = self.home / "bad.toml"
        bad.write_text("[limits]\nidle_timeot = 5\n")
        daemon = Daemon("--config", str(bad), cwd=str(self.home))
        with self.assertRaises(AssertionError) as caught:
            daemon.start()
        self.assertIn("unknown key limits.idle_timeot", str(caught.exception))
        self.assertNotEqual(daemon.process.returncode, 0)

    def test_garbage_does_not_hurt_other_clients(self) -> None:
        (port,) = self.daemon.start()
        alice = self.client(port)
        alice.register("alice", identity("alice"))
        vandal = self.client(port)
        vandal.sock.sendall(b"\x00\xff garbage\n" * 20 + b"x" * 200000 + b"\n")
        lines = []
        try:
            while True:
                lines.append(vandal.read_line())
        except (ConnectionError, TimeoutError, OSError):
            pass
        self.assertTrue(lines[0].startswith("ERR - bad-encoding"), lines[:3])
        self.assertEqual(lines[-1], "BYE violations too many protocol errors")
        self.assertEqual(alice.ask("PING still-here"), "OK PING still-here")


class OneLineRefusals(SynchronousTestCase):
    """What an operator sees when the daemon cannot start: one line of ours, exit status 1."""

    def run_twistd(self, *args: str, config: str = "") -> tuple[int, list[str]]:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        if config:
            (home / "bad.toml").write_text(config)
            args = ("--config", "bad.toml", *args)
        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", "relaychat", "--data-dir", str(home / "d"),
             *args], cwd=home, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60)
        return result.returncode, (result.stdout + result.stderr).splitlines()

    def test_config_errors(self) -> None:
        for config, line in (
            ("[limits]\nmax_lines = 5\n", "relaychat: bad.toml: unknown key limits.max_lines (did you mean max_line?)"),
            ("[limit]\nmax_line = 5\n", "relaychat: bad.toml: unknown section [limit] (did you mean [limits]?)"),
            ('[[listener]]\nkind = "websocket"\nendpoint = "tcp:1"\nallowed_origins = "https://a.example"\n',
             'relaychat: bad.toml: listener[0].allowed_origins: expected a list of strings, such as ["a", "b"]'),
            ('[[listener]]\nkind = "tcp"\nendpoint = "tcp:notaport"\n',
             "relaychat: bad.toml: listener[0].endpoint 'tcp:notaport': the port must be a number from 0 to 65535, "
             "not 'notaport'"),
        ):
            self.assertEqual(self.run_twistd(config=config), (1, [line]))

    def test_a_port_in_use_is_reported_once(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        status, lines = self.run_twistd("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(status, 1)
        mentions = [line for line in lines if "Address already in use" in line]
        self.assertEqual(len(mentions), 1, lines)
        self.assertTrue(mentions[0].endswith(f"relaychat: tcp listener 'tcp:{port}:interface=127.0.0.1' could not "
                                             f"start: Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address "
                                             "already in use."), mentions)
        self.assertFalse([line for line in lines if "Traceback" in line or "Usage" in line], lines)


class Stopping(SynchronousTestCase):
    """SIGTERM as systemd sends it: a drain with a bounded grace, then exit status 0."""

    def daemon(self, grace: float) -> tuple[Daemon, int]:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        config = home / "relaychat.toml"
        config.write_text(f'[relay]\ndata_dir = "data"\ndrain_grace = {grace}\n'
                          '[[listener]]\nkind = "tcp"\nendpoint = "tcp:0:interface=127.0.0.1"\n'
                          '[limits]\npow_bits = 0\n')
        daemon = Daemon("--config", str(config), cwd=str(home))
        self.addCleanup(daemon.stop)
        (port,) = daemon.start()
        return daemon, port

    def pair(self, port: int) -> tuple[LineSocket, LineSocket, str]:
        return session_pair(port, self.addCleanup)

    def test_the_end_of_the_grace_closes_stragglers_and_exits_0(self) -> None:
        daemon, port = self.daemon(grace=1.5)
        alice, bob, sid = self.pair(port)
        daemon.terminate()
        for client in (alice, bob):
            self.assertEqual(client.read_line(), "NOTICE the relay is restarting")
        for client in (alice, bob):  # the first closed sees no CLOSED for its own session
            self.assertIn(_until_bye(client), ([f"CLOSED {sid} draining"], []))
        self.assertEqual(daemon.wait(), 0)
        self.assertIn("relaychat: drain over (the grace period is over); 2 connections closed", daemon.log())

    def test_a_second_sigterm_stops_at_once(self) -> None:
        daemon, port = self.daemon(grace=600)
        alice, bob, sid = self.pair(port)
        daemon.terminate()
        self.assertEqual(alice.read_line(), "NOTICE the relay is restarting")
        self.assertTrue(_logged(daemon, "relaychat: draining for at most 600.0s"))
        daemon.terminate()
        self.assertEqual(bob.read_line(), "NOTICE the relay is restarting")
        for client in (alice, bob):
            self.assertIn(_until_bye(client), ([f"CLOSED {sid} draining"], []))
        self.assertEqual(daemon.wait(5), 0)
        self.assertIn("relaychat: SIGTERM again: stopping now", daemon.log())
        self.assertIn("relaychat: drain over (SIGTERM); 2 connections closed", daemon.log())


def _until_bye(client: LineSocket) -> list[str]:
    """The lines before ``BYE draining the relay is restarting`` (which must come)."""
    lines = []
    while (line := client.read_line()) != "BYE draining the relay is restarting":
        lines.append(line)
    return lines


def _logged(daemon: Daemon, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in daemon.log():
            return True
        time.sleep(0.02)
    return False


class InstalledPlugin(SynchronousTestCase):
    """``pip install .`` (not editable) must expose the plugin to a plain ``twistd``."""

    def test_help_lists_the_options_without_pythonpath(self) -> None:
        import importlib.metadata
        import subprocess
        import sys

        from tests.daemon import ROOT, TWISTD

        try:
            importlib.metadata.distribution("relaychat")
        except importlib.metadata.PackageNotFoundError:
            raise self.skipTest("relaychat is not installed (pip install .)") from None
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        elsewhere = self.mktemp()
        os.makedirs(elsewhere)
        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "relaychat", "--help"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ("--config=", "--data-dir=", "--listen="):
            self.assertIn(option, result.stdout)
        located = subprocess.run(
            [sys.executable, "-c", "import relaychat; print(relaychat.__file__)"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
        )
        located_file = located.stdout.strip()
        self.assertNotEqual(located_file, str(ROOT / "relaychat" / "__init__.py"),
                            "this test must exercise the installed copy")
        self.assertIn("-packages", located_file)
