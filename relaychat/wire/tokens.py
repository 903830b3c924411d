"""Tokens of the relay protocol (docs/protocol.rst, section 1): how each kind
of field is written and read, for :mod:`relaychat.wire.messages`.

A :class:`Field` pairs an encoder with a decoder; a decoder raises
:class:`~relaychat.wire.errors.ProtocolError` with the code the relay answers
a bad field with (``syntax``, ``bad-key``, ``bad-nick``), so whoever reads a
line learns exactly what the relay would have said.
"""

from __future__ import annotations

from typing import Callable, Generic, Sequence, TypeVar

from relaychat.wire.codec import EncodingError, b64decode, b64encode, decimal
from relaychat.wire.errors import Code, ProtocolError
from relaychat.wire.nicknames import canonical

SID_LENGTH = 16  # lower-case hex characters
MAX_PING_TOKEN = 64
_HEX = frozenset("0123456789abcdef")

T = TypeVar("T")


def one_line(text: str) -> str:
    """Keep operator or error text on one line so it cannot forge protocol lines."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be sent
    return " ".join(text.split()) or "-"


def arity(args: Sequence[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ProtocolError(Code.SYNTAX, f"expected {want} arguments, got {len(args)}")


def number(text: str) -> int:
    """An unsigned decimal integer without leading zeros (section 1): read by
    :func:`relaychat.wire.codec.decimal`, the one reader of wire integers."""
    try:
        return decimal(text)
    except EncodingError:
        raise ProtocolError(Code.SYNTAX, "expected a decimal number") from None


def is_sid(text: str) -> bool:
    return len(text) == SID_LENGTH and all(c in _HEX for c in text)


def safe_sid(text: str) -> str:
    """Echo a session id only if it looks like one, so errors cannot carry junk."""
    return text if is_sid(text) else "-"


class Field(Generic[T]):
    """How one token is written (``encode``) and read (``decode``, raising ProtocolError)."""

    __slots__ = ("encode", "decode")

    def __init__(self, encode: Callable[[T], str], decode: Callable[[str], T]) -> None:
        self.encode = encode
        self.decode = decode


def token(text: str) -> str:
    if not text:
        raise ProtocolError(Code.SYNTAX, "an empty token")
    return text


def _sid(text: str) -> str:
    if not is_sid(text):
        raise ProtocolError(Code.SYNTAX, "expected a session id")
    return text


def _nick(text: str) -> str:
    canonical(text)  # raises NicknameError, a bad-nick ProtocolError
    return text  # as given: the relay shows a nickname as first registered


def _key(size: int) -> Callable[[str], bytes]:
    def decode(text: str) -> bytes:
        try:
            return b64decode(text, size=size)
        except EncodingError as e:
            raise ProtocolError(Code.BAD_KEY, f"bad binary field: {e}") from None
    return decode


def payload(code: Code) -> Callable[[str], bytes]:
    def decode(text: str) -> bytes:
        if not text:
            raise ProtocolError(code, "the payload is empty")
        try:
            return b64decode(text)
        except EncodingError:
            raise ProtocolError(code, "the payload is not base64") from None
    return decode


def _nonce(text: str) -> bytes:
    try:
        return b64decode(text, max_size=32)
    except EncodingError as e:
        raise ProtocolError(Code.BAD_KEY, f"bad binary field: {e}") from None


def _ping_token(text: str) -> str:
    # Echoed back: only what cannot disturb a terminal or a line parser.
    if not (0 < len(text) <= MAX_PING_TOKEN and text.isascii() and text.isprintable() and " " not in text):
        raise ProtocolError(Code.SYNTAX, f"a PING token is 1 to {MAX_PING_TOKEN} visible ASCII characters")
    return text


def _mail_id(text: str) -> int:
    try:
        return number(text)
    except ProtocolError:
        raise ProtocolError(Code.SYNTAX, "a mail id is a decimal number") from None


def choice(yes: str, no: str) -> Field[bool]:
    def decode(text: str) -> bool:
        if text not in (yes, no):
            raise ProtocolError(Code.SYNTAX, f"expected {yes} or {no}")
        return text == yes
    return Field(lambda value: yes if value else no, decode)


TOKEN: Field[str] = Field(str, token)  # any token: a session id the relay may not know, a code, a reason
SID: Field[str] = Field(str, _sid)  # a session id as the relay makes them
NICK: Field[str] = Field(str, _nick)
KEY32: Field[bytes] = Field(b64encode, _key(32))
KEY64: Field[bytes] = Field(b64encode, _key(64))
NONCE: Field[bytes] = Field(b64encode, _nonce)
PAYLOAD: Field[bytes] = Field(b64encode, payload(Code.SYNTAX))
NUMBER: Field[int] = Field(str, number)
MAIL_ID: Field[int] = Field(str, _mail_id)
PING_TOKEN: Field[str] = Field(str, _ping_token)
