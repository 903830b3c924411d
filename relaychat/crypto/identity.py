"""A client's long-term keys, the signatures made with them, and their storage.

Everything here is pure (no reactor, no network) so that the relay can import
the verification half (``verify_static_sig``, ``registration_message``,
``verify_registration``, ``pow_ok``) and run exactly the same byte-level
checks as the client; one implementation of docs/protocol.rst sections 5 and
10 means the two sides cannot drift apart.

Error classes map onto the protocol's error codes: a malformed key or
signature field raises ``KeyFormatError`` (the relay answers ``bad-key``),
while a well-formed signature that does not verify makes the ``verify_*``
functions return ``False`` (``bad-signature``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

StrPath = Union[str, "os.PathLike[str]"]

__all__ = [
    "BINDING_SIZE",
    "BINDING_VERSION",
    "BindingError",
    "IDENTITY_FILE",
    "Identity",
    "IdentityError",
    "KeyFormatError",
    "KeyStorageError",
    "MAX_POW_NONCE",
    "PassphraseRequired",
    "STATIC_FILE",
    "WrongPassphrase",
    "default_config_dir",
    "exists",
    "load",
    "load_identity_public",
    "load_or_create",
    "load_static_public",
    "make_private_dir",
    "parse_binding",
    "pow_ok",
    "registration_message",
    "save",
    "solve_pow",
    "verify_binding",
    "verify_registration",
    "verify_static_sig",
    "write_private_file",
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

IDENTITY_FILE = "identity.pem"
STATIC_FILE = "static.pem"

# Passphrase protection of the PEM files: PBES2 with scrypt and AES-256-CBC.
# N = 2**14, r = 8, p = 5 is one of the equivalent minimum settings the OWASP
# Password Storage Cheat Sheet lists (with 2**17/8/1); it is chosen over
# 2**17/8/1 because OpenSSL refuses to decrypt PKCS#8 files needing more
# than 32 MiB of scrypt memory (2**17 * 8 * 128 = 128 MiB), so users could
# not export their key with `openssl pkey`. About 0.4 s per file here.
# Tests lower SCRYPT_N; the parameters are stored in each file, so loading
# never depends on these constants.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 5
SCRYPT_SALT_SIZE = 16
MAX_KEY_FILE = 64 * 1024


class IdentityError(Exception):
    """Base class; ``str(e)`` is a sentence that can be shown to the user."""


class KeyFormatError(IdentityError, ValueError):
    """A public key or signature is not usable: wrong type or size, not a
    point on the curve, a small-order point, or a non-canonical encoding."""


class BindingError(IdentityError):
    """A peer's identity binding (section 10) is malformed or does not
    certify the static key used in this handshake."""


class KeyStorageError(IdentityError):
    """The key files are missing, unreadable, damaged or inconsistent."""


class WrongPassphrase(KeyStorageError):
    """The passphrase does not decrypt the key files."""


class PassphraseRequired(WrongPassphrase):
    """The key files are encrypted and no passphrase was given."""


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


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------------------
# Static key certificate, registration message, identity binding
# ---------------------------------------------------------------------------


def _static_signed_data(static_pub: bytes) -> bytes:
    return STATIC_CONTEXT + static_pub


def verify_static_sig(identity_pub: bytes, static_pub: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is the identity key's certificate for ``static_pub``.

    Raises ``KeyFormatError`` when a field is malformed (relay: ``bad-key``);
    returns False when a well-formed signature does not verify
    (``bad-signature``).
    """
    public = load_identity_public(identity_pub)
    static_raw = _raw_public(load_static_public(static_pub))
    sig = _require_bytes(sig, SIGNATURE_SIZE, "static key signature")
    try:
        public.verify(sig, _static_signed_data(static_raw))
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


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def default_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/relaychat``, else ``~/.config/relaychat``.

    A relative ``XDG_CONFIG_HOME`` is ignored, as the XDG Base Directory
    specification requires, so keys never land relative to the working
    directory.
    """
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "relaychat"
    return Path.home() / ".config" / "relaychat"


def make_private_dir(directory: StrPath) -> None:
    """Create ``directory`` with mode 0700 if absent; leave an existing one be.

    An existing directory may be shared with other files and is not ours to
    chmod; the key files themselves are always 0600.
    """
    directory = Path(directory)
    if directory.is_dir():
        return
    parent = directory.parent
    if not parent.is_dir():
        parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def write_private_file(path: StrPath, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only.

    The data goes to a fresh temporary file in the same directory, created
    with O_CREAT|O_EXCL (no symlink or existing file is followed) and mode
    0600 from the start (never world-readable, not even briefly), is synced,
    then renamed over ``path``: a reader sees the old or the new file, never
    a half-written one. The parent directory is created 0700 if absent.
    """
    path = Path(path)
    make_private_dir(path.parent)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask could only remove bits, but be explicit
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# Minimal DER writer for EncryptedPrivateKeyInfo (RFC 5958) with PBES2
# (RFC 8018) and scrypt (RFC 7914). cryptography 50 cannot write this itself:
# see Identity.save.

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _der_seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _der_int(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGER")
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_octets(value: bytes) -> bytes:
    return _der(0x04, value)


def _der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return _der(0x06, bytes(out))


def _encrypt_pkcs8_pem(pkcs8_der: bytes, passphrase: bytes) -> bytes:
    salt = os.urandom(SCRYPT_SALT_SIZE)
    iv = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(pkcs8_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    info = _der_seq(
        _der_seq(
            _der_oid(_OID_PBES2),
            _der_seq(
                _der_seq(
                    _der_oid(_OID_SCRYPT),
                    _der_seq(
                        _der_octets(salt),
                        _der_int(SCRYPT_N),
                        _der_int(SCRYPT_R),
                        _der_int(SCRYPT_P),
                        _der_int(32),
                    ),
                ),
                _der_seq(_der_oid(_OID_AES256_CBC), _der_octets(iv)),
            ),
        ),
        _der_octets(ciphertext),
    )
    body = base64.b64encode(info)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + b"\n".join(lines)
        + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey, passphrase: bytes | None) -> bytes:
    encoding = serialization.Encoding.PEM if passphrase is None else serialization.Encoding.DER
    data = key.private_bytes(
        encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if passphrase is None:
        return data
    return _encrypt_pkcs8_pem(data, passphrase)


def _check_passphrase(passphrase: bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    if isinstance(passphrase, str):
        raise TypeError("The passphrase must be bytes; encode the text (UTF-8) first.")
    if not isinstance(passphrase, (bytes, bytearray, memoryview)):
        raise TypeError("The passphrase must be bytes or None.")
    passphrase = bytes(passphrase)
    if not passphrase:
        raise ValueError("The passphrase is empty; pass None to store the keys unencrypted.")
    return passphrase


def _load_private(path: Path, passphrase: bytes | None, kind: type) -> object:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError as e:
        raise KeyStorageError(f"The key file {path} is missing.") from e
    except OSError as e:
        raise KeyStorageError(f"The key file {path} cannot be read: {e.strerror}.") from e
    if len(data) > MAX_KEY_FILE:
        raise KeyStorageError(f"The key file {path} is too large to be a key.")
    encrypted = data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    if encrypted and passphrase is None:
        raise PassphraseRequired(f"The key file {path} is encrypted; a passphrase is needed.")
    if not encrypted and passphrase is not None:
        raise KeyStorageError(
            f"The key file {path} is not encrypted, but a passphrase was given."
        )
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if encrypted:
            raise WrongPassphrase(
                f"The passphrase does not unlock {path} (or the file is damaged)."
            ) from e
        raise KeyStorageError(f"The key file {path} is damaged or not a PKCS#8 key.") from e
    if not isinstance(key, kind):
        raise KeyStorageError(f"The key file {path} holds the wrong kind of key.")
    return key


class Identity:
    """A client's Ed25519 identity key and its certified X25519 static key.

    The identity key never leaves this object: it only signs the static key
    certificate and registration messages. ``static_sig`` is computed once;
    Ed25519 is deterministic, so it is the same after every load.
    """

    def __init__(self, identity_key: Ed25519PrivateKey, static_key: X25519PrivateKey) -> None:
        if not isinstance(identity_key, Ed25519PrivateKey):
            raise TypeError("identity_key must be an Ed25519PrivateKey")
        if not isinstance(static_key, X25519PrivateKey):
            raise TypeError("static_key must be an X25519PrivateKey")
        self._identity_key = identity_key
        self._static_key = static_key
        self._identity_public = _raw_public(identity_key.public_key())
        self._static_public = _raw_public(static_key.public_key())
        self._static_sig = identity_key.sign(_static_signed_data(self._static_public))

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def identity_public(self) -> bytes:
        """The raw 32-byte Ed25519 public key: who we are."""
        return self._identity_public

    @property
    def static_public(self) -> bytes:
        """The raw 32-byte X25519 public key used as Noise ``s``."""
        return self._static_public

    @property
    def static_private(self) -> X25519PrivateKey:
        """The X25519 private key, for the Noise layer only."""
        return self._static_key

    @property
    def static_sig(self) -> bytes:
        """Ed25519 signature of the identity key over the static key (section 5)."""
        return self._static_sig

    def binding(self) -> bytes:
        """``0x01 || identity_pub || static_sig``: the Noise payload of section 10."""
        return bytes([BINDING_VERSION]) + self._identity_public + self._static_sig

    def sign_registration(self, server_id: bytes, challenge: bytes, canonical_nick: str) -> bytes:
        """The ``PROVE`` signature over M (section 5)."""
        message = registration_message(
            server_id,
            challenge,
            self._identity_public,
            self._static_public,
            self._static_sig,
            canonical_nick,
        )
        return self._identity_key.sign(message)

    def __repr__(self) -> str:
        return f"<Identity {self._identity_public.hex()[:16]}...>"

    # -- storage ---------------------------------------------------------

    def save(self, directory: StrPath, passphrase: bytes | None = None) -> None:
        """Write ``identity.pem`` and ``static.pem`` (PKCS#8 PEM, mode 0600).

        Without a passphrase the keys are stored in the clear, protected only
        by the file mode. With one, each file is an ``ENCRYPTED PRIVATE KEY``
        using PBES2 with scrypt (N=2**14, r=8, p=5, 16-byte salt; see
        SCRYPT_N) and AES-256-CBC, which cryptography, ``openssl pkey`` and
        other PKCS#8 readers can decrypt.

        Why not ``BestAvailableEncryption``: in cryptography 50 it produces
        PBES2 with PBKDF2-HMAC-SHA256 at only 2048 iterations (OpenSSL's
        PKCS5_DEFAULT_ITER; checked by parsing its output), about 300 times
        below current guidance for PBKDF2-SHA256 and cheap to brute-force,
        and ``PrivateFormat.PKCS8.encryption_builder()`` is refused ("only
        supported with PrivateFormat.OpenSSH and PrivateFormat.PKCS12"). So
        the file is built here from cryptography's Scrypt and AES, and read
        back by cryptography's own ``load_pem_private_key``.

        ``static.pem`` is written before ``identity.pem``, so the presence of
        ``identity.pem`` means a complete pair was written.
        """
        passphrase = _check_passphrase(passphrase)
        directory = Path(directory)
        make_private_dir(directory)
        write_private_file(directory / STATIC_FILE, _private_pem(self._static_key, passphrase))
        write_private_file(directory / IDENTITY_FILE, _private_pem(self._identity_key, passphrase))

    @classmethod
    def load(cls, directory: StrPath, passphrase: bytes | None = None) -> Identity:
        """Read the key pair written by ``save``.

        Raises ``PassphraseRequired`` / ``WrongPassphrase`` / ``KeyStorageError``,
        each with a sentence for the user.
        """
        passphrase = _check_passphrase(passphrase)
        directory = Path(directory)
        identity_key = _load_private(directory / IDENTITY_FILE, passphrase, Ed25519PrivateKey)
        static_key = _load_private(directory / STATIC_FILE, passphrase, X25519PrivateKey)
        assert isinstance(identity_key, Ed25519PrivateKey)
        assert isinstance(static_key, X25519PrivateKey)
        return cls(identity_key, static_key)

    @classmethod
    def load_or_create(cls, directory: StrPath, passphrase: bytes | None = None) -> Identity:
        """Load the identity, or on first run (no ``identity.pem``) create one.

        Only a missing ``identity.pem`` means "first run": a ``static.pem``
        alone is a leftover of an interrupted first save and is replaced. If
        ``identity.pem`` exists but cannot be loaded the error is raised,
        never papered over with a new identity, since losing the identity key
        loses the nickname.
        """
        directory = Path(directory)
        if not (directory / IDENTITY_FILE).exists():
            identity = cls.generate()
            identity.save(directory, passphrase)
            return identity
        return cls.load(directory, passphrase)


def exists(directory: StrPath) -> bool:
    """True if ``directory`` holds an identity (so ``load_or_create`` will load)."""
    return (Path(directory) / IDENTITY_FILE).exists()


def save(identity: Identity, directory: StrPath, passphrase: bytes | None = None) -> None:
    """Same as ``identity.save(directory, passphrase)``."""
    identity.save(directory, passphrase)


def load(directory: StrPath, passphrase: bytes | None = None) -> Identity:
    """Same as ``Identity.load(directory, passphrase)``."""
    return Identity.load(directory, passphrase)


def load_or_create(directory: StrPath, passphrase: bytes | None = None) -> Identity:
    """Same as ``Identity.load_or_create(directory, passphrase)``."""
    return Identity.load_or_create(directory, passphrase)
