"""Staying connected: reconnect with backoff and jitter, and take conversations up again.

Two layers, as everywhere in the library:

* :class:`Backoff` is the policy, a plain object: the delay before each
  attempt (exponential, capped, with jitter so that a relay's restart is not
  met by every client at the same instant), reset after a success. And
  :func:`retry_after` decides which endings are worth a retry at all: a
  lost connection, a draining relay, a busy one yes; a kick, a ban, a
  nickname taken, a relay whose identity changed, our own QUIT no.

* :class:`Reconnector` is the thin Twisted part. It calls ``connect()``
  (which fires with a registered :class:`ChatClient`), watches the client,
  and when the connection ends for a retryable reason it waits, connects
  and registers again, and tells its observers each step as a
  :class:`LinkEvent`.

Conversations that ended only because a connection went away (ours, the
peer's, or the relay's restart: :attr:`Ended.connection_broke`) become a
:class:`Resumption` for ``resume_window`` seconds: the side that called
calls again (retrying while the peer is still offline), the side that
answered accepts the next offer from that nickname whose key is the one
pinned. Either way it is a *new* handshake, checked against the same pin; a
changed key fails it like any other conversation. Text sent to a
Resumption waits, and goes out in order once the conversation is back, or
comes back in :attr:`ResumeFailed.unsent` so the program can say which
lines were not sent. What the old session sent but never saw confirmed
(:attr:`Ended.unconfirmed`, section 11 receipts) is *not* sent again: it
may well have arrived, and only the user can tell; the program names it.
A relay that comes back with another identity (:class:`RelayChanged`) ends
the reconnecting (:class:`GaveUp`): only the user may accept it.
"""

from __future__ import annotations

import enum
import hmac
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from relaychat.client.chat_client import ChatClient
from relaychat.client.conversation import Conversation
from relaychat.client.errors import (
    ConversationClosed,
    ConversationFailed,
    Declined,
    Disconnected,
    MessageTooLong,
    RelayChanged,
    RelayError,
)
from relaychat.client.feed import Feed, log
from relaychat.client.offer import IncomingOffer
from relaychat.client.values import Ended
from relaychat.crypto.pins import PinStatus

__all__ = [
    "Backoff",
    "Connected",
    "GaveUp",
    "LinkEvent",
    "LinkState",
    "Lost",
    "MAX_QUEUED",
    "Reconnector",
    "ResumeFailed",
    "Resumed",
    "Resuming",
    "Resumption",
    "Retrying",
    "retry_after",
]

#: Lines a Resumption holds for its peer while the conversation is away.
MAX_QUEUED = 100

# BYE codes (protocol section 2) after which connecting again is right: the
# relay is restarting, was busy, or we were idle; any other BYE (kicked,
# banned, replaced, quit, violations) is someone's decision, not an accident.
_RETRY_BYE = frozenset({"lost", "timeout", "idle", "busy", "draining", "protocol"})
# Registration refusals that no retry will change.
_FINAL_CODES = frozenset({"banned", "taken", "bad-nick", "version", "pow", "too-much-work",
                          "bad-key", "bad-signature"})


def retry_after(error: BaseException) -> bool:
    """True if connecting again may help after ``error`` ended (or refused) the connection."""
    if isinstance(error, Disconnected):
        return error.code in _RETRY_BYE
    if isinstance(error, RelayError):
        return error.code not in _FINAL_CODES
    if isinstance(error, (ConversationFailed, RelayChanged, ValueError)):
        return False  # RelayChanged: the user decides (section 13), a retry must not
    return True  # refused, DNS, TLS, timeouts: the relay may be back in a moment


class Backoff:
    """Delays between attempts: ``initial * factor**n`` capped at ``maximum``,
    each scaled by a random factor in ``[1 - jitter, 1]`` (``random`` is
    injectable so tests are exact)."""

    def __init__(self, initial: float = 1.0, factor: float = 2.0, maximum: float = 60.0,
                 jitter: float = 0.5, random: Callable[[], float] = random.random) -> None:
        if not (initial > 0 and factor >= 1 and maximum >= initial and 0 <= jitter <= 1):
            raise ValueError("Backoff needs initial > 0, factor >= 1, maximum >= initial, 0 <= jitter <= 1")
        self.initial, self.factor, self.maximum, self.jitter = initial, factor, maximum, jitter
        self._random = random
        self.attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; counts the attempt."""
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1 - self.jitter * self._random())

    def reset(self) -> None:
        """After a success: the next failure starts from ``initial`` again."""
        self.attempts = 0


# -- what observers are told ----------------------------------------------------


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # the first connect() is under way
    CONNECTED = "connected"
    WAITING = "waiting"  # lost; the next attempt is scheduled
    STOPPED = "stopped"  # stop() was called, or a retry cannot help


@dataclass(frozen=True)
class Connected:
    """A registered client; ``again`` is True after a reconnection."""

    client: ChatClient
    again: bool


@dataclass(frozen=True)
class Lost:
    """The connection ended; ``retry_in`` seconds until the next attempt (None: no retry)."""

    error: Disconnected
    retry_in: Optional[float]


@dataclass(frozen=True)
class Retrying:
    """An attempt failed; the next one is in ``retry_in`` seconds."""

    error: BaseException
    attempt: int
    retry_in: float


@dataclass(frozen=True)
class GaveUp:
    """An attempt failed in a way no retry changes (banned, nickname taken, ...)."""

    error: BaseException


@dataclass(frozen=True)
class Resuming:
    """A conversation broke with a connection; it is being taken up again."""

    resumption: Resumption


@dataclass(frozen=True)
class Resumed:
    """The conversation is back: a new verified handshake with the same pinned key;
    ``sent`` is how many waiting lines were sent in it."""

    resumption: Resumption
    conversation: Conversation
    sent: int


@dataclass(frozen=True)
class ResumeFailed:
    """The conversation could not be taken up again; ``unsent`` are the lines that
    waited for it and were not sent."""

    resumption: Resumption
    error: BaseException
    unsent: tuple[str, ...]


LinkEvent = Union[Connected, Lost, Retrying, GaveUp, Resuming, Resumed, ResumeFailed]


# -- a conversation waiting to come back -----------------------------------------


class _ResumeState(enum.Enum):
    WAITING = "waiting"  # for the connection, the peer's return, or the peer's offer
    CALLING = "calling"
    DONE = "done"


@dataclass(eq=False)
class Resumption:
    """A conversation with ``nick`` that broke with a connection, until it is back.

    ``initiator``: we called, so we call again. ``peer_identity``: the key
    it had; the new handshake must show the same key (the pin enforces it).
    """

    nick: str
    initiator: bool
    peer_identity: bytes = field(repr=False)
    deadline: float
    cause: Optional[str] = None  # Ended.cause: lost (ours), gone (theirs), draining (the relay)
    queued: deque[str] = field(default_factory=deque, repr=False)
    state: _ResumeState = _ResumeState.WAITING

    def send(self, text: str) -> None:
        """Keep ``text`` for the conversation once it is back. Raises
        ConversationClosed once given up, MessageTooLong past MAX_QUEUED lines."""
        if self.state is _ResumeState.DONE:
            raise ConversationClosed(f"The conversation with {self.nick} is over.")
        if len(self.queued) >= MAX_QUEUED:
            raise MessageTooLong(f"{MAX_QUEUED} lines already wait for {self.nick}; wait for the conversation.")
        self.queued.append(text)


class Reconnector:
    """One relay connection kept up, and the conversations that broke with it.

    ``connect()`` makes a new connection and fires with a registered
    :class:`ChatClient` (``relaychat.client.connect`` with fixed arguments).
    Observers get every :class:`LinkEvent`; offers that do not resume a
    conversation go to :meth:`observe_offers`, from whichever client.
    """

    def __init__(self, reactor: Any, connect: Callable[[], Deferred[ChatClient]], *, backoff: Optional[Backoff] = None,
                 resume_window: float = 120.0, call_backoff: Optional[Backoff] = None) -> None:
        self.reactor = reactor
        self._connect = connect
        self.backoff = backoff or Backoff()
        self._call_backoff = call_backoff or Backoff(initial=2.0, maximum=15.0)
        self.resume_window = resume_window
        self.state = LinkState.CONNECTING
        self.client: Optional[ChatClient] = None
        self._events: Feed[LinkEvent] = Feed()
        self._offers: Feed[IncomingOffer] = Feed()
        self._resumptions: dict[str, Resumption] = {}
        self._timer: Optional[IDelayedCall] = None
        self._connecting: Optional[Deferred[ChatClient]] = None
        self._broken: list[tuple[Conversation, Ended]] = []  # cut off with our connection, until _lost
        self._timers: dict[str, IDelayedCall] = {}  # each resumption's deadline
        self._calls: dict[str, IDelayedCall] = {}  # each resumption's next call
        self._started = False

    # -- public -----------------------------------------------------------------

    def observe(self, observer: Callable[[LinkEvent], None]) -> None:
        self._events.add(observer)

    def observe_offers(self, observer: Callable[[IncomingOffer], None]) -> None:
        """Offers for the program: all but those that take a broken conversation up again."""
        self._offers.add(observer)

    def start(self) -> Deferred[ChatClient]:
        """The first connection: fires with the client, or fails as ``connect()`` did
        (a program usually stops there: the relay may simply be wrong)."""
        if self._started:
            raise RuntimeError("start() was already called")
        self._started = True
        d = self._connect()
        d.addCallback(self._connected, again=False)
        d.addErrback(self._first_failed)
        return d

    def resumption(self, nick: str) -> Optional[Resumption]:
        """The conversation with ``nick`` being taken up again, if it is."""
        return self._resumptions.get(nick.lower())

    def resumptions(self) -> list[Resumption]:
        return list(self._resumptions.values())

    def abandon(self, nick: str) -> bool:
        """Stop taking the conversation with ``nick`` up again (the user closed it)."""
        resumption = self._resumptions.get(nick.lower())
        if resumption is None:
            return False
        self._fail(resumption, ConversationClosed(f"You stopped waiting for {resumption.nick}."))
        return True

    def stop(self) -> Deferred[Any]:
        """No more reconnecting; QUIT the current client if any. Fires when done."""
        self.state = LinkState.STOPPED
        self._cancel(self._timer)
        self._timer = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        for resumption in list(self._resumptions.values()):
            self._fail(resumption, ConversationClosed(f"The conversation with {resumption.nick} was not resumed."),
                       quiet=True)
        client, self.client = self.client, None
        if client is None:
            return succeed(None)
        return client.quit()

    # -- the connection -----------------------------------------------------------

    def _first_failed(self, failure: Failure) -> Failure:
        self.state = LinkState.STOPPED
        return failure

    def _connected(self, client: ChatClient, again: bool) -> ChatClient:
        if self.state is LinkState.STOPPED:  # stopped while connecting
            client.quit().addErrback(lambda _: None)
            return client
        self.state = LinkState.CONNECTED
        self.client = client
        self.backoff.reset()
        client.observe_conversations(self._watch)
        client.observe_offers(self._offered)
        client.observe_disconnect(lambda reason: self._lost(client))
        self._events.emit(Connected(client, again))
        for resumption in list(self._resumptions.values()):
            if resumption.initiator and resumption.state is _ResumeState.WAITING:
                self._call(resumption)
        return client

    def _lost(self, client: ChatClient) -> None:
        if client is not self.client:
            return
        self.client = None
        error = client.disconnected or Disconnected("lost", "connection closed")
        broken, self._broken = self._broken, []
        if self.state is LinkState.STOPPED or not retry_after(error):
            self.state = LinkState.STOPPED
            self._events.emit(Lost(error, None))
            for resumption in list(self._resumptions.values()):
                self._fail(resumption, error, quiet=True)
            return
        self.state = LinkState.WAITING
        delay = self.backoff.next_delay()
        self._events.emit(Lost(error, delay))
        for conversation, ended in broken:
            self._resume(conversation, ended)
        self._timer = self.reactor.callLater(delay, self._attempt)

    def _attempt(self) -> None:
        self._timer = None
        if self.state is not LinkState.WAITING:
            return
        d = self._connecting = self._connect()
        d.addBoth(self._attempt_over)
        d.addCallback(self._connected, again=True)
        d.addErrback(self._attempt_failed)

    def _attempt_over(self, result: Any) -> Any:
        self._connecting = None
        return result

    def _attempt_failed(self, failure: Failure) -> None:
        if self.state is not LinkState.WAITING:
            return
        error = _cause(failure)
        if not retry_after(error):
            self.state = LinkState.STOPPED
            for resumption in list(self._resumptions.values()):
                self._fail(resumption, error)
            self._events.emit(GaveUp(error))
            return
        attempt = self.backoff.attempts
        delay = self.backoff.next_delay()
        self._events.emit(Retrying(error, attempt, delay))
        self._timer = self.reactor.callLater(delay, self._attempt)

    # -- conversations --------------------------------------------------------------

    def _watch(self, conversation: Conversation) -> None:
        conversation.observe_end(lambda ended: self._ended(conversation, ended))

    def _ended(self, conversation: Conversation, ended: Ended) -> None:
        if not ended.connection_broke or conversation.peer_identity is None:
            return
        if self.state is LinkState.STOPPED and self.client is None:
            return
        if ended.cause == "lost":  # our connection: _lost says so first, then decides whether to resume
            self._broken.append((conversation, ended))
            return
        self._resume(conversation, ended)

    def _resume(self, conversation: Conversation, ended: Ended) -> None:
        key = conversation.nick.lower()
        assert conversation.peer_identity is not None  # _ended lets only verified conversations through
        previous = self._resumptions.get(key)
        if previous is not None:
            self._fail(previous, ConversationClosed(f"The conversation with {conversation.nick} broke again."),
                       quiet=True)
        resumption = Resumption(conversation.nick, conversation.initiator, conversation.peer_identity,
                                self.reactor.seconds() + self.resume_window, ended.cause)
        self._resumptions[key] = resumption
        self._timers[key] = self.reactor.callLater(self.resume_window, self._expired, resumption)
        self._events.emit(Resuming(resumption))
        if resumption.initiator and self.client is not None:  # the peer went away, not us
            self._schedule_call(resumption)

    def _expired(self, resumption: Resumption) -> None:
        self._timers.pop(resumption.nick.lower(), None)
        if self._resumptions.get(resumption.nick.lower()) is resumption:
            self._fail(resumption, ConversationClosed(
                f"{resumption.nick} could not be reached again within {self.resume_window:g} seconds."
                if resumption.initiator else
                f"{resumption.nick} did not call again within {self.resume_window:g} seconds."))

    def _schedule_call(self, resumption: Resumption) -> None:
        key = resumption.nick.lower()
        self._cancel(self._calls.pop(key, None))
        self._calls[key] = self.reactor.callLater(self._call_backoff.next_delay(), self._call, resumption)

    def _call(self, resumption: Resumption) -> None:
        self._calls.pop(resumption.nick.lower(), None)
        client = self.client
        if client is None or resumption.state is not _ResumeState.WAITING \
                or self._resumptions.get(resumption.nick.lower()) is not resumption:
            return
        resumption.state = _ResumeState.CALLING
        d = client.call(resumption.nick)
        d.addCallbacks(lambda conversation: self._back(resumption, conversation),
                       lambda failure: self._call_failed(resumption, failure))
        d.addErrback(lambda failure: log.failure("resuming a conversation failed", failure))

    def _call_failed(self, resumption: Resumption, failure: Failure) -> None:
        if resumption.state is _ResumeState.DONE:
            return
        resumption.state = _ResumeState.WAITING
        error = _cause(failure)
        if isinstance(error, Disconnected):
            return  # the connection went too: _connected calls again
        retry = (isinstance(error, RelayError) and error.code in ("offline", "limit", "draining")) \
            or (isinstance(error, Declined) and error.reason in ("gone", "draining"))
        if not retry:
            self._fail(resumption, error)
        elif self.client is not None:
            self._schedule_call(resumption)

    def _offered(self, offer: IncomingOffer) -> None:
        resumption = self._resumptions.get(offer.nick.lower())
        if (resumption is None or resumption.initiator or resumption.state is not _ResumeState.WAITING
                or offer.pin is not PinStatus.MATCH
                or not hmac.compare_digest(offer.identity_pub, resumption.peer_identity)):
            self._offers.emit(offer)
            return
        resumption.state = _ResumeState.CALLING
        offer.accept().addCallbacks(lambda conversation: self._back(resumption, conversation),
                                    lambda failure: self._accept_failed(resumption, failure))

    def _accept_failed(self, resumption: Resumption, failure: Failure) -> None:
        if resumption.state is not _ResumeState.DONE:
            resumption.state = _ResumeState.WAITING  # the peer may offer again within the window

    def _back(self, resumption: Resumption, conversation: Conversation) -> None:
        if resumption.state is _ResumeState.DONE:  # given up meanwhile: end the newcomer
            conversation.close()
            return
        same = (conversation.peer_identity is not None and not conversation.first_contact
                and hmac.compare_digest(conversation.peer_identity, resumption.peer_identity))
        if not same:  # e.g. the relay's identity changed, so nothing was pinned there: not the same peer
            conversation.close()
            self._fail(resumption, ConversationClosed(
                f"The new conversation with {resumption.nick} did not show the key pinned before, "
                "so it was not taken as the same one; what waited was not sent."))
            return
        self._finish(resumption)
        sent = 0
        unsent: list[str] = []
        for text in resumption.queued:
            if unsent:
                unsent.append(text)
                continue
            try:
                conversation.send(text)
                sent += 1
            except (ConversationFailed, MessageTooLong):
                unsent.append(text)
        resumption.queued.clear()
        self._events.emit(Resumed(resumption, conversation, sent))
        if unsent:
            self._events.emit(ResumeFailed(resumption, ConversationClosed(
                f"The conversation with {resumption.nick} ended before everything was sent."), tuple(unsent)))

    def _fail(self, resumption: Resumption, error: BaseException, quiet: bool = False) -> None:
        if resumption.state is _ResumeState.DONE:
            return
        self._finish(resumption)
        unsent = tuple(resumption.queued)
        resumption.queued.clear()
        if not quiet or unsent:
            self._events.emit(ResumeFailed(resumption, error, unsent))

    def _finish(self, resumption: Resumption) -> None:
        resumption.state = _ResumeState.DONE
        key = resumption.nick.lower()
        if self._resumptions.get(key) is resumption:
            del self._resumptions[key]
        self._cancel(self._timers.pop(key, None))
        self._cancel(self._calls.pop(key, None))

    @staticmethod
    def _cancel(call: Any) -> None:
        """Cancel an IDelayedCall (or a None) if it is still due."""
        if call is not None and call.active():
            call.cancel()


def _cause(failure: Failure) -> BaseException:
    """The exception ``failure`` holds: Twisted types the attribute Optional,
    but a Failure is never made without one (it raises instead)."""
    assert failure.value is not None
    return failure.value
