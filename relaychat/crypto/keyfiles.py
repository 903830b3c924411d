"""Where a client keeps its secrets on disk: private directories and files, key files, passphrases.

Files are written atomically and mode 0600 from the start; key files are
PKCS#8 PEM, in the clear or passphrase-protected (``relaychat.crypto.pkcs8``).
The relay never imports this module.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from relaychat.crypto.identity import IdentityError
from relaychat.crypto.pkcs8 import encrypt_pkcs8_pem

StrPath = Union[str, "os.PathLike[str]"]


__all__ = [
    "IDENTITY_FILE",
    "KeyStorageError",
    "PassphraseRequired",
    "STATIC_FILE",
    "StrPath",
    "WrongPassphrase",
    "append_private_file",
    "check_passphrase",
    "default_config_dir",
    "load_private_key",
    "make_private_dir",
    "private_key_pem",
    "write_private_file",
]

IDENTITY_FILE = "identity.pem"
STATIC_FILE = "static.pem"
PREVIOUS_STATIC_FILE = "static.previous.pem"  # kept after a rotation, to open mail sealed to it

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


class KeyStorageError(IdentityError):
    """The key files are missing, unreadable, damaged or inconsistent."""


class WrongPassphrase(KeyStorageError):
    """The passphrase does not decrypt the key files."""


class PassphraseRequired(WrongPassphrase):
    """The key files are encrypted and no passphrase was given."""


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


def append_private_file(path: StrPath, data: bytes) -> None:
    """Append whole lines (``data`` ends with LF) to ``path``, synced; a new file
    is made with mode 0600. O(len(data)): the profile's growing files are
    appended to, and rewritten (``write_private_file``) only to compact them.

    If a crash cut the file's last line short, an LF ends it first, so the
    new line stays a line of its own: the cut one reads as damaged, which
    the readers treat as such, and the new one is intact. (A crash during
    this append can itself leave only such a cut last line.)
    """
    path = Path(path)
    make_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


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


def private_key_pem(key: Ed25519PrivateKey | X25519PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM of ``key``: in the clear without a passphrase, else encrypted (SCRYPT_*)."""
    encoding = serialization.Encoding.PEM if passphrase is None else serialization.Encoding.DER
    data = key.private_bytes(
        encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if passphrase is None:
        return data
    return encrypt_pkcs8_pem(data, passphrase, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt_size=SCRYPT_SALT_SIZE)


def check_passphrase(passphrase: bytes | None) -> bytes | None:
    """``passphrase`` as bytes, or None; TypeError/ValueError for text or an empty one."""
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


def load_private_key(path: Path, passphrase: bytes | None, kind: type) -> object:
    """The private key of type ``kind`` in the PEM file ``path``; KeyStorageError (or
    PassphraseRequired / WrongPassphrase) with a sentence for the user otherwise."""
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
