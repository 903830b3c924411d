"""Encodings shared by every layer: strict base64 and length prefixes.

Strictness matters: a lenient base64 decoder accepts many spellings of the
same bytes, which lets a relay or peer alter a line without changing its
meaning and hides bugs in independent clients (docs/protocol.rst, section 1).
"""

from __future__ import annotations

import base64
import binascii


class EncodingError(ValueError):
    """A binary field is not canonical base64 or has the wrong size."""


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str | bytes, *, size: int | None = None, max_size: int | None = None) -> bytes:
    """Decode RFC 4648 base64 with padding, rejecting every other spelling.

    ``size`` demands an exact decoded length (keys, signatures);
    ``max_size`` bounds it (payloads) before any decoding work is done.
    """
    try:
        raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError as e:
        raise EncodingError("not base64") from e
    if max_size is not None and len(raw) > encoded_length(max_size):
        raise EncodingError("field too long")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EncodingError("not base64") from e
    if base64.b64encode(data) != raw:
        raise EncodingError("not canonical base64")
    if size is not None and len(data) != size:
        raise EncodingError(f"expected {size} bytes, got {len(data)}")
    return data


INT64_MAX = (1 << 63) - 1


def decimal(text: str | bytes, maximum: int = INT64_MAX) -> int:
    """Read a wire integer: ASCII digits, no sign, no leading zero (``0`` is
    ``0``), at most ``maximum`` (by default what SQLite and every language's
    64-bit integer hold).

    ``str.isdigit`` and ``int`` accept far more (``²``, ``١``, ``+1``,
    ``1_000``, `` 1``), so every integer on the wire is read here, never
    with ``int`` directly.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    if not 0 < len(raw) <= len(str(maximum)) or raw.strip(b"0123456789") or (raw[0] == 0x30 and len(raw) > 1):
        raise EncodingError("not a decimal number")
    value = int(raw)
    if value > maximum:
        raise EncodingError(f"a number is at most {maximum}")
    return value


def encoded_length(size: int) -> int:
    """Length of the base64 text for ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def lp(data: bytes) -> bytes:
    """Two-byte big-endian length prefix, used in prologues and signed data."""
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data
