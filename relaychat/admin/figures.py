"""What one relay says of itself to the operator: its users and its figures, as plain data
(and the few ways the console lays such data out).

The console shows these for its own relay; in a cluster every node sends
its own through Redis (:mod:`relaychat.cluster.console`) and the console
that asked shows them all. Plain lists, dicts, strings and numbers, so
they travel as JSON unchanged. Metadata only, never contents.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from relaychat.server.connection import Connection, Session
from relaychat.server.hub import Hub

WHO_COLUMNS = ("nick", "address", "connected", "sessions", "lines in", "bytes in")

TOTALLED = ("connections now", "connections since start", "online", "registrations", "sessions open",
            "sessions offered", "sessions opened", "frames relayed", "bytes relayed", "mail stored", "errors",
            "disconnects for violations")
"""The figures that add up across nodes (the cluster's totals)."""


def who_rows(hub: Hub, now: float, limit: int) -> list[list[Any]]:
    """Up to ``limit`` users online here, by nickname: display, address, seconds connected,
    sessions, lines and bytes in."""
    online = sorted(hub.online.values(), key=lambda c: c.nick or "")[:limit]
    return [[c.display or "?", c.address, now - c.connected_at, len(c.sessions), c.lines_in, c.bytes_in]
            for c in online]


def all_sessions(clients: Iterable[Connection]) -> list[Session]:
    """Every session once (each is held by both its clients), oldest first."""
    seen: dict[bytes, Session] = {}
    for client in clients:
        seen.update(client.sessions)
    return sorted(seen.values(), key=lambda s: s.created)


def numbers(hub: Hub) -> dict[str, int]:
    """The figures that add up across nodes, by the names in :data:`TOTALLED`."""
    stats = hub.stats
    every = all_sessions(hub.clients)
    opened = sum(1 for s in every if s.open)
    values = {
        "connections now": len(hub.clients),
        "connections since start": stats.connections_total,
        "online": len(hub.online),
        "registrations": stats.registrations,
        "sessions open": opened,
        "sessions offered": len(every) - opened,
        "sessions opened": stats.sessions_opened,
        "frames relayed": stats.frames,
        "bytes relayed": stats.bytes,
        "mail stored": stats.mail_stored,
        "errors": stats.errors,
        "disconnects for violations": stats.disconnects_for_violations,
    }
    assert tuple(values) == TOTALLED
    return values


def stats_rows(hub: Hub, now: float, own_store: bool = True) -> list[tuple[str, str]]:
    """This relay's figures as the console shows them: (name, value) lines.

    :param own_store: whether bindings and mail are in this relay's own store
        (not a cluster's Redis); if not, the store's counts are left out.
    """
    stats, n = hub.stats, numbers(hub)
    rows = [
        ("uptime", duration(now - stats.started)),
        ("connections", f"{n['connections now']} now, {count(n['connections since start'])} since start"),
        ("online", str(n["online"])),
        ("registrations", count(n["registrations"])),
        ("sessions", f"{n['sessions open']} open, {n['sessions offered']} offered, "
                     f"{count(n['sessions opened'])} opened since start"),
        ("frames relayed", count(n["frames relayed"])),
        ("bytes relayed", count(n["bytes relayed"])),
        ("mail stored", count(n["mail stored"])),
        ("errors", f"{count(n['errors'])} ({count(n['disconnects for violations'])} disconnects for violations)"),
        ("bans", str(len(hub.bans.active(now)))),
        ("draining", "yes" if hub.draining else "no"),
        ("storage", f"{hub.store.health.value} ({count(stats.storage_errors)} requests refused as unavailable)"),
    ]
    if own_store:
        rows.append(("mail held", f"{count(hub.store.mail_bytes)} of {count(hub.mail.mail_bytes_total)} bytes"))
        rows.append(("nicknames", f"{count(hub.store.binding_total)} of {count(hub.names.max_nicknames)}"))
    rows.extend((name, count(value)) for name, value in sorted(stats.extra.items()))
    return rows


def name_value_lines(rows: Sequence[tuple[str, str]]) -> str:
    """``name  value`` lines, the names in one column."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Left-aligned columns under a header, or nothing when there are no rows."""
    if not rows:
        return ""
    widths = [max(len(str(cell)) for cell in column) for column in zip(head, *rows)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths)).rstrip() for line in (head, *rows)]
    return "\n" + "\n".join(lines)


def count(number: int) -> str:
    return f"{number:,}"


def duration(seconds: float) -> str:
    """``1d 2h 3m 4s``, shortest first unit: an operator reads it at a glance."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{value}{unit}" for value, unit in parts)


class Answers:
    """What the nodes of a cluster answered one console request: ``by_node`` (node name ->
    its answer, plain data) and how many nodes heard it but did not answer in time."""

    def __init__(self, by_node: dict[str, Any], silent: int = 0) -> None:
        self.by_node = by_node
        self.silent = silent
        self.shared: dict[str, int] = {}  # figures of what the nodes share (a cluster's Redis)

    def sum(self, field: str, within: Optional[str] = None) -> int:
        """``field`` of every answer (of its ``within`` part) added up."""
        total = 0
        for answer in self.by_node.values():
            part = answer.get(within, {}) if within is not None and isinstance(answer, dict) else answer
            if isinstance(part, dict):
                total += int(part.get(field, 0))
        return total
