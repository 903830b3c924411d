"""Running the real daemon (``twistd -n relaychat``) as a process, for integration tests.

The daemon is started from this checkout (PYTHONPATH points at it, which is
also how twistd finds ``twisted/plugins/relaychat_plugin.py``), logs to
stdout, and every listener's port is read from its log line, so tests can
listen on port 0 and never race for a free port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from twisted.logger import formatEvent

from relaychat.crypto.identity import solve_pow
from relaychat.crypto.keypair import Identity
from relaychat.wire.codec import b64decode, b64encode

ROOT = Path(__file__).resolve().parents[1]
TWISTD = "from twisted.scripts.twistd import run; run()"  # twistd of this interpreter
_LISTENING = re.compile(r"relaychat: (\w+) listener '([^']*)' listening on ([\d.:a-f]+):(\d+)")


class Daemon:
    """``twistd -n relaychat ARGS`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, *args: str, cwd: str, env: Optional[dict[str, str]] = None,
                 twistd_options: tuple[str, ...] = (), preamble: str = "",
                 prefix: Sequence[str] = ()) -> None:
        self.args = args
        self.preamble = preamble  # Python run before twistd, in the same process
        self.twistd_options = twistd_options
        self.prefix = list(prefix)  # a command that runs the daemon (see private_mount)
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.output: list[str] = []
        self.process: Optional[subprocess.Popen[str]] = None
        self._reader: Optional[threading.Thread] = None

    def start(self, listeners: int = 1, timeout: float = 20.0) -> list[int]:
        """Start and wait until ``listeners`` listeners log their port; return the ports."""
        self.output = []
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-c", self.preamble + TWISTD, "--nodaemon", "--pidfile=", "--logfile=-",
             *self.twistd_options, "relaychat", *self.args],
            cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.ports()
            if len(ports) >= listeners:
                return ports
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("daemon did not start:\n" + self.log())

    def ports(self) -> list[int]:
        return [int(m.group(4)) for line in list(self.output) for m in [_LISTENING.search(_text(line))] if m]

    def log(self) -> str:
        return "".join(self.output)

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def terminate(self) -> None:
        """Send SIGTERM: the daemon drains (a second one stops it at once)."""
        assert self.process is not None
        self._wait_for_sigterm_handler()
        self.process.send_signal(signal.SIGTERM)

    def _wait_for_sigterm_handler(self, timeout: float = 10.0) -> None:
        """The daemon logs its listeners before its reactor runs, and the
        drain's SIGTERM handler is installed only once it does: a SIGTERM in
        between would kill it with the signal's default action (status -15)
        instead of draining. So wait until the process catches SIGTERM
        (``SigCgt`` in /proc), as a supervisor that waits for readiness does."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                caught = next(int(line.split()[1], 16) for line in status.read_text().splitlines()
                              if line.startswith("SigCgt:"))
            except (OSError, StopIteration):
                return  # no /proc: send it anyway
            if caught & (1 << (signal.SIGTERM - 1)):
                return
            time.sleep(0.02)

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM; if the drain takes longer than ``grace``, SIGTERM again; kill as a last resort."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        for _ in range(2):
            self.terminate()
            try:
                return self.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.process.kill()
        return self.wait(5)


def _text(line: str) -> str:
    """A log line as text, also when it is a JSON record (``--logger relaychat.logs.json_stdout``)."""
    if not line.startswith("\x1e"):
        return line
    try:
        return formatEvent(json.loads(line[1:]))
    except ValueError:
        return line


class LineSocket:
    """A blocking line client with timeouts: enough to drive the relay from a test."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.timeout = timeout

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def read_line(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no line; have {self.buffer[:200]!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; have {self.buffer[:200]!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8")

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read_line()

    def register(self, nick: str, identity: Identity) -> str:
        return register(self.ask, nick, identity)

    def close(self) -> None:
        self.sock.close()


def register(ask: Callable[[str], str], nick: str, identity: Identity) -> str:
    """HELLO, REGISTER and PROVE (solving any proof of work) over any line
    channel; returns the PROVE reply."""
    hello = ask("HELLO 1").split(" ")
    assert hello[:3] == ["OK", "HELLO", "1"], hello
    server_id = b64decode(hello[3])
    reply = ask(
        f"REGISTER {nick} {b64encode(identity.identity_public)} "
        f"{b64encode(identity.static_public)} {b64encode(identity.static_sig)}"
    ).split(" ")
    assert reply[:2] == ["OK", "REGISTER"], reply
    challenge, bits = b64decode(reply[3]), int(reply[4])
    prove = f"PROVE {b64encode(identity.sign_registration(server_id, challenge, reply[2]))}"
    if bits:
        prove += " " + b64encode(solve_pow(challenge, bits))
    return ask(prove)


def open_session(caller: LineSocket, callee: LineSocket, caller_nick: str, callee_nick: str) -> str:
    """OFFER, OFFERED, ACCEPT and ACCEPTED between two registered connections
    (on one relay or on two nodes); returns the session id."""
    reply = caller.ask(f"OFFER {callee_nick}").split(" ")
    assert reply[:2] == ["OK", "OFFER"], reply
    sid = reply[2]
    offered = callee.read_line()
    assert offered.startswith(f"OFFERED {sid} {caller_nick} "), offered
    accepted = callee.ask(f"ACCEPT {sid}")
    assert accepted == f"OK ACCEPT {sid}", accepted
    told = caller.read_line()
    assert told == f"ACCEPTED {sid}", told
    return sid


def private_mount(directory: str, setup: str) -> list[str]:
    """A command prefix running the daemon in its own user and mount namespaces
    (``unshare -rm``), after the shell commands ``setup`` have run there with
    ``$D`` set to ``directory``, e.g. ``mount -t tmpfs -o size=1m tmpfs "$D"``.

    The mount is seen by the daemon alone and vanishes with it: a small, full
    or read-only file system for a test, without root and without cleaning
    up. The daemon keeps the process id (``unshare`` and ``sh`` exec), so
    ``/proc/<pid>/root`` + ``directory`` reaches its view of the mount.
    """
    return ["unshare", "-rm", "sh", "-ec", f'D="$0"; {setup}; exec "$@"', directory]


def private_mounts_work() -> Optional[str]:
    """None if :func:`private_mount` works here, else why not (for skipTest)."""
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-ec", 'mount -t tmpfs -o size=64k tmpfs /mnt; touch /mnt/x'],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare is not usable: {e}"
    if done.returncode != 0:
        return f"no private tmpfs mounts here (unshare -rm): {done.stderr.strip()}"
    return None


def session_pair(port: int, cleanup: Callable[..., object]) -> tuple[LineSocket, LineSocket, str]:
    """alice and bob registered on a relay at ``port``, with an open session; returns its sid.

    ``cleanup`` is the test's ``addCleanup``, which closes both sockets.
    """
    from tests.support import identity

    alice, bob = LineSocket(port), LineSocket(port)
    cleanup(alice.close)
    cleanup(bob.close)
    alice.register("alice", identity("alice"))
    bob.register("bob", identity("bob"))
    return alice, bob, open_session(alice, bob, "alice", "bob")
