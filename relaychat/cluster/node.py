"""One relay as a node of a cluster over Redis: the thin txredisapi adapter.

What is shared lives in Redis, and every change that others must see is a
Lua script, so it is atomic and its event is published in the same step:

``rc:server_id``
    the cluster's relay id (``SET NX`` by the first node), used in every
    node's ``HELLO``, so a registration signed through one node is valid on all.
``rc:bind:<canonical>`` (hash), ``rc:skel:<skeleton>`` (string)
    the nickname bindings; :data:`BIND` checks the nickname and its
    skeleton and binds in one step, so two nodes racing for one nickname
    (or two look-alikes) with different keys cannot both win.
``rc:online`` (hash canonical -> "node token display identity")
    who is online where; :data:`JOIN` and :data:`LEAVE` change it and
    publish the ``J``/``L`` events of :mod:`relaychat.cluster.routing`.
``rc:node:<name>`` (``PX`` heartbeat), ``rc:nodes`` (set)
    which nodes live; every node refreshes its own key each second and runs
    :data:`SWEEP`, which withdraws the users of a node whose key expired.

Redis unreachable: commands fail at once with :class:`Unavailable` (the hub
answers ``ERR <CMD> unavailable``), the state change is logged once, and
Twisted's ``ClientService`` reconnects with back-off; on reconnecting the
node re-asserts its heartbeat and its users' presence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import txredisapi
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from relaychat.config import ClusterConfig
from relaychat.cluster.routing import Batches, Control, Credit, Lines, Presence, parse_batch, presence_value
from relaychat.server.connection import Connection
from relaychat.server.directory import RemoteUser, Unavailable
from relaychat.server.hub import Hub
from relaychat.server.registry import confused, judge_claim, taken
from relaychat.server.store import Binding, Mail
from relaychat.wire.codec import b64decode, b64encode
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.nicknames import canonical, skeleton

log = Logger(namespace="relaychat.cluster")

EVENTS = b"rc:events"
ONLINE = b"rc:online"
NODES = b"rc:nodes"
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL_MS = 3000  # a node silent this long is gone: noticed within ~4 s
REPLY_TIMEOUT = 5  # seconds; a Redis that stops answering is one that is down
OFFER_TIMEOUT = 5.0  # seconds for another node to answer an offer request
CREDIT_RETRY = 0.05  # seconds between looks at a congested reader that owes credit back
_CODES = {code.word: code for code in Code}


BIND = b"""
local cur = redis.call('HGET', KEYS[1], 'identity')
if cur then
  if cur ~= ARGV[3] then return {-1, redis.call('HGET', KEYS[1], 'display')} end
  redis.call('HSET', KEYS[1], 'static', ARGV[4], 'sig', ARGV[5])
  return {1, redis.call('HGET', KEYS[1], 'display'), redis.call('HGET', KEYS[1], 'created')}
end
local owner = redis.call('GET', KEYS[2])
if owner then return {-2, redis.call('HGET', 'rc:bind:' .. owner, 'display') or owner} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'display', ARGV[2], 'identity', ARGV[3], 'static', ARGV[4], 'sig', ARGV[5],
           'created', ARGV[6])
return {0, ARGV[2], ARGV[6]}
"""
"""KEYS: binding, skeleton. ARGV: canonical, display, identity, static, sig, created.
Returns {0 new | 1 reclaimed, display, created} or {-1 taken | -2 look-alike, display}."""

JOIN = b"""
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return false end
if ARGV[4] == '1' and old then return old end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local replaced = '-'
if old then replaced = string.match(old, '^%S+ (%S+)') or '-' end
redis.call('PUBLISH', ARGV[3], 'J ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. replaced)
return false
"""
"""KEYS: online. ARGV: canonical, value, channel, only-if-absent ('1' to re-assert
after reconnecting: returns the holder's value instead of replacing it)."""

LEAVE = b"""
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. ' ' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], 'L ' .. ARGV[1] .. ' ' .. string.match(cur, '^(%S+ %S+)'))
end
return 0
"""
"""KEYS: online. ARGV: canonical, "node token", channel."""

SWEEP = b"""
local gone = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if (node == ARGV[2] and ARGV[3] == '1') or redis.call('EXISTS', 'rc:node:' .. node) == 0 then
    gone[node] = true
    redis.call('SREM', KEYS[2], node)
  end
end
if next(gone) == nil then return 0 end
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local node, token = string.match(all[i + 1], '^(%S+) (%S+)')
  if node and gone[node] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', ARGV[1], 'L ' .. all[i] .. ' ' .. node .. ' ' .. token)
    n = n + 1
  end
end
for node, _ in pairs(gone) do redis.call('PUBLISH', ARGV[1], 'G ' .. node) end
return n
"""
"""KEYS: online, nodes. ARGV: channel, this node, '1' to withdraw this node's own
entries (at start-up: what a previous life of this node left)."""


DEPOSIT = b"""
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local size = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
if n >= tonumber(ARGV[4]) or size + string.len(ARGV[3]) > tonumber(ARGV[5]) then return -1 end
if tonumber(redis.call('HGET', KEYS[2], 's:' .. ARGV[1]) or '0') >= tonumber(ARGV[6]) then return -2 end
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], id, ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HINCRBY', KEYS[2], 'bytes', string.len(ARGV[3]))
redis.call('HINCRBY', KEYS[2], 's:' .. ARGV[1], 1)
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[7] .. ' ' .. id)
return id
"""
"""KEYS: mail hash, quota hash, id counter, expiry zset. ARGV: sender, created, body,
mail_per_recipient, mail_bytes_per_recipient, mail_per_sender, recipient. Returns
the id, or -1 (mailbox full) / -2 (sender's share full): the quotas and the write in one step."""

PENDING = b"""
local all = redis.call('HGETALL', KEYS[1])
local out, shown = {}, {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sender = string.sub(v, 1, string.find(v, ' ', 1, true) - 1)
  if shown[sender] == nil then shown[sender] = redis.call('HGET', 'rc:bind:' .. sender, 'display') or sender end
  table.insert(out, all[i]); table.insert(out, v); table.insert(out, shown[sender])
end
return out
"""
"""KEYS: mail hash. Returns id, "sender created body", the sender's display form, for each
mail waiting: MAIL events name people in their display form, as on one node."""

ACK = b"""
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local s1 = string.find(v, ' ', 1, true)
local s2 = string.find(v, ' ', s1 + 1, true)
local sender = string.sub(v, 1, s1 - 1)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'n', -1)
redis.call('HINCRBY', KEYS[2], 'bytes', -(string.len(v) - s2))
if redis.call('HINCRBY', KEYS[2], 's:' .. sender, -1) <= 0 then redis.call('HDEL', KEYS[2], 's:' .. sender) end
redis.call('ZREM', KEYS[3], ARGV[2] .. ' ' .. ARGV[1])
return 1
"""
"""KEYS: mail hash, quota hash, expiry zset. ARGV: id, recipient. 1 if it was there."""

MAIL_EXPIRY = b"rc:mail-expiry"
MAIL_IDS = b"rc:mail-id"


def _mail_keys(recipient: str) -> tuple[bytes, bytes]:
    canon = recipient.encode("ascii")
    return b"rc:mail:" + canon, b"rc:mailq:" + canon


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    pass


class _Events(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.node._event(channel, message)


class _RedisFactory(Factory):
    """Builds txredisapi protocols for :class:`ClientService` (which reconnects)."""

    noisy = False

    def __init__(self, node: "ClusterNode", kind: type, password: Optional[str], ready: Callable[[Any], None]) -> None:
        self.node = node
        self.kind = kind
        self.password = password
        self.ready = ready
        self.isLazy = False  # read by txredisapi when AUTH fails

    def buildProtocol(self, addr: Any) -> Any:
        p = self.kind(charset=None, replyTimeout=REPLY_TIMEOUT, password=self.password, convertNumbers=False)
        p.factory = self
        p.whenConnected().addCallback(self.ready)
        return p

    def stopTrying(self) -> None:  # txredisapi calls these when AUTH fails
        pass

    def connectionError(self, why: str) -> None:
        log.error("relaychat: cluster: {why}", why=why)


class NodeLink:
    """The link of a stand-in: what the hub writes to it goes into this turn's batch for its node."""

    def __init__(self, cluster: "ClusterNode", canonical: str) -> None:
        self.cluster = cluster
        self.canonical = canonical

    def write(self, data: bytes) -> None:
        self.cluster._to_remote(self.canonical, data)

    def set_reading(self, reading: bool) -> None:
        pass  # its node reads it

    def close(self) -> None:
        pass

    def wake_after(self, seconds: float) -> None:
        pass


class ClusterNode(Service):
    """This relay's membership of the cluster: the hub's directory and its view elsewhere."""

    name = "cluster"

    def __init__(self, hub: Hub, config: ClusterConfig, reactor: Any) -> None:
        assert config.redis is not None and config.node is not None
        self.hub = hub
        self.config = config
        self.reactor = reactor
        self.node = config.node
        self.presence = Presence(config.node)
        self._heartbeat_key = b"rc:node:" + config.node.encode("ascii")
        self._commands: Optional[Any] = None
        self._subscribed = False
        self._started = False  # our previous life's entries withdrawn
        self._down_logged = False
        password = None
        if config.password_file is not None:
            password = Path(config.password_file).read_text().strip()
        self._services = [
            ClientService(clientFromString(reactor, config.redis),
                          _RedisFactory(self, kind, password, ready), clock=reactor)
            for kind, ready in ((_Commands, self._commands_ready), (_Events, self._events_ready))
        ]
        self._inbox = b"rc:to:" + config.node.encode("ascii")
        self.batches = Batches(config.node)
        self.credit = Credit()
        self.standins: dict[str, tuple[str, str, Connection]] = {}  # canonical -> (node, token, stand-in)
        self._requests: dict[int, tuple[Deferred, str, Any]] = {}
        self._request_ids = 0
        self._publishing: Optional[Any] = None
        self._to_congest: set[str] = set()
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        hub.directory = self
        hub.elsewhere = self
        hub.shared_mail = self
        hub.ready = False

    # -- service ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for service in self._services:
            service.startService()

    def stopService(self) -> Deferred:
        super().stopService()
        if self._heartbeat.running:
            self._heartbeat.stop()
        withdrawn: Deferred = defer.succeed(None)
        if self._commands is not None:
            # Leave at once rather than after the heartbeat's expiry.
            withdrawn = self._run(SWEEP, [ONLINE, NODES], [EVENTS, self.node, b"1"])
            withdrawn.addCallback(lambda _: self._call(b"DEL", self._heartbeat_key))
            withdrawn.addErrback(lambda _: None)
        withdrawn.addCallback(lambda _: defer.gatherResults([s.stopService() for s in self._services]))
        return withdrawn

    # -- connections ------------------------------------------------------------

    def _commands_ready(self, protocol: Any) -> None:
        protocol.whenDisconnected().addCallback(self._commands_lost)
        self._commands = protocol
        self._set_up(protocol).addErrback(self._failed, "setting up")

    @defer.inlineCallbacks
    def _set_up(self, protocol: Any) -> Any:
        yield protocol.execute_command(b"SET", b"rc:server_id", os.urandom(32), b"NX")
        server_id = yield protocol.execute_command(b"GET", b"rc:server_id")
        if not self._started:
            yield self._run(SWEEP, [ONLINE, NODES], [EVENTS, self.node, b"1"])
            self._started = True
        yield self._beat()
        yield self._reassert()
        self._back()
        if not self.hub.ready:
            self.hub.adopt_server_id(bytes(server_id))
            log.info("relaychat: cluster: node {node} joined through {redis}", node=self.node, redis=self.config.redis)
        if not self._heartbeat.running:
            self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)
        if self._subscribed:
            yield self._load()

    def _commands_lost(self, protocol: Any) -> None:
        if self._commands is protocol:
            self._commands = None
            if self.running:
                self._unavailable("lost its connection")

    def _events_ready(self, protocol: Any) -> None:
        protocol.whenDisconnected().addCallback(self._events_lost)
        d = protocol.subscribe([EVENTS, self._inbox])
        d.addCallback(lambda _: setattr(self, "_subscribed", True))
        d.addCallback(lambda _: self._back())
        d.addCallback(lambda _: self._load() if self._commands is not None and self.hub.ready else None)
        d.addErrback(self._failed, "subscribing")

    def _events_lost(self, protocol: Any) -> None:
        self._subscribed = False
        if self.running:
            self._unavailable("lost its subscriber connection")

    def _back(self) -> None:
        if self._down_logged and self._commands is not None and self._subscribed:
            log.info("relaychat: cluster: Redis is back")
            self._down_logged = False

    def _ask(self, *command: Any) -> Deferred:
        """A command for a client's request: refused unless this node also hears the others."""
        if not self._subscribed:
            return defer.fail(Unavailable("not subscribed to the cluster's events"))
        return self._call(*command)

    def _unavailable(self, what: str) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.error("relaychat: cluster: Redis {what}; registrations and look-ups are refused until it is back",
                      what=what)

    def _failed(self, failure: Any, doing: str) -> None:
        log.error("relaychat: cluster: {doing} failed: {error}", doing=doing, error=failure.getErrorMessage())

    def _run(self, script: bytes, keys: list[bytes], args: list[Any]) -> Deferred:
        return self._call(b"EVAL", script, len(keys), *keys, *args)

    def _call(self, *command: Any) -> Deferred:
        if self._commands is None:
            return defer.fail(Unavailable("Redis is not connected"))
        return defer.maybeDeferred(self._commands.execute_command, *command)

    # -- liveness ---------------------------------------------------------------

    def _beat(self) -> Deferred:
        if self._commands is None:
            return defer.succeed(None)
        d = self._call(b"SET", self._heartbeat_key, b"%d" % os.getpid(), b"PX", HEARTBEAT_TTL_MS)
        d.addCallback(lambda _: self._call(b"SADD", NODES, self.node))
        d.addCallback(lambda _: self._run(SWEEP, [ONLINE, NODES], [EVENTS, self.node, b"0"]))
        d.addErrback(lambda f: self._unavailable(f"does not answer ({f.getErrorMessage()})"))
        return d

    @defer.inlineCallbacks
    def _reassert(self) -> Any:
        """After (re)connecting: put this node's logins back unless someone newer holds them."""
        for canon, token in list(self.presence.local.items()):
            client = self.hub.online.get(canon)
            if client is None:
                continue
            holder = yield self._run(JOIN, [ONLINE], [canon, self._value(client, token), EVENTS, b"1"])
            if holder is not None:
                self._replaced(canon)

    def _load(self) -> Deferred:
        d = self._call(b"HGETALL", ONLINE)
        d.addCallback(lambda reply: self.presence.load(_pairs(reply)))
        d.addErrback(self._failed, "reading who is online")
        return d

    def _event(self, channel: bytes, message: bytes) -> None:
        if channel == self._inbox:
            self._batch(message)
            return
        outcome = self.presence.event(message)
        if outcome is not None:
            self._replaced(outcome.canonical)
        fields = message.split(b" ", 2)
        if len(fields) >= 2 and fields[0] in (b"J", b"L"):
            self._check_standin(fields[1].decode("ascii", "replace"))
        elif fields[0] == b"G" and len(fields) == 2:
            self._node_gone(fields[1].decode("ascii", "replace"))

    # -- sessions across nodes ----------------------------------------------------

    def offer(self, client: Connection, canon: str, sid: bytes) -> Deferred:
        user = self.presence.remote.get(canon)
        token = self.presence.local.get(client.nick or "")
        if user is None or token is None:
            return defer.fail(ProtocolError(Code.OFFLINE, f"{canon} is not connected"))
        assert client.display is not None and client.identity_pub is not None
        self._request_ids += 1
        request = self._request_ids
        answer: Deferred = Deferred()
        timeout = self.reactor.callLater(OFFER_TIMEOUT, self._request_failed, request)
        self._requests[request] = (answer, user.node, timeout)
        self.batches.control(user.node, f"O {request} {sid.decode('ascii')} {canon} {client.nick} {token} "
                                        f"{client.display} {b64encode(client.identity_pub)}")
        self._schedule()
        return answer.addCallback(lambda _: self._standin(canon, user.node, user.token, user.display,
                                                          user.identity_pub))

    def _request_failed(self, request: int) -> None:
        answer, _, _ = self._requests.pop(request)
        answer.errback(Unavailable("the other node did not answer"))

    def _standin(self, canon: str, node: str, token: str, display: str, identity_pub: bytes) -> Connection:
        known = self.standins.get(canon)
        if known is not None and known[:2] == (node, token) and known[2].life.name == "OPEN":
            return known[2]
        if known is not None:
            self._drop_standin(canon)
        peer = self.hub.stand_in(NodeLink(self, canon), node, display, identity_pub)
        self.standins[canon] = (node, token, peer)
        return peer

    def _drop_standin(self, canon: str) -> None:
        node, _, peer = self.standins.pop(canon)
        self.credit.forget(node, canon)
        self.hub.disconnect(peer, self.reactor.seconds())  # its sessions end: CLOSED <sid> gone here

    def _check_standin(self, canon: str) -> None:
        known = self.standins.get(canon)
        if known is None:
            return
        user = self.presence.remote.get(canon)
        if user is None or (user.node, user.token) != known[:2]:
            self._drop_standin(canon)

    def _node_gone(self, node: str) -> None:
        for canon in [c for c, (n, _, _) in self.standins.items() if n == node]:
            self._drop_standin(canon)
        for request, (answer, to, timeout) in list(self._requests.items()):
            if to == node:
                del self._requests[request]
                timeout.cancel()
                answer.errback(Unavailable(f"node {node} is gone"))

    def _to_remote(self, canon: str, data: bytes) -> None:
        known = self.standins.get(canon)
        if known is None:
            return
        node, token, _ = known
        self.batches.lines_for(node, canon, token, data)
        if not self.credit.spend(node, canon, len(data)):
            self._to_congest.add(canon)
        self._schedule()

    def _schedule(self) -> None:
        if self._publishing is None:
            self._publishing = self.reactor.callLater(0, self._publish)

    def _publish(self) -> None:
        """End of a turn: give credit back for what was delivered, then one PUBLISH per node."""
        self._publishing = None
        owed = self.credit.owed
        for key in list(owed):
            node, canon = key
            local = self.hub.online.get(canon)
            if local is None:
                del owed[key]
            elif not local.congested:
                self.batches.control(node, f"C {canon} {owed.pop(key)}")
        for node, payload in self.batches.take().items():
            d = self._call(b"PUBLISH", b"rc:to:" + node.encode("ascii"), payload)
            d.addCallback(self._published, node)
            d.addErrback(lambda f, node=node: self._lost_to(node, f"Redis does not take a batch ({f.getErrorMessage()})"))
        for canon in self._to_congest:
            known = self.standins.get(canon)
            if known is not None and not known[2].congested:
                self.hub.set_congested(known[2], True, self.reactor.seconds())
        self._to_congest.clear()
        if owed and self._publishing is None:
            self._publishing = self.reactor.callLater(CREDIT_RETRY, self._publish)

    def _published(self, receivers: Any, node: str) -> None:
        if int(receivers) == 0:
            self._lost_to(node, "it does not hear its channel")

    def _lost_to(self, node: str, why: str) -> None:
        """What we sent ``node`` was lost: end its sessions here (CLOSED gone) rather than leave a gap."""
        if any(n == node for n, _, _ in self.standins.values()):
            log.warn("relaychat: cluster: node {node} missed a batch ({why}); its sessions here end",
                     node=node, why=why)
            self._node_gone(node)

    def _batch(self, payload: bytes) -> None:
        sender, items = parse_batch(payload)
        if not sender or sender == self.node:
            return
        now = self.reactor.seconds()
        for item in items:
            if isinstance(item, Lines):
                local = self.hub.online.get(item.canonical)
                if local is not None and self.presence.local.get(item.canonical) == item.token:
                    self.hub.from_peer(sender, local, item.data, now)
                    self.credit.received(sender, item.canonical, item.size)
                    self._schedule()
            elif isinstance(item, Control):
                self._control(sender, item.fields, now)

    def _control(self, sender: str, fields: list[str], now: float) -> None:
        kind = fields[0] if fields else ""
        if kind == "O" and len(fields) == 8:
            _, request, sid, to, canon, token, display, identity = fields
            try:
                peer = self._standin(canon, sender, token, display, b64decode(identity, size=32))
                self.hub.offer_from(peer, to, sid.encode("ascii"), now)
                self.batches.control(sender, f"R {request} OK")
            except ProtocolError as e:
                self.batches.control(sender, f"R {request} ERR {e.code.word} {e.text}")
            except ValueError:
                return
            self._schedule()
        elif kind == "R" and len(fields) >= 3 and fields[1].isdigit():
            pending = self._requests.pop(int(fields[1]), None)
            if pending is None or pending[1] != sender:
                return
            answer, _, timeout = pending
            timeout.cancel()
            if fields[2] == "OK":
                answer.callback(None)
            else:
                code = _CODES.get(fields[3] if len(fields) > 3 else "", Code.INTERNAL)
                answer.errback(ProtocolError(code, " ".join(fields[4:])))
        elif kind == "K" and len(fields) >= 3:
            client = self.hub.online.get(fields[1])
            if client is not None and self.presence.local.get(fields[1]) == fields[2]:
                self.hub.dismiss(client, Bye.KICKED, " ".join(fields[3:]) or "kicked by the operator",
                                 session_reason=Closed.KICKED)
        elif kind == "C" and len(fields) == 3 and fields[2].isdigit():
            known = self.standins.get(fields[1])
            if known is not None and known[0] == sender:
                if self.credit.grant(sender, fields[1], int(fields[2])) and known[2].congested:
                    self.hub.set_congested(known[2], False, self.reactor.seconds())

    def _replaced(self, canon: str) -> None:
        self.presence.local.pop(canon, None)
        client = self.hub.online.get(canon)
        if client is not None:
            self.hub.dismiss(client, Bye.REPLACED, "you logged in elsewhere")

    # -- Elsewhere (the hub's view of the other nodes) -------------------------

    @property
    def remote(self) -> Mapping[str, RemoteUser]:
        return self.presence.remote

    def joined(self, client: Connection) -> None:
        assert client.nick is not None
        token = self.presence.login(client.nick)
        d = self._run(JOIN, [ONLINE], [client.nick, self._value(client, token), EVENTS, b"0"])
        d.addErrback(self._failed, "announcing a login")  # re-asserted when Redis is back

    def left(self, client: Connection) -> None:
        assert client.nick is not None
        token = self.presence.logout(client.nick)
        if token is not None:
            self._run(LEAVE, [ONLINE], [client.nick, f"{self.node} {token}", EVENTS]).addErrback(lambda _: None)

    def _value(self, client: Connection, token: str) -> bytes:
        assert client.display is not None and client.identity_pub is not None
        return presence_value(self.node, token, client.display, client.identity_pub)

    # -- SharedMail (a hash of sealed mail per recipient; the AOF keeps it) -------

    def deposit(self, recipient: str, sender: str, now: float, body: bytes, policy: Any) -> Deferred:
        mail, quota = _mail_keys(recipient)
        created = b"%d" % int(now)
        return self._ask(b"EVAL", DEPOSIT, 4, mail, quota, MAIL_IDS, MAIL_EXPIRY,
                         sender, created, body, policy.mail_per_recipient, policy.mail_bytes_per_recipient,
                         policy.mail_per_sender, recipient).addCallback(int)

    def pending(self, recipient: str) -> Deferred:
        def mails(reply: Any) -> list[Mail]:
            out = []
            for i in range(0, len(reply or []), 3):
                key, value, display = reply[i:i + 3]
                sender, created, body = bytes(value).split(b" ", 2)
                out.append(Mail(int(key), recipient, sender.decode("ascii"), float(created), body,
                                bytes(display).decode("utf-8")))
            return sorted(out, key=lambda mail: mail.id)
        return self._ask(b"EVAL", PENDING, 1, _mail_keys(recipient)[0]).addCallback(mails)

    def ack(self, recipient: str, mail_id: int) -> Deferred:
        mail, quota = _mail_keys(recipient)
        return self._ask(b"EVAL", ACK, 3, mail, quota, MAIL_EXPIRY, mail_id, recipient).addCallback(lambda n: int(n) == 1)

    @defer.inlineCallbacks
    def purge(self, older_than: float) -> Any:
        old = yield self._call(b"ZRANGEBYSCORE", MAIL_EXPIRY, b"-inf", b"(%d" % int(older_than), b"LIMIT", 0, 1000)
        for member in old or []:
            recipient, mail_id = bytes(member).decode("ascii").split(" ")
            mail, quota = _mail_keys(recipient)
            yield self._run(ACK, [mail, quota, MAIL_EXPIRY], [mail_id, recipient])
        return len(old or [])

    def kick(self, canon: str, reason: str) -> bool:
        """Ask the node ``canon`` is on to kick it; False if it is on none."""
        user = self.presence.remote.get(canon)
        if user is None:
            return False
        self.batches.control(user.node, f"K {canon} {user.token} {' '.join(reason.split())}")
        self._schedule()
        return True

    def deliver(self, canon: str, line: bytes) -> None:
        user = self.presence.remote.get(canon)
        if user is not None:
            self.batches.lines_for(user.node, canon, user.token, line)
            self._schedule()

    # -- Directory (the shared registry) ----------------------------------------

    def find(self, nick: str) -> Deferred:
        try:
            canon = canonical(nick)
        except Exception:
            return defer.fail()
        return self._ask(b"HGETALL", b"rc:bind:" + canon.encode("ascii")).addCallback(
            lambda reply: _binding(canon, _pairs(reply)))

    def check_claim(self, nick: str, identity_pub: bytes) -> Deferred:
        try:
            canon = canonical(nick)
        except Exception:
            return defer.fail()

        @defer.inlineCallbacks
        def check() -> Any:
            existing = yield self.find(canon)
            lookalike = None
            if existing is None:
                owner = yield self._ask(b"GET", b"rc:skel:" + skeleton(canon).encode("ascii"))
                if owner is not None:
                    lookalike = (yield self.find(owner.decode("ascii"))) or _placeholder(owner.decode("ascii"))
            return judge_claim(existing, lookalike, identity_pub)

        return check()

    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes, now: float) -> Deferred:
        try:
            canon = canonical(nick)
        except Exception:
            return defer.fail()
        skel = skeleton(canon)
        created = repr(float(now)).encode("ascii")
        d = self._ask(b"EVAL", BIND, 2, *[b"rc:bind:" + canon.encode("ascii"), b"rc:skel:" + skel.encode("ascii")],
                      *[canon, nick, identity_pub, static_pub, static_sig, created])

        def bound(reply: list[Any]) -> tuple[Binding, bool]:
            outcome, display = int(reply[0]), reply[1].decode("utf-8")
            if outcome == -1:
                raise taken(display)
            if outcome == -2:
                raise confused(display)
            return Binding(canon, skel, display, identity_pub, static_pub, static_sig, float(reply[2])), outcome == 0

        return d.addCallback(bound)


def _pairs(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    return {reply[i]: reply[i + 1] for i in range(0, len(reply or []), 2)}


def _binding(canon: str, fields: Mapping[bytes, bytes]) -> Optional[Binding]:
    if not fields:
        return None
    return Binding(canon, skeleton(canon), fields[b"display"].decode("utf-8"), bytes(fields[b"identity"]),
                   bytes(fields[b"static"]), bytes(fields[b"sig"]), float(fields[b"created"]))


def _placeholder(canon: str) -> Binding:
    return Binding(canon, skeleton(canon), canon, b"", b"", b"", 0.0)
