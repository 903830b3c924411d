"""The hub's counters, for the operator's console and /metrics: totals only, never contents."""

from __future__ import annotations

from dataclasses import dataclass, field

from relaychat.wire.errors import Bye, Code


@dataclass
class Stats:
    """Kept by the hub and its components as they go; ``started`` is the hub's first (monotonic) time."""

    started: float
    connections_total: int = 0
    registrations: int = 0
    sessions_opened: int = 0
    frames: int = 0
    bytes: int = 0
    errors: int = 0
    disconnects_for_violations: int = 0
    mail_stored: int = 0
    storage_errors: int = 0
    errors_by_code: dict[Code, int] = field(default_factory=dict)  # ERR replies by code
    byes: dict[Bye, int] = field(default_factory=dict)  # why the relay ended connections
    extra: dict[str, int] = field(default_factory=dict)
