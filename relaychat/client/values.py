"""The values the client library hands to programs: users, peers, mail, how a conversation ended.

Plain frozen records, so a program can keep, compare and print them
without holding on to the connection they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from relaychat.client.channel import SMPAborted, SMPRequested, SMPResult
from relaychat.client.errors import ConversationFailed
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.nicknames import canonical


@dataclass(frozen=True)
class User:
    """One line of ``WHO``: an online nickname and the key the relay claims for it."""

    nick: str
    identity_pub: bytes

    @property
    def identity_fingerprint(self) -> str:
        return identity_fingerprint(self.identity_pub)


@dataclass(frozen=True)
class PeerInfo:
    """A ``LOOKUP`` answer whose ``static_sig`` was verified, with our pin status.

    ``pin`` is NEW (never seen: nothing pinned yet), MATCH or CHANGED; the
    keys are still the relay's claim until a conversation or a safety number
    confirms them.
    """

    nick: str
    identity_pub: bytes
    static_pub: bytes
    online: bool
    pin: PinStatus

    @property
    def identity_fingerprint(self) -> str:
        return identity_fingerprint(self.identity_pub)


@dataclass(frozen=True)
class ReceivedMail:
    """A sealed mail, opened and verified (sender binding and pin); ACKed once observed.

    ``time`` is the sender's sealed time (Unix seconds), not the relay's.
    """

    mail_id: int
    sender: str
    time: int
    text: str
    message_id: bytes
    sender_fingerprint: str


@dataclass(frozen=True)
class MailProblem:
    """A mail that could not be shown; ``error`` says why (``KeyChanged``, ``MailError``).

    A mail from a changed key is left on the relay (it comes back at the next
    login, and can be read after the new key is accepted); a mail that does
    not open is deleted after being reported. ``time`` is the relay's.
    """

    mail_id: int
    sender: str
    time: int
    error: Exception

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class Ended:
    """How a conversation ended.

    ``clean`` is True only when the peer's encrypted CLOSE arrived (or we
    closed it ourselves): nothing was cut off. ``error`` is set when it
    ended because something was wrong (tampering, a changed key, ...).
    """

    clean: bool
    reason: str
    by_peer: bool
    error: Optional[ConversationFailed] = None


SMPEvent = Union[SMPRequested, SMPResult, SMPAborted]
MailEvent = Union[ReceivedMail, MailProblem]


def canonical_nick(nick: str) -> str:
    """Section 4's canonical form; ValueError (a NicknameError) for a nickname the relay would refuse."""
    return canonical(nick)
