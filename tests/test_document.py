"""docs/protocol.rst and the relay agree (issue 10, point 9): one test per
item that was found to differ, each saying which way it was settled."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import ConfigError, parse
from relaychat.server.limits import Limits, MailPolicy
from relaychat.wire.codec import b64encode
from tests.support import Harness

DOC = " ".join((Path(__file__).resolve().parents[1] / "docs" / "protocol.rst").read_text().split())


class Document(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(mail=MailPolicy(max_mail=100))
        self.alice = self.h.register("Alice")
        self.bob = self.h.register("bob")

    def test_an_empty_line_or_a_leading_space_is_syntax(self) -> None:
        # The document was right ("Leading or trailing spaces and empty tokens are a syntax error").
        self.assertIn("Leading or trailing spaces and empty tokens are a ``syntax`` error", DOC)
        for line in ("", " PING", "  ", "\r"):
            self.assertEqual(self.h.ask(*self.alice, line), ["ERR - syntax a line starts with a command"], repr(line))

    def test_a_frame_error_names_the_sid_when_there_is_one(self) -> None:
        # The relay was right; the document now says so.
        self.assertIn("ERR FRAME syntax <sid> ...", DOC)
        sid = self.h.open_session(self.alice, self.bob, "bob")
        self.assertEqual(self.h.ask(*self.alice, f"FRAME {sid} a b")[0],
                         f"ERR FRAME syntax {sid} FRAME takes a session id and one payload")
        self.assertEqual(self.h.ask(*self.alice, f"FRAME {sid} QUJ=")[0],
                         f"ERR FRAME syntax {sid} the payload is not base64 (RFC 4648, with padding)")
        self.assertEqual(self.h.ask(*self.alice, "FRAME x!y QUJD")[0],
                         "ERR FRAME syntax - FRAME takes a session id and one payload")

    def test_a_ping_token_is_visible_ascii_and_echoed(self) -> None:
        # The relay echoed CR and any Unicode; it now refuses them, as the document says.
        self.assertIn("1 to 64 visible ASCII characters", DOC)
        self.assertEqual(self.h.ask(*self.alice, "PING " + "~" * 64), ["OK PING " + "~" * 64])
        for token in ("a\rb", "é", "\x1b[2J", "x" * 65):
            self.assertEqual(self.h.ask(*self.alice, "PING " + token)[0].split(" ")[:3], ["ERR", "PING", "syntax"])

    def test_the_mail_event_names_the_sender_as_shown(self) -> None:
        # The relay gave the canonical form; every event now gives the display form.
        self.assertIn("``sender_nick`` is the sender's display form", DOC)
        self.assertEqual(self.h.ask(*self.alice, "MAIL bob QUJD"), ["OK MAIL 1"])
        self.assertEqual(self.bob[1].lines(), [f"MAIL 1 Alice {int(self.h.now)} QUJD"])
        self.h.hub.disconnect(self.bob[0], self.h.now)
        again = self.h.register("bob")
        self.h.hub.disconnect(again[0], self.h.now)
        client, link = self.h.connect()
        self.h.hello(client, link)
        from tests.support import identity
        self.assertEqual(self.h.claim(client, link, "bob", identity("bob"))[1:], [f"MAIL 1 Alice {int(self.h.now)} QUJD"])

    def test_frame_and_mail_limits_count_decoded_bytes(self) -> None:
        # The check counted encoded characters (max_mail + 2 bytes passed); it now counts decoded bytes.
        self.assertIn("at most ``max_mail`` bytes decoded", DOC)
        self.assertIn("decodes to at most ``max_frame`` bytes", DOC)
        ok, over = b64encode(b"x" * 100), b64encode(b"x" * 101)
        self.assertEqual(len(over), len(b64encode(b"x" * 102)))  # the same characters, two more bytes
        self.assertEqual(self.h.ask(*self.alice, f"MAIL bob {over}")[0],
                         "ERR MAIL too-big a mail payload is at most 100 bytes once decoded")
        self.assertEqual(self.h.ask(*self.alice, f"MAIL bob {ok}")[0].split(" ")[:2], ["OK", "MAIL"])
        h = Harness(Limits(pow_bits=0, max_frame=100))
        a, b = h.register("alice"), h.register("bob")
        sid = h.open_session(a, b, "bob")
        self.assertEqual(h.ask(*a, f"FRAME {sid} {b64encode(bytes(101))}"),
                         [f"ERR FRAME too-big {sid} a frame payload is at most 100 bytes once decoded"])
        self.assertEqual(h.ask(*a, f"FRAME {sid} {b64encode(bytes(100))}"), [])
        self.assertEqual(b[1].lines(), [f"FRAME {sid} {b64encode(bytes(100))}"])

    def test_a_max_line_that_cannot_carry_a_frame_or_a_mail_is_refused(self) -> None:
        # The config accepted it.
        cases = {
            "[limits]\nmax_line = 4096\n": "limits.max_line (4096) cannot carry a FRAME of max_frame (32768) bytes: "
                                           "such a line is 43715 bytes; raise max_line to at least 43715 or lower max_frame",
            "[limits]\nmax_line = 4096\nmax_frame = 1024\n":
                "mailbox.max_mail (16384) does not fit in max_line (4096): such a MAIL line is 21878 bytes; "
                "raise limits.max_line to at least 21878 or lower max_mail",
        }
        import tomllib
        for text, message in cases.items():
            with self.assertRaises(ConfigError) as caught:
                parse(tomllib.loads(text), base=Path("."))
            self.assertEqual(str(caught.exception), message)
        parse(tomllib.loads("[limits]\nmax_line = 4096\nmax_frame = 1024\n[mailbox]\nmax_mail = 2048\n"), base=Path("."))
        self.assertTrue(re.search(r"``max_line`` must carry", DOC))
