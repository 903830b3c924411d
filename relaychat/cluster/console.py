"""The operator console across a cluster: every node's users and figures; kick, ban, unban
and notice for a user on any node. Through Redis only:

``rc:admin`` (channel)
    the consoles' requests, heard by every node: ``Q <id> <from-node> <verb> <json>``
``rc:admin:<node>`` (channel)
    the answers for the console on ``node``: ``A <id> <answering-node> <json>``
``rc:bans`` (sorted set)
    ``"<kind> <value>"`` scored by the wall-clock second the ban ends. Redis's
    append-only file keeps it; every node loads it whenever it (re)connects,
    so a ban holds on every node, on a node started later, across a Redis
    restart, and the hub checks it locally with no round trip per login.

A ban is stored and its request published in one Lua step (:data:`BAN`,
:data:`UNBAN`): no node hears of a ban that is not stored, and a node that
was away when it came reloads the set. ``PUBLISH`` answers how many nodes
heard a request; the console waits for that many answers, at most
:data:`ANSWER_TIMEOUT` seconds, and says how many stayed silent.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from relaychat.admin.figures import Answers, numbers, stats_rows, who_rows
from relaychat.cluster.scripts import MAIL_EXPIRY, mail_keys
from relaychat.server.bans import key_id
from relaychat.server.connection import Life
from relaychat.server.hub import Hub
from relaychat.wire.errors import Bye, Closed
from relaychat.wire.messages import Notice
from relaychat.wire.nicknames import skeleton
from relaychat.wire.refusals import ban_text

log = Logger(namespace="relaychat.cluster")

ADMIN = b"rc:admin"
BANS = b"rc:bans"
ANSWER_TIMEOUT = 3.0  # seconds a console waits for the other nodes
WHO_LIMIT = 1000  # users one node lists for one who(); the count says how many more
_BAN_KINDS = ("nick", "key", "address")


def answers_channel(node: str) -> bytes:
    return ADMIN + b":" + node.encode("ascii")


BAN = b"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for i = 5, #ARGV do redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) end
return redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
"""KEYS: bans. ARGV: until, now (wall-clock seconds), channel, request, then each "kind value".
Returns how many nodes heard the request."""

UNBAN = b"""
local out = {}
for i = 3, #ARGV do table.insert(out, redis.call('ZREM', KEYS[1], ARGV[i])) end
table.insert(out, redis.call('PUBLISH', ARGV[1], ARGV[2]))
return out
"""
"""KEYS: bans. ARGV: channel, request, then each "kind value". Returns 1 or 0 for each (it was
there), then how many nodes heard the request."""


RELEASE = b"""
local identity = redis.call('HGET', KEYS[1], 'identity')
if not identity then return false end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local ids = redis.call('HKEYS', KEYS[3])
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[5], ARGV[1] .. ' ' .. id) end
redis.call('DEL', KEYS[3], KEYS[4])
return {identity, #ids}
"""
"""KEYS: binding, skeleton, mail hash, quota hash, mail expiry. ARGV: canonical. Frees the
nickname and deletes the mail sealed to its old key, in one step; {identity, mail deleted}
or nil if it was not bound."""


class ClusterConsole:
    """One node's part of the cluster-wide console: it asks the others, and answers them.

    :param call: sends one Redis command (the node's command connection).
    :param find: the cluster's registry look-up (a nickname's binding, or None).
    """

    def __init__(self, hub: Hub, node: str, call: Callable[..., "Deferred[Any]"],
                 find: Callable[[str], "Deferred[Any]"], reactor: Any, wall: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.node = node
        self._call = call
        self._find = find
        self.reactor = reactor
        self.wall = wall
        self.channels = (ADMIN, answers_channel(node))
        self._ids = 0
        self._waiting: dict[str, tuple[Deferred[Answers], dict[str, Any], list[int], Any]] = {}

    # -- asking (the console on this node) ------------------------------------------

    def ask(self, verb: str, args: Optional[dict[str, Any]] = None) -> "Deferred[Answers]":
        """Every node's answer to ``verb`` (``who``, ``stats``, ``kick``, ``notice``)."""
        request_id, payload = self._request(verb, args or {})
        answers = self._gather(request_id, self._call(b"PUBLISH", ADMIN, payload))
        if verb == "stats":
            answers.addCallback(self._shared_figures)
        return answers

    def _shared_figures(self, answers: Answers) -> "Deferred[Answers]":
        """What no node holds alone: the mail waiting in Redis (its expiry index has one entry a mail)."""
        def counted(waiting: Any) -> Answers:
            answers.shared["mail waiting"] = int(waiting)
            return answers
        return self._call(b"ZCARD", MAIL_EXPIRY).addCallback(counted)

    def ban(self, kind: str, value: str, seconds: float) -> "Deferred[tuple[Optional[bytes], Answers]]":
        """Ban ``value`` everywhere for ``seconds`` (a nickname with the key it is bound to);
        fires with that key (or None) and the nodes' answers (connections each closed)."""
        @defer.inlineCallbacks
        def ban() -> Any:
            key = yield self._bound_key(kind, value)
            bans = [[kind, value]] + ([["key", key_id(key)]] if key is not None else [])
            now = self.wall()
            args = {"bans": bans, "until": now + seconds}
            request_id, payload = self._request("ban", args)
            heard = self._call(b"EVAL", BAN, 1, BANS, repr(now + seconds), repr(now), ADMIN, payload,
                               *[f"{k} {v}" for k, v in bans])
            answers = yield self._gather(request_id, heard)
            return key, answers
        return ban()

    def unban(self, kind: str, value: str) -> "Deferred[tuple[list[tuple[str, str]], Answers]]":
        """Lift a ban everywhere (a nickname's with its key's); fires with the bans there were."""
        @defer.inlineCallbacks
        def unban() -> Any:
            key = yield self._bound_key(kind, value)
            bans = [(kind, value)] + ([("key", key_id(key))] if key is not None else [])
            request_id, payload = self._request("unban", {"bans": bans})
            members = [f"{k} {v}" for k, v in bans]
            lifted: list[tuple[str, str]] = []

            def heard(reply: list[Any]) -> int:
                lifted.extend(ban for ban, there in zip(bans, reply) if int(there))
                return int(reply[-1])
            answers = yield self._gather(request_id, self._call(b"EVAL", UNBAN, 1, BANS, ADMIN, payload, *members)
                                         .addCallback(heard))
            return lifted, answers
        return unban()

    def release(self, canon: str) -> "Deferred[tuple[Optional[bytes], int]]":
        """Free ``canon`` for any key, whichever node its holder is on (who is kicked); fires with
        the identity key it was bound to (None if none) and how much waiting mail was deleted."""
        @defer.inlineCallbacks
        def release() -> Any:
            yield self.ask("kick", {"nick": canon, "reason": "your nickname was released by the operator"})
            mail, quota = mail_keys(canon)
            reply = yield self._call(b"EVAL", RELEASE, 5, b"rc:bind:" + canon.encode("ascii"),
                                     b"rc:skel:" + skeleton(canon).encode("ascii"), mail, quota, MAIL_EXPIRY, canon)
            if not reply:
                return None, 0
            return bytes(reply[0]), int(reply[1])
        return release()

    def _bound_key(self, kind: str, value: str) -> "Deferred[Optional[bytes]]":
        if kind != "nick":
            return defer.succeed(None)
        return self._find(value).addCallback(lambda binding: binding.identity_pub if binding is not None else None)

    def _request(self, verb: str, args: dict[str, Any]) -> tuple[str, bytes]:
        self._ids += 1
        request_id = f"{self.node}-{self._ids}"
        return request_id, f"Q {request_id} {self.node} {verb} {json.dumps(args)}".encode("ascii")

    def _gather(self, request_id: str, heard: "Deferred[Any]") -> "Deferred[Answers]":
        """Once PUBLISH says how many nodes heard ``request_id``: wait for that many answers."""
        done: Deferred[Answers] = Deferred()
        by_node: dict[str, Any] = {}
        expected = [0]
        timeout = self.reactor.callLater(ANSWER_TIMEOUT, self._finish, request_id)
        self._waiting[request_id] = (done, by_node, expected, timeout)

        def counted(receivers: Any) -> None:
            expected[0] = int(receivers)
            if len(by_node) >= expected[0]:
                self._finish(request_id)

        def failed(failure: Any) -> None:
            pending = self._waiting.pop(request_id, None)
            if pending is not None:
                pending[3].cancel()
                pending[0].errback(failure)

        heard.addCallbacks(counted, failed)
        return done

    def _finish(self, request_id: str) -> None:
        pending = self._waiting.pop(request_id, None)
        if pending is None:
            return
        done, by_node, expected, timeout = pending
        if timeout.active():
            timeout.cancel()
        done.callback(Answers(by_node, max(0, expected[0] - len(by_node))))

    # -- hearing (every node) --------------------------------------------------------

    def message(self, channel: bytes, payload: bytes) -> None:
        try:
            kind, request_id, node, rest = payload.decode("ascii").split(" ", 3)
        except (UnicodeDecodeError, ValueError):
            return
        if channel == ADMIN and kind == "Q":
            verb, _, args = rest.partition(" ")
            try:
                answer = self._answer(verb, json.loads(args or "{}"))
            except (ValueError, KeyError, TypeError) as e:
                answer = {"error": f"{type(e).__name__}: {e}"}
            reply = f"A {request_id} {self.node} {json.dumps(answer)}".encode("ascii")
            self._call(b"PUBLISH", answers_channel(node), reply).addErrback(lambda _: None)
        elif kind == "A" and request_id in self._waiting:
            _, by_node, expected, _ = self._waiting[request_id]
            try:
                by_node[node] = json.loads(rest)
            except ValueError:
                by_node[node] = {"error": "an answer that is not JSON"}
            if expected[0] and len(by_node) >= expected[0]:
                self._finish(request_id)

    def _answer(self, verb: str, args: dict[str, Any]) -> Any:
        hub, now = self.hub, self.reactor.seconds()
        if verb == "who":
            return {"users": who_rows(hub, now, WHO_LIMIT), "online": len(hub.online), "connections": len(hub.clients)}
        if verb == "stats":
            return {"rows": stats_rows(hub, now, own_store=False), "numbers": numbers(hub)}
        if verb == "kick":
            client = hub.online.get(str(args["nick"]))
            if client is None:
                return {"kicked": 0}
            hub.dismiss(client, Bye.KICKED, str(args["reason"]), session_reason=Closed.KICKED)
            return {"kicked": 1}
        if verb == "notice":
            return {"sent": hub.broadcast(Notice(str(args["text"])))}
        if verb == "ban":
            left = float(args["until"]) - self.wall()
            for kind, value in args["bans"]:
                if kind in _BAN_KINDS and left > 0:
                    hub.bans.add(kind, str(value), now + left)
            return {"kicked": self.enforce()}
        if verb == "unban":
            for kind, value in args["bans"]:
                hub.bans.remove(str(kind), str(value))
            return {}
        raise ValueError(f"no such request {verb!r}")

    def enforce(self) -> int:
        """Close every connection here that a ban in force matches; returns how many."""
        hub, now = self.hub, self.reactor.seconds()
        bans = hub.bans
        closed = 0
        for client in [c for c in hub.clients if c.life is Life.OPEN]:
            which = None
            if bans.banned("address", client.address, now):
                which, value = "address", client.address
            elif client.nick is not None and bans.banned("nick", client.nick, now):
                which, value = "nick", client.nick
            elif client.identity_pub is not None and bans.banned("key", key_id(client.identity_pub), now):
                which, value = "key", key_id(client.identity_pub)
            if which is not None:
                hub.dismiss(client, Bye.BANNED, ban_text(which, bans.remaining(which, value, now)),
                            session_reason=Closed.KICKED)
                closed += 1
        return closed

    def reload(self) -> "Deferred[Any]":
        """Make this node's bans the cluster's (after (re)connecting), and apply them."""
        now = self.wall()

        def loaded(reply: Any) -> None:
            here = self.reactor.seconds()
            for kind, value in list(self.hub.bans.active(here)):
                self.hub.bans.remove(kind, value)
            items = list(reply or [])
            for member, until in zip(items[0::2], items[1::2]):
                kind, _, value = bytes(member).decode("utf-8", "replace").partition(" ")
                if kind in _BAN_KINDS:
                    self.hub.bans.add(kind, value, here + float(until) - now)
            closed = self.enforce()
            if closed:
                log.info("relaychat: cluster: {closed} connections closed by bans set while this node was away",
                         closed=closed)

        d = self._call(b"ZRANGEBYSCORE", BANS, repr(now), b"+inf", b"WITHSCORES")
        return d.addCallback(loaded)

