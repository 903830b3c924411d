"""The Socialist Millionaires' Protocol (SMP) of OTR version 3, sans-IO.

Two people who share a secret (an answer only they know, agreed in person or
over a phone call) can use SMP to check that the relaychat session between
them has no man in the middle, without revealing the secret: each side learns
one bit, *equal* or *not equal*, and a party who does not know the secret
learns nothing it could use to guess it offline. This is the mechanism the
OTR protocol version 3 specification calls "Socialist Millionaires' Protocol
(SMP)"; the mathematics, the group, the hash inputs, the version bytes 1..8,
the four messages and the checks on every received value follow that
specification (and libotr's ``sm.c``) exactly, so that the proofs carry the
security argument of Alexander and Goldberg (2007). The wire encoding and the
secret binding are relaychat's own (docs/protocol.rst section
14); the differences from OTR are listed there and below.

Why the compared value is a hash of fingerprints, the session id and the
typed secret (:func:`smp_secret`) rather than the typed secret alone: a relay
that sits in the middle runs two handshakes, one with each person, so the two
legs have different handshake hashes and see different identity keys. If the
two people type the same secret, each leg still compares *different*
integers, the check fails, and the man in the middle is exposed. Without the
binding, a relay that knows or guesses the secret could relay SMP between the
legs.

The module does no I/O. :class:`SocialistMillionaire` takes bytes received
in a type-``0x03`` end-to-end message and returns bytes to send back; the
caller encrypts, frames, reports to the user and decides when to give up.

Differences from OTR v3 (all documented in docs/protocol.rst, section 14.9):

* relaychat's own wire format: one kind byte and then a fixed number of OTR
  MPIs, instead of an OTR TLV with a 4-byte MPI count; no SMP1Q (question)
  message.
* the secret binds the *Noise* initiator's fingerprint first (OTR: the SMP
  initiator's), with 32-byte SHA-256 fingerprints and the 32-byte Noise
  handshake hash as the session id, and the typed text is normalised.
* stricter validation: every received group element must also lie in the
  prime-order subgroup (OTR only checks 2 <= x <= p-2), and every received
  hash value must be below 2**256. An honest OTR peer always passes both.
* random exponents are uniform in 1..q-1 (libotr: 1536 random bits); both
  are equivalent modulo the group order q, which is all the proofs use.

Python integers are not constant-time: ``pow`` with a secret exponent can
leak timing to someone measuring this process's CPU use. The values that are
compared are public group elements, so the comparisons themselves are not
the concern, but they still use :func:`hmac.compare_digest` on fixed-length
encodings so that no short-circuiting comparison touches protocol values.
Python cannot wipe integers from memory; the machine drops its references to
private values as soon as a run ends, which is the best it can do.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from collections.abc import Sequence
from typing import Final

from relaychat.crypto import smp_group as _g
from relaychat.crypto.smp_group import (
    GENERATOR,
    HASH_BYTES,
    MODULUS,
    MODULUS_BYTES,
    ORDER,
    MessageKind,
    SMPError,
    SMPUnexpectedMessage,
    SMPUsageError,
    decode_message,
    encode_message,
)

__all__ = [
    "GENERATOR",
    "MODULUS",
    "ORDER",
    "MessageKind",
    "SMPError",
    "SMPState",
    "SMPUnexpectedMessage",
    "SMPUsageError",
    "SocialistMillionaire",
    "decode_message",
    "encode_message",
    "normalize_user_secret",
    "smp_secret",
]

# ---------------------------------------------------------------------------
# The secret
# ---------------------------------------------------------------------------

_SMP_SECRET_VERSION: Final[bytes] = b"\x01"
_ID_LEN: Final[int] = 32


def normalize_user_secret(user_secret: str) -> str:
    """Canonical form of the text a person typed: NFKC, then strip
    surrounding whitespace.

    Why: the two people type the secret on different devices, keyboards and
    input methods, and the protocol compares exact bytes. The same visible
    answer can arrive as different code points: "é" precomposed (U+00E9) or
    as "e" + combining accent (macOS file dialogs, some Linux IMEs), full-width
    digits or an ideographic space from a CJK input method, a "ﬁ" ligature
    from autocorrect; phone keyboards append a space after an autocompleted
    word. Each would make an honest pair see "not equal", which users would
    rightly read as an attack, and they would learn to ignore the warning.
    NFKC folds all those compatibility variants; stripping removes only
    leading/trailing whitespace, since inner spaces are part of a passphrase.
    Case is kept: it is meaningful, and OTR clients do not fold it. The
    entropy this throws away (the choice among invisible variants) was never
    something a person could reproduce anyway.
    """
    if not isinstance(user_secret, str):
        raise TypeError("the user secret must be text (str)")
    return unicodedata.normalize("NFKC", user_secret).strip()


def smp_secret(initiator_fp: bytes, responder_fp: bytes, session_id: bytes, user_secret: str) -> int:
    """The integer SMP compares, bound to both identities and this session.

    ``SHA-256(0x01 || initiator_fp || responder_fp || session_id ||
    UTF-8(normalize_user_secret(user_secret)))`` read as a big-endian
    integer. This is OTR v3's construction ("Secret information": version
    byte 1, the two fingerprints, the secure session id, the user's input)
    with relaychat's values:

    * ``initiator_fp`` / ``responder_fp``: SHA-256 of the *Noise* session
      initiator's / responder's 32-byte identity public key (32 bytes each).
      OTR orders by who started *SMP*; relaychat orders by the session roles,
      which both ends already agree on, so both compute the same value
      whoever starts the check, and can compute it before knowing.
    * ``session_id``: the 32-byte Noise handshake hash, which differs on the
      two legs of any man-in-the-middle.

    All three are required to be exactly 32 bytes: fixed lengths make the
    concatenation unambiguous, and a wrong length is a caller bug (a display
    fingerprint or a nickname passed by mistake) that would silently make
    every check fail. An empty secret (after normalisation) is refused: a
    man in the middle knows it too, so "both typed nothing" would pass.
    """
    for name, value in (("initiator_fp", initiator_fp), ("responder_fp", responder_fp), ("session_id", session_id)):
        if not isinstance(value, (bytes, bytearray)) or len(value) != _ID_LEN:
            raise ValueError(f"{name} must be {_ID_LEN} bytes")
    text = normalize_user_secret(user_secret)
    if not text:
        raise ValueError("the SMP secret is empty")
    digest = hashlib.sha256(
        _SMP_SECRET_VERSION + bytes(initiator_fp) + bytes(responder_fp) + bytes(session_id) + text.encode("utf-8")
    ).digest()
    return int.from_bytes(digest, "big")


def _coerce_secret(secret: int | bytes) -> int:
    """Accept the output of :func:`smp_secret` (an int) or the same 32-byte
    digest as bytes. Anything else is refused so that a raw typed secret can
    never reach the protocol without its session binding."""
    if isinstance(secret, bool):
        raise TypeError("the SMP secret must come from smp_secret()")
    if isinstance(secret, int):
        if not 0 <= secret < 1 << (8 * HASH_BYTES):
            raise ValueError("the SMP secret must be a 256-bit value from smp_secret()")
        return secret
    if isinstance(secret, (bytes, bytearray)):
        if len(secret) != HASH_BYTES:
            raise ValueError("an SMP secret given as bytes must be the 32-byte digest from smp_secret()")
        return int.from_bytes(secret, "big")
    raise TypeError("the SMP secret must come from smp_secret()")


# ---------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------


class SMPState(enum.Enum):
    """OTR's smpstate, with EXPECT1 split in two for a sans-IO API.

    OTR stays in SMPSTATE_EXPECT1 after a valid SMP1 while its client asks
    the user for the secret; here that wait is the explicit
    ``AWAITING_SECRET`` so the caller can see it. It behaves as EXPECT1 for
    incoming messages (a new SMP1 replaces the pending one).
    """

    EXPECT1 = "expect1"  #: idle: no check under way
    AWAITING_SECRET = "awaiting-secret"  #: got a valid SMP1; call respond()
    EXPECT2 = "expect2"  #: sent SMP1 (initiator)
    EXPECT3 = "expect3"  #: sent SMP2 (responder)
    EXPECT4 = "expect4"  #: sent SMP3 (initiator)


class SocialistMillionaire:
    """One side of SMP with one peer in one session.

    Initiator (Alice)::

        body = smp.start(secret)          # send SMP1
        reply = smp.receive(smp2_body)    # send SMP3
        smp.receive(smp4_body)            # None; smp.outcome is True/False

    Responder (Bob)::

        smp.receive(smp1_body)            # None; state AWAITING_SECRET:
                                          # ask the user for the secret
        body = smp.respond(secret)        # send SMP2
        reply = smp.receive(smp3_body)    # send SMP4; smp.outcome set

    ``secret`` is :func:`smp_secret`'s result for this session. Any
    :class:`SMPError` from :meth:`receive` means the machine has reset to
    EXPECT1: report it and send :meth:`abort`. A received abort resets the
    machine and sets :attr:`peer_aborted`. Bodies are the bytes after the
    ``0x03`` end-to-end type byte.
    """

    # Per-run values, None between runs (see _clear).
    _secret: int | None
    _x2: int | None  # a2 / b2
    _x3: int | None  # a3 / b3
    _g2: int | None
    _g3: int | None
    _g3o: int | None  # the peer's g3a / g3b
    _p: int | None  # own P (Bob's Pb)
    _q: int | None  # own Q (Bob's Qb)
    _pab: int | None
    _qab: int | None

    def __init__(self, session_initiator: bool | None = None) -> None:
        self._session_initiator = session_initiator
        self._state = SMPState.EXPECT1
        self._outcome: bool | None = None
        self._peer_aborted = False
        self._clear()

    # -- public view -------------------------------------------------------

    @property
    def state(self) -> SMPState:
        return self._state

    @property
    def outcome(self) -> bool | None:
        """True: same secret; False: different secret. None while a check is
        running, before the first one, and after an abort or an error."""
        return self._outcome

    @property
    def peer_aborted(self) -> bool:
        """True if the peer aborted the last check while it was under way."""
        return self._peer_aborted

    @property
    def in_progress(self) -> bool:
        return self._state is not SMPState.EXPECT1

    # -- local actions -----------------------------------------------------

    def start(self, secret: int | bytes) -> bytes:
        """Begin a check as initiator; return the SMP1 body to send.

        Only from the idle state: a check under way must be ended with
        :meth:`abort` first (OTR: "send an abort, then proceed"), and a
        pending request from the peer is answered with :meth:`respond` or
        declined with :meth:`abort`. Raising instead of silently discarding
        keeps the UI honest about what happened to the earlier check.
        """
        if self._state is SMPState.AWAITING_SECRET:
            raise SMPUsageError("the peer has asked for a check: respond() to it or abort() it first")
        if self._state is not SMPState.EXPECT1:
            raise SMPUsageError("a check is already under way: abort() it first")
        x = _coerce_secret(secret)
        a2, a3 = _g.random_exponent(), _g.random_exponent()
        g2a = pow(GENERATOR, a2, MODULUS)
        c2, d2 = _g.prove_log(a2, 1)
        g3a = pow(GENERATOR, a3, MODULUS)
        c3, d3 = _g.prove_log(a3, 2)
        self._begin_run()
        self._secret, self._x2, self._x3 = x, a2, a3
        self._state = SMPState.EXPECT2
        return encode_message(MessageKind.SMP1, (g2a, c2, d2, g3a, c3, d3))

    def respond(self, secret: int | bytes) -> bytes:
        """Answer a pending SMP1 with the local secret; return SMP2.

        OTR lets the responder answer whenever its user has typed the secret;
        the verified SMP1 values wait in the machine until then.
        """
        if self._state is not SMPState.AWAITING_SECRET:
            raise SMPUsageError("there is no check request from the peer to respond to")
        y = _coerce_secret(secret)
        b2, b3, g2, g3 = self._x2, self._x3, self._g2, self._g3
        assert b2 is not None and b3 is not None and g2 is not None and g3 is not None
        g2b = pow(GENERATOR, b2, MODULUS)
        c2, d2 = _g.prove_log(b2, 3)
        g3b = pow(GENERATOR, b3, MODULUS)
        c3, d3 = _g.prove_log(b3, 4)
        r4 = _g.random_exponent()
        pb = pow(g3, r4, MODULUS)
        qb = _g.mul(pow(GENERATOR, r4, MODULUS), pow(g2, y, MODULUS))
        cp, d5, d6 = _g.prove_coords(g2, g3, r4, y, 5)
        # Bob needs neither y nor b2 again: only b3, g2, g3, g3a, Pb, Qb.
        self._x2 = None
        self._p, self._q = pb, qb
        self._state = SMPState.EXPECT3
        return encode_message(MessageKind.SMP2, (g2b, c2, d2, g3b, c3, d3, pb, qb, cp, d5, d6))

    def abort(self) -> bytes:
        """Give up any check (OTR: "User requests to abort SMP"); return the
        abort body to send. Always valid; also the reply to every
        :class:`SMPError`."""
        self._reset()
        self._peer_aborted = False
        return encode_message(MessageKind.ABORT, ())

    # -- incoming ----------------------------------------------------------

    def receive(self, message: bytes) -> bytes | None:
        """Process one SMP body from the peer; return the body to send back,
        or None. Raises :class:`SMPError` (machine reset) on anything the
        OTR specification says to reject."""
        try:
            kind, values = decode_message(message)
            if kind is MessageKind.ABORT:
                self._peer_aborted = self._state is not SMPState.EXPECT1
                self._reset()
                return None
            expected = {
                MessageKind.SMP1: (SMPState.EXPECT1, SMPState.AWAITING_SECRET),
                MessageKind.SMP2: (SMPState.EXPECT2,),
                MessageKind.SMP3: (SMPState.EXPECT3,),
                MessageKind.SMP4: (SMPState.EXPECT4,),
            }[kind]
            if kind is MessageKind.SMP1 and self._state is SMPState.EXPECT2 and self._session_initiator is not None:
                return self._collision(values)
            if self._state not in expected:
                raise SMPUnexpectedMessage(
                    f"Received {kind.name} while in state {self._state.name}; the check was reset."
                )
            _g.check_ranges(kind, values)
            handler = {
                MessageKind.SMP1: self._on_smp1,
                MessageKind.SMP2: self._on_smp2,
                MessageKind.SMP3: self._on_smp3,
                MessageKind.SMP4: self._on_smp4,
            }[kind]
            return handler(values)
        except SMPError:
            self._reset()
            self._peer_aborted = False
            raise

    def _collision(self, values: Sequence[int]) -> bytes | None:
        """Both sides started at once (each got SMP1 in EXPECT2; docs/protocol.rst 14.7).

        OTR aborts both runs and the users try again, which fails the same
        way whenever they type at the same moment. Instead the roles of the
        *session* decide, which both ends know without a message: the
        session initiator's run goes on and it ignores the crossing SMP1; the
        session responder drops its own run (its SMP1 held no secret-derived
        value) and answers the initiator's with the secret its user typed
        for this check, so that secret is still used in exactly one run.
        """
        if self._session_initiator:
            return None
        secret = self._secret
        assert secret is not None
        _g.check_ranges(MessageKind.SMP1, values)
        self._on_smp1(values)
        return self.respond(secret)

    def _on_smp1(self, v: Sequence[int]) -> None:
        g2a, c2, d2, g3a, c3, d3 = v
        if not _g.check_log(c2, d2, g2a, 1):
            raise SMPError("SMP1: the proof of knowledge of log g2a (c2, D2) does not verify.")
        if not _g.check_log(c3, d3, g3a, 2):
            raise SMPError("SMP1: the proof of knowledge of log g3a (c3, D3) does not verify.")
        _g.check_subgroup(MessageKind.SMP1, v)
        b2, b3 = _g.random_exponent(), _g.random_exponent()
        g2, g3 = pow(g2a, b2, MODULUS), pow(g3a, b3, MODULUS)
        self._begin_run()
        self._x2, self._x3, self._g2, self._g3, self._g3o = b2, b3, g2, g3, g3a
        self._state = SMPState.AWAITING_SECRET

    def _on_smp2(self, v: Sequence[int]) -> bytes:
        g2b, c2, d2, g3b, c3, d3, pb, qb, cp, d5, d6 = v
        a2, a3, x = self._x2, self._x3, self._secret
        assert a2 is not None and a3 is not None and x is not None
        if not _g.check_log(c2, d2, g2b, 3):
            raise SMPError("SMP2: the proof of knowledge of log g2b (c2, D2) does not verify.")
        if not _g.check_log(c3, d3, g3b, 4):
            raise SMPError("SMP2: the proof of knowledge of log g3b (c3, D3) does not verify.")
        g2, g3 = pow(g2b, a2, MODULUS), pow(g3b, a3, MODULUS)
        if not _g.check_coords(cp, d5, d6, pb, qb, g2, g3, 5):
            raise SMPError("SMP2: the proof that Pb and Qb were built correctly (cP, D5, D6) does not verify.")
        _g.check_subgroup(MessageKind.SMP2, v)
        r4 = _g.random_exponent()
        pa = pow(g3, r4, MODULUS)
        qa = _g.mul(pow(GENERATOR, r4, MODULUS), pow(g2, x, MODULUS))
        cp_a, d5_a, d6_a = _g.prove_coords(g2, g3, r4, x, 6)
        qab = _g.div(qa, qb)
        ra = pow(qab, a3, MODULUS)
        cr, d7 = _g.prove_equal_logs(qab, a3, 7)
        self._g3o, self._pab, self._qab = g3b, _g.div(pa, pb), qab
        self._x2 = self._secret = self._g2 = self._g3 = None
        self._state = SMPState.EXPECT4
        return encode_message(MessageKind.SMP3, (pa, qa, cp_a, d5_a, d6_a, ra, cr, d7))

    def _on_smp3(self, v: Sequence[int]) -> bytes:
        pa, qa, cp, d5, d6, ra, cr, d7 = v
        b3, g2, g3, g3o, pb, qb = self._x3, self._g2, self._g3, self._g3o, self._p, self._q
        assert b3 is not None and g2 is not None and g3 is not None
        assert g3o is not None and pb is not None and qb is not None
        if not _g.check_coords(cp, d5, d6, pa, qa, g2, g3, 6):
            raise SMPError("SMP3: the proof that Pa and Qa were built correctly (cP, D5, D6) does not verify.")
        pab, qab = _g.div(pa, pb), _g.div(qa, qb)
        if not _g.check_equal_logs(cr, d7, ra, g3o, qab, 7):
            raise SMPError("SMP3: the proof that Ra was built correctly (cR, D7) does not verify.")
        _g.check_subgroup(MessageKind.SMP3, v)
        rb = pow(qab, b3, MODULUS)
        cr_b, d7_b = _g.prove_equal_logs(qab, b3, 8)
        rab = pow(ra, b3, MODULUS)
        # OTR: Bob sends SMP4 whatever the result, so Alice learns it too.
        self._finish(_g.same(pab, rab, MODULUS_BYTES))
        return encode_message(MessageKind.SMP4, (rb, cr_b, d7_b))

    def _on_smp4(self, v: Sequence[int]) -> None:
        rb, cr, d7 = v
        a3, g3o, pab, qab = self._x3, self._g3o, self._pab, self._qab
        assert a3 is not None and g3o is not None and pab is not None and qab is not None
        if not _g.check_equal_logs(cr, d7, rb, g3o, qab, 8):
            raise SMPError("SMP4: the proof that Rb was built correctly (cR, D7) does not verify.")
        _g.check_subgroup(MessageKind.SMP4, v)
        rab = pow(rb, a3, MODULUS)
        self._finish(_g.same(pab, rab, MODULUS_BYTES))

    # -- bookkeeping -------------------------------------------------------

    def _clear(self) -> None:
        """Drop every per-run value (private exponents first of all)."""
        self._secret = None
        self._x2 = None  # a2 / b2
        self._x3 = None  # a3 / b3
        self._g2 = None
        self._g3 = None
        self._g3o = None  # the peer's g3a / g3b
        self._p = None  # own P (Bob's Pb)
        self._q = None  # own Q (Bob's Qb)
        self._pab = None
        self._qab = None

    def _begin_run(self) -> None:
        self._clear()
        self._outcome = None
        self._peer_aborted = False

    def _finish(self, equal: bool) -> None:
        self._clear()
        self._outcome = equal
        self._state = SMPState.EXPECT1

    def _reset(self) -> None:
        self._clear()
        self._outcome = None
        self._state = SMPState.EXPECT1

    def __repr__(self) -> str:  # never shows secrets
        return f"<SocialistMillionaire state={self._state.name} outcome={self._outcome}>"
