"""TLS for operators: a self-signed certificate for a new relay, the
fingerprint its clients pin, and loading a certificate for a listener.

Command line (see README.rst, "TLS and WebSocket")::

    python -m relaychat.certificates make-cert --host relay.example [--host ...] [--ip 192.0.2.7] --out DIR
    python -m relaychat.certificates fingerprint DIR/cert.pem

``make-cert`` writes ``cert.pem`` (mode 0644) and ``key.pem`` (mode 0600),
an ECDSA P-256 key and a self-signed certificate naming every ``--host``
and ``--ip`` in its subjectAltName, and prints the certificate's SHA-256
fingerprint: the operator publishes it, and clients that cannot check the
certificate against a CA pin it instead.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_DAYS = 825
MINIMUM_VERSIONS = ("1.2", "1.3")

_HEX64 = re.compile(r"[0-9a-f]{64}")


class CertificateError(ValueError):
    """A certificate, key or fingerprint cannot be used; the message says why."""


# -- fingerprints -------------------------------------------------------------


def certificate_sha256(certificate: x509.Certificate) -> bytes:
    """The SHA-256 digest of the certificate's DER encoding (what clients pin)."""
    return certificate.fingerprint(hashes.SHA256())


def format_fingerprint(digest: bytes) -> str:
    """``sha256:`` and 64 lower-case hex digits: the form relaychat prints and accepts."""
    return "sha256:" + digest.hex()


def openssl_style(digest: bytes) -> str:
    """The same digest as ``openssl x509 -fingerprint -sha256`` shows it."""
    return ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(text: str) -> bytes:
    """Read a SHA-256 fingerprint as an operator may have published it.

    Accepts ``sha256:<hex>`` (what ``make-cert`` prints), bare hex, and
    colon-separated hex as OpenSSL prints it (with or without its
    ``sha256 Fingerprint=`` prefix); case and spaces do not matter.
    """
    value = text.strip().lower().replace(" ", "")
    for prefix in ("sha256fingerprint=", "sha256:", "sha256="):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    value = value.replace(":", "")
    if not _HEX64.fullmatch(value):
        raise CertificateError(
            f"not a SHA-256 fingerprint: {text!r} (expected sha256: and 64 hex digits)"
        )
    return bytes.fromhex(value)


def certificates_from_pem(data: bytes, where: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file, leaf first; at least one."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertificateError(f"{where}: not a PEM certificate ({e})") from None
    return certificates


def read_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CertificateError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


# -- the listener side ------------------------------------------------------

_SIGNING_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey,
                 dsa.DSAPrivateKey)
"""The private keys a TLS server can sign with (those pyOpenSSL's PKey takes)."""


def server_options(certificate: Path, private_key: Path, minimum_tls: str = "1.2") -> CertificateOptions:
    """Twisted TLS server options for a certificate file (leaf first, then
    any intermediates) and an unencrypted PEM private key.

    Everything that can be wrong with the files is found here, at start-up,
    and raised as :class:`CertificateError` with a plain message.
    """
    if minimum_tls not in MINIMUM_VERSIONS:
        raise CertificateError(f"minimum_tls must be one of {', '.join(MINIMUM_VERSIONS)}, not {minimum_tls!r}")
    chain = certificates_from_pem(read_file(certificate, "certificate"), f"certificate {str(certificate)!r}")
    key_data = read_file(private_key, "private key")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise CertificateError(
            f"private key {str(private_key)!r} is encrypted; the relay needs it unencrypted (protect it with mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertificateError(f"private key {str(private_key)!r}: not a PEM private key ({e})") from None
    if not isinstance(key, _SIGNING_KEYS):  # a DH or post-quantum key signs no TLS handshake (pyOpenSSL refuses it)
        raise CertificateError(f"private key {str(private_key)!r}: {type(key).__name__} keys cannot serve TLS; "
                               "use an RSA, EC or Ed25519 key")
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise CertificateError(f"private key {str(private_key)!r} does not belong to certificate {str(certificate)!r}")
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=TLSVersion.TLSv1_3 if minimum_tls == "1.3" else TLSVersion.TLSv1_2,
    )
    try:
        options.getContext()  # let OpenSSL refuse the pair now, not at the first handshake
    except SSL.Error as e:
        raise CertificateError(f"certificate {str(certificate)!r} cannot be used: {e}") from None
    return options


# -- making a self-signed certificate -------------------------------------------


def make_self_signed(
    hosts: Sequence[str], ips: Sequence[str] = (), days: int = DEFAULT_DAYS,
    now: Optional[datetime.datetime] = None,
) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key and a self-signed certificate for ``hosts`` and
    ``ips``; returns ``(certificate_pem, key_pem)``."""
    if not hosts and not ips:
        raise CertificateError("give at least one --host or --ip")
    try:
        addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as e:
        raise CertificateError(str(e)) from None
    for host in hosts:
        if not host or any(c.isspace() for c in host) or host != host.strip("."):
            raise CertificateError(f"not a host name: {host!r}")
    if days < 1:
        raise CertificateError("--days must be at least 1")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else str(addresses[0]))])
    san = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(a) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def write_self_signed(
    directory: Path, hosts: Sequence[str], ips: Sequence[str] = (), days: int = DEFAULT_DAYS, force: bool = False,
) -> tuple[Path, Path, bytes]:
    """Write ``cert.pem`` and ``key.pem`` (0600) into ``directory``; return
    their paths and the certificate's fingerprint. Refuses to overwrite
    unless ``force``."""
    cert_pem, key_pem = make_self_signed(hosts, ips, days)
    directory = Path(directory)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not force:
        for path in (cert_path, key_path):
            if path.exists():
                raise CertificateError(f"{str(path)!r} exists; use --force to replace it")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    except OSError as e:
        raise CertificateError(f"cannot write into {str(directory)!r}: {e.strerror}") from None
    return cert_path, key_path, certificate_sha256(x509.load_pem_x509_certificate(cert_pem))


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` afresh with ``mode`` (never briefly more permissive)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask may have removed bits we want
        f.write(data)


# -- command line -------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relaychat.certificates", description="TLS certificates for a relaychat relay."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-cert", help="create a self-signed certificate and key")
    make.add_argument("--host", action="append", default=[], help="DNS name clients connect to (repeatable)")
    make.add_argument("--ip", action="append", default=[], help="IP address clients connect to (repeatable)")
    make.add_argument("--out", default=".", help="directory for cert.pem and key.pem (default: .)")
    make.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})")
    make.add_argument("--force", action="store_true", help="replace existing cert.pem and key.pem")
    show = commands.add_parser("fingerprint", help="print the SHA-256 fingerprint of a PEM certificate")
    show.add_argument("certificate")
    args = parser.parse_args(argv)
    try:
        if args.command == "make-cert":
            cert_path, key_path, digest = write_self_signed(Path(args.out), args.host, args.ip, args.days, args.force)
            print(f"wrote {cert_path} and {key_path} (key mode 0600)")
            print("certificate SHA-256 fingerprint; publish it, clients pin it:")
        else:
            path = Path(args.certificate)
            digest = certificate_sha256(certificates_from_pem(read_file(path, "certificate"), str(path))[0])
        print(f"  {format_fingerprint(digest)}")
        print(f"  (openssl x509 -noout -fingerprint -sha256 shows it as {openssl_style(digest)})")
    except CertificateError as e:
        print(f"relaychat.certificates: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
