"""The values the client library hands to programs: users, peers, mail, how a conversation ended.

Plain frozen records, so a program can keep, compare and print them
without holding on to the connection they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from relaychat.client.channel import SMPAborted, SMPRequested, SMPResult
from relaychat.client.contacts import Verification
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
    lookalike_of: Optional[str] = None  # a first contact whose name imitates this pinned contact's


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
class MailRead:
    """``reader`` opened a mail we sealed to them (their sealed read receipt, section 12).

    ``first_words`` names our mail; ``sent`` is when we sealed it and
    ``read`` the time in their receipt (their clock)."""

    reader: str
    first_words: str
    sent: int
    read: int


@dataclass(frozen=True)
class Delivery:
    """The peer confirmed one of our messages (section 11 RECEIPT).

    ``number`` is what :meth:`Conversation.send` returned for it."""

    number: int
    first_words: str


@dataclass(frozen=True)
class Ended:
    """How a conversation ended.

    ``clean`` is True only when the peer's encrypted CLOSE arrived (or we
    closed it ourselves): nothing was cut off. ``error`` is set when it
    ended because something was wrong (tampering, a changed key, ...).
    ``cause`` says what ended the relay session when the relay (or the
    connection to it) did: the ``CLOSED`` reason word (``gone``,
    ``kicked``, ``draining``, ...) or ``lost`` (our connection ended);
    None otherwise. :attr:`connection_broke` tells whether the conversation
    may be taken up again once both ends are back (see ``Reconnector``).
    ``unconfirmed`` names, by their first words, our messages the peer never
    confirmed (section 11 receipts), oldest first; ``unconfirmed_count``
    also counts those too many to name. Both are empty when everything
    arrived. A conversation taken up again does not send them again (the
    old session's keys are gone, and they may well have arrived): they are
    reported, and the user decides.
    """

    clean: bool
    reason: str
    by_peer: bool
    error: Optional[ConversationFailed] = None
    cause: Optional[str] = None
    unconfirmed: tuple[str, ...] = ()
    unconfirmed_count: int = 0

    @property
    def connection_broke(self) -> bool:
        """It ended only because a connection went away (ours, the peer's, or
        the relay restarting), not because anyone chose to end it."""
        return not self.clean and self.cause in RESUMABLE_CAUSES


#: ``Ended.cause`` values after which a conversation may be re-established.
RESUMABLE_CAUSES = frozenset({"lost", "gone", "draining"})


@dataclass(frozen=True)
class ContactInfo:
    """One pinned contact on this relay, as ``/contacts`` shows it.

    ``identity_pub`` is None when the pin is disputed (a damaged file);
    ``first_seen``/``last_seen`` are None for a pin made before this
    client kept them; ``verified`` is how and when the user verified
    exactly this key, or None."""

    nick: str
    identity_pub: Optional[bytes]
    first_seen: Optional[int]
    last_seen: Optional[int]
    verified: Optional[Verification]

    @property
    def identity_fingerprint(self) -> Optional[str]:
        return identity_fingerprint(self.identity_pub) if self.identity_pub is not None else None


SMPEvent = Union[SMPRequested, SMPResult, SMPAborted]
MailEvent = Union[ReceivedMail, MailProblem, MailRead]


def canonical_nick(nick: str) -> str:
    """Section 4's canonical form; ValueError (a NicknameError) for a nickname the relay would refuse."""
    return canonical(nick)
