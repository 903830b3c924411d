"""Tests for relaychat.crypto.noise (Noise rev 34, docs/protocol.rst s10-12).

Three independent checks: the cacophony test vectors (byte-for-byte), interop
with the separate ``noiseprotocol`` package, and negative tests for every
failure the protocol document relies on (tamper, replay, reorder, order of
calls, sizes, prologue binding, unsupported names).
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.crypto import noise
from relaychat.crypto.noise import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    PATTERNS,
    CipherState,
    DecryptError,
    HandshakeState,
    HandshakeStateError,
    NoiseError,
    SymmetricState,
)

try:
    from noise.connection import Keypair as _TheirKeypair
    from noise.connection import NoiseConnection as _TheirConnection
except ImportError as exc:  # test-only dependency (PyPI: noiseprotocol)
    _TheirConnection = None
    _IMPORT_ERROR = str(exc)

XX = "Noise_XX_25519_ChaChaPoly_SHA256"
X = "Noise_X_25519_ChaChaPoly_SHA256"
SUITE = "25519_ChaChaPoly_SHA256"

VECTORS_PATH = Path(__file__).parent / "data" / "noise_vectors.json"
SHARED_VECTORS_PATH = Path(__file__).parents[2] / "shared/vectors/cacophony.json"
VECTORS = json.loads(VECTORS_PATH.read_text())


def _wanted(protocol_name: str) -> bool:
    """The subset the local copy must hold: our suite, our patterns, no psk."""
    prefix, _, rest = protocol_name.partition("_")
    pattern, _, suite = rest.partition("_")
    return prefix == "Noise" and suite == SUITE and pattern in PATTERNS


def _priv(hexkey: str | None) -> X25519PrivateKey | None:
    return None if hexkey is None else X25519PrivateKey.from_private_bytes(
        bytes.fromhex(hexkey))


def _pub_of(hexkey: str | None) -> bytes | None:
    return None if hexkey is None else bytes.fromhex(hexkey)


def _pair(name: str = XX, prologue: bytes = b"relaychat-test",
          resp_prologue: bytes | None = None):
    """A fresh initiator/responder pair with random static keys."""
    si, sr = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    sr_pub = sr.public_key().public_bytes_raw()
    needs_rs = "s" in PATTERNS[name.split("_")[1]].pre_responder
    init = HandshakeState(name, True, prologue, s=si,
                          rs=sr_pub if needs_rs else None)
    resp = HandshakeState(name, False,
                          prologue if resp_prologue is None else resp_prologue,
                          s=sr)
    return init, resp, si, sr


def _run_xx(init: HandshakeState, resp: HandshakeState) -> None:
    resp.read_message(init.write_message(b""))
    init.read_message(resp.write_message(b"resp binding"))
    resp.read_message(init.write_message(b"init binding"))


class VectorTests(SynchronousTestCase):
    """One generated test method per vector in tests/data/noise_vectors.json."""

    def _check_vector(self, vector: dict) -> None:
        name = vector["protocol_name"]
        init = HandshakeState(
            name, True, bytes.fromhex(vector["init_prologue"]),
            s=_priv(vector.get("init_static")),
            e=_priv(vector.get("init_ephemeral")),
            rs=_pub_of(vector.get("init_remote_static")))
        resp = HandshakeState(
            name, False, bytes.fromhex(vector["resp_prologue"]),
            s=_priv(vector.get("resp_static")),
            e=_priv(vector.get("resp_ephemeral")),
            rs=_pub_of(vector.get("resp_remote_static")))
        one_way = len(PATTERNS[name.split("_")[1]].messages) == 1
        for i, message in enumerate(vector["messages"]):
            payload = bytes.fromhex(message["payload"])
            expected = bytes.fromhex(message["ciphertext"])
            from_init = one_way or i % 2 == 0
            sender, receiver = (init, resp) if from_init else (resp, init)
            where = f"{name} message {i}"
            if not sender.complete:
                self.assertFalse(receiver.complete, where)
                self.assertEqual(sender.write_message(payload).hex(),
                                 expected.hex(), where)
                self.assertEqual(receiver.read_message(expected), payload, where)
                if init.complete:
                    self.assertTrue(resp.complete, where)
                    for side in (init, resp):
                        self.assertEqual(side.handshake_hash.hex(),
                                         vector["handshake_hash"], where)
            else:
                send, _ = sender.cipher_states
                _, recv = receiver.cipher_states
                self.assertEqual(send.encrypt_with_ad(b"", payload).hex(),
                                 expected.hex(), where)
                self.assertEqual(recv.decrypt_with_ad(b"", expected), payload,
                                 where)
        # Every vector has transport messages, so the handshake must be done.
        self.assertTrue(init.complete and resp.complete, name)
        if one_way:
            self.assertIsNone(init.cipher_states[1])
            self.assertIsNone(resp.cipher_states[0])

    def test_every_pattern_has_a_vector(self) -> None:
        """Nothing in the pattern table goes untested."""
        covered = {v["protocol_name"].split("_")[1] for v in VECTORS["vectors"]}
        self.assertEqual(covered, set(PATTERNS))

    def test_copy_is_the_wanted_subset(self) -> None:
        names = [v["protocol_name"] for v in VECTORS["vectors"]]
        self.assertTrue(all(_wanted(n) for n in names), names)
        self.assertEqual(len(names), len(set(names)))
        self.assertIn("cacophony", VECTORS["source"])

    def test_copy_matches_shared_cacophony(self) -> None:
        """If ../shared is beside the repo, the local copy must equal it."""
        if not SHARED_VECTORS_PATH.exists():
            raise SkipTest(f"{SHARED_VECTORS_PATH} not present")
        shared = json.loads(SHARED_VECTORS_PATH.read_text())["vectors"]
        upstream = {v["protocol_name"]: v for v in shared
                    if _wanted(v["protocol_name"])}
        local = {v["protocol_name"]: v for v in VECTORS["vectors"]}
        self.assertEqual(sorted(local), sorted(upstream))
        for name, vector in local.items():
            self.assertEqual(vector, upstream[name], name)


def _make_vector_test(vector: dict):
    def test(self: VectorTests) -> None:
        self._check_vector(vector)
    test.__doc__ = f"cacophony vector {vector['protocol_name']}"
    return test


for _vector in VECTORS["vectors"]:
    setattr(VectorTests, "test_vector_" + _vector["protocol_name"],
            _make_vector_test(_vector))
del _vector


class PrimitiveTests(SynchronousTestCase):
    """Spec sections 4-5 details that the vectors do not isolate."""

    def test_hkdf_equals_rfc5869_with_ck_as_salt(self) -> None:
        # Spec 4.3: HKDF() is RFC 5869 HKDF, salt = chaining_key, empty info.
        ck, ikm = bytes(range(32)), bytes(range(32, 64))
        out = noise._hkdf(ck, ikm, 3)
        rfc = HKDF(hashes.SHA256(), 96, salt=ck, info=b"").derive(ikm)
        self.assertEqual(b"".join(out), rfc)
        pair = HKDF(hashes.SHA256(), 64, salt=ck, info=b"").derive(b"")
        self.assertEqual(noise._hkdf(ck, b"", 2), (pair[:32], pair[32:]))

    def test_initialize_symmetric_pads_or_hashes(self) -> None:
        short = SymmetricState(b"Noise_X_25519_ChaChaPoly_SHA256")  # 31 bytes
        self.assertEqual(short.get_handshake_hash(),
                         b"Noise_X_25519_ChaChaPoly_SHA256\x00")
        long_name = b"Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256"
        digest = hashes.Hash(hashes.SHA256())
        digest.update(long_name)
        self.assertEqual(SymmetricState(long_name).get_handshake_hash(),
                         digest.finalize())

    def test_nonce_format_is_4_zero_bytes_then_little_endian(self) -> None:
        key = bytes(range(32))
        cs = CipherState(key)
        cs.set_nonce(0x0102030405060708)
        expected = ChaCha20Poly1305(key).encrypt(
            b"\x00" * 4 + bytes.fromhex("0807060504030201"), b"hi", b"ad")
        self.assertEqual(cs.encrypt_with_ad(b"ad", b"hi"), expected)
        self.assertEqual(cs.nonce, 0x0102030405060709)

    def test_rekey_is_spec_default_and_keeps_nonce(self) -> None:
        key = bytes(range(32))
        cs = CipherState(key)
        cs.encrypt_with_ad(b"", b"one")
        cs.rekey()
        new_key = ChaCha20Poly1305(key).encrypt(
            b"\x00" * 4 + b"\xff" * 8, b"\x00" * 32, b"")[:32]
        self.assertEqual(cs.nonce, 1)
        self.assertEqual(cs.encrypt_with_ad(b"", b"two"),
                         ChaCha20Poly1305(new_key).encrypt(
                             b"\x00" * 4 + (1).to_bytes(8, "little"), b"two", b""))

    def test_rekey_without_key_rejected(self) -> None:
        self.assertRaises(NoiseError, CipherState().rekey)

    def test_no_key_means_identity(self) -> None:
        cs = CipherState()
        self.assertFalse(cs.has_key())
        self.assertEqual(cs.encrypt_with_ad(b"ad", b"clear"), b"clear")
        self.assertEqual(cs.decrypt_with_ad(b"ad", b"clear"), b"clear")

    def test_nonce_exhaustion(self) -> None:
        sender, receiver = CipherState(bytes(32)), CipherState(bytes(32))
        sender.set_nonce(MAX_NONCE - 1)
        receiver.set_nonce(MAX_NONCE - 1)
        last = sender.encrypt_with_ad(b"", b"last")
        self.assertEqual(receiver.decrypt_with_ad(b"", last), b"last")
        self.assertEqual(sender.nonce, MAX_NONCE)
        self.assertRaises(NoiseError, sender.encrypt_with_ad, b"", b"more")
        self.assertRaises(NoiseError, receiver.decrypt_with_ad, b"", last)
        self.assertRaises(NoiseError, sender.set_nonce, MAX_NONCE + 1)
        self.assertRaises(NoiseError, sender.set_nonce, -1)

    def test_repr_never_shows_key(self) -> None:
        key = bytes(range(100, 132))
        for text in (repr(CipherState(key)), str(CipherState(key))):
            self.assertNotIn(key.hex(), text)
            self.assertNotIn(repr(key), text)
        self.assertNotIn("k=", repr(CipherState(key)))


class InteropTests(SynchronousTestCase):
    """Against the independent ``noiseprotocol`` package (import ``noise``)."""

    def setUp(self) -> None:
        if _TheirConnection is None:
            raise SkipTest(f"noiseprotocol not installed ({_IMPORT_ERROR})")

    def _theirs(self, name: str, initiator: bool, prologue: bytes,
                static: X25519PrivateKey, remote: bytes | None = None):
        conn = _TheirConnection.from_name(name.encode())
        conn.set_prologue(prologue)
        conn.set_keypair_from_private_bytes(_TheirKeypair.STATIC,
                                            static.private_bytes_raw())
        if remote is not None:
            conn.set_keypair_from_public_bytes(_TheirKeypair.REMOTE_STATIC, remote)
        conn.set_as_initiator() if initiator else conn.set_as_responder()
        conn.start_handshake()
        return conn

    def _transport(self, ours: HandshakeState, theirs) -> None:
        send, recv = ours.cipher_states
        for i in range(3):
            msg = b"ours->theirs %d" % i
            self.assertEqual(bytes(theirs.decrypt(send.encrypt_with_ad(b"", msg))), msg)
            msg = b"theirs->ours %d" % i
            self.assertEqual(recv.decrypt_with_ad(b"", theirs.encrypt(msg)), msg)
        # Rekey both directions on both sides: traffic must keep flowing.
        send.rekey()
        theirs.rekey_inbound_cipher()
        recv.rekey()
        theirs.rekey_outbound_cipher()
        self.assertEqual(bytes(theirs.decrypt(send.encrypt_with_ad(b"", b"after"))),
                         b"after")
        self.assertEqual(recv.decrypt_with_ad(b"", theirs.encrypt(b"back")), b"back")
        # One-sided rekey must break the channel (so the check above has teeth).
        send.rekey()
        self.assertRaises(Exception, theirs.decrypt,
                          send.encrypt_with_ad(b"", b"lost"))

    def test_xx_our_initiator_their_responder(self) -> None:
        si, sr, prologue = (X25519PrivateKey.generate(),
                            X25519PrivateKey.generate(), b"relaychat-e2e-v1")
        ours = HandshakeState(XX, True, prologue, s=si)
        theirs = self._theirs(XX, False, prologue, sr)
        self.assertEqual(bytes(theirs.read_message(ours.write_message(b""))), b"")
        self.assertEqual(ours.read_message(bytes(theirs.write_message(b"resp id"))),
                         b"resp id")
        self.assertEqual(ours.remote_static, sr.public_key().public_bytes_raw())
        self.assertEqual(bytes(theirs.read_message(ours.write_message(b"init id"))),
                         b"init id")
        self.assertTrue(ours.complete and theirs.handshake_finished)
        self.assertEqual(ours.handshake_hash, theirs.get_handshake_hash())
        self._transport(ours, theirs)

    def test_xx_their_initiator_our_responder(self) -> None:
        si, sr, prologue = (X25519PrivateKey.generate(),
                            X25519PrivateKey.generate(), b"relaychat-e2e-v1")
        theirs = self._theirs(XX, True, prologue, si)
        ours = HandshakeState(XX, False, prologue, s=sr)
        self.assertEqual(ours.read_message(bytes(theirs.write_message(b""))), b"")
        self.assertEqual(bytes(theirs.read_message(ours.write_message(b"resp id"))),
                         b"resp id")
        self.assertEqual(ours.read_message(bytes(theirs.write_message(b"init id"))),
                         b"init id")
        self.assertEqual(ours.remote_static, si.public_key().public_bytes_raw())
        self.assertTrue(ours.complete and theirs.handshake_finished)
        self.assertEqual(ours.handshake_hash, theirs.get_handshake_hash())
        self._transport(ours, theirs)

    def test_x_sealed_mail_both_ways(self) -> None:
        """Section 12's one-message pattern, our sender and theirs."""
        si, sr, prologue = (X25519PrivateKey.generate(),
                            X25519PrivateKey.generate(), b"relaychat-mail-v1")
        sr_pub = sr.public_key().public_bytes_raw()
        ours = HandshakeState(X, True, prologue, s=si, rs=sr_pub)
        theirs = self._theirs(X, False, prologue, sr)
        self.assertEqual(bytes(theirs.read_message(ours.write_message(b"mail"))),
                         b"mail")
        self.assertEqual(ours.handshake_hash, theirs.get_handshake_hash())
        theirs = self._theirs(X, True, prologue, si, remote=sr_pub)
        ours = HandshakeState(X, False, prologue, s=sr)
        self.assertEqual(ours.read_message(bytes(theirs.write_message(b"mail 2"))),
                         b"mail 2")
        self.assertEqual(ours.remote_static, si.public_key().public_bytes_raw())


class HandshakeNegativeTests(SynchronousTestCase):

    def test_tampered_encrypted_static_fails_and_poisons(self) -> None:
        init, resp, _, _ = _pair()
        resp.read_message(init.write_message(b""))
        msg2 = bytearray(resp.write_message(b"binding"))
        msg2[40] ^= 1  # inside the encrypted static key
        self.assertRaises(DecryptError, init.read_message, bytes(msg2))
        # The state is unusable afterwards, whatever is tried.
        self.assertRaises(HandshakeStateError, init.write_message, b"")
        self.assertRaises(HandshakeStateError, init.read_message, b"")
        self.assertFalse(init.complete)

    def test_tampered_payload_fails(self) -> None:
        init, resp, _, _ = _pair()
        resp.read_message(init.write_message(b""))
        init.read_message(resp.write_message(b""))
        msg3 = bytearray(init.write_message(b"binding"))
        msg3[-1] ^= 0x80
        self.assertRaises(DecryptError, resp.read_message, bytes(msg3))
        self.assertRaises(HandshakeStateError, lambda: resp.cipher_states)

    def test_tampered_cleartext_ephemeral_caught_next_message(self) -> None:
        init, resp, _, _ = _pair()
        msg1 = bytearray(init.write_message(b""))
        msg1[0] ^= 1
        resp.read_message(bytes(msg1))  # cleartext: nothing to check yet
        self.assertRaises(DecryptError, init.read_message, resp.write_message(b""))

    def test_failed_read_hides_unauthenticated_rs(self) -> None:
        """X: rs decrypts fine, then the payload tag fails; rs must not leak."""
        init, resp, _, _ = _pair(X)
        msg = bytearray(init.write_message(b"mail"))
        msg[-1] ^= 1
        self.assertRaises(DecryptError, resp.read_message, bytes(msg))
        self.assertIsNone(resp.remote_static)

    def test_truncated_message_fails(self) -> None:
        init, resp, _, _ = _pair()
        self.assertRaises(NoiseError, resp.read_message,
                          init.write_message(b"")[:31])
        init, resp, _, _ = _pair()
        resp.read_message(init.write_message(b""))
        self.assertRaises(NoiseError, init.read_message,
                          resp.write_message(b"")[:32 + 48 + 15])

    def test_wrong_prologue_fails_xx(self) -> None:
        init, resp, _, _ = _pair(prologue=b"sid-1", resp_prologue=b"sid-2")
        resp.read_message(init.write_message(b""))
        self.assertRaises(DecryptError, init.read_message, resp.write_message(b""))

    def test_wrong_prologue_fails_x(self) -> None:
        init, resp, _, _ = _pair(X, prologue=b"alice bob", resp_prologue=b"alice eve")
        self.assertRaises(DecryptError, resp.read_message, init.write_message(b"m"))

    def test_wrong_order(self) -> None:
        init, resp, _, _ = _pair()
        self.assertRaises(HandshakeStateError, init.read_message, b"\x00" * 32)
        self.assertRaises(HandshakeStateError, resp.write_message, b"")
        msg1 = init.write_message(b"")
        self.assertRaises(HandshakeStateError, init.write_message, b"")
        # Misuse does not poison: the handshake still completes afterwards.
        resp.read_message(msg1)
        self.assertRaises(HandshakeStateError, resp.read_message, msg1)
        init.read_message(resp.write_message(b""))
        self.assertRaises(HandshakeStateError, lambda: init.handshake_hash)
        self.assertRaises(HandshakeStateError, lambda: init.cipher_states)
        resp.read_message(init.write_message(b""))
        self.assertEqual(init.handshake_hash, resp.handshake_hash)
        self.assertRaises(HandshakeStateError, init.write_message, b"")
        self.assertRaises(HandshakeStateError, resp.read_message, b"")

    def test_cipher_states_oriented_and_stable(self) -> None:
        init, resp, _, _ = _pair()
        _run_xx(init, resp)
        i_send, i_recv = init.cipher_states
        r_send, r_recv = resp.cipher_states
        self.assertEqual(r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"a")), b"a")
        self.assertEqual(i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"b")), b"b")
        self.assertIs(init.cipher_states[0], i_send)  # never a second copy

    def test_handshake_message_max_length(self) -> None:
        init, resp, _, _ = _pair()
        # XX message 1 is e (32) + cleartext payload.
        self.assertRaises(NoiseError, init.write_message, b"x" * (MAX_MESSAGE_LEN - 31))
        msg1 = init.write_message(b"x" * (MAX_MESSAGE_LEN - 32))  # not poisoned
        self.assertEqual(len(msg1), MAX_MESSAGE_LEN)
        resp.read_message(msg1)
        # Message 2: e (32) + encrypted s (48) + payload + tag (16).
        self.assertRaises(NoiseError, resp.write_message,
                          b"y" * (MAX_MESSAGE_LEN - 95))
        self.assertEqual(len(resp.write_message(b"y" * (MAX_MESSAGE_LEN - 96))),
                         MAX_MESSAGE_LEN)

    def test_read_over_max_length_rejected(self) -> None:
        init, resp, _, _ = _pair()
        self.assertRaises(NoiseError, resp.read_message,
                          init.write_message(b"") + b"\x00" * (MAX_MESSAGE_LEN - 31))

    def test_transport_max_length(self) -> None:
        init, resp, _, _ = _pair()
        _run_xx(init, resp)
        send, recv = init.cipher_states[0], resp.cipher_states[1]
        self.assertRaises(NoiseError, send.encrypt_with_ad, b"", b"z" * (MAX_MESSAGE_LEN - 15))
        self.assertEqual(send.nonce, 0)
        big = send.encrypt_with_ad(b"", b"z" * (MAX_MESSAGE_LEN - 16))
        self.assertEqual(len(big), MAX_MESSAGE_LEN)
        # Rejected for its length, before (and not because of) the tag check.
        too_long = self.assertRaises(NoiseError, recv.decrypt_with_ad, b"",
                                     big + b"\x00")
        self.assertNotIsInstance(too_long, DecryptError)
        self.assertEqual(recv.nonce, 0)
        self.assertEqual(recv.decrypt_with_ad(b"", big), b"z" * (MAX_MESSAGE_LEN - 16))

    def test_low_order_points_rejected(self) -> None:
        low_order = [bytes(32), (1).to_bytes(32, "little"), bytes.fromhex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]
        for point in low_order:
            init = HandshakeState(X, True, b"", s=X25519PrivateKey.generate(), rs=point)
            self.assertRaises(NoiseError, init.write_message, b"")
            self.assertRaises(HandshakeStateError, init.write_message, b"")
            # A responder sent a low-order ephemeral fails at its first DH.
            _, resp, _, _ = _pair()
            resp.read_message(point)
            self.assertRaises(NoiseError, resp.write_message, b"")
            self.assertRaises(HandshakeStateError, resp.write_message, b"")

    def test_keys_checked_against_pattern(self) -> None:
        s = X25519PrivateKey.generate()
        rs = X25519PrivateKey.generate().public_key().public_bytes_raw()
        self.assertRaises(HandshakeStateError, HandshakeState, XX, True, b"")
        self.assertRaises(HandshakeStateError, HandshakeState, X, True, b"", s=s)
        self.assertRaises(HandshakeStateError, HandshakeState, X, False, b"")
        self.assertRaises(HandshakeStateError, HandshakeState, XX, True, b"",
                          s=s, rs=rs)
        self.assertRaises(NoiseError, HandshakeState, X, True, b"", s=s, rs=rs[:31])
        HandshakeState(X, True, b"", s=s, rs=rs)  # and the right keys work

    def test_unsupported_protocol_names(self) -> None:
        for name in [
                "Noise_XX_25519_AESGCM_SHA256",
                "Noise_XX_25519_ChaChaPoly_SHA512",
                "Noise_XX_25519_ChaChaPoly_BLAKE2s",
                "Noise_XX_448_ChaChaPoly_SHA256",
                "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
                "Noise_XXfallback_25519_ChaChaPoly_SHA256",
                "Noise_NN_25519_ChaChaPoly_SHA256",  # valid Noise, not in table
                "Noise_xx_25519_ChaChaPoly_SHA256",
                "Noise_XX_25519_ChaChaPoly",
                "Noise_XX_25519_ChaChaPoly_SHA256_",
                "noise_XX_25519_ChaChaPoly_SHA256",
                "Noise_XX_25519_ChaChaPoly_SHA256" + "A" * 230,
                "Noise_XX_25519_ChaChaPoly_SHA25\u0666",
                b"Noise_XX_25519_ChaChaPoly_SHA256"]:
            try:
                HandshakeState(name, True, b"", s=X25519PrivateKey.generate())
            except HandshakeStateError:
                self.fail(f"{name!r}: rejected for the wrong reason")
            except NoiseError:
                continue
            self.fail(f"{name!r} was accepted")
        msg = str(self.assertRaises(NoiseError, HandshakeState,
                                    "Noise_XXpsk3_25519_ChaChaPoly_SHA256", True))
        self.assertIn("psk", msg)


class TransportNegativeTests(SynchronousTestCase):

    def setUp(self) -> None:
        init, resp, _, _ = _pair()
        _run_xx(init, resp)
        self.send, self.back_recv = init.cipher_states
        self.back_send, self.recv = resp.cipher_states

    def test_tampered(self) -> None:
        good = self.send.encrypt_with_ad(b"", b"\x01hello")
        for i in (0, len(good) - 1):
            bad = bytearray(good)
            bad[i] ^= 1
            self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"", bytes(bad))
            self.assertEqual(self.recv.nonce, 0)
        self.assertEqual(self.recv.decrypt_with_ad(b"", good), b"\x01hello")

    def test_replayed(self) -> None:
        first = self.send.encrypt_with_ad(b"", b"\x01one")
        self.assertEqual(self.recv.decrypt_with_ad(b"", first), b"\x01one")
        self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"", first)
        self.assertEqual(self.recv.nonce, 1)
        second = self.send.encrypt_with_ad(b"", b"\x01two")
        self.assertEqual(self.recv.decrypt_with_ad(b"", second), b"\x01two")

    def test_reordered(self) -> None:
        first = self.send.encrypt_with_ad(b"", b"\x01one")
        second = self.send.encrypt_with_ad(b"", b"\x01two")
        self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"", second)
        self.assertEqual(self.recv.nonce, 0)
        self.assertEqual(self.recv.decrypt_with_ad(b"", first), b"\x01one")
        self.assertEqual(self.recv.decrypt_with_ad(b"", second), b"\x01two")

    def test_dropped_message_detected(self) -> None:
        self.send.encrypt_with_ad(b"", b"\x01lost")
        self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"",
                          self.send.encrypt_with_ad(b"", b"\x01next"))

    def test_reflected_message_fails(self) -> None:
        """Each direction has its own key: a reflected frame does not decrypt."""
        reflected = self.back_send.encrypt_with_ad(b"", b"\x01echo")
        self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"", reflected)
        self.assertEqual(self.back_recv.decrypt_with_ad(b"", reflected), b"\x01echo")

    def test_rekey_interval_contract(self) -> None:
        """protocol.rst s11: rekey after message 1000, nonce not reset."""
        for i in range(1, 1001):
            self.recv.decrypt_with_ad(b"", self.send.encrypt_with_ad(b"", b"\x01%d" % i))
        self.send.rekey()
        msg = self.send.encrypt_with_ad(b"", b"\x01after")
        self.assertRaises(DecryptError, self.recv.decrypt_with_ad, b"", msg)
        self.recv.rekey()
        self.assertEqual(self.recv.nonce, 1000)
        self.assertEqual(self.recv.decrypt_with_ad(b"", msg), b"\x01after")
