"""Sessions across nodes: stand-ins, offer requests, the per-turn batches and credit.

A user on another node is, to this node's hub, a stand-in connection whose
link (:class:`NodeLink`) puts what the hub writes into this reactor turn's
batch for that node; at the end of the turn :class:`Sessions` publishes one
batch per node (the format is in :mod:`relaychat.cluster.routing`). What
arrives on this node's inbox is handed to the hub as if the peer were here.
Credit (:class:`relaychat.cluster.routing.Credit`) pauses a sender here while
its reader on the other node has not taken what it was sent.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.cluster.routing import Batches, Control, Credit, Lines, Presence, parse_batch
from relaychat.server.connection import Connection
from relaychat.server.directory import Unavailable
from relaychat.server.hub import Hub
from relaychat.wire.codec import b64decode, b64encode
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError

log = Logger(namespace="relaychat.cluster")

OFFER_TIMEOUT = 5.0  # seconds for another node to answer an offer request
CREDIT_RETRY = 0.05  # seconds between looks at a congested reader that owes credit back (a fallback:
# its draining gives credit back at once, through the stand-in's NodeLink.set_reading)
IN_FLIGHT = 1  # PUBLISHes to one node awaiting Redis's answer; what comes meanwhile waits for the next
BULK_BATCH = 512 * 1024  # bytes: while a stream to a node is on, a smaller batch waits (Sessions._held)
BULK_WAIT = 0.001  # seconds it may wait for more to join it, once
_CODES = {code.word: code for code in Code}

Publish = Callable[[str, list[bytes]], "Deferred[Any]"]
"""Publish one batch (the pieces it is made of, joined once) on a node's
inbox; the answer is how many heard it."""


class NodeLink:
    """The link of a stand-in: what the hub writes to it goes into this turn's batch for its node."""

    def __init__(self, sessions: "Sessions", canonical: str) -> None:
        self.sessions = sessions
        self.canonical = canonical

    def write(self, data: bytes) -> None:
        self.sessions.to_remote(self.canonical, data)

    def set_reading(self, reading: bool) -> None:
        # Its node reads it; but the hub reads a stand-in again when its local
        # peers' output has drained, and that is when their credit is due.
        if reading:
            self.sessions.schedule()

    def close(self) -> None:
        pass

    def wake_after(self, seconds: float) -> None:
        pass


class Sessions:
    """This node's end of every session with a user on another node."""

    def __init__(self, hub: Hub, node: str, presence: Presence, publish: Publish, reactor: Any) -> None:
        self.hub = hub
        self.node = node
        self.presence = presence
        self.reactor = reactor
        self._publish_batch = publish
        self.batches = Batches(node)
        self.credit = Credit()
        self.standins: dict[str, tuple[str, str, Connection]] = {}  # canonical -> (node, token, stand-in)
        self._requests: dict[int, tuple[Deferred[None], str, Any]] = {}
        self._request_ids = 0
        self._publishing: Any = None
        self._retry: Any = None
        self._in_flight: dict[str, int] = {}  # node -> PUBLISHes not yet answered
        self._last_batch: dict[str, int] = {}  # node -> bytes of lines in the last batch sent to it
        self._holds: dict[str, Any] = {}  # node -> the BULK_WAIT timer of its waiting batch
        self._to_congest: set[str] = set()

    # -- what the hub asks ------------------------------------------------------

    def offer(self, client: Connection, canon: str, sid: bytes) -> Deferred[Any]:
        user = self.presence.remote.get(canon)
        token = self.presence.local.get(client.nick or "")
        if user is None or token is None:
            return defer.fail(ProtocolError(Code.OFFLINE, f"{canon} is not connected"))
        assert client.display is not None and client.identity_pub is not None
        self._request_ids += 1
        request = self._request_ids
        answer: Deferred[None] = Deferred()
        timeout = self.reactor.callLater(OFFER_TIMEOUT, self._request_failed, request)
        self._requests[request] = (answer, user.node, timeout)
        self.batches.control(user.node, f"O {request} {sid.decode('ascii')} {canon} {client.nick} {token} "
                                        f"{client.display} {b64encode(client.identity_pub)}")
        self.schedule()
        return answer.addCallback(lambda _: self._standin(canon, user.node, user.token, user.display,
                                                          user.identity_pub))

    def kick(self, canon: str, reason: str) -> bool:
        """Ask the node ``canon`` is on to kick it; False if it is on none."""
        user = self.presence.remote.get(canon)
        if user is None:
            return False
        self.batches.control(user.node, f"K {canon} {user.token} {' '.join(reason.split())}")
        self.schedule()
        return True

    def deliver(self, canon: str, line: bytes) -> None:
        user = self.presence.remote.get(canon)
        if user is not None:
            self.batches.lines_for(user.node, canon, user.token, line)
            self.schedule()

    # -- stand-ins ----------------------------------------------------------------

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

    def check_standin(self, canon: str) -> None:
        """``canon``'s presence changed: drop its stand-in unless it still names the same login."""
        known = self.standins.get(canon)
        if known is None:
            return
        user = self.presence.remote.get(canon)
        if user is None or (user.node, user.token) != known[:2]:
            self._drop_standin(canon)

    def node_gone(self, node: str) -> None:
        """``node`` is gone: its users' sessions here end and its requests fail."""
        for canon in [c for c, (n, _, _) in self.standins.items() if n == node]:
            self._drop_standin(canon)
        self._last_batch.pop(node, None)
        hold = self._holds.pop(node, None)
        if hold is not None and hold.active():
            hold.cancel()
        for request, (answer, to, timeout) in list(self._requests.items()):
            if to == node:
                del self._requests[request]
                timeout.cancel()
                answer.errback(Unavailable(f"node {node} is gone"))

    # -- out: one batch per node per turn -------------------------------------------

    def to_remote(self, canon: str, data: bytes) -> None:
        known = self.standins.get(canon)
        if known is None:
            return
        node, token, peer = known
        # Frames only (the hub's count of what it forwarded is all of data) and of the
        # stand-in's one session: say so in the run, and the other node need not look.
        frames = peer.frames_out if peer.frame_bytes_out == len(data) and len(peer.sessions) == 1 else 0
        self.batches.lines_for(node, canon, token, data, frames)
        if not self.credit.spend(node, canon, len(data)):
            self._to_congest.add(canon)
        self.schedule()

    def schedule(self) -> None:
        if self._publishing is None:
            self._publishing = self.reactor.callLater(0, self.publish)

    def publish(self) -> None:
        """End of a turn: give credit back for what was delivered, then one PUBLISH
        per node (held while that node's last one is unanswered: it joins the next)."""
        self._publishing = None
        owed = self.credit.owed
        withheld = False
        for key in list(owed):
            node, canon = key
            local = self.hub.online.get(canon)
            if local is None:
                del owed[key]
            elif local.congested:
                withheld = True
            elif self.credit.due(key, node in self.batches):
                self.batches.control(node, f"C {canon} {owed.pop(key)}")
        for node in self.batches.nodes():
            if self._in_flight.get(node, 0) < IN_FLIGHT and not self._held(node):
                self._send(node)
        for canon in self._to_congest:
            known = self.standins.get(canon)
            # Credit may have come back since the write that spent it (in this
            # same turn): pausing then would wait for a grant that never comes.
            if known is not None and not known[2].congested and self.credit.exhausted(known[0], canon):
                self.hub.set_congested(known[2], True, self.reactor.seconds())
        self._to_congest.clear()
        if withheld and self._retry is None:
            self._retry = self.reactor.callLater(CREDIT_RETRY, self._retry_credit)

    def _retry_credit(self) -> None:
        self._retry = None
        self.schedule()

    def _held(self, node: str) -> bool:
        """Whether ``node``'s batch waits a little (at most BULK_WAIT, once) for more to join it.

        Only while a stream to that node is on: its last batch had at least
        half of BULK_BATCH bytes of lines (half, so that a stream whose
        batches the wait brings to a few hundred KB stays on), this one has
        fewer than BULK_BATCH, and no control line is in it. What a batch
        costs hardly grows with its size (a message for Redis, Redis and the
        other node woken, one write to the reader there), and the answer to
        a big batch often comes while the next holds a read or two: without
        the wait a 16-KiB stream went in more and smaller PUBLISHes and the
        cluster spent more CPU per MB (bench/README.rst, cluster). A
        conversation's frames never wait: their batches are far smaller.
        """
        if (self.batches.size(node) >= BULK_BATCH or self._last_batch.get(node, 0) < BULK_BATCH // 2
                or self.batches.has_control(node)):
            return False  # nor does a batch with a control line (credit, an offer, a kick) in it
        hold = self._holds.get(node)
        if hold is None:
            self._holds[node] = self.reactor.callLater(BULK_WAIT, self.schedule)
            return True
        return bool(hold.active())

    def _send(self, node: str) -> None:
        hold = self._holds.pop(node, None)
        if hold is not None and hold.active():
            hold.cancel()
        self._last_batch[node] = self.batches.size(node)
        self._in_flight[node] = self._in_flight.get(node, 0) + 1
        d = self._publish_batch(node, self.batches.take_parts(node))
        d.addCallbacks(self._published, self._not_taken, callbackArgs=(node,), errbackArgs=(node,))
        d.addBoth(self._answered, node)

    def _answered(self, _: Any, node: str) -> None:
        left = self._in_flight.get(node, 1) - 1
        if left > 0:
            self._in_flight[node] = left
        else:
            self._in_flight.pop(node, None)
        if node in self.batches:
            self.schedule()

    def _not_taken(self, failure: Failure, node: str) -> None:
        self._lost_to(node, f"Redis does not take a batch ({failure.getErrorMessage()})")

    def _published(self, receivers: Any, node: str) -> None:
        if int(receivers) == 0:
            self._lost_to(node, "it does not hear its channel")

    def _lost_to(self, node: str, why: str) -> None:
        """What we sent ``node`` was lost: end its sessions here (CLOSED gone) rather than leave a gap."""
        if any(n == node for n, _, _ in self.standins.values()):
            log.warn("relaychat: cluster: node {node} missed a batch ({why}); its sessions here end",
                     node=node, why=why)
            self.node_gone(node)

    # -- in: a batch from another node ----------------------------------------------

    def batch(self, payload: bytes) -> None:
        sender, items = parse_batch(payload)
        if not sender or sender == self.node:
            return
        now = self.reactor.seconds()
        for item in items:
            if isinstance(item, Lines):
                local = self.hub.online.get(item.canonical)
                if local is not None and self.presence.local.get(item.canonical) == item.token:
                    self.hub.from_peer(sender, local, item.data, now, item.frames)
                    self.credit.received(sender, item.canonical, item.size)
                    self.schedule()
            elif isinstance(item, Control):
                self.control(sender, item.fields, now)

    def control(self, sender: str, fields: list[str], now: float) -> None:
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
            self.schedule()
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
