"""Tests for relaychat.crypto.safety (protocol section 13)."""

from __future__ import annotations

import hashlib
import re

from twisted.trial.unittest import SynchronousTestCase

from relaychat.crypto import safety
from relaychat.crypto.keypair import Identity

# libsignal's published vector (rust/protocol/src/fingerprint.rs,
# fingerprint_test_v1 / Java NumericFingerprintGeneratorTest.testVectorsVersion1):
# DJB-type (0x05-prefixed) Curve25519 identity keys, phone-number stable ids,
# 5200 iterations.
LIBSIGNAL_ALICE_KEY = bytes.fromhex(
    "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868"
)
LIBSIGNAL_BOB_KEY = bytes.fromhex(
    "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b"
)
LIBSIGNAL_ALICE_ID = b"+14152222222"
LIBSIGNAL_BOB_ID = b"+14153333333"
LIBSIGNAL_DISPLAY_V1 = "300354477692869396892869876765458257569162576843440918079131"
# The scannable (QR) v1 encoding carries the first 32 bytes of each side's
# iterated hash: a check of the hash itself, before the digit reduction.
LIBSIGNAL_ALICE_HASH32 = "1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
LIBSIGNAL_BOB_HASH32 = "d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"

SAFETY_RE = re.compile(r"\d{5}( \d{5}){11}\Z")

_A = Identity.generate().identity_public
_B = Identity.generate().identity_public
_C = Identity.generate().identity_public


class LibsignalVectorTests(SynchronousTestCase):
    def test_display_vector(self) -> None:
        self.assertEqual(
            safety.numeric_fingerprint(
                LIBSIGNAL_ALICE_KEY, LIBSIGNAL_ALICE_ID, LIBSIGNAL_BOB_KEY, LIBSIGNAL_BOB_ID, 5200
            ),
            LIBSIGNAL_DISPLAY_V1,
        )

    def test_display_vector_from_bobs_side(self) -> None:
        self.assertEqual(
            safety.numeric_fingerprint(
                LIBSIGNAL_BOB_KEY, LIBSIGNAL_BOB_ID, LIBSIGNAL_ALICE_KEY, LIBSIGNAL_ALICE_ID
            ),
            LIBSIGNAL_DISPLAY_V1,
        )

    def test_iterated_hash_vector(self) -> None:
        self.assertEqual(
            safety.iterated_hash(LIBSIGNAL_ALICE_KEY, LIBSIGNAL_ALICE_ID, 5200)[:32].hex(),
            LIBSIGNAL_ALICE_HASH32,
        )
        self.assertEqual(
            safety.iterated_hash(LIBSIGNAL_BOB_KEY, LIBSIGNAL_BOB_ID, 5200)[:32].hex(),
            LIBSIGNAL_BOB_HASH32,
        )

    def test_smaller_half_first(self) -> None:
        alice = safety.numeric_half(LIBSIGNAL_ALICE_KEY, LIBSIGNAL_ALICE_ID)
        bob = safety.numeric_half(LIBSIGNAL_BOB_KEY, LIBSIGNAL_BOB_ID)
        self.assertEqual(min(alice, bob) + max(alice, bob), LIBSIGNAL_DISPLAY_V1)
        self.assertLess(int(LIBSIGNAL_DISPLAY_V1[:30]), int(LIBSIGNAL_DISPLAY_V1[30:]))

    def test_hash_construction(self) -> None:
        """One hash of version||key||id||key, then iterations-1 of h||key."""
        key, sid = b"k" * 32, b"nick"
        h = hashlib.sha512(b"\x00\x00" + key + sid + key).digest()
        for _ in range(2):
            h = hashlib.sha512(h + key).digest()
        self.assertEqual(safety.iterated_hash(key, sid, 3), h)

    def test_documented_variant_is_not_libsignal(self) -> None:
        """Hashing the prefix first and then iterating 5200 times (5201 hashes)
        does not reproduce libsignal's vector, which is why we don't."""
        h = hashlib.sha512(b"\x00\x00" + LIBSIGNAL_ALICE_KEY + LIBSIGNAL_ALICE_ID).digest()
        for _ in range(5200):
            h = hashlib.sha512(h + LIBSIGNAL_ALICE_KEY).digest()
        self.assertNotEqual(h[:32].hex(), LIBSIGNAL_ALICE_HASH32)


class SafetyNumberTests(SynchronousTestCase):
    def test_format(self) -> None:
        number = safety.safety_number(_A, "alice", _B, "bob")
        self.assertRegex(number, SAFETY_RE)
        self.assertEqual(len(number), 60 + 11)

    def test_symmetric(self) -> None:
        self.assertEqual(
            safety.safety_number(_A, "alice", _B, "bob"),
            safety.safety_number(_B, "bob", _A, "alice"),
        )

    def test_stable(self) -> None:
        self.assertEqual(
            safety.safety_number(_A, "alice", _B, "bob"),
            safety.safety_number(_A, "alice", _B, "bob"),
        )

    def test_matches_construction(self) -> None:
        """Our safety number is libsignal's over raw keys and canonical nicks."""
        digits = safety.numeric_fingerprint(_A, b"alice", _B, b"bob", 5200)
        self.assertEqual(safety.safety_number(_A, "alice", _B, "bob").replace(" ", ""), digits)

    def test_changes_with_keys_and_nicks(self) -> None:
        base = safety.safety_number(_A, "alice", _B, "bob")
        self.assertNotEqual(base, safety.safety_number(_C, "alice", _B, "bob"))
        self.assertNotEqual(base, safety.safety_number(_A, "alice", _C, "bob"))
        self.assertNotEqual(base, safety.safety_number(_A, "alicf", _B, "bob"))
        self.assertNotEqual(base, safety.safety_number(_A, "alice", _B, "bobby"))
        # Swapping which key goes with which nickname changes it too.
        self.assertNotEqual(base, safety.safety_number(_B, "alice", _A, "bob"))

    def test_mitm_halves(self) -> None:
        """With a relay key in the middle, each side sees a different number,
        and the half belonging to the honest local party is still present."""
        alice_view = safety.safety_number(_A, "alice", _C, "bob")
        bob_view = safety.safety_number(_B, "bob", _C, "alice")
        self.assertNotEqual(alice_view, bob_view)
        alice_half = safety.numeric_half(_A, b"alice")
        self.assertIn(alice_half, alice_view.replace(" ", ""))

    def test_nick_case_does_not_matter(self) -> None:
        self.assertEqual(
            safety.safety_number(_A, "Alice", _B, "BOB"),
            safety.safety_number(_A, "alice", _B, "bob"),
        )

    def test_remembered_per_keys_and_nicks(self) -> None:
        """Computed once per (keys, nicknames): the second conversation with
        the same person costs no hashing, and any change is computed afresh."""
        safety._safety_number.cache_clear()
        self.addCleanup(safety._safety_number.cache_clear)
        calls: list[bytes] = []
        real = safety.numeric_fingerprint

        def counting(*args: object) -> str:
            calls.append(args[0])  # type: ignore[arg-type]
            return real(*args)  # type: ignore[arg-type]

        self.patch(safety, "numeric_fingerprint", counting)
        first = safety.safety_number(_A, "alice", _B, "bob")
        self.assertEqual(safety.safety_number(bytearray(_A), "Alice", _B, "bob"), first)
        self.assertEqual(len(calls), 1)
        self.assertNotEqual(safety.safety_number(_A, "alice", _C, "bob"), first)
        self.assertEqual(len(calls), 2)

    def test_bad_input(self) -> None:
        self.assertRaises(ValueError, safety.safety_number, _A[:31], "alice", _B, "bob")
        self.assertRaises(ValueError, safety.safety_number, _A, "alice", _B + b"\0", "bob")
        self.assertRaises(ValueError, safety.safety_number, _A, "", _B, "bob")
        self.assertRaises(ValueError, safety.iterated_hash, _A, b"x", 0)

    def test_format_safety_number(self) -> None:
        self.assertEqual(
            safety.format_safety_number(LIBSIGNAL_DISPLAY_V1),
            "30035 44776 92869 39689 28698 76765 45825 75691 62576 84344 09180 79131",
        )
        self.assertRaises(ValueError, safety.format_safety_number, LIBSIGNAL_DISPLAY_V1[:-1])
        self.assertRaises(ValueError, safety.format_safety_number, "x" * 60)


class MatchesTests(SynchronousTestCase):
    def test_spacing_ignored(self) -> None:
        spaced = safety.format_safety_number(LIBSIGNAL_DISPLAY_V1)
        self.assertTrue(safety.matches(spaced, LIBSIGNAL_DISPLAY_V1))
        self.assertTrue(safety.matches(" " + spaced.replace(" ", "\n") + "\t", spaced))

    def test_mismatch(self) -> None:
        other = LIBSIGNAL_DISPLAY_V1[:-1] + "2"
        self.assertFalse(safety.matches(LIBSIGNAL_DISPLAY_V1, other))

    def test_malformed_never_matches(self) -> None:
        self.assertFalse(safety.matches("", ""))
        self.assertFalse(safety.matches("12345", "12345"))
        self.assertFalse(safety.matches("a" * 60, "a" * 60))
        self.assertFalse(safety.matches("\u0661" * 60, "\u0661" * 60))  # Arabic-Indic digits
        self.assertFalse(safety.matches(None, LIBSIGNAL_DISPLAY_V1))  # type: ignore[arg-type]


class FingerprintTests(SynchronousTestCase):
    def test_format(self) -> None:
        text = safety.identity_fingerprint(_A)
        self.assertRegex(text, r"[0-9a-f]{4}( [0-9a-f]{4}){9}\Z")
        self.assertEqual(text.replace(" ", ""), hashlib.sha256(_A).hexdigest()[:40])

    def test_known_value(self) -> None:
        # SHA-256 of 32 zero bytes is 66687aadf862bd776c8fc18b8e9f8e20089714856e...
        self.assertEqual(
            safety.identity_fingerprint(bytes(32)), "6668 7aad f862 bd77 6c8f c18b 8e9f 8e20 0897 1485"
        )

    def test_distinct(self) -> None:
        self.assertNotEqual(safety.identity_fingerprint(_A), safety.identity_fingerprint(_B))

    def test_bad_length(self) -> None:
        self.assertRaises(ValueError, safety.identity_fingerprint, _A[:31])
