"""The admin console: who may log in, the host key, the shell, and a real ``ssh`` into ``twistd relaychat``."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import MultiService
from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh.keys import FingerprintFormats, Key
from twisted.cred.credentials import ISSHPrivateKey, SSHPrivateKey, UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from relaychat.admin.helpers import Console
from relaychat.admin.keys import HOST_KEY_NAME, load_host_key, openssh_fingerprint, read_authorized_keys
from relaychat.admin.manhole import Admin, AdminKeyChecker, AuditedManhole, ConsoleFactory, console_factory, run_once
from relaychat.admin.service import ConsoleListener, is_local_endpoint, make_manhole_service
from relaychat.config import Config, ConfigError, ListenerConfig, ManholeConfig, parse
from relaychat.server.drain import Drainer
from relaychat.tap import compose
from tests.daemon import Daemon, LineSocket
from tests.support import Harness, identity

_CONSOLE = re.compile(r"admin console \(ssh\) '[^']*' listening on [\d.]+:(\d+)")


def new_key() -> Key:
    return Key(Ed25519PrivateKey.generate())


def public_line(key: Key, comment: str = "someone@somewhere") -> bytes:
    return key.public().toString("OPENSSH") + b" " + comment.encode()


def credentials(key: Key, user: bytes = b"admin", signed: bool = True) -> SSHPrivateKey:
    data = b"session id and request, as the SSH server would sign"
    return SSHPrivateKey(user, b"ssh-ed25519", key.public().blob(), data, key.sign(data) if signed else None)


class AuthorizedKeys(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "authorized_keys"

    def write(self, data: bytes, mode: int = 0o600) -> Path:
        self.path.write_bytes(data)
        self.path.chmod(mode)
        return self.path

    def test_keys_are_read_comments_and_junk_skipped(self) -> None:
        one, two = new_key(), new_key()
        junk = b'from="10.0.0.1" ' + public_line(one)  # options we cannot honour: the line is not trusted
        path = self.write(b"# admins\n\n" + public_line(one) + b"\n" + junk + b"\nnot a key\n" + public_line(two) + b"\n")
        with capturedLogs() as events:
            found = read_authorized_keys(path)
        self.assertEqual([k.blob() for k in found], [one.public().blob(), two.public().blob()])
        warnings = [formatEvent(e) for e in events]
        self.assertEqual(len(warnings), 2)
        self.assertIn(f"{path}:4: not an OpenSSH public key line; ignored", warnings[0])

    def test_no_file_named_is_refused(self) -> None:
        error = self.assertRaises(ConfigError, read_authorized_keys, None)
        self.assertIn("manhole.authorized_keys is required when manhole.enabled = true", str(error))

    def test_missing_file_is_refused(self) -> None:
        error = self.assertRaises(ConfigError, read_authorized_keys, self.dir / "nope")
        self.assertIn("cannot read: No such file or directory", str(error))

    def test_file_without_a_key_is_refused(self) -> None:
        for data in (b"", b"# nobody yet\n", b"ssh-ed25519 garbage\n", b"ssh-ed25519\n", b"ssh-dss AAAAB3NzaC1kc3MAAACBAP\n"):
            error = self.assertRaises(ConfigError, read_authorized_keys, self.write(data))
            self.assertIn("holds no usable public key", str(error))

    def test_file_others_can_write_is_refused(self) -> None:
        error = self.assertRaises(ConfigError, read_authorized_keys, self.write(public_line(new_key()), 0o666))
        self.assertIn("is writable by group or others", str(error))


class HostKey(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def test_created_once_private_to_us_and_reused(self) -> None:
        first = load_host_key(str(self.dir))
        path = self.dir / HOST_KEY_NAME
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(first.type(), "Ed25519")
        self.assertFalse(first.isPublic())
        written = path.read_bytes()
        self.assertTrue(written.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"))
        second = load_host_key(str(self.dir))
        self.assertEqual(second.public().blob(), first.public().blob())
        self.assertEqual(path.read_bytes(), written)
        self.assertEqual(sorted(os.listdir(self.dir)), [HOST_KEY_NAME])  # no temporary file left

    def test_key_others_can_read_is_refused(self) -> None:
        load_host_key(str(self.dir))
        (self.dir / HOST_KEY_NAME).chmod(0o644)
        error = self.assertRaises(ConfigError, load_host_key, str(self.dir))
        self.assertIn("is accessible by others; chmod 600 it", str(error))

    def test_unreadable_key_is_refused(self) -> None:
        (self.dir / HOST_KEY_NAME).write_bytes(b"not a key")
        (self.dir / HOST_KEY_NAME).chmod(0o600)
        self.assertIn("cannot load", str(self.assertRaises(ConfigError, load_host_key, str(self.dir))))

    def test_factories_hold_their_own_host_keys(self) -> None:
        a, b = new_key(), new_key()
        first = console_factory([new_key()], a, lambda admin: {})
        second = console_factory([new_key()], b, lambda admin: {})
        self.assertEqual(first.privateKeys, {b"ssh-ed25519": a})
        self.assertEqual(second.publicKeys[b"ssh-ed25519"].blob(), b.public().blob())
        for cls in ConsoleFactory.__mro__:
            self.assertNotIn("publicKeys", vars(cls), cls)
            self.assertNotIn("privateKeys", vars(cls), cls)

    def test_fingerprint_is_openssh_style(self) -> None:
        key = new_key()
        printed = openssh_fingerprint(key.public().blob())
        self.assertRegex(printed, r"\ASHA256:[A-Za-z0-9+/]{43}\Z")
        self.assertEqual(printed[7:] + "=", key.fingerprint(format=FingerprintFormats.SHA256_BASE64))


class Endpoints(SynchronousTestCase):
    def test_what_counts_as_local(self) -> None:
        local = ["tcp:7736:interface=127.0.0.1", "tcp:0:interface=127.8.9.10", r"tcp6:7736:interface=\:\:1",
                 "TCP:port=7736:interface=127.0.0.1", "unix:/run/relaychat/admin.sock"]
        remote = ["tcp:7736", "tcp:7736:interface=0.0.0.0", "tcp6:7736", r"tcp6:7736:interface=\:\:",
                  "tcp:7736:interface=192.0.2.1", "tcp:7736:interface=localhost", "systemd:domain=INET:index=0", ""]
        for description in local:
            self.assertTrue(is_local_endpoint(description), description)
        for description in remote:
            self.assertFalse(is_local_endpoint(description), description)


class MakeService(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()
        self.keys = self.dir / "authorized_keys"
        self.keys.write_bytes(public_line(new_key()) + b"\n")
        self.h = Harness()
        self.reactor = MemoryReactorClock()

    def config(self, **manhole: Any) -> Config:
        settings: dict[str, Any] = {"enabled": True, "authorized_keys": self.keys}
        settings.update(manhole)
        return Config(data_dir=self.dir / "data", listeners=(), manhole=ManholeConfig(**settings))

    def make(self, config: Config) -> Any:
        drainer = Drainer(self.h.hub, MultiService(), self.reactor, 30.0, lambda: None)
        return make_manhole_service(config, self.h.hub, MultiService(), drainer, str(self.dir), self.reactor)

    def test_off_unless_enabled(self) -> None:
        self.assertIsNone(self.make(self.config(enabled=False, authorized_keys=None)))
        self.assertFalse((self.dir / HOST_KEY_NAME).exists())

    def test_enabled_gives_a_named_console_listener_on_loopback(self) -> None:
        service = self.make(self.config())
        self.assertIsInstance(service, ConsoleListener)
        self.assertEqual(service.name, "manhole")
        self.assertEqual(service.describe(), "admin console (ssh) 'tcp:7736:interface=127.0.0.1'")
        self.assertTrue((self.dir / HOST_KEY_NAME).exists())
        service.startService()
        self.assertEqual([(port, interface) for port, _, _, interface in self.reactor.tcpServers],
                         [(7736, "127.0.0.1")])
        service.stopService()

    def test_enabled_without_keys_is_refused(self) -> None:
        error = self.assertRaises(ConfigError, self.make, self.config(authorized_keys=None))
        self.assertIn("manhole.authorized_keys is required", str(error))
        self.keys.write_bytes(b"")
        self.assertIn("holds no usable public key", str(self.assertRaises(ConfigError, self.make, self.config())))

    def test_remote_endpoint_needs_allow_remote(self) -> None:
        error = self.assertRaises(ConfigError, self.make, self.config(endpoint="tcp:7736"))
        self.assertIn("is reachable from other machines", str(error))
        self.assertIn("manhole.allow_remote = true", str(error))
        self.assertIsInstance(self.make(self.config(endpoint="tcp:7736", allow_remote=True)), ConsoleListener)

    def test_bad_endpoint_string_is_refused(self) -> None:
        error = self.assertRaises(ConfigError, self.make, self.config(endpoint="tcp:x:interface=127.0.0.1"))
        self.assertIn("manhole.endpoint 'tcp:x:interface=127.0.0.1': bad endpoint string", str(error))

    def test_the_daemon_includes_it(self) -> None:
        config = Config(data_dir=self.dir / "data", listeners=(ListenerConfig("tcp", "tcp:0:interface=127.0.0.1"),),
                        manhole=ManholeConfig(enabled=True, authorized_keys=self.keys))
        top = compose(config, self.reactor)
        self.addCleanup(top.getServiceNamed("relay").store.close)
        self.assertIsInstance(top.getServiceNamed("manhole"), ConsoleListener)
        self.assertTrue((self.dir / "data" / HOST_KEY_NAME).exists())

    def test_config_keys(self) -> None:
        config = parse({"manhole": {"enabled": True, "authorized_keys": "keys", "allow_remote": True}}, base=self.dir)
        self.assertEqual(config.manhole, ManholeConfig(True, ManholeConfig.endpoint, self.dir / "keys", True))
        self.assertFalse(parse({}, base=self.dir).manhole.allow_remote)
        error = self.assertRaises(ConfigError, parse, {"manhole": {"allow_remote": "yes"}}, base=self.dir)
        self.assertEqual(str(error), "manhole.allow_remote: expected true or false")


class Login(SynchronousTestCase):
    """The portal: an authorized key logs in as an Admin named by its fingerprint; nothing else does."""

    def setUp(self) -> None:
        self.key = new_key()
        self.factory = console_factory([self.key.public()], new_key(), lambda admin: {"who_am_i": admin})
        self.portal = self.factory.portal

    def login(self, creds: Any) -> Any:
        outcome: list[Any] = []
        self.portal.login(creds, None, IConchUser).addBoth(outcome.append)
        return outcome[0]

    def test_only_public_keys_are_offered(self) -> None:
        self.assertEqual(self.portal.listCredentialsInterfaces(), [ISSHPrivateKey])
        self.login(UsernamePassword(b"admin", b"hunter2")).trap(UnhandledCredentials)

    def test_authorized_key_logs_in_named_by_fingerprint(self) -> None:
        with capturedLogs() as events:
            interface, avatar, logout = self.login(credentials(self.key))
            logout()
        self.assertIs(interface, IConchUser)
        self.assertIsNotNone(ISession(avatar.original))
        printed = openssh_fingerprint(self.key.public().blob())
        self.assertEqual([formatEvent(e) for e in events],
                         [f"admin {printed}: logged in as admin", f"admin {printed}: logged out"])

    def test_unknown_key_wrong_user_and_bad_signature_are_refused(self) -> None:
        self.login(credentials(new_key())).trap(UnauthorizedLogin)
        self.login(credentials(self.key, user=b"root")).trap(UnauthorizedLogin)
        forged = credentials(self.key)
        forged.signature = new_key().sign(forged.sigData)
        self.login(forged).trap(UnauthorizedLogin)

    def test_checker_answers_with_the_admin(self) -> None:
        outcome: list[Any] = []
        AdminKeyChecker([self.key.public()]).requestAvatarId(credentials(self.key)).addBoth(outcome.append)
        self.assertEqual(outcome, [Admin("admin", openssh_fingerprint(self.key.public().blob()))])


class Shell(SynchronousTestCase):
    """The console's terminal protocol driven in memory, as the SSH session would."""

    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.admin = Admin("admin", "SHA256:shell-test")
        console = Console(self.h.hub, Config(Path("x"), ()), lambda: self.h.now, admin=self.admin.fingerprint)
        self.terminal = ServerProtocol(AuditedManhole, console.namespace(), self.admin)
        self.transport = StringTransport()
        self.terminal.makeConnection(self.transport)
        self.terminal.terminalProtocol.terminalSize(80, 24)  # as the SSH glue does when the shell opens

    def type(self, text: bytes) -> str:
        self.transport.clear()
        self.terminal.dataReceived(text)
        return self.transport.value().decode("utf-8", "replace")

    def test_greets_and_runs_helpers_with_plain_output(self) -> None:
        self.assertIn("relaychat admin console", self.transport.value().decode())
        output = self.type(b"who()\r")
        self.assertIn("1 online, 1 connections\r\n", output)
        self.assertIn("alice  127.0.0.1", output)
        self.assertNotIn("'1 online", output)  # shown as text, not as a quoted string

    def test_every_line_and_action_is_logged_with_the_admin(self) -> None:
        with capturedLogs() as events:
            self.type(b"kick('alice', 'enough')\r")
            self.type(b"relay.online\r")
        self.assertEqual(self.alice[1].lines(), ["BYE kicked enough"])
        self.assertEqual([formatEvent(e) for e in events], [
            "admin SHA256:shell-test: typed \"kick('alice', 'enough')\"",
            "admin SHA256:shell-test: kick alice ('enough'): kicked alice",
            "admin SHA256:shell-test: typed 'relay.online'",
        ])

    def test_namespace_holds_the_relay(self) -> None:
        self.assertIn("True", self.type(b"relay.registry is registry and config.manhole.enabled is False\r"))

    def test_control_d_leaves(self) -> None:
        self.type(b"\x04")
        self.assertTrue(self.transport.disconnecting)


class OneShot(SynchronousTestCase):
    """``ssh admin@host 'stats()'``: one line run as at the prompt, its output, an exit status."""

    def setUp(self) -> None:
        self.h = Harness()
        self.alice = self.h.register("alice")
        self.namespace = Console(self.h.hub, Config(Path("x"), ()), lambda: self.h.now, admin="A").namespace()

    def test_expressions_print_their_value_as_the_shell_would(self) -> None:
        output, ok = run_once(self.namespace, "who()")
        self.assertTrue(ok)
        self.assertTrue(output.startswith("1 online, 1 connections\n"), output)
        self.assertEqual(run_once(self.namespace, "len(relay.online) + 1"), ("2\n", True))
        self.assertEqual(run_once(self.namespace, "x = 5"), ("", True))
        self.assertEqual(run_once(self.namespace, "print(x * 2)"), ("10\n", True))
        self.assertEqual(run_once(self.namespace, "None"), ("", True))

    def test_an_error_prints_its_traceback_and_fails(self) -> None:
        output, ok = run_once(self.namespace, "kick(3)")
        self.assertFalse(ok)
        self.assertIn("TypeError: give a nickname as a string", output)
        output, ok = run_once(self.namespace, "def (")
        self.assertFalse(ok)
        self.assertIn("SyntaxError", output)
        self.assertEqual(self.alice[1].lines(), [])


def _ssh_available() -> Optional[str]:
    missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    return f"OpenSSH client not installed ({', '.join(missing)} missing); .ci/run installs openssh-client" if missing else None


class SSHProcess:
    """A real ``ssh`` whose output is collected by a thread, so reads can time out."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for chunk in iter(lambda: self.process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self.output += chunk

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode("utf-8"))
        self.process.stdin.flush()

    def expect(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.output.decode("utf-8", "replace")
            if text in seen:
                return seen
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen; ssh said:\n{self.output.decode('utf-8', 'replace')}")

    def wait(self, timeout: float = 20.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class RealSSH(SynchronousTestCase):
    """``twistd -n relaychat`` with the console enabled, and OpenSSH's ``ssh`` logging in."""

    def setUp(self) -> None:
        reason = _ssh_available()
        if reason:
            self.skipTest(reason)
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        for name in ("admin", "stranger"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test",
                            "-f", str(self.home / name)], check=True, timeout=30)
        (self.home / "authorized_keys").write_bytes((self.home / "admin.pub").read_bytes())
        self.config = self.home / "relaychat.toml"
        self.config.write_text(
            '[relay]\ndata_dir = "data"\n'
            '[[listener]]\nkind = "tcp"\nendpoint = "tcp:0:interface=127.0.0.1"\n'
            '[manhole]\nenabled = true\nendpoint = "tcp:0:interface=127.0.0.1"\nauthorized_keys = "authorized_keys"\n'
        )
        self.daemon = Daemon("--config", str(self.config), cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        self.processes: list[SSHProcess] = []
        self.addCleanup(lambda: [p.kill() for p in self.processes])

    def start(self) -> tuple[int, int]:
        (relay,) = self.daemon.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = _CONSOLE.search(self.daemon.log())
            if found:
                return relay, int(found.group(1))
            time.sleep(0.05)
        raise AssertionError("the admin console did not start:\n" + self.daemon.log())

    def ssh(self, port: int, *options: str, key: str = "admin", user: str = "admin", command: str = "") -> SSHProcess:
        process = SSHProcess([
            "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(self.home / key),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR", *options, f"{user}@127.0.0.1", *([command] if command else []),
        ])
        self.processes.append(process)
        return process

    def refused(self, port: int, *options: str, **who: str) -> str:
        process = self.ssh(port, *options, **who)
        self.assertEqual(process.wait(), 255)
        return process.output.decode("utf-8", "replace")

    def console_with_alice(self) -> tuple[SSHProcess, LineSocket]:
        """A daemon with alice registered, and an admin at its console prompt."""
        relay, console = self.relay_and_console = self.start()
        alice = LineSocket(relay)
        self.addCleanup(alice.close)
        self.assertEqual(alice.register("alice", identity("alice")), "OK PROVE alice new 0")
        session = self.ssh(console, "-tt")
        session.expect("relaychat admin console")
        return session, alice

    def test_admin_logs_in_runs_helpers_and_is_logged_by_key(self) -> None:
        session, alice = self.console_with_alice()
        session.type("who()\r")
        session.expect("1 online, 1 connections")
        session.expect("alice  127.0.0.1")
        session.type("kick('alice', 'maintenance')\r")
        session.expect("kicked alice")
        self.assertEqual(alice.read_line(), "BYE kicked maintenance")
        session.type("stats()\r")
        session.expect("draining        no")
        session.type("\x04")
        self.assertEqual(session.wait(), 0)

        listed = subprocess.run(["ssh-keygen", "-l", "-f", str(self.home / "admin.pub")],
                                capture_output=True, text=True, check=True, timeout=30).stdout.split()[1]
        log = self.daemon.log()
        self.assertIn(f"admin {listed}: logged in as admin", log)
        self.assertIn(f"admin {listed}: kick alice ('maintenance'): kicked alice", log)
        self.assertIn(f"admin {listed}: logged out", log)
        # conch's own chatter (key exchange, auth attempts, channel requests) stays out of the log
        self.assertNotIn("twisted.conch", log)
        self.assertNotIn("starting on", log)
        self.assertNotIn("moduli", log)

    def test_one_shot_commands_print_and_exit(self) -> None:
        session, alice = self.console_with_alice()
        session.kill()
        _, console = self.relay_and_console
        stats = self.ssh(console, command="stats()")
        self.assertEqual(stats.wait(), 0)
        output = stats.output.decode("utf-8")
        self.assertRegex(output, r"^uptime +\d")
        self.assertIn("\nonline          1\n", output)
        failing = self.ssh(console, command="kick('alice', 3, 4)")
        self.assertEqual(failing.wait(), 1)
        self.assertIn("TypeError", failing.output.decode("utf-8"))
        kicked = self.ssh(console, command="kick('alice', 'scripted')")
        self.assertEqual(kicked.wait(), 0)
        self.assertEqual(kicked.output, b"kicked alice\n")
        self.assertEqual(alice.read_line(), "BYE kicked scripted")
        listed = subprocess.run(["ssh-keygen", "-l", "-f", str(self.home / "admin.pub")],
                                capture_output=True, text=True, check=True, timeout=30).stdout.split()[1]
        self.assertIn(f"admin {listed}: ran 'stats()'", self.daemon.log())
        self.assertIn(f"admin {listed}: kick alice ('scripted'): kicked alice", self.daemon.log())

    def test_drain_tells_clients_then_the_daemon_stops_cleanly(self) -> None:
        session, alice = self.console_with_alice()
        session.type("drain('back soon')\r")
        self.assertEqual(alice.read_line(), "NOTICE back soon")
        self.assertEqual(alice.read_line(), "BYE draining back soon")
        session.wait()
        self.assertEqual(self.daemon.wait(), 0)
        self.assertIn("relaychat: drain over (every client has left)", self.daemon.log())
        self.assertIn("Server Shut Down.", self.daemon.log())

    def test_unknown_key_wrong_user_and_passwords_are_refused(self) -> None:
        _, console = self.start()
        self.assertIn("Permission denied (publickey)", self.refused(console, key="stranger"))
        self.assertIn("Permission denied (publickey)", self.refused(console, user="root"))
        said = self.refused(console, "-o", "PreferredAuthentications=password,keyboard-interactive",
                            "-o", "PubkeyAuthentication=no")
        self.assertIn("Permission denied (publickey)", said)  # no password method is even offered
        self.assertNotIn("logged in", self.daemon.log())

    def test_start_is_refused_without_an_authorized_key(self) -> None:
        (self.home / "authorized_keys").write_text("# nobody yet\n")
        with self.assertRaises(AssertionError):
            self.daemon.start()
        self.daemon.wait()
        self.assertNotEqual(self.daemon.process.returncode, 0)  # type: ignore[union-attr]
        self.assertIn("relaychat: manhole.authorized_keys", self.daemon.log())
        self.assertIn("holds no usable public key", self.daemon.log())
