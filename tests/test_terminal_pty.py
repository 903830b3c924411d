"""The ``relaychat`` program in real pseudo-terminals, against a real relay.

A relay daemon runs as a subprocess (``python -m twisted relaychat`` from
this checkout, proof of work 0) and each user's ``relaychat`` runs in its
own tmux session, a real pty: keys go in with ``send-keys``, the screen comes
back with ``capture-pane``. Every wait polls with a deadline; tearDown kills
the tmux server and the processes whatever happened.

Also here: the few pure helpers of ``relaychat.chat.cli``.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from twisted.python import usage
from twisted.trial import unittest

from relaychat.chat import cli
from relaychat.crypto.keypair import Identity
from tests.daemon import Daemon

REPO = Path(__file__).resolve().parent.parent
WAIT = 30.0  # seconds any one thing may take before the test fails

# A third user who is a program, not a person: a terminal cannot send raw
# escape sequences (the input line drops control characters), so hostile
# text has to come from a peer that uses the library directly.
MALLORY = r'''
import sys
from twisted.internet import defer, task
import relaychat.client as api

NASTY = [
    "\x1b[2J\x1b[Hscreen cleared?",
    "innocent\n*** alice is VERIFIED",
    "\r*** bob is VERIFIED",
    "\u202eevil reversed",
    "\x1b]0;pwned title\x07 done",
]

@defer.inlineCallbacks
def main(reactor, port, config):
    identity, peers, seen = api.open_profile(config)
    client = yield api.connect(reactor, "tcp:127.0.0.1:" + port, identity, "mallory", peers, seen_mail=seen)
    conversation = yield client.call("alice")
    for text in NASTY:
        conversation.send(text)
    yield task.deferLater(reactor, 1.0, lambda: None)
    yield conversation.close()
    yield client.quit()

task.react(main, sys.argv[1:])
'''


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMUX", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        PYTHONPATH=str(REPO),
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
    )
    return env


def _poll(what: str, probe: Callable[[], str | None], describe: Callable[[], str], timeout: float = WAIT) -> str:
    """Call ``probe`` until it returns a string; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{describe()}")
        time.sleep(0.1)


class Tmux:
    """A private tmux server on its own socket, so tests never touch a user's."""

    def __init__(self) -> None:
        # A short directory: a UNIX socket path must fit in 108 bytes.
        self.directory = tempfile.mkdtemp(prefix="rc-tmux-")
        self.socket = os.path.join(self.directory, "socket")

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=WAIT)
        return result.stdout

    def start(self, name: str, command: str, env: dict[str, str]) -> None:
        settings = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        self.run("new-session", "-d", "-s", name, "-x", "120", "-y", "40", *settings, command)

    def screen(self, name: str) -> str:
        text = self.run("capture-pane", "-p", "-S", "-500", "-t", name)
        return "\n".join(line.rstrip() for line in text.splitlines())

    def type(self, name: str, text: str) -> None:
        self.run("send-keys", "-t", name, "-l", text)
        self.key(name, "Enter")

    def key(self, name: str, key: str) -> None:
        self.run("send-keys", "-t", name, key)

    def wait_for(self, name: str, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Wait until a line of ``name``'s screen matches ``pattern``."""
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def probe() -> str | None:
            match = regex.search(self.screen(name))
            if match is not None:
                found.append(match)
                return match.group(0)
            return None

        _poll(f"{pattern!r} on {name}'s screen", probe, lambda: self.screen(name), timeout)
        return found[0]

    def stop(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=WAIT)
        shutil.rmtree(self.directory, ignore_errors=True)


class TerminalProgramTests(unittest.TestCase):
    """Two people chat through a real relay, each in a real pseudo-terminal."""

    timeout = 240

    def setUp(self) -> None:
        if shutil.which("tmux") is None:
            raise unittest.SkipTest("tmux is not installed; this test drives relaychat in tmux pseudo-terminals")
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.helpers: list[subprocess.Popen[bytes]] = []
        config = self.dir / "relay.toml"
        config.write_text("[limits]\npow_bits = 0\n")
        self.relay = Daemon("--config", str(config), "--data-dir", str(self.dir / "relay-data"),
                            "--listen", "tcp:0:interface=127.0.0.1", cwd=str(self.dir), env=_env(self.dir))
        self.addCleanup(self.relay.stop)
        (self.relay.port,) = self.relay.start()
        self.tmux = Tmux()
        self.addCleanup(self.tmux.stop)
        self.addCleanup(self._kill_helpers)

    def _kill_helpers(self) -> None:
        for process in self.helpers:
            if process.poll() is None:
                process.kill()
            process.wait(10)

    def start_user(self, nick: str, *extra: str, server: str | None = None) -> Path:
        """Run ``relaychat`` for ``nick`` in its own tmux session; returns its home."""
        home = self.dir / nick
        home.mkdir()
        argv = [sys.executable, "-m", "relaychat.chat.cli",
                "--server", server or f"127.0.0.1:{self.relay.port}", "--nick", nick, *extra]
        # stty -g before and after: the program must give the terminal back as it found it.
        command = (
            f"stty -g > {shlex.quote(str(home / 'stty.before'))}; "
            f"{shlex.join(argv)}; echo \"EXITED $?\"; "
            f"stty -g > {shlex.quote(str(home / 'stty.after'))}; sleep 600"
        )
        self.tmux.start(nick, command, _env(home))
        return home

    def assert_exited_cleanly(self, nick: str, home: Path, status: int = 0) -> None:
        self.tmux.wait_for(nick, rf"^EXITED {status}$")
        after = home / "stty.after"
        _poll("stty after exit", lambda: "yes" if after.exists() and after.read_text() else None, lambda: "")
        self.assertEqual((home / "stty.before").read_text(), after.read_text(), "terminal modes not restored")
        self.assertNotIn("Traceback", self.tmux.screen(nick))
        log = home / "config" / "relaychat" / cli.LOG_FILE
        if log.exists():  # warnings and errors only: a clean run logs nothing
            self.assertEqual(log.read_text(), "")

    def mallory(self) -> subprocess.Popen[bytes]:
        script = self.dir / "mallory.py"
        script.write_text(MALLORY)
        home = self.dir / "mallory"
        home.mkdir()
        with open(self.dir / "mallory.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(script), str(self.relay.port), str(home / "config")],
                env=_env(home), stdout=log, stderr=subprocess.STDOUT,
            )
        self.helpers.append(process)
        return process

    def test_two_people_chat_verify_and_quit(self) -> None:
        t = self.tmux
        alice_home = self.start_user("alice")
        bob_home = self.start_user("bob")
        for nick in ("alice", "bob"):
            t.wait_for(nick, rf"^\*\*\* Connected to 127\.0\.0\.1:\d+ as {nick}\.$")
        self.assertNotIn("Nickname:", t.screen("alice"))  # --nick given: nothing asked

        t.type("alice", "/who")
        t.wait_for("alice", r"^\*\*\* Online \(2\): alice, bob$")

        # alice calls, bob accepts; both see the handshake and the trust state.
        t.type("alice", "/connect bob")
        t.wait_for("alice", r"^\*\*\* Calling bob \.\.\.")
        t.wait_for("bob", r"^\*\*\* alice wants to talk")
        t.type("bob", "/accept")
        for nick, peer in (("alice", "bob"), ("bob", "alice")):
            t.wait_for(nick, rf"^\*\*\* Handshake done: end-to-end encrypted conversation with {peer}\.$")
            t.wait_for(nick, r"^\*\*\* NOT VERIFIED: first contact")
        t.wait_for("alice", r"^\[bob\] >$")

        # Messages both ways; a half-typed line survives an incoming message.
        t.type("alice", "hello bob, grüße")
        t.wait_for("bob", r"^<alice> hello bob, grüße$")
        t.run("send-keys", "-t", "alice", "-l", "half typ")
        t.type("bob", "hi alice")
        t.wait_for("alice", r"^<bob> hi alice$")
        t.wait_for("alice", r"^\[bob\] > half typ$")
        t.run("send-keys", "-t", "alice", "-l", "ed")
        t.key("alice", "Enter")
        t.wait_for("bob", r"^<alice> half typed$")

        # A hostile peer's text is shown inert: escapes as \xNN, no forged status lines.
        mallory = self.mallory()
        t.wait_for("alice", r"^\*\*\* mallory wants to talk")
        t.type("alice", "/accept mallory")
        t.wait_for("alice", r"^\*\*\* mallory left the conversation\.$")
        self.assertEqual(mallory.wait(WAIT), 0, (self.dir / "mallory.log").read_text())
        screen = t.screen("alice")
        self.assertIn("<mallory> \\x1b[2J\\x1b[Hscreen cleared?", screen)
        self.assertIn("<mallory> innocent\n    *** alice is VERIFIED", screen)
        self.assertIn("<mallory> \\x0d*** bob is VERIFIED", screen)
        self.assertIn("<mallory> \\u202eevil reversed", screen)
        self.assertIn("<mallory> \\x1b]0;pwned title\\x07 done", screen)
        self.assertNotRegex(screen, r"(?m)^\*\*\* (alice|bob) is VERIFIED")
        self.assertIn("<bob> hi alice", screen)  # the screen was not cleared
        t.wait_for("alice", r"^\*\*\* Plain lines now go to bob\.$")

        # Both compare the safety number: the same 60 digits on both screens.
        numbers = {}
        for nick in ("alice", "bob"):
            t.type(nick, "/safety")
            numbers[nick] = t.wait_for(nick, r"^\*\*\*     ((?:\d{5} ){11}\d{5})$").group(1)
        self.assertEqual(numbers["alice"], numbers["bob"])

        # The shared-secret check, both typing the same secret.
        t.type("alice", "/verify the blue door")
        t.wait_for("bob", r"^\*\*\* alice asks you to check a shared secret")
        t.type("bob", "/verify the blue door")
        for nick, peer in (("alice", "bob"), ("bob", "alice")):
            t.wait_for(nick, rf"^\*\*\* VERIFIED: {peer} knows the same secret")
        t.wait_for("alice", r"^\[bob, verified\] >$")

        # bob leaves; alice is told, then leaves too. Both terminals come back intact.
        t.type("bob", "/quit")
        self.assert_exited_cleanly("bob", bob_home)
        t.wait_for("alice", r"^\*\*\* bob left the conversation\.$")
        t.wait_for("alice", r"^>$")
        t.type("alice", "/quit")
        self.assert_exited_cleanly("alice", alice_home)

    def first_conversation(self) -> tuple[Path, Path]:
        """alice and bob start, alice calls, bob accepts: their first contact. Their homes."""
        t = self.tmux
        alice_home = self.start_user("alice")
        bob_home = self.start_user("bob")
        for nick in ("alice", "bob"):
            t.wait_for(nick, rf"^\*\*\* Connected to .* as {nick}\.$")
        t.type("alice", "/connect bob")
        t.wait_for("bob", r"^\*\*\* alice wants to talk")
        t.type("bob", "/accept")
        t.wait_for("alice", r"^\*\*\* NOT VERIFIED: first contact, bob's key is pinned now\.")
        return alice_home, bob_home

    def restart_user(self, nick: str) -> Path:
        """End ``nick``'s pane and start the program again on the same profile."""
        self.tmux.run("kill-session", "-t", nick)
        earlier = self.dir / f"{nick}-first"
        shutil.move(str(self.dir / nick), str(earlier))
        return self.start_user(nick, "--config-dir", str(earlier / "config" / "relaychat"))

    def test_key_change_stops_until_trusted(self) -> None:
        t = self.tmux
        alice_home, bob_home = self.first_conversation()
        t.type("alice", "/close")
        t.wait_for("bob", r"^\*\*\* alice left the conversation\.$")

        # alice's pin for bob now names another key: as if the relay swapped keys.
        pins = alice_home / "config" / "relaychat" / "known_peers"
        other = base64.b64encode(Identity.generate().identity_public).decode()
        pins.write_text(re.sub(r"(?m)^(\S+ bob) \S+$", rf"\1 {other}", pins.read_text()))

        t.type("bob", "/connect alice")
        t.wait_for("alice", r"^!!! This is NOT the key you pinned for bob")
        t.type("alice", "/accept bob")
        t.wait_for("alice", r"^!!! WARNING: bob's identity key has CHANGED\. The conversation was stopped\.$")
        number = t.wait_for("alice", r"^!!!   safety number with the new key: ((?:\d{5} ){11}\d{5})$").group(1)
        t.type("alice", "are you there?")
        t.wait_for("alice", r"^\*\*\* You are not in a conversation\.")

        # After comparing the number (bob's screen shows it in /safety), alice trusts the key.
        t.type("bob", "/safety alice")
        self.assertEqual(t.wait_for("bob", r"^\*\*\*     ((?:\d{5} ){11}\d{5})$").group(1), number)
        t.type("alice", "/trust bob")
        t.wait_for("alice", r"^\*\*\* Pinned bob's new key ")
        t.type("alice", "/connect bob")
        # The second offer bob's screen shows (the first is still on it, further up).
        _poll("alice's second offer", lambda: "yes" if len(re.findall(
            r"(?m)^\*\*\* alice wants to talk", t.screen("bob"))) >= 2 else None, lambda: t.screen("bob"))
        t.type("bob", "/accept alice")
        t.wait_for("alice", r"^\*\*\* NOT VERIFIED: bob's key matches the one pinned earlier, but you never")
        for nick, home in (("alice", alice_home), ("bob", bob_home)):
            t.type(nick, "/quit")
            self.assert_exited_cleanly(nick, home)

    def test_offline_mail_and_ctrl_c(self) -> None:
        t = self.tmux
        bob_home = self.start_user("bob")
        t.wait_for("bob", r"^\*\*\* Connected to .* as bob\.$")
        t.key("bob", "C-c")
        self.assert_exited_cleanly("bob", bob_home)

        alice_home = self.start_user("alice")
        t.wait_for("alice", r"^\*\*\* Connected to .* as alice\.$")
        t.type("alice", "/connect bob")
        t.wait_for("alice", r"^\*\*\* bob is not online\. /mail bob <text> leaves them a sealed message\.$")
        t.type("alice", "/mail bob see you at 5")
        t.wait_for("alice", r"^\*\*\* Sealed mail for bob is stored on the relay")
        t.key("alice", "C-d")
        self.assert_exited_cleanly("alice", alice_home)

        bob_home = self.restart_user("bob")
        t.wait_for("bob", r"^\*\*\* Mail from alice, sent .*:$")
        t.wait_for("bob", r"^<alice> see you at 5$")
        t.type("bob", "/quit")
        self.assert_exited_cleanly("bob", bob_home)

        # bob's client sealed a read receipt; alice sees it at her next login.
        alice_home = self.restart_user("alice")
        t.wait_for("alice", r"^\*\*\* bob read your mail \u201csee you at 5\u201d \(sent .*\) at .*\.$")
        t.type("alice", "/quit")
        self.assert_exited_cleanly("alice", alice_home)

    def pid_of(self, nick: str) -> int:
        """The relaychat process in ``nick``'s pane (a child of the pane's shell)."""
        shell = self.tmux.run("display-message", "-p", "-t", nick, "#{pane_pid}").strip()
        out = subprocess.run(["ps", "--ppid", shell, "-o", "pid=,args="], capture_output=True, text=True).stdout
        (pid,) = [int(line.split()[0]) for line in out.splitlines() if "relaychat.chat.cli" in line]
        return pid

    def test_verified_contacts_and_receipts(self) -> None:
        t = self.tmux
        alice_home, bob_home = self.first_conversation()
        for nick in ("alice", "bob"):
            t.wait_for(nick, r"^\*\*\* First connection to 127\.0\.0\.1:\d+: its identity ")

        # Every message is marked delivered once bob's client confirms it.
        t.type("alice", "hello bob, this is the first message")
        t.wait_for("bob", r"^<alice> hello bob, this is the first message$")
        t.wait_for("alice", r"^\*\*\* delivered to bob: \u201chello bob, this is the first message\u201d$")

        # alice compares the safety number with bob, then says so.
        t.type("alice", "/safety")
        t.wait_for("alice", r"^\*\*\* If it is, type /verified bob")
        t.type("alice", "/verified")
        t.wait_for("alice", r"^\*\*\* Recorded: you compared the safety number with bob")
        t.wait_for("alice", r"^\[bob, verified\] >")
        t.type("alice", "/contacts")
        t.wait_for("alice", r"^\*\*\*   bob: VERIFIED by comparing the safety number \(.+\)$")
        t.wait_for("alice", r"^\*\*\*     key ([0-9a-f]{4} ){9}[0-9a-f]{4}; first seen .+, last seen .+$")
        t.type("bob", "/contacts")
        t.wait_for("bob", r"^\*\*\*   alice: not verified$")

        # It lasts: the next conversation with that key starts verified.
        t.type("alice", "/close")
        t.wait_for("bob", r"^\*\*\* alice left the conversation\.$")
        t.type("alice", "/connect bob")
        t.wait_for("bob", r"^\*\*\* alice wants to talk")
        t.type("bob", "/accept alice")
        t.wait_for("alice", r"^\*\*\* VERIFIED: bob's key is the one you verified by comparing the safety number")
        t.wait_for("bob", r"^\*\*\* NOT VERIFIED: alice's key matches the one pinned earlier")

        # Both type /verify at once; the check still succeeds on both sides.
        t.run("send-keys", "-t", "alice", "-l", "/verify the blue door")
        t.run("send-keys", "-t", "bob", "-l", "/verify the blue door")
        t.key("alice", "Enter")
        t.key("bob", "Enter")
        for nick, peer in (("alice", "bob"), ("bob", "alice")):
            t.wait_for(nick, rf"^\*\*\* VERIFIED: {peer} knows the same secret")
        t.wait_for("bob", r"^\[alice, verified\] >")

        # bob's program freezes: alice's last message is never confirmed, and she is told so.
        pid = self.pid_of("bob")
        os.kill(pid, signal.SIGSTOP)
        try:
            t.type("alice", "are you still there? the train leaves at nine")
            t.type("alice", "/close")
            t.wait_for("alice", r"^\*\*\* bob never confirmed 1 of your messages; they may not have arrived:$")
            t.wait_for("alice", r"^\*\*\*     \u201care you still there\? the train leaves at\u2026\u201d$")
        finally:
            os.kill(pid, signal.SIGCONT)
        for nick, home in (("alice", alice_home), ("bob", bob_home)):
            t.type(nick, "/quit")
            self.assert_exited_cleanly(nick, home)

    def test_a_relay_with_a_new_identity_is_refused_until_trusted(self) -> None:
        """The relay's data directory is replaced: same address, new server_id."""
        t = self.tmux
        port = self.relay.port
        home = self.start_user("alice")
        t.wait_for("alice", r"^\*\*\* First connection to 127\.0\.0\.1:\d+: its identity ")
        t.type("alice", "/quit")
        self.assert_exited_cleanly("alice", home)
        self.relay.stop()
        config = self.dir / "relay.toml"
        rebuilt = Daemon("--config", str(config), "--data-dir", str(self.dir / "relay-data-new"),
                         "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=str(self.dir), env=_env(self.dir))
        self.addCleanup(rebuilt.stop)
        rebuilt.start()
        home = self.restart_user("alice")
        t.wait_for("alice", rf"^!!! WARNING: the relay at 127\.0\.0\.1:{port} has CHANGED its identity\. Not registering\.$")
        t.wait_for("alice", r"^!!!   now:        ([0-9a-f]{4} ){9}[0-9a-f]{4}$")
        self.assertNotIn("Connected to", t.screen("alice"))
        t.type("alice", "/who")
        t.wait_for("alice", r"^\*\*\* Not connected to the relay\.")
        t.type("alice", "/trust-relay")
        t.wait_for("alice", r"^\*\*\* Accepting the new identity ")
        t.wait_for("alice", r"^\*\*\* Connected to .* as alice\.$")
        t.type("alice", "/quit")
        self.assert_exited_cleanly("alice", home)

    def test_errors_are_sentences(self) -> None:
        t = self.tmux
        # Nothing listens on the relay's port once it is stopped.
        port = self.relay.port
        self.relay.stop()
        home = self.start_user("alice", server=f"127.0.0.1:{port}")
        t.wait_for("alice", rf"^\*\*\* Could not connect to 127\.0\.0\.1:{port}: the connection was refused\.")
        self.assert_exited_cleanly("alice", home, status=1)


class ServerSpecTests(unittest.TestCase):
    def test_host_defaults_port(self) -> None:
        self.assertEqual(cli.parse_server("localhost"), cli.Server("localhost:7733", "localhost", 7733))

    def test_host_and_port(self) -> None:
        self.assertEqual(cli.parse_server("relay.example:7000").label, "relay.example:7000")
        self.assertEqual(cli.parse_server("[::1]:7000"), cli.Server("[::1]:7000", "::1", 7000))

    def test_endpoint_string(self) -> None:
        server = cli.parse_server("tcp:host=relay.example:port=7733")
        self.assertEqual(server.endpoint_string, "tcp:host=relay.example:port=7733")

    def test_tls_spec(self) -> None:
        spec = "tls:relay.example:7734:fingerprint=sha256:" + "ab" * 32
        self.assertEqual(cli.parse_server(spec), cli.Server(spec, endpoint_string=spec))
        e = self.assertRaises(usage.UsageError, cli.parse_server, "tls:relay.example:7734:fingerprint=sha256:zz")
        self.assertIn("is not a server", str(e))

    def test_nonsense_refused_in_words(self) -> None:
        e = self.assertRaises(usage.UsageError, cli.parse_server, "tcp:what:is:this")
        self.assertIn("is not a server", str(e))
        self.assertRaises(usage.UsageError, cli.parse_server, "host:99999")

    def test_bad_nick_option(self) -> None:
        options = cli.Options()
        e = self.assertRaises(usage.UsageError, options.parseOptions, ["--nick", "9lives"])
        self.assertIn("is not a nickname", str(e))


class QuestionTests(unittest.TestCase):
    def test_remembered_nick_not_asked(self) -> None:
        directory = Path(self.mktemp())
        cli.remember_nick(directory, "alice")
        self.assertEqual(cli.ask_nick(directory, ask=lambda prompt: self.fail("asked")), "alice")
        self.assertEqual(os.stat(directory / cli.NICK_FILE).st_mode & 0o777, 0o600)

    def test_nick_asked_until_valid(self) -> None:
        answers = iter(["9x", "b@d", "bob"])
        self.assertEqual(cli.ask_nick(Path(self.mktemp()), ask=lambda prompt: next(answers)), "bob")

    def test_no_terminal_is_a_sentence(self) -> None:
        result = subprocess.run([sys.executable, "-m", "relaychat.chat.cli", "--nick", "bob"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                env=_env(Path(self.mktemp())), timeout=WAIT, check=False)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.strip(),
                         "relaychat: the chat screen needs a terminal (standard input and output must be a TTY).")

    def test_passphrase_flow(self) -> None:
        """Created with --passphrase; later asked for it, wrong answers said in words."""
        self.patch(cli.keyfiles, "SCRYPT_N", 2**10)  # speed; the file records N
        directory = Path(self.mktemp())
        told: list[str] = []

        def answers(*texts: str) -> Callable[[str], str]:
            it = iter(texts)
            return lambda prompt: next(it)

        created = cli.open_profile(directory, True, ask=answers("pw", "different", "pw", "pw"), tell=told.append)
        assert created is not None
        self.assertEqual(told[0], "The two passphrases differ.")
        self.assertTrue(told[1].startswith("Created your identity key in"))
        told.clear()
        self.assertIsNone(cli.open_profile(directory, False, ask=answers("no", "nope", "never"), tell=told.append))
        self.assertEqual(told, ["That passphrase does not unlock the key."] * 3 + ["Could not unlock your identity key."])
        opened = cli.open_profile(directory, False, ask=answers("wrong", "pw"), tell=told.append)
        assert opened is not None
        self.assertEqual(opened[0].identity_public, created[0].identity_public)

    def test_unencrypted_key_not_asked(self) -> None:
        directory = Path(self.mktemp())
        first = cli.open_profile(directory, False, ask=lambda prompt: self.fail("asked"), tell=lambda text: None)
        again = cli.open_profile(directory, False, ask=lambda prompt: self.fail("asked"), tell=lambda text: None)
        assert first is not None and again is not None
        self.assertEqual(first[0].identity_public, again[0].identity_public)
        self.assertEqual(os.stat(directory / "identity.pem").st_mode & 0o777, 0o600)

    def test_rotate_static_key(self) -> None:
        directory = Path(self.mktemp())
        told: list[str] = []
        first = cli.open_profile(directory, False, ask=lambda prompt: self.fail("asked"), tell=told.append)
        rotated = cli.open_profile(directory, False, ask=lambda prompt: self.fail("asked"), tell=told.append,
                                   rotate=True)
        again = cli.open_profile(directory, False, ask=lambda prompt: self.fail("asked"), tell=told.append)
        assert first is not None and rotated is not None and again is not None
        self.assertEqual(rotated[0].identity_public, first[0].identity_public)
        self.assertNotEqual(rotated[0].static_public, first[0].static_public)
        self.assertEqual(again[0].static_public, rotated[0].static_public)
        self.assertIsNotNone(again[0].previous_static_private)
        self.assertTrue(any(text.startswith("Your static key was replaced") for text in told), told)
