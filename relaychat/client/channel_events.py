"""What a :class:`~relaychat.client.channel.Channel` tells its owner: the events
of one end-to-end conversation (docs/protocol.rst sections 10-14), sans I/O.

Each is a small frozen record; the owner acts on them in order (send a
frame, pin a key, show a message, report a failure). They live apart from
the channel's state machine so the machine reads as one piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from relaychat.client.errors import ConversationFailed
from relaychat.crypto.pins import PinStatus


@dataclass(frozen=True)
class SendFrame:
    """Put ``payload`` in a ``FRAME`` for this session now, before anything later."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class HandshakeComplete:
    """Both checks of section 10 passed; chat may start.

    ``pin`` is NEW on first contact: the caller pins ``peer_identity`` now.
    """

    peer_identity: bytes = field(repr=False)
    peer_fingerprint: str
    safety_number: str
    pin: PinStatus


@dataclass(frozen=True)
class MessageReceived:
    text: str = field(repr=False)


@dataclass(frozen=True)
class Delivered:
    """The peer confirmed (RECEIPT, section 11) these TEXT messages of ours:
    (number, first words), the number being ``Channel.last_text_number``
    just after each was sent."""

    messages: tuple[tuple[int, str], ...] = field(repr=False)

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(n for n, _ in self.messages)


@dataclass(frozen=True)
class PeerClosed:
    """The conversation is over from the peer's side. ``clean``: their
    encrypted CLOSE arrived, so nothing was cut off."""

    clean: bool
    reason: str


@dataclass(frozen=True)
class UnknownMessage:
    """An authenticated message of a type we do not know: reported, ignored (section 11)."""

    type: int
    reason: str


@dataclass(frozen=True)
class ChannelFailed:
    """The channel is dead; ``error`` says why (KeyChanged, HandshakeFailed, MessageRejected)."""

    error: ConversationFailed

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class SMPRequested:
    """The peer started a shared-secret check: answer with ``smp_respond(secret)``."""


@dataclass(frozen=True)
class SMPResult:
    """A shared-secret check finished: ``equal`` is True iff both typed the same
    secret in this very session (so nobody is in the middle)."""

    equal: bool


@dataclass(frozen=True)
class SMPAborted:
    """A shared-secret check stopped without a result; ``reason`` is a sentence."""

    reason: str


Event = Union[
    SendFrame, HandshakeComplete, MessageReceived, PeerClosed, UnknownMessage, ChannelFailed,
    SMPRequested, SMPResult, SMPAborted, Delivered,
]
