"""What the user knows about each pinned contact: verified or not, first and last seen.

A pin (``relaychat.crypto.pins``) says which key a nickname has; this file
says what the user did about that key. Each record is keyed by the relay,
the nickname *and the identity key*, so a verification can never carry over
to another key: when a key changes, the new key has no record ("not
verified"), and accepting it (:meth:`Contacts.forget_other_keys`) deletes
the old key's record outright. One line per record::

    <server_id_b64> <canonical_nick> <identity_pub_b64> first=<t> last=<t> [verified=<how>:<t>]

``how`` is ``smp`` (a shared-secret check succeeded in a conversation with
that key) or ``number`` (the user said they compared the safety number).
Times are Unix seconds. The file is changed like the pins file: under the
profile lock, after re-reading it, mode 0600, so two clients on one profile
keep each other's records. A changed record (a conversation or mail updates
``last``) is *appended*, and the last line for a key wins; when superseded
lines outnumber the live ones the file is compacted, rewritten atomically,
so each change costs O(1) writes amortised and the file stays within twice
its live records. Damage fails safe: an unreadable line is kept verbatim and
ignored, which can only make a contact read as *not verified*.

Bounded like the pins: at most :data:`MAX_CONTACTS_PER_RELAY` records per
relay; a record beyond that is refused (``PinsFull``), never made room for,
so the contact reads as *not verified* rather than some other contact
losing its verification.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from relaychat.crypto.identity import KEY_SIZE, SERVER_ID_SIZE
from relaychat.crypto.keyfiles import StrPath, append_private_file, write_private_file
from relaychat.crypto.pins import MAX_PINS_PER_RELAY, PinError, PinsFull, data_lines, locked, read_lines
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.codec import EncodingError, b64decode, b64encode

__all__ = ["FILENAME", "MAX_CONTACTS_PER_RELAY", "Contact", "Contacts", "How", "Verification"]

FILENAME = "contacts"
MAX_CONTACTS_PER_RELAY = MAX_PINS_PER_RELAY  # one record per pinned key, and the old key's until it is accepted
HEADER = b"# relaychat contacts: <server_id_b64> <nick> <identity_pub_b64> first=<t> last=<t> [verified=<how>:<t>]"


class How(enum.Enum):
    SMP = "smp"  #: a shared-secret check (protocol section 14) succeeded
    SAFETY_NUMBER = "number"  #: the user compared the safety number and said so


@dataclass(frozen=True)
class Verification:
    how: How
    time: int

    @property
    def description(self) -> str:
        return "by a shared secret" if self.how is How.SMP else "by comparing the safety number"


@dataclass(frozen=True)
class Contact:
    nick: str
    identity_pub: bytes = field(repr=False)
    first_seen: int
    last_seen: int
    verified: Optional[Verification] = None

    @property
    def fingerprint(self) -> str:
        return identity_fingerprint(self.identity_pub)


_Key = tuple[bytes, str, bytes]


def _parse(line: str) -> Optional[tuple[_Key, Contact]]:
    fields = line.split()
    if len(fields) < 5:
        return None
    try:
        server_id = b64decode(fields[0], size=SERVER_ID_SIZE)
        identity_pub = b64decode(fields[2], size=KEY_SIZE)
    except EncodingError:
        return None
    values = dict(f.partition("=")[::2] for f in fields[3:])
    try:
        first, last = int(values["first"]), int(values["last"])
        verified = None
        if "verified" in values:
            how, _, when = values["verified"].partition(":")
            verified = Verification(How(how), int(when))
    except (KeyError, ValueError):
        return None
    nick = fields[1]
    return (server_id, nick, identity_pub), Contact(nick, identity_pub, first, last, verified)


def _format(server_id: bytes, contact: Contact) -> bytes:
    text = (f"{b64encode(server_id)} {contact.nick} {b64encode(contact.identity_pub)} "
            f"first={contact.first_seen} last={contact.last_seen}")
    if contact.verified is not None:
        text += f" verified={contact.verified.how.value}:{contact.verified.time}"
    return text.encode("ascii")


@dataclass
class _State:
    lines: list[bytes]
    latest: dict[_Key, tuple[int, Contact]]  # each key's last line (index) and record
    superseded: set[int]  # indexes of record lines a later line replaced


class Contacts:
    """Verification and first/last seen, per (relay, nickname, identity key)."""

    max_per_relay = MAX_CONTACTS_PER_RELAY

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)

    @classmethod
    def in_directory(cls, directory: StrPath) -> Contacts:
        return cls(Path(directory) / FILENAME)

    def _read(self, strict: bool = False) -> _State:
        """Lines and records; an unreadable file reads as empty (nobody verified),
        except before a change (``strict``), which must not erase it."""
        try:
            lines = read_lines(self.path, "contacts")
        except PinError:
            if strict:
                raise
            return _State([], {}, set())
        latest: dict[_Key, tuple[int, Contact]] = {}
        superseded: set[int] = set()
        for index, text in data_lines(lines):
            record = _parse(text) if text is not None else None
            if record is not None:
                key, contact = record
                key = (key[0], key[1].lower(), key[2])
                if key in latest:
                    superseded.add(latest[key][0])
                latest[key] = (index, contact)
        return _State(lines, latest, superseded)

    @staticmethod
    def _matches(key: _Key, server_id: bytes, nick: str, identity_pub: Optional[bytes]) -> bool:
        return key[0] == server_id and key[1] == nick and (
            identity_pub is None or hmac.compare_digest(key[2], identity_pub))

    def get(self, server_id: bytes, nick: str, identity_pub: bytes) -> Optional[Contact]:
        """The record for exactly this key, or None (never seen, or another key)."""
        nick = nick.lower()
        for key, (_, contact) in self._read().latest.items():
            if self._matches(key, server_id, nick, identity_pub):
                return contact
        return None

    def on_relay(self, server_id: bytes) -> list[Contact]:
        """Every record for this relay (the caller joins them with the pins)."""
        return [c for key, (_, c) in self._read().latest.items() if key[0] == server_id]

    def _rewrite(self, lines: list[bytes], dropped: set[int]) -> None:
        kept = [line for i, line in enumerate(lines) if i not in dropped] or [HEADER]
        write_private_file(self.path, b"".join(line + b"\n" for line in kept))

    def _update(self, server_id: bytes, nick: str, identity_pub: bytes,
                change: Callable[[Optional[Contact]], Optional[Contact]]) -> Optional[Contact]:
        if len(server_id) != SERVER_ID_SIZE or len(identity_pub) != KEY_SIZE:
            raise ValueError("bad relay id or key")
        nick = nick.lower()
        with locked(self.path):
            state = self._read(strict=True)
            key = (server_id, nick, identity_pub)
            found = next((k for k in state.latest if self._matches(k, server_id, nick, identity_pub)), None)
            current = state.latest[found][1] if found is not None else None
            result = change(current)
            if result == current:
                return result
            if result is None:  # the record goes: a rewrite without its lines
                assert found is not None
                gone = set(state.superseded) | {state.latest[found][0]}
                self._rewrite(state.lines, gone)
                return result
            if current is None and sum(1 for k in state.latest if k[0] == server_id) >= self.max_per_relay:
                raise PinsFull(f"No record is kept for {nick!r}: {self.max_per_relay} contacts are already recorded "
                               f"for this relay, the most kept. Delete the lines of contacts you no longer need "
                               f"from {self.path}.")
            line = _format(key[0], result)
            # A verification taken away is rewritten atomically, never appended: a crash
            # cutting that line short must not leave the earlier "verified" line in force.
            weaker = current is not None and current.verified is not None and result.verified is None
            if weaker or len(state.superseded) + 1 > len(state.latest) + 16:  # or superseded lines outnumber live ones
                gone = set(state.superseded) | ({state.latest[found][0]} if found is not None else set())
                self._rewrite(state.lines + [line], gone)
            else:
                append_private_file(self.path, (b"" if state.lines else HEADER + b"\n") + line + b"\n")
            return result

    def seen(self, server_id: bytes, nick: str, identity_pub: bytes, now: float) -> Contact:
        """Note a conversation or mail with this key now; returns the record."""
        t = int(now)

        def change(current: Optional[Contact]) -> Contact:
            if current is None:
                return Contact(nick.lower(), identity_pub, t, t)
            return replace(current, last_seen=max(current.last_seen, t))
        result = self._update(server_id, nick, identity_pub, change)
        assert result is not None
        return result

    def verify(self, server_id: bytes, nick: str, identity_pub: bytes, how: How, now: float) -> Contact:
        """Record that the user verified exactly this key."""
        t = int(now)

        def change(current: Optional[Contact]) -> Contact:
            base = current or Contact(nick.lower(), identity_pub, t, t)
            return replace(base, verified=Verification(how, t))
        result = self._update(server_id, nick, identity_pub, change)
        assert result is not None
        return result

    def unverify(self, server_id: bytes, nick: str, identity_pub: bytes) -> None:
        self._update(server_id, nick, identity_pub, lambda c: replace(c, verified=None) if c else None)

    def forget_other_keys(self, server_id: bytes, nick: str, identity_pub: bytes) -> None:
        """A new key was accepted for ``nick``: records of every other key go,
        verification included."""
        nick = nick.lower()
        with locked(self.path):
            state = self._read(strict=True)
            gone = {i for key, (i, _) in state.latest.items()
                    if self._matches(key, server_id, nick, None) and not hmac.compare_digest(key[2], identity_pub)}
            if gone:
                self._rewrite(state.lines, gone | state.superseded)
