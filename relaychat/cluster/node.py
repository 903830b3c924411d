"""One relay as a node of a cluster over Redis: the thin txredisapi adapter.

What is shared lives in Redis (the keys and the scripts that change them are in
:mod:`relaychat.cluster.scripts`); sessions with users on other nodes are
:mod:`relaychat.cluster.sessions`; this module owns the two Redis connections
(commands, and the subscriber that hears events and this node's inbox), the
heartbeat, the shared presence, registry and mail.

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
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from relaychat.config import ClusterConfig
from relaychat.cluster.console import ClusterConsole
from relaychat.cluster.routing import Presence, presence_value
from relaychat.cluster.scripts import (ACK, BIND, DEPOSIT, EVENTS, JOIN, LEAVE, MAIL_EXPIRY, MAIL_IDS, NODES, ONLINE,
                                       PENDING, STALE, SWEEP, inbox, mail_keys)
from relaychat.cluster.sessions import Sessions
from relaychat.server.connection import Connection
from relaychat.server.directory import RemoteUser, Unavailable
from relaychat.server.hub import Hub
from relaychat.server.protocol import no_delay
from relaychat.server.registry import confused, judge_claim, taken
from relaychat.server.store import Binding, Mail
from relaychat.wire.errors import Bye
from relaychat.wire.nicknames import canonical, skeleton

log = Logger(namespace="relaychat.cluster")

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TTL_MS = 3000  # a node silent this long is gone: noticed within ~4 s
REPLY_TIMEOUT = 5  # seconds; a Redis that stops answering is one that is down


READ_SIZE = 1 << 20
"""Bytes read from a Redis connection at once: a batch of frames arrives in one
or two reads, not in Twisted's default 64 KiB pieces (one reactor turn each)."""


WRITE_SIZE = 1 << 20
"""Bytes handed to a Redis connection's socket per writable turn (see :func:`_tune`)."""


def _tune(transport: Any) -> None:
    """No Nagle delay on a Redis connection (a batch or a credit message goes at
    once, not after the previous one's ACK), big reads and big writes.

    ``bufferSize`` is FileDescriptor's public read size (and, for a producer,
    its pause threshold; txredisapi registers none); ``SEND_LIMIT`` the most
    it hands the socket per writable turn (128 KiB by default: a 512 KiB
    batch took four turns of the reactor, each with its epoll calls; at
    1 MiB one, and node a's CPU per MB went from 1.71-1.98 to 1.64-1.75 ms
    in interleaved bench/cluster.py runs). Under TLS it is the socket's
    transport, one layer down.
    """
    for _ in range(3):
        no_delay(transport)
        if isinstance(transport, FileDescriptor):
            transport.bufferSize = READ_SIZE
            transport.SEND_LIMIT = WRITE_SIZE
            return
        transport = getattr(transport, "transport", None)


class Pieces(list[bytes]):
    """A command argument given as the pieces it is made of: :class:`_Commands` joins
    them once, with the command around them (see :meth:`_Commands._build_command`)."""


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    def connectionMade(self) -> Any:
        _tune(self.transport)
        return super().connectionMade()

    def _build_command(self, *args: Any, **kwargs: Any) -> bytes:
        """The RESP encoding of a command, in one join when an argument is :class:`Pieces`.

        txredisapi's own encoder copies a large argument three times (into a
        bytearray, then two concatenations), and a batch of frames is joined
        before it: four copies of every cross-node byte, a fifth of node A's
        CPU per MB (bench/cluster.py). This overrides txredisapi's private
        encoder, here only; tests.test_cluster_routing checks that both
        encode alike, so a txredisapi that changes it fails loudly there.
        """
        if not any(isinstance(arg, Pieces) for arg in args):
            return bytes(super()._build_command(*args, **kwargs))
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, Pieces):
                out.append(b"$%d\r\n" % sum(map(len, arg)))
                out.extend(arg)
                out.append(b"\r\n")
            else:
                value = self._encode_value(arg)
                out.append(b"$%d\r\n%s\r\n" % (len(value), value))
        return b"".join(out)


class _Events(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    def connectionMade(self) -> Any:
        _tune(self.transport)
        return super().connectionMade()

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
        self._inbox = inbox(config.node)
        self.sessions = Sessions(hub, config.node, self.presence, self._publish, reactor)
        self.console = ClusterConsole(hub, config.node, self._call, self.find, reactor)  # the operator's, cluster-wide
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

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._heartbeat.running:
            self._heartbeat.stop()
        withdrawn: Deferred[Any] = defer.succeed(None)
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
        yield self.console.reload()  # the cluster's bans, before this node takes a client
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
        d = protocol.subscribe([EVENTS, self._inbox, *self.console.channels])
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

    def _ask(self, *command: Any) -> Deferred[Any]:
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

    def _run(self, script: bytes, keys: list[bytes], args: list[Any]) -> Deferred[Any]:
        return self._call(b"EVAL", script, len(keys), *keys, *args)

    def _call(self, *command: Any) -> Deferred[Any]:
        if self._commands is None:
            return defer.fail(Unavailable("Redis is not connected"))
        return defer.maybeDeferred(self._commands.execute_command, *command)

    # -- liveness ---------------------------------------------------------------

    def _beat(self) -> Deferred[Any]:
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
        yield self._run(STALE, [ONLINE], [EVENTS, self.node, *self.presence.local.values()])

    def _load(self) -> Deferred[Any]:
        d = self._call(b"HGETALL", ONLINE)
        d.addCallback(lambda reply: self.presence.load(_pairs(reply)))
        d.addCallback(lambda _: self.console.reload())  # bans set while this node did not hear
        d.addErrback(self._failed, "reading who is online")
        return d

    def _event(self, channel: bytes, message: bytes) -> None:
        if channel == self._inbox:
            self.sessions.batch(message)
            return
        if channel in self.console.channels:
            self.console.message(channel, message)
            return
        outcome = self.presence.event(message)
        if outcome is not None:
            self._replaced(outcome.canonical)
        fields = message.split(b" ", 2)
        if len(fields) >= 2 and fields[0] in (b"J", b"L"):
            self.sessions.check_standin(fields[1].decode("ascii", "replace"))
        elif fields[0] == b"G" and len(fields) == 2:
            self.sessions.node_gone(fields[1].decode("ascii", "replace"))

    # -- sessions across nodes (relaychat.cluster.sessions) ------------------------

    def offer(self, client: Connection, canon: str, sid: bytes) -> Deferred[Any]:
        return self.sessions.offer(client, canon, sid)

    def kick(self, canon: str, reason: str) -> bool:
        """Ask the node ``canon`` is on to kick it; False if it is on none."""
        return self.sessions.kick(canon, reason)

    def deliver(self, canon: str, line: bytes) -> None:
        self.sessions.deliver(canon, line)

    def _publish(self, node: str, parts: list[bytes]) -> Deferred[Any]:
        return self._call(b"PUBLISH", inbox(node), Pieces(parts))

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

    def deposit(self, recipient: str, sender: str, now: float, body: bytes, policy: Any) -> Deferred[Any]:
        mail, quota = mail_keys(recipient)
        created = b"%d" % int(now)
        return self._ask(b"EVAL", DEPOSIT, 4, mail, quota, MAIL_IDS, MAIL_EXPIRY,
                         sender, created, body, policy.mail_per_recipient, policy.mail_bytes_per_recipient,
                         policy.mail_per_sender, recipient).addCallback(int)

    def pending(self, recipient: str) -> Deferred[Any]:
        def mails(reply: Any) -> list[Mail]:
            out = []
            for i in range(0, len(reply or []), 3):
                key, value, display = reply[i:i + 3]
                sender, created, body = bytes(value).split(b" ", 2)
                out.append(Mail(int(key), recipient, sender.decode("ascii"), float(created), body,
                                bytes(display).decode("utf-8")))
            return sorted(out, key=lambda mail: mail.id)
        return self._ask(b"EVAL", PENDING, 1, mail_keys(recipient)[0]).addCallback(mails)

    def ack(self, recipient: str, mail_id: int) -> Deferred[Any]:
        mail, quota = mail_keys(recipient)
        return self._ask(b"EVAL", ACK, 3, mail, quota, MAIL_EXPIRY, mail_id, recipient).addCallback(lambda n: int(n) == 1)

    @defer.inlineCallbacks
    def purge(self, older_than: float) -> Any:
        old = yield self._call(b"ZRANGEBYSCORE", MAIL_EXPIRY, b"-inf", b"(%d" % int(older_than), b"LIMIT", 0, 1000)
        for member in old or []:
            recipient, mail_id = bytes(member).decode("ascii").split(" ")
            mail, quota = mail_keys(recipient)
            yield self._run(ACK, [mail, quota, MAIL_EXPIRY], [mail_id, recipient])
        return len(old or [])

    # -- Directory (the shared registry) ----------------------------------------

    def find(self, nick: str) -> Deferred[Any]:
        try:
            canon = canonical(nick)
        except Exception:
            return defer.fail()
        return self._ask(b"HGETALL", b"rc:bind:" + canon.encode("ascii")).addCallback(
            lambda reply: _binding(canon, _pairs(reply)))

    def check_claim(self, nick: str, identity_pub: bytes) -> Deferred[Any]:
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

    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes, now: float) -> Deferred[Any]:
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
