#!/usr/bin/env python3
"""Cluster benchmarks: cross-node against same-node in one run, over a real redis-server.

    python bench/cluster.py [--quick] [--out bench/results/cluster.json]

Starts a redis-server (its own port and directory) and two ``twistd
relaychat`` nodes a and b (then p1 and p2 for the shared port), and
measures, with rounds interleaved so the figures share the machine's noise:

- frames/s of one session, 100-byte and 16-KiB payloads, both users on node
  a (same-node) and one on a, one on b (cross-node); ratio cross/same
  (targets: >= 0.5 small, >= 0.7 16 KiB);
- session set-ups (OFFER, OFFERED, ACCEPT, ACCEPTED, CLOSE, CLOSED) per
  second, sequential, same-node and cross-node;
- registrations/s from 4 threads against one process, and against two
  processes sharing one port (reported, not a target: this machine's
  cores are shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from relaychat.crypto.keypair import Identity  # noqa: E402
from relaychat.wire.codec import b64encode  # noqa: E402
from tests.daemon import Daemon, LineSocket  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

SMALL, BULK = 100, 16384  # payload bytes of a small and of a bulk frame (base64 in the FRAME line)
TARGETS = {"small": 0.5, "bulk": 0.7}  # cross-node / same-node frames per second
LOAD = "load"  # the Meter's name for this process (the clients), kept out of the relay's total


class Meter:
    """CPU seconds (user + system, from /proc/PID/stat) of each process taking part."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = (int(fields[11]) + int(fields[12])) / self.tick
        return out

    def spent(self, before: dict[str, float]) -> dict[str, float]:
        now = self.cpu()
        return {name: now[name] - before.get(name, 0.0) for name in now}


RELAY_FROM = ""  # --relaychat-from: run the nodes from another source tree (before/after figures)


def node(home: Path, name: str, redis: RedisServer, endpoint: str = "tcp:0:interface=127.0.0.1",
         reuse: bool = False, profile: str = "") -> Daemon:
    config = home / f"{name}.toml"
    config.write_text(
        f'[relay]\ndata_dir = "{home / name}"\n'
        f'[[listener]]\nkind = "tcp"\nendpoint = "{endpoint}"\n' + ("reuse_port = true\n" if reuse else "")
        + '[limits]\npow_bits = 0\nlines_per_second = 1000000.0\nline_burst = 1000000\n'
        + '[nicknames]\nregistrations_per_address_per_hour = 1000000\nmax_nicknames = 1000000\n'
        f'[cluster]\nredis = "{redis.endpoint}"\nnode = "{name}"\n'
    )
    options = ("--profile", str(Path(profile) / f"{name}.pstats"), "--profiler", "cprofile", "--savestats") if profile else ()
    env = {"PYTHONPATH": RELAY_FROM} if RELAY_FROM else None
    daemon = Daemon("--config", str(config), cwd=str(home), twistd_options=options, env=env)
    daemon.start()
    deadline = time.monotonic() + 20
    while "joined through" not in daemon.log():
        if time.monotonic() > deadline:
            raise RuntimeError(daemon.log())
        time.sleep(0.05)
    return daemon


def registered(port: int, nick: str) -> LineSocket:
    s = LineSocket(port, timeout=60)
    reply = s.register(nick, Identity.generate())
    assert reply.startswith("OK PROVE"), reply
    return s


def session(a: LineSocket, b: LineSocket, b_nick: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        reply = a.ask(f"OFFER {b_nick}")
        if reply.startswith("OK OFFER"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(reply)
        time.sleep(0.05)  # presence not seen yet
    sid = reply.split(" ")[2]
    assert b.read_line().startswith("OFFERED")
    assert b.ask(f"ACCEPT {sid}") == f"OK ACCEPT {sid}"
    assert a.read_line() == f"ACCEPTED {sid}"
    return sid


def frame_line(sid: str, size: int) -> bytes:
    return f"FRAME {sid} {b64encode(os.urandom(size))}\n".encode()


def frames_per_second(a: LineSocket, b: LineSocket, sid: str, size: int, count: int) -> float:
    line = frame_line(sid, size)
    total = len(line) * count
    done = threading.Event()

    def read() -> None:
        got = 0
        sock = b.sock
        pending = len(b.buffer)
        got += pending
        b.buffer = b""
        while got < total:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        done.set()

    reader = threading.Thread(target=read)
    started = time.perf_counter()
    reader.start()
    chunk = line * 64
    for _ in range(count // 64):
        a.sock.sendall(chunk)
    a.sock.sendall(line * (count % 64))
    reader.join(120)
    elapsed = time.perf_counter() - started
    if not done.is_set():
        raise RuntimeError("frames did not all arrive")
    return count / elapsed


def setups_per_second(a: LineSocket, b: LineSocket, b_nick: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        sid = session(a, b, b_nick)
        assert a.ask(f"CLOSE {sid}") == f"OK CLOSE {sid}"
        assert b.read_line() == f"CLOSED {sid} closed"
    return count / (time.perf_counter() - started)


def registrations_per_second(port: int, threads: int, each: int) -> float:
    def work(i: int) -> None:
        for j in range(each):
            registered(port, f"r{i}x{j}x{os.getpid() % 1000}{int(time.time() * 1000) % 100000}").close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * each / (time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def status(ratio: float, target: float | None) -> str:
    if target is None:
        return "info"
    return "PASS" if ratio >= target else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", default="small,bulk,setup,port", help="sections: small,bulk,setup,port")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per figure (default 5, --quick 2)")
    parser.add_argument("--profile", default="", metavar="DIR",
                        help="run nodes a and b under cProfile (twistd --profile); stats into DIR/a.pstats, b.pstats")
    parser.add_argument("--relaychat-from", default="", metavar="DIR",
                        help="run the nodes from another source tree (e.g. main, for before/after figures)")
    args = parser.parse_args()
    global RELAY_FROM
    RELAY_FROM = str(Path(args.relaychat_from).resolve()) if args.relaychat_from else ""
    sections = set(args.only.split(","))
    rounds, small, bulk, setups, regs = (2, 20000, 1000, 100, 10) if args.quick else (5, 100000, 4000, 300, 40)
    rounds = args.rounds or rounds
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        args.profile = str(Path(args.profile).resolve())
    home = Path(tempfile.mkdtemp(prefix="relaychat-cluster-bench-"))
    redis = RedisServer(str(home / "redis")).start()
    meter = Meter()
    assert redis.process is not None
    meter.pids["redis"] = redis.process.pid
    meter.pids[LOAD] = os.getpid()  # this process: the clients (sender and reader threads)
    daemons: list[Daemon] = []
    figures: dict[str, list[float]] = {}
    cpu: dict[str, dict[str, float]] = {}  # figure -> process -> CPU seconds over every round
    volume: dict[str, float] = {}  # figure -> MB relayed over every round
    results: dict[str, Any] = {}

    wall: dict[str, float] = {}  # figure -> seconds over every round

    def measure(key: str, run: Any, megabytes: float = 0.0) -> None:
        before = meter.cpu()
        started = time.perf_counter()
        figures.setdefault(key, []).append(run())
        wall[key] = wall.get(key, 0.0) + time.perf_counter() - started
        for name, seconds in meter.spent(before).items():
            cpu.setdefault(key, {}).setdefault(name, 0.0)
            cpu[key][name] += seconds
        volume[key] = volume.get(key, 0.0) + megabytes

    try:
        daemons += [node(home, "a", redis, profile=args.profile), node(home, "b", redis, profile=args.profile)]
        for name, daemon in zip("ab", daemons):
            assert daemon.process is not None
            meter.pids[name] = daemon.process.pid
        pa, pb = daemons[0].ports()[0], daemons[1].ports()[0]
        alice, bob_same, bob_cross = registered(pa, "alice"), registered(pa, "bobsame"), registered(pb, "bobcross")
        same = session(alice, bob_same, "bobsame")
        cross = session(alice, bob_cross, "bobcross")
        for _ in range(rounds):
            for size, count, kind in ((SMALL, small, "small"), (BULK, bulk, "bulk")):
                if kind not in sections:
                    continue
                megabytes = len(frame_line(same, size)) * count / 1e6
                measure(f"{kind}_same", lambda: frames_per_second(alice, bob_same, same, size, count), megabytes)
                measure(f"{kind}_cross", lambda: frames_per_second(alice, bob_cross, cross, size, count), megabytes)
        if "setup" in sections:
            # Set-ups need fresh pairs: the sessions above stay open.
            s_a, s_b, s_c = registered(pa, "setupa"), registered(pa, "setupb"), registered(pb, "setupc")
            for _ in range(rounds):
                measure("setup_same", lambda: setups_per_second(s_a, s_b, "setupb", setups))
                measure("setup_cross", lambda: setups_per_second(s_a, s_c, "setupc", setups))
        if "port" in sections:
            # One port: one process, then two sharing it (SO_REUSEPORT).
            port = free_port()
            shared = [node(home, "p1", redis, f"tcp:{port}:interface=127.0.0.1", reuse=True)]
            daemons += shared
            measure("port_one", lambda: registrations_per_second(port, 4, regs))
            shared.append(node(home, "p2", redis, f"tcp:{port}:interface=127.0.0.1", reuse=True))
            daemons.append(shared[-1])
            measure("port_two", lambda: registrations_per_second(port, 4, regs))
    finally:
        for daemon in daemons:
            daemon.stop()
        redis.stop()
    results["raw"] = figures
    rows = []
    for figure, cross_key, same_key, unit, target in (
            ("small frames (100 B), frames/s", "small_cross", "small_same", "/s", TARGETS["small"]),
            ("16-KiB frames, frames/s", "bulk_cross", "bulk_same", "/s", TARGETS["bulk"]),
            ("session set-ups/s (sequential)", "setup_cross", "setup_same", "/s", None),
            ("registrations/s: 2 processes on 1 port vs 1", "port_two", "port_one", "/s", None)):
        if cross_key not in figures:
            continue
        ratios = [c / s for c, s in zip(figures[cross_key], figures[same_key])]
        ratio = median(ratios)
        rows.append((figure, f"{median(figures[cross_key]):,.0f}", f"{median(figures[same_key]):,.0f}",
                     f"{ratio:.3f}", f">= {target}" if target is not None else "reported", status(ratio, target)))
        results[cross_key], results[same_key] = median(figures[cross_key]), median(figures[same_key])
        results["ratio_" + cross_key.split("_")[0]] = round(ratio, 3)
    header = ("figure", "cross", "same", "ratio", "target", "status")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print("\nrelay CPU, milliseconds per MB relayed (over every round; a, b: nodes, redis: redis-server):")
    for kind in ("small", "bulk"):
        for where in ("same", "cross"):
            key = f"{kind}_{where}"
            if key in cpu and volume.get(key):
                per = {name: 1000 * seconds / volume[key] for name, seconds in sorted(cpu[key].items())
                       if name != LOAD}
                load = 1000 * cpu[key].get(LOAD, 0.0) / volume[key]
                busy = sum(cpu[key].values()) / wall[key]
                results[f"cpu_ms_per_mb_{key}"] = {name: round(v, 2) for name, v in per.items()}
                results[f"load_ms_per_mb_{key}"], results[f"cores_busy_{key}"] = round(load, 2), round(busy, 2)
                print(f"  {key:<12} " + "  ".join(f"{name} {v:6.2f}" for name, v in per.items())
                      + f"  total {sum(per.values()):6.2f}   (load {load:4.2f}; cores busy {busy:4.2f})")
    print(f"\n  * medians of {rounds} interleaved rounds; a ratio is the median of the per-round ratios cross / same")
    print("  * load: this process's own CPU per MB (the clients); cores busy: CPU of nodes, Redis and load"
          " per second of those rounds")
    print(f"  * load average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores shared by the load, both nodes and Redis)")
    if args.profile:
        print(f"  * cProfile stats of nodes a and b in {args.profile}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
