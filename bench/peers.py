"""The servers under test: relaychat and its baselines, as processes on loopback.

Each is started on a free loopback port, watched through ``/proc`` (RSS and
CPU time), and stopped with SIGTERM (SIGKILL after a grace period). The
baselines that are not part of this repository are installed here, once:

* ``magic-wormhole-transit-relay`` with pip, into ``bench/.venv`` so its
  dependencies cannot disturb the environment relaychat runs in;
* ``ngircd`` with apt-get (as root), run in the foreground on its own
  config file, never as the Debian service.

If a peer cannot be installed, :func:`install_transit` / :func:`install_ngircd`
say why and the benchmark reports that peer's figures as unavailable.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_LISTENING = re.compile(r"relaychat: (\w+) listener '([^']*)' listening on ([\d.:a-f]+):(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def raise_nofile(pid: int) -> None:
    """Let process ``pid`` open as many files as the hard limit allows (10,000 clients need it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    except OSError:
        pass


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep process ``pid`` on ``cpus`` (None: anywhere)."""
    if cpus:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load CPUs): the server under test on one core, the load on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


class Server:
    """One server process; ``log`` is where its output goes."""

    name = "server"
    cpus: set[int] | None = None  # set by the caller: the server's CPU affinity

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=str(self.workdir), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        raise_nofile(self.process.pid)
        pin(self.process.pid, self.cpus)

    def _wait_port(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def checkout_env(root: Path | None = None) -> dict[str, str]:
    """Run code from this checkout (not an installed copy), as tests/daemon.py does."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(root or ROOT) + (os.pathsep + path if path else ""))


class Relaychat(Server):
    """``twistd -n relaychat --config <bench config> --data-dir <tmp>``."""

    name = "relaychat"

    def __init__(self, workdir: Path, tls: dict[str, str] | None = None, websocket: bool = False) -> None:
        super().__init__(workdir)
        self.tls = tls
        self.websocket = websocket  # a ws:// listener, and with tls a wss:// one too
        self.tls_port = 0
        self.ws_port = 0
        self.wss_port = 0
        self.profile: str | None = None  # a cProfile stats file, written when the daemon stops
        self.root: Path | None = None  # run relaychat from this tree instead (before/after comparisons)

    def config_text(self) -> str:
        text = (BENCH / "relaychat-bench.toml").read_text()
        endpoint = 'endpoint = "tcp:0:interface=127.0.0.1:backlog=1024"\n'
        options = "".join(f'{key} = "{value}"\n' for key, value in (self.tls or {}).items())
        if self.tls:
            text += f'\n[[listener]]\nkind = "tls"\n{endpoint}{options}'
        if self.websocket:
            text += f'\n[[listener]]\nkind = "websocket"\n{endpoint}'
            if self.tls:
                text += f'\n[[listener]]\nkind = "websocket"\n{endpoint}{options}'
        return text

    def start(self) -> Relaychat:
        data = self.workdir / "relaychat-data"
        shutil.rmtree(data, ignore_errors=True)
        config = self.workdir / "relaychat.toml"
        config.write_text(self.config_text())
        self.log.write_bytes(b"")
        twistd = "from twisted.scripts.twistd import run; run()"
        profile = ["--profile", self.profile, "--profiler", "cprofile", "--savestats"] if self.profile else []
        self._spawn([sys.executable, "-c", twistd, "--nodaemon", "--pidfile=", "--logfile=-", *profile,
                     "relaychat", "--config", str(config), "--data-dir", str(data)], env=checkout_env(self.root))
        deadline = time.monotonic() + 30
        want = 1 + bool(self.tls) + (1 + bool(self.tls)) * self.websocket
        while time.monotonic() < deadline:
            found = [(m.group(1), int(m.group(4))) for m in _LISTENING.finditer(self.log.read_text(errors="replace"))]
            if len(found) >= want:
                ports = dict(found)
                self.port = ports.get("tcp", 0)
                self.tls_port = ports.get("tls", 0)
                websockets = [port for kind, port in found if kind == "websocket"]  # in the configured order
                self.ws_port, self.wss_port = (websockets + [0, 0])[:2]
                return self
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"relaychat did not start:\n{self.tail()}")


class Bare(Server):
    """``bench/bare_relay.py``: a LineReceiver writing once per line."""

    name = "bare"

    def start(self) -> Bare:
        self.port = free_port()
        self._spawn([sys.executable, str(BENCH / "bare_relay.py"), str(self.port)], env=checkout_env())
        self._wait_port()
        return self


class Transit(Server):
    """magic-wormhole's transit relay under its own twistd, from ``bench/.venv``."""

    name = "transit"

    def start(self) -> Transit:
        self.port = free_port()
        twistd = str(VENV / "bin" / "twistd")
        self._spawn([twistd, "--nodaemon", "--pidfile=", "--logfile=-", "transitrelay",
                     f"--port=tcp:{self.port}:interface=127.0.0.1"])
        self._wait_port()
        return self


class Ngircd(Server):
    """ngircd in the foreground (``-n``) on ``bench/ngircd.conf`` with its port and paths filled in."""

    name = "ngircd"

    def start(self) -> Ngircd:
        self.port = free_port()
        text = (BENCH / "ngircd.conf").read_text()
        text = re.sub(r"(?m)^(\s*Ports\s*=).*$", rf"\g<1> {self.port}", text)
        text = re.sub(r"(?m)^(\s*PidFile\s*=).*$", rf"\g<1> {self.workdir / 'ngircd.pid'}", text)
        config = self.workdir / "ngircd.conf"
        config.write_text(text)
        self._spawn([ngircd_binary() or "ngircd", "--nodaemon", "--config", str(config)])
        self._wait_port()
        return self


class OpensslServer(Server):
    """``openssl s_server -www`` on the same certificate: the TLS handshake baseline."""

    name = "openssl"

    def __init__(self, workdir: Path, cert: str, key: str) -> None:
        super().__init__(workdir)
        self.cert, self.key = cert, key

    def start(self) -> OpensslServer:
        self.port = free_port()
        self._spawn(["openssl", "s_server", "-quiet", "-www", "-tls1_3", "-accept", f"127.0.0.1:{self.port}",
                     "-cert", self.cert, "-key", self.key])
        self._wait_port()
        return self


# == installing the baselines ====================================================


def ngircd_binary() -> str | None:
    return shutil.which("ngircd") or next((p for p in ("/usr/sbin/ngircd",) if os.path.exists(p)), None)


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{' '.join(argv[:3])}: {e}"
    output = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, "\n".join(output[-5:])


def install_transit(say: callable) -> str | None:  # type: ignore[valid-type]
    """Make sure bench/.venv has the transit relay; None if ready, else the reason."""
    twistd = VENV / "bin" / "twistd"
    probe = [str(VENV / "bin" / "python"), "-c", "import wormhole_transit_relay"]
    if twistd.exists() and _run(probe, 60)[0]:
        return None
    say("installing magic-wormhole-transit-relay into bench/.venv (pip) ...")
    if not (VENV / "bin" / "python").exists():
        ok, out = _run([sys.executable, "-m", "venv", str(VENV)], 300)
        if not ok:
            return f"cannot create bench/.venv: {out}"
    ok, out = _run([str(VENV / "bin" / "pip"), "install", "-q", "magic-wormhole-transit-relay"], 600)
    if not ok:
        return f"pip install magic-wormhole-transit-relay failed: {out}"
    if not _run(probe, 60)[0]:
        return "magic-wormhole-transit-relay installed but does not import"
    return None


def install_ngircd(say: callable) -> str | None:  # type: ignore[valid-type]
    """Make sure ngircd is installed (apt-get, as root); None if ready, else the reason."""
    if ngircd_binary():
        return None
    if os.geteuid() != 0:
        return "ngircd is not installed and installing it needs root (apt-get install ngircd)"
    if not shutil.which("apt-get"):
        return "ngircd is not installed and there is no apt-get here"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say("installing ngircd (apt-get update; apt-get install -y ngircd) ...")
    ok, out = _run(["apt-get", "update", "-qq"], 600, env)
    if not ok:
        return f"apt-get update failed: {out}"
    ok, out = _run(["apt-get", "install", "-y", "-qq", "ngircd"], 600, env)
    if not ok:
        return f"apt-get install ngircd failed: {out}"
    # Debian may start its own ngircd service; we never use it: stop it if it runs.
    _run(["service", "ngircd", "stop"], 60)
    if not ngircd_binary():
        return "apt-get installed ngircd but there is no ngircd binary"
    return None
