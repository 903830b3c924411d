"""The nickname registry: who may hold which nickname.

Policy only; the proof that a client holds its key is checked by the hub
before :meth:`Registry.bind` is called. A bound nickname belongs to its
identity key for good: a different key never takes it, the same key can
always reclaim it (and publish a new static key).
"""

from __future__ import annotations

import hmac
from typing import Optional

from relaychat.wire.nicknames import canonical, skeleton
from relaychat.server.store import Binding, Store
from relaychat.wire.errors import Code, ProtocolError


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store

    def find(self, nick: str) -> Optional[Binding]:
        """The binding for ``nick`` (any case), or None; refuses invalid nicknames."""
        return self._store.binding(canonical(nick))

    def check_claim(self, nick: str, identity_pub: bytes) -> Optional[Binding]:
        """Refuse a claim another key holds; return the existing binding if it is ours."""
        canon = canonical(nick)
        existing = self._store.binding(canon)
        if existing is not None:
            if not hmac.compare_digest(existing.identity_pub, identity_pub):
                raise ProtocolError(Code.TAKEN, f"{existing.display} is bound to another key")
            return existing
        lookalike = self._store.binding_by_skeleton(skeleton(canon))
        if lookalike is not None:
            raise ProtocolError(Code.TAKEN, f"too easily confused with {lookalike.display}")
        return None

    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes, now: float) -> Binding:
        """Bind or reclaim ``nick``; raises ``taken`` if another key won a race."""
        existing = self.check_claim(nick, identity_pub)
        canon = canonical(nick)
        if existing is not None:
            self._store.update_static(canon, static_pub, static_sig)
            updated = self._store.binding(canon)
            assert updated is not None  # check_claim found it
            return updated
        binding = Binding(canon, skeleton(canon), nick, identity_pub, static_pub, static_sig, now)
        if not self._store.insert_binding(binding):
            raise ProtocolError(Code.TAKEN, f"{nick} was just taken")
        return binding

    def release(self, nick: str) -> Optional[tuple[Binding, int]]:
        """Unbind ``nick`` so any key may claim it again, deleting the mail
        sealed to the old key: the binding released and how much mail went."""
        binding = self.find(nick)
        deleted = None if binding is None else self._store.release_binding(binding.canonical)
        return None if binding is None or deleted is None else (binding, deleted)
