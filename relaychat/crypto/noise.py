"""The Noise Protocol Framework, revision 34, as a sans-IO state machine.

docs/protocol.rst sections 10-12 run Noise_XX_25519_ChaChaPoly_SHA256 (chat)
and Noise_X_25519_ChaChaPoly_SHA256 (sealed mail) "exactly as specified".
This module follows the spec's object model (section 5) so that each line can
be checked against the text: ``CipherState``, ``SymmetricState`` and
``HandshakeState``. It does no I/O: callers move the returned bytes.

Only the 25519_ChaChaPoly_SHA256 suite is implemented, and only the handshake
patterns in ``_PATTERN_TEXT``; any other protocol name is rejected rather than
silently mapped to something else. PSK and other pattern modifiers are not
supported. Key material is never logged or put in a repr.
"""

from __future__ import annotations

import re as regex  # not `re`: that name is the spec's remote ephemeral
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

__all__ = [
    "MAX_MESSAGE_LEN", "MAX_NONCE", "PATTERNS", "NoiseError", "DecryptError",
    "HandshakeStateError", "HandshakePattern", "CipherState", "SymmetricState",
    "HandshakeState",
]

MAX_MESSAGE_LEN = 65535  # spec section 3: every Noise message
MAX_NONCE = 2**64 - 1  # spec 5.1: reserved, never used by EncryptWithAd
DHLEN = 32  # 12.1
HASHLEN = 32  # 12.5; 32, so the "truncate to 32 bytes" steps of 5.2 are no-ops
TAGLEN = 16


class NoiseError(Exception):
    """Any Noise failure. During a handshake, the handshake must be abandoned."""


class DecryptError(NoiseError):
    """AEAD authentication failed: the message was altered, replayed,
    reordered, truncated or made with different keys/prologue."""


class HandshakeStateError(NoiseError):
    """The API was used out of order or with keys the pattern does not fit."""


# -- crypto functions for 25519_ChaChaPoly_SHA256 (sections 4 and 12) --------

def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    # 12.1 allows signalling an error instead of returning all zeros for an
    # invalid (low-order) public key; `cryptography` always does, so we map it.
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise NoiseError("DH failed: invalid or low-order public key") from None


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")  # 12.3


_SHA256 = hashes.SHA256()
_FRESH_SHA256 = hashes.Hash(_SHA256)  # never updated: copied, which costs half a new Hash


def _hash(data: bytes) -> bytes:
    digest = _FRESH_SHA256.copy()
    digest.update(data)
    return digest.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def _hkdf(chaining_key: bytes, ikm: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """HKDF exactly as written in spec 4.3 (2 or 3 outputs of HASHLEN)."""
    temp_key = _hmac(chaining_key, ikm)
    out1 = _hmac(temp_key, b"\x01")
    out2 = _hmac(temp_key, out1 + b"\x02")
    if num_outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp_key, out2 + b"\x03")


# -- handshake patterns (section 7), in the spec's own notation ---------------

_PATTERN_TEXT = """
N:
  <- s
  ...
  -> e, es

X:
  <- s
  ...
  -> e, es, s, ss

NK:
  <- s
  ...
  -> e, es
  <- e, ee

KK:
  -> s
  <- s
  ...
  -> e, es, ss
  <- e, ee, se

XK:
  <- s
  ...
  -> e, es
  <- e, ee
  -> s, se

XX:
  -> e
  <- e, ee, s, es
  -> s, se

IK:
  <- s
  ...
  -> e, es, s, ss
  <- e, ee, se
"""


@dataclass(frozen=True)
class HandshakePattern:
    name: str
    pre_initiator: tuple[str, ...]
    pre_responder: tuple[str, ...]
    messages: tuple[tuple[str, ...], ...]  # messages[0] is initiator -> responder


def _line(line: str) -> tuple[str, tuple[str, ...]]:
    arrow, _, tokens = line.partition(" ")
    return arrow, tuple(t.strip() for t in tokens.split(","))


def _parse_patterns(text: str) -> dict[str, HandshakePattern]:
    """Parse section-7 notation; a malformed table is a bug, so it raises."""
    patterns = {}
    for block in text.strip().split("\n\n"):
        head, *lines = [line.strip() for line in block.splitlines()]
        pre, msgs = ([], lines)
        if "..." in lines:
            pre, msgs = lines[:lines.index("...")], lines[lines.index("...") + 1:]
        pre_i = next((t for a, t in map(_line, pre) if a == "->"), ())
        pre_r = next((t for a, t in map(_line, pre) if a == "<-"), ())
        messages = tuple(map(_line, msgs))
        if (not set(pre_i + pre_r) <= {"e", "s"} or any(
                arrow != ("->", "<-")[i % 2] or not set(toks) <= _TOKENS
                for i, (arrow, toks) in enumerate(messages))):
            raise ValueError(f"bad pattern {head}")
        patterns[head.rstrip(":")] = HandshakePattern(
            head.rstrip(":"), pre_i, pre_r, tuple(t for _, t in messages))
    return patterns


_TOKENS = {"e", "s", "ee", "es", "se", "ss"}
PATTERNS: dict[str, HandshakePattern] = _parse_patterns(_PATTERN_TEXT)
_SUPPORTED_SUITE = ("25519", "ChaChaPoly", "SHA256")
_NAME_RE = regex.compile(r"Noise_([A-Za-z0-9+/]+)_([A-Za-z0-9+/]+)_"
                      r"([A-Za-z0-9+/]+)_([A-Za-z0-9+/]+)")


def _parse_protocol_name(name: str) -> HandshakePattern:
    """Section 8: ``Noise_<pattern>_<dh>_<cipher>_<hash>``; reject the rest."""
    if not isinstance(name, str) or not name.isascii() or len(name) > 255:
        raise NoiseError("protocol name must be an ASCII str of <= 255 bytes")
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise NoiseError(f"malformed Noise protocol name {name!r}")
    pattern, *suite = match.groups()
    prefix = regex.match(r"[A-Z0-9]*", pattern)  # always matches, perhaps empty
    base = prefix.group() if prefix is not None else ""
    if base != pattern:
        raise NoiseError(f"pattern modifiers (psk, fallback, ...) are not "
                         f"supported: {pattern!r}")
    if base not in PATTERNS:
        raise NoiseError(f"unsupported handshake pattern {base!r}")
    if tuple(suite) != _SUPPORTED_SUITE:
        raise NoiseError(f"unsupported suite {'_'.join(suite)!r}; only "
                         f"{'_'.join(_SUPPORTED_SUITE)} is implemented")
    return PATTERNS[base]


# -- section 5 objects --------------------------------------------------------

class CipherState:
    """Spec 5.1: a key ``k`` (or empty) and a 64-bit counter nonce ``n``."""

    def __init__(self, key: bytes | None = None) -> None:
        self.initialize_key(key)

    def __repr__(self) -> str:  # never show k
        return f"<CipherState has_key={self.has_key()} n={self._n}>"

    def initialize_key(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise NoiseError("cipher key must be 32 bytes")
        self._k = key
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self._n = 0

    def has_key(self) -> bool:
        return self._k is not None

    @property
    def nonce(self) -> int:
        """The next ``n``; exposed so callers and tests can see it not move."""
        return self._n

    def set_nonce(self, nonce: int) -> None:
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseError("nonce out of range")
        self._n = nonce

    def _check(self, length: int) -> None:
        if self._n >= MAX_NONCE:
            raise NoiseError("nonce exhausted; the session must be ended")
        if length > MAX_MESSAGE_LEN:
            raise NoiseError(f"message longer than {MAX_MESSAGE_LEN} bytes")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        self._check(len(plaintext) + (TAGLEN if self._aead else 0))
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(_nonce(self._n), plaintext, ad)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """On failure ``n`` is left unchanged (5.1) and DecryptError raised."""
        self._check(len(ciphertext))
        if self._aead is None:
            return ciphertext
        try:
            plaintext = self._aead.decrypt(_nonce(self._n), ciphertext, ad)
        except InvalidTag:
            raise DecryptError("message failed authentication") from None
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """4.2 default REKEY: ENCRYPT(k, maxnonce, zerolen, zeros)[:32].

        ``n`` is deliberately not reset (11.3).
        """
        if self._aead is None:
            raise HandshakeStateError("rekey on a CipherState without a key")
        n = self._n
        self.initialize_key(
            self._aead.encrypt(_nonce(MAX_NONCE), b"\x00" * 32, b"")[:32])
        self._n = n


class SymmetricState:
    """Spec 5.2: a CipherState plus chaining key ``ck`` and hash ``h``."""

    def __init__(self, protocol_name: bytes) -> None:  # InitializeSymmetric
        if len(protocol_name) <= HASHLEN:
            self._h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self._h = _hash(protocol_name)
        self._ck = self._h
        self.cipher_state = CipherState(None)

    def __repr__(self) -> str:
        return "<SymmetricState>"

    def mix_key(self, input_key_material: bytes) -> None:
        self._ck, temp_k = _hkdf(self._ck, input_key_material, 2)
        self.cipher_state.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self._h = _hash(self._h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self._ck, temp_h, temp_k = _hkdf(self._ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k)

    def get_handshake_hash(self) -> bytes:
        return self._h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = _hkdf(self._ck, b"", 2)
        return CipherState(temp_k1), CipherState(temp_k2)


class HandshakeState:
    """Spec 5.3. The constructor is ``Initialize()``.

    ``s`` and ``e`` are local private keys, ``rs`` and ``re`` remote public
    keys (32 raw bytes), given only when the pattern's pre-messages need them.
    A fixed ``e`` is for deterministic test vectors only: the "e" token then
    uses it instead of GENERATE_KEYPAIR(); real callers leave it None.

    Any exception from ``write_message``/``read_message`` after processing has
    begun (bad tag, invalid DH, truncated message) marks the state failed:
    per section 5 the caller must abandon this handshake (later calls raise
    HandshakeStateError). Turn-order and oversize-payload errors on
    ``write_message`` are raised before anything changes.
    """

    def __init__(self, protocol_name: str, initiator: bool, prologue: bytes = b"",
                 s: X25519PrivateKey | None = None, e: X25519PrivateKey | None = None,
                 rs: bytes | None = None, re: bytes | None = None) -> None:
        pattern = _parse_protocol_name(protocol_name)
        for key in (rs, re):
            if key is not None and len(key) != DHLEN:
                raise NoiseError("remote public keys must be 32 bytes")
        self._pattern, self._initiator = pattern, bool(initiator)
        self._s, self._e, self._rs, self._re = s, e, rs, re
        local_pre, remote_pre = ((pattern.pre_initiator, pattern.pre_responder)
                                 if self._initiator else
                                 (pattern.pre_responder, pattern.pre_initiator))
        # Check keys against the pattern now, not halfway through a handshake.
        sent = set(local_pre).union(*pattern.messages[0 if self._initiator else 1::2])
        if "s" in sent and s is None:
            raise HandshakeStateError(f"{pattern.name} needs a local static key")
        for token, key in (("s", rs), ("e", re)):
            if (key is not None) != (token in remote_pre):
                raise HandshakeStateError(
                    f"{pattern.name}: remote '{token}' must be given iff it is "
                    f"in the peer's pre-message")
        if "e" in local_pre and e is None:
            raise HandshakeStateError(f"{pattern.name} needs a local ephemeral")

        self._ss: SymmetricState | None = SymmetricState(protocol_name.encode("ascii"))
        self._ss.mix_hash(prologue)
        for pre, local in ((pattern.pre_initiator, self._initiator),
                           (pattern.pre_responder, not self._initiator)):
            for token in pre:  # initiator's pre-message first (5.3)
                pre_key = (s if token == "s" else e) if local else (rs if token == "s" else re)
                assert pre_key is not None  # checked against the pattern above
                self._ss.mix_hash(_public(pre_key) if isinstance(pre_key, X25519PrivateKey) else pre_key)
        self._index = 0
        self._failed = False
        self._h: bytes | None = None
        self._ciphers: tuple[CipherState | None, CipherState | None] | None = None

    def __repr__(self) -> str:
        return (f"<HandshakeState {self._pattern.name} initiator={self._initiator}"
                f" message={self._index} complete={self.complete}>")

    @property
    def complete(self) -> bool:
        return self._ciphers is not None

    @property
    def remote_static(self) -> bytes | None:
        """``rs``: what the application must authenticate (protocol.rst s10).

        None after a failure: ``rs`` may have been decrypted before a later
        check failed, and must not be mistaken for an authenticated key.
        """
        return None if self._failed else self._rs

    @property
    def handshake_hash(self) -> bytes:
        """GetHandshakeHash(); only meaningful once complete (5.2, 11.2)."""
        if self._h is None:
            raise HandshakeStateError("handshake not complete")
        return self._h

    @property
    def cipher_states(self) -> tuple[CipherState | None, CipherState | None]:
        """Split() oriented for this side: ``(send, recv)``.

        For one-way patterns the direction that must not be used (7.4) is None.
        The same objects are returned every time, so nonces are never reused.
        """
        if self._ciphers is None:
            raise HandshakeStateError("handshake not complete")
        return self._ciphers

    def _next_tokens(self, writing: bool) -> tuple[str, ...]:
        if self._failed:
            raise HandshakeStateError("handshake failed; it must be abandoned")
        if self.complete:
            raise HandshakeStateError("handshake complete; use cipher_states")
        if writing != ((self._index % 2 == 0) == self._initiator):
            raise HandshakeStateError(
                "not our turn to " + ("write" if writing else "read"))
        return self._pattern.messages[self._index]

    def _symmetric(self) -> SymmetricState:
        """The symmetric state, which exists only until the handshake is over."""
        if self._ss is None:
            raise HandshakeStateError("the handshake is over")
        return self._ss

    def _mix_dh(self, token: str) -> None:
        # "es" is DH(e, rs) for the initiator and DH(s, re) for the responder:
        # the first letter is the initiator's key, the second the responder's.
        mine, theirs = (token[0], token[1]) if self._initiator else (token[1], token[0])
        private = self._e if mine == "e" else self._s
        public = self._re if theirs == "e" else self._rs
        if private is None or public is None:
            raise HandshakeStateError(f"missing key for {token}")
        self._symmetric().mix_key(_dh(private, public))

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(): returns the next handshake message to send."""
        tokens = self._next_tokens(writing=True)
        ss = self._symmetric()
        keyed, length = ss.cipher_state.has_key(), len(payload)
        for token in tokens:  # predict the length so oversize changes nothing
            keyed = keyed or token in ("ee", "es", "se", "ss")
            if token == "e":
                length += DHLEN
            elif token == "s":
                length += DHLEN + TAGLEN * keyed
        if length + TAGLEN * keyed > MAX_MESSAGE_LEN:
            raise NoiseError(f"handshake message longer than {MAX_MESSAGE_LEN} bytes")
        try:
            out = bytearray()
            for token in tokens:
                if token == "e":
                    if self._e is None:
                        self._e = X25519PrivateKey.generate()
                    e_pub = _public(self._e)
                    out += e_pub
                    ss.mix_hash(e_pub)
                elif token == "s":
                    if self._s is None:
                        raise HandshakeStateError("missing key for s")
                    out += ss.encrypt_and_hash(_public(self._s))
                else:
                    self._mix_dh(token)
            out += ss.encrypt_and_hash(payload)
        except Exception:
            self._failed = True
            raise
        self._advance()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage(): returns the payload. Raises (and fails) on any error."""
        tokens = self._next_tokens(writing=False)
        ss = self._symmetric()
        try:
            if len(message) > MAX_MESSAGE_LEN:
                raise NoiseError(f"handshake message longer than {MAX_MESSAGE_LEN} bytes")
            pos = 0
            def take(n: int) -> bytes:
                nonlocal pos
                if len(message) - pos < n:
                    raise NoiseError("handshake message truncated")
                pos += n
                return bytes(message[pos - n:pos])
            for token in tokens:
                if token == "e":
                    self._re = take(DHLEN)
                    ss.mix_hash(self._re)
                elif token == "s":
                    n = DHLEN + TAGLEN if ss.cipher_state.has_key() else DHLEN
                    self._rs = ss.decrypt_and_hash(take(n))
                else:
                    self._mix_dh(token)
            payload = ss.decrypt_and_hash(bytes(message[pos:]))
        except Exception:
            self._failed = True
            raise
        self._advance()
        return payload

    def _advance(self) -> None:
        self._index += 1
        if self._index < len(self._pattern.messages):
            return
        ss = self._symmetric()
        c1, c2 = ss.split()
        one_way = len(self._pattern.messages) == 1  # 7.4: c2 must not be used
        if self._initiator:
            self._ciphers = (c1, None if one_way else c2)
        else:
            self._ciphers = (None if one_way else c2, c1)
        self._h = ss.get_handshake_hash()
        # Section 5: keep only h; drop ck and the ephemeral private key.
        self._ss, self._e, self._s = None, None, None
