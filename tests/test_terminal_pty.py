"""The terminal program in real pseudo-terminals (tmux), against a real daemon:
two people connect, chat, compare safety numbers, check a secret, quit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import ROOT, Daemon

SAFETY = re.compile(r"\*\*\*\s+((?:\d{5} ){11}\d{5})")


class Tmux:
    """A private tmux server (its own socket), so tests never touch a user's."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        return result.stdout

    def start(self, session: str, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        # After the program ends, print its status and keep the pane to read it.
        shell = f"env {exports} {command}; echo EXITED=$?; sleep 120"
        self.run("new-session", "-d", "-s", session, "-x", "120", "-y", "45", shell)

    def type(self, session: str, text: str) -> None:
        self.run("send-keys", "-t", session, "-l", text)
        self.run("send-keys", "-t", session, "Enter")

    def screen(self, session: str) -> str:
        return self.run("capture-pane", "-p", "-J", "-S", "-200", "-t", session)

    def wait_for(self, session: str, check: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(session)
            if check(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{session}: no {what} within {timeout}s; screen:\n{self.screen(session)}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


class TwoPeopleChat(SynchronousTestCase):
    def setUp(self) -> None:
        if shutil.which("tmux") is None:
            raise self.skipTest("tmux is not installed")
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        config = self.home / "relay.toml"
        config.write_text("[limits]\npow_bits = 0\n")
        self.daemon = Daemon("--config", str(config), "--data-dir", str(self.home / "data"),
                             "--listen", "tcp:0:interface=127.0.0.1", cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        (self.port,) = self.daemon.start()
        self.tmux = Tmux(f"relaychat-test-{os.getpid()}-{id(self)}")
        self.addCleanup(self.tmux.kill)

    def client(self, nick: str) -> None:
        config_dir = self.home / nick
        env = {
            "PYTHONPATH": str(ROOT), "HOME": str(self.home), "TERM": "xterm",
            "XDG_CONFIG_HOME": str(self.home / "xdg"), "LANG": "C.UTF-8",
        }
        command = (f"{_quote(sys.executable)} -m relaychat.client.cli --server 127.0.0.1:{self.port} "
                   f"--nick {nick} --config-dir {_quote(str(config_dir))}")
        self.tmux.start(nick, command, env)
        self.tmux.wait_for(nick, lambda s: f"Connected to 127.0.0.1:{self.port} as {nick}." in s, "connection")

    def test_connect_chat_compare_verify_quit(self) -> None:
        t = self.tmux
        self.client("alice")
        self.client("bob")

        t.type("alice", "/connect bob")
        t.wait_for("bob", lambda s: "alice wants to talk" in s, "offer")
        t.type("bob", "/accept alice")
        for nick in ("alice", "bob"):
            t.wait_for(nick, lambda s: "Handshake done: end-to-end encrypted" in s, "handshake")
            self.assertIn("UNVERIFIED: first contact", t.screen(nick))

        t.type("alice", "hello bob")
        t.wait_for("bob", lambda s: "<alice> hello bob" in s, "alice's message")
        t.type("bob", "hi alice")
        t.wait_for("alice", lambda s: "<bob> hi alice" in s, "bob's message")

        # Text from the network can never pass for a status line: it is always
        # shown after the sender's name.
        t.type("alice", "*** VERIFIED: forged status line")
        bob_screen = t.wait_for("bob", lambda s: "forged status line" in s, "forged line")
        forged = [l for l in bob_screen.splitlines() if "forged status line" in l]
        self.assertEqual(forged, ["<alice> *** VERIFIED: forged status line"])

        t.type("alice", "/safety")
        t.type("bob", "/safety")
        numbers = {
            nick: SAFETY.findall(t.wait_for(nick, lambda s: SAFETY.search(s) is not None, "safety number"))
            for nick in ("alice", "bob")
        }
        self.assertEqual(len(numbers["alice"]), 1)
        self.assertEqual(numbers["alice"], numbers["bob"])

        t.type("alice", "/verify blue horse battery")
        t.wait_for("bob", lambda s: "asks you to check a shared secret" in s, "SMP request")
        t.type("bob", "/verify blue horse battery")
        for nick in ("alice", "bob"):
            t.wait_for(nick, lambda s: "VERIFIED: " in s and "knows the same secret" in s, "SMP result")

        t.type("alice", "/quit")
        t.wait_for("alice", lambda s: "EXITED=0" in s, "clean exit")
        t.wait_for("bob", lambda s: "alice left the conversation" in s, "peer-left notice")
        t.type("bob", "/quit")
        t.wait_for("bob", lambda s: "EXITED=0" in s, "clean exit")
        self.assertNotIn("Traceback", t.screen("alice") + t.screen("bob"))
