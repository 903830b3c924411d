"""What the chat program remembers in the profile directory: the relay
(``client.toml``) and the nickname, and the first-run question."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from twisted.trial import unittest

from relaychat.chat import cli


class RememberedServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def options(self, *argv: str) -> cli.Options:
        options = cli.Options()
        options.parseOptions(list(argv))
        return options

    def test_nothing_remembered_means_localhost(self) -> None:
        self.assertEqual(cli.choose_server(self.options(), self.dir), cli.parse_server("localhost"))

    def test_the_last_relay_is_used_without_server(self) -> None:
        spec = "tls:relay.example:7734:fingerprint=sha256:" + "ab" * 32
        cli.remember_server(self.dir, cli.parse_server(spec))
        self.assertEqual(cli.choose_server(self.options(), self.dir), cli.parse_server(spec))
        self.assertEqual(os.stat(self.dir / cli.PROFILE_FILE).st_mode & 0o777, 0o600)
        # A documented TOML file: comments say what it is, the value is plain.
        text = (self.dir / cli.PROFILE_FILE).read_text()
        self.assertTrue(text.startswith("# relaychat's memory of where you chat"))
        self.assertEqual(tomllib.loads(text), {"server": spec})

    def test_server_option_wins(self) -> None:
        cli.remember_server(self.dir, cli.parse_server("old.example:7000"))
        chosen = cli.choose_server(self.options("--server", "new.example"), self.dir)
        self.assertEqual(chosen.label, "new.example:7733")

    def test_host_port_and_ipv6_round_trip(self) -> None:
        for spec in ("relay.example:7000", "[::1]:7733", "tcp:host=relay.example:port=7733"):
            cli.remember_server(self.dir, cli.parse_server(spec))
            self.assertEqual(cli.remembered_server(self.dir), cli.parse_server(spec))

    def test_a_damaged_file_is_ignored(self) -> None:
        for text in ("server = [", "server = 5", 'server = "tcp:what:is:this"', ""):
            (self.dir / cli.PROFILE_FILE).write_text(text)
            self.assertIsNone(cli.remembered_server(self.dir), text)


class FirstRunQuestionTests(unittest.TestCase):
    def test_the_rule_is_said_before_asking(self) -> None:
        told: list[str] = []
        asked: list[str] = []

        def ask(prompt: str) -> str:
            asked.append(prompt)
            return "alice"

        self.assertEqual(cli.ask_nick(Path(self.mktemp()), ask=ask, tell=told.append), "alice")
        self.assertEqual(told, [cli.NICK_QUESTION])
        self.assertIn("2 to 24 letters", told[0])
        self.assertIn("starting with a letter", told[0])
        self.assertIn("a1ice for alice", told[0])
        self.assertEqual(asked, ["Nickname: "])
