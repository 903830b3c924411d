"""What an identity is on the wire and how it proves itself: the half the relay needs.

Public-key decoding (with the small-order and canonical-encoding checks),
the static-key certificate, the registration transcript and its signature,
the identity binding of section 10, and the proof of work. Everything here
is pure (no reactor, no network, no files) so that the relay imports it and
runs exactly the same byte-level checks as the client; one implementation
of docs/protocol.rst sections 5 and 10 means the two sides cannot drift
apart. Private keys and their storage live in ``relaychat.crypto.keypair``
and ``relaychat.crypto.keyfiles``, which the relay never imports.

Error classes map onto the protocol's error codes: a malformed key or
signature field raises ``KeyFormatError`` (the relay answers ``bad-key``),
while a well-formed signature that does not verify makes the ``verify_*``
functions return ``False`` (``bad-signature``).
"""

from __future__ import annotations

import functools
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

__all__ = [
    "BINDING_SIZE",
    "BINDING_VERSION",
    "BindingError",
    "IdentityError",
    "KeyFormatError",
    "MAX_POW_NONCE",
    "load_identity_public",
    "load_static_public",
    "parse_binding",
    "pow_ok",
    "raw_public",
    "registration_message",
    "solve_pow",
    "static_signed_data",
    "verify_binding",
    "verify_registration",
    "verify_static_sig",
]

# Context strings of docs/protocol.rst section 5. The trailing zero byte
# separates the context from the data, so no context can be a prefix of
# another context followed by data.
STATIC_CONTEXT = b"relaychat static key v1\x00"
REGISTER_CONTEXT = b"relaychat register v1\x00"
POW_CONTEXT = b"relaychat pow v1\x00"
MAX_POW_BITS = 24  # 2**24 hashes, seconds of work: the most a relay may ask and a client will do

KEY_SIZE = 32
SIGNATURE_SIZE = 64
SERVER_ID_SIZE = 32
CHALLENGE_SIZE = 32
MAX_POW_NONCE = 32
BINDING_VERSION = 0x01
BINDING_SIZE = 1 + KEY_SIZE + SIGNATURE_SIZE


class IdentityError(Exception):
    """Base class; ``str(e)`` is a sentence that can be shown to the user."""


class KeyFormatError(IdentityError, ValueError):
    """A public key or signature is not usable: wrong type or size, not a
    point on the curve, a small-order point, or a non-canonical encoding."""


class BindingError(IdentityError):
    """A peer's identity binding (section 10) is malformed or does not
    certify the static key used in this handshake."""


# ---------------------------------------------------------------------------
# Public key validation
# ---------------------------------------------------------------------------

# Edwards25519 (RFC 8032 section 5.1): -x^2 + y^2 = 1 + d x^2 y^2 mod p.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _ed25519_decode(raw: bytes) -> tuple[int, int] | None:
    """RFC 8032 section 5.1.3 point decoding; None if not a canonical point.

    OpenSSL accepts any 32 bytes as an Ed25519 public key and only fails at
    verification time, so without this check a garbage key would look like a
    bad signature instead of a bad key.
    """
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    vx2 = (v * x * x) % _P
    if vx2 == u:
        pass
    elif vx2 == (-u) % _P:
        x = (x * _SQRT_M1) % _P
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _ed25519_sqrt(a: int) -> int | None:
    """A square root mod p (p = 5 mod 8, RFC 8032 section 5.1.3), or None."""
    root = pow(a, (_P + 3) // 8, _P)
    for candidate in (root, root * _SQRT_M1 % _P):
        if candidate * candidate % _P == a % _P:
            return candidate
    return None


def _small_order_ys() -> frozenset[int]:
    """The y coordinates of the eight points of order 1, 2, 4 and 8.

    A point and its negation share y and have the same order, so y alone
    decides: the identity (y = 1), order 2 (y = -1), order 4 (y = 0), and
    order 8, whose doubles have y = 0, i.e. x^2 = -y^2, which with the curve
    equation gives d y^4 + 2 y^2 - 1 = 0. (These are the points libsodium's
    ``has_small_order`` blocklists; tests/test_identity.py checks both.)
    """
    ys = {0, 1, _P - 1}
    inverse_d = pow(_D, _P - 2, _P)
    root = _ed25519_sqrt(1 + _D)
    assert root is not None
    for y_squared in ((-1 + root) * inverse_d % _P, (-1 - root) * inverse_d % _P):
        y = _ed25519_sqrt(y_squared)
        if y is not None:
            ys.update({y, _P - y})
    return frozenset(ys)


_SMALL_ORDER_YS = _small_order_ys()


def _ed25519_small_order(point: tuple[int, int]) -> bool:
    return point[1] in _SMALL_ORDER_YS


def _require_bytes(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise KeyFormatError(f"The {what} must be bytes, not {type(value).__name__}.")
    value = bytes(value)
    if len(value) != size:
        raise KeyFormatError(f"The {what} must be {size} bytes long, not {len(value)}.")
    return value


def load_identity_public(identity_pub: bytes) -> Ed25519PublicKey:
    """Parse a raw Ed25519 identity key, refusing keys that sign for anyone.

    A small-order key (such as the neutral point) accepts forged signatures
    under OpenSSL's verifier: with R = neutral point and s = 0 any message
    "verifies". Such a key would let anybody certify static keys for the
    nickname bound to it, so it is refused like any other malformed key.
    """
    raw = _require_bytes(identity_pub, KEY_SIZE, "identity key")
    point = _ed25519_decode(raw)
    if point is None:
        raise KeyFormatError("The identity key is not a valid Ed25519 public key.")
    if _ed25519_small_order(point):
        raise KeyFormatError("The identity key is a weak (small-order) Ed25519 key.")
    return Ed25519PublicKey.from_public_bytes(raw)


_probe_key: X25519PrivateKey | None = None


def load_static_public(static_pub: bytes) -> X25519PublicKey:
    """Parse a raw X25519 static key, refusing non-canonical and weak keys.

    Any 32 bytes are an X25519 "key", but a small-order one makes every
    Diffie-Hellman result all-zero, which would silently remove that key's
    contribution from Noise (and cryptography would raise in the middle of a
    handshake). The top bit and values >= p are alternative spellings of
    other keys; refusing them keeps exactly one encoding per key, as the
    signatures cover the exact bytes.
    """
    global _probe_key
    raw = _require_bytes(static_pub, KEY_SIZE, "static key")
    if int.from_bytes(raw, "little") >= _P:
        raise KeyFormatError("The static key is not a canonical X25519 public key.")
    key = X25519PublicKey.from_public_bytes(raw)
    if _probe_key is None:
        _probe_key = X25519PrivateKey.generate()
    try:
        # Clamped scalars are multiples of the cofactor, so the result is
        # all-zero (and cryptography raises) exactly for small-order points.
        _probe_key.exchange(key)
    except ValueError as e:
        raise KeyFormatError("The static key is a weak (small-order) X25519 key.") from e
    return key


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """The raw 32 bytes of a public key, as the wire carries it."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------------------
# Static key certificate, registration message, identity binding
# ---------------------------------------------------------------------------


def static_signed_data(static_pub: bytes) -> bytes:
    """What the identity key signs to certify ``static_pub`` (section 5)."""
    return STATIC_CONTEXT + static_pub


def verify_static_sig(identity_pub: bytes, static_pub: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is the identity key's certificate for ``static_pub``.

    Raises ``KeyFormatError`` when a field is malformed (relay: ``bad-key``);
    returns False when a well-formed signature does not verify
    (``bad-signature``).
    """
    public = load_identity_public(identity_pub)
    static_raw = raw_public(load_static_public(static_pub))
    sig = _require_bytes(sig, SIGNATURE_SIZE, "static key signature")
    try:
        public.verify(sig, static_signed_data(static_raw))
    except InvalidSignature:
        return False
    return True


def _check_nick(canonical_nick: str) -> bytes:
    if not isinstance(canonical_nick, str) or not canonical_nick:
        raise ValueError("The nickname must be a non-empty string.")
    if canonical_nick != canonical_nick.lower():
        raise ValueError(f"The nickname {canonical_nick!r} is not in canonical (lower-case) form.")
    return canonical_nick.encode("utf-8")


def _check_fixed(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != size:
        raise ValueError(f"The {what} must be {size} bytes.")
    return bytes(value)


def registration_message(
    server_id: bytes,
    challenge: bytes,
    identity_pub: bytes,
    static_pub: bytes,
    static_sig: bytes,
    canonical_nick: str,
) -> bytes:
    """The message M that ``PROVE`` signs (section 5), byte for byte.

    Every field but the nickname has a fixed size and the nickname comes
    last, so the plain concatenation is unambiguous. Signing ``server_id``
    stops a relay from replaying a proof at another relay; the challenge
    stops replay at the same relay; the keys and the nickname pin what is
    being claimed.
    """
    return b"".join(
        (
            REGISTER_CONTEXT,
            _check_fixed(server_id, SERVER_ID_SIZE, "server id"),
            _check_fixed(challenge, CHALLENGE_SIZE, "challenge"),
            _require_bytes(identity_pub, KEY_SIZE, "identity key"),
            _require_bytes(static_pub, KEY_SIZE, "static key"),
            _require_bytes(static_sig, SIGNATURE_SIZE, "static key signature"),
            _check_nick(canonical_nick),
        )
    )


def verify_registration(
    server_id: bytes,
    challenge: bytes,
    identity_pub: bytes,
    static_pub: bytes,
    static_sig: bytes,
    canonical_nick: str,
    signature: bytes,
) -> bool:
    """True iff ``signature`` is the identity key's signature over M.

    This checks the ``PROVE`` signature only; ``static_sig`` itself is
    checked at ``REGISTER`` time with ``verify_static_sig``. Malformed keys or
    a signature of the wrong size raise ``KeyFormatError``.
    """
    public = load_identity_public(identity_pub)
    signature = _require_bytes(signature, SIGNATURE_SIZE, "registration signature")
    message = registration_message(
        server_id, challenge, identity_pub, static_pub, static_sig, canonical_nick
    )
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def parse_binding(binding: bytes) -> tuple[bytes, bytes]:
    """Split ``0x01 || identity_pub || static_sig`` into its two fields.

    Raises ``BindingError`` for a wrong size or an unknown version byte.
    """
    if not isinstance(binding, (bytes, bytearray, memoryview)):
        raise BindingError("The peer sent no identity binding.")
    binding = bytes(binding)
    if len(binding) != BINDING_SIZE:
        raise BindingError(
            f"The peer's identity binding is {len(binding)} bytes long instead of {BINDING_SIZE}."
        )
    if binding[0] != BINDING_VERSION:
        raise BindingError(f"The peer's identity binding has unknown version {binding[0]}.")
    return binding[1 : 1 + KEY_SIZE], binding[1 + KEY_SIZE :]


def verify_binding(binding: bytes, rs: bytes) -> bytes:
    """Check that the binding's identity key certified ``rs``; return the key.

    ``rs`` must be the remote static key learned in *this* handshake, so a
    relay cannot pair a genuine binding with its own Noise key. The caller
    must still compare the returned key with the pin (``pins.KnownPeers``).

    The binding certifies the static key, not a handshake, so a returning
    peer sends the same bytes every time; a bounded memo of the pairs that
    verified spares the Ed25519 check (and the key validation) on every
    later conversation. Failures are never remembered.
    """
    parse_binding(binding)  # wrong type, size or version: refused before any memo lookup
    if not isinstance(rs, (bytes, bytearray, memoryview)):
        raise BindingError("The peer sent no static key.")
    return _verified_binding(bytes(binding), bytes(rs))


VERIFIED_BINDINGS_KEPT = 4096  # pairs; about 420 bytes each with the memo's own overhead (1.7 MB full)


@functools.lru_cache(maxsize=VERIFIED_BINDINGS_KEPT)
def _verified_binding(binding: bytes, rs: bytes) -> bytes:
    """The identity key of a binding that certifies ``rs``; raises otherwise
    (and lru_cache keeps only what returns)."""
    identity_pub, static_sig = parse_binding(binding)
    try:
        ok = verify_static_sig(identity_pub, rs, static_sig)
    except KeyFormatError as e:
        raise BindingError(f"The peer's keys are unusable: {e}") from e
    if not ok:
        raise BindingError(
            "The peer's identity key did not certify the key used in this "
            "conversation; someone may be intercepting it."
        )
    return identity_pub


# ---------------------------------------------------------------------------
# Proof of work
# ---------------------------------------------------------------------------


def _check_pow_args(challenge: bytes, bits: int) -> bytes:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 256:
        raise ValueError("pow_bits must be an integer from 0 to 256.")
    return _check_fixed(challenge, CHALLENGE_SIZE, "challenge")


def pow_ok(challenge: bytes, nonce: bytes, bits: int) -> bool:
    """True iff SHA-256(context || challenge || nonce) starts with ``bits`` zero bits.

    With ``bits == 0`` no work is due: the nonce is normally omitted (pass
    b"") and any nonce of at most 32 bytes is accepted. Otherwise the nonce
    must be 1 to 32 bytes (section 5).
    """
    challenge = _check_pow_args(challenge, bits)
    if not isinstance(nonce, (bytes, bytearray, memoryview)):
        return False
    nonce = bytes(nonce)
    if bits == 0:
        return len(nonce) <= MAX_POW_NONCE
    if not 1 <= len(nonce) <= MAX_POW_NONCE:
        return False
    digest = hashlib.sha256(POW_CONTEXT + challenge + nonce).digest()
    return int.from_bytes(digest, "big") >> (256 - bits) == 0


def solve_pow(challenge: bytes, bits: int) -> bytes:
    """Find a nonce for ``pow_ok``; b"" when ``bits`` is 0 (nonce omitted).

    The nonce is an 8-byte big-endian counter: the challenge is fresh and
    random, so a deterministic search is fine. The expected cost is 2**bits
    hashes (16 bits: well under a second).
    """
    challenge = _check_pow_args(challenge, bits)
    if bits == 0:
        return b""
    base = hashlib.sha256(POW_CONTEXT + challenge)
    shift = 256 - bits
    counter = 0
    while True:
        nonce = counter.to_bytes(8, "big")
        h = base.copy()
        h.update(nonce)
        if int.from_bytes(h.digest(), "big") >> shift == 0:
            return nonce
        counter += 1
