"""Sealed offline mail (protocol section 12), pure: seal and open, no I/O.

A mail is the single handshake message of Noise_X_25519_ChaChaPoly_SHA256:
the sender is the initiator with its certified static key, the recipient's
certified static key (from LOOKUP, checked by the caller) is the
pre-message ``rs``. The payload repeats the section 10 identity binding, so
the recipient can check the sender's static key against its identity key
exactly as in a live conversation; the prologue binds both nicknames, so a
relay that names the wrong sender (or recipient) makes the mail fail to open.

Checking the sender's identity key against the pin, dropping a
``message_id`` already seen, and acknowledging are the caller's job
(:mod:`relaychat.client.mailbox`), since they need the known-peers and seen-mail files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from relaychat.client.errors import MailError, MessageTooLong
from relaychat.crypto.identity import (
    BINDING_SIZE,
    BindingError,
    KeyFormatError,
    load_static_public,
    verify_binding,
)
from relaychat.crypto.keypair import Identity
from relaychat.crypto.noise import HandshakeState, NoiseError
from relaychat.wire.codec import lp

__all__ = [
    "MESSAGE_ID_SIZE", "OpenedMail", "PROLOGUE_CONTEXT", "PROTOCOL_NAME", "max_text_bytes", "open_mail", "seal",
    "seal_receipt",
]

PROTOCOL_NAME = "Noise_X_25519_ChaChaPoly_SHA256"
PROLOGUE_CONTEXT = b"relaychat-mail-v1"
MESSAGE_ID_SIZE = 16
TIME_SIZE = 8
HEADER_SIZE = BINDING_SIZE + TIME_SIZE + MESSAGE_ID_SIZE  # 121
# e (32) + encrypted s (32 + 16) + payload tag (16)
NOISE_OVERHEAD = 32 + 48 + 16
# A body starting with 0xFF (which UTF-8 text never does) is a control
# message, not text; 0xFF 0x01 || message_id is a read receipt (section 12).
CONTROL = 0xFF
RECEIPT = 0x01


def prologue(sender_nick: str, recipient_nick: str) -> bytes:
    return PROLOGUE_CONTEXT + lp(sender_nick.encode("utf-8")) + lp(recipient_nick.encode("utf-8"))


def max_text_bytes(max_mail: int) -> int:
    """The longest UTF-8 text that fits in a mail of ``max_mail`` bytes."""
    return max_mail - NOISE_OVERHEAD - HEADER_SIZE


@dataclass(frozen=True)
class OpenedMail:
    """A mail whose seal and sender binding verified. ``identity_pub`` must
    still be checked against the pin for the sender's nickname."""

    identity_pub: bytes = field(repr=False)
    time: int
    message_id: bytes
    text: str = field(repr=False)
    receipt_for: bytes | None = None  # a read receipt: the message_id of our mail they opened


def seal(
    identity: Identity,
    sender_nick: str,
    recipient_nick: str,
    recipient_static: bytes,
    text: str,
    time: int,
    max_mail: int,
    message_id: bytes | None = None,
) -> bytes:
    """The ``MAIL`` payload for ``text``. ``recipient_static`` must already be
    verified (static_sig and pin); nicknames are canonical."""
    body = text.encode("utf-8")
    if len(body) > max_text_bytes(max_mail):
        raise MessageTooLong(f"A mail is at most {max_text_bytes(max_mail)} bytes of text.")
    return _seal(identity, sender_nick, recipient_nick, recipient_static, body, time, message_id)


def seal_receipt(
    identity: Identity,
    sender_nick: str,
    recipient_nick: str,
    recipient_static: bytes,
    opened_id: bytes,
    time: int,
) -> bytes:
    """A sealed read receipt telling ``recipient_nick`` we opened its mail ``opened_id``."""
    if len(opened_id) != MESSAGE_ID_SIZE:
        raise ValueError("bad message id")
    body = bytes([CONTROL, RECEIPT]) + bytes(opened_id)
    return _seal(identity, sender_nick, recipient_nick, recipient_static, body, time, None)


def _seal(identity: Identity, sender_nick: str, recipient_nick: str, recipient_static: bytes,
          body: bytes, time: int, message_id: bytes | None) -> bytes:
    try:
        load_static_public(recipient_static)
    except KeyFormatError as e:
        raise MailError(f"Cannot seal a mail to {recipient_nick}: {e}") from None
    message_id = os.urandom(MESSAGE_ID_SIZE) if message_id is None else message_id
    if len(message_id) != MESSAGE_ID_SIZE or not 0 <= time < 2**64:
        raise ValueError("bad message id or time")
    hs = HandshakeState(
        PROTOCOL_NAME, True, prologue(sender_nick, recipient_nick),
        s=identity.static_private, rs=recipient_static,
    )
    return hs.write_message(identity.binding() + time.to_bytes(TIME_SIZE, "big") + message_id + body)


def open_mail(identity: Identity, sender_nick: str, recipient_nick: str, sealed: bytes) -> OpenedMail:
    """Open a mail addressed to us; raise MailError (a sentence) if anything is wrong.

    After a static-key rotation, mail sealed to the previous key (sent before
    the sender looked up the new one) opens with that key."""
    keys = [identity.static_private]
    if identity.previous_static_private is not None:
        keys.append(identity.previous_static_private)
    for key in keys:
        hs = HandshakeState(PROTOCOL_NAME, False, prologue(sender_nick, recipient_nick), s=key)
        try:
            payload = hs.read_message(bytes(sealed))
            break
        except NoiseError:
            continue
    else:
        raise MailError(
            f"A mail said to be from {sender_nick} could not be opened: it was altered, is not "
            "sealed to you, or the relay named the wrong sender."
        ) from None
    if len(payload) < HEADER_SIZE:
        raise MailError(f"A mail from {sender_nick} is malformed.")
    remote_static = hs.remote_static
    assert remote_static is not None  # the one-way pattern's "s" was read above
    try:
        identity_pub = verify_binding(payload[:BINDING_SIZE], remote_static)
    except BindingError as e:
        raise MailError(f"A mail said to be from {sender_nick} is not certified by them: {e}") from None
    rest = payload[BINDING_SIZE:]
    time = int.from_bytes(rest[:TIME_SIZE], "big")
    message_id = rest[TIME_SIZE:TIME_SIZE + MESSAGE_ID_SIZE]
    body = rest[TIME_SIZE + MESSAGE_ID_SIZE:]
    if body[:1] == bytes([CONTROL]):
        if len(body) != 2 + MESSAGE_ID_SIZE or body[1] != RECEIPT:
            raise MailError(f"A mail from {sender_nick} is a control message this client does not know.")
        return OpenedMail(identity_pub, time, message_id, "", receipt_for=body[2:])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MailError(f"A mail from {sender_nick} is not UTF-8 text.") from None
    return OpenedMail(identity_pub, time, message_id, text)
