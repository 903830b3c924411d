"""Durations follow a monotonic clock; the system clock only dates mail
(issue 10, point 5): jumps of the wall clock by +700 s and -3600 s."""

from __future__ import annotations

from twisted.internet.selectreactor import SelectReactor
from twisted.trial.unittest import SynchronousTestCase

from relaychat.server.clock import make_monotonic
from relaychat.server.limits import Limits
from tests.support import Harness

JUMPS = (700.0, -3600.0)


class HubTimeouts(SynchronousTestCase):
    def test_wall_jumps_neither_fire_nor_stop_time_outs(self) -> None:
        for jump in JUMPS:
            h = Harness(Limits(pow_bits=0, idle_timeout=600.0, registration_timeout=30.0))
            alice, alice_link = h.register("alice")
            newcomer, new_link = h.connect()
            h.wall_offset = jump  # the system clock steps; the monotonic clock does not
            h.now += 1
            h.hub.tick(h.now)
            self.assertFalse(alice_link.closed or new_link.closed, jump)  # +700: nobody is idle yet
            h.now += 30
            h.hub.tick(h.now)
            self.assertEqual(new_link.lines(), ["BYE timeout registration took too long"], jump)  # -3600: still on time
            h.now += 570
            h.hub.tick(h.now)
            self.assertEqual(alice_link.lines(), ["BYE idle no activity"], jump)

    def test_mail_is_dated_by_the_wall_clock(self) -> None:
        for jump in JUMPS:
            h = Harness()
            sender = h.register("alice")
            bob = h.register("bob")
            h.wall_offset = jump
            self.assertEqual(h.ask(*sender, "MAIL bob QUJD"), ["OK MAIL 1"])
            self.assertEqual(bob[1].lines(), [f"MAIL 1 alice {int(h.now + jump)} QUJD"], jump)


class ReactorClock(SynchronousTestCase):
    def test_the_daemons_timers_follow_the_monotonic_clock(self) -> None:
        for jump in JUMPS:
            clocks = {"wall": 1_700_000_000.0, "monotonic": 5000.0}
            reactor = SelectReactor()
            self.addCleanup(reactor.disconnectAll)
            reactor.seconds = lambda: clocks["wall"]  # Twisted's default: time.time
            fired: list[str] = []
            reactor.callLater(10, fired.append, "before")  # already pending: keeps its delay
            make_monotonic(reactor, monotonic=lambda: clocks["monotonic"], wall=lambda: clocks["wall"])
            reactor.callLater(5, fired.append, "after")
            clocks["wall"] += jump
            reactor.runUntilCurrent()
            self.assertEqual(fired, [], jump)  # +700 s of wall time fire nothing
            clocks["monotonic"] += 5
            reactor.runUntilCurrent()
            self.assertEqual(fired, ["after"], jump)  # -3600 s of wall time hold nothing back
            clocks["monotonic"] += 5
            reactor.runUntilCurrent()
            self.assertEqual(fired, ["after", "before"], jump)

    def test_twistd_makes_its_reactor_monotonic_before_building_the_service(self) -> None:
        from relaychat import tap

        order: list[str] = []
        self.patch(tap, "make_monotonic", lambda reactor: order.append("monotonic"))
        self.patch(tap, "raise_open_files", lambda wanted: order.append("open files"))
        self.patch(tap, "keep_heap", lambda: order.append("heap"))
        self.patch(tap, "compose", lambda config, reactor, signals: order.append("service") or "built")
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(tap.makeService(options), "built")
        self.assertEqual(order, ["monotonic", "open files", "heap", "service"])


class Stored(SynchronousTestCase):
    def test_what_is_stored_is_dated_by_the_wall_clock(self) -> None:
        h = Harness()
        h.wall_offset = 1_700_000_000.0 - h.now  # the store outlives this process's monotonic clock
        h.register("alice")
        self.assertEqual(h.store.binding("alice").created, h.now + h.wall_offset)  # type: ignore[union-attr]
