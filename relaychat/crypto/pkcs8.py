"""A minimal DER writer for passphrase-protected PKCS#8 files.

EncryptedPrivateKeyInfo (RFC 5958) with PBES2 (RFC 8018), scrypt (RFC 7914)
and AES-256-CBC. cryptography 50 cannot write this itself (see
``relaychat.crypto.keypair.Identity.save``), but reads it back with its own
``load_pem_private_key``, as do ``openssl pkey`` and other PKCS#8 readers;
so only the writing is hand-made, and the tests read every file back.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = ["encrypt_pkcs8_pem"]


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


def encrypt_pkcs8_pem(pkcs8_der: bytes, passphrase: bytes, *, n: int, r: int, p: int, salt_size: int) -> bytes:
    """``pkcs8_der`` as an ``ENCRYPTED PRIVATE KEY`` PEM under ``passphrase``;
    the scrypt parameters are recorded in the file, so reading needs none."""
    salt = os.urandom(salt_size)
    iv = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
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
                        _der_int(n),
                        _der_int(r),
                        _der_int(p),
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
