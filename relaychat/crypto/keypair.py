"""A client's key pair in memory: the Ed25519 identity key and its certified X25519 static key.

It signs (the static-key certificate, registrations) and saves and loads
itself through ``relaychat.crypto.keyfiles``. Only clients use it; the
relay checks what it signs with ``relaychat.crypto.identity``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from relaychat.crypto.identity import BINDING_VERSION, raw_public, registration_message, static_signed_data
from relaychat.crypto.keyfiles import (
    IDENTITY_FILE,
    PREVIOUS_STATIC_FILE,
    STATIC_FILE,
    StrPath,
    check_passphrase,
    load_private_key,
    make_private_dir,
    private_key_pem,
    write_private_file,
)

__all__ = ["Identity", "exists", "load", "load_or_create", "save"]


class Identity:
    """A client's Ed25519 identity key and its certified X25519 static key.

    The identity key never leaves this object: it only signs the static key
    certificate and registration messages. ``static_sig`` is computed once;
    Ed25519 is deterministic, so it is the same after every load.
    """

    def __init__(self, identity_key: Ed25519PrivateKey, static_key: X25519PrivateKey,
                 previous_static: Optional[X25519PrivateKey] = None) -> None:
        if not isinstance(identity_key, Ed25519PrivateKey):
            raise TypeError("identity_key must be an Ed25519PrivateKey")
        if not isinstance(static_key, X25519PrivateKey):
            raise TypeError("static_key must be an X25519PrivateKey")
        if previous_static is not None and not isinstance(previous_static, X25519PrivateKey):
            raise TypeError("previous_static must be an X25519PrivateKey")
        self._identity_key = identity_key
        self._static_key = static_key
        self._previous_static = previous_static
        self._identity_public = raw_public(identity_key.public_key())
        self._static_public = raw_public(static_key.public_key())
        self._static_sig = identity_key.sign(static_signed_data(self._static_public))

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
    def previous_static_private(self) -> Optional[X25519PrivateKey]:
        """The static key before the last rotation, kept only to open mail sealed
        to it before contacts learned the new one (protocol section 12)."""
        return self._previous_static

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
        passphrase = check_passphrase(passphrase)
        directory = Path(directory)
        make_private_dir(directory)
        write_private_file(directory / STATIC_FILE, private_key_pem(self._static_key, passphrase))
        write_private_file(directory / IDENTITY_FILE, private_key_pem(self._identity_key, passphrase))

    def rotate_static(self, directory: StrPath, passphrase: bytes | None = None) -> Identity:
        """A new static key, certified by the same identity key, saved in ``directory``.

        Why: sealed mail has no forward secrecy, and whoever holds the static
        private key can read mail sealed to it and forge mail to us (protocol
        section 12). The next REGISTER publishes the new key (the relay
        replaces the binding, so every LOOKUP shows it); pins, being on the
        identity key, stay. The current key is kept as the previous one for
        mail already on its way; the one before it is dropped. Written
        previous first, so a crash leaves the old pair usable.
        """
        passphrase = check_passphrase(passphrase)
        directory = Path(directory)
        rotated = Identity(self._identity_key, X25519PrivateKey.generate(), self._static_key)
        write_private_file(directory / PREVIOUS_STATIC_FILE, private_key_pem(self._static_key, passphrase))
        write_private_file(directory / STATIC_FILE, private_key_pem(rotated._static_key, passphrase))
        return rotated

    @classmethod
    def load(cls, directory: StrPath, passphrase: bytes | None = None) -> Identity:
        """Read the key pair written by ``save``.

        Raises ``PassphraseRequired`` / ``WrongPassphrase`` / ``KeyStorageError``,
        each with a sentence for the user.
        """
        passphrase = check_passphrase(passphrase)
        directory = Path(directory)
        identity_key = load_private_key(directory / IDENTITY_FILE, passphrase, Ed25519PrivateKey)
        static_key = load_private_key(directory / STATIC_FILE, passphrase, X25519PrivateKey)
        assert isinstance(identity_key, Ed25519PrivateKey)
        assert isinstance(static_key, X25519PrivateKey)
        previous: Optional[X25519PrivateKey] = None
        if (directory / PREVIOUS_STATIC_FILE).exists():
            loaded = load_private_key(directory / PREVIOUS_STATIC_FILE, passphrase, X25519PrivateKey)
            assert isinstance(loaded, X25519PrivateKey)
            previous = loaded
        return cls(identity_key, static_key, previous)

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
