"""An offer of a conversation someone made us, until we accept or decline it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from relaychat.client.conversation import Conversation
from relaychat.client.errors import ConversationClosed
from relaychat.client.feed import Feed, log
from relaychat.crypto.safety import identity_fingerprint

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient


class IncomingOffer:
    """Someone wants to talk. ``identity_pub`` is the relay's claim; ``pin`` says
    how it compares with our pin (the handshake checks the real key)."""

    def __init__(self, client: ChatClient, sid: str, nick: str, identity_pub: bytes) -> None:
        self._client = client
        self.sid = sid
        self.nick = nick
        self.identity_pub = identity_pub
        self.fingerprint = identity_fingerprint(identity_pub)
        self.pin = client._pin_status(nick, identity_pub)
        self.withdrawn = False
        self.answered = False
        self._withdrawn: Feed[str] = Feed()

    def __repr__(self) -> str:
        return f"<IncomingOffer {self.sid} from {self.nick}>"

    def accept(self) -> Deferred:
        """Accept; fires with a :class:`Conversation` once the handshake is verified."""
        if self.withdrawn or self.answered:
            return fail(ConversationClosed(f"The offer from {self.nick} is no longer open."))
        self.answered = True
        client = self._client
        client._offers.pop(self.sid, None)
        conversation = Conversation(client, self.sid, self.nick, initiator=False)
        client._sessions[self.sid] = conversation

        def refused(failure: Failure) -> None:
            conversation._relay_open = False
            client._forget(conversation)
            if not conversation._ready.called:
                conversation._ready.errback(failure)
            conversation._handle(conversation._channel.fail(ConversationClosed(
                f"The offer from {self.nick} could not be accepted.")))

        client._protocol.accept(self.sid).addCallbacks(lambda _: conversation._begin(), refused).addErrback(
            lambda failure: log.failure("accepting an offer failed", failure))
        return conversation._ready

    def decline(self) -> Deferred:
        if self.withdrawn or self.answered:
            return succeed(None)
        self.answered = True
        self._client._offers.pop(self.sid, None)
        return self._client._protocol.decline(self.sid).addCallback(lambda _: None)

    def observe_withdrawn(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(reason)`` if the offer ends before we answer it."""
        self._withdrawn.add(observer)

    def _withdraw(self, reason: str) -> None:
        self.withdrawn = True
        texts = {"timeout": f"The offer from {self.nick} timed out.", "gone": f"{self.nick} disconnected."}
        self._withdrawn.emit(texts.get(reason, f"{self.nick} withdrew the offer."))
