"""The output attacker against a real ``twistd relaychat`` (issue 10, point 1).

bench/attack.py: 300 registered clients online, a registered pair playing
ping-pong, and three connections asking for replies as fast as they can
without ever reading them. The benchmark runs it for 20 s (bench/run.py,
the "attack" figures); here it runs RELAYCHAT_ATTACK_SECONDS (default 4),
long enough for each attacker to fill every buffer between it and the
relay many times over (each pushes megabytes per second while read).
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.attack import AttackRelay, attack

SECONDS = float(os.environ.get("RELAYCHAT_ATTACK_SECONDS", "4"))


class OutputAttack(SynchronousTestCase):
    def test_the_relay_holds_little_and_others_are_served(self) -> None:
        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        relay = AttackRelay(home)
        self.addCleanup(relay.stop)
        relay.start()
        result = attack(relay.port, relay.pid, duration=SECONDS, users=300)
        self.assertLess(result["growth"], 16 << 20, result)
        self.assertLess(result["attacked"]["p99_us"], 50_000, result)
        self.assertGreater(result["attacked"]["count"], 100, result)
        attackers = result["attackers"]
        self.assertTrue(attackers["unregistered"]["ended_by_relay"], result)  # WHO/LOOKUP unregistered: violations
        self.assertFalse(attackers["pings"]["ended_by_relay"], result)  # bounded, not ended, within output_timeout
        for report in attackers.values():
            # each really pushed: a megabyte, unless the relay ended it first (as it must the unregistered one)
            self.assertGreater(report["bytes_sent"], 0 if report["ended_by_relay"] else 1 << 20, result)


class OutputAttackOnEveryKind(SynchronousTestCase):
    """The same attackers over TLS, WebSocket and WSS: the bound is the relay's, not the transport's."""

    def test_no_listener_kind_lets_a_reader_that_never_reads_grow_the_relay(self) -> None:
        import socket
        import ssl
        import threading
        import time

        from bench.attack import register_all
        from relaychat.certificates import write_self_signed
        from tests.daemon import Daemon, register
        from tests.endings_support import Channel
        from tests.listener_support import client_frame, listening, toml_listener
        from tests.support import identity

        home = Path(self.mktemp()).resolve()
        home.mkdir(parents=True)
        cert, _, _ = write_self_signed(home / "tls", ["localhost"])
        tls = {"certificate": "tls/cert.pem", "private_key": "tls/key.pem"}
        loopback = "tcp:0:interface=127.0.0.1"
        (home / "relaychat.toml").write_text(
            '[relay]\ndata_dir = "data"\n' + toml_listener("tcp", loopback) + toml_listener("tls", loopback, **tls)
            + toml_listener("websocket", loopback) + toml_listener("websocket", loopback, **tls)
            + "[limits]\npow_bits = 0\nconnections_per_address = 200\n"
            + "[nicknames]\nregistrations_per_address_per_hour = 1000\n"  # 100 users from one address
        )
        daemon = Daemon("--config", str(home / "relaychat.toml"), cwd=str(home))
        self.addCleanup(daemon.stop)
        daemon.start(listeners=4)
        ports = dict(zip(("tcp", "tls", "websocket", "wss"), (port for _, port in listening(daemon.log()))))
        online = register_all(ports["tcp"], [f"user{i}" for i in range(100)])  # WHO answers 100+ lines
        self.addCleanup(lambda: [c.close() for c in online])

        def rss() -> int:
            with open(f"/proc/{daemon.process.pid}/status") as f:  # type: ignore[union-attr]
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

        attackers: list[tuple[Channel, bytes]] = []
        for kind in ("tls", "websocket", "wss"):
            pinger = Channel(kind, ports[kind], cafile=cert)
            self.assertEqual(pinger.ask("HELLO 1").split(" ")[:2], ["OK", "HELLO"])
            whoer = Channel(kind, ports[kind], cafile=cert)
            self.assertEqual(register(whoer.ask, f"w{kind}", identity(f"w{kind}")), f"OK PROVE w{kind} new 0")
            for channel, line in ((pinger, b"PING " + b"p" * 64), (whoer, b"WHO")):
                one = client_frame(line) if channel.websocket else line + b"\n"
                attackers.append((channel, one * (65536 // len(one))))
        self.addCleanup(lambda: [c.close() for c, _ in attackers])
        time.sleep(0.5)
        before = rss()
        stop = threading.Event()
        pushed = [0] * len(attackers)

        def flood(index: int) -> None:
            channel, chunk = attackers[index]
            channel.sock.settimeout(0.2)
            at = 0
            while not stop.is_set():
                try:
                    sent = channel.sock.send(chunk[at:] if at else chunk)
                except (socket.timeout, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    return
                pushed[index] += sent
                at = (at + sent) % len(chunk)

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(len(attackers))]
        for thread in threads:
            thread.start()
        peak = before
        deadline = time.monotonic() + SECONDS
        try:
            while time.monotonic() < deadline:
                time.sleep(0.1)
                peak = max(peak, rss())
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        self.assertLess(peak - before, 16 << 20, (peak - before, pushed))
        self.assertTrue(all(p > 1 << 20 for p in pushed), pushed)  # every attacker really pushed
        tcp = online[0]
        tcp.send(b"PING alive\n")
        self.assertEqual(tcp.expect(b"OK PING"), b"OK PING alive")
