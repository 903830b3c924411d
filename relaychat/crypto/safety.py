"""Fingerprints and safety numbers for people to compare (protocol section 13).

The safety number is Signal's numeric fingerprint (libsignal
``Fingerprint::get_fingerprint`` + ``DisplayableFingerprint``, "version 1"
display) computed over each party's raw 32-byte Ed25519 identity key with
its canonical nickname as the stable identifier. It depends on the identity
keys and nicknames only, never on handshake data: a relay in the middle
cannot grind ephemeral keys to make two codes collide, it would have to find
an identity key whose 30-digit half matches, about 2**100 work.

``numeric_fingerprint`` is the construction parameterised by key bytes,
stable ids and iteration count, so that it can be checked against
libsignal's published test vector (tests/test_safety.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from relaychat.crypto.identity import KEY_SIZE

__all__ = [
    "FINGERPRINT_VERSION",
    "ITERATIONS",
    "format_safety_number",
    "identity_fingerprint",
    "iterated_hash",
    "matches",
    "numeric_fingerprint",
    "numeric_half",
    "safety_number",
]

ITERATIONS = 5200
FINGERPRINT_VERSION = b"\x00\x00"
SAFETY_DIGITS = 60


def identity_fingerprint(identity_pub: bytes) -> str:
    """First 20 bytes of SHA-256(identity_pub), lower-case hex in groups of 4.

    For showing one key (a pin, a warning about a changed key); 160 bits is
    far beyond what an attacker can match by grinding keys.
    """
    if not isinstance(identity_pub, (bytes, bytearray)) or len(identity_pub) != KEY_SIZE:
        raise ValueError(f"An identity key is {KEY_SIZE} bytes.")
    digest = hashlib.sha256(bytes(identity_pub)).hexdigest()[:40]
    return " ".join(digest[i : i + 4] for i in range(0, 40, 4))


def iterated_hash(key: bytes, stable_id: bytes, iterations: int = ITERATIONS) -> bytes:
    """libsignal's per-party hash: 64 bytes.

    Exactly as libsignal: the first hash input is
    ``version (0x0000) || key || stable_id || key`` and every later one is
    ``previous_hash || key``, ``iterations`` hashes in all. Equivalently:
    ``h = version || key || stable_id`` (not hashed), then ``iterations``
    times ``h = SHA-512(h || key)``. The iterations make grinding for a
    matching half ``iterations`` times more expensive.
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    key = bytes(key)
    h = FINGERPRINT_VERSION + key + bytes(stable_id)
    for _ in range(iterations):
        h = hashlib.sha512(h + key).digest()
    return h


def numeric_half(key: bytes, stable_id: bytes, iterations: int = ITERATIONS) -> str:
    """30 digits: six 5-byte big-endian chunks of the hash, each mod 100000."""
    h = iterated_hash(key, stable_id, iterations)
    return "".join(
        f"{int.from_bytes(h[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def numeric_fingerprint(
    local_key: bytes,
    local_id: bytes,
    remote_key: bytes,
    remote_id: bytes,
    iterations: int = ITERATIONS,
) -> str:
    """The 60-digit string, the smaller 30-digit half first.

    libsignal compares the two digit strings (Rust: ``local < remote``, Java:
    ``compareTo <= 0``); for equal-length digit strings that is numeric
    order, and when they are equal either order gives the same string. The
    ordering makes both sides compute the same number.
    """
    local = numeric_half(local_key, local_id, iterations)
    remote = numeric_half(remote_key, remote_id, iterations)
    return local + remote if local < remote else remote + local


def _nick_bytes(nick: str) -> bytes:
    if not isinstance(nick, str) or not nick:
        raise ValueError("A nickname must be a non-empty string.")
    # Canonical form (section 4) so that a nickname shown as "Alice" on one
    # side and "alice" on the other still gives both people the same number.
    return nick.lower().encode("utf-8")


def _check_key(key: bytes, who: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise ValueError(f"The {who} identity key must be {KEY_SIZE} bytes.")
    return bytes(key)


def format_safety_number(digits: str) -> str:
    """Group 60 digits as 12 groups of 5 separated by single spaces."""
    if len(digits) != SAFETY_DIGITS or not digits.isascii() or not digits.isdigit():
        raise ValueError("A safety number is 60 decimal digits.")
    return " ".join(digits[i : i + 5] for i in range(0, SAFETY_DIGITS, 5))


def safety_number(local_pub: bytes, local_nick: str, remote_pub: bytes, remote_nick: str) -> str:
    """The safety number of section 13, e.g. ``"12345 67890 ... 24680"``.

    Symmetric: both parties get the same string whichever side computes it.
    """
    return _safety_number(
        _check_key(local_pub, "local"),
        _nick_bytes(local_nick),
        _check_key(remote_pub, "remote"),
        _nick_bytes(remote_nick),
    )


SAFETY_NUMBERS_KEPT = 1024  # (peer, key) pairs; a contact list larger than this recomputes, ~7 ms each


@functools.lru_cache(maxsize=SAFETY_NUMBERS_KEPT)
def _safety_number(local_pub: bytes, local_id: bytes, remote_pub: bytes, remote_id: bytes) -> str:
    """Remembered: 2 x 5,200 SHA-512 (about 7 ms) is paid once per peer and
    key, not at every conversation with the same person."""
    return format_safety_number(numeric_fingerprint(local_pub, local_id, remote_pub, remote_id))


def _normalise(number: str) -> bytes | None:
    if not isinstance(number, str):
        return None
    digits = "".join(number.split())
    if len(digits) != SAFETY_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits.encode("ascii")


def matches(a: str, b: str) -> bool:
    """True iff ``a`` and ``b`` are the same 60-digit safety number.

    Whitespace is ignored (people type or paste it in any grouping); anything
    that is not exactly 60 digits never matches. Safety numbers are public,
    but the comparison is constant-time anyway so the helper is safe to reuse
    wherever a code is compared.
    """
    na, nb = _normalise(a), _normalise(b)
    if na is None or nb is None:
        return False
    return hmac.compare_digest(na, nb)
