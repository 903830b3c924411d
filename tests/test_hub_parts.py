"""The hub's parts (issue 12, "modules one person can hold"): FRAME's checks as
pure functions, and components that reach the hub only through its named methods."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.connection import Session
from relaychat.server.frames import PAYLOAD_AT, check_frame, payload_size, run_is_strict, tail_padding
from relaychat.wire.errors import Code, ProtocolError
from tests.support import Harness

SID = b"0123456789abcdef"
SERVER = Path(__file__).resolve().parents[1] / "relaychat" / "server"
COMPONENTS = ("commands", "registration", "sessions", "mailbox", "frames")


def frame(payload: bytes) -> bytes:
    return b"FRAME " + SID + b" " + payload


class FrameChecks(SynchronousTestCase):
    def test_payload_size_takes_one_spelling_of_each_byte_string(self) -> None:
        for data in (b"a", b"ab", b"abc", b"\x00\xff" * 50):
            line = frame(base64.b64encode(data))
            self.assertEqual(payload_size(line), len(data))
        # "QR==" decodes to b"A" as "QQ==" does, with unused bits set: a second spelling
        for payload in (b"QR==", b"QUJ=", b"QUI", b"QU=I", b"QU I", b"QUJD\r", b"===="):
            self.assertEqual(payload_size(frame(payload)), -1, payload)

    def test_tail_padding_counts_padding_and_refuses_set_unused_bits(self) -> None:
        self.assertEqual([tail_padding(frame(p)) for p in (b"QUJD", b"QUI=", b"QQ==", b"QUJ=", b"QR==")],
                         [0, 1, 2, -1, -1])

    def test_a_run_is_strict_only_if_every_payload_is(self) -> None:
        for size in (10, 3000):  # translate for small frames, pybase64 for big ones
            good = [frame(base64.b64encode(bytes([i]) * size)) for i in range(5)]
            pads = sum(tail_padding(line) for line in good)
            self.assertTrue(run_is_strict(good, b"\n".join([*good, b""]), pads))
            for bad in (b"QU\x00D", b"QU=D", b"QU D", b"\xc3\xa9AA"):
                run = [*good[:2], frame(bad * (size // 4 or 1)), *good[2:]]
                self.assertFalse(run_is_strict(run, b"\n".join([*run, b""]), pads), (size, bad))

    def test_check_frame_says_what_is_wrong_or_gives_the_clean_line(self) -> None:
        h = Harness()
        a, b = h.connect(), h.connect()
        session = Session(SID, a[0], b[0], 0.0)
        session.open = True
        sessions = {SID: session}
        line_max, max_frame = PAYLOAD_AT + 8, 6

        def refusal(line: bytes, table: dict[bytes, Session] = sessions) -> Code:
            with self.assertRaises(ProtocolError) as caught:
                check_frame(line, table, line_max, max_frame)
            return caught.exception.code

        self.assertEqual(check_frame(frame(b"QUJD") + b"\r", sessions, line_max, max_frame), (session, frame(b"QUJD")))
        self.assertIs(refusal(b"FRAME " + SID), Code.SYNTAX)
        self.assertIs(refusal(b"FRAME abc QUJD"), Code.SYNTAX)
        self.assertIs(refusal(frame(b"QUJD"), {}), Code.NO_SESSION)
        self.assertIs(refusal(frame(b"QU=D")), Code.SYNTAX)
        self.assertIs(refusal(frame(b"QUJDQUJDQUJD")), Code.TOO_BIG)  # 9 bytes once decoded
        session.open = False
        self.assertIs(refusal(frame(b"QUJD")), Code.NO_SESSION)


class Components(SynchronousTestCase):
    def test_components_use_no_underscore_name_of_another_object(self) -> None:
        """They talk to the hub through named methods (send, bye, await_answer, ...)."""
        for name in COMPONENTS:
            tree = ast.parse((SERVER / f"{name}.py").read_text())
            reads = [
                f"{name}.py:{node.lineno} .{node.attr}" for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ]
            self.assertEqual(reads, [])

    def test_each_command_is_handled_by_the_component_that_holds_its_state(self) -> None:
        hub = Harness().hub
        owners = {name: getattr(handler, "__self__", None) for name, (handler, _) in hub.commands.handlers.items()}
        self.assertEqual({n for n, o in owners.items() if o is hub.registration},
                         {"HELLO", "REGISTER", "PROVE", "LOOKUP", "WHO"})
        self.assertEqual({n for n, o in owners.items() if o is hub.sessions}, {"OFFER", "ACCEPT", "DECLINE", "CLOSE"})
        self.assertEqual({n for n, o in owners.items() if o is hub.mailbox}, {"MAIL", "ACK"})
        self.assertIsNone(owners["FRAME"])  # the hub's hot path

    def test_offers_are_the_sessions_components_and_time_out(self) -> None:
        h = Harness()
        alice, bob = h.register("alice"), h.register("bob")
        self.assertEqual(h.ask(*alice, "OFFER bob")[0].split(" ")[:2], ["OK", "OFFER"])
        self.assertIs(h.hub.offers, h.hub.sessions.offers)
        self.assertEqual(len(h.hub.offers), 1)
        bob[1].lines()
        h.now += h.hub.limits.offer_timeout + 1
        h.hub.tick(h.now)
        self.assertEqual(h.hub.offers, {})
        self.assertEqual([line.split(" ")[0] + " " + line.split(" ")[2] for line in bob[1].lines()], ["CLOSED timeout"])


