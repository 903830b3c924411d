"""The output attacker (issue 10, point 1): connections that ask for replies
as fast as they can and never read them, against a relay with a few hundred
registered clients online, while a registered pair plays ping-pong.

    python -m bench.attack [--duration 20] [--users 300]

runs it against a fresh ``twistd relaychat`` and prints one JSON object;
``bench/run.py`` reports it as the "attack" figures and
``tests/test_attack.py`` runs a shorter one. Three attackers at once:

* ``unregistered``: one connection that said only ``HELLO 1``, then floods
  ``WHO``/``LOOKUP``/``PING`` (the relay answers ``WHO`` and ``LOOKUP``
  with ``order`` errors, which are violations: it is soon told BYE);
* ``pings``: one connection that said only ``HELLO 1``, then floods
  ``PING`` with 64-character tokens (no violation: the relay must bound
  it by its own output, not by ending it);
* ``who``: one *registered* connection flooding ``WHO`` (each answer is
  a line per user online: the largest amplification there is).

The figures: the relay's RSS growth over the attack (peak minus before),
and the pair's round-trip p50/p99 during it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import peers  # noqa: E402
from bench.load import Conn, identity, rc_register  # noqa: E402

CONFIG = """\
# The attack figure: production limits, except what lets one machine be
# a few hundred clients (connections per address, no proof of work).
[[listener]]
kind = "tcp"
endpoint = "tcp:0:interface=127.0.0.1:backlog=1024"

[limits]
pow_bits = 0
connections_per_address = 2000
registration_timeout = 300.0
"""


class AttackRelay(peers.Relaychat):
    def config_text(self) -> str:
        return CONFIG


def register_all(port: int, nicks: list[str]) -> list[Conn]:
    conns = [Conn(("127.0.0.1", port)) for _ in nicks]
    rc_register(conns, nicks, identity())
    return conns


def flood(port: int, hello: Callable[[Conn], None], chunk: bytes, stop: threading.Event,
          report: dict[str, Any]) -> None:
    """Send ``chunk`` again and again, never reading; count what got in."""
    conn = Conn(("127.0.0.1", port))
    hello(conn)
    conn.sock.settimeout(0.2)
    sent = 0
    report.update(bytes_sent=0, ended_by_relay=False)
    try:
        while not stop.is_set():
            try:
                sent += conn.sock.send(chunk)
            except socket.timeout:
                continue  # the relay stopped reading us: exactly what it should do
            except OSError:
                report["ended_by_relay"] = True
                break
            report["bytes_sent"] = sent
    finally:
        conn.sock.close()


def attack(port: int, pid: int, duration: float = 20.0, users: int = 300) -> dict[str, Any]:
    rss = lambda: peers.rss_bytes(pid)  # noqa: E731
    online = register_all(port, [f"user{i}" for i in range(users)])
    a, b = register_all(port, ["pinger", "ponger"])
    a.send(b"OFFER ponger\n")
    sid = a.expect(b"OK OFFER ").split(b" ")[2]
    b.expect(b"OFFERED ")
    b.send(b"ACCEPT " + sid + b"\n")
    b.expect(b"OK ACCEPT ")
    a.expect(b"ACCEPTED ")
    frame = b"FRAME " + sid + b" " + base64.b64encode(os.urandom(100)) + b"\n"

    def rounds(seconds: float) -> list[float]:
        times, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            a.send(frame)
            b.expect(b"FRAME ")
            b.send(frame)
            a.expect(b"FRAME ")
            times.append(time.perf_counter() - t0)
        return times

    quiet = rounds(min(2.0, duration / 4))
    time.sleep(0.5)
    rss_before = rss()
    stop = threading.Event()
    reports: dict[str, dict[str, Any]] = {"unregistered": {}, "pings": {}, "who": {}}
    greet = lambda conn: conn.send(b"HELLO 1\n")  # noqa: E731
    (whoer,) = register_all(port, ["whoer"])
    whoer_port_conn = whoer  # keeps the registered attacker's socket: it floods on it below
    threads = [
        threading.Thread(target=flood, args=(port, greet, b"WHO\nLOOKUP user1\nPING x\n" * 2000, stop,
                                             reports["unregistered"])),
        threading.Thread(target=flood, args=(port, greet, (b"PING " + b"p" * 64 + b"\n") * 900, stop,
                                             reports["pings"])),
        threading.Thread(target=_flood_on, args=(whoer_port_conn, b"WHO\n" * 16000, stop, reports["who"])),
    ]
    peak = rss_before
    samples: list[float] = []
    for thread in threads:
        thread.start()
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            samples += rounds(0.2)
            peak = max(peak, rss())
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    peak = max(peak, rss())
    for conn in [*online, a, b]:
        conn.sock.close()
    return {
        "users": users, "duration": duration, "rss_before": rss_before, "rss_peak": peak,
        "growth": peak - rss_before, "quiet": percentiles(quiet), "attacked": percentiles(samples),
        "attackers": reports,
    }


def _flood_on(conn: Conn, chunk: bytes, stop: threading.Event, report: dict[str, Any]) -> None:
    conn.sock.settimeout(0.2)
    sent = 0
    report.update(bytes_sent=0, ended_by_relay=False)
    while not stop.is_set():
        try:
            sent += conn.sock.send(chunk)
        except socket.timeout:
            continue
        except OSError:
            report["ended_by_relay"] = True
            break
        report["bytes_sent"] = sent
    conn.sock.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    return {"count": len(ordered), "p50_us": at(0.5), "p99_us": at(0.99), "max_us": ordered[-1] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--relaychat-from", help="run the relay from this source tree (before/after figures)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaychat-attack-") as tmp:
        relay = AttackRelay(Path(tmp))
        if args.relaychat_from:
            relay.root = Path(args.relaychat_from).resolve()
        relay.start()
        try:
            print(json.dumps(attack(relay.port, relay.pid, args.duration, args.users), indent=1))
        finally:
            relay.stop()


if __name__ == "__main__":
    main()
