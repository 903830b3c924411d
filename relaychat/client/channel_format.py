"""The end-to-end message format a :class:`~relaychat.client.channel.Channel` speaks
(protocol sections 7, 10 and 11), apart from the machine that speaks it.

The Noise protocol name and the prologue that binds a handshake to its
session and both nicknames (section 10); the transport messages' type byte,
how much text one frame carries and how a longer one is split (section 11);
and the words for the reasons a relay gives in ``CLOSED`` (section 7). Pure
functions and constants: the browser client checks its own copies against
these (tests/test_web_protocol.py).
"""

from __future__ import annotations

import enum

from relaychat.wire.codec import lp

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAX_MESSAGE_BYTES",
    "MessageType",
    "PROLOGUE_CONTEXT",
    "PROTOCOL_NAME",
    "REKEY_INTERVAL",
    "TAG_SIZE",
    "closed_reason",
    "max_text_bytes",
    "prologue",
    "split_text",
]

PROTOCOL_NAME = "Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE_CONTEXT = b"relaychat-e2e-v1"
REKEY_INTERVAL = 1000
DEFAULT_MAX_FRAME = 32768
TAG_SIZE = 16
#: The longest text one message carries once joined from its parts
#: (section 11, TEXT_PART): what a peer can make us hold for one message.
MAX_MESSAGE_BYTES = 1 << 20


class MessageType(enum.IntEnum):
    """The first plaintext byte of a transport message (section 11)."""

    TEXT = 0x01
    CLOSE = 0x02
    SMP = 0x03
    RECEIPT = 0x04
    TEXT_PART = 0x05  # a piece of a longer text; the TEXT that follows ends it


def prologue(sid: str, initiator_nick: str, responder_nick: str) -> bytes:
    """Section 10: binds version, session id and both canonical nicknames, so a
    relay that splices two sessions makes the handshake fail."""
    return (
        PROLOGUE_CONTEXT
        + lp(sid.encode("ascii"))
        + lp(initiator_nick.encode("utf-8"))
        + lp(responder_nick.encode("utf-8"))
    )


def max_text_bytes(max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """The longest UTF-8 text one TEXT message carries (section 11: ``max_frame - 17``)."""
    return max_frame - TAG_SIZE - 1


def closed_reason(reason: str, peer: str) -> str:
    """The words for a ``CLOSED`` reason (section 7), about the peer ``peer``."""
    words = {
        "gone": f"{peer} lost the connection to the relay",
        "kicked": f"{peer} was disconnected by the relay",
        "draining": "the relay is shutting down or restarting",
        "closed": f"{peer} closed the session",
        "timeout": "the relay timed the session out",
        "declined": f"{peer} declined",
    }
    if reason in words:
        return words[reason]
    shown = reason if reason.isascii() and reason.replace("-", "").isalnum() else "?"
    return f"the relay says: {shown}"


def split_text(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> list[tuple[MessageType, bytes]]:
    """Section 11: ``data`` (UTF-8) as TEXT_PART pieces of ``max_frame - 17``
    bytes and a final TEXT; one TEXT when it fits. Cut at byte boundaries:
    the receiver decodes only the joined whole."""
    room = max_text_bytes(max_frame)
    pieces = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
    return [(MessageType.TEXT_PART, piece) for piece in pieces[:-1]] + [(MessageType.TEXT, pieces[-1])]
