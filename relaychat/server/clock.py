"""The reactor's clock made monotonic, for the daemon.

Twisted's reactor measures every ``callLater`` with ``time.time``: a
change of the system clock (NTP stepping it, an operator, a resumed VM)
fires every pending time-out at once when the clock jumps forward, and
stops them all, for as long as the jump, when it goes back. The relay's
timers (the hub's tick, rate-limit wake-ups, close time-outs, autobahn's
handshake time-outs) measure durations, so the daemon's reactor reads
``time.monotonic`` instead. Calendar time, where a user sees it (mail
timestamps), comes from :attr:`Hub.wall <relaychat.server.hub.Hub>`.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def make_monotonic(reactor: Any, monotonic: Callable[[], float] = time.monotonic,
                   wall: Callable[[], float] = time.time) -> None:
    """Make ``reactor.seconds`` (and so every ``callLater``) monotonic.

    ``seconds`` is the reactor's public ``IReactorTime`` method; it is
    replaced on this reactor object only. Calls already pending keep their
    remaining delay (:meth:`IDelayedCall.reset`). Call it before anything
    that reads ``seconds`` to keep a time of day (nothing in relaychat does).
    """
    now = wall()
    pending = [(call, call.getTime() - now) for call in reactor.getDelayedCalls()]
    reactor.seconds = monotonic
    for call, remaining in pending:
        call.seconds = monotonic
        call.reset(max(0.0, remaining))
