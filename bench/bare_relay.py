"""The baseline: the plainest Twisted line relay, paired by a token.

A connection's first line is a pairing token; the second connection to
send the same token is its partner and both receive ``OK``. From then on
every line is forwarded to the partner with one ``transport.write`` per
line, as a LineReceiver naturally does. No registration, no sessions, no
limits, no back-pressure: what relaychat costs is measured against this.

    python bench/bare_relay.py PORT [INTERFACE]
"""

from __future__ import annotations

import sys

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver


class BareRelay(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    partner: BareRelay | None = None
    token: bytes | None = None

    def lineReceived(self, line: bytes) -> None:
        if self.partner is not None:
            self.partner.transport.write(line + b"\n")  # one write per line: the point of the baseline
        elif self.token is None:
            self.token = line
            waiting = self.factory.waiting.pop(line, None)
            if waiting is None:
                self.factory.waiting[line] = self
            else:
                self.partner, waiting.partner = waiting, self
                self.transport.write(b"OK\n")
                waiting.transport.write(b"OK\n")

    def connectionLost(self, reason: object = None) -> None:
        if self.partner is not None:
            self.partner.transport.loseConnection()
            self.partner.partner = None
            self.partner = None
        elif self.token is not None and self.factory.waiting.get(self.token) is self:
            del self.factory.waiting[self.token]


class BareFactory(Factory):
    protocol = BareRelay
    noisy = False

    def __init__(self) -> None:
        self.waiting: dict[bytes, BareRelay] = {}


def listen(reactor: object, port: int = 0, interface: str = "127.0.0.1") -> object:
    """Listen on ``interface:port``; returns the listening port."""
    return reactor.listenTCP(port, BareFactory(), backlog=1024, interface=interface)  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    port = listen(reactor, int(argv[1]) if len(argv) > 1 else 0, argv[2] if len(argv) > 2 else "127.0.0.1")
    print(f"bare relay listening on {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
