#!/usr/bin/env python3
"""The WebSocket framing alone, in process: the C frame loops against the
Python ones (relaychat/server/wsframes.py), interleaved rounds in one process
(bench/README.rst, "The frame loops in C").

    python bench/wsframes_loops.py [--rounds 7]

Per message, in: ``WebSocketServer.receive`` of reads holding N whole masked
text frames (FRAME lines of a 100-byte payload, 159 bytes, as the bench's
small frames); out: ``send_lines`` plus ``data_to_send`` of a hub flush of
N such lines; then the same for the bench's 16-KiB frames (per MB), read in
64-KiB and 256-KiB reads cut anywhere (Twisted's read size; max_read with read-ahead). Prints
the median of the rounds and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relaychat.server.process import keep_heap  # noqa: E402
from relaychat.server.wsframes import COMPILED, FRAMING, Policy, WebSocketServer  # noqa: E402
from relaychat.wire.codec import b64encode  # noqa: E402
from tests.listener_support import client_frame, upgrade_request  # noqa: E402

LINE = f"FRAME {'s' * 16} {b64encode(os.urandom(100))}".encode()  # 159 bytes, as in the bench
BULK = f"FRAME {'s' * 16} {b64encode(os.urandom(16384))}".encode()  # the bench's 16-KiB frames


def opened(compiled: bool) -> WebSocketServer:
    ws = WebSocketServer(Policy(), 65536, compiled=compiled)
    ws.receive(upgrade_request())
    ws.data_to_send()
    return ws


def per_message_in(compiled: bool, per_read: int, reads: int, line: bytes = LINE) -> float:
    ws = opened(compiled)
    data = b"".join(client_frame(line) for _ in range(per_read))
    start = time.perf_counter()
    for _ in range(reads):
        ws.receive(data)
    return (time.perf_counter() - start) / (reads * per_read) * 1e6


def per_mb_in_reads(compiled: bool, read: int, frames: int = 120, repeat: int = 5) -> float:
    """ms per MB of lines for the bench's 16-KiB frames arriving in reads of ``read``
    bytes cut anywhere (so most reads end inside a frame, which waits for the next)."""
    wire = b"".join(client_frame(BULK) for _ in range(frames))
    reads = [wire[k:k + read] for k in range(0, len(wire), read)]
    ws = opened(compiled)
    start = time.perf_counter()
    for _ in range(repeat):
        for data in reads:
            ws.receive(data)
    return (time.perf_counter() - start) / (repeat * frames * len(BULK)) * 1e9


def per_message_out(compiled: bool, per_flush: int, flushes: int, line: bytes = LINE) -> float:
    ws = opened(compiled)
    data = (line + b"\n") * per_flush
    start = time.perf_counter()
    for _ in range(flushes):
        ws.send_lines(data)
        ws.data_to_send()
    return (time.perf_counter() - start) / (flushes * per_flush) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not COMPILED:
        print(f"the framing runs {FRAMING}: nothing to compare")
        return 1
    keep_heap()  # as the daemon does: no page faults for each read's buffers
    print(f"{len(LINE)}-byte lines ({len(client_frame(LINE))}-byte frames); us per message, "
          f"median of {args.rounds} interleaved rounds")
    for n in (10, 100, 400):
        results: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.rounds):
            for compiled in (False, True):
                results.setdefault(("in", compiled), []).append(per_message_in(compiled, n, 200_000 // n))
                results.setdefault(("out", compiled), []).append(per_message_out(compiled, n, 200_000 // n))
        for way in ("in", "out"):
            py, c = (statistics.median(results[(way, k)]) for k in (False, True))
            print(f"  {way:3} {n:3} per {'read ' if way == 'in' else 'flush'}: Python {py:.3f}  C {c:.3f}  "
                  f"({py / c:.1f} times faster)")
    bulk: dict[tuple[str, bool], list[float]] = {}
    per_mb = 1e6 / len(BULK) / 1000  # us per message -> ms per MB of lines
    for _ in range(args.rounds):
        for compiled in (False, True):
            bulk.setdefault(("in", compiled), []).append(per_mb_in_reads(compiled, 65536))
            bulk.setdefault(("in256", compiled), []).append(per_mb_in_reads(compiled, 262144))
            bulk.setdefault(("out", compiled), []).append(per_message_out(compiled, 3, 2000, BULK) * per_mb)
    print(f"{len(BULK)}-byte lines in reads of 64 KiB and 256 KiB cut anywhere, out 3 per flush; ms per MB")
    for way in ("in", "in256", "out"):
        py, c = (statistics.median(bulk[(way, k)]) for k in (False, True))
        print(f"  {way:5}: Python {py:.3f}  C {c:.3f}  ({py / c:.1f} times faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
