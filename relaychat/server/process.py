"""Limits of the process itself: open files for ``max_connections``.

Every connection is a file descriptor. A soft ``RLIMIT_NOFILE`` of 1024
(the usual default) under a ``max_connections`` of 20,000 means that past
about a thousand clients the kernel refuses ``accept`` and clients are
dropped without a word; so at start the soft limit is raised towards the
hard one (which only root, or systemd's ``LimitNOFILE=``, can raise), and
if that is still short the log says so, naming both limits.
"""

from __future__ import annotations

import resource
from typing import Callable

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
