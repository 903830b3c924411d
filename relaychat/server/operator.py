"""The operator's verbs: kick, ban, unban, release, notice.

A narrow object in front of the hub, so the console's helpers (and anything
else an operator drives) reach these and nothing of the hub's internals:
the hub offers :meth:`~relaychat.server.hub.Hub.dismiss` and
:meth:`~relaychat.server.hub.Hub.broadcast`, and this class decides who.
"""

from __future__ import annotations

from typing import Optional

from relaychat.server.bans import key_id
from relaychat.server.connection import Life
from relaychat.server.hub import Hub
from relaychat.wire.errors import Bye, Closed
from relaychat.wire.messages import Notice
from relaychat.wire.refusals import ban_text

DEFAULT_KICK_REASON = "kicked by the operator"


class Operator:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def kick(self, nick: str, reason: str = DEFAULT_KICK_REASON) -> bool:
        """Disconnect ``nick`` now, if it is online; its peers see ``CLOSED <sid> kicked``."""
        client = self._hub.online.get(nick.lower())
        if client is None:
            elsewhere = self._hub.elsewhere  # a cluster: the user may be on another node
            return elsewhere is not None and elsewhere.kick(nick.lower(), reason)
        self._hub.dismiss(client, Bye.KICKED, reason, session_reason=Closed.KICKED)
        return True

    def ban(self, kind: str, value: str, seconds: float, now: float) -> int:
        """Ban a nickname or an address for ``seconds``; kicks who is on. Returns how many.

        A nickname's ban also bans the identity key it is bound to, so the
        same person cannot come back under another nickname with the key
        their contacts have pinned.
        """
        hub = self._hub
        value = value.lower() if kind == "nick" else value
        hub.bans.add(kind, value, now + seconds)
        key = self.bound_key(value) if kind == "nick" else None
        if key is not None:
            hub.bans.add("key", key_id(key), now + seconds)
        serving = [c for c in hub.clients if c.life is Life.OPEN]  # a closing connection is still counted
        if kind == "address":
            victims = [c for c in serving if c.address == value]
        else:
            victims = [c for c in serving if c.nick == value or (key and c.identity_pub == key)]
        for client in victims:  # each is told which ban hit it, and for how long (protocol section 2)
            which = "address" if kind == "address" else "nick" if client.nick == value else "key"
            hub.dismiss(client, Bye.BANNED, ban_text(which, seconds), session_reason=Closed.KICKED)
        return len(victims)

    def unban(self, kind: str, value: str) -> list[tuple[str, str]]:
        """Lift a ban, a nickname's with its key's; returns the bans lifted."""
        bans = self._hub.bans
        value = value.lower() if kind == "nick" else value
        lifted = [(kind, value)] if bans.remove(kind, value) else []
        key = self.bound_key(value) if kind == "nick" else None
        if key is not None and bans.remove("key", key_id(key)):
            lifted.append(("key", key_id(key)))
        return lifted

    def release(self, nick: str) -> tuple[Optional[bytes], int]:
        """Free ``nick`` for any key (its owner lost theirs): whoever holds it now
        is disconnected, and mail sealed to the old key is deleted. Returns the
        released identity key (None if it was not bound) and the mail deleted."""
        self.kick(nick, "your nickname was released by the operator")
        released = self._hub.registry.release(nick)
        if released is None:
            return None, 0
        binding, mail = released
        return binding.identity_pub, mail

    def bound_key(self, nick: str) -> Optional[bytes]:
        """The identity key ``nick`` is registered with, if it is."""
        binding = self._hub.registry.find(nick)
        return binding.identity_pub if binding is not None else None

    def notice(self, text: str) -> int:
        """Send ``text`` (kept to one line) to every registered client; returns how many."""
        return self._hub.broadcast(Notice(text))
