"""The table of one relay connection's sessions and unanswered offers, and the relay verbs they use.

A :class:`~relaychat.client.ChatClient` owns one. Conversations and offers
reach the relay, and each other, only through its named methods: nothing
outside the ChatClient reads the connection or the tables directly.
"""

from __future__ import annotations

from typing import Any, Optional, TYPE_CHECKING

from twisted.internet.defer import Deferred

from relaychat.client.protocol import RelayClientProtocol

if TYPE_CHECKING:
    from relaychat.client.conversation import Conversation
    from relaychat.client.offer import IncomingOffer


class Sessions:
    """Sessions by id (verified or not), offers waiting for our answer, and the relay."""

    def __init__(self, protocol: RelayClientProtocol) -> None:
        self._protocol = protocol
        self._conversations: dict[str, Conversation] = {}
        self._offers: dict[str, IncomingOffer] = {}

    # -- the tables -------------------------------------------------------------

    def knows(self, sid: str) -> bool:
        """A live session or an open offer already has this id."""
        return sid in self._conversations or sid in self._offers

    def conversation(self, sid: str) -> Optional[Conversation]:
        return self._conversations.get(sid)

    def conversations(self) -> list[Conversation]:
        return list(self._conversations.values())

    def add(self, conversation: Conversation) -> None:
        self._conversations[conversation.sid] = conversation

    def forget(self, conversation: Conversation) -> None:
        """Drop ``conversation`` once the relay no longer knows its session."""
        if self._conversations.get(conversation.sid) is conversation and not conversation.relay_session_open:
            del self._conversations[conversation.sid]

    def offers(self) -> list[IncomingOffer]:
        return list(self._offers.values())

    def add_offer(self, offer: IncomingOffer) -> None:
        self._offers[offer.sid] = offer

    def take_offer(self, sid: str) -> Optional[IncomingOffer]:
        """Remove and return the open offer ``sid`` (answered or withdrawn), if any."""
        return self._offers.pop(sid, None)

    def clear(self) -> None:
        self._conversations.clear()
        self._offers.clear()

    # -- relay verbs ------------------------------------------------------------

    def send_frame(self, sid: str, payload: bytes) -> None:
        """Raises Disconnected once the connection is gone."""
        self._protocol.send_frame(sid, payload)

    def close(self, sid: str) -> Deferred[Any]:
        return self._protocol.close(sid)

    def accept(self, sid: str) -> Deferred[Any]:
        return self._protocol.accept(sid)

    def decline(self, sid: str) -> Deferred[Any]:
        return self._protocol.decline(sid)
