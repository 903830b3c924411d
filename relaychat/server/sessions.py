"""Sessions: OFFER, ACCEPT, DECLINE and CLOSE, the offers waiting, and sessions with users on other nodes.

A session joins two connections (:class:`~relaychat.server.connection.Session`,
held in both connections' tables); this object holds the offers not yet
answered, which time out. Every count a user controls is bounded here:
sessions per connection and unanswered offers each way. Once a session is
open its frames never come here: the hub's hot path forwards them.

A component of the :class:`~relaychat.server.hub.Hub`, which dispatches
the commands here; it ends sessions for the hub too (a connection leaving,
a drain) through :meth:`end`, the one place a session ends.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Iterable, Optional

from relaychat.server.connection import Connection, Life, Link, Session, State
from relaychat.server.frames import PAYLOAD_AT
from relaychat.server.store import Binding
from relaychat.wire import messages as m
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.messages import FRAME_PREFIX
from relaychat.wire.nicknames import canonical
from relaychat.wire.tokens import SID_LENGTH, safe_sid

if TYPE_CHECKING:
    from relaychat.server.hub import Hub

_OPEN = Life.OPEN
_CLOSED = {reason.value for reason in Closed}


class Sessions:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.offers: dict[bytes, Session] = {}  # not yet accepted, by session id; each times out

    # -- the commands ------------------------------------------------------------

    def offer(self, client: Connection, offer: m.Offer, now: float) -> None:
        hub = self.hub
        if hub.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        canon = canonical(offer.nick)
        target = hub.online.get(canon)
        if target is None:
            elsewhere = hub.elsewhere
            if elsewhere is not None and canon in elsewhere.remote:
                self._check_limits(client, None)
                sid = _new_sid()
                hub.await_answer(client, "OFFER", elsewhere.offer(client, canon, sid),
                                 lambda peer: self._offered(client, peer, sid, now))
                return
            hub.await_answer(client, "OFFER", hub.directory.find(canon), lambda b: _not_here(offer.nick, b))
            return
        if target is client:
            raise ProtocolError(Code.INVALID, "you cannot talk to yourself")
        self._check_limits(client, target)
        sid = _new_sid()
        self._offered(client, target, sid, now)
        assert client.display is not None and client.identity_pub is not None
        hub.send(target, m.Offered(sid.decode("ascii"), client.display, client.identity_pub))

    def accept(self, client: Connection, accept: m.Accept, now: float) -> None:
        hub = self.hub
        session = self._offered_to(client, accept.sid)
        session.open = True
        del self.offers[session.sid]
        hub.stats.sessions_opened += 1
        sid = session.sid.decode("ascii")
        hub.send(client, m.AcceptOk(sid))
        hub.send(session.initiator, m.Accepted(sid))
        hub.update_reading(session.initiator)
        hub.update_reading(session.responder)

    def decline(self, client: Connection, decline: m.Decline, now: float) -> None:
        session = self._offered_to(client, decline.sid)
        self.hub.send(client, m.DeclineOk(decline.sid))
        self.end(session, Closed.DECLINED, notify=(session.initiator,))

    def close(self, client: Connection, close: m.Close, now: float) -> None:
        session = self._own_session(client, close.sid)
        self.hub.send(client, m.CloseOk(close.sid))
        self.end(session, Closed.CLOSED, notify=(session.other(client),))

    def _check_limits(self, client: Optional[Connection], target: Optional[Connection]) -> None:
        limits = self.hub.limits
        if any(c is not None and len(c.sessions) >= limits.max_sessions for c in (client, target)):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_sessions} sessions each")
        if (
            (client is not None and _pending(client.sessions.values(), initiator=client) >= limits.max_pending_offers)
            or (target is not None and _pending(target.sessions.values(), responder=target) >= limits.max_pending_offers)
        ):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_pending_offers} unanswered offers")

    def _offered(self, client: Connection, target: Connection, sid: bytes, now: float) -> None:
        session = Session(sid, client, target, now)
        client.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        assert target.display is not None
        self.hub.send(client, m.OfferOk(sid.decode("ascii"), target.display))

    def _offered_to(self, client: Connection, sid: str) -> Session:
        session = self._own_session(client, sid)
        if session.open or session.responder is not client:
            raise ProtocolError(Code.NO_SESSION, f"{session.sid.decode('ascii')} is not an offer to you")
        return session

    def _own_session(self, client: Connection, sid: str) -> Session:
        session = client.sessions.get(sid.encode("utf-8"))
        if session is None:
            raise ProtocolError(Code.NO_SESSION, f"{safe_sid(sid)} no such session")
        return session

    # -- ending them ----------------------------------------------------------------

    def end(self, session: Session, reason: Closed, notify: Iterable[Connection]) -> None:
        """End ``session``: out of both tables, ``CLOSED <sid> <reason>`` to ``notify``.

        Its two connections may read again (a peer backed up no longer holds
        them); during a drain, one left without a session is let go.
        """
        hub = self.hub
        session.initiator.sessions.pop(session.sid, None)
        session.responder.sessions.pop(session.sid, None)
        self.offers.pop(session.sid, None)
        line = m.SessionClosed(session.sid.decode("ascii"), reason.value)
        for client in notify:
            hub.send(client, line)
        for client in (session.initiator, session.responder):
            if client.life is _OPEN:
                hub.update_reading(client)
                if hub.draining and not client.sessions and client in hub.clients:
                    hub.bye(client, Bye.DRAINING, hub.drain_text)

    def expire(self, now: float) -> None:
        """End the offers older than ``offer_timeout``; both sides are told."""
        timeout = self.hub.limits.offer_timeout
        for session in list(self.offers.values()):
            if now - session.created > timeout:
                self.end(session, Closed.TIMEOUT, notify=(session.initiator, session.responder))

    def withdraw_offers(self) -> None:
        """A drain began: no offer will be accepted now; both sides are told."""
        for session in list(self.offers.values()):
            self.end(session, Closed.DRAINING, notify=(session.initiator, session.responder))

    # -- sessions with users on other nodes (relaychat.cluster) ----------------
    #
    # A user on another node is a *stand-in* here: a Connection in no table
    # (not in clients, not online) whose link hands what the hub writes to it
    # to that node, batched per node. Both nodes hold the session; the lines
    # one node's hub sends to a stand-in arrive at the other as from_peer().

    def stand_in(self, link: Link, node: str, display: str, identity_pub: bytes) -> Connection:
        """A Connection for ``display``, a user on ``node``."""
        hub = self.hub
        peer = Connection(link, f"node:{node}", hub.limits.max_line, hub.limits.line_burst, hub.now)
        peer.state = State.REGISTERED
        peer.nick = canonical(display)
        peer.display = display
        peer.identity_pub = identity_pub
        return peer

    def offer_from(self, peer: Connection, canon: str, sid: bytes, now: float) -> None:
        """``peer`` (a stand-in) offers a session to our ``canon``; raises what ``OFFER`` would answer."""
        hub = self.hub
        if hub.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        target = hub.online.get(canon)
        if target is None:
            raise ProtocolError(Code.OFFLINE, f"{canon} is not connected")
        self._check_limits(None, target)
        session = Session(sid, peer, target, now)
        peer.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        assert peer.display is not None and peer.identity_pub is not None
        hub.send(target, m.Offered(sid.decode("ascii"), peer.display, peer.identity_pub))

    def from_peer(self, node: str, local: Connection, data: bytes, frames: int = 0) -> None:
        """What ``node``'s hub wrote to its stand-in for our ``local`` (whole lines): apply it, pass it on.

        The common case is a run of frames of one session. ``frames`` > 0:
        the sending node says ``data`` is that many frame lines of the
        session its first line names (its hub checked each, and wrote nothing
        else to the stand-in in that write: :attr:`Connection.frame_bytes_out`);
        it is passed on as one chunk once the session is seen to be open
        here, with that node's user, without looking at the lines again.
        Without a count, two counts in C check that every line is a frame of
        that session.
        """
        hub = self.hub
        peer_address = f"node:{node}"
        prefix = data[:PAYLOAD_AT]
        if frames > 0 and prefix.startswith(FRAME_PREFIX) and prefix[-1:] == b" ":
            session = local.sessions.get(prefix[6:22])
            if session is not None and session.open and session.other(local).address == peer_address:
                self._pass_on(local, session, data, frames)
            return
        if prefix.startswith(FRAME_PREFIX) and data.count(b"\n") == data.count(b"\n" + prefix) + 1:
            session = local.sessions.get(prefix[6:22])
            if session is not None and session.open and session.other(local).address == peer_address:
                self._pass_on(local, session, data, data.count(b"\n"))
            return
        for line in data.split(b"\n")[:-1]:
            if line.startswith(b"MAIL "):  # new mail for ``local``, stored through that node: pass it on
                hub.queue(local, line + b"\n")
                continue
            session = local.sessions.get(line[line.find(b" ") + 1:][:SID_LENGTH])
            if session is None or session.other(local).address != peer_address:
                continue  # ended here already (both nodes time offers out), or not that node's to speak for
            if line.startswith(FRAME_PREFIX):
                if session.open:
                    self._pass_on(local, session, line + b"\n", 1)
            elif line.startswith(b"ACCEPTED ") and not session.open and session.initiator is local:
                session.open = True
                self.offers.pop(session.sid, None)
                hub.stats.sessions_opened += 1
                hub.send(local, m.Accepted(session.sid.decode("ascii")))
                hub.update_reading(local)
            elif line.startswith(b"CLOSED "):
                reason = line.rsplit(b" ", 1)[-1].decode("ascii", "replace")
                self.end(session, Closed(reason) if reason in _CLOSED else Closed.GONE, notify=(local,))

    def _pass_on(self, local: Connection, session: Session, data: bytes, frames: int) -> None:
        if local.life is not _OPEN:
            return
        self.hub.queue(local, data)
        session.frames += frames
        session.bytes += len(data)
        stats = self.hub.stats
        stats.frames += frames
        stats.bytes += len(data)


def _new_sid() -> bytes:
    return secrets.token_hex(SID_LENGTH // 2).encode("ascii")


def _not_here(nick: str, binding: Optional[Binding]) -> None:
    if binding is None:
        raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
    raise ProtocolError(Code.OFFLINE, f"{nick} is not connected")


def _pending(sessions: Iterable[Session], initiator: Optional[Connection] = None, responder: Optional[Connection] = None) -> int:
    return sum(
        1 for s in sessions
        if not s.open and (s.initiator is initiator if initiator is not None else s.responder is responder)
    )
