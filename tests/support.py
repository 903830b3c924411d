"""Test doubles and helpers shared by the relay tests."""

from __future__ import annotations

from typing import Optional

from relaychat.crypto.identity import solve_pow
from relaychat.crypto.keypair import Identity
from relaychat.server.connection import Connection
from relaychat.server.hub import Hub
from relaychat.server.limits import Limits, MailPolicy
from relaychat.server.store import Store
from relaychat.wire.codec import b64decode, b64encode

# Identities are slowish to make and nothing depends on their freshness.
_IDENTITIES: dict[str, Identity] = {}


def identity(name: str) -> Identity:
    if name not in _IDENTITIES:
        _IDENTITIES[name] = Identity.generate()
    return _IDENTITIES[name]


class FakeLink:
    """Records what the hub does to a connection."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False
        self.wakeups: list[float] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_reading(self, reading: bool) -> None:
        self.reading = reading

    def close(self) -> None:
        self.closed = True

    def wake_after(self, seconds: float) -> None:
        self.wakeups.append(seconds)

    def lines(self) -> list[str]:
        """Everything written so far, as lines, and forget it."""
        data = b"".join(self.written)
        self.written.clear()
        return [line.decode("utf-8") for line in data.split(b"\n") if line]


class Harness:
    """A hub on an in-memory store with a settable clock."""

    def __init__(self, limits: Limits = Limits(pow_bits=0), mail: MailPolicy = MailPolicy(),
                 store: Optional[Store] = None) -> None:
        self.now = 1000.0  # the monotonic clock the hub is given
        self.wall_offset = 0.0  # the system clock is now + wall_offset; a test may make it jump
        self.store = store or Store(":memory:")
        self.hub = Hub(self.store, limits, mail, now=self.now, wall=lambda: self.now + self.wall_offset)

    def connect(self, address: str = "127.0.0.1") -> tuple[Connection, FakeLink]:
        link = FakeLink()
        return self.hub.connect(link, address, self.now), link

    def send(self, client: Connection, *lines: str) -> None:
        self.hub.receive(client, "".join(line + "\n" for line in lines).encode("utf-8"), self.now)

    def ask(self, client: Connection, link: FakeLink, line: str) -> list[str]:
        link.lines()
        self.send(client, line)
        return link.lines()

    def register(self, nick: str, who: Optional[str] = None, address: str = "127.0.0.1") -> tuple[Connection, FakeLink]:
        """Connect and register ``nick`` with the identity called ``who`` (default: nick)."""
        client, link = self.connect(address)
        self.hello(client, link)
        reply = self.claim(client, link, nick, identity(who or nick))
        assert reply[0].startswith("OK PROVE"), reply
        link.lines()
        return client, link

    def hello(self, client: Connection, link: FakeLink) -> None:
        assert self.ask(client, link, "HELLO 1")[0].startswith("OK HELLO 1 ")

    def claim(self, client: Connection, link: FakeLink, nick: str, ident: Identity) -> list[str]:
        reply = self.ask(client, link, register_line(nick, ident))
        if not reply or not reply[0].startswith("OK REGISTER"):  # no reply: over its line rate, it waits
            return reply
        _, _, canonical, challenge_b64, bits = reply[0].split(" ")
        challenge = b64decode(challenge_b64)
        signature = ident.sign_registration(self.hub.server_id, challenge, canonical)
        line = f"PROVE {b64encode(signature)}"
        if int(bits):
            line += " " + b64encode(solve_pow(challenge, int(bits)))
        return self.ask(client, link, line)

    def open_session(self, a: tuple[Connection, FakeLink], b: tuple[Connection, FakeLink], b_nick: str) -> str:
        reply = self.ask(a[0], a[1], f"OFFER {b_nick}")
        sid = reply[0].split(" ")[2]
        b[1].lines()
        assert self.ask(b[0], b[1], f"ACCEPT {sid}") == [f"OK ACCEPT {sid}"]
        assert a[1].lines() == [f"ACCEPTED {sid}"]
        return sid


def register_line(nick: str, ident: Identity) -> str:
    return (
        f"REGISTER {nick} {b64encode(ident.identity_public)} "
        f"{b64encode(ident.static_public)} {b64encode(ident.static_sig)}"
    )
