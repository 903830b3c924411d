"""Tests for relaychat.crypto.identity (protocol sections 5 and 10), and the client's
key pair and key files (relaychat.crypto.keypair, keyfiles, pkcs8)."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto import identity, keyfiles, keypair, pkcs8
from relaychat.crypto.identity import BindingError, KeyFormatError
from relaychat.crypto.keyfiles import KeyStorageError, PassphraseRequired, WrongPassphrase
from relaychat.crypto.keypair import Identity

SERVER_ID = bytes(range(32))
CHALLENGE = bytes(range(100, 132))

# Small-order Edwards points: neutral element (y=1), order 2 (y=-1), order 4
# (y=0), and an order-8 point.
ED_NEUTRAL = bytes([1]) + bytes(31)
ED_ORDER2 = (2**255 - 19 - 1).to_bytes(32, "little")
ED_ORDER4 = bytes(32)
ED_ORDER8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


_IDENTITIES: list[Identity] = []


def _identity(n: int = 0) -> Identity:
    while len(_IDENTITIES) <= n:
        _IDENTITIES.append(Identity.generate())
    return _IDENTITIES[n]


class IdentityKeysTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        me = _identity()
        self.assertEqual(len(me.identity_public), 32)
        self.assertEqual(len(me.static_public), 32)
        self.assertEqual(len(me.static_sig), 64)
        self.assertIsInstance(me.static_private, X25519PrivateKey)
        self.assertEqual(
            me.static_private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            me.static_public,
        )

    def test_generate_is_random(self) -> None:
        a, b = Identity.generate(), Identity.generate()
        self.assertNotEqual(a.identity_public, b.identity_public)
        self.assertNotEqual(a.static_public, b.static_public)

    def test_static_sig_covers_context_and_key(self) -> None:
        """static_sig is Ed25519 over the exact bytes of section 5."""
        me = _identity()
        key = Ed25519PublicKey.from_public_bytes(me.identity_public)
        key.verify(me.static_sig, b"relaychat static key v1\x00" + me.static_public)
        self.assertTrue(
            identity.verify_static_sig(me.identity_public, me.static_public, me.static_sig)
        )

    def test_static_sig_rejects_other_keys(self) -> None:
        me, other = _identity(0), _identity(1)
        verify = identity.verify_static_sig
        self.assertFalse(verify(other.identity_public, me.static_public, me.static_sig))
        self.assertFalse(verify(me.identity_public, other.static_public, me.static_sig))
        self.assertFalse(verify(me.identity_public, me.static_public, _flip(me.static_sig, 5)))

    def test_static_sig_deterministic(self) -> None:
        """Rebuilding from the same private keys gives the same certificate."""
        ik, sk = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
        self.assertEqual(Identity(ik, sk).static_sig, Identity(ik, sk).static_sig)

    def test_constructor_types(self) -> None:
        ik, sk = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
        self.assertRaises(TypeError, Identity, sk, ik)

    def test_repr_hides_private_material(self) -> None:
        me = _identity()
        private = me.static_private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.assertNotIn(private.hex()[:16], repr(me))
        self.assertIn(me.identity_public.hex()[:16], repr(me))


class KeyValidationTests(SynchronousTestCase):
    def test_wrong_lengths_are_key_errors(self) -> None:
        me = _identity()
        verify = identity.verify_static_sig
        self.assertRaises(KeyFormatError, verify, me.identity_public[:31], me.static_public, me.static_sig)
        self.assertRaises(KeyFormatError, verify, me.identity_public, me.static_public + b"\0", me.static_sig)
        self.assertRaises(KeyFormatError, verify, me.identity_public, me.static_public, me.static_sig[:63])
        self.assertRaises(KeyFormatError, verify, "not bytes", me.static_public, me.static_sig)

    def test_invalid_identity_point(self) -> None:
        # y = 2 gives x^2 = 3 / (4d + 1), which is not a square mod p.
        not_a_point = (2).to_bytes(32, "little")
        self.assertIsNone(identity._ed25519_decode(not_a_point))
        with self.assertRaises(KeyFormatError) as cm:
            identity.load_identity_public(not_a_point)
        self.assertIn("not a valid", str(cm.exception))

    def test_non_canonical_identity_encoding(self) -> None:
        # y = p + 1 is a second spelling of y = 1; RFC 8032 says reject.
        self.assertRaises(
            KeyFormatError, identity.load_identity_public, (2**255 - 19 + 1).to_bytes(32, "little")
        )

    def test_small_order_identity_keys_rejected(self) -> None:
        for raw in (ED_NEUTRAL, ED_ORDER2, ED_ORDER4, ED_ORDER8):
            with self.assertRaises(KeyFormatError, msg=raw.hex()) as cm:
                identity.load_identity_public(raw)
            self.assertIn("small-order", str(cm.exception))

    def test_small_order_identity_cannot_certify(self) -> None:
        """R = neutral, s = 0 'verifies' under the neutral key in OpenSSL; we refuse the key."""
        forged = ED_NEUTRAL + bytes(32)
        self.assertRaises(
            KeyFormatError, identity.verify_static_sig, ED_NEUTRAL, _identity().static_public, forged
        )

    def test_genuine_keys_accepted(self) -> None:
        for _ in range(20):
            me = Identity.generate()
            self.assertIsInstance(identity.load_identity_public(me.identity_public), Ed25519PublicKey)
            self.assertIsNotNone(identity._ed25519_decode(me.identity_public))
            self.assertEqual(
                identity.load_static_public(me.static_public).public_bytes(
                    serialization.Encoding.Raw, serialization.PublicFormat.Raw
                ),
                me.static_public,
            )

    def test_small_order_static_rejected(self) -> None:
        for raw in (bytes(32), (1).to_bytes(32, "little")):
            self.assertRaises(KeyFormatError, identity.load_static_public, raw)

    def test_non_canonical_static_rejected(self) -> None:
        me = _identity()
        high_bit = me.static_public[:31] + bytes([me.static_public[31] | 0x80])
        self.assertRaises(KeyFormatError, identity.load_static_public, high_bit)
        self.assertRaises(
            KeyFormatError, identity.load_static_public, (2**255 - 19 + 3).to_bytes(32, "little")
        )


class RegistrationTests(SynchronousTestCase):
    def fields(self, me: Identity) -> dict[str, object]:
        return dict(
            server_id=SERVER_ID,
            challenge=CHALLENGE,
            identity_pub=me.identity_public,
            static_pub=me.static_public,
            static_sig=me.static_sig,
            canonical_nick="alice",
        )

    def test_message_layout(self) -> None:
        me = _identity()
        m = identity.registration_message(**self.fields(me))  # type: ignore[arg-type]
        expected = (
            b"relaychat register v1\x00"
            + SERVER_ID
            + CHALLENGE
            + me.identity_public
            + me.static_public
            + me.static_sig
            + b"alice"
        )
        self.assertEqual(m, expected)
        self.assertEqual(len(m), 22 + 32 + 32 + 32 + 32 + 64 + 5)

    def test_sign_and_verify(self) -> None:
        me = _identity()
        sig = me.sign_registration(SERVER_ID, CHALLENGE, "alice")
        self.assertEqual(len(sig), 64)
        self.assertTrue(identity.verify_registration(**self.fields(me), signature=sig))  # type: ignore[arg-type]

    def test_every_field_is_bound(self) -> None:
        """Changing any single field of M makes the PROVE signature fail."""
        me, other = _identity(0), _identity(1)
        sig = me.sign_registration(SERVER_ID, CHALLENGE, "alice")
        changes = {
            "server_id": _flip(SERVER_ID, 31),
            "challenge": _flip(CHALLENGE),
            # Another genuine static key certified by the same identity.
            "static_pub": Identity(me._identity_key, other.static_private).static_public,
            "static_sig": Identity(me._identity_key, other.static_private).static_sig,
            "canonical_nick": "alicf",
        }
        for name, value in changes.items():
            fields = self.fields(me)
            fields[name] = value
            self.assertFalse(
                identity.verify_registration(**fields, signature=sig),  # type: ignore[arg-type]
                f"changing {name} was not detected",
            )
        # A different identity key: the signature is not by that key.
        fields = self.fields(me)
        fields["identity_pub"] = other.identity_public
        self.assertFalse(identity.verify_registration(**fields, signature=sig))  # type: ignore[arg-type]
        # A longer nickname with the same prefix.
        fields = self.fields(me)
        fields["canonical_nick"] = "alice2"
        self.assertFalse(identity.verify_registration(**fields, signature=sig))  # type: ignore[arg-type]
        # And the signature itself.
        self.assertFalse(
            identity.verify_registration(**self.fields(me), signature=_flip(sig, 40))  # type: ignore[arg-type]
        )

    def test_nick_must_be_canonical(self) -> None:
        me = _identity()
        self.assertRaises(ValueError, me.sign_registration, SERVER_ID, CHALLENGE, "Alice")
        self.assertRaises(ValueError, me.sign_registration, SERVER_ID, CHALLENGE, "")

    def test_field_sizes_checked(self) -> None:
        me = _identity()
        self.assertRaises(ValueError, me.sign_registration, SERVER_ID[:31], CHALLENGE, "alice")
        self.assertRaises(ValueError, me.sign_registration, SERVER_ID, CHALLENGE + b"x", "alice")
        sig = me.sign_registration(SERVER_ID, CHALLENGE, "alice")
        self.assertRaises(
            KeyFormatError,
            identity.verify_registration,
            **self.fields(me),
            signature=sig[:-1],
        )


class ProofOfWorkTests(SynchronousTestCase):
    def test_solve_and_check(self) -> None:
        for bits in (1, 8, 12):
            nonce = identity.solve_pow(CHALLENGE, bits)
            self.assertTrue(1 <= len(nonce) <= 32)
            self.assertTrue(identity.pow_ok(CHALLENGE, nonce, bits))
            digest = hashlib.sha256(b"relaychat pow v1\x00" + CHALLENGE + nonce).digest()
            self.assertEqual(int.from_bytes(digest, "big") >> (256 - bits), 0)

    def test_sixteen_bits_is_fast(self) -> None:
        challenge = os.urandom(32)
        start = time.perf_counter()
        nonce = identity.solve_pow(challenge, 16)
        elapsed = time.perf_counter() - start
        self.assertTrue(identity.pow_ok(challenge, nonce, 16))
        self.assertLess(elapsed, 1.0)

    def test_insufficient_work(self) -> None:
        # Find a nonce with exactly 0 leading zero bits for the first byte.
        nonce = next(
            n
            for n in (bytes([i]) for i in range(256))
            if hashlib.sha256(b"relaychat pow v1\x00" + CHALLENGE + n).digest()[0] & 0x80
        )
        self.assertFalse(identity.pow_ok(CHALLENGE, nonce, 1))
        nonce8 = identity.solve_pow(CHALLENGE, 8)
        digest = hashlib.sha256(b"relaychat pow v1\x00" + CHALLENGE + nonce8).digest()
        exact = 256 - int.from_bytes(digest, "big").bit_length()
        self.assertFalse(identity.pow_ok(CHALLENGE, nonce8, exact + 1))

    def test_nonce_bound_to_challenge(self) -> None:
        nonce = identity.solve_pow(CHALLENGE, 12)
        others = [_flip(CHALLENGE, i) for i in range(8)]
        self.assertFalse(all(identity.pow_ok(c, nonce, 12) for c in others))

    def test_nonce_size_limits(self) -> None:
        self.assertFalse(identity.pow_ok(CHALLENGE, b"", 1))
        self.assertFalse(identity.pow_ok(CHALLENGE, bytes(33), 1))

    def test_zero_bits(self) -> None:
        self.assertEqual(identity.solve_pow(CHALLENGE, 0), b"")
        self.assertTrue(identity.pow_ok(CHALLENGE, b"", 0))
        self.assertTrue(identity.pow_ok(CHALLENGE, b"\x07", 0))
        self.assertFalse(identity.pow_ok(CHALLENGE, bytes(33), 0))

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, identity.solve_pow, CHALLENGE, -1)
        self.assertRaises(ValueError, identity.solve_pow, CHALLENGE, 257)
        self.assertRaises(ValueError, identity.pow_ok, CHALLENGE[:16], b"x", 4)


class BindingTests(SynchronousTestCase):
    def test_layout(self) -> None:
        me = _identity()
        binding = me.binding()
        self.assertEqual(len(binding), 97)
        self.assertEqual(binding, b"\x01" + me.identity_public + me.static_sig)
        self.assertEqual(identity.parse_binding(binding), (me.identity_public, me.static_sig))

    def test_verify(self) -> None:
        me = _identity()
        self.assertEqual(identity.verify_binding(me.binding(), me.static_public), me.identity_public)

    def test_wrong_rs(self) -> None:
        """A genuine binding paired with somebody else's Noise key is refused."""
        me, relay = _identity(0), _identity(1)
        with self.assertRaises(BindingError) as cm:
            identity.verify_binding(me.binding(), relay.static_public)
        self.assertIn("intercepting", str(cm.exception))

    def test_wrong_length(self) -> None:
        me = _identity()
        for bad in (me.binding()[:-1], me.binding() + b"\0", b""):
            self.assertRaises(BindingError, identity.parse_binding, bad)
            self.assertRaises(BindingError, identity.verify_binding, bad, me.static_public)

    def test_wrong_version(self) -> None:
        me = _identity()
        bad = b"\x02" + me.binding()[1:]
        with self.assertRaises(BindingError) as cm:
            identity.verify_binding(bad, me.static_public)
        self.assertIn("version", str(cm.exception))

    def test_garbage(self) -> None:
        me = _identity()
        garbage = b"\x01" + os.urandom(96)
        self.assertRaises(BindingError, identity.verify_binding, garbage, me.static_public)
        self.assertRaises(BindingError, identity.verify_binding, None, me.static_public)

    def test_tampered_signature(self) -> None:
        me = _identity()
        self.assertRaises(BindingError, identity.verify_binding, _flip(me.binding(), 60), me.static_public)

    def test_bad_rs(self) -> None:
        me = _identity()
        self.assertRaises(BindingError, identity.verify_binding, me.binding(), bytes(32))
        self.assertRaises(BindingError, identity.verify_binding, me.binding(), b"short")

    def test_weak_identity_in_binding(self) -> None:
        me = _identity()
        forged = b"\x01" + ED_NEUTRAL + ED_NEUTRAL + bytes(32)
        self.assertRaises(BindingError, identity.verify_binding, forged, me.static_public)


class VerifiedBindingMemoTests(SynchronousTestCase):
    """A returning peer's binding is checked in full once; failures never stick."""

    def setUp(self) -> None:
        identity._verified_binding.cache_clear()
        self.addCleanup(identity._verified_binding.cache_clear)
        self.checks: list[bytes] = []
        real = identity.verify_static_sig

        def counting(identity_pub: bytes, static_pub: bytes, sig: bytes) -> bool:
            self.checks.append(static_pub)
            return real(identity_pub, static_pub, sig)

        self.patch(identity, "verify_static_sig", counting)

    def test_second_check_is_remembered(self) -> None:
        me = _identity()
        for _ in range(3):
            self.assertEqual(identity.verify_binding(me.binding(), me.static_public), me.identity_public)
        self.assertEqual(len(self.checks), 1)

    def test_accepts_bytearray_and_memoryview(self) -> None:
        me = _identity()
        got = identity.verify_binding(bytearray(me.binding()), memoryview(me.static_public))
        self.assertEqual(got, me.identity_public)
        self.assertIs(type(got), bytes)

    def test_changing_the_buffers_afterwards_cannot_poison_the_memo(self) -> None:
        """What is remembered is a copy: rewriting the caller's bytearrays after
        a good check does not make another pair pass."""
        me, relay = _identity(0), _identity(1)
        binding, rs = bytearray(me.binding()), bytearray(me.static_public)
        identity.verify_binding(binding, rs)
        rs[:] = relay.static_public
        self.assertRaises(BindingError, identity.verify_binding, binding, rs)

    def test_failure_is_not_remembered(self) -> None:
        me, relay = _identity(0), _identity(1)
        for _ in range(2):
            self.assertRaises(BindingError, identity.verify_binding, me.binding(), relay.static_public)
        self.assertEqual(len(self.checks), 2)

    def test_remembered_binding_still_refuses_another_rs(self) -> None:
        """The memo is keyed on the pair: a verified binding replayed with the
        relay's own Noise key is checked afresh, and refused."""
        me, relay = _identity(0), _identity(1)
        identity.verify_binding(me.binding(), me.static_public)
        self.assertRaises(BindingError, identity.verify_binding, me.binding(), relay.static_public)
        self.assertEqual(self.checks, [me.static_public, relay.static_public])

    def test_bounded(self) -> None:
        """Past the bound the oldest pair is forgotten (and checked again)."""
        self.patch(identity, "_verified_binding", functools.lru_cache(maxsize=2)(identity._verified_binding.__wrapped__))
        people = [_identity(i) for i in range(3)]
        for me in people + people[:1]:
            identity.verify_binding(me.binding(), me.static_public)
        self.assertEqual(len(self.checks), 4)
        identity.verify_binding(people[2].binding(), people[2].static_public)  # still held
        self.assertEqual(len(self.checks), 4)
        self.assertEqual(identity._verified_binding.cache_info().currsize, 2)


class StorageTests(SynchronousTestCase):
    def setUp(self) -> None:
        # Full-cost scrypt is exercised once in test_default_kdf_cost.
        self.patch(keyfiles, "SCRYPT_N", 2**10)
        self.patch(keyfiles, "SCRYPT_P", 1)

    def test_round_trip_unencrypted(self) -> None:
        me = Identity.generate()
        directory = Path(self.mktemp())
        me.save(directory)
        loaded = Identity.load(directory)
        self.assertEqual(loaded.identity_public, me.identity_public)
        self.assertEqual(loaded.static_public, me.static_public)
        self.assertEqual(loaded.static_sig, me.static_sig)
        self.assertIn(b"-----BEGIN PRIVATE KEY-----", (directory / "identity.pem").read_bytes())
        self.assertEqual(sorted(os.listdir(directory)), ["identity.pem", "static.pem"])

    def test_round_trip_passphrase(self) -> None:
        me = Identity.generate()
        directory = Path(self.mktemp())
        keypair.save(me, directory, b"correct horse")
        for name in ("identity.pem", "static.pem"):
            data = (directory / name).read_bytes()
            self.assertTrue(data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        loaded = keypair.load(directory, b"correct horse")
        self.assertEqual(loaded.identity_public, me.identity_public)
        self.assertEqual(loaded.static_public, me.static_public)
        # The same message signed by both gives the same (deterministic) signature.
        self.assertEqual(
            loaded.sign_registration(SERVER_ID, CHALLENGE, "bob"),
            me.sign_registration(SERVER_ID, CHALLENGE, "bob"),
        )

    def test_files_are_readable_by_cryptography(self) -> None:
        """The hand-built PKCS#8 file is standard: cryptography loads it directly."""
        me = Identity.generate()
        directory = Path(self.mktemp())
        me.save(directory, b"pw")
        key = serialization.load_pem_private_key((directory / "static.pem").read_bytes(), b"pw")
        assert isinstance(key, X25519PrivateKey)
        self.assertEqual(
            key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            me.static_public,
        )

    def test_wrong_passphrase(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory, b"right")
        with self.assertRaises(WrongPassphrase) as cm:
            Identity.load(directory, b"wrong")
        self.assertIn("passphrase", str(cm.exception))
        self.assertIn("identity.pem", str(cm.exception))

    def test_missing_passphrase(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory, b"right")
        with self.assertRaises(PassphraseRequired) as cm:
            Identity.load(directory)
        self.assertIn("passphrase is needed", str(cm.exception))

    def test_passphrase_for_plain_file(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory)
        with self.assertRaises(KeyStorageError) as cm:
            Identity.load(directory, b"surprise")
        self.assertIn("not encrypted", str(cm.exception))

    def test_passphrase_types(self) -> None:
        directory = Path(self.mktemp())
        me = Identity.generate()
        self.assertRaises(TypeError, me.save, directory, "text")
        self.assertRaises(ValueError, me.save, directory, b"")
        self.assertFalse(directory.exists())

    def test_file_modes(self) -> None:
        old = os.umask(0)  # the modes must not depend on the umask
        try:
            directory = Path(self.mktemp()) / "nested" / "relaychat"
            Identity.generate().save(directory, b"pw")
        finally:
            os.umask(old)
        self.assertEqual(_mode(directory), 0o700)
        self.assertEqual(_mode(directory / "identity.pem"), 0o600)
        self.assertEqual(_mode(directory / "static.pem"), 0o600)

    def test_overwrite_keeps_mode_and_leaves_no_temp(self) -> None:
        directory = Path(self.mktemp())
        me = Identity.generate()
        me.save(directory)
        os.chmod(directory / "identity.pem", 0o644)
        me.save(directory, b"new passphrase")
        self.assertEqual(_mode(directory / "identity.pem"), 0o600)
        self.assertEqual(sorted(os.listdir(directory)), ["identity.pem", "static.pem"])
        self.assertEqual(Identity.load(directory, b"new passphrase").identity_public, me.identity_public)

    def test_write_private_file_atomic(self) -> None:
        path = Path(self.mktemp()) / "file"
        keyfiles.write_private_file(path, b"one")
        keyfiles.write_private_file(path, b"two")
        self.assertEqual(path.read_bytes(), b"two")
        self.assertEqual(_mode(path), 0o600)
        self.assertEqual(os.listdir(path.parent), ["file"])

    def test_missing_static_file(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory)
        (directory / "static.pem").unlink()
        with self.assertRaises(KeyStorageError) as cm:
            Identity.load_or_create(directory)
        self.assertIn("missing", str(cm.exception))

    def test_damaged_file(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory)
        (directory / "identity.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        self.assertRaises(KeyStorageError, Identity.load, directory)

    def test_swapped_files(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory)
        a, b = directory / "identity.pem", directory / "static.pem"
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        with self.assertRaises(KeyStorageError) as cm:
            Identity.load(directory)
        self.assertIn("wrong kind", str(cm.exception))

    def test_load_or_create(self) -> None:
        directory = Path(self.mktemp())
        self.assertFalse(keypair.exists(directory))
        first = keypair.load_or_create(directory, b"pw")
        self.assertTrue(keypair.exists(directory))
        second = keypair.load_or_create(directory, b"pw")
        self.assertEqual(first.identity_public, second.identity_public)
        self.assertEqual(first.static_public, second.static_public)
        self.assertRaises(WrongPassphrase, keypair.load_or_create, directory, b"other")

    def test_load_or_create_replaces_orphan_static(self) -> None:
        directory = Path(self.mktemp())
        Identity.generate().save(directory)
        orphan = (directory / "static.pem").read_bytes()
        (directory / "identity.pem").unlink()
        created = Identity.load_or_create(directory)
        self.assertNotEqual((directory / "static.pem").read_bytes(), orphan)
        self.assertEqual(Identity.load(directory).static_public, created.static_public)


class DefaultKdfTests(SynchronousTestCase):
    def test_default_kdf_cost(self) -> None:
        """The stored file declares scrypt N=2**14, r=8, p=5 and AES-256-CBC."""
        directory = Path(self.mktemp())
        me = Identity.generate()
        me.save(directory, b"pw")
        pem = (directory / "identity.pem").read_bytes().decode("ascii").splitlines()
        der = base64.b64decode("".join(pem[1:-1]))
        scrypt_oid = pkcs8._der_oid("1.3.6.1.4.1.11591.4.11")
        aes_oid = pkcs8._der_oid("2.16.840.1.101.3.4.1.42")
        self.assertIn(scrypt_oid, der)
        self.assertIn(aes_oid, der)
        params = pkcs8._der_int(2**14) + pkcs8._der_int(8) + pkcs8._der_int(5)
        self.assertIn(params, der)
        self.assertEqual(Identity.load(directory, b"pw").identity_public, me.identity_public)


class DerTests(SynchronousTestCase):
    def test_known_encodings(self) -> None:
        self.assertEqual(pkcs8._der_oid("1.2.840.113549.1.5.13").hex(), "06092a864886f70d01050d")
        self.assertEqual(pkcs8._der_int(0).hex(), "020100")
        self.assertEqual(pkcs8._der_int(128).hex(), "02020080")
        self.assertEqual(pkcs8._der_int(2**14).hex(), "02024000")
        self.assertEqual(pkcs8._der(0x04, bytes(200))[:3].hex(), "0481c8")


class ConfigDirTests(SynchronousTestCase):
    def test_xdg(self) -> None:
        self.patch(os, "environ", {**os.environ, "XDG_CONFIG_HOME": "/tmp/xdg-test"})
        self.assertEqual(keyfiles.default_config_dir(), Path("/tmp/xdg-test/relaychat"))

    def test_relative_xdg_ignored(self) -> None:
        env = {**os.environ, "XDG_CONFIG_HOME": "relative/dir", "HOME": "/home/someone"}
        self.patch(os, "environ", env)
        self.assertEqual(keyfiles.default_config_dir(), Path("/home/someone/.config/relaychat"))

    def test_home(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
        env["HOME"] = "/home/someone"
        self.patch(os, "environ", env)
        self.assertEqual(keyfiles.default_config_dir(), Path("/home/someone/.config/relaychat"))


class SmallOrderPoints(SynchronousTestCase):
    """The y-coordinate test for small order, against two independent oracles."""

    def test_matches_repeated_doubling(self) -> None:
        P, D = identity._P, identity._D

        def double(x: int, y: int) -> tuple[int, int]:
            xy = x * y % P
            dxxyy = D * xy * xy % P
            return (2 * xy * pow(1 + dxxyy, P - 2, P) % P,
                    (y * y + x * x) * pow((1 - dxxyy) % P, P - 2, P) % P)

        def eight_times_is_neutral(point: tuple[int, int]) -> bool:
            x, y = point
            for _ in range(3):
                x, y = double(x, y)
            return x == 0 and y == 1

        small = [identity._ed25519_decode(y.to_bytes(32, "little")) for y in identity._SMALL_ORDER_YS]
        self.assertEqual(len(identity._SMALL_ORDER_YS), 5)
        for point in small:
            self.assertIsNotNone(point)
            self.assertTrue(eight_times_is_neutral(point))
        for _ in range(20):
            point = identity._ed25519_decode(Identity.generate().identity_public)
            self.assertFalse(eight_times_is_neutral(point))
            self.assertFalse(identity._ed25519_small_order(point))

    def test_matches_libsodium_blocklist(self) -> None:
        # The order-8 encodings in libsodium's ge25519_has_small_order blocklist.
        order_8 = {"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
                   "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"}
        mine = {y.to_bytes(32, "little").hex() for y in identity._SMALL_ORDER_YS}
        self.assertTrue(order_8 <= mine, mine)


class StaticKeyRotationTests(SynchronousTestCase):
    """Protocol section 12: the static key can be replaced; the identity stays."""

    def setUp(self) -> None:
        self.patch(keyfiles, "SCRYPT_N", 2**10)

    def test_rotation_keeps_the_identity_and_the_previous_static_key(self) -> None:
        directory = Path(self.mktemp())
        first = Identity.load_or_create(directory, b"pass")
        rotated = first.rotate_static(directory, b"pass")
        self.assertEqual(rotated.identity_public, first.identity_public)
        self.assertNotEqual(rotated.static_public, first.static_public)
        self.assertTrue(identity.verify_static_sig(rotated.identity_public, rotated.static_public, rotated.static_sig))
        loaded = Identity.load(directory, b"pass")
        self.assertEqual(loaded.static_public, rotated.static_public)
        self.assertEqual(identity.raw_public(loaded.previous_static_private.public_key()), first.static_public)
        for name in (keyfiles.STATIC_FILE, keyfiles.PREVIOUS_STATIC_FILE):
            self.assertEqual(stat.S_IMODE((directory / name).stat().st_mode), 0o600)
        self.assertRaises(PassphraseRequired, Identity.load, directory)
        again = loaded.rotate_static(directory, b"pass")
        self.assertEqual(identity.raw_public(again.previous_static_private.public_key()), rotated.static_public,
                         "only the last previous key is kept")

    def test_no_previous_key_before_a_rotation(self) -> None:
        directory = Path(self.mktemp())
        self.assertIsNone(Identity.load_or_create(directory).previous_static_private)
        self.assertIsNone(Identity.load(directory).previous_static_private)
