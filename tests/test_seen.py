"""Tests for relaychat.client.seen: the seen-mail record, shared safely by processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.client.seen import MAX_AGE, MAX_SKEW, Claim, SeenMail

NOW = 1_800_000_000
REPO = Path(__file__).resolve().parent.parent

# One process claiming ids; prints the ones it was first to claim.
CLAIMER = r"""
import json, sys
from relaychat.client.seen import Claim, SeenMail
path, prefix, count, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen = SeenMail(path)
mine = []
for i in range(count):
    for name in (f"{prefix}-{i}", f"shared-{i}"):
        message_id = name.encode().ljust(16, b".")[:16]
        if seen.claim(message_id, now, now) is Claim.NEW:
            mine.append(name)
print(json.dumps(mine))
"""


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


class SeenMailTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "seen_mail"
        self.seen = SeenMail(self.path)

    def test_claim_once(self) -> None:
        self.assertEqual(self.seen.claim(mid(1), NOW, NOW), Claim.NEW)
        self.assertEqual(self.seen.claim(mid(1), NOW, NOW + 10), Claim.DUPLICATE)
        self.assertIn(mid(1), self.seen)
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    def test_remembered_across_restarts(self) -> None:
        self.seen.claim(mid(1), NOW, NOW)
        self.assertEqual(SeenMail(self.path).claim(mid(1), NOW, NOW + 86400), Claim.DUPLICATE)

    def test_too_old_and_future(self) -> None:
        self.assertEqual(self.seen.claim(mid(1), NOW - MAX_AGE - 1, NOW), Claim.TOO_OLD)
        self.assertEqual(self.seen.claim(mid(2), NOW + MAX_SKEW + 1, NOW), Claim.FUTURE)
        self.assertEqual(self.seen.claim(mid(3), NOW + 60, NOW), Claim.NEW, "clocks differ a little")
        self.assertNotIn(mid(1), self.seen)

    def test_two_writers_keep_each_others_ids(self) -> None:
        """The old store rewrote the file from its own copy, erasing the other's ids."""
        other = SeenMail(self.path)
        self.seen.claim(mid(1), NOW, NOW)
        other.claim(mid(2), NOW, NOW)
        self.seen.claim(mid(3), NOW, NOW)
        self.assertEqual(other.claim(mid(1), NOW, NOW), Claim.DUPLICATE)
        self.assertEqual(self.seen.claim(mid(2), NOW, NOW), Claim.DUPLICATE)

    def test_expired_ids_are_compacted_away(self) -> None:
        for n in range(10):
            self.seen.claim(mid(n), NOW, NOW)
        later = NOW + MAX_AGE + 1
        for n in range(10, 30):
            self.seen.claim(mid(n), later, later)
        self.assertLess(len(self.path.read_text().splitlines()), 25)
        self.assertEqual(self.seen.claim(mid(0), NOW, later), Claim.TOO_OLD, "forgotten, and refused")
        for n in range(10, 30):
            self.assertIn(mid(n), self.seen)

    def test_a_flood_raises_the_horizon_instead_of_forgetting_silently(self) -> None:
        seen = SeenMail(self.path, max_entries=10)
        for n in range(20):
            self.assertEqual(seen.claim(mid(n), NOW + n, NOW + 20), Claim.NEW)
        self.assertLessEqual(len(self.path.read_text().splitlines()), 12)
        for n in range(20):  # every id shown is either remembered or before the horizon
            self.assertIn(seen.claim(mid(n), NOW + n, NOW + 20), (Claim.DUPLICATE, Claim.TOO_OLD))
        self.assertEqual(SeenMail(self.path).claim(mid(99), NOW, NOW + 20), Claim.TOO_OLD)

    def test_damaged_lines_are_skipped(self) -> None:
        self.path.parent.mkdir(parents=True)
        self.path.write_text(f"zz 1\n{mid(1).hex()}\n{mid(2).hex()} {NOW}\n")
        self.assertEqual(self.seen.claim(mid(2), NOW, NOW), Claim.DUPLICATE)
        self.assertEqual(self.seen.claim(mid(3), NOW, NOW), Claim.NEW)

    def test_in_memory(self) -> None:
        seen = SeenMail(None)
        self.assertEqual(seen.claim(mid(1), NOW, NOW), Claim.NEW)
        self.assertEqual(seen.claim(mid(1), NOW, NOW), Claim.DUPLICATE)

    def test_two_processes_on_one_profile(self) -> None:
        """Real processes racing: every id is kept, and each shared id is claimed exactly once."""
        script = Path(self.mktemp())
        script.write_text(CLAIMER)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        count = 150
        procs = [subprocess.Popen([sys.executable, str(script), str(self.path), prefix, str(count), str(NOW)],
                                  stdout=subprocess.PIPE, env=env) for prefix in ("a", "b")]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0)
            results.append(json.loads(out))
        first, second = results
        self.assertEqual([n for n in first if n.startswith("a-")], [f"a-{i}" for i in range(count)])
        self.assertEqual([n for n in second if n.startswith("b-")], [f"b-{i}" for i in range(count)])
        shared = sorted(n for r in results for n in r if n.startswith("shared-"))
        self.assertEqual(shared, sorted(f"shared-{i}" for i in range(count)), "each shown by exactly one")
        seen = SeenMail(self.path)
        for prefix in ("a", "b", "shared"):
            for i in range(count):
                self.assertIn(f"{prefix}-{i}".encode().ljust(16, b".")[:16], seen)


class IncrementalReadTests(SynchronousTestCase):
    """A claim reads only what was appended since; a rewrite by anyone is noticed."""

    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "seen_mail"

    def test_what_another_client_appends_or_compacts_is_seen(self) -> None:
        a, b = SeenMail(self.path, max_entries=10), SeenMail(self.path, max_entries=10)
        self.assertEqual(a.claim(mid(1), NOW + 1, NOW + 50), Claim.NEW)
        self.assertEqual(b.claim(mid(2), NOW + 2, NOW + 50), Claim.NEW)
        self.assertEqual(a.claim(mid(2), NOW + 2, NOW + 50), Claim.DUPLICATE)  # b's append, read as a tail
        for n in range(3, 15):  # b compacts: a new file, with a horizon
            b.claim(mid(n), NOW + n, NOW + 50)
        self.assertIn("generation", self.path.read_text().split("\n", 1)[0])
        self.assertEqual(a.claim(mid(99), NOW + 1, NOW + 50), Claim.TOO_OLD)  # a sees b's horizon
        for n in range(1, 15):
            self.assertIn(a.claim(mid(n), NOW + n, NOW + 50), (Claim.DUPLICATE, Claim.TOO_OLD))

    def test_a_rewrite_that_reuses_the_inode_and_size_is_still_noticed(self) -> None:
        a = SeenMail(self.path)
        a.claim(mid(1), NOW, NOW)
        # the same inode, grown, but another first line: read again from the start
        self.path.write_text(f"{mid(2).hex()} {NOW}\n{mid(3).hex()} {NOW}\n")
        self.assertNotIn(mid(1), a)
        self.assertEqual(a.claim(mid(2), NOW, NOW), Claim.DUPLICATE)

    def test_a_line_still_being_appended_is_read_once_whole(self) -> None:
        a = SeenMail(self.path)
        a.claim(mid(1), NOW, NOW)
        line = f"{mid(2).hex()} {NOW}\n"
        with self.path.open("a") as f:
            f.write(line[:20])
            f.flush()
            self.assertNotIn(mid(2), a)
            f.write(line[20:])
        self.assertIn(mid(2), a)
