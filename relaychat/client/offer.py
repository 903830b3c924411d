"""An offer of a conversation someone made us, until we accept or decline it."""

from __future__ import annotations

import enum
from typing import Any, Callable, TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed

from relaychat.client.conversation import Conversation
from relaychat.client.errors import ConversationClosed
from relaychat.client.feed import Feed, log
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import identity_fingerprint

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient


class OfferState(enum.Enum):
    """An offer is open until we answer it or its sender (or the relay) withdraws it."""

    OPEN = "open"
    ANSWERED = "answered"
    WITHDRAWN = "withdrawn"


class IncomingOffer:
    """Someone wants to talk. ``identity_pub`` is the relay's claim; ``pin`` says
    how it compares with our pin (the handshake checks the real key)."""

    def __init__(self, client: ChatClient, sid: str, nick: str, identity_pub: bytes) -> None:
        self._client = client
        self._sessions = client.sessions
        self.state = OfferState.OPEN
        self.sid = sid
        self.nick = nick
        self.identity_pub = identity_pub
        self.fingerprint = identity_fingerprint(identity_pub)
        self.pin = client.pin_status(nick, identity_pub)
        # A new name that imitates a pinned contact's: warn (section 13).
        self.lookalike_of = client.lookalike_of(nick) if self.pin is PinStatus.NEW else None
        self._withdrawn: Feed[str] = Feed()

    def __repr__(self) -> str:
        return f"<IncomingOffer {self.sid} from {self.nick}>"

    @property
    def withdrawn(self) -> bool:
        return self.state is OfferState.WITHDRAWN

    @property
    def answered(self) -> bool:
        return self.state is OfferState.ANSWERED

    def accept(self) -> Deferred[Any]:
        """Accept; fires with a :class:`Conversation` once the handshake is verified."""
        if self.state is not OfferState.OPEN:
            return fail(ConversationClosed(f"The offer from {self.nick} is no longer open."))
        self.state = OfferState.ANSWERED
        self._sessions.take_offer(self.sid)
        conversation = Conversation(self._client, self.sid, self.nick, initiator=False)
        self._sessions.add(conversation)
        accepting = self._sessions.accept(self.sid)
        accepting.addCallbacks(lambda _: conversation.session_open(), conversation.accept_refused).addErrback(
            lambda failure: log.failure("accepting an offer failed", failure))
        return conversation.when_verified()

    def decline(self) -> Deferred[Any]:
        if self.state is not OfferState.OPEN:
            return succeed(None)
        self.state = OfferState.ANSWERED
        self._sessions.take_offer(self.sid)
        return self._sessions.decline(self.sid).addCallback(lambda _: None)

    def observe_withdrawn(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` if the offer ends before we answer it."""
        self._withdrawn.add(observer)

    def withdraw(self, reason: str) -> None:
        """The relay said the offer ended before we answered (driven by the ChatClient)."""
        self.state = OfferState.WITHDRAWN
        texts = {
            "timeout": f"The offer from {self.nick} timed out.",
            "gone": f"{self.nick} disconnected before you answered.",
            "kicked": f"{self.nick} was disconnected by the relay before you answered.",
            "draining": f"The relay is shutting down; the offer from {self.nick} is gone.",
            "lost": f"The offer from {self.nick} is gone with the connection to the relay.",
        }
        self._withdrawn.emit(texts.get(reason, f"{self.nick} withdrew the offer."))
