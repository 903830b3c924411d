"""Configuration: embedded defaults, the example file, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import DEFAULT_BACKLOG, DEFAULT_DRAIN_GRACE, DEFAULT_ENDPOINT, ConfigError, load
from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy
from relaychat.startup import StartupError
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
        self.assertEqual((config.backlog, config.drain_grace, config.metrics.endpoint),
                         (DEFAULT_BACKLOG, DEFAULT_DRAIN_GRACE, None))

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

    def test_near_misses_are_suggested(self) -> None:
        for text, message in (
            ("[limits]\nmax_lines = 3\n", "unknown key limits.max_lines (did you mean max_line?)"),
            ("[limit]\nmax_line = 3\n", "unknown section [limit] (did you mean [limits]?)"),
            ("[mailbox]\nmax_mails = 3\n", "unknown key mailbox.max_mails (did you mean max_mail?)"),
            ("[relay]\ndrain_grase = 3\n", "unknown key relay.drain_grace".replace("grace", "grase")
             + " (did you mean drain_grace?)"),
            ("[metric]\n", "unknown section [metric] (did you mean [metrics]?)"),
            ("[wat]\n", "unknown section [wat]"),
            ("[[listener]]\nkind = 'websockets'\nendpoint = 'tcp:1'\n", "(did you mean websocket?)"),
        ):
            with self.assertRaises(ConfigError) as caught:
                load(self.write(text))
            self.assertTrue(str(caught.exception).endswith(message), str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            load(self.write("[wat]\n"))
        self.assertNotIn("did you mean", str(caught.exception))

    def test_relay_section(self) -> None:
        config = load(self.write("[relay]\nbacklog = 128\ndrain_grace = 5\n[metrics]\n"
                                 "endpoint = 'tcp:9733:interface=127.0.0.1'\n"))
        self.assertEqual((config.backlog, config.drain_grace, config.metrics.endpoint),
                         (128, 5.0, "tcp:9733:interface=127.0.0.1"))
        self.assertIsNone(load(None).metrics.endpoint)
        for text, message in (
            ("[relay]\nbacklog = 0\n", "relay.backlog must be at least 1"),
            ("[relay]\nbacklog = 'big'\n", "relay.backlog: expected an integer"),
            ("[relay]\ndrain_grace = -1\n", "relay.drain_grace must not be negative"),
            ("[metrics]\nendpoint = 'tcp:metrics'\n", "metrics.endpoint 'tcp:metrics': the port must be a number"),
            ("[manhole]\nendpoint = 'tcp:ssh'\n", "manhole.endpoint 'tcp:ssh': the port must be a number"),
        ):
            with self.assertRaises(ConfigError) as caught:
                load(self.write(text))
            self.assertIn(message, str(caught.exception))

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

    def test_config_errors_are_one_line_start_up_errors(self) -> None:
        path = self.mktemp()
        Path(path).write_text("[limits]\nmax_lines = 1\n")
        with self.assertRaises(StartupError) as caught:
            Options().parseOptions(["--config", path])
        self.assertEqual(str(caught.exception),
                         f"relaychat: {path}: unknown key limits.max_lines (did you mean max_line?)")
        self.assertEqual(caught.exception.code, str(caught.exception))  # SystemExit prints it, exit status 1

    def test_node_names_the_cluster_node_of_a_shared_file(self) -> None:
        path = self.mktemp()
        Path(path).write_text('[cluster]\nredis = "tcp:127.0.0.1:6379"\n')
        with self.assertRaises(StartupError) as caught:
            Options().parseOptions(["--config", path])
        self.assertIn("cluster.node: a name of 1 to 32", str(caught.exception))
        options = Options()
        options.parseOptions(["--config", path, "--node", "3"])
        self.assertEqual((options.config.cluster.redis, options.config.cluster.node), ("tcp:127.0.0.1:6379", "3"))
        with self.assertRaises(StartupError) as caught:
            Options().parseOptions(["--config", path, "--node", "Not A Name"])
        self.assertIn("cluster.node: a name of 1 to 32", str(caught.exception))
        Path(path).write_text("[relay]\n")
        with self.assertRaises(StartupError) as caught:
            Options().parseOptions(["--config", path, "--node", "3"])
        self.assertIn("--node needs a [cluster] section with redis", str(caught.exception))
        with self.assertRaises(StartupError):
            Options().parseOptions(["--node", "3"])

    def test_listen_endpoints_are_checked(self) -> None:
        with self.assertRaises(StartupError) as caught:
            Options().parseOptions(["--listen", "tcp:notaport"])
        self.assertEqual(str(caught.exception), "relaychat: --listen 'tcp:notaport': the port must be a number "
                                                "from 0 to 65535, not 'notaport'")
