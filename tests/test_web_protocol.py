"""The browser client's protocol modules (relaychat/web/static/*.js).

Two things, both with node: the node test runner over relaychat/web/tests/
(Noise vectors, libsignal's safety vector, SMP and mail round trips), run
from here so trial's closing count includes them; and cross-language tests
in which the Python reference implementation and the JS modules talk to each
other through a JSON-lines peer process, so both agree byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.client import mail
from relaychat.client.channel import (
    Channel, ChannelFailed, FixedPin, HandshakeComplete, MessageReceived, SendFrame, SMPRequested, SMPResult,
)
from relaychat.crypto import safety
from relaychat.crypto.identity import pow_ok, verify_binding
from relaychat.crypto.keypair import Identity

WEB = Path(__file__).resolve().parents[1] / "relaychat" / "web"
NODE = shutil.which("node") or shutil.which("nodejs")


def _need_node() -> str:
    if NODE is None:
        raise SkipTest("node is not installed (Debian: nodejs)")
    return NODE


def _identity(seed: int) -> tuple[Identity, bytes, bytes]:
    ident_secret = bytes([seed]) * 32
    static_secret = bytes([seed + 1]) * 32
    identity = Identity(Ed25519PrivateKey.from_private_bytes(ident_secret),
                        X25519PrivateKey.from_private_bytes(static_secret))
    return identity, ident_secret, static_secret


class NodeTestRunner(SynchronousTestCase):
    """`node --test relaychat/web/tests/` and the vendored files' hashes."""

    def test_node_tests_pass(self) -> None:
        node = _need_node()
        result = subprocess.run([node, "--test", "--test-reporter=tap", str(WEB / "tests")],
                                capture_output=True, text=True, timeout=300, cwd=WEB)
        summary = [line for line in result.stdout.splitlines() if line.startswith(("# pass", "# fail"))]
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-2000:])
        self.assertIn("# fail 0", summary)
        passed = int(next(line for line in summary if line.startswith("# pass")).split()[2])
        self.assertGreaterEqual(passed, 20)

    def test_vendored_noble_matches_its_manifest(self) -> None:
        node = _need_node()
        result = subprocess.run([node, str(WEB / "vendor.mjs"), "check"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        manifest = json.loads((WEB / "static" / "vendor" / "VENDOR.json").read_text())
        self.assertEqual(set(manifest["packages"]), {"@noble/hashes", "@noble/ciphers", "@noble/curves"})
        for info in manifest["packages"].values():
            self.assertTrue(info["version"].startswith("2."))
            self.assertEqual(info["license"], "MIT")
            self.assertIn("LICENSE", info["files"])


class Peer:
    """The JS side, one request and one answer per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [_need_node(), str(WEB / "tests" / "peer.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, encoding="utf-8")

    def __call__(self, op: str, **args: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "exception" in answer:
            raise AssertionError(answer["exception"])
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()
        self.process.wait(timeout=10)


class CrossLanguage(SynchronousTestCase):
    """Python's reference modules and the JS modules, byte for byte."""

    def setUp(self) -> None:
        self.js = Peer()
        self.addCleanup(self.js.close)
        self.py, _, _ = _identity(7)
        self.jsid, secret, static = _identity(40)
        self.keys = self.js("identity", identity=secret.hex(), static=static.hex())

    def test_keys_certificate_binding_and_registration_signature_identical(self) -> None:
        self.assertEqual(self.keys["identityPub"], self.jsid.identity_public.hex())
        self.assertEqual(self.keys["staticPub"], self.jsid.static_public.hex())
        self.assertEqual(self.keys["staticSig"], self.jsid.static_sig.hex())  # Ed25519 is deterministic
        self.assertEqual(self.keys["binding"], self.jsid.binding().hex())
        server_id, challenge = os.urandom(32), os.urandom(32)
        sig = self.js("sign_registration", serverId=server_id.hex(), challenge=challenge.hex(), nick="bob")["sig"]
        self.assertEqual(sig, self.jsid.sign_registration(server_id, challenge, "bob").hex())
        # and a binding checks out only with its own static key
        self.assertEqual(self.js("verify_binding", binding=self.py.binding().hex(), rs=self.py.static_public.hex()),
                         {"identityPub": self.py.identity_public.hex()})
        self.assertIn("error", self.js("verify_binding", binding=self.py.binding().hex(), rs=self.jsid.static_public.hex()))

    def test_safety_number_and_fingerprint_identical(self) -> None:
        a, b = self.py.identity_public, self.jsid.identity_public
        number = self.js("safety", a=a.hex(), an="Alice", b=b.hex(), bn="bob")["number"]
        self.assertEqual(number, safety.safety_number(a, "alice", b, "bob"))
        self.assertEqual(self.js("fingerprint", key=a.hex())["fingerprint"], safety.identity_fingerprint(a))

    def test_proof_of_work_accepted_by_python(self) -> None:
        challenge = os.urandom(32)
        nonce = bytes.fromhex(self.js("pow", challenge=challenge.hex(), bits=12)["nonce"])
        self.assertTrue(pow_ok(challenge, nonce, 12))

    def _converse(self, python_initiates: bool) -> tuple[Channel, list[Any]]:
        sid = "00112233aabbccdd"
        py_nick, js_nick = "alice", "bob"
        channel = Channel(initiator=python_initiates, sid=sid, local_nick=py_nick, peer_nick=js_nick,
                          identity=self.py, pins=FixedPin())
        js_frames = self.js("channel", initiator=not python_initiates, sid=sid, local=js_nick, peer=py_nick, pin=None)["frames"]
        py_frames = channel.start()
        opened: list[Any] = []
        to_js = [f.hex() for f in py_frames]
        to_py = list(js_frames)
        while to_js or to_py:
            for payload in to_js:
                for event in self.js("frame", payload=payload)["events"]:
                    if event["type"] == "send":
                        to_py.append(event["payload"])
                    elif event["type"] == "open":
                        opened.append(event)
                    else:
                        self.fail(event)
            to_js = []
            for payload in to_py:
                for ev in channel.receive_frame(bytes.fromhex(payload)):
                    if isinstance(ev, SendFrame):
                        to_js.append(ev.payload.hex())
                    elif isinstance(ev, HandshakeComplete):
                        opened.append(ev)
                    else:
                        self.fail(ev)
            to_py = []
        return channel, opened

    def _from_js(self, channel: Channel, payload: bytes) -> list[Any]:
        """Python reads one frame from JS; Python's answers (the section 11
        RECEIPT for a TEXT) go back to JS, which must read them without
        failing (a client without receipts reports the type and ignores it)."""
        events = channel.receive_frame(payload)
        for event in events:
            if isinstance(event, SendFrame):
                answer = self.js("frame", payload=event.payload.hex())["events"]
                self.assertNotIn("failed", [e["type"] for e in answer])
        return [e for e in events if not isinstance(e, SendFrame)]

    def _both_ways(self, channel: Channel) -> None:
        text = "h\u00e9llo \u05e9\u05dc\u05d5\u05dd\nline two \U0001f600"
        events = self.js("frame", payload=channel.send_text(text).hex())["events"]
        self.assertEqual(events, [{"type": "message", "text": text}])
        back = bytes.fromhex(self.js("send", text=text[::-1])["payload"])
        self.assertEqual(self._from_js(channel, back), [MessageReceived(text[::-1])])

    def test_chat_python_calls_js(self) -> None:
        channel, opened = self._converse(python_initiates=True)
        self.assertEqual(len(opened), 2)
        py_open = next(o for o in opened if isinstance(o, HandshakeComplete))
        js_open = next(o for o in opened if isinstance(o, dict))
        self.assertEqual(py_open.safety_number, js_open["safetyNumber"])
        self.assertEqual(js_open["peerIdentity"], self.py.identity_public.hex())
        self._both_ways(channel)

    def test_chat_js_calls_python_with_rekey(self) -> None:
        channel, opened = self._converse(python_initiates=False)
        self.assertEqual(len(opened), 2)
        for i in range(1003):  # past the first Rekey() in this direction
            payload = bytes.fromhex(self.js("send", text=str(i))["payload"])
            self.assertEqual(self._from_js(channel, payload), [MessageReceived(str(i))])
        self._both_ways(channel)
        bye = bytes.fromhex(self.js("close")["payload"])
        self.assertTrue(channel.receive_frame(bye)[0].clean)

    def test_tampered_frame_from_python_fails_js(self) -> None:
        channel, _ = self._converse(python_initiates=True)
        frame = bytearray(channel.send_text("x"))
        frame[0] ^= 1
        [event] = self.js("frame", payload=bytes(frame).hex())["events"]
        self.assertEqual(event["type"], "failed")
        self.assertIn("failed authentication", event["reason"])

    def _smp(self, python_secret: str, js_secret: str, python_starts: bool) -> tuple[bool, bool]:
        channel, _ = self._converse(python_initiates=not python_starts)
        results: dict[str, bool] = {}
        if python_starts:
            to_js = [channel.smp_start(python_secret)]
        else:
            answer = self.js("smp", method="start", secret=js_secret)
            to_js = []
            to_py = answer["frames"]
        for _round in range(6):
            to_py = [] if python_starts or _round else to_py
            for frame in to_js:
                answer = self.js("smp", method="receive", body=self.js("frame", payload=frame.hex())["events"][0]["body"], peer="alice")
                to_py += answer["frames"]
                for ev in answer["events"]:
                    if ev["type"] == "smp-requested":
                        to_py += self.js("smp", method="respond", secret=js_secret)["frames"]
                    elif ev["type"] == "smp-result":
                        results["js"] = ev["equal"]
            to_js = []
            for frame in to_py:
                for ev in channel.receive_frame(bytes.fromhex(frame)):
                    if isinstance(ev, SendFrame):
                        to_js.append(ev.payload)
                    elif isinstance(ev, SMPRequested):
                        to_js.append(channel.smp_respond(python_secret))
                    elif isinstance(ev, SMPResult):
                        results["py"] = ev.equal
            python_starts = True  # after the first round both paths continue the same way
            to_py = []
            if len(results) == 2:
                break
        return results["py"], results["js"]

    def test_smp_same_secret_passes_both_directions(self) -> None:
        self.assertEqual(self._smp("our first flat", "our first flat", python_starts=True), (True, True))
        self.js.close()
        self.js = Peer()
        _, secret, static = _identity(40)
        self.js("identity", identity=secret.hex(), static=static.hex())
        self.assertEqual(self._smp("caf\u00e9", "cafe\u0301 ", python_starts=False), (True, True))

    def test_smp_different_secret_fails_on_both_sides(self) -> None:
        self.assertEqual(self._smp("blue", "green", python_starts=True), (False, False))

    def test_mail_both_ways(self) -> None:
        sealed = mail.seal(self.py, "alice", "bob", self.jsid.static_public, "mail \u263a\nline", 1700000000, 16384)
        opened = self.js("open", sender="alice", recipient="bob", payload=sealed.hex())
        self.assertEqual((opened["text"], opened["time"], opened["identityPub"]),
                         ("mail \u263a\nline", 1700000000, self.py.identity_public.hex()))
        self.assertIn("error", self.js("open", sender="mallory", recipient="bob", payload=sealed.hex()))
        payload = bytes.fromhex(self.js("seal", sender="bob", recipient="alice", staticPub=self.py.static_public.hex(),
                                        text="reply \u2603", time=1700000001, maxMail=16384)["payload"])
        back = mail.open_mail(self.py, "bob", "alice", payload)
        self.assertEqual((back.text, back.time, back.identity_pub), ("reply \u2603", 1700000001, self.jsid.identity_public))

    def test_binding_check_matches_python(self) -> None:
        self.assertEqual(verify_binding(bytes.fromhex(self.keys["binding"]), self.jsid.static_public),
                         self.jsid.identity_public)


class OneDefinition(SynchronousTestCase):
    """The JS side restates Python's constants and sentences: each checked equal here."""

    def setUp(self) -> None:
        self.js = Peer()
        self.addCleanup(self.js.close)

    def test_constants_equal(self) -> None:
        from relaychat.wire.nicknames import _NICK as _NICK_RE
        from relaychat.wire.nicknames import NICK_RULE
        from relaychat.client import MAX_UNANSWERED_OFFERS, channel
        from relaychat.client.seen import MAX_AGE
        from relaychat.crypto import identity

        js = self.js("constants")
        self.assertEqual(js, {
            "NICK_RULE": NICK_RULE, "NICK_RE": "^" + _NICK_RE.pattern.removesuffix(r"\Z") + "$",
            "STATIC_CONTEXT": identity.STATIC_CONTEXT.decode(), "REGISTER_CONTEXT": identity.REGISTER_CONTEXT.decode(),
            "POW_CONTEXT": identity.POW_CONTEXT.decode(), "MAX_POW_BITS": identity.MAX_POW_BITS,
            "E2E_PROTOCOL": channel.PROTOCOL_NAME, "E2E_PROLOGUE": channel.PROLOGUE_CONTEXT.decode(),
            "REKEY_INTERVAL": channel.REKEY_INTERVAL, "MAIL_PROTOCOL": mail.PROTOCOL_NAME,
            "MAIL_PROLOGUE": mail.PROLOGUE_CONTEXT.decode(), "MAX_UNANSWERED_OFFERS": MAX_UNANSWERED_OFFERS,
            "MAIL_HORIZON": MAX_AGE,
        })

    def test_smp_secret_normalisation_equal_for_every_bmp_character(self) -> None:
        """14.3: NFKC, then Python's str.strip(); the JS port strips exactly the same characters.

        Only characters assigned in Python's Unicode version: NFKC of a newer
        character (U+A7F1, say, in a browser with a newer ICU) differs by version.
        """
        import unicodedata

        from relaychat.crypto.smp import normalize_user_secret

        texts = [f"{chr(c)}a{chr(c)}" for c in range(0x10000)
                 if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"]
        self.assertEqual(self.js("normalize", texts=texts)["normalized"], [normalize_user_secret(t) for t in texts])

    def test_noise_patterns_equal(self) -> None:
        """noise.js restates the spec's pattern table (section 7) as noise.py does: the same table."""
        from relaychat.crypto.noise import PATTERNS

        js = self.js("patterns")["patterns"]
        self.assertEqual(js, {name: {"name": p.name, "preInitiator": list(p.pre_initiator), "preResponder": list(p.pre_responder),
                                     "messages": [list(m) for m in p.messages]} for name, p in PATTERNS.items()})

    def test_inert_text_and_nickname_sentences_equal(self) -> None:
        from relaychat.chat.inert import render_inert
        from relaychat.wire.nicknames import NICK_RULE

        texts = ["plain", "a\x1b[2Jb\x7f\x9b\x85", "\u202eevil\u2066\u200f", "\U000e0041tag", "zw\u200bsp\ufeff",
                 "\u200d\u200c", "line\nbreak\r\n", "e" + "\u0301" * 12, "\u2028\u2029", "<b>&amp;</b>", "\ud800"[:0] + "x"]
        self.assertEqual(self.js("inert", texts=texts)["shown"], [render_inert(t) for t in texts])
        names = ["alice", "a", "1abc", "bad nick", "x" * 25]
        expected = [None if ok else f"'{n}' is not a nickname: {NICK_RULE}."
                    for n, ok in zip(names, [True, False, False, False, False])]
        self.assertEqual(self.js("nick", names=names)["problems"], expected)


class WebCryptoKeys(SynchronousTestCase):
    def test_webcrypto_identity_registers_as_python_expects(self) -> None:
        from relaychat.crypto.identity import verify_registration, verify_static_sig

        js = Peer()
        self.addCleanup(js.close)
        keys = js("webcrypto_identity")
        identity_pub, static_pub, static_sig = (bytes.fromhex(keys[k]) for k in ("identityPub", "staticPub", "staticSig"))
        self.assertTrue(verify_static_sig(identity_pub, static_pub, static_sig))
        server_id, challenge = os.urandom(32), os.urandom(32)
        sig = bytes.fromhex(js("sign_registration", serverId=server_id.hex(), challenge=challenge.hex(), nick="carol")["sig"])
        self.assertTrue(verify_registration(server_id, challenge, identity_pub, static_pub, static_sig, "carol", sig))
