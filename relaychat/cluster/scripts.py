"""What a cluster keeps in Redis: the key names and the Lua scripts that change them.

Every change that other nodes must see is a Lua script, so it is atomic and
its event is published in the same step:

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
``rc:mail:<canonical>`` (hash id -> "sender created body"), ``rc:mailq:<canonical>``
    sealed offline mail and its quota counters; :data:`DEPOSIT` and :data:`ACK`.
``rc:to:<node>`` (a channel)
    each node's inbox: the batches of :mod:`relaychat.cluster.sessions`.
``rc:admin``, ``rc:admin:<node>`` (channels), ``rc:bans`` (sorted set)
    the operator console's requests and answers, and the bans:
    :mod:`relaychat.cluster.console`.
"""

from __future__ import annotations

EVENTS = b"rc:events"
ONLINE = b"rc:online"
NODES = b"rc:nodes"
MAIL_EXPIRY = b"rc:mail-expiry"
MAIL_IDS = b"rc:mail-id"


def inbox(node: str) -> bytes:
    """The channel ``node`` hears its batches on."""
    return b"rc:to:" + node.encode("ascii")


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


STALE = b"""
local live = {}
for i = 3, #ARGV do live[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local node, token = string.match(all[i + 1], '^(%S+) (%S+)')
  if node == ARGV[2] and not live[token] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', ARGV[1], 'L ' .. all[i] .. ' ' .. node .. ' ' .. token)
    n = n + 1
  end
end
return n
"""
"""KEYS: online. ARGV: channel, this node, then the tokens of the logins it still holds.
Withdraws (and announces) this node's other entries: logins that ended while Redis could
not be told, which would otherwise stay online everywhere else."""


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

def mail_keys(recipient: str) -> tuple[bytes, bytes]:
    """The mail hash and the quota hash of one recipient."""
    canon = recipient.encode("ascii")
    return b"rc:mail:" + canon, b"rc:mailq:" + canon
