"""Every way the relay ends a connection closes it, on every listener kind,
against a real ``twistd relaychat`` (issue 10, point 0).

One daemon per test serves all four kinds (tcp, tls, websocket, wss); each
test loops over the kinds. ``close_timeout`` is set far above the read
time-out, so a connection that is only cut off by that last resort fails.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.certificates import write_self_signed
from tests.daemon import Daemon, register
from tests.endings_support import KINDS, Channel
from tests.listener_support import listening, toml_listener
from tests.support import identity, strict_dir
from tests.test_manhole import _CONSOLE, SSHProcess, _ssh_available

LOOPBACK = "tcp:0:interface=127.0.0.1"
TLS = {"certificate": "tls/cert.pem", "private_key": "tls/key.pem"}


class _AllKinds(SynchronousTestCase):
    """A daemon with one listener of each kind (and, if ``console``, the admin console)."""

    limits = "pow_bits = 0\nclose_timeout = 300.0\n"
    console = False

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.cert, _, _ = write_self_signed(self.home / "tls", ["localhost"])
        manhole = ""
        if self.console:
            reason = _ssh_available()
            if reason:
                raise self.skipTest(reason)
            self.keys = strict_dir(self)  # a key file's directories must pass StrictModes (not /tmp)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.keys / "admin")],
                           check=True, timeout=30)
            (self.keys / "authorized_keys").write_bytes((self.keys / "admin.pub").read_bytes())
            manhole = (f'[manhole]\nenabled = true\nendpoint = "{LOOPBACK}"\n'
                       f'authorized_keys = "{self.keys / "authorized_keys"}"\n')
        config = self.home / "relaychat.toml"
        config.write_text(
            '[relay]\ndata_dir = "data"\n'
            + toml_listener("tcp", LOOPBACK) + toml_listener("tls", LOOPBACK, **TLS)
            + toml_listener("websocket", LOOPBACK) + toml_listener("websocket", LOOPBACK, **TLS)
            + "[limits]\n" + self.limits + manhole
        )
        self.daemon = Daemon("--config", str(config), cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        self.daemon.start(listeners=4)
        self.ports = dict(zip(KINDS, (port for _, port in listening(self.daemon.log()))))
        self.channels: list[Channel] = []
        self.addCleanup(lambda: [c.close() for c in self.channels])

    def open(self, kind: str) -> Channel:
        channel = Channel(kind, self.ports[kind], cafile=self.cert)
        self.channels.append(channel)
        return channel

    def registered(self, kind: str, nick: str) -> Channel:
        channel = self.open(kind)
        self.assertEqual(register(channel.ask, nick, identity(nick)), f"OK PROVE {nick} new 0", kind)
        return channel



class Endings(_AllKinds):
    """QUIT, replaced, violations."""

    def test_quit(self) -> None:
        for kind in KINDS:
            channel = self.open(kind)
            self.assertEqual(channel.ask("HELLO 1").split(" ")[:2], ["OK", "HELLO"], kind)
            self.assertEqual(channel.ask("QUIT"), "BYE quit goodbye", kind)
            channel.expect_close()

    def test_replaced(self) -> None:
        for kind in KINDS:
            nick = f"r{kind}"
            old = self.registered(kind, nick)
            new = self.open(kind)
            self.assertEqual(register(new.ask, nick, identity(nick)), f"OK PROVE {nick} known 0", kind)
            self.assertEqual(old.read_line(), "BYE replaced you logged in elsewhere", kind)
            old.expect_close()
            self.assertEqual(new.ask("PING still"), "OK PING still", kind)

    def test_violations(self) -> None:
        for kind in KINDS:
            channel = self.open(kind)
            for _ in range(10):
                channel.send("JUNK")
            said = [channel.read_line() for _ in range(11)]
            self.assertEqual(said[:10], ["ERR JUNK unknown no such command"] * 10, kind)
            self.assertEqual(said[10], "BYE violations too many protocol errors", kind)
            channel.expect_close()


class Timeouts(_AllKinds):
    """The registration time-out and idleness, all kinds at once."""

    limits = "pow_bits = 0\nclose_timeout = 300.0\nregistration_timeout = 2.0\nidle_timeout = 3.0\n"

    def test_registration_timeout_and_idle(self) -> None:
        waiting = {kind: self.open(kind) for kind in KINDS}
        for kind, channel in waiting.items():
            self.assertEqual(channel.ask("HELLO 1").split(" ")[:2], ["OK", "HELLO"], kind)
        idle = {kind: self.registered(kind, f"i{kind}") for kind in KINDS}
        for kind in KINDS:
            self.assertEqual(waiting[kind].read_line(), "BYE timeout registration took too long", kind)
            waiting[kind].expect_close()
        for kind in KINDS:
            self.assertEqual(idle[kind].read_line(), "BYE idle no activity", kind)
            idle[kind].expect_close()


class OperatorEndings(_AllKinds):
    """kick and ban, typed at the admin console (OpenSSH ``ssh``)."""

    console = True

    def console_session(self) -> SSHProcess:
        deadline = time.monotonic() + 20
        while not (found := _CONSOLE.search(self.daemon.log())):
            if time.monotonic() > deadline:
                raise AssertionError("the admin console did not start:\n" + self.daemon.log())
            time.sleep(0.05)
        session = SSHProcess([
            "ssh", "-F", "/dev/null", "-p", found.group(1), "-i", str(self.keys / "admin"), "-tt",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR", "admin@127.0.0.1",
        ])
        self.addCleanup(session.kill)
        session.expect("relaychat admin console")
        return session

    def test_kick_and_ban(self) -> None:
        session = self.console_session()
        peers = {}
        for kind in KINDS:
            kicked, banned = self.registered(kind, f"k{kind}"), self.registered(kind, f"b{kind}")
            peers[kind] = self.registered(kind, f"p{kind}")
            session.type(f"kick('k{kind}', 'go away')\r")
            self.assertEqual(kicked.read_line(), "BYE kicked go away", kind)
            kicked.expect_close()
            session.type(f"ban('b{kind}', 3600)\r")
            self.assertEqual(banned.read_line(), "BYE banned nick 3600 this nickname is banned for 3600 more seconds",
                             kind)  # which ban, and how long (protocol section 2)
            banned.expect_close()
        session.type("who()\r")
        # Only the four peers are left: the relay counted each ended connection until its socket closed.
        session.expect("4 online, 4 connections")


class Busy(_AllKinds):
    """A connection over the per-address limit is told BYE busy and closed, on each kind."""

    limits = _AllKinds.limits + "connections_per_address = 8\n"

    def test_busy(self) -> None:
        for kind in KINDS:  # 8 held, two of each kind
            for _ in range(2):
                self.assertEqual(self.open(kind).ask("PING held"), "OK PING held", kind)
        for kind in KINDS:
            refused = self.open(kind)
            self.assertEqual(refused.read_line(), "BYE busy too many connections from your address", kind)
            refused.expect_close()

