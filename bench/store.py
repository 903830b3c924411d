"""What the relay's journal choice costs per write: PERSIST (ours) against WAL.

    python bench/store.py [--rounds 7] [--ops 200] [--dir DIR]

The store keeps a rollback journal in PERSIST mode at a reserved size so
that ACK works on a full disk (relaychat/server/store.py says why). The
baseline is the same Store with the database switched to WAL, the mode it
used before. Both run on the same file system (``--dir``, default the
system's temporary directory: use the disk the data directory will live
on), taking turns round after round; each figure is the median over rounds
and the ratio the median of per-round ratios. There is no target: the
figure is a cost, reported so it stays visible. Writes happen only at
MAIL, ACK, new nicknames and changed keys, all capped per sender or
address, never per frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relaychat.server.store import Store  # noqa: E402


def open_store(directory: str, name: str, wal: bool) -> Store:
    path = os.path.join(directory, name)
    store = Store(path)
    if wal:
        store._db.execute("PRAGMA journal_mode=WAL").fetchone()
    else:
        store.check_at_start()  # the journal reserve, as the daemon does
    return store


def one_round(store: Store, ops: int, size: int) -> tuple[float, float]:
    """Microseconds per stored mail and per acknowledged mail."""
    body = os.urandom(size)
    started = time.perf_counter()
    ids = [store.add_mail(f"r{i % 20}", "sender", 1.0, body) for i in range(ops)]
    stored = time.perf_counter()
    for i, mail_id in enumerate(ids):
        store.delete_mail(mail_id, f"r{i % 20}")
    acked = time.perf_counter()
    return (stored - started) / ops * 1e6, (acked - stored) / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaychat-bench-store-", dir=args.dir) as directory:
        stores = {"persist": open_store(directory, "persist.sqlite3", wal=False),
                  "wal": open_store(directory, "wal.sqlite3", wal=True)}
        print(f"{args.rounds} rounds of {args.ops} MAIL + {args.ops} ACK on {directory}", file=sys.stderr)
        rows = []
        for size in (1024, 16384):
            results: dict[str, list[tuple[float, float]]] = {"persist": [], "wal": []}
            for round_ in range(args.rounds):
                order = ("persist", "wal") if round_ % 2 == 0 else ("wal", "persist")
                for name in order:
                    results[name].append(one_round(stores[name], args.ops, size))
            for index, what in ((0, "MAIL (store)"), (1, "ACK (delete)")):
                ours = statistics.median(r[index] for r in results["persist"])
                theirs = statistics.median(r[index] for r in results["wal"])
                ratio = statistics.median(p[index] / w[index] for p, w in zip(results["persist"], results["wal"]))
                rows.append((f"{what}, {size // 1024} KiB mail, us/op", ours, theirs, ratio))
        for store in stores.values():
            store.close()
    print(f"{'figure':<36} {'PERSIST (ours)':>15} {'WAL (before)':>13} {'ratio':>7}")
    for name, ours, theirs, ratio in rows:
        print(f"{name:<36} {ours:>15.0f} {theirs:>13.0f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
