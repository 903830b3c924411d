"""keep_heap: glibc's malloc tuned once at start, or left alone when it should be."""

from __future__ import annotations

import platform

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server import process
from relaychat.server.process import MMAP_THRESHOLD, TRIM_THRESHOLD, keep_heap


class KeepHeap(SynchronousTestCase):
    def test_both_thresholds_are_fixed(self) -> None:
        calls: list[tuple[int, int]] = []
        self.assertTrue(keep_heap({}, lambda param, value: calls.append((param, value)) or 1))
        self.assertEqual(calls, [(process._M_MMAP_THRESHOLD, MMAP_THRESHOLD), (process._M_TRIM_THRESHOLD, TRIM_THRESHOLD)])

    def test_the_biggest_read_buffers_stay_under_the_mmap_threshold(self) -> None:
        from relaychat.cluster.node import READ_SIZE
        from relaychat.server.limits import Limits

        self.assertLess(READ_SIZE, MMAP_THRESHOLD)
        self.assertLess(Limits().max_read * 2, MMAP_THRESHOLD)  # a read, and its lines joined to an unfinished one

    def test_an_operators_own_setting_wins(self) -> None:
        for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
            calls: list[int] = []
            self.assertFalse(keep_heap({name: "131072"}, lambda param, value: calls.append(param) or 1))
            self.assertEqual(calls, [], name)

    def test_a_refusal_is_said(self) -> None:
        with capturedLogs() as events:
            self.assertFalse(keep_heap({}, lambda param, value: 0))
        self.assertEqual(len(events), 1)

    def test_glibc_takes_them(self) -> None:
        if platform.libc_ver()[0] != "glibc":
            raise self.skipTest("not glibc")  # type: ignore[misc]
        self.assertTrue(keep_heap({}))
