"""The session commands, OFFER, ACCEPT, DECLINE and CLOSE (docs/protocol.rst section 7).

A mixin of :class:`~relaychat.server.hub.Hub`, kept apart so the hub's
module holds its engine (reads, the FRAME path, dispatch, output) and this
one what a session's start and end look like. The methods run as the hub's:
they answer through its output and end sessions with its bookkeeping.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Iterable, Optional

from relaychat.server.connection import Connection, Session
from relaychat.server.limits import Limits
from relaychat.server.store import Store
from relaychat.wire import messages as m
from relaychat.wire.errors import Closed, Code, ProtocolError
from relaychat.wire.nicknames import canonical
from relaychat.wire.tokens import SID_LENGTH, safe_sid


class SessionCommands:
    """Offers and sessions; ``offers`` holds the sessions offered but not yet accepted."""

    offers: dict[bytes, Session]
    online: dict[str, Connection]
    draining: bool
    limits: Limits
    store: Store

    if TYPE_CHECKING:  # provided by the Hub
        from relaychat.server.hub import Stats

        stats: Stats

        def _send(self, client: Connection, message: m.Message) -> None: ...
        def _end_session(self, session: Session, reason: Closed, notify: Iterable[Connection]) -> None: ...
        def _update_reading(self, client: Connection) -> None: ...

    def _offer(self, client: Connection, offer: m.Offer, now: float) -> None:
        if self.draining:
            raise ProtocolError(Code.DRAINING, "the relay is shutting down")
        canon = canonical(offer.nick)
        target = self.online.get(canon)
        if target is None:
            if self.store.binding(canon) is None:
                raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
            raise ProtocolError(Code.OFFLINE, f"{offer.nick} is not connected")
        if target is client:
            raise ProtocolError(Code.INVALID, "you cannot talk to yourself")
        limits = self.limits
        if len(client.sessions) >= limits.max_sessions or len(target.sessions) >= limits.max_sessions:
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_sessions} sessions each")
        if (
            _pending(client.sessions.values(), initiator=client) >= limits.max_pending_offers
            or _pending(target.sessions.values(), responder=target) >= limits.max_pending_offers
        ):
            raise ProtocolError(Code.LIMIT, f"at most {limits.max_pending_offers} unanswered offers")
        sid = secrets.token_hex(SID_LENGTH // 2).encode("ascii")
        session = Session(sid, client, target, now)
        client.sessions[sid] = target.sessions[sid] = session
        self.offers[sid] = session
        text_sid = sid.decode("ascii")
        assert client.display is not None and client.identity_pub is not None and target.display is not None
        self._send(client, m.OfferOk(text_sid, target.display))
        self._send(target, m.Offered(text_sid, client.display, client.identity_pub))

    def _accept(self, client: Connection, accept: m.Accept, now: float) -> None:
        session = self._offered_to(client, accept.sid)
        session.open = True
        del self.offers[session.sid]
        self.stats.sessions_opened += 1
        sid = session.sid.decode("ascii")
        self._send(client, m.AcceptOk(sid))
        self._send(session.initiator, m.Accepted(sid))
        self._update_reading(session.initiator)
        self._update_reading(session.responder)

    def _decline(self, client: Connection, decline: m.Decline, now: float) -> None:
        session = self._offered_to(client, decline.sid)
        self._send(client, m.DeclineOk(decline.sid))
        self._end_session(session, Closed.DECLINED, notify=(session.initiator,))

    def _close(self, client: Connection, close: m.Close, now: float) -> None:
        session = self._own_session(client, close.sid)
        self._send(client, m.CloseOk(close.sid))
        self._end_session(session, Closed.CLOSED, notify=(session.other(client),))

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


def _pending(sessions: Iterable[Session], initiator: Optional[Connection] = None, responder: Optional[Connection] = None) -> int:
    return sum(
        1 for s in sessions
        if not s.open and (s.initiator is initiator if initiator is not None else s.responder is responder)
    )
