"""The admin console's keys: who may log in, and the server's own host key.

Both are read (or made) while the service is built, before twistd drops
privileges, so a missing or unsafe file stops start-up with a
:class:`~relaychat.config.ConfigError` instead of a console nobody can use.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.conch.ssh.keys import BadKeyError, Key
from twisted.logger import Logger

from relaychat.config import ConfigError

log = Logger(namespace="relaychat.admin")

HOST_KEY_NAME = "ssh_host_ed25519_key"


def openssh_fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:...`` form of a public key blob, as ``ssh-keygen -l`` prints it.

    Logs name an admin by this, so an operator can match a log line to a
    line of the authorized-keys file without the log holding the key.
    """
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def read_authorized_keys(path: Path | None) -> list[Key]:
    """The public keys in an OpenSSH ``authorized_keys`` file; refuse a file that gives none.

    A line that is not a plain public key (including one with OpenSSH
    options such as ``from="..."``, which we cannot honour) is skipped and
    its number logged: failing closed on it is safer than dropping the
    restriction it meant to add.
    """
    where = "manhole.authorized_keys"
    if path is None:
        raise ConfigError(f"{where} is required when manhole.enabled = true (an OpenSSH authorized_keys file)")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: a FIFO would block start-up
            raise ConfigError(f"{where} {str(path)!r} is not a regular file")
        with open(path, "rb") as f:
            opened = os.fstat(f.fileno())
            lines = f.read().splitlines()
        check_strict_modes(path, opened)
    except OSError as e:
        raise ConfigError(f"{where} {str(path)!r}: cannot read: {e.strerror}") from None
    found: list[Key] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            key = Key.fromString(line)
        except Exception:  # Key.fromString raises whatever its parsers trip on (struct.error, IndexError...)
            log.warn("{path}:{number}: not an OpenSSH public key line; ignored", path=str(path), number=number)
            continue
        if not key.isPublic():
            raise ConfigError(f"{where} {str(path)!r} line {number} holds a private key; give public keys only")
        found.append(key)
    if not found:
        raise ConfigError(
            f"{where} {str(path)!r} holds no usable public key; the admin console needs at least one "
            "(one OpenSSH public key per line, such as 'ssh-ed25519 AAAA... you@host')"
        )
    return found


def check_strict_modes(path: Path, opened: os.stat_result, uid: int | None = None) -> None:
    """Refuse ``path`` as OpenSSH's ``StrictModes`` refuses an authorized_keys file.

    The file (as opened: ``opened`` is its ``fstat``) must be a regular
    file, and it and every directory from it up to ``/`` (after resolving
    symbolic links) owned by root or by the user we run as, and not
    writable by group or others: anyone who can write any of them can
    replace the list of who may log in. The sticky bit does not help (one
    may not remove another's file in ``/tmp``, but may create the
    directory the path names, first). Unlike sshd we do not stop at a home
    directory: the console has none.
    """
    where = "manhole.authorized_keys"
    uid = os.geteuid() if uid is None else uid
    if not stat.S_ISREG(opened.st_mode):
        raise ConfigError(f"{where} {str(path)!r} is not a regular file")
    real = os.path.realpath(path)
    here = os.stat(real)
    if (here.st_dev, here.st_ino) != (opened.st_dev, opened.st_ino):
        raise ConfigError(f"{where} {str(path)!r} changed while it was read; try again")
    found = unsafe_component(real, uid)
    if found is not None:
        name, st = found
        kind = "file" if name == real else "directory"
        raise ConfigError(
            f"{where} {str(path)!r}: bad ownership or modes for {kind} {name!r} "
            f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): it and every directory above it "
            f"must be owned by root or uid {uid} and not writable by group or others (chmod go-w)"
        )


def unsafe_component(real: str, uid: int) -> Optional[tuple[str, os.stat_result]]:
    """The first of ``real`` (a resolved path) and its parents up to ``/`` that
    someone other than root or ``uid`` owns or could write, with its ``stat``."""
    for name in [real, *_parents(real)]:
        st = os.stat(name)
        if st.st_uid not in (0, uid) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return name, st
    return None


def _parents(path: str) -> list[str]:
    """Every directory above ``path``, nearest first, ending with ``/``."""
    found: list[str] = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return found
        found.append(parent)
        path = parent


def load_host_key(data_dir: str) -> Key:
    """The console's SSH host key: made once in the data directory (mode 0600), then reused.

    Reusing it keeps the key clients pinned in ``known_hosts`` valid across
    restarts. A key file readable by others is refused, as sshd does.
    """
    path = os.path.join(data_dir, HOST_KEY_NAME)
    if not os.path.exists(path):
        _write_new_key(path)
        log.info("relaychat: admin console host key created in {path}", path=path)
    try:
        mode = os.stat(path).st_mode
        key: Key = Key.fromFile(path)
    except (OSError, BadKeyError, ValueError) as e:
        raise ConfigError(f"admin console host key {path!r}: cannot load: {e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"admin console host key {path!r} is accessible by others; chmod 600 it")
    if key.isPublic():
        raise ConfigError(f"admin console host key {path!r} is a public key; a private key is needed")
    return key


def _write_new_key(path: str) -> None:
    """Write a fresh Ed25519 key in OpenSSH format, never readable by others, atomically.

    ``mkstemp`` creates the file with mode 0600, so there is no moment
    when the key is readable by others; the rename means a crash leaves
    either no key or a whole one.
    """
    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(prefix=".ssh_host_key.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(private)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as e:
        _remove_quietly(temporary)
        raise ConfigError(f"admin console host key {path!r}: cannot write: {e.strerror}") from None


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
