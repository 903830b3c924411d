"""The chat program people keep using, in real pseudo-terminals (issue 15).

Same harness as ``tests/test_terminal_pty.py`` (tmux sessions against a real
``twistd relaychat``), here for what a person meets after the first
message: the relay restarting under them, pasting a big block, lines with
line breaks, and the words for a kick, a ban, a look-alike nickname, a call
to someone offline. The relay listens on a fixed free port so it can be
stopped and started again in the same place, with the same data.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial import unittest

from tests.daemon import Daemon
from tests.support import strict_dir
from tests.test_manhole import _CONSOLE, SSHProcess, _ssh_available
from tests.test_terminal_pty import WAIT, Tmux, _env, _poll

# A peer whose client is broken: it sends a well-encrypted message that is
# not UTF-8, which only the receiving client can find out (the relay cannot).
BROKEN_PEER = r'''
import sys
from twisted.internet import defer, task
import relaychat.client as api
from relaychat.client.channel import MessageType

@defer.inlineCallbacks
def main(reactor, port, config):
    identity, peers, seen = api.open_profile(config)
    client = yield api.connect(reactor, "tcp:127.0.0.1:" + port, identity, "mallory", peers, seen_mail=seen)
    conversation = yield client.call("alice")
    conversation.send("hello from a broken client")
    conversation._send(conversation._channel._encrypt(MessageType.TEXT, b"\xff\xfe"))  # white box
    yield task.deferLater(reactor, 2.0, lambda: None)
    yield client.quit()

task.react(main, sys.argv[1:])
'''

CONNECTED = r"^\*\*\* Connected to 127\.0\.0\.1:\d+ as {nick}\.$"
LOST = r"^\*\*\* Lost the connection to the relay \(it may be restarting\); reconnecting…$"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatProgramCase(unittest.TestCase):
    timeout = 300
    console = False  # the operator's SSH console, for kicks and bans

    def setUp(self) -> None:
        if shutil.which("tmux") is None:
            raise unittest.SkipTest("tmux is not installed; these tests drive relaychat in tmux pseudo-terminals")
        if self.console and _ssh_available():
            raise unittest.SkipTest(_ssh_available())
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.port = _free_port()
        config = (
            '[relay]\ndata_dir = "relay-data"\n[limits]\npow_bits = 0\n'
            f'[[listener]]\nkind = "tcp"\nendpoint = "tcp:{self.port}:interface=127.0.0.1"\n'
        )
        if self.console:
            self.keys = strict_dir(self)  # a key file's directories must pass StrictModes (not /tmp)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test",
                            "-f", str(self.keys / "admin")], check=True, timeout=30)
            (self.keys / "authorized_keys").write_bytes((self.keys / "admin.pub").read_bytes())
            config += ('[manhole]\nenabled = true\nendpoint = "tcp:0:interface=127.0.0.1"\n'
                       f'authorized_keys = "{self.keys / "authorized_keys"}"\n')
        (self.dir / "relay.toml").write_text(config)
        self.relay = self.start_relay()
        self.tmux = Tmux()
        self.addCleanup(self.tmux.stop)
        self.ssh_processes: list[SSHProcess] = []
        self.addCleanup(lambda: [p.kill() for p in self.ssh_processes])

    def start_relay(self) -> Daemon:
        relay = Daemon("--config", str(self.dir / "relay.toml"), cwd=str(self.dir), env=_env(self.dir))
        self.addCleanup(relay.stop)
        relay.start()
        return relay

    def start_user(self, nick: str, *extra: str, server: bool = True, home: Path | None = None) -> Path:
        """``relaychat`` for ``nick`` in its own tmux session (``server=False``: no --server)."""
        home = home or self.dir / nick
        home.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "relaychat.chat.cli", "--nick", nick, *extra]
        if server:
            argv += ["--server", f"127.0.0.1:{self.port}"]
        command = f"{shlex.join(argv)}; echo \"EXITED $?\"; sleep 600"
        self.tmux.start(nick, command, _env(home))
        return home

    def pair(self) -> None:
        """alice and bob connected, in a conversation alice called."""
        t = self.tmux
        self.start_user("alice")
        self.start_user("bob")
        for nick in ("alice", "bob"):
            t.wait_for(nick, CONNECTED.format(nick=nick))
        t.type("alice", "/connect bob")
        t.wait_for("bob", r"^\*\*\* alice wants to talk")
        t.type("bob", "/accept")
        for nick, peer in (("alice", "bob"), ("bob", "alice")):
            t.wait_for(nick, rf"^\*\*\* Handshake done: end-to-end encrypted conversation with {peer}\.$")

    def operator(self) -> SSHProcess:
        deadline = time.monotonic() + WAIT
        while not _CONSOLE.search(self.relay.log()):
            if time.monotonic() > deadline:
                raise AssertionError("no admin console:\n" + self.relay.log())
            time.sleep(0.05)
        port = int(_CONSOLE.search(self.relay.log()).group(1))  # type: ignore[union-attr]
        session = SSHProcess([
            "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(self.keys / "admin"),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR", "-tt",
            "admin@127.0.0.1",
        ])
        self.ssh_processes.append(session)
        session.expect("relaychat admin console")
        return session


class ReconnectTests(ChatProgramCase):
    def test_relay_restarts_under_a_conversation(self) -> None:
        t = self.tmux
        self.pair()
        t.type("alice", "before the restart")
        t.wait_for("bob", r"^<alice> before the restart$")

        self.relay.stop()
        for nick in ("alice", "bob"):
            t.wait_for(nick, LOST)
            t.wait_for(nick, r"^\*\*\* The conversation with \w+ was cut off \(.*\); it resumes with a new handshake")
        screen = t.screen("alice")
        cut_by_us = "*** The conversation with bob was cut off (the connection to the relay was lost)"
        if cut_by_us in screen:  # (the relay may have dropped bob first: then alice heard "gone" before)
            self.assertLess(screen.index("*** Lost the connection"), screen.index(cut_by_us),
                            "the cause is said before what it cut off")
        self.assertNotIn("Connection was closed cleanly", screen)
        self.assertNotIn("Type /quit to leave", t.screen("alice"))
        t.type("bob", "typed while the relay was down")
        t.wait_for("bob", r"^\*\*\* Not sent yet: it goes to alice when the conversation is back\.$")

        self.relay = self.start_relay()  # same port, same data dir
        for nick, peer in (("alice", "bob"), ("bob", "alice")):
            t.wait_for(nick, rf"^\*\*\* Reconnected to 127\.0\.0\.1:{self.port} as {nick}\.$")
            t.wait_for(nick, rf"^\*\*\* Re-established the conversation with {peer}: a new handshake, "
                             rf"and {peer}'s key is the one pinned before\.$")
        t.wait_for("bob", r"^\*\*\* Sent the 1 line that waited for alice\.$")
        t.wait_for("alice", r"^<bob> typed while the relay was down$")
        t.type("alice", "after the restart")
        t.wait_for("bob", r"^<alice> after the restart$")
        self.assertEqual(len(re.findall(LOST, t.screen("alice"), re.MULTILINE)), 1, "said in one line")

        # `relaychat` alone, next time, goes back to the same relay.
        t.type("alice", "/quit")
        t.wait_for("alice", r"^EXITED 0$")
        t.run("kill-session", "-t", "alice")
        self.start_user("alice", server=False)
        t.wait_for("alice", rf"^\*\*\* Connected to 127\.0\.0\.1:{self.port} as alice\.$")
        t.type("alice", "/quit")
        t.wait_for("alice", r"^EXITED 0$")

    def test_sigterm_leaves_cleanly(self) -> None:
        t = self.tmux
        self.start_user("alice")
        t.wait_for("alice", CONNECTED.format(nick="alice"))
        pane = t.run("display-message", "-p", "-t", "alice", "#{pane_pid}").strip()
        child = _poll("the program's pid", lambda: subprocess.run(
            ["pgrep", "-P", pane, "-f", "relaychat.chat.cli"], capture_output=True, text=True).stdout.strip() or None,
            lambda: t.screen("alice"))
        subprocess.run(["kill", "-TERM", child.split()[0]], check=True)
        t.wait_for("alice", r"^EXITED 0$")
        self.assertIn("*** Leaving ...", t.screen("alice"))


class TypingTests(ChatProgramCase):
    def test_paste_64_kib_and_line_breaks(self) -> None:
        t = self.tmux
        self.pair()
        lines = [f"p{i:04d} " + "ü" * 30 + "x" * 30 for i in range(700)] + ["last line of the paste"]
        text = "\n".join(lines)
        self.assertGreater(len(text.encode()), 65536)
        (self.dir / "paste.txt").write_text(text)
        t.run("load-buffer", "-b", "big", str(self.dir / "paste.txt"))
        t.run("paste-buffer", "-p", "-b", "big", "-t", "alice")  # bracketed, as the program asked
        t.wait_for("alice", r"^\[bob\] > <.*↵last line of the paste$")
        t.key("alice", "Enter")
        # One message (split into frames and joined again), its lines indented on bob's screen.
        t.wait_for("bob", r"^    last line of the paste$")
        screen = t.run("capture-pane", "-p", "-S", "-", "-t", "bob")  # all of the history
        self.assertIn("    p0699 " + "ü" * 30 + "x" * 30, screen)
        self.assertEqual(screen.count("<alice>"), 1, "the paste arrived as one message")
        self.assertNotRegex(screen, r"(?m)^<alice> p0001")

        # Alt-Enter puts a line break in a typed message.
        t.run("send-keys", "-t", "bob", "-l", "first line")
        t.key("bob", "M-Enter")
        t.run("send-keys", "-t", "bob", "-l", "second line")
        t.wait_for("bob", r"^\[alice\] > first line↵second line$")
        t.key("bob", "Enter")
        t.wait_for("alice", r"^<bob> first line\n    second line$")

    def test_scrollback_and_bell(self) -> None:
        t = self.tmux
        self.pair()
        for i in range(50):
            t.type("alice", f"numbered {i:02d}")
        t.wait_for("bob", r"^<alice> numbered 49$")
        t.key("bob", "PageUp")
        t.key("bob", "PageUp")
        t.wait_for("bob", r"^-- \d+ more rows below; PageDown --$")
        self.assertNotRegex(t.run("capture-pane", "-p", "-t", "bob"), r"numbered 49")
        t.key("bob", "PageDown")
        t.key("bob", "PageDown")
        t.key("bob", "PageDown")
        t.wait_for("bob", r"^<alice> numbered 49$")
        self.assertNotIn("more rows below", t.run("capture-pane", "-p", "-t", "bob"))


class FirstRunTests(ChatProgramCase):
    def test_the_first_question_says_what_a_nickname_may_be(self) -> None:
        t = self.tmux
        home = self.dir / "carol"
        home.mkdir()
        argv = [sys.executable, "-m", "relaychat.chat.cli", "--server", f"127.0.0.1:{self.port}"]
        t.start("carol", f"{shlex.join(argv)}; echo \"EXITED $?\"; sleep 600", _env(home))
        t.wait_for("carol", r"^Choose a nickname: 2 to 24 letters \(a-z, A-Z\), digits, '_' or '-', starting with")
        t.wait_for("carol", r"^Nickname:$")
        t.type("carol", "9lives")
        t.wait_for("carol", r"^'9lives' is not a nickname: nicknames are 2 to 24 letters")
        t.type("carol", "carol")
        t.wait_for("carol", CONNECTED.format(nick="carol"))
        t.type("carol", "/quit")
        t.wait_for("carol", r"^EXITED 0$")


class BrokenPeerTests(ChatProgramCase):
    def test_a_peers_unreadable_message_is_said_as_theirs(self) -> None:
        t = self.tmux
        self.start_user("alice")
        t.wait_for("alice", CONNECTED.format(nick="alice"))
        (self.dir / "mallory.py").write_text(BROKEN_PEER)
        (self.dir / "mallory").mkdir()
        with open(self.dir / "mallory.log", "wb") as log:
            mallory = subprocess.Popen([sys.executable, str(self.dir / "mallory.py"), str(self.port),
                                        str(self.dir / "mallory" / "config")],
                                       env=_env(self.dir / "mallory"), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: mallory.poll() is None and mallory.kill())
        t.wait_for("alice", r"^\*\*\* mallory wants to talk")
        t.type("alice", "/accept mallory")
        t.wait_for("alice", r"^<mallory> hello from a broken client$")
        t.wait_for("alice", r"^\*\*\* mallory's client sent something unreadable \(a message that is not UTF-8")
        self.assertNotIn("did not deliver", t.screen("alice"))
        self.assertEqual(mallory.wait(WAIT), 0, (self.dir / "mallory.log").read_text())


class WordsTests(ChatProgramCase):
    console = True

    def test_kick_ban_and_the_peers_words(self) -> None:
        t = self.tmux
        self.pair()
        admin = self.operator()
        admin.type("kick('bob', 'spamming')\r")
        admin.expect("kicked bob")
        t.wait_for("bob", r"^\*\*\* The relay operator disconnected you: spamming\.$")
        t.wait_for("alice", r"^\*\*\* The conversation with bob ended without their goodbye: bob was "
                            r"disconnected by the relay; the last messages may")
        self.assertNotIn("withdrew", t.screen("alice"))
        self.assertNotIn("reconnecting", t.screen("bob"))  # a kick is not retried

        admin.type("ban('alice', 3600)\r")
        admin.expect("banned nick alice")
        t.wait_for("alice", r"^\*\*\* The relay has banned your nickname for another 60 minutes\.$")

    def test_lookalike_offline_and_no_early_calling(self) -> None:
        t = self.tmux
        self.start_user("alice")
        t.wait_for("alice", CONNECTED.format(nick="alice"))
        self.start_user("a1ice")
        t.wait_for("a1ice", r"^\*\*\* a1ice is too similar to alice, which belongs to someone else; "
                            r"choose another with --nick\.$")
        t.wait_for("a1ice", r"^EXITED 1$")

        t.type("alice", "/connect zed")
        t.wait_for("alice", r"^\*\*\* Nobody is registered as zed on this relay\.$")
        self.assertNotIn("Calling zed", t.screen("alice"))  # "Calling" only once the relay took the offer
