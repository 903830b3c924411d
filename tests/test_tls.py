"""TLS: the operator's certificate helper, fingerprints, and the client's
two kinds of verification (hostname with service-identity, pinned
fingerprint) against a real daemon."""

from __future__ import annotations

import io
import ipaddress
import os
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Optional

from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, reactor
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relaychat.client.endpoints import (
    FingerprintMismatch, PinnedCertificateOptions, _parse_spec, client_endpoint, explain, is_verification_failure,
)
from relaychat.certificates import (
    CertificateError, certificate_sha256, format_fingerprint, main, make_self_signed, openssl_style, parse_fingerprint,
    write_self_signed,
)
from tests.daemon import Daemon
from tests.listener_support import listening, toml_listener, write_config

LOOPBACK = "tcp:0:interface=127.0.0.1"


class Fingerprints(SynchronousTestCase):
    digest = bytes(range(32))

    def test_every_published_form_is_read(self) -> None:
        hex_ = self.digest.hex()
        for text in [
            format_fingerprint(self.digest), hex_, hex_.upper(), "SHA256:" + hex_,
            openssl_style(self.digest), "sha256 Fingerprint=" + openssl_style(self.digest),
            " " + openssl_style(self.digest).lower() + "\n",
        ]:
            self.assertEqual(parse_fingerprint(text), self.digest, text)

    def test_anything_else_is_refused(self) -> None:
        for text in ["", "sha256:", self.digest.hex()[:-1], self.digest.hex() + "00", "md5:" + self.digest.hex()[:32],
                     "sha1:" + "ab" * 20, "zz" * 32]:
            with self.assertRaises(CertificateError):
                parse_fingerprint(text)


class MakeCert(SynchronousTestCase):
    def run_main(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = main(list(args))
        return status, out.getvalue(), err.getvalue()

    def test_writes_a_key_only_its_owner_reads_and_prints_the_fingerprint(self) -> None:
        directory = Path(self.mktemp())
        status, out, err = self.run_main("make-cert", "--host", "relay.example", "--host", "chat.example",
                                         "--ip", "192.0.2.7", "--ip", "2001:db8::1", "--out", str(directory))
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(stat.S_IMODE(os.stat(directory / "key.pem").st_mode), 0o600)
        certificate = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["relay.example", "chat.example"])
        self.assertEqual(san.get_values_for_type(x509.IPAddress),
                         [ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::1")])
        self.assertFalse(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertIn(format_fingerprint(certificate_sha256(certificate)), out)
        self.assertIn(openssl_style(certificate_sha256(certificate)), out)
        status, shown, _ = self.run_main("fingerprint", str(directory / "cert.pem"))
        self.assertEqual(status, 0)
        self.assertIn(format_fingerprint(certificate_sha256(certificate)), shown)

    def test_never_overwrites_without_force(self) -> None:
        directory = Path(self.mktemp())
        self.assertEqual(self.run_main("make-cert", "--host", "a.example", "--out", str(directory))[0], 0)
        before = (directory / "key.pem").read_bytes()
        status, _, err = self.run_main("make-cert", "--host", "a.example", "--out", str(directory))
        self.assertEqual(status, 1)
        self.assertIn("exists; use --force", err)
        self.assertEqual((directory / "key.pem").read_bytes(), before)
        self.assertEqual(self.run_main("make-cert", "--host", "a.example", "--out", str(directory), "--force")[0], 0)
        self.assertNotEqual((directory / "key.pem").read_bytes(), before)
        self.assertEqual(stat.S_IMODE(os.stat(directory / "key.pem").st_mode), 0o600)

    def test_bad_requests(self) -> None:
        for args, words in [
            ((), "give at least one --host or --ip"),
            (("--ip", "300.1.1.1"), "300.1.1.1"),
            (("--host", "two words"), "not a host name"),
            (("--host", "a.example", "--days", "0"), "--days must be at least 1"),
        ]:
            status, _, err = self.run_main("make-cert", *args, "--out", self.mktemp())
            self.assertEqual(status, 1)
            self.assertIn(words, err)
        status, _, err = self.run_main("fingerprint", self.mktemp())
        self.assertEqual(status, 1)
        self.assertIn("cannot read certificate", err)

    def test_the_certificate_is_valid_now_and_for_the_days_asked(self) -> None:
        cert_pem, _ = make_self_signed(["a.example"], days=30)
        certificate = x509.load_pem_x509_certificate(cert_pem)
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertEqual(round(lifetime.total_seconds() / 86400), 30)


class Specs(SynchronousTestCase):
    def test_our_forms(self) -> None:
        hex_ = "ab" * 32
        self.assertEqual(_parse_spec("tcp:relay.example:7733"), ("tcp", "relay.example", 7733, {}))
        self.assertEqual(_parse_spec("tls:[::1]:7734"), ("tls", "::1", 7734, {}))
        self.assertEqual(_parse_spec(f"tls:h:1:fingerprint=sha256:{hex_}"), ("tls", "h", 1, {"fingerprint": f"sha256:{hex_}"}))
        self.assertEqual(_parse_spec("tls:h:1:fingerprint=AB:CD:EF"), ("tls", "h", 1, {"fingerprint": "AB:CD:EF"}))
        self.assertEqual(_parse_spec("tls:h:1:trust=/etc/relay:1/ca.pem"), ("tls", "h", 1, {"trust": "/etc/relay:1/ca.pem"}))

    def test_other_strings_are_left_to_twisted(self) -> None:
        for spec in ["tcp:host=relay:port=7733", "tls:relay:7734:trustRoots=/etc/ssl", "tcp:relay:7733:timeout=5",
                     "unix:/run/relay.sock", "tls:relay:https", "tls:relay"]:
            self.assertIsNone(_parse_spec(spec), spec)
        self.assertIsInstance(client_endpoint(reactor, "tcp:host=relay:port=7733"), TCP4ClientEndpoint)
        self.assertIsInstance(client_endpoint(reactor, "tcp:relay:7733"), HostnameEndpoint)

    def test_contradictions_and_nonsense_are_errors_not_downgrades(self) -> None:
        with self.assertRaises(ValueError):
            client_endpoint(reactor, f"tls:h:1:fingerprint={'ab' * 32}:trust=/x.pem")
        with self.assertRaises(CertificateError):
            client_endpoint(reactor, "tls:h:1:fingerprint=sha256:1234")
        with self.assertRaises(CertificateError):
            client_endpoint(reactor, f"tls:h:1:trust={self.mktemp()}")
        with self.assertRaises(ValueError):
            client_endpoint(reactor, "tls:h:1:trust=/a.pem:trust=/b.pem")

    def test_pinned_options_refuse_a_bad_pin_up_front(self) -> None:
        with self.assertRaises(CertificateError):
            PinnedCertificateOptions(b"\x00" * 20)

    def test_the_mismatch_message_names_both_fingerprints(self) -> None:
        message = str(FingerprintMismatch("relay.example", b"\x01" * 32, b"\x02" * 32))
        self.assertIn("relay.example", message)
        self.assertIn("sha256:" + "02" * 32, message)
        self.assertIn("but sha256:" + "01" * 32 + " is pinned", message)


# == against a real daemon ==============================================================


class LineClient(LineReceiver):
    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: defer.DeferredQueue = defer.DeferredQueue()
        self.lost: defer.Deferred = defer.Deferred()
        self.reason: Optional[Failure] = None

    def connectionMade(self) -> None:
        self.sendLine(b"HELLO 1")  # sent only once the handshake has succeeded

    def lineReceived(self, line: bytes) -> None:
        self.lines.put(line.decode("utf-8"))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


class TLSClientAgainstDaemon(TestCase):
    """The relaychat client's TLS endpoints against ``twistd -n relaychat``
    with a self-signed certificate made for ``localhost`` only."""

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.cert, _, self.fingerprint = write_self_signed(self.home / "tls", ["localhost"])
        config = write_config(
            self.home / "relaychat.toml", self.home / "data",
            toml_listener("tls", LOOPBACK, certificate="tls/cert.pem", private_key="tls/key.pem"),
        )
        self.daemon = Daemon("--config", str(config), cwd=str(self.home))
        self.addCleanup(self.daemon.stop)
        self.daemon.start(listeners=1)
        ((kind, self.port),) = listening(self.daemon.log())
        self.assertEqual(kind, "tls")

    @defer.inlineCallbacks
    def talk(self, spec: str) -> Any:
        """Connect with ``spec``; return the first line, or the reason the connection ended."""
        protocol = yield client_endpoint(reactor, spec, timeout=10).connect(Factory.forProtocol(LineClient))
        first = protocol.lines.get()
        first.addTimeout(15, reactor)
        ended = defer.DeferredList([first, protocol.lost], fireOnOneCallback=True, consumeErrors=True)
        yield ended
        if first.called and not isinstance(first.result, Failure):
            line = first.result
            protocol.transport.loseConnection()
            yield protocol.lost.addTimeout(15, reactor)
            return line
        first.cancel()
        first.addErrback(lambda _: None)
        return protocol.reason.value

    @defer.inlineCallbacks
    def test_hostname_verified_against_the_self_signed_certificate(self) -> None:
        line = yield self.talk(f"tls:localhost:{self.port}:trust={self.cert}")
        self.assertIsInstance(line, str, line)
        self.assertTrue(line.startswith("OK HELLO 1 "), line)

    @defer.inlineCallbacks
    def test_a_wrong_name_fails_verification(self) -> None:
        error = yield self.talk(f"tls:127.0.0.1:{self.port}:trust={self.cert}")
        self.assertIsInstance(error, VerificationError)
        self.assertIn("not valid for 127.0.0.1", explain(error))
        self.assertTrue(is_verification_failure(error))

    @defer.inlineCallbacks
    def test_platform_trust_does_not_accept_a_self_signed_relay(self) -> None:
        error = yield self.talk(f"tls:localhost:{self.port}")
        self.assertIsInstance(error, SSL.Error)
        self.assertIn("not signed by an authority this computer trusts", explain(error))
        self.assertTrue(is_verification_failure(error))

    @defer.inlineCallbacks
    def test_pinned_fingerprint(self) -> None:
        line = yield self.talk(f"tls:127.0.0.1:{self.port}:fingerprint={format_fingerprint(self.fingerprint)}")
        self.assertTrue(line.startswith("OK HELLO 1 "), line)
        line = yield self.talk(f"tls:127.0.0.1:{self.port}:fingerprint={openssl_style(self.fingerprint)}")
        self.assertTrue(line.startswith("OK HELLO 1 "), line)

    @defer.inlineCallbacks
    def test_a_wrong_fingerprint_fails_naming_both(self) -> None:
        wrong = bytes(32)
        error = yield self.talk(f"tls:localhost:{self.port}:fingerprint={format_fingerprint(wrong)}")
        self.assertIsInstance(error, FingerprintMismatch)
        self.assertEqual((error.expected, error.actual), (wrong, self.fingerprint))
        self.assertIn(format_fingerprint(self.fingerprint), explain(error))
        self.assertIn(f"but {format_fingerprint(wrong)} is pinned; not connecting", explain(error))
        self.assertTrue(is_verification_failure(error))
