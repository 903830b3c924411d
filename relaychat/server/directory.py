"""Where the hub looks nicknames up: its own SQLite registry, or a cluster's.

The hub asks through :class:`Directory`, whose answers are Deferreds: the
local one answers at once (the hub goes on in the same call, exactly as
before), a shared one (:mod:`relaychat.cluster`) answers after a round trip,
and the hub holds that client's further lines until it has. A Deferred is a
plain callback holder here, no reactor: the hub stays sans-IO.

:class:`Elsewhere` is what the hub sees of users on other nodes; without a
cluster it is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Protocol

from twisted.internet.defer import Deferred, maybeDeferred

from relaychat.server.registry import Registry
from relaychat.server.limits import MailPolicy
from relaychat.server.store import Binding, Mail

if TYPE_CHECKING:
    from relaychat.server.connection import Connection


class Unavailable(Exception):
    """The shared state cannot be reached now; the hub answers ``ERR <CMD> unavailable``."""


class Directory(Protocol):
    def check_claim(self, nick: str, identity_pub: bytes) -> "Deferred[Optional[Binding]]": ...
    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes,
             now: float) -> "Deferred[tuple[Binding, bool]]": ...
    def find(self, nick: str) -> "Deferred[Optional[Binding]]": ...


class LocalDirectory:
    """The embedded default: the hub's own :class:`Registry`, answering at once."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def check_claim(self, nick: str, identity_pub: bytes) -> "Deferred[Optional[Binding]]":
        return maybeDeferred(self._registry.check_claim, nick, identity_pub)

    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes,
             now: float) -> "Deferred[tuple[Binding, bool]]":
        def bind() -> tuple[Binding, bool]:
            new = self._registry.find(nick) is None
            return self._registry.bind(nick, identity_pub, static_pub, static_sig, now), new
        return maybeDeferred(bind)

    def find(self, nick: str) -> "Deferred[Optional[Binding]]":
        return maybeDeferred(self._registry.find, nick)


RECIPIENT_FULL = -1
"""What :meth:`SharedMail.deposit` answers for a full mailbox (count or bytes)."""
SENDER_FULL = -2
"""... and for a sender with ``mail_per_sender`` messages waiting there already."""


class SharedMail(Protocol):
    """Offline mail kept where every node reaches it (a cluster's Redis)."""

    def deposit(self, recipient: str, sender: str, now: float, body: bytes,
                policy: "MailPolicy") -> "Deferred[int]": ...  # the mail id, or a *_FULL code
    def pending(self, recipient: str) -> "Deferred[list[Mail]]": ...
    def ack(self, recipient: str, mail_id: int) -> "Deferred[bool]": ...
    def purge(self, older_than: float) -> "Deferred[int]": ...


@dataclass(frozen=True)
class RemoteUser:
    """A registered user connected to another node."""

    node: str
    token: str  # this login's; a later login anywhere names it to replace it
    display: str
    identity_pub: bytes


class Elsewhere(Protocol):
    """The hub's view of the other nodes of a cluster."""

    @property
    def remote(self) -> Mapping[str, RemoteUser]: ...  # canonical nickname -> user
    def joined(self, client: "Connection") -> None: ...
    def left(self, client: "Connection") -> None: ...
    def offer(self, client: "Connection", canonical: str, sid: bytes) -> "Deferred[Connection]":
        """Ask ``canonical``'s node to take an offer from ``client``; the answer is the stand-in."""
    def deliver(self, canonical: str, line: bytes) -> None:
        """Pass an event line (new mail) to ``canonical`` on whichever node it is."""
    def kick(self, canonical: str, reason: str) -> bool:
        """Have ``canonical``'s node kick it (the operator's verb); False if it is on none."""
