"""What protects the disk: caps on mail and nicknames, hourly allowances, expiry.

:class:`Quotas` applies the configured caps (``[mailbox]``, ``[nicknames]``)
for the hub and releases nicknames unused for ``nickname_expiry_days``.

Each key (an address, a sender's nickname) has a token bucket holding at
most ``per_hour`` tokens that refills at ``per_hour`` an hour: a newcomer
may use the whole allowance at once, then one more every ``3600 /
per_hour`` seconds. Only keys that spent something are held, and a key
whose bucket is full again is forgotten by :meth:`Allowance.sweep`, so
memory follows what was spent in the last hour, not how many keys exist.

Nothing here is persisted: a restart forgives what was spent. The disk
itself is protected by the relay's absolute caps (``mail_bytes_total``,
``max_nicknames``), which do survive restarts because they are counted in
the database.
"""

from __future__ import annotations

import ipaddress
from typing import Collection, Hashable

from relaychat.server.limits import MailPolicy, NicknamePolicy
from relaychat.server.store import Store
from relaychat.wire.errors import Code, ProtocolError

HOUR = 3600.0
SWEEP_INTERVAL = 60.0


class Quotas:
    """What the disk is protected by: the relay's caps on mail and nicknames.

    ``check_*`` raise ``ERR ... quota`` before the work is done (a
    REGISTER is refused before the client spends its proof of work);
    ``spent_*`` count what was actually stored.
    """

    def __init__(self, store: Store, mail: MailPolicy, names: NicknamePolicy) -> None:
        self.store = store
        self.mail = mail
        self.names = names
        self.new_names = Allowance(names.registrations_per_address_per_hour)
        self.mail_sent = Allowance(mail.mail_per_sender_per_hour)
        self._next_sweep = 0.0

    def check_new_name(self, address: str, now: float) -> None:
        if self.store.binding_total >= self.names.max_nicknames:
            raise ProtocolError(Code.QUOTA, "the relay binds no more new nicknames; log in with one you have")
        key = address_key(address)
        if not self.new_names.available(key, now):
            raise ProtocolError(
                Code.QUOTA,
                f"{self.names.registrations_per_address_per_hour} new nicknames an hour from your address; "
                f"try again in {minutes(self.new_names.wait(key, now))}",
            )

    def spent_new_name(self, address: str, now: float) -> None:
        self.new_names.take(address_key(address), now)

    def check_mail(self, sender: str, size: int, now: float) -> None:
        if not self.mail_sent.available(sender, now):
            raise ProtocolError(
                Code.QUOTA,
                f"you may store {self.mail.mail_per_sender_per_hour} messages an hour; "
                f"try again in {minutes(self.mail_sent.wait(sender, now))}",
            )
        if self.store.mail_bytes + size > self.mail.mail_bytes_total:
            raise ProtocolError(Code.QUOTA, "the relay holds all the mail it can; try again later")

    def spent_mail(self, sender: str, now: float) -> None:
        self.mail_sent.take(sender, now)

    def release_unused(self, online: Collection[str], now: float) -> list[str]:
        """Release nicknames unused for ``nickname_expiry_days`` (if set) at wall
        time ``now``, with the mail waiting for them; ``online`` (connected
        now) count as used. Returns them."""
        if not self.names.expiry_seconds:
            return []
        for nick in online:  # in use now: saved with the next batch
            self.store.note_use(nick, now)
        released: list[str] = []
        while batch := self.store.expire_bindings(now - self.names.expiry_seconds, online):
            released.extend(batch)
        return released

    def sweep(self, now: float) -> None:
        """Forget allowances that are whole again (cheap to call every tick)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        self.new_names.sweep(now)
        self.mail_sent.sweep(now)


class Allowance:
    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._rate = per_hour / HOUR
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: Hashable, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return float(self.per_hour)
        tokens, at = held
        return min(float(self.per_hour), tokens + max(0.0, now - at) * self._rate)

    def available(self, key: Hashable, now: float) -> bool:
        return self._tokens(key, now) >= 1.0

    def take(self, key: Hashable, now: float) -> None:
        """Spend one token (call only after :meth:`available` said yes and the thing was done)."""
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` has a token again (0 if it has one)."""
        missing = 1.0 - self._tokens(key, now)
        return max(0.0, missing / self._rate)

    def sweep(self, now: float) -> None:
        """Forget every key whose allowance is whole again."""
        full = float(self.per_hour)
        for key in [k for k in self._buckets if self._tokens(k, now) >= full]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def address_key(address: str) -> str:
    """The unit an allowance per address is counted in.

    An IPv4 address is one key; an IPv6 address counts as its /64, the
    block one subscriber is usually given, so that one host cannot claim a
    fresh allowance from each of its 2**64 addresses. An IPv4-mapped IPv6
    address counts as the IPv4 address.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address  # a UNIX socket or an adapter's own label: itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def minutes(seconds: float) -> str:
    """``seconds`` as a short phrase for an error sentence."""
    whole = max(1, int(seconds // 60 + (1 if seconds % 60 else 0)))
    return "1 minute" if whole == 1 else f"{whole} minutes"
