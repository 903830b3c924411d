"""Client-side bounds: stated in the README as the code enforces them, and refused loudly end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Generator

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from relaychat.chat.terminal import SCROLLBACK_ROWS
from relaychat.client import contacts, known_relays, mail_receipts, seen
from relaychat.client.errors import HandshakeFailed
from relaychat.client.values import MailProblem
from relaychat.crypto import pins
from relaychat.crypto.pins import KnownPeers
from tests.memory_network import driven
from tests.test_client_e2e import Inbox, RelayTestCase

ROOT = Path(__file__).resolve().parents[1]


class DocumentedBounds(SynchronousTestCase):
    def setUp(self) -> None:
        self.readme = re.sub(r"\s+", " ", (ROOT / "README.rst").read_text(encoding="utf-8"))
        self.static = (ROOT / "relaychat" / "web" / "static")

    def assertStated(self, value: int, near: str) -> None:
        text = f"{value:,}"
        where = self.readme.find(near)
        self.assertNotEqual(where, -1, near)
        self.assertIn(text, self.readme[where:where + 400], f"{text} near {near!r}")

    def test_each_profile_file_has_its_bound_in_the_readme(self) -> None:
        self.assertStated(pins.MAX_PINS_PER_RELAY, "``known_peers``")
        self.assertStated(known_relays.MAX_RELAYS, "``known_relays``")
        self.assertStated(contacts.MAX_CONTACTS_PER_RELAY, "``contacts``")
        self.assertStated(seen.MAX_ENTRIES, "``seen_mail``")
        self.assertStated(mail_receipts.MAX_SENT, "``sent_mail``")
        self.assertStated(mail_receipts.MAX_OWED, "``sent_mail``")
        self.assertStated(SCROLLBACK_ROWS, "The screen keeps")
        self.assertIn(f"{seen.MAX_AGE // 86400} days", self.readme)

    def test_the_browser_uses_the_same_pin_bound_and_states_its_own(self) -> None:
        self.assertIn(f"MAX_PINS_PER_RELAY = {pins.MAX_PINS_PER_RELAY};", (self.static / "pins.js").read_text(encoding="utf-8"))
        client = (self.static / "client.js").read_text(encoding="utf-8")
        found = re.search(r"MAX_SEEN_MAIL = (\d+)", client)
        assert found is not None
        self.assertStated(int(found.group(1)), "The browser client")
        app = (self.static / "app.js").read_text(encoding="utf-8")
        for name in ("MAX_LINES", "MAX_MAIL_ITEMS", "MAX_ENDED"):
            value = re.search(rf"const {name} = (\d+);", app)
            assert value is not None, name
            self.assertStated(int(value.group(1)), "The browser client")


class FirstContactAtTheBound(RelayTestCase):
    """End to end: at the pin bound a first contact is refused, loudly, and loses nothing."""

    @driven
    def test_a_call_to_a_first_contact_fails_with_a_sentence(self) -> Generator[Deferred[Any], Any, None]:
        yield self.connect("bob")
        alice = yield self.connect("alice")
        self.patch(KnownPeers, "max_per_relay", 0)
        error = yield self.assertFailure(alice.call("bob"), HandshakeFailed)
        self.assertIn("none is dropped to make room", str(error))
        self.assertIsNone(alice.pinned_key("bob"))

    @driven
    def test_a_mail_from_a_first_contact_is_not_shown_and_stays_on_the_relay(self) -> Generator[Deferred[Any], Any, None]:
        bob = yield self.connect("bob")
        yield bob.quit()
        alice = yield self.connect("alice")
        yield alice.send_mail("bob", "hello")
        self.patch(KnownPeers, "max_per_relay", 0)
        bob = yield self.connect("bob")
        mail = Inbox(self.clock)
        bob.observe_mail(mail)
        problem = yield mail.get()
        self.assertIsInstance(problem, MailProblem)
        self.assertIn("is not shown", str(problem.error))
        yield bob.ping()
        self.assertEqual(len(self.store.pending_mail("bob")), 1, "kept for when there is room")


class ClientLog(SynchronousTestCase):
    def test_client_log_is_rotated_and_bounded(self) -> None:
        import stat as stat_module

        from twisted.logger import LogLevel

        from relaychat.chat import cli

        self.patch(cli, "LOG_BYTES", 4096)
        directory = Path(self.mktemp())
        observer = cli.log_observer(directory)
        for n in range(500):  # what a hostile relay could make the program warn about, without end
            observer({"log_level": LogLevel.warn, "log_format": "a warning from the network {n} " + "x" * 80,
                      "n": n, "log_namespace": "test", "log_time": 0.0})
        observer({"log_level": LogLevel.info, "log_format": "info is not kept", "log_time": 0.0})
        files = sorted(p.name for p in directory.iterdir())
        self.assertEqual(files, ["client.log", "client.log.1"])
        for name in files:
            self.assertLessEqual((directory / name).stat().st_size, 4096 + 200)
            self.assertEqual(stat_module.S_IMODE((directory / name).stat().st_mode), 0o600)
        self.assertIn("network 499", (directory / "client.log").read_text())
        self.assertIn("client.log.1", cli.log_observer.__doc__ or "")
