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
            self.assertGreater(report["bytes_sent"], 1 << 20, result)  # each really pushed
