"""The SMP group, its wire encoding, and the zero-knowledge proofs, sans-IO.

The arithmetic half of :mod:`relaychat.crypto.smp` (which holds the secret
binding and the state machine, and explains the protocol): RFC 3526 group 5
as OTR version 3 uses it, the kind byte and MPIs of docs/protocol.rst
section 14.4, OTR's SMP hash with its version bytes, the proofs of
knowledge and their checks, and the range and subgroup checks of 14.6.
Every function here is a direct transcription of one step of the OTR v3
specification; none keeps state.

Random exponents come from :func:`random_exponent`, looked up on this
module at each use, so a known-answer test can replace it in one place.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Final

# ---------------------------------------------------------------------------
# The group: RFC 3526 group 5 (1536-bit MODP), generator 2, as OTR v3 uses.
# ---------------------------------------------------------------------------

#: The 1536-bit safe prime p of RFC 3526 section 2 ("group 5").
MODULUS: Final[int] = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)
#: g1 of the OTR specification.
GENERATOR: Final[int] = 2
#: q = (p - 1) / 2, a prime: the order of the subgroup g1 generates (p is
#: 7 mod 8, so 2 is a quadratic residue and has order exactly q).
ORDER: Final[int] = (MODULUS - 1) // 2
#: Every group element and every value reduced modulo p or q fits here.
MODULUS_BYTES: Final[int] = 192
#: The proofs' challenges c are SHA-256 outputs read as integers.
HASH_BYTES: Final[int] = 32

# ---------------------------------------------------------------------------
# Wire format
# ---------------------------------------------------------------------------


class MessageKind(enum.IntEnum):
    """First byte of an SMP body; OTR TLV types 2..6 minus one."""

    SMP1 = 1
    SMP2 = 2
    SMP3 = 3
    SMP4 = 4
    ABORT = 5


# Field names in wire order, exactly as the OTR v3 specification lists them.
# The first letter says how a received value is checked: "g"/"P"/"Q"/"R" are
# group elements, "c" a hash (proof challenge), "D" an exponent modulo q.
_FIELDS: Final[dict[MessageKind, tuple[str, ...]]] = {
    MessageKind.SMP1: ("g2a", "c2", "D2", "g3a", "c3", "D3"),
    MessageKind.SMP2: ("g2b", "c2", "D2", "g3b", "c3", "D3", "Pb", "Qb", "cP", "D5", "D6"),
    MessageKind.SMP3: ("Pa", "Qa", "cP", "D5", "D6", "Ra", "cR", "D7"),
    MessageKind.SMP4: ("Rb", "cR", "D7"),
    MessageKind.ABORT: (),
}

#: Largest MPI magnitude accepted. No legal value needs more: group elements
#: are below p < 2**1536, exponents below q, challenges below 2**256. A
#: larger MPI is rejected before any arithmetic is done on it.
MAX_MPI_BYTES: Final[int] = MODULUS_BYTES
#: Largest SMP body: the kind byte and SMP2's eleven maximal MPIs (2157).
MAX_MESSAGE_BYTES: Final[int] = 1 + max(len(f) for f in _FIELDS.values()) * (4 + MAX_MPI_BYTES)


class SMPError(Exception):
    """The peer sent an SMP message that is malformed, out of range, fails a
    proof, or does not fit the current state.

    When :meth:`SocialistMillionaire.receive` raises it, the machine has
    already returned to its initial state (OTR's SMPSTATE_EXPECT1). The
    caller should tell the user the check failed (the text is a complete
    sentence meant for that) and send :meth:`SocialistMillionaire.abort`.
    """


class SMPUnexpectedMessage(SMPError):
    """An SMP message that is well formed but not the one the state expects.

    OTR's answer is "set smpstate to SMPSTATE_EXPECT1 and send an abort";
    the machine has reset, the caller sends :meth:`~SocialistMillionaire.abort`.
    It is usually harmless (both people started a check at the same moment,
    or a message crossed an abort) and can be reported less loudly than
    other :class:`SMPError` s.
    """


class SMPUsageError(RuntimeError):
    """The local program called the machine at the wrong time (a bug or a
    UI race, never the peer's doing). The machine's state is unchanged."""


def mpi(value: int) -> bytes:
    """OTR MPI: 4-byte big-endian length, then the minimal big-endian
    magnitude (zero is the empty string)."""
    if value < 0:
        raise ValueError("an MPI cannot be negative")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return len(raw).to_bytes(4, "big") + raw


def encode_message(kind: MessageKind, values: Sequence[int]) -> bytes:
    """Build an SMP body: ``kind (1 byte) || MPI * count(kind)``."""
    kind = MessageKind(kind)
    if len(values) != len(_FIELDS[kind]):
        raise ValueError(f"{kind.name} carries {len(_FIELDS[kind])} values, got {len(values)}")
    out = bytearray([kind])
    for v in values:
        m = mpi(v)
        if len(m) - 4 > MAX_MPI_BYTES:
            raise ValueError("value too large for an SMP MPI")
        out += m
    return bytes(out)


def decode_message(data: bytes) -> tuple[MessageKind, tuple[int, ...]]:
    """Parse an SMP body strictly; raise :class:`SMPError` on any deviation.

    Strict means: known kind, exactly the kind's number of MPIs, each at most
    :data:`MAX_MPI_BYTES` long and minimally encoded (OTR requires no leading
    zero byte, so each value has exactly one spelling), and no trailing
    bytes. Several spellings of one message would let a relay-side bug or an
    attacker alter bytes without changing meaning, and hide bugs in
    independent clients. Range and proof checks come later, in the machine.
    """
    data = bytes(data)
    if not data:
        raise SMPError("The SMP message is empty.")
    if len(data) > MAX_MESSAGE_BYTES:
        raise SMPError(f"The SMP message is {len(data)} bytes long; no valid one exceeds {MAX_MESSAGE_BYTES}.")
    try:
        kind = MessageKind(data[0])
    except ValueError:
        raise SMPError(f"The SMP message has unknown kind {data[0]}.") from None
    values: list[int] = []
    pos = 1
    for name in _FIELDS[kind]:
        if len(data) - pos < 4:
            raise SMPError(f"The {kind.name} message is truncated before {name}.")
        length = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if length > MAX_MPI_BYTES:
            raise SMPError(
                f"The {kind.name} message declares {name} as {length} bytes; at most {MAX_MPI_BYTES} are allowed."
            )
        if len(data) - pos < length:
            raise SMPError(f"The {kind.name} message is truncated inside {name}.")
        raw = data[pos : pos + length]
        pos += length
        if raw[:1] == b"\x00":
            raise SMPError(f"The {kind.name} message encodes {name} with a leading zero byte (not a minimal MPI).")
        values.append(int.from_bytes(raw, "big"))
    if pos != len(data):
        raise SMPError(f"The {kind.name} message has {len(data) - pos} unexpected trailing bytes.")
    return kind, tuple(values)


# ---------------------------------------------------------------------------
# Group arithmetic and the zero-knowledge proofs (OTR v3, "SMP Hash function")
# ---------------------------------------------------------------------------


def smp_hash(version: int, a: int, b: int | None = None) -> int:
    """OTR's SMP hash: SHA-256(version byte || MPI(a) [|| MPI(b)]) as an
    integer. The version byte (1..8) differs at each place a proof is made,
    so one party's proof cannot be replayed as another's."""
    data = bytes([version]) + mpi(a) + (mpi(b) if b is not None else b"")
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def random_exponent() -> int:
    """Uniform in 1..q-1. Zero is excluded because it would make g2 or g3 the
    identity; the distribution modulo q is what the proofs need."""
    return secrets.randbelow(ORDER - 1) + 1


def mul(a: int, b: int) -> int:
    return a * b % MODULUS


def div(a: int, b: int) -> int:
    return a * pow(b, -1, MODULUS) % MODULUS


def same(a: int, b: int, size: int) -> bool:
    """Compare two non-negative values of at most ``size`` bytes via
    fixed-length encodings, without a data-dependent early exit."""
    return hmac.compare_digest(a.to_bytes(size, "big"), b.to_bytes(size, "big"))


def prove_log(x: int, version: int) -> tuple[int, int]:
    """Proof of knowledge of x for g1^x: c = H(v, g1^r), D = r - x c mod q."""
    r = random_exponent()
    c = smp_hash(version, pow(GENERATOR, r, MODULUS))
    return c, (r - x * c) % ORDER


def check_log(c: int, d: int, gx: int, version: int) -> bool:
    """c == H(v, g1^D gx^c)."""
    return same(c, smp_hash(version, mul(pow(GENERATOR, d, MODULUS), pow(gx, c, MODULUS))), HASH_BYTES)


def prove_coords(g2: int, g3: int, r: int, secret: int, version: int) -> tuple[int, int, int]:
    """Proof that P = g3^r and Q = g1^r g2^secret share r:
    cP = H(v, g3^r5, g1^r5 g2^r6), D5 = r5 - r cP, D6 = r6 - secret cP."""
    r5, r6 = random_exponent(), random_exponent()
    c = smp_hash(version, pow(g3, r5, MODULUS), mul(pow(GENERATOR, r5, MODULUS), pow(g2, r6, MODULUS)))
    return c, (r5 - r * c) % ORDER, (r6 - secret * c) % ORDER


def check_coords(c: int, d5: int, d6: int, p_: int, q_: int, g2: int, g3: int, version: int) -> bool:
    """cP == H(v, g3^D5 P^cP, g1^D5 g2^D6 Q^cP)."""
    t1 = mul(pow(g3, d5, MODULUS), pow(p_, c, MODULUS))
    t2 = mul(mul(pow(GENERATOR, d5, MODULUS), pow(g2, d6, MODULUS)), pow(q_, c, MODULUS))
    return same(c, smp_hash(version, t1, t2), HASH_BYTES)


def prove_equal_logs(qab: int, x3: int, version: int) -> tuple[int, int]:
    """Proof that R = Qab^x3 uses the x3 of g1^x3:
    cR = H(v, g1^r7, Qab^r7), D7 = r7 - x3 cR."""
    r7 = random_exponent()
    c = smp_hash(version, pow(GENERATOR, r7, MODULUS), pow(qab, r7, MODULUS))
    return c, (r7 - x3 * c) % ORDER


def check_equal_logs(c: int, d7: int, r_: int, g3o: int, qab: int, version: int) -> bool:
    """cR == H(v, g1^D7 g3o^cR, Qab^D7 R^cR), g3o the peer's g1^x3."""
    t1 = mul(pow(GENERATOR, d7, MODULUS), pow(g3o, c, MODULUS))
    t2 = mul(pow(qab, d7, MODULUS), pow(r_, c, MODULUS))
    return same(c, smp_hash(version, t1, t2), HASH_BYTES)


def check_ranges(kind: MessageKind, values: Sequence[int]) -> None:
    """Every range check OTR (libotr ``check_group_elem``/``check_expon``)
    makes, plus two stricter ones, all before any exponentiation with
    peer-chosen values:

    * group elements (g2a, g3a, g2b, g3b, Pa, Pb, Qa, Qb, Ra, Rb): 2..p-2;
    * exponents (D2, D3, D5, D6, D7): 1..q-1;
    * challenges (c2, c3, cP, cR): below 2**256 (stricter than OTR, which
      only compares them with the recomputed hash; a larger one could never
      match, rejecting it early gives a clearer error).

    Subgroup membership (:func:`check_subgroup`) costs a full
    exponentiation per element, so the handlers make it after the proofs
    and before computing anything they send: garbage is rejected cheaply,
    and no value derived from an unchecked element ever leaves the machine.
    """
    for name, v in zip(_FIELDS[kind], values):
        if name[0] == "c":
            if v >= 1 << (8 * HASH_BYTES):
                raise SMPError(f"{kind.name}: {name} is not a 256-bit hash value.")
        elif name[0] == "D":
            if not 1 <= v < ORDER:
                raise SMPError(f"{kind.name}: exponent {name} is not in the range 1..q-1.")
        elif not 2 <= v <= MODULUS - 2:
            raise SMPError(f"{kind.name}: group element {name} is not in the range 2..p-2.")


def check_subgroup(kind: MessageKind, values: Sequence[int]) -> None:
    """Require v^q == 1 (mod p), i.e. v is a quadratic residue, for every
    group element of the message.

    OTR does not make this check. Without it a cheating Alice may send
    g2a = p - g1^a2, of order 2q, with a proof that verifies whenever the
    challenge c2 is even (she retries until it is). Bob's g2 = g2a^b2 then
    has Legendre symbol (-1)^b2, and his Qb = g1^r4 g2^y has symbol
    (-1)^(b2*y): whenever Qb is a non-residue she knows y is odd. That is
    information about the compared secret, usable to filter guesses of a
    weak passphrase, from every run; a cheating Bob can do the same to
    Alice through g2b. Honest values are powers of g1 and always pass.
    """
    for name, v in zip(_FIELDS[kind], values):
        if name[0] not in "cD" and pow(v, ORDER, MODULUS) != 1:
            raise SMPError(f"{kind.name}: group element {name} is not in the prime-order subgroup.")
