"""Telling systemd how the daemon is doing: ``READY=1`` once every listener is bound.

With ``Type=notify`` systemd waits for this datagram before it counts the
service as started (so units ordered after it, and ``systemctl start``,
wait for the ports to be open), and ``STOPPING=1`` tells it a drain has
begun. The protocol is one datagram of ``KEY=value`` lines to the UNIX
socket named by ``$NOTIFY_SOCKET`` (``@name`` is an abstract socket); see
sd_notify(3). Without ``$NOTIFY_SOCKET`` nothing is sent.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable, Mapping, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from relaychat.server.service import ListenerService

log = Logger(namespace="relaychat")


def notify(state: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Send ``state`` (``"READY=1"``, ...) to systemd; whether it was sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a kind of socket (vsock) we do not speak
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as e:
        log.warn("relaychat: cannot notify systemd at {address!r}: {error}", address=address, error=e.strerror)
        return False
    return True


class Readiness(Service):
    """Says ``READY=1`` once every one of ``listeners`` listens (and nothing if one fails)."""

    name = "systemd"

    def __init__(self, listeners: Iterable[ListenerService], environ: Optional[Mapping[str, str]] = None) -> None:
        self.listeners = list(listeners)
        self.environ = environ
        self.ready: Optional[Deferred[bool]] = None  # fires with whether systemd was told

    def startService(self) -> None:
        super().startService()
        waiting = gatherResults([s.when_listening() for s in self.listeners], consumeErrors=True)
        self.ready = waiting.addCallbacks(self._ready, lambda _: False)

    def _ready(self, ports: list[object]) -> bool:
        return notify(f"READY=1\nSTATUS=serving on {len(ports)} listeners", self.environ)
