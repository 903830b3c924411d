"""Every failure the client library reports, each carrying a sentence for people.

They live in one small module so the sans-IO layers (channel, mail), the
Twisted layers (protocol, conversation, chat_client) and programs built on them all raise and
catch the same classes. ``str(error)`` is always a complete sentence that a
program can show as it is (after making it inert, protocol section 16).
"""

from __future__ import annotations

from typing import Optional

from relaychat.client.known_relays import relay_fingerprint
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.refusals import parse_ban, parse_holder


class RelayError(Exception):
    """The relay refused a command (``ERR <COMMAND> <code> <text>``).

    ``code`` is the protocol's error word (section 2), e.g. ``offline``;
    unknown codes are kept as they came, and callers treat them as a
    generic failure.
    """

    def __init__(self, code: str, text: str, command: str = "-") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.command = command

    def __str__(self) -> str:
        return f"The relay refused {self.command}: {self.text} ({self.code})."

    @property
    def ban(self) -> Optional[tuple[str, int]]:
        """For ``banned``: (``nick``/``key``/``address``, seconds it still runs), if the relay said."""
        return parse_ban(self.text) if self.code == "banned" else None

    @property
    def holder(self) -> Optional[tuple[str, bool]]:
        """For ``taken``: (the nickname that holds the name, whether it is a
        look-alike of the one asked for), if the relay said (section 4)."""
        return parse_holder(self.text) if self.code == "taken" else None


class TooMuchWork(RelayError):
    """The relay asked for more proof of work than this client does: a
    misconfigured or hostile relay must not keep the client hashing for hours."""

    def __init__(self, bits: int, most: int) -> None:
        super().__init__(
            "too-much-work",
            f"the relay asks for {bits} bits of proof of work and this client does at most {most}",
            "REGISTER",
        )
        self.bits = bits

    def __str__(self) -> str:
        return f"Not registering: {self.text}."


class Disconnected(RelayError):
    """The connection to the relay ended; ``code`` is the ``BYE`` code if the
    relay said goodbye, else what the client saw: ``lost`` (the connection
    dropped), ``timeout``, ``protocol`` (the relay broke the protocol) or
    ``tls`` (the relay's certificate was refused)."""

    def __str__(self) -> str:
        return f"Disconnected from the relay: {self.text}."


class ConversationFailed(Exception):
    """An end-to-end conversation could not start, or ended abnormally."""


class HandshakeFailed(ConversationFailed):
    """The Noise handshake or the identity binding check failed."""


class KeyChanged(HandshakeFailed):
    """The peer's identity key is not the one pinned for its nickname.

    Loud on purpose: either the person reinstalled, or someone (the relay)
    is impersonating them. Nothing was pinned; a program may call
    :meth:`relaychat.client.ChatClient.accept_new_key` once the user has
    checked the new key with its owner.
    """

    def __init__(self, nick: str, pinned_key: bytes | None, new_key: bytes) -> None:
        self.nick = nick
        self.pinned_key = pinned_key
        self.new_key = new_key
        old = identity_fingerprint(pinned_key) if pinned_key is not None else "(unreadable pin)"
        super().__init__(
            f"WARNING: {nick}'s identity key has CHANGED (pinned {old}, now {identity_fingerprint(new_key)}). "
            "Someone may be impersonating them; the conversation was stopped. "
            "Check the new key with them in person before accepting it."
        )

    @property
    def new_fingerprint(self) -> str:
        return identity_fingerprint(self.new_key)


class RelayChanged(Exception):
    """The relay at a known address announced another ``server_id`` (protocol section 13).

    As loud as a key change: either the operator rebuilt the relay (a new
    data directory), or something else now answers at that address and
    would make every pinned contact a first contact. Nothing was
    registered; :meth:`relaychat.client.known_relays.KnownRelays.replace`
    (the program's ``/trust-relay``) is the one way on.
    """

    def __init__(self, address: str, known_id: bytes | None, new_id: bytes) -> None:
        self.address = address
        self.known_id = known_id
        self.new_id = new_id
        old = relay_fingerprint(known_id) if known_id is not None else "(unreadable record)"
        super().__init__(
            f"WARNING: the relay at {address} has CHANGED its identity (remembered {old}, "
            f"now {relay_fingerprint(new_id)}). Someone may be intercepting; not registering. "
            "Ask the relay's operator before accepting the new identity."
        )

    @property
    def new_fingerprint(self) -> str:
        return relay_fingerprint(self.new_id)


class UncertifiedKeys(HandshakeFailed):
    """The relay gave keys for a nickname that its identity key did not certify."""


class MessageRejected(ConversationFailed):
    """A transport message failed authentication or was malformed."""


class Declined(ConversationFailed):
    """The peer declined the offer, or it timed out or was withdrawn;
    ``reason`` is the relay's ``CLOSED`` reason word (``declined``, ``timeout``, ``gone``, ...)."""

    def __init__(self, text: str, reason: str = "declined") -> None:
        super().__init__(text)
        self.reason = reason


class ConversationClosed(ConversationFailed):
    """The conversation is over; nothing more can be sent in it."""


class MessageTooLong(ValueError):
    """The text does not fit in one frame or one mail (a local usage error)."""


class NotPinned(LookupError):
    """There is no (readable) pinned key for the nickname a request names."""


class MailError(Exception):
    """A sealed mail could not be sent, or a received one could not be opened."""
