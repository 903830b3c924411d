"""Time-limited bans of nicknames, identity keys and addresses, set by the operator."""

from __future__ import annotations

from relaychat.crypto.safety import identity_fingerprint


def key_id(identity_pub: bytes) -> str:
    """How a key ban names an identity key: its fingerprint, as clients show it."""
    return identity_fingerprint(identity_pub)


class Bans:
    """Bans keyed by (kind, value): kind ``"nick"`` (canonical nickname),
    ``"key"`` (an identity key's fingerprint) or ``"address"``."""

    KINDS = ("nick", "key", "address")

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def add(self, kind: str, value: str, until: float) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}")
        self._until[(kind, value)] = until

    def remove(self, kind: str, value: str) -> bool:
        return self._until.pop((kind, value), None) is not None

    def banned(self, kind: str, value: str, now: float) -> bool:
        until = self._until.get((kind, value))
        return until is not None and now < until

    def remaining(self, kind: str, value: str, now: float) -> float:
        """Seconds the ban still runs (0 if there is none)."""
        until = self._until.get((kind, value))
        return until - now if until is not None and now < until else 0.0

    def expire(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]

    def active(self, now: float) -> dict[tuple[str, str], float]:
        """Current bans and when each ends."""
        return {k: until for k, until in self._until.items() if until > now}
