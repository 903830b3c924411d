"""Connecting to a relay over TLS, verified one of two ways, never neither.

* **Hostname** (a relay with a certificate from a CA, or a self-signed one
  you have a copy of): :func:`client_tls_options` is Twisted's
  ``optionsForClientTLS``, which checks the certificate chain against the
  trust roots (the platform's, or the PEM file given) and the hostname
  with ``service_identity``.
* **Pinned fingerprint** (a self-signed relay whose operator published the
  SHA-256 fingerprint ``python -m relaychat.certificates make-cert`` printed):
  :class:`PinnedCertificateOptions` accepts exactly the certificate with
  that fingerprint, compared in constant time, and nothing else; CA trust
  and names are not consulted.

A failure aborts the handshake; the protocol's ``connectionLost`` receives
:class:`FingerprintMismatch` or ``service_identity.VerificationError``, and
:func:`explain` turns either (or an OpenSSL verification error) into a
sentence for people. There is no fallback to an unverified connection.

:func:`client_endpoint` reads the spec strings the command line accepts::

    tcp:HOST:PORT                            plain TCP
    tls:HOST:PORT                            TLS; hostname checked, platform CAs
    tls:HOST:PORT:trust=PATH                 TLS; hostname checked against the CA
                                             or self-signed certificate(s) in PATH
    tls:HOST:PORT:fingerprint=sha256:HEX     TLS; only the pinned certificate

``HOST`` may be a name, an IPv4 address or ``[IPv6]``. Any other string is
handed to Twisted's ``clientFromString`` unchanged (so ``tcp:host=x:port=y``
and Twisted's own ``tls:...:trustRoots=DIR`` keep working).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Optional, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS, trustRootFromCertificates
from twisted.python.failure import Failure
from zope.interface import implementer

from relaychat.certificates import CertificateError, certificates_from_pem, format_fingerprint, parse_fingerprint, read_file
from relaychat.wire.codec import EncodingError, decimal

TrustRoots = Union[None, str, Path, Any]  # or an IOpenSSLTrustRoot


class FingerprintMismatch(Exception):
    """The relay's certificate is not the pinned one."""

    def __init__(self, host: str, expected: bytes, actual: Optional[bytes]) -> None:
        super().__init__(host, expected, actual)
        self.host = host
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        shown = format_fingerprint(self.actual) if self.actual is not None else "no certificate"
        return (
            f"the relay at {self.host} presented a certificate with fingerprint {shown}, "
            f"but {format_fingerprint(self.expected)} is pinned; not connecting. Either this is not "
            f"the relay you meant (or someone is in between), or its operator replaced the certificate: "
            f"check the fingerprint the operator publishes."
        )


# -- hostname verification (CA or a trusted self-signed certificate) -----------


def load_trust_roots(path: Union[str, Path]) -> Any:
    """Trust the certificates in a PEM file, or in every ``*.pem``/``*.crt``
    file of a directory."""
    path = Path(path).expanduser()
    files = sorted(p for p in path.iterdir() if p.suffix in (".pem", ".crt")) if path.is_dir() else [path]
    certificates = []
    for file in files:
        for certificate in certificates_from_pem(read_file(file, "trust roots"), f"trust roots {str(file)!r}"):
            certificates.append(Certificate.load(certificate.public_bytes(Encoding.DER)))
    if not certificates:
        raise CertificateError(f"no certificates in {str(path)!r}")
    return trustRootFromCertificates(certificates)


def client_tls_options(hostname: str, trust_roots: TrustRoots = None) -> IOpenSSLClientConnectionCreator:
    """TLS options that verify the relay's certificate chain and that it is
    valid for ``hostname`` (a DNS name or an IP address), with
    ``service_identity``. ``trust_roots``: ``None`` for the platform's CAs,
    a PEM file or directory, or a Twisted trust root."""
    root = load_trust_roots(trust_roots) if isinstance(trust_roots, (str, Path)) else trust_roots
    return optionsForClientTLS(hostname, trustRoot=root)


# -- pinned fingerprint --------------------------------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class PinnedCertificateOptions:
    """Accept only the server certificate whose SHA-256 fingerprint is
    ``fingerprint`` (bytes, or text as :func:`relaychat.certificates.parse_fingerprint`
    reads it). ``hostname`` is sent as SNI when it is a DNS name and is used
    in messages; it is not verified, the pin is."""

    def __init__(self, fingerprint: Union[bytes, str], hostname: str = "the relay") -> None:
        self.expected = parse_fingerprint(fingerprint) if isinstance(fingerprint, str) else bytes(fingerprint)
        if len(self.expected) != 32:
            raise CertificateError("a SHA-256 fingerprint is 32 bytes")
        self.hostname = hostname
        self._server_name: Optional[bytes] = None
        if hostname and not (isIPAddress(hostname) or isIPv6Address(hostname)):
            try:
                self._server_name = hostname.encode("idna")
            except UnicodeError:
                self._server_name = None
        # No verification of its own (we install ours per connection); TLS 1.2+.
        self._options = CertificateOptions()

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_app_data(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        connection.set_info_callback(self._info)
        return connection

    def _matches(self, certificate: Any) -> tuple[bool, Optional[bytes]]:
        if certificate is None:
            return False, None
        actual = certificate.to_cryptography().fingerprint(hashes.SHA256())
        return hmac.compare_digest(actual, self.expected), actual

    def _fail(self, connection: SSL.Connection, actual: Optional[bytes]) -> None:
        tls_protocol = connection.get_app_data()
        if tls_protocol is not None:
            tls_protocol.failVerification(Failure(FingerprintMismatch(self.hostname, self.expected, actual)))

    def _verify(self, connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        """OpenSSL's verify callback. The chain above the leaf does not
        matter (the pin names the leaf); the leaf must match the pin."""
        try:
            if depth != 0:
                return True
            matches, actual = self._matches(certificate)
            if not matches:
                self._fail(connection, actual)
            return matches
        except BaseException:  # an exception must never escape into OpenSSL
            self._fail(connection, None)
            return False

    def _info(self, connection: SSL.Connection, where: int, ret: int) -> None:
        """Check again when the handshake is done, so a pin cannot be
        skipped by any path through certificate verification."""
        if where & SSL.SSL_CB_HANDSHAKE_DONE:
            try:
                matches, actual = self._matches(connection.get_peer_certificate())
            except BaseException:
                matches, actual = False, None
            if not matches:
                self._fail(connection, actual)


def pinned_tls_options(fingerprint: Union[bytes, str], hostname: str = "the relay") -> PinnedCertificateOptions:
    return PinnedCertificateOptions(fingerprint, hostname)


# -- spec strings -------------------------------------------------------------------


def client_endpoint(reactor: Any, spec: str, timeout: float = 30) -> IStreamClientEndpoint:
    """An endpoint for ``spec`` (see the module documentation)."""
    parsed = _parse_spec(spec)
    if parsed is None:
        endpoint: IStreamClientEndpoint = clientFromString(reactor, spec)
        return endpoint
    scheme, host, port, options = parsed
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if scheme == "tcp":
        return endpoint
    if "fingerprint" in options and "trust" in options:
        raise ValueError(f"{spec!r}: give fingerprint= or trust=, not both")
    creator: IOpenSSLClientConnectionCreator
    if "fingerprint" in options:
        creator = PinnedCertificateOptions(options["fingerprint"], host)
    else:
        creator = client_tls_options(host, options.get("trust"))
    return wrapClientTLS(creator, endpoint)


_OPTIONS = {"tcp": (), "tls": ("fingerprint", "trust")}


def _parse_spec(spec: str) -> Optional[tuple[str, str, int, dict[str, str]]]:
    """``(scheme, host, port, options)`` for our forms, ``None`` for anything else."""
    scheme, colon, rest = spec.partition(":")
    if not colon or scheme not in _OPTIONS:
        return None
    if rest.startswith("["):  # [IPv6]:PORT
        close = rest.find("]")
        if close < 0 or rest[close + 1:close + 2] != ":":
            return None
        host, rest = rest[1:close], rest[close + 2:]
    else:
        host, colon, rest = rest.partition(":")
        if not colon:
            return None
    port_text, _, rest = rest.partition(":")
    try:
        port = decimal(port_text, maximum=65535)  # "²".isdigit() is true, and int() then raises
    except EncodingError:
        return None
    if not host or "=" in host or not port:
        return None
    options: dict[str, str] = {}
    last: Optional[str] = None
    for segment in rest.split(":") if rest else []:
        key, equals, value = segment.partition("=")
        if equals and key in _OPTIONS[scheme]:
            if key in options:
                raise ValueError(f"{spec!r}: {key}= given twice")
            options[key], last = value, key
        elif equals or last is None:
            return None  # someone else's keyword (Twisted's own tls: options, timeout=...)
        else:
            options[last] += ":" + segment  # a value with colons: AB:CD:..., sha256:..., C:\path
    if scheme == "tcp" and options:
        return None
    return scheme, host, port, options


# -- words for people -------------------------------------------------------------------


def is_verification_failure(reason: Union[BaseException, Failure, None]) -> bool:
    """The relay's certificate was refused (a pin, a name, an untrusted signer):
    not something to retry quietly, since it may be someone else answering."""
    error = reason.value if isinstance(reason, Failure) else reason
    return isinstance(error, (FingerprintMismatch, VerificationError)) or (
        isinstance(error, SSL.Error) and "certificate verify failed" in str(error))


def explain(reason: Union[BaseException, Failure]) -> str:
    """A sentence for a TLS connection failure."""
    error = reason.value if isinstance(reason, Failure) else reason
    if isinstance(error, FingerprintMismatch):
        return str(error)
    if isinstance(error, VerificationError):
        names = ", ".join(
            str(getattr(getattr(e, "mismatched_id", None), "hostname", None)
                or getattr(getattr(e, "mismatched_id", None), "ip", None) or e)
            for e in error.errors
        )
        return (
            f"the relay's certificate is not valid for {names}; not connecting "
            f"(connect by the name in its certificate, or check you reached the right relay)"
        )
    if isinstance(error, SSL.Error) and "certificate verify failed" in str(error):
        return (
            "the relay's certificate is not signed by an authority this computer trusts; not connecting. "
            "For a self-signed relay, pin the fingerprint its operator publishes "
            "(tls:HOST:PORT:fingerprint=sha256:...) or trust its certificate file (tls:HOST:PORT:trust=PATH)"
        )
    return str(error) or type(error).__name__
