"""The README's table of what the client keeps states the bounds the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.chat.terminal import SCROLLBACK_ROWS
from relaychat.client import contacts, known_relays, mail_receipts, seen
from relaychat.crypto import pins

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
