"""Which node holds which user: the cluster's routing core, sans I/O.

Every node keeps a mirror of the users online on the *other* nodes, fed by
the presence events Redis publishes (:mod:`relaychat.cluster.redis` runs the
scripts that change the shared presence table and publish, in the same
atomic step, what changed; so every node sees the changes in one order).
This module only reads those events and says what follows from them; it
owns no connection and no reactor, and the tests drive it with bytes.

Events, one per message on the events channel (fields separated by one
space; nicknames, node names and tokens never hold a space, identity keys
are base64)::

    J <canonical> <node> <token> <display> <identity-b64> <replaced-token|->
    L <canonical> <node> <token>

``J``: a login on ``node``; it replaced the login with ``replaced-token``
(wherever that was). ``L``: that login ended (or its node was declared gone).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Mapping, Optional

from relaychat.server.directory import RemoteUser
from relaychat.wire.codec import b64decode, b64encode

NODE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
"""A node's name: what it is called in Redis keys and in the console."""


def presence_value(node: str, token: str, display: str, identity_pub: bytes) -> bytes:
    """The presence table's value for one login (also the middle of its ``J`` event)."""
    return f"{node} {token} {display} {b64encode(identity_pub)}".encode("ascii")


def parse_presence(value: bytes) -> RemoteUser:
    node, token, display, identity = value.decode("ascii").split(" ")
    return RemoteUser(node, token, display, b64decode(identity, size=32))


@dataclass(frozen=True)
class Replaced:
    """A local login another node's newer login has replaced: say ``BYE replaced``."""

    canonical: str


@dataclass
class Presence:
    """The mirror of other nodes' users, and the tokens of this node's logins."""

    node: str
    remote: dict[str, RemoteUser] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)  # canonical -> this node's login token

    def login(self, canonical: str) -> str:
        """A new login here: its token (which a later login anywhere names to replace it)."""
        token = secrets.token_hex(8)
        self.local[canonical] = token
        self.remote.pop(canonical, None)
        return token

    def logout(self, canonical: str) -> Optional[str]:
        """The login here ended: its token, to withdraw it from the shared table."""
        return self.local.pop(canonical, None)

    def load(self, table: Mapping[bytes, bytes]) -> None:
        """Replace the mirror with the shared presence table (after (re)connecting)."""
        remote = {}
        for canon, value in table.items():
            try:
                user = parse_presence(value)
            except (ValueError, UnicodeDecodeError):
                continue  # not ours to judge; never fatal
            if user.node != self.node:
                remote[canon.decode("ascii")] = user
        self.remote = remote

    def event(self, data: bytes) -> Optional[Replaced]:
        """Apply one event; returns what this node must do about it, if anything."""
        try:
            fields = data.decode("ascii").split(" ")
        except UnicodeDecodeError:
            return None
        if fields[0] == "J" and len(fields) == 7:
            _, canon, node, token, display, identity, replaced = fields
            try:
                user = RemoteUser(node, token, display, b64decode(identity, size=32))
            except ValueError:
                return None
            mine = self.local.get(canon)
            if node == self.node:
                self.remote.pop(canon, None)
                return None
            self.remote[canon] = user
            if mine is not None and mine == replaced:
                del self.local[canon]
                return Replaced(canon)
        elif fields[0] == "L" and len(fields) == 4:
            _, canon, node, token = fields
            user_there = self.remote.get(canon)
            if user_there is not None and user_there.token == token:
                del self.remote[canon]
        return None

    def nodes(self) -> set[str]:
        """The other nodes users are on, as far as this mirror knows."""
        return {user.node for user in self.remote.values()}
