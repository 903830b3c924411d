"""The operator's log: relaychat's lines and every warning, without Twisted's chatter."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from twisted.logger import Logger, LogLevel, LogPublisher, PredicateResult, formatEvent
from twisted.python import log as legacy
from twisted.trial.unittest import SynchronousTestCase

from relaychat.logs import install, operator_filter, operator_predicate, twistd_observer
from tests.daemon import Daemon


def legacy_event(message: str, **extra: Any) -> dict[str, Any]:
    return {"log_namespace": "log_legacy", "log_level": LogLevel.info, "message": (message,), "system": "-",
            "log_format": "{log_text}", "log_text": message, **extra}


def event(namespace: str, level: LogLevel, text: str = "x") -> dict[str, Any]:
    return {"log_namespace": namespace, "log_level": level, "log_format": text}


class Predicate(SynchronousTestCase):
    def test_library_chatter_is_left_out(self) -> None:
        for chatter in (
            legacy_event("RelayFactory starting on 7733"),
            legacy_event("TLSMemoryBIOFactory (TLS) starting on 7734"),
            legacy_event("(TCP Port 7733 Closed)"),
            legacy_event("(UNIX Port /run/relaychat/admin.sock Closed)"),
            event("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.debug, "kex alg={kexAlg!r}"),
            event("twisted.conch.ssh.session.SSHSession", LogLevel.info, "channel open"),
            event("relaychat.admin.manhole.ConsoleFactory", LogLevel.info,
                  "disabling non-fixed-group key exchange algorithms because we cannot find moduli file"),
            event("relaychat", LogLevel.debug),
            event("autobahn.twisted.websocket.WebSocketServerProtocol", LogLevel.info,
                  "failing WebSocket opening handshake ('{reason}')"),
            event("autobahn.twisted.websocket.WebSocketServerProtocol", LogLevel.warn,
                  "dropping connection to peer {peer} with abort={abort}: {reason}"),
            event("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.error,
                  "Got remote error, code {code}\nreason: {reason}") | {"code": 11, "reason": b"disconnected by user"},
        ):
            self.assertEqual(operator_predicate(chatter), PredicateResult.no, chatter)

    def test_our_lines_and_every_warning_stay(self) -> None:
        for kept in (
            event("relaychat", LogLevel.info, "relaychat: tcp listener ... listening"),
            event("relaychat.admin", LogLevel.info, "admin X: logged in"),
            event("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.warn, "bad packet"),
            event("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.error,
                  "Got remote error, code {code}\nreason: {reason}") | {"code": 2, "reason": b"protocol error"},
            event("twisted.internet.base", LogLevel.critical, "Unhandled Error"),
            event("autobahn.twisted.websocket.WebSocketServerProtocol", LogLevel.error, "an autobahn bug"),
            legacy_event("RelayFactory starting on 7733", isError=1),
            legacy_event("something else said with log.msg"),
            event("twisted.scripts._twistd_unix.UnixAppLogger", LogLevel.info, "Server Shut Down."),
        ):
            self.assertNotEqual(operator_predicate(kept), PredicateResult.no, kept)

    def test_filter_and_verbose(self) -> None:
        seen: list[Any] = []
        publisher = LogPublisher()
        publisher.addObserver(operator_filter(seen.append))
        everything: list[Any] = []
        publisher.addObserver(operator_filter(everything.append, verbose=True))
        log = Logger(namespace="twisted.conch.ssh.userauth.SSHUserAuthServer", observer=publisher)
        log.debug("{user!r} trying auth {kind!r}", user=b"admin", kind=b"publickey")
        Logger(namespace="relaychat", observer=publisher).info("relaychat: ours")
        self.assertEqual([formatEvent(e) for e in seen], ["relaychat: ours"])
        self.assertEqual(len(everything), 2)


class Observer(SynchronousTestCase):
    def test_logfile_option_writes_the_file_in_twistds_format(self) -> None:
        path = Path(self.mktemp())
        observer = twistd_observer({"logfile": str(path), "nodaemon": True})
        observer(legacy_event("RelayFactory starting on 7733", log_time=0.0))
        observer(event("relaychat", LogLevel.info, "relaychat: listening") | {"log_time": 0.0})
        text = path.read_text()
        self.assertIn("[relaychat#info] relaychat: listening\n", text)
        self.assertNotIn("starting on", text)

    def test_install_defaults_the_logger_unless_one_was_given(self) -> None:
        options: dict[str, Any] = {"logger": None}
        install(options)
        self.assertEqual(options["logger"], "relaychat.logs.operator_log")
        chosen: dict[str, Any] = {"logger": "some.json.observer"}
        install(chosen)
        self.assertEqual(chosen["logger"], "some.json.observer")


class RealDaemonLog(SynchronousTestCase):
    def run_daemon(self, *args: str) -> str:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        daemon = Daemon("--data-dir", str(home / "data"), "--listen", "tcp:0:interface=127.0.0.1", *args,
                        cwd=str(home))
        self.addCleanup(daemon.stop)
        daemon.start()
        self.assertEqual(daemon.stop(), 0)
        return daemon.log()

    def test_default_log_has_our_listener_line_only(self) -> None:
        log = self.run_daemon()
        self.assertIn("relaychat: tcp listener 'tcp:0:interface=127.0.0.1' listening on", log)
        self.assertNotIn("starting on", log)
        self.assertNotIn("Port", log)

    def test_verbose_keeps_twisteds_lines(self) -> None:
        log = self.run_daemon("--verbose")
        self.assertIn("RelayFactory starting on", log)

    def test_json_logs_through_twistds_logger_option(self) -> None:
        import json

        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        daemon = Daemon("--data-dir", str(home / "data"), "--listen", "tcp:0:interface=127.0.0.1",
                        cwd=str(home), twistd_options=("--logger", "relaychat.logs.json_stdout"))
        self.addCleanup(daemon.stop)
        daemon.start()
        self.assertEqual(daemon.stop(), 0)
        records = [json.loads(line.lstrip("\x1e")) for line in daemon.log().splitlines() if line.strip()]
        texts = [formatEvent(r) for r in records]  # type: ignore[arg-type]
        self.assertTrue(any("listening on 127.0.0.1:" in t for t in texts), texts)
        self.assertFalse(any("starting on" in t for t in texts), texts)
