"""How the console shows a cluster: every node's answers to one request, as text.

The answers come from :mod:`relaychat.cluster.console` (each node's
:mod:`relaychat.admin.figures`, sent through Redis); this module only
lays them out, one node per column or section, the node names first.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from twisted.internet.defer import Deferred

from relaychat.admin.figures import TOTALLED, WHO_COLUMNS, Answers, count, duration, name_value_lines, table


class ClusterOperations(Protocol):
    """What the console needs of its node's part in the cluster (a :class:`~relaychat.cluster.console.ClusterConsole`)."""

    node: str

    def ask(self, verb: str, args: Optional[dict[str, Any]] = None) -> "Deferred[Answers]": ...
    def ban(self, kind: str, value: str, seconds: float) -> "Deferred[tuple[Optional[bytes], Answers]]": ...
    def unban(self, kind: str, value: str) -> "Deferred[tuple[list[tuple[str, str]], Answers]]": ...
    def release(self, canon: str) -> "Deferred[tuple[Optional[bytes], int]]": ...


def nodes_line(answers: Answers, here: str) -> str:
    """``nodes a (this one), b``, and how many did not answer."""
    names = [f"{n} (this one)" if n == here else n for n in sorted(answers.by_node)]
    line = f"{len(names)} nodes: {', '.join(names)}"
    if answers.silent:
        line += f"; {answers.silent} more did not answer in time"
    return line


def who_text(answers: Answers, here: str) -> str:
    rows, more = [], []
    online = connections = 0
    for node, answer in sorted(answers.by_node.items()):
        if not isinstance(answer, dict) or "users" not in answer:
            continue
        online += int(answer["online"])
        connections += int(answer["connections"])
        for display, address, connected, sessions, lines_in, bytes_in in answer["users"]:
            rows.append((display, node, address, duration(connected), str(sessions), count(lines_in), count(bytes_in)))
        if int(answer["online"]) > len(answer["users"]):
            more.append((f"... {int(answer['online']) - len(answer['users'])} more", node, "", "", "", "", ""))
    rows.sort(key=lambda row: (row[0].lower(), row[1]))
    rows.extend(more)
    head = f"{online} online, {connections} connections; {nodes_line(answers, here)}"
    return head + table((WHO_COLUMNS[0], "node", *WHO_COLUMNS[1:]), rows)


def stats_text(answers: Answers, here: str) -> str:
    sections = [nodes_line(answers, here)]
    for node, answer in sorted(answers.by_node.items()):
        if not isinstance(answer, dict) or "rows" not in answer:
            sections.append(f"== node {node}: {answer.get('error', 'no figures') if isinstance(answer, dict) else '?'}")
            continue
        sections.append(f"== node {node}" + (" (this one)" if node == here else ""))
        sections.append(name_value_lines([(str(name), str(value)) for name, value in answer["rows"]]))
    sections.append("== cluster total")
    totals = [(name, count(answers.sum(name, within="numbers"))) for name in TOTALLED]
    totals.extend((name, count(value)) for name, value in sorted(answers.shared.items()))
    sections.append(name_value_lines(totals))
    return "\n".join(sections)


def per_node(answers: Answers, field: str) -> str:
    """``a: 0, b: 1`` for one number in every node's answer."""
    return ", ".join(f"{node}: {answer.get(field, '?') if isinstance(answer, dict) else '?'}"
                     for node, answer in sorted(answers.by_node.items()))
