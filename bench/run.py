#!/usr/bin/env python3
"""relaychat benchmarks: one command, a table, and a JSON file.

    python bench/run.py [--quick] [--out bench/results/latest.json]

Every figure is measured side by side with a baseline in the same
invocation (rounds interleave the systems), so the answer is a ratio that
holds on a noisy machine. See bench/README.rst for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import peers

SMALL = 100  # bytes of payload in a small frame
BULK = 16384  # bytes of payload in a bulk frame
WINDOW_SMALL = 256  # small frames in flight per sender: enough that every relay, not the round trip, sets the rate
ROUND_TRIP_WINDOWS = (16, 64)  # also measured at 1 pair, and reported: there the round trip sets the rate
WINDOW_BULK = 32  # 16-KiB frames in flight per sender (~700 KB)

# rounds: each system is measured once per round, the systems alternating, and the
# figures are medians over rounds (ratios: the median of the per-round ratios).
FULL = {"rounds": 7, "duration": 1.0, "warmup": 0.25, "small_pairs": [1, 10, 100], "bulk_pairs": [1, 10],
            "ping_rounds": 5000, "ping_duration": 1.0, "setup_pairs": 16, "setup_duration": 5.0,
            "flood_duration": 10.0, "flood_bytes": 1 << 30, "idle_counts": [1000, 10000], "tls_rounds": 5,
            "attack_duration": 20.0, "attack_users": 300}
QUICK = {"rounds": 3, "duration": 0.7, "warmup": 0.2, "small_pairs": [1, 10, 100], "bulk_pairs": [1],
             "ping_rounds": 3000, "ping_duration": 0.7, "setup_pairs": 16, "setup_duration": 3.0,
             "flood_duration": 4.0, "flood_bytes": 1 << 29, "idle_counts": [1000], "tls_rounds": 3,
             "attack_duration": 5.0, "attack_users": 300}
SECTIONS = ["small", "bulk", "pingpong", "setup", "flood", "attack", "memory", "tls", "websocket", "handshake"]

# == workers ====================================================================


class WorkerError(Exception):
    pass


class Worker:
    """``python -m bench.load`` in its own process: task in, ready, go, result out."""

    def __init__(self, task: dict[str, Any], cpus: set[int] | None = None) -> None:
        self.task = task
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.load"], cwd=str(ROOT), env=peers.checkout_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        peers.pin(self.process.pid, cpus)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()
        self.ready: dict[str, Any] | None = None

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise WorkerError(f"worker {self.task['task']} timed out after {timeout:.0f} s")
        finally:
            sel.close()
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"worker {self.task['task']} exited with {self.process.wait(10)}")
        return json.loads(line)

    def wait_ready(self, timeout: float) -> None:
        message = self._line(timeout)
        if "result" in message:  # failed during set-up
            raise WorkerError(str(message["result"].get("error", message)))
        self.ready = message

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        message = self._line(timeout)
        result = message.get("result", {})
        if "error" in result:
            raise WorkerError(result["error"])
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@dataclass
class Run:
    results: list[dict[str, Any]]
    relay_cpu: float | None = None  # CPU seconds the watched server spent in the measured window
    window: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)


LOAD_CPUS: set[int] | None = None  # where load processes run (None: anywhere); see --no-pin


def run_workers(tasks: list[dict[str, Any]], watch: peers.Server | None = None, warmup: float = 0.0,
                duration: float = 0.0, setup_timeout: float = 240.0, sample_rss: bool = False,
                cpus: Any = "load") -> Run:
    """Start one worker per task, let them set up, start them together, collect results."""
    workers = [Worker(task, LOAD_CPUS if cpus == "load" else cpus) for task in tasks]
    try:
        for worker in workers:
            worker.wait_ready(setup_timeout)
        run = Run([])
        for worker in workers:
            worker.go()
        started = time.monotonic()
        if watch is not None and duration:
            end_warm = started + warmup
            samples = []
            while time.monotonic() < end_warm:
                if sample_rss:
                    samples.append((time.monotonic() - started, watch.rss()))
                time.sleep(0.1 if sample_rss else max(0.0, end_warm - time.monotonic()))
            cpu0, t0 = watch.cpu(), time.monotonic()
            end = t0 + duration
            while time.monotonic() < end:
                if sample_rss:
                    samples.append((time.monotonic() - started, watch.rss()))
                time.sleep(0.1 if sample_rss else max(0.0, end - time.monotonic()))
            run.relay_cpu, run.window = watch.cpu() - cpu0, time.monotonic() - t0
            run.rss = samples
        run.results = [worker.result(setup_timeout + warmup + duration + 60) for worker in workers]
        return run
    finally:
        for worker in workers:
            worker.kill()


class Group:
    """The load processes for one system, set up once and measured round after round."""

    def __init__(self, name: str, server: peers.Server, tasks: list[dict[str, Any]]) -> None:
        self.name = name
        self.server = server
        self.workers = [Worker(task, LOAD_CPUS) for task in tasks]

    def wait_ready(self, timeout: float = 240.0) -> None:
        for worker in self.workers:
            worker.wait_ready(timeout)

    def measure(self, warmup: float, duration: float) -> Run:
        for worker in self.workers:
            worker.go()
        time.sleep(warmup)
        cpu0, t0 = self.server.cpu(), time.monotonic()
        time.sleep(duration)
        run = Run([], self.server.cpu() - cpu0, time.monotonic() - t0)
        run.results = [worker.result(warmup + duration + 120) for worker in self.workers]
        return run

    def close(self) -> None:
        for worker in self.workers:
            try:
                assert worker.process.stdin is not None
                worker.process.stdin.write("stop\n")
                worker.process.stdin.flush()
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            try:
                worker.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
            worker.kill()


def rounds_of(groups: dict[str, Group], rounds: int, warmup: float, duration: float,
              each: Callable[[str, int, Run], None]) -> None:
    """Measure every group once per round, alternating the order so drift cancels."""
    names = list(groups)
    for round_ in range(rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            each(name, round_, groups[name].measure(warmup, duration))


# == the benchmark ================================================================


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "KB":
        return f"{value / 1000:.2f} KB"
    if unit == "MiB":
        return f"{value / (1 << 20):.1f} MiB"
    if unit == "us":
        return f"{value:.0f} us"
    if unit == "MB/s":
        return f"{value:.1f} MB/s"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:.3g}{unit}"


@dataclass
class Row:
    figure: str
    relaychat: float | None
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    status: str = "info"  # PASS, MISS, info, n/a
    note: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.p = dict(QUICK if args.quick else FULL)
        self.rows: list[Row] = []
        self.raw: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}  # could not be installed or started
        self.failures: dict[str, str] = {}  # started, but a measurement failed
        self.workdir = Path(tempfile.mkdtemp(prefix="relaychat-bench-"))
        self.servers: dict[str, peers.Server] = {}
        self.counter = 0
        self.started = time.monotonic()
        global LOAD_CPUS
        self.server_cpus, LOAD_CPUS = (None, None) if args.no_pin else peers.cpu_plan()

    # -- helpers ---------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def tag(self) -> str:
        self.counter += 1
        return f"t{self.counter}"  # nicknames are <tag>x<n>: unique, and no look-alikes

    def task(self, kind: str, server: peers.Server, **extra: Any) -> dict[str, Any]:
        port = server.port
        if extra.get("tls"):
            port = server.tls_port  # type: ignore[attr-defined]
        return dict(kind=kind, host="127.0.0.1", port=port, tag=self.tag(), **extra)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        shown = f"{row.figure}: relaychat {fmt(row.relaychat, row.unit)}"
        if row.baseline_name:
            shown += f", {row.baseline_name} {fmt(row.baseline, row.unit)}"
        if row.ratio is not None:
            shown += f", ratio {row.ratio:.2f}"
        self.say(shown + (f" -> {row.status}" if row.status not in ("info",) else ""))

    def server(self, name: str) -> peers.Server | None:
        return self.servers.get(name)

    def start_servers(self, names: list[str]) -> None:
        for name in names:
            if name in self.servers or name in self.unavailable:
                continue
            self.servers[name] = self.make_server(name)

    def make_server(self, name: str, **kwargs: Any) -> peers.Server:
        workdir = self.workdir / f"{name}-{self.tag()}"
        workdir.mkdir()
        cls = {"relaychat": peers.Relaychat, "bare": peers.Bare, "irc": peers.Ngircd, "transit": peers.Transit}[name]
        server = cls(workdir, **kwargs)
        server.cpus = self.server_cpus
        if name == "relaychat" and self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)  # twistd would silently write nothing
            server.profile = str(Path(self.args.profile).resolve() / f"relaychat-{self.tag()}.pstats")  # type: ignore[attr-defined]
        if name == "relaychat" and self.args.relaychat_from:
            server.root = Path(self.args.relaychat_from).resolve()  # type: ignore[attr-defined]
        server.start()
        self.say(f"{name} listening on 127.0.0.1:{server.port} (pid {server.pid})")
        return server

    def stop_server(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()

    def workers_for(self, pairs: int) -> list[int]:
        """Pairs per load process: one process for one pair, else two (two cores)."""
        if pairs == 1:
            return [1]
        return [pairs - pairs // 2, pairs // 2]

    def median(self, values: list[float]) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    # -- set-up ----------------------------------------------------------------

    def install(self) -> None:
        reason = peers.install_transit(self.say)
        if reason:
            self.unavailable["transit"] = reason
            self.say(f"transit relay unavailable: {reason}")
        reason = peers.install_ngircd(self.say)
        if reason:
            self.unavailable["irc"] = reason
            self.say(f"ngircd unavailable: {reason}")

    def try_start(self, names: list[str]) -> None:
        for name in names:
            try:
                self.start_servers([name])
            except Exception as e:
                if name == "relaychat":
                    raise
                self.unavailable[name] = f"did not start: {e}"
                self.say(f"{name} unavailable: {e}")

    # -- figures -----------------------------------------------------------------

    def versus(self, systems: list[str], tasks: Callable[[str, peers.Server], list[dict[str, Any]]],
               value: Callable[[Run], float], rounds: int, warmup: float, duration: float, label: str,
               servers: dict[str, peers.Server] | None = None) -> dict[str, list[float | None]]:
        """Set up every system's load once, then measure them in interleaved rounds.

        Returns each system's value per round (None where a round failed), and keeps
        the raw results under ``self.raw[label]``.
        """
        groups: dict[str, Group] = {}
        values: dict[str, list[float | None]] = {}
        raw: dict[str, list[dict[str, Any]]] = {}
        try:
            for name in systems:
                server = (servers or self.servers).get(name)
                if server is None:
                    continue
                group = Group(name, server, tasks(name, server))
                try:
                    group.wait_ready()
                except WorkerError as e:
                    self.say(f"{label}: {peer_name(name)} could not be set up: {e}")
                    self.failures.setdefault(name, str(e))
                    group.close()
                    continue
                groups[name] = group
                values[name], raw[name] = [], []
            names = list(groups)
            for round_ in range(rounds):
                for name in (names if round_ % 2 == 0 else names[::-1]):
                    if name not in groups:
                        values[name].append(None)
                        continue
                    try:
                        run = groups[name].measure(warmup, duration)
                    except WorkerError as e:
                        self.say(f"{label}: {peer_name(name)} failed in round {round_ + 1}: {e}")
                        self.failures.setdefault(name, str(e))
                        groups.pop(name).close()
                        values[name].append(None)
                        continue
                    problems = [x for r in run.results for x in r.get("errors", []) + [r.get("closed")] if x]
                    if problems:
                        self.say(f"{label}: {peer_name(name)} round {round_ + 1}: {problems[:2]}")
                    closed = next((r["closed"] for r in run.results if r.get("closed")), None)
                    if closed:  # a dropped client's rounds would count near zero: this system failed, say so
                        self.failures.setdefault(name, f"{label}: {closed} in round {round_ + 1}")
                        groups.pop(name).close()
                        values[name].append(None)
                        continue
                    try:
                        figure = value(run)
                    except (KeyError, ZeroDivisionError) as e:  # e.g. a ping-pong with no round inside its time
                        self.say(f"{label}: {peer_name(name)} round {round_ + 1} gave no figure ({e!r})")
                        values[name].append(None)
                        continue
                    values[name].append(figure)
                    raw[name].append({"round": round_ + 1, "value": values[name][-1], "relay_cpu_s": run.relay_cpu,
                                      "window_s": run.window, "workers": run.results})
                    self.say(f"  {label} round {round_ + 1} {peer_name(name):13s} {values[name][-1]:12,.1f}"
                             f"  (relay CPU {run.relay_cpu:.2f} s of {run.window:.2f} s)")
        finally:
            for group in groups.values():
                group.close()
        self.raw[label] = {"values": values, "runs": raw}
        return values

    def stream_tasks(self, pairs: int, size: int, window: int, tls: bool = False
                     ) -> Callable[[str, peers.Server], list[dict[str, Any]]]:
        p = self.p
        return lambda kind, server: [
            self.task(kind, server, task="stream", pairs=n, size=size, window=window, duration=p["duration"],
                      warmup=p["warmup"], tls=tls) for n in self.workers_for(pairs)]

    def ratio(self, ours: list[float | None], theirs: list[float | None]) -> float | None:
        """The median over rounds of ours/theirs, each pair measured side by side."""
        return self.median([a / b for a, b in zip(ours, theirs) if a is not None and b])

    def row(self, figure: str, values: dict[str, list[float | None]], unit: str, baseline: str,
            at_least: float | None = None, at_most: float | None = None, note: str = "") -> None:
        ours, theirs = values.get("relaychat", []), values.get(baseline, [])
        ratio = self.ratio(ours, theirs)
        if baseline in self.unavailable or (baseline in self.failures and ratio is None):
            why = self.unavailable.get(baseline) or self.failures.get(baseline)
            self.add(Row(figure, self.median(ours), unit, baseline, None, None,
                         _target(at_least, at_most), "n/a", f"{peer_name(baseline)} unavailable: {why}"))
            return
        self.row_between(figure, values, "relaychat", baseline, unit, at_least, at_most, note, untargeted="")

    def cpu_note(self, label: str, systems: list[str], per: str) -> str:
        """Relay CPU per message (or MB), median over rounds, from the raw runs."""
        parts = []
        for name in systems:
            runs = self.raw.get(label, {}).get("runs", {}).get(name, [])
            cost = self.median([r["relay_cpu_s"] / (r["value"] * r["window_s"]) for r in runs if r["value"]])
            if cost is not None:
                parts.append(f"{peer_name(name)} {cost * 1e6:.2f} us" if per == "msg" else
                             f"{peer_name(name)} {cost * 1e3:.2f} ms")
        return f"relay CPU per {per}: " + ", ".join(parts) if parts else ""

    def busy_note(self, label: str, systems: list[str]) -> str:
        """How busy each relay's process was (CPU seconds per second), median over rounds."""
        parts = []
        for name in systems:
            runs = self.raw.get(label, {}).get("runs", {}).get(name, [])
            busy = self.median([r["relay_cpu_s"] / r["window_s"] for r in runs if r["window_s"]])
            if busy is not None:
                parts.append(f"{peer_name(name)} {busy:.0%}")
        return "relay process busy: " + ", ".join(parts) if parts else ""

    def small(self) -> None:
        systems = ["relaychat", "irc", "bare"]
        self.try_start(systems)
        p = self.p
        for pairs in p["small_pairs"]:
            windows = [WINDOW_SMALL] + [w for w in ROUND_TRIP_WINDOWS if pairs == 1]
            for window in windows:
                label = f"small_frames_{pairs}_pairs_{window}_in_flight"
                values = self.versus(systems, self.stream_tasks(pairs, SMALL, window), _msgs_per_s, p["rounds"],
                                     p["warmup"], p["duration"], label)
                self.raw[label]["in_flight"] = window
                note = self.cpu_note(label, systems, "msg")
                if window == WINDOW_SMALL:
                    name = f"small frames, {pairs} pair{'s' * (pairs > 1)}"
                    self.row(f"{name}: msg/s vs ngircd", values, "/s", "irc", at_least=1.0)
                    self.row(f"{name}: msg/s vs bare relay", values, "/s", "bare", at_least=1.2, note=note)
                else:  # not a throughput: every relay waits for the round trip (see the busy fractions)
                    name = f"small frames, 1 pair, {window} in flight"
                    self.row(f"{name}: msg/s vs ngircd", values, "/s", "irc", note=self.busy_note(label, systems))
                    self.row(f"{name}: msg/s vs bare relay", values, "/s", "bare", note=note)

    def bulk(self) -> None:
        systems = ["relaychat", "transit", "bare"]
        self.try_start(systems)
        p = self.p
        for pairs in p["bulk_pairs"]:
            label = f"bulk_frames_{pairs}_pairs"
            values = self.versus(systems, self.stream_tasks(pairs, BULK, WINDOW_BULK), _mb_per_s, p["rounds"],
                                 p["warmup"], p["duration"], label)
            plural = "s" * (pairs > 1)
            note = self.cpu_note(label, systems, "MB")
            self.row(f"16-KiB frames, {pairs} pair{plural}: MB/s vs transit relay", values, "MB/s", "transit",
                     at_least=1.0, note=note)
            self.row(f"16-KiB frames, {pairs} pair{plural}: MB/s vs bare relay", values, "MB/s", "bare")

    def ping_task(self, kind: str, server: peers.Server, duration: float, tls: bool = False) -> dict[str, Any]:
        return self.task(kind, server, task="pingpong", size=SMALL, rounds=self.p["ping_rounds"],
                         duration=duration, tls=tls)

    def pingpong(self) -> None:
        systems = ["relaychat", "bare", "irc"]
        self.try_start(systems)
        p = self.p
        p99: dict[str, list[float | None]] = {}

        def p50(run: Run) -> float:
            return run.results[0]["p50_us"]

        values = self.versus(systems, lambda kind, server: [self.ping_task(kind, server, p["ping_duration"])],
                             p50, p["rounds"], 0.0, p["ping_duration"], "pingpong")
        for name, runs in self.raw["pingpong"]["runs"].items():
            p99[name] = [r["workers"][0]["p99_us"] for r in runs]
        self.row("ping-pong round trip p50", values, "us", "bare", at_most=1.2)
        self.row("ping-pong round trip p99", p99, "us", "bare")
        self.row("ping-pong round trip p50 vs ngircd", values, "us", "irc")

    def setup(self) -> None:
        self.try_start(["relaychat"])
        server = self.servers["relaychat"]
        p = self.p
        pairs = p["setup_pairs"]
        tasks = [{"task": "setups", "host": "127.0.0.1", "port": server.port, "tag": self.tag(), "pairs": pairs,
                      "duration": p["setup_duration"], "warmup": p["warmup"]} for _ in range(2)]
        try:
            run = run_workers(tasks, watch=server, warmup=p["warmup"], duration=p["setup_duration"], cpus=None)
        except WorkerError as e:
            self.say(f"session setups failed: {e}")
            self.add(Row("session setups/s", None, "/s", target=">= 2,000/s", status="MISS", note=str(e)))
            return
        failures = [r["failure"] for r in run.results if r.get("failure")]
        rate = sum(r["per_s"] for r in run.results)
        setups = sum(r["setups"] for r in run.results)
        load_cpu = sum(r["load_cpu_s"] for r in run.results)
        relay_cpu_per = run.relay_cpu / (rate * run.window) if rate and run.relay_cpu is not None else None
        # The same two load processes doing only the client-side work, with no relay: their ceiling.
        try:
            crypto = run_workers([{"task": "crypto", "duration": min(3.0, p["setup_duration"])} for _ in range(2)],
                                 cpus=None).results
        except WorkerError as e:  # the ceiling is for information: report the set-ups anyway
            self.say(f"client work alone failed: {e}")
            crypto = []
        ceiling = sum(r["per_s"] for r in crypto) if crypto else None
        self.raw["setups"] = {"workers": run.results, "relay_cpu_s": run.relay_cpu, "window_s": run.window,
                              "crypto_only": crypto, "failures": failures}
        note = (f"relay CPU {relay_cpu_per * 1e3:.3f} ms/setup ({1 / relay_cpu_per:,.0f}/s per relay core); "
                f"load CPU {load_cpu / max(setups, 1) * 1e3:.2f} ms/setup" if relay_cpu_per else "")
        if failures:
            note += f"; failures: {failures[:2]}"
        self.add(Row("session setups/s (offer, accept, XX, first message)", rate, "/s",
                     "client crypto alone", ceiling, None, ">= 2,000/s",
                     "PASS" if rate >= 2000 and not failures else "MISS", note))
        self.add(Row("relay CPU per session setup", relay_cpu_per * 1e3 if relay_cpu_per else None, "ms",
                     note=f"{1 / relay_cpu_per:,.0f} setups/s per core of relay CPU" if relay_cpu_per else ""))
        latency = [r["latency"] for r in run.results if r["latency"].get("count")]
        if latency:
            self.add(Row("session setup latency p50 (offer to first message)",
                         self.median([x["p50_us"] for x in latency]), "us",
                         note=f"p99 {self.median([x['p99_us'] for x in latency]):.0f} us, {pairs} concurrent pairs per load process"))

    # systems measured for flood and memory: (server, transport); relaychat over every listener kind
    OVER = [("relaychat", "tcp"), ("bare", "tcp"), ("relaychat", "tls"), ("relaychat", "ws")]

    def fresh(self, system: str, transport: str) -> peers.Server | None:
        """A fresh server for one measurement (nothing before it is counted, and the
        bare relay's unbounded buffers are freed afterwards)."""
        self.stop_server(system)
        try:
            if transport == "tcp":
                self.start_servers([system])
                return self.servers[system]
            return self.secure_server()
        except Exception as e:  # noqa: BLE001
            self.unavailable[system] = str(e)
            return None

    def load_task(self, system: str, transport: str, server: peers.Server, **task: Any) -> dict[str, Any]:
        return self.over(transport, server, **task) if system == "relaychat" else self.task(system, server, **task)

    @staticmethod
    def label(system: str, transport: str) -> str:
        return system if transport == "tcp" else f"{system}-{transport}"

    def flood(self) -> None:
        p = self.p
        results: dict[str, Any] = {}
        for system, transport in self.OVER:
            server = self.fresh(system, transport)
            if server is None:
                continue
            name = self.label(system, transport)
            try:
                quiet = run_workers([self.load_task(system, transport, server, task="pingpong", size=SMALL,
                                                    rounds=self.p["ping_rounds"],
                                                    duration=min(3.0, p["flood_duration"] / 2))]).results[0]
            except WorkerError as e:
                self.say(f"{name} quiet ping-pong failed: {e}")
                quiet = None
            flood = self.load_task(system, transport, server, task="flood", size=BULK, duration=p["flood_duration"],
                                   max_bytes=p["flood_bytes"])
            ping = self.load_task(system, transport, server, task="pingpong", size=SMALL, rounds=10 ** 6,
                                  duration=p["flood_duration"] - 0.5)
            rss0 = server.rss()
            try:
                run = run_workers([flood, ping], watch=server, warmup=0.0, duration=p["flood_duration"], sample_rss=True)
            except WorkerError as e:
                self.say(f"{name} flood failed: {e}")
                self.stop_server(system)
                continue
            time.sleep(0.5)
            peak = max([rss for _, rss in run.rss] + [server.rss()])
            results[name] = {"quiet": quiet, "loaded": run.results[1], "flood": run.results[0],
                             "rss_before": rss0, "rss_peak": peak, "growth": peak - rss0,
                             "rss_samples": run.rss[:: max(1, len(run.rss) // 50)]}
            self.say(f"  flood {name:13s} RSS +{(peak - rss0) / (1 << 20):.1f} MiB, sender pushed "
                     f"{run.results[0]['bytes_sent'] / (1 << 20):.0f} MiB; ping p50 "
                     f"{quiet['p50_us'] if quiet else 0:.0f} -> {run.results[1].get('p50_us', 0):.0f} us")
            self.stop_server(system)
        self.raw["flood"] = results
        bare = results.get("bare")
        for transport in ("tcp", "tls", "ws"):
            ours = results.get(self.label("relaychat", transport))
            over = "" if transport == "tcp" else f" over {self.TRANSPORTS[transport]}"
            growth = ours["growth"] if ours else None
            self.add(Row(f"flood{over}: relay RSS growth (reader never reads)", growth, "MiB", "bare relay",
                         bare["growth"] if bare else None, None, "< 64 MiB",
                         "PASS" if growth is not None and growth < 64 << 20 else "MISS",
                         f"sender pushed {ours['flood']['bytes_sent'] / (1 << 20):.0f} MiB into relaychat in "
                         f"{ours['flood']['seconds']:.1f} s" if ours else "no measurement"))
            figure = f"flood{over}: another session's ping-pong p50, flooded vs quiet"
            if ours and ours["quiet"] and ours["loaded"].get("count"):
                quiet, loaded = ours["quiet"], ours["loaded"]
                ratio = loaded["p50_us"] / quiet["p50_us"]
                self.add(Row(figure, loaded["p50_us"], "us", "same relay, quiet", quiet["p50_us"], ratio, "ratio <= 1.5",
                             "PASS" if ratio <= 1.5 else "MISS",
                             f"p99 {quiet['p99_us']:.0f} us quiet, {loaded['p99_us']:.0f} us flooded"))
            else:
                self.add(Row(figure, None, "us", target="ratio <= 1.5", status="MISS", note="no measurement"))

    def attack(self) -> None:
        """bench/attack.py: connections that ask for replies and never read them."""
        from bench.attack import AttackRelay, attack

        p = self.p
        workdir = self.workdir / f"attack-{self.tag()}"
        workdir.mkdir()
        relay = AttackRelay(workdir)
        relay.cpus = self.server_cpus
        if self.args.relaychat_from:
            relay.root = Path(self.args.relaychat_from).resolve()
        relay.start()
        try:
            result = attack(relay.port, relay.pid, duration=p["attack_duration"], users=p["attack_users"])
        finally:
            relay.stop()
        self.raw["attack"] = result
        growth, quiet, loaded = result["growth"], result["quiet"], result["attacked"]
        sent = sum(a["bytes_sent"] for a in result["attackers"].values()) / (1 << 20)
        self.say(f"  attack: RSS +{growth / (1 << 20):.1f} MiB; ping p99 {quiet.get('p99_us', 0):.0f} -> "
                 f"{loaded.get('p99_us', 0):.0f} us; attackers pushed {sent:.0f} MiB")
        self.add(Row("attack: relay RSS growth (replies never read)", growth, "MiB", target="< 16 MiB",
                     status="PASS" if growth < 16 << 20 else "MISS",
                     note=f"{result['users']} users online, {result['duration']:.0f} s, attackers pushed {sent:.0f} MiB"))
        p99 = loaded.get("p99_us")
        self.add(Row("attack: a registered pair's ping-pong p99 during it", p99, "us", "same relay, quiet",
                     quiet.get("p99_us"), p99 / quiet["p99_us"] if p99 and quiet.get("p99_us") else None,
                     "< 50000 us", "PASS" if p99 is not None and p99 < 50_000 else "MISS",
                     f"p50 {quiet.get('p50_us', 0):.0f} us quiet, {loaded.get('p50_us', 0):.0f} us attacked"))

    def memory(self) -> None:
        results: dict[str, Any] = {}
        for count in self.p["idle_counts"]:
            for system, transport in self.OVER:
                server = self.fresh(system, transport)
                if server is None:
                    continue
                name = self.label(system, transport)
                try:
                    # warm up: one small wave that connects, registers and leaves, so that
                    # lazily imported code and first-use caches are not counted per client
                    run_workers([self.load_task(system, transport, server, task="idle", count=10)])
                    time.sleep(0.5)
                    rss0 = server.rss()
                    per = 2500
                    shares = [min(per, count - i) for i in range(0, count, per)]
                    workers = [Worker(self.load_task(system, transport, server, task="idle", count=n)) for n in shares]
                    try:
                        for w in workers:
                            w.wait_ready(600)
                        connected = sum(w.ready["connections"] for w in workers)  # type: ignore[index]
                        time.sleep(1.0)
                        rss1 = server.rss()
                        for w in workers:
                            w.go()
                        for w in workers:
                            w.result(120)
                    finally:
                        for w in workers:
                            w.kill()
                except WorkerError as e:
                    self.say(f"{name} idle clients ({count}) failed: {e}")
                    continue
                finally:
                    self.stop_server(system)
                per_client = (rss1 - rss0) / connected
                results.setdefault(str(count), {})[name] = {"rss_before": rss0, "rss_after": rss1,
                                                            "connections": connected, "per_client": per_client}
                self.say(f"  idle {count:6d} {name:13s} RSS {rss0 / 1e6:.1f} -> {rss1 / 1e6:.1f} MB: "
                         f"{per_client / 1000:.2f} KB per client")
        self.raw["memory"] = results
        for count in self.p["idle_counts"]:
            got = results.get(str(count), {})
            plain = got.get("relaychat", {}).get("per_client")
            theirs = got.get("bare", {}).get("per_client")
            self.add(Row(f"RSS per idle registered client, {count:,} clients", plain, "KB", "bare relay", theirs,
                         plain / theirs if plain and theirs else None, "<= 5 KB",
                         "PASS" if plain is not None and plain <= 5000 else "MISS"))
            for transport in ("tls", "ws"):
                ours = got.get(self.label("relaychat", transport), {}).get("per_client")
                self.add(Row(f"RSS per idle registered client over {self.TRANSPORTS[transport]}, {count:,} clients",
                             ours, "KB", "tcp", plain, ours / plain if ours and plain else None, "reported",
                             "info" if ours is not None else "n/a"))

    # -- TLS and WebSocket: the same daemon, one listener of each kind -----------------

    TRANSPORTS = {"tcp": "plain TCP", "tls": "TLS", "ws": "WebSocket (ws://)", "wss": "WebSocket (wss://)"}

    def secure_server(self) -> peers.Relaychat | None:
        """A relaychat daemon with tcp, tls, websocket and wss listeners (started once, reused)."""
        server = self.servers.get("relaychat")
        if isinstance(server, peers.Relaychat) and server.tls and server.websocket:
            return server
        options = tls_options(self.workdir)
        if isinstance(options, str):
            self.failures["tls"] = options
            return None
        self.stop_server("relaychat")
        try:
            server = self.make_server("relaychat", tls=options, websocket=True)  # type: ignore[assignment]
        except Exception as e:  # noqa: BLE001 - a listener that does not start is reported
            self.failures["tls"] = f"relaychat with tls and websocket listeners did not start: {str(e)[:200]}"
            return None
        self.servers["relaychat"] = server
        return server  # type: ignore[return-value]

    def over(self, transport: str, server: peers.Server, **task: Any) -> dict[str, Any]:
        """A relaychat load task over one transport of ``server``: tcp, tls, ws, wss."""
        port = {"tcp": server.port, "tls": getattr(server, "tls_port", 0), "ws": getattr(server, "ws_port", 0),
                "wss": getattr(server, "wss_port", 0)}[transport]
        return dict(kind="relaychat", host="127.0.0.1", port=port, tag=self.tag(), tls=transport in ("tls", "wss"),
                    websocket=transport in ("ws", "wss"), **task)

    def transports_versus(self, transports: list[str], server: peers.Server, make: Callable[[str], list[dict[str, Any]]],
                          value: Callable[[Run], float], label: str, rounds: int, warmup: float, duration: float
                          ) -> dict[str, list[float | None]]:
        return self.versus(transports, lambda name, _srv: make(name), value, rounds, warmup, duration, label,
                           servers={name: server for name in transports})

    def row_between(self, figure: str, values: dict[str, list[float | None]], ours: str, theirs: str, unit: str,
                    at_least: float | None = None, at_most: float | None = None, note: str = "",
                    untargeted: str = "reported") -> None:
        """A row for ``ours`` against ``theirs``: the median of the per-round ratios, against its target."""
        mine, base = values.get(ours, []), values.get(theirs, [])
        ratio = self.ratio(mine, base)
        if ratio is None:
            status = "MISS" if (at_least or at_most) else "info"
        elif at_least is not None:
            status = "PASS" if ratio >= at_least else "MISS"
        elif at_most is not None:
            status = "PASS" if ratio <= at_most else "MISS"
        else:
            status = "info"
        self.add(Row(figure, self.median(mine), unit, theirs, self.median(base), ratio,
                     _target(at_least, at_most) or untargeted, status, note))

    def transport_figures(self, transports: list[str], against: dict[str, str], targets: dict[tuple[str, str], float]) -> None:
        """Small frames (10 pairs), 16-KiB frames (1 pair) and ping-pong over ``transports``, each
        compared with ``against[transport]`` in the same rounds; ``targets[(figure, transport)]`` is a bound."""
        server = self.secure_server()
        if server is None:
            for t in transports:
                if t in against:
                    self.add(Row(f"{self.TRANSPORTS[t]}: figures", None, "", status="MISS", note=self.failures["tls"]))
            return
        p = self.p
        systems = transports
        label = "_".join(systems)

        def stream(pairs: int, size: int, window: int) -> Callable[[str], list[dict[str, Any]]]:
            return lambda t: [self.over(t, server, task="stream", pairs=n, size=size, window=window,
                                        duration=p["duration"], warmup=p["warmup"]) for n in self.workers_for(pairs)]

        small = self.transports_versus(systems, server, stream(10, SMALL, WINDOW_SMALL), _msgs_per_s,
                                       f"{label}_small_frames_10_pairs", p["tls_rounds"], p["warmup"], p["duration"])
        bulk = self.transports_versus(systems, server, stream(1, BULK, WINDOW_BULK), _mb_per_s,
                                      f"{label}_bulk_frames_1_pair", p["tls_rounds"], p["warmup"], p["duration"])
        ping = self.transports_versus(
            systems, server, lambda t: [self.over(t, server, task="pingpong", size=SMALL, rounds=p["ping_rounds"],
                                                  duration=p["ping_duration"])],
            lambda run: run.results[0]["p50_us"], f"{label}_pingpong", p["rounds"], 0.0, p["ping_duration"])
        for t, base in against.items():
            name, base_name = self.TRANSPORTS[t], self.TRANSPORTS[base]
            small_note = self.cpu_note(f"{label}_small_frames_10_pairs", [t, base], "msg")
            bulk_note = self.cpu_note(f"{label}_bulk_frames_1_pair", [t, base], "MB")
            self.row_between(f"{name} small frames, 10 pairs: msg/s vs {base_name}", small, t, base, "/s",
                             at_least=targets.get(("small", t)), note=small_note)
            self.row_between(f"{name} 16-KiB frames, 1 pair: MB/s vs {base_name}", bulk, t, base, "MB/s",
                             at_least=targets.get(("bulk", t)), note=bulk_note)
            self.row_between(f"{name} ping-pong round trip p50 vs {base_name}", ping, t, base, "us",
                             at_most=targets.get(("ping", t)))

    def tls(self) -> None:
        self.transport_figures(["tcp", "tls"], {"tls": "tcp"},
                               {("small", "tls"): 0.75, ("bulk", "tls"): 0.5, ("ping", "tls"): 1.3})

    def websocket(self) -> None:
        server = self.secure_server()
        if server is not None:  # C or Python: the daemon says at start-up (relaychat/server/wsframes.py)
            said = re.search(r"WebSocket framing (.*)", server.log.read_text(errors="replace"))
            framing = said.group(1) if said else "not said (a tree from before the C frame loops)"
            self.say(f"relaychat's WebSocket framing: {framing}")
            self.add(Row("WebSocket framing of the relay under test", None, "", note=framing))
        self.transport_figures(["tcp", "ws", "tls", "wss"], {"ws": "tcp", "wss": "tls"},
                               {("small", "ws"): 0.6, ("bulk", "ws"): 0.5})

    def handshake(self) -> None:
        """TLS 1.3 handshakes per second (ECDSA P-256), relaychat's tls listener vs openssl s_server."""
        server = self.secure_server()
        figure = "TLS 1.3 handshakes/s (ECDSA P-256), 2 x 8 concurrent: vs openssl s_server"
        if server is None:
            self.add(Row(figure, None, "/s", status="n/a", note=self.failures.get("tls", "")))
            return
        cert, key = server.tls["certificate"], server.tls["private_key"]  # type: ignore[index]
        try:
            openssl = peers.OpensslServer(self.workdir, cert, key)
            openssl.cpus = self.server_cpus
            openssl.start()
        except Exception as e:  # noqa: BLE001
            self.add(Row(figure, None, "/s", status="n/a", note=f"openssl s_server did not start: {e}"))
            return
        self.servers["openssl"] = openssl
        p = self.p
        try:
            values = self.versus(
                ["tls", "openssl"],
                lambda name, srv: [dict(task="handshakes", host="127.0.0.1", port=srv.tls_port if name == "tls" else srv.port,
                                        concurrency=8, duration=p["duration"] * 2, warmup=p["warmup"]) for _ in range(2)],
                lambda run: sum(r["per_s"] for r in run.results), p["tls_rounds"], p["warmup"], p["duration"] * 2,
                "tls_handshakes", servers={"tls": server, "openssl": openssl})
        finally:
            self.stop_server("openssl")
        note = self.cpu_note("tls_handshakes", ["tls", "openssl"], "msg").replace("per msg", "per handshake")
        self.row_between(figure, values, "tls", "openssl", "/s", note=note)

    # -- the whole run -------------------------------------------------------------

    def run(self) -> int:
        sections = self.args.only.split(",") if self.args.only else SECTIONS
        self.say(f"relaychat benchmark ({'quick' if self.args.quick else 'full'}): {', '.join(sections)}; "
                 f"work directory {self.workdir}")
        self.install()
        try:
            for section in SECTIONS:
                if section in sections:
                    self.say(f"== {section}")
                    try:
                        getattr(self, section)()
                    except (WorkerError, RuntimeError, OSError) as e:  # report it, run the rest
                        self.say(f"section {section} failed: {e}")
                        self.add(Row(f"{section}: section failed", None, "", status="MISS", note=str(e)[:300]))
        finally:
            for name in list(self.servers):
                self.stop_server(name)
        self.report()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return 0

    def report(self) -> None:
        table = render(self.rows)
        print(table)
        p = self.p
        pinned = "not pinned (--no-pin)" if self.args.no_pin or self.server_cpus is None else (
            f"the server under test on CPU {sorted(self.server_cpus)}, load processes on CPU {sorted(LOAD_CPUS or [])} "
            "(session set-up load: any CPU)")
        notes = [
            (f"each figure is the median of {p['rounds']} rounds ({p['duration']:g} s each) in which the systems take "
            "turns; a ratio is the median of the per-round ratios relaychat / baseline"),
            f"CPUs: {pinned}; relay CPU time per message is shown under each throughput figure",
            (f"load: {WINDOW_SMALL} small / {WINDOW_BULK} bulk frames in flight per sender; small payload {SMALL} B, "
            f"bulk {BULK} B, base64 as in FRAME: the same bytes go through every relay"),
            (f"with {' or '.join(map(str, ROUND_TRIP_WINDOWS))} small frames in flight and one pair, a relay that is "
            "not 100% busy is waiting for the round trip (whose own figure is the ping-pong row): reported, no target"),
            ("session set-ups: both ends run relaychat.client.channel (Noise XX, binding, pin and safety-number "
            "checks, remembered per peer key as the client does); the caller sends one message, says goodbye and "
            "calls again"),
            ("receivers ACK at once (TCP_QUICKACK), so relays without TCP_NODELAY (ngircd, Twisted's default) are "
            "not measured waiting for delayed ACKs"),
            ("relaychat runs with registration, sessions and every limit on; the line-rate limit runs on every read "
            "but is set (bench/relaychat-bench.toml) above what any load connection reaches"),
        ]
        for name, reason in {**self.failures, **self.unavailable}.items():
            notes.append(f"{peer_name(name)} unavailable: {reason}")
        counts = {status: sum(row.status == status for row in self.rows) for status in ("PASS", "MISS", "n/a")}
        notes.append(f"targets: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} not measurable")
        for note in notes:
            print(f"  * {note}")
        document = {
            "meta": meta(self.args, self.p),
            "unavailable": {**self.failures, **self.unavailable},
            "targets": counts,
            "figures": [row.__dict__ for row in self.rows],
            "notes": notes,
            "raw": self.raw,
        }
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=1, default=str))
        print(f"  JSON written to {out}")


def _msgs_per_s(run: Run) -> float:
    return sum(r["messages"] for r in run.results) / max(r["seconds"] for r in run.results)


def _mb_per_s(run: Run) -> float:
    return sum(r["bytes"] for r in run.results) / max(r["seconds"] for r in run.results) / 1e6


def _target(at_least: float | None, at_most: float | None) -> str:
    if at_least is not None:
        return f"ratio >= {at_least:g}"
    if at_most is not None:
        return f"ratio <= {at_most:g}"
    return ""


def render(rows: list[Row]) -> str:
    header = ["figure", "relaychat", "baseline", "ratio", "target", "result"]
    lines = []
    for row in rows:
        baseline = f"{peer_name(row.baseline_name)} {fmt(row.baseline, row.unit)}" if row.baseline_name else ""
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        lines.append([row.figure, fmt(row.relaychat, row.unit), baseline, ratio, row.target, row.status])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    for line, row in zip(lines, rows):
        out.append(" | ".join(str(x).ljust(w) for x, w in zip(line, widths)))
        if row.note:
            out.append("    " + row.note)
    return "\n".join(out)


def peer_name(name: str) -> str:
    return {"irc": "ngircd", "transit": "transit relay", "bare": "bare relay", "tls": "TLS", "ws": "ws://",
            "wss": "wss://", "tcp": "plain TCP", "openssl": "openssl s_server"}.get(name, name)


def tls_options(workdir: Path) -> dict[str, str] | str:
    """Options for a relaychat ``tls`` listener with a fresh self-signed certificate, or why not."""
    try:
        from relaychat.config import LISTENER_OPTIONS
    except ImportError as e:
        return f"cannot import relaychat.config: {e}"
    options_of = LISTENER_OPTIONS.get("tls")
    if options_of is None:
        return "relaychat has no 'tls' listener kind (relaychat/config.py LISTENER_OPTIONS)"
    cert, key = self_signed(workdir)
    options = {}
    for name in options_of:
        lowered = name.lower()
        if "cert" in lowered or "chain" in lowered:
            options[name] = str(cert)
        elif "key" in lowered:
            options[name] = str(key)
    if not options:
        return f"don't know how to fill the tls listener's options {sorted(options_of)}"
    return options


def self_signed(workdir: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "bench-cert.pem", workdir / "bench-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def meta(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "params": params,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="relaychat benchmarks against baselines (bench/README.rst)")
    parser.add_argument("--quick", action="store_true", help="a ~2 minute run: fewer rounds, shorter runs")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"), help="JSON output file")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--profile", default="", metavar="DIR",
                        help="run relaychat under cProfile (twistd --profile), stats into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument("--relaychat-from", default="", metavar="DIR",
                        help="run the relay from another source tree (e.g. an older commit, for before/after ratios)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server under test to one CPU and the load to the others")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS) - {""}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
