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
from relaychat.wire.refusals import taken_text


def judge_claim(existing: Optional[Binding], lookalike: Optional[Binding], identity_pub: bytes) -> Optional[Binding]:
    """The rule, wherever the bindings live: ``existing`` (the nickname's binding)
    must be ours; else no ``lookalike`` (a binding with its skeleton) may exist."""
    if existing is not None:
        if not hmac.compare_digest(existing.identity_pub, identity_pub):
            raise taken(existing.display)
        return existing
    if lookalike is not None:
        raise confused(lookalike.display)
    return None


def taken(display: str) -> ProtocolError:
    return ProtocolError(Code.TAKEN, taken_text(display, lookalike=False))


def confused(display: str) -> ProtocolError:
    return ProtocolError(Code.TAKEN, taken_text(display, lookalike=True))


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
        lookalike = None if existing is not None else self._store.binding_by_skeleton(skeleton(canon))
        return judge_claim(existing, lookalike, identity_pub)

    def bind(self, nick: str, identity_pub: bytes, static_pub: bytes, static_sig: bytes, now: float) -> Binding:
        """Bind or reclaim ``nick``; raises ``taken`` if another key won a race."""
        existing = self.check_claim(nick, identity_pub)
        canon = canonical(nick)
        if existing is not None:
            if (existing.static_pub, existing.static_sig) == (static_pub, static_sig):
                return existing  # the usual login: nothing to write
            self._store.update_static(canon, static_pub, static_sig)
            updated = self._store.binding(canon)
            assert updated is not None  # check_claim found it
            return updated
        binding = Binding(canon, skeleton(canon), nick, identity_pub, static_pub, static_sig, now)
        if not self._store.insert_binding(binding):
            raise ProtocolError(Code.TAKEN, taken_text(nick, lookalike=False))
        return binding

    def release(self, nick: str) -> Optional[tuple[Binding, int]]:
        """Unbind ``nick`` so any key may claim it again, deleting the mail
        sealed to the old key: the binding released and how much mail went."""
        binding = self.find(nick)
        deleted = None if binding is None else self._store.release_binding(binding.canonical)
        return None if binding is None or deleted is None else (binding, deleted)
