"""No input raises out of a handler (issue 10, point 3): an unexpected
exception is ERR <CMD> internal, logged once without its message, and the
replies around it in the same read are all there."""

from __future__ import annotations

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.connection import State
from relaychat.wire.codec import INT64_MAX, EncodingError, decimal
from tests.support import Harness, identity, register_line

SECRET = "c2VjcmV0IGtleSBtYXRlcmlhbA=="


class InternalErrors(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.client, self.link = self.h.register("alice")

    def broken(self, name: str) -> None:
        handler, allowed = self.h.hub.commands.handlers[name]

        def explode(*args: object) -> None:
            raise RuntimeError(f"a bug that mentions {SECRET}")
        self.h.hub.commands.handlers[name] = (explode, allowed)

    def test_a_bug_is_an_internal_error_and_the_read_goes_on(self) -> None:
        self.broken("WHO")
        with capturedLogs() as events:
            self.h.send(self.client, "PING before", "WHO", "PING after")
        self.assertEqual(self.link.lines(), [
            "OK PING before",
            "ERR WHO internal the relay failed to handle this; it had no effect",
            "OK PING after",
        ])
        errors = [e for e in events if e.get("log_level") is LogLevel.error]
        self.assertEqual(len(errors), 1)
        text = formatEvent(errors[0])
        self.assertIn("internal error in WHO: RuntimeError", text)
        self.assertIn("explode", text)  # where it was raised
        self.assertNotIn(SECRET, text)  # never the message: it may hold a key or a payload
        self.assertFalse(self.link.closed)
        self.assertEqual(self.h.ask(self.client, self.link, "PING still"), ["OK PING still"])

    def test_a_bug_in_prove_leaves_the_connection_as_it_could_be(self) -> None:
        client, link = self.h.connect("10.0.0.9")
        self.h.hello(client, link)
        self.assertEqual(self.h.ask(client, link, register_line("bob", identity("bob")))[0].split(" ")[:2],
                         ["OK", "REGISTER"])
        self.assertIs(client.state, State.CHALLENGED)
        self.broken("PROVE")
        with capturedLogs():
            self.assertEqual(self.h.ask(client, link, "PROVE " + "A" * 86 + "=="),
                             ["ERR PROVE internal the relay failed to handle this; it had no effect"])
        self.assertIs(client.state, State.GREETED)  # the half-done registration is abandoned
        self.assertIsNone(client.claim)
        self.assertEqual(self.h.hub.stats.extra["internal_errors"], 1)


class Integers(SynchronousTestCase):
    def test_only_ascii_digits_without_leading_zeros(self) -> None:
        for text in ("0", "7", "42", str(INT64_MAX)):
            self.assertEqual(decimal(text), int(text))
        for text in ("²", "١", "٣", "01", "00", "+1", "-1", " 1", "1 ", "1_0", "", "1.0", "0x1",
                     str(INT64_MAX + 1), "9" * 20, "１"):
            with self.assertRaises(EncodingError, msg=repr(text)):
                decimal(text)

    def test_ack_of_any_other_spelling_is_syntax_and_nothing_is_deleted(self) -> None:
        h = Harness()
        alice, bob = h.register("alice"), h.register("bob")
        self.assertEqual(h.ask(*alice, "MAIL bob QUJD"), ["OK MAIL 1"])
        for text in ("²", "١", "01", "+1", "1_0", "18446744073709551616"):
            self.assertEqual(h.ask(*bob, f"ACK {text}"), ["ERR ACK syntax a mail id is a decimal number"], text)
        bob[1].lines()
        self.assertEqual(h.ask(*bob, "ACK 1"), ["OK ACK 1"])


class PortsToo(SynchronousTestCase):
    def test_a_relay_address_port_is_ascii_digits(self) -> None:
        from relaychat.client.endpoints import _parse_spec

        self.assertEqual(_parse_spec("tcp:relay.example:7733")[2], 7733)  # type: ignore[index]
        for port in ("７７３３", "²", "077", "0", "65536", "+1"):
            self.assertIsNone(_parse_spec(f"tcp:relay.example:{port}"), port)
