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


def node(home: Path, name: str, redis: RedisServer, endpoint: str = "tcp:0:interface=127.0.0.1",
         reuse: bool = False) -> Daemon:
    config = home / f"{name}.toml"
    config.write_text(
        f'[relay]\ndata_dir = "{home / name}"\n'
        f'[[listener]]\nkind = "tcp"\nendpoint = "{endpoint}"\n' + ("reuse_port = true\n" if reuse else "")
        + '[limits]\npow_bits = 0\nlines_per_second = 1000000.0\nline_burst = 1000000\n'
        f'[cluster]\nredis = "{redis.endpoint}"\nnode = "{name}"\n'
    )
    daemon = Daemon("--config", str(config), cwd=str(home))
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


def frames_per_second(a: LineSocket, b: LineSocket, sid: str, size: int, count: int) -> float:
    line = f"FRAME {sid} {b64encode(os.urandom(size))}\n".encode()
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rounds, small, bulk, setups, regs = (2, 20000, 1000, 100, 10) if args.quick else (5, 100000, 4000, 300, 40)
    home = Path(tempfile.mkdtemp(prefix="relaychat-cluster-bench-"))
    redis = RedisServer(str(home / "redis")).start()
    daemons: list[Daemon] = []
    results: dict[str, Any] = {}
    try:
        daemons += [node(home, "a", redis), node(home, "b", redis)]
        pa, pb = daemons[0].ports()[0], daemons[1].ports()[0]
        alice, bob_same, bob_cross = registered(pa, "alice"), registered(pa, "bobsame"), registered(pb, "bobcross")
        same = session(alice, bob_same, "bobsame")
        cross = session(alice, bob_cross, "bobcross")
        figures: dict[str, list[float]] = {k: [] for k in ("small_same", "small_cross", "bulk_same", "bulk_cross",
                                                             "setup_same", "setup_cross")}
        for _ in range(rounds):
            figures["small_same"].append(frames_per_second(alice, bob_same, same, 100, small))
            figures["small_cross"].append(frames_per_second(alice, bob_cross, cross, 100, small))
            figures["bulk_same"].append(frames_per_second(alice, bob_same, same, 16384, bulk))
            figures["bulk_cross"].append(frames_per_second(alice, bob_cross, cross, 16384, bulk))
        # Set-ups need fresh pairs: the sessions above stay open.
        s_a, s_b, s_c = registered(pa, "setupa"), registered(pa, "setupb"), registered(pb, "setupc")
        for _ in range(rounds):
            figures["setup_same"].append(setups_per_second(s_a, s_b, "setupb", setups))
            figures["setup_cross"].append(setups_per_second(s_a, s_c, "setupc", setups))
        for key, values in figures.items():
            results[key] = round(statistics.median(values), 1)
        results["ratio_small"] = round(results["small_cross"] / results["small_same"], 3)
        results["ratio_bulk"] = round(results["bulk_cross"] / results["bulk_same"], 3)
        results["ratio_setup"] = round(results["setup_cross"] / results["setup_same"], 3)
        # One port: one process, then two sharing it (SO_REUSEPORT).
        port = free_port()
        shared = [node(home, "p1", redis, f"tcp:{port}:interface=127.0.0.1", reuse=True)]
        daemons += shared
        one = registrations_per_second(port, 4, regs)
        shared.append(node(home, "p2", redis, f"tcp:{port}:interface=127.0.0.1", reuse=True))
        daemons.append(shared[-1])
        two = registrations_per_second(port, 4, regs)
        results["registrations_one_process"] = round(one, 1)
        results["registrations_two_processes_one_port"] = round(two, 1)
        results["ratio_two_processes"] = round(two / one, 3)
    finally:
        for daemon in daemons:
            daemon.stop()
        redis.stop()
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(f"targets: ratio_small >= 0.5 ({'met' if results['ratio_small'] >= 0.5 else 'MISSED'}), "
          f"ratio_bulk >= 0.7 ({'met' if results['ratio_bulk'] >= 0.7 else 'MISSED'})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
