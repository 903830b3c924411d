"""Stopping gracefully: a drain with a bounded grace, started by SIGTERM or the console.

A drain tells every client (``NOTICE <text>``), lets those without a
session go at once (``BYE draining <text>``) and the others as their
sessions end. The relay's listeners stay open meanwhile and answer every
newcomer ``BYE draining <text>``, so a user sees the operator's words
rather than "connection refused". When the grace period ends, whoever is
left is told ``BYE draining`` and closed. Then, for a stopping drain (the
one SIGTERM starts), the listeners' child service is stopped and the
reactor with it: the process exits 0. A second SIGTERM skips what is left
of the grace. :meth:`Drainer.undrain` takes a drain back.

Under twistd, the reactor installs its own SIGTERM handler (an immediate
stop) while it starts, after the services have started; so
:meth:`Drainer.startService` installs ours with ``callWhenRunning``, which
runs after that. The handler only schedules the work on the reactor
(``callFromThread``), as Twisted's own does.
"""

from __future__ import annotations

import enum
import signal
from typing import Any, Callable, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from relaychat.server.hub import DEFAULT_DRAIN_TEXT, Hub

log = Logger(namespace="relaychat")

LINGER = 2.0
"""Seconds, at most, between closing the last connections and stopping the
reactor, for their last ``BYE`` to be written and their sockets closed: a
reactor stop drops every connection at once, written or not. (A peer that
does not read could hold its socket open for ever.)"""


class DrainState(enum.Enum):
    SERVING = "serving"
    DRAINING = "draining"  # the grace is running
    DRAINED = "drained"  # everyone is gone; newcomers are still told BYE draining
    STOPPING = "stopping"


class Drainer(Service):
    """The daemon's drain: one per daemon, named ``drain`` in its service tree.

    :param listeners: the relay's listeners as one service; stopped when a
        stopping drain ends, before the reactor.
    :param clock: for the grace period (``reactor``).
    :param stop: stops the daemon (``reactor.stop``).
    :param notify: tells a supervisor how things stand (systemd's ``STOPPING=1``).
    :param signals: install the SIGTERM handler when the reactor runs.
    """

    name = "drain"

    def __init__(self, hub: Hub, listeners: IService, clock: Any, grace: float, stop: Callable[[], None],
                 notify: Callable[[str], Any] = lambda state: None, signals: bool = False) -> None:
        self.hub = hub
        self.listeners = listeners
        self.clock = clock
        self.grace = grace
        self._stop = stop
        self._notify = notify
        self._signals = signals
        self.state = DrainState.SERVING
        self._stopping_after = False
        self._deadline: Optional[IDelayedCall] = None
        self._finished: list[Deferred[DrainState]] = []

    # -- starting and ending a drain ------------------------------------------

    def drain(self, text: str = DEFAULT_DRAIN_TEXT, grace: Optional[float] = None, stop: bool = True) -> Deferred[DrainState]:
        """Start a drain; the result fires with the state once it is over
        (``STOPPING``, or ``DRAINED`` without ``stop``). A drain already
        under way is not restarted: the result fires when it ends."""
        done = self.when_over()
        if self.state is not DrainState.SERVING:
            return done
        grace = self.grace if grace is None else grace
        self.state = DrainState.DRAINING
        self._stopping_after = stop
        self._notify("STOPPING=1" if stop else "STATUS=draining")
        log.info("relaychat: draining for at most {grace}s{then}: {clients} connections open",
                 grace=grace, then=", then stopping" if stop else "", clients=len(self.hub.clients))
        self._deadline = self.clock.callLater(grace, self._end, "the grace period is over")
        self.hub.when_drained().addCallback(lambda _: self._end("every client has left"))
        self.hub.drain(text)
        return done

    def when_over(self) -> Deferred[DrainState]:
        """Fires with the state once the current (or next) drain is over."""
        done: Deferred[DrainState] = Deferred()
        if self.state in (DrainState.DRAINED, DrainState.STOPPING):
            done.callback(self.state)
        else:
            self._finished.append(done)
        return done

    def undrain(self) -> bool:
        """Serve again; False if there was no drain to take back (or the daemon is stopping)."""
        if self.state not in (DrainState.DRAINING, DrainState.DRAINED):
            return False
        self._cancel_deadline()
        self.state = DrainState.SERVING
        self.hub.undrain()
        self._notify("READY=1\nSTATUS=serving")
        log.info("relaychat: drain taken back; serving")
        return True

    def terminate(self) -> None:
        """SIGTERM: the first starts a stopping drain; during a drain, or after
        one that was not to stop, it stops now."""
        if self.state is DrainState.SERVING:
            log.info("relaychat: SIGTERM: draining; a second SIGTERM stops at once")
            self.drain(grace=self.grace, stop=True)
        elif self.state in (DrainState.DRAINING, DrainState.DRAINED):
            log.info("relaychat: SIGTERM {again}: stopping now",
                     again="again" if self.state is DrainState.DRAINING else "while drained")
            self._stopping_after = True
            self._end("SIGTERM")

    def _end(self, why: str) -> None:
        """The drain is over (or, once DRAINED, a stop was asked for): close whoever is left; stop if asked."""
        if not (self.state is DrainState.DRAINING or (self.state is DrainState.DRAINED and self._stopping_after)):
            return
        # The state first: closing the stragglers below drains the hub, which calls us again.
        self.state = DrainState.STOPPING if self._stopping_after else DrainState.DRAINED
        self._cancel_deadline()
        closed = self.hub.close_all()
        log.info("relaychat: drain over ({why}){closed}", why=why,
                 closed=f"; {closed} connections closed" if closed else "")
        if self.state is DrainState.STOPPING:
            gone = self.hub.when_drained()  # every socket closed, its BYE written
            gone.addTimeout(LINGER, self.clock)
            stopped = gatherResults([maybeDeferred(self.listeners.stopService), gone], consumeErrors=True)
            stopped.addBoth(lambda _: self._stop())
        finished, self._finished = self._finished, []
        for done in finished:
            done.callback(self.state)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    # -- the service: SIGTERM handling while the reactor runs ------------------

    def startService(self) -> None:
        super().startService()
        if self._signals:
            self.clock.callWhenRunning(self._install_handler)

    def stopService(self) -> None:
        super().stopService()
        self._cancel_deadline()

    def _install_handler(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, number: int, frame: Any) -> None:
        self.clock.callFromThread(self.terminate)
