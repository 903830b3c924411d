"""Limits of the process itself: open files for ``max_connections``, and a
heap that keeps its buffers (:func:`keep_heap`).

Every connection is a file descriptor. A soft ``RLIMIT_NOFILE`` of 1024
(the usual default) under a ``max_connections`` of 20,000 means that past
about a thousand clients the kernel refuses ``accept`` and clients are
dropped without a word; so at start the soft limit is raised towards the
hard one (which only root, or systemd's ``LimitNOFILE=``, can raise), and
if that is still short the log says so, naming both limits.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Callable, Mapping, Optional

from twisted.logger import Logger

log = Logger(namespace="relaychat")

SPARE_FILES = 64
"""Descriptors beside the connections: listening sockets, the database, logs, the console."""


def raise_open_files(max_connections: int,
                     getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
                     setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit) -> tuple[int, int]:
    """Raise the soft open-file limit as far as allowed; return ``(soft, hard)`` as they now are."""
    needed = max_connections + SPARE_FILES
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    target = max(soft, needed) if hard == infinite else hard
    if soft != infinite and target > soft:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warn("relaychat: cannot raise the open-file limit from {soft} to {target}: {error}",
                     soft=soft, target=target, error=e)
    if soft != infinite and soft < needed:
        log.warn(
            "relaychat: max_connections = {wanted} needs about {needed} open files, but the limit is {soft} "
            "(hard limit {hard}): raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower "
            "limits.max_connections",
            wanted=max_connections, needed=needed, soft=soft, hard="unlimited" if hard == infinite else hard,
        )
    return soft, hard


# glibc's mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 << 20
"""Allocations up to this come from the heap: a read of ``max_read``, a
decrypted run, a cluster node's 1-MiB Redis read."""
TRIM_THRESHOLD = 8 << 20
"""Free memory at the top of the heap kept, not given back to the kernel."""


def keep_heap(environ: Mapping[str, str] = os.environ,
              mallopt: Optional[Callable[[int, int], int]] = None) -> bool:
    """Stop glibc's malloc from giving back, and faulting in again, the
    buffers of every turn; True if it was tuned.

    A bulk turn allocates a few buffers of 64 KiB to 1 MiB (a read of up
    to ``max_read``, its lines joined, a batch for Redis) and frees them
    at once. glibc serves blocks over its mmap threshold (128 KiB at
    first, then moving with what was freed) with fresh ``mmap``\\s and
    trims the heap's top past its trim threshold, so the same memory
    was unmapped and faulted in page by page turn after turn: measured
    (bench/README.rst, "Reading more per turn"), 170 to 560 page faults
    per MB relayed and relay CPU per MB 0.9 to 1.4 ms, against none and
    0.6 with fixed thresholds. Fixing them (which also turns glibc's
    moving thresholds off) costs at most :data:`TRIM_THRESHOLD` of
    freed memory kept in the process. Anyone who set glibc's own
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` keeps theirs;
    elsewhere than glibc nothing happens.
    """
    if "MALLOC_MMAP_THRESHOLD_" in environ or "MALLOC_TRIM_THRESHOLD_" in environ:
        return False
    if mallopt is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not tuned:
        log.warn("relaychat: glibc's malloc refused its thresholds; bulk reads may cost page faults")
    return tuned
