"""Configuration: embedded defaults, the example file, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import DEFAULT_ENDPOINT, ConfigError, load
from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy
from relaychat.tap import Options

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "relaychat.toml"


class Loading(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        Path(path).write_text(text)
        return path

    def test_embedded_defaults(self) -> None:
        config = load(None)
        self.assertEqual([(l.kind, l.endpoint) for l in config.listeners], [("tcp", DEFAULT_ENDPOINT)])
        self.assertEqual(config.limits, Limits())
        self.assertTrue(str(config.data_dir).endswith("relaychat"))

    def test_example_file_loads_and_states_the_defaults(self) -> None:
        config = load(str(EXAMPLE))
        self.assertEqual(config.limits, Limits())
        self.assertEqual(config.mail, MailPolicy())
        self.assertEqual(config.nicknames, NicknamePolicy())
        self.assertEqual(config.listeners[0].endpoint, DEFAULT_ENDPOINT)

    def test_every_limit_is_in_the_example_file(self) -> None:
        text = EXAMPLE.read_text()
        for name in list(vars(Limits())) + list(vars(MailPolicy())) + list(vars(NicknamePolicy())):
            self.assertIn(f"\n{name} = ", text, name)

    def test_unknown_keys_are_named(self) -> None:
        for text, key in (
            ("[limits]\nmax_lin = 3\n", "limits.max_lin"),
            ("[relay]\ndatadir = 'x'\n", "relay.datadir"),
            ("[wat]\n", "wat"),
            ("[[listener]]\nkind = 'tcp'\nendpoint = 'tcp:1'\nport = 3\n", "listener[0].port"),
        ):
            with self.assertRaises(ConfigError) as caught:
                load(self.write(text))
            self.assertIn(key, str(caught.exception))

    def test_bad_values_are_named(self) -> None:
        for text, words in (
            ("[limits]\nmax_line = 'big'\n", "limits.max_line: expected an integer"),
            ("[limits]\nmax_line = 2.5\n", "limits.max_line: expected an integer"),
            ("[limits]\nmax_line = true\n", "limits.max_line"),
            ("[limits]\nmax_line = 10\n", "max_line must be at least 1024"),
            ("[limits]\npow_bits = 25\n", "pow_bits must be at most 24"),
            ("[mailbox]\nmax_mail = 0\n", "mailbox.max_mail must be positive"),
            ("[[listener]]\nkind = 'carrier-pigeon'\nendpoint = 'x'\n", "listener[0].kind"),
            ("[[listener]]\nkind = 'tcp'\n", "listener[0].endpoint is required"),
            ("limits = 3\n", "limits must be a table"),
            ("not toml [", "not valid TOML"),
        ):
            with self.assertRaises(ConfigError) as caught:
                load(self.write(text))
            self.assertIn(words, str(caught.exception))

    def test_floats_accept_integers(self) -> None:
        config = load(self.write("[limits]\noffer_timeout = 5\n"))
        self.assertEqual(config.limits.offer_timeout, 5.0)

    def test_relative_paths_are_relative_to_the_file(self) -> None:
        path = self.write("[relay]\ndata_dir = 'state'\n")
        self.assertEqual(load(path).data_dir, Path(path).resolve().parent / "state")

    def test_missing_file(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            load("/nonexistent/relaychat.toml")
        self.assertIn("cannot read", str(caught.exception))


class CommandLine(SynchronousTestCase):
    def test_overrides(self) -> None:
        options = Options()
        options.parseOptions(["--data-dir", "/tmp/x", "--listen", "tcp:1234", "--listen", "tcp:1235"])
        self.assertEqual(str(options.config.data_dir), "/tmp/x")
        self.assertEqual([l.endpoint for l in options.config.listeners], ["tcp:1234", "tcp:1235"])

    def test_config_errors_become_usage_errors(self) -> None:
        path = self.mktemp()
        Path(path).write_text("[limits]\nnope = 1\n")
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--config", path])
        self.assertIn("unknown key limits.nope", str(caught.exception))
