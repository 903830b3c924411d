"""What an operator can do from the admin console, as plain Python over a live hub.

The console is a Python shell; these helpers are its documented verbs.
They are ordinary objects over a :class:`~relaychat.server.hub.Hub`, the
:class:`~relaychat.config.Config`, a clock and the daemon's service tree,
so they are tested without SSH. Each returns a :class:`Text`, which the
shell prints as readable lines rather than a quoted string.

Everything shown is metadata the relay already holds: nicknames,
addresses, counts and byte totals. The relay never sees message contents
and nothing here tries to.

Every action that changes something is logged with the admin's name (the
SSH key fingerprint it logged in with).
"""

from __future__ import annotations

import inspect
import ipaddress
import pydoc
import time
from typing import Any, Callable, Optional, Union

from twisted.application.service import IServiceCollection
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.admin.figures import (Answers, WHO_COLUMNS, all_sessions, count as _count, duration as _duration, name_value_lines,
                                     stats_rows, table, who_rows)
from relaychat.admin.cluster_view import ClusterOperations, per_node, stats_text, who_text
from relaychat.config import Config
from relaychat.server.bans import key_id
from relaychat.server.drain import Drainer, DrainState
from relaychat.server.hub import DEFAULT_DRAIN_TEXT, Hub
from relaychat.server.operator import DEFAULT_KICK_REASON, Operator
from relaychat.wire.nicknames import canonical
from relaychat.wire.errors import ProtocolError

log = Logger(namespace="relaychat.admin")



class Text(str):
    """A helper's answer: a string that the shell shows as itself, not quoted."""

    def __repr__(self) -> str:
        return str(self)


Answer = Union[Text, "Deferred[Text]"]
"""A helper's answer: its text, or, for a cluster-wide helper, the text once the nodes have answered."""


class Console:
    """The helpers, bound to one relay and to the admin using them (for the log).

    :param now: the time, in the clock the hub is given (``reactor.seconds``).
    :param daemon: the daemon's service tree (``daemon`` in the shell).
    :param drainer: the daemon's drain, for ``drain`` and ``undrain``.
    :param admin: who is acting, as written in the log.
    """

    HELPERS = ("who", "sessions", "stats", "bans", "kick", "ban", "unban", "release", "notice", "drain",
               "undrain", "help")

    def __init__(self, hub: Hub, config: Config, now: Callable[[], float],
                 daemon: Optional[IServiceCollection] = None, drainer: Optional[Drainer] = None,
                 admin: str = "local", cluster: Optional[ClusterOperations] = None) -> None:
        self.hub = hub
        self.cluster = cluster  # a cluster node's: who, stats, kick, ban, unban and notice act cluster-wide
        self.operator = Operator(hub)
        self.config = config
        self.now = now
        self.daemon = daemon
        self.drainer = drainer
        self.admin = admin

    def namespace(self) -> dict[str, Any]:
        """The shell's globals: the live objects, and each helper by name."""
        names: dict[str, Any] = {
            "relay": self.hub,
            "registry": self.hub.registry,
            "config": self.config,
            "daemon": self.daemon,
            "console": self,
        }
        for name in self.HELPERS:
            names[name] = getattr(self, name)
        return names

    # -- looking ----------------------------------------------------------------

    def who(self) -> Answer:
        """Who is online: nickname, address, time connected, sessions, lines and bytes sent.

        In a cluster: every node's users, with the node each is on.
        """
        if self.cluster is not None:
            cluster = self.cluster
            return self._across(cluster.ask("who"), lambda answers: who_text(answers, cluster.node), "who")
        rows = [_who_cells(row) for row in who_rows(self.hub, self.now(), len(self.hub.online))]
        head = f"{len(rows)} online, {len(self.hub.clients)} connections"
        return Text(head + table(WHO_COLUMNS, rows))

    def sessions(self) -> Text:
        """Every session and offer: who with whom, age, frames and bytes relayed. Never contents."""
        now = self.now()
        every = all_sessions(self.hub.clients)
        rows = [
            (s.sid.decode("ascii")[:8], s.initiator.display or "?", s.responder.display or "?",
             "open" if s.open else "offered", _duration(now - s.created), _count(s.frames), _count(s.bytes))
            for s in every
        ]
        opened = sum(1 for s in every if s.open)
        head = f"{opened} open, {len(every) - opened} offered"
        return Text(head + table(("session", "from", "to", "state", "age", "frames", "bytes"), rows))

    def stats(self) -> Answer:
        """Uptime, connections, sessions, frames and bytes relayed, errors: totals only.

        In a cluster: each node's figures, then the cluster's totals.
        """
        if self.cluster is not None:
            cluster = self.cluster
            return self._across(cluster.ask("stats"), lambda answers: stats_text(answers, cluster.node), "stats")
        return Text(name_value_lines(stats_rows(self.hub, self.now())))

    def bans(self) -> Text:
        """The bans in force and how long each has left."""
        now = self.now()
        active = sorted(self.hub.bans.active(now).items())
        rows = [(kind, value, _duration(until - now), _clock(until, now)) for (kind, value), until in active]
        return Text(f"{len(rows)} bans" + table(("kind", "value", "left", "until (UTC)"), rows))

    # -- acting -------------------------------------------------------------------

    def kick(self, nick: str, reason: str = DEFAULT_KICK_REASON) -> Answer:
        """Disconnect ``nick`` now, telling it ``reason``; its peers see their sessions end.

        In a cluster: on whichever node it is.
        """
        name = _nickname(nick)
        if self.cluster is not None:
            def kicked(answers: Answers) -> str:
                on = [node for node, a in sorted(answers.by_node.items()) if isinstance(a, dict) and a.get("kicked")]
                return f"kicked {name} on node {', '.join(on)}" if on else f"{name} is not online on any node"
            return self._across(self.cluster.ask("kick", {"nick": name, "reason": str(reason)}), kicked,
                                "kick {nick} ({reason!r})", nick=name, reason=reason)
        done = self.operator.kick(name, reason)
        outcome = f"kicked {name}" if done else f"{name} is not online"
        self._record("kick {nick} ({reason!r}): {outcome}", nick=name, reason=reason, outcome=outcome)
        return Text(outcome)

    def ban(self, target: str, seconds: float) -> Answer:
        """Ban a nickname or an IP address for ``seconds``; whoever matches is disconnected now.

        A banned nickname cannot register, nor can the identity key it is
        bound to (under any nickname); a banned address cannot connect;
        until the ban ends (or :meth:`unban`).
        """
        kind, value = _target(target)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError("seconds must be a number")
        if not 0 < seconds < float("inf"):
            raise ValueError("seconds must be positive and finite")
        now = self.now()
        if self.cluster is not None:
            def banned(result: tuple[Optional[bytes], Answers]) -> str:
                key, answers = result
                also = f" with its identity key {key_id(key)}" if key is not None else ""
                return (f"banned {kind} {value}{also} on every node for {_duration(seconds)} (until "
                        f"{_clock(now + seconds, now)} UTC); {answers.sum('kicked')} connections closed "
                        f"({per_node(answers, 'kicked')})" + _silent(answers))
            return self._across(self.cluster.ban(kind, value, float(seconds)), banned,
                                "ban {kind} {value} for {seconds}s", kind=kind, value=value, seconds=seconds)
        kicked = self.operator.ban(kind, value, float(seconds), now)
        key = self.operator.bound_key(value) if kind == "nick" else None
        also = f" with its identity key {key_id(key)}" if key is not None else ""
        outcome = (f"banned {kind} {value}{also} for {_duration(seconds)} (until {_clock(now + seconds, now)} UTC); "
                   f"{kicked} connections closed")
        self._record("ban {kind} {value} for {seconds}s: {outcome}", kind=kind, value=value, seconds=seconds,
                     outcome=outcome)
        return Text(outcome)

    def unban(self, target: str) -> Answer:
        """Lift the ban on a nickname (and on its identity key) or an IP address."""
        kind, value = _target(target)
        if self.cluster is not None:
            def unbanned(result: tuple[list[tuple[str, str]], Answers]) -> str:
                lifted, answers = result
                return ("unbanned " + " and ".join(f"{k} {v}" for k, v in lifted) + " on every node" if lifted
                        else f"no ban on {kind} {value}") + _silent(answers)
            return self._across(self.cluster.unban(kind, value), unbanned, "unban {kind} {value}",
                                kind=kind, value=value)
        lifted = self.operator.unban(kind, value)
        outcome = "unbanned " + " and ".join(f"{k} {v}" for k, v in lifted) if lifted else f"no ban on {kind} {value}"
        self._record("unban {kind} {value}: {outcome}", kind=kind, value=value, outcome=outcome)
        return Text(outcome)

    def release(self, nick: str) -> Answer:
        """Free ``nick`` for a new key, when its owner has lost theirs.

        Whoever holds the nickname now is disconnected, mail waiting for it
        (sealed to the lost key, unreadable by the new one) is deleted, and
        the next REGISTER with any key claims it as new. The owner's
        contacts will see a key change for that name: tell them why.
        """
        name = _nickname(nick)
        if self.cluster is not None:
            return self._across(self.cluster.release(name), lambda result: _released(name, *result),
                                "release {nick}", nick=name)
        outcome = _released(name, *self.operator.release(name))
        self._record("release {nick}: {outcome}", nick=name, outcome=outcome)
        return Text(outcome)

    def notice(self, text: str) -> Answer:
        """Send one line of ``text`` to every registered client (of every node, in a cluster)."""
        if self.cluster is not None:
            def sent(answers: Answers) -> str:
                return f"notice sent to {answers.sum('sent')} clients ({per_node(answers, 'sent')})" + _silent(answers)
            return self._across(self.cluster.ask("notice", {"text": str(text)}), sent, "notice {text!r}", text=text)
        count = self.operator.notice(text)
        outcome = f"notice sent to {count} clients"
        self._record("notice {text!r}: {outcome}", text=text, outcome=outcome)
        return Text(outcome)

    def drain(self, text: str = DEFAULT_DRAIN_TEXT, stop: bool = True, grace: Optional[float] = None) -> Text:
        """Graceful restart: tell clients ``text``, let sessions end, then stop.

        Every client gets ``text`` as a NOTICE; clients without a session
        are let go now (``BYE draining <text>``), the others when their
        last session ends, and whoever is left when ``grace`` seconds are
        over (default ``relay.drain_grace``) is closed. Meanwhile the
        listeners stay open and answer newcomers ``BYE draining <text>``.
        With ``stop`` (the default) the daemon then stops, exit status 0,
        for its supervisor to start the new version; without it, it stays
        up refusing everyone until ``undrain()``.
        """
        drainer = self._drainer()
        if drainer.state is not DrainState.SERVING:
            return Text(f"already {drainer.state.value}; {len(self.hub.clients)} connections left")
        grace = drainer.grace if grace is None else float(grace)
        self._record("drain ({text!r}, stop={stop}, grace={grace}s): {clients} connections open",
                     text=text, stop=stop, grace=grace, clients=len(self.hub.clients))
        over = drainer.drain(text, grace=grace, stop=stop)
        then = "the daemon stops" if stop else "the relay refuses everyone until undrain()"
        if over.called:  # fired at once: nobody was connected
            return Text(f"drained: no connections left; {then} now")
        return Text(f"draining: {len(self.hub.clients)} connections left; {then} when the last one "
                    f"closes, or in {_duration(grace)}")

    def undrain(self) -> Text:
        """Take a drain back (one not yet stopping the daemon): serve everyone again."""
        done = self._drainer().undrain()
        outcome = "serving again" if done else "not draining"
        self._record("undrain: {outcome}", outcome=outcome)
        return Text(outcome)

    def help(self, topic: Any = None) -> Text:
        """This list; or ``help(x)``, the documentation of ``x``.

        It replaces the built-in ``help``, whose interactive mode would
        block the relay's reactor waiting on a terminal it does not have.
        """
        if topic is not None:
            return Text(pydoc.render_doc(topic, renderer=pydoc.plaintext))  # type: ignore[attr-defined]  # pydoc's stub omits its text renderer
        lines = ["The relay: relay (the hub), registry, config, daemon (its services). Helpers:"]
        for name in self.HELPERS:
            method = getattr(self, name)
            summary = (method.__doc__ or "").strip().splitlines()[0].replace("``", "")
            lines.append(f"  {name}{_signature(method)}")
            lines.append(f"      {summary}")
        lines.append("Code typed here runs inside the relay: a blocking call stops it.")
        return Text("\n".join(lines))

    # -- plumbing -----------------------------------------------------------------

    def _drainer(self) -> Drainer:
        if self.drainer is None:
            raise RuntimeError("this console has no daemon to drain")
        return self.drainer

    def _across(self, asked: "Deferred[Any]", show: Callable[[Any], str], action: str, **fields: Any) -> "Deferred[Text]":
        """A cluster-wide helper's answer: the text once the nodes have answered (the shell
        prints it then), logged like any helper's; Redis unreachable is said, not raised."""
        def done(result: Any) -> Text:
            outcome = show(result)
            if action not in ("who", "stats"):
                self._record(action + ": {outcome}", outcome=outcome, **fields)
            return Text(outcome)

        def failed(failure: Failure) -> Text:
            outcome = f"the cluster cannot be reached ({failure.getErrorMessage()}); nothing done"
            if action not in ("who", "stats"):
                self._record(action + ": {outcome}", outcome=outcome, **fields)
            return Text(outcome)
        return asked.addCallbacks(done, failed)

    def _record(self, format: str, **fields: Any) -> None:
        log.info("admin {admin}: " + format, admin=self.admin, **fields)


def _released(name: str, key: Optional[bytes], deleted: int) -> str:
    if key is None:
        return f"{name} is not bound to any key"
    return f"released {name} (was identity key {key_id(key)}); {deleted} waiting mail deleted"


def _silent(answers: Answers) -> str:
    return f"; {answers.silent} nodes did not answer in time" if answers.silent else ""


def _target(target: str) -> tuple[str, str]:
    """``("address", ip)`` for an IP address, else ``("nick", canonical nickname)``."""
    if not isinstance(target, str):
        raise TypeError("give a nickname or an IP address as a string")
    try:
        return "address", str(ipaddress.ip_address(target.strip()))
    except ValueError:
        return "nick", _nickname(target)


def _nickname(nick: str) -> str:
    if not isinstance(nick, str):
        raise TypeError("give a nickname as a string")
    try:
        return canonical(nick.strip())
    except ProtocolError as e:
        raise ValueError(f"{nick!r} is not a nickname: {e.text}") from None


def _who_cells(row: list[Any]) -> tuple[str, ...]:
    display, address, connected, sessions, lines_in, bytes_in = row
    return (display, address, _duration(connected), str(sessions), _count(lines_in), _count(bytes_in))


def _clock(when: float, now: float) -> str:
    """A wall-clock time for ``when``, given in the hub's clock whose present is ``now``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + (when - now)))


def _signature(method: Callable[..., Any]) -> str:
    """``(nick, reason='...')``: the call as typed, without type annotations."""
    signature = inspect.signature(method)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))
