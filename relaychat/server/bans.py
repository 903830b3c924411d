"""Time-limited bans of nicknames and addresses, set by the operator."""

from __future__ import annotations


class Bans:
    """Bans keyed by (kind, value) where kind is ``"nick"`` or ``"address"``."""

    KINDS = ("nick", "address")

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

    def expire(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]

    def active(self, now: float) -> dict[tuple[str, str], float]:
        """Current bans and when each ends."""
        return {k: until for k, until in self._until.items() if until > now}
