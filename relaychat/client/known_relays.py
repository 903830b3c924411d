"""The known-relays file: which relay identity each relay address had (protocol section 13).

Pins are keyed by the relay's ``server_id`` (its ``HELLO`` reply), and the
relay chooses that value. A relay that announced a fresh ``server_id`` would
turn every pinned contact back into a first contact, and a man in the
middle would then complete without a key-change warning. So the client
remembers, as ssh's ``known_hosts`` does, the ``server_id`` each relay
address had the first time, and a different one at that address is a stop
as loud as a key change (:class:`relaychat.client.errors.RelayChanged`),
lifted only by :meth:`KnownRelays.replace` after the user decided.

One line per relay::

    <address> <server_id_b64>

``address`` is :func:`relay_address` of what the user typed (``host:port``
for the usual forms, so ``tcp:relay:7733`` and ``tls:relay:7733`` are the
same relay; any other endpoint string as it is). Blank lines and ``#``
lines are comments. As for the pins file (``relaychat.crypto.pins``): the
file is re-read on every call and rewritten atomically, mode 0600, under
the same advisory lock discipline, so two clients on one profile never
erase each other's lines; a damaged line is kept verbatim, reported in
``problems``, and, when its address is readable, makes that address
*disputed* (CHANGED for any id) rather than unknown, since "unknown" would
accept whatever the relay says next.

Bounded like the pins file: at most :data:`MAX_RELAYS` addresses; beyond
that a first connection to a new address is refused with ``PinsFull``
(never made room for by forgetting another relay's id). A new address is
appended; only ``replace`` rewrites the file.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Optional

from relaychat.crypto.identity import SERVER_ID_SIZE
from relaychat.crypto.keyfiles import append_private_file, write_private_file
from relaychat.crypto.pins import PinConflict, PinError, PinFile, PinsFull, PinStatus, data_lines, locked, read_lines
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.codec import EncodingError, b64decode, b64encode

__all__ = ["DEFAULT_PORT", "FILENAME", "MAX_RELAYS", "KnownRelays", "relay_address", "relay_fingerprint"]

FILENAME = "known_relays"
DEFAULT_PORT = 7733
MAX_RELAYS = 1000  # addresses remembered: about 100 KB of file
HEADER = (
    b"# relaychat known relays: <address> <server_id_b64>\n"
    b"# A relay that changes its id at an address is refused until the change is accepted.\n"
)

# tcp:HOST:PORT, tls:HOST:PORT[:options], HOST[:PORT], [IPv6][:PORT]
_FORM = re.compile(
    r"(?:(?P<scheme>tcp|tls):)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[A-Za-z0-9][A-Za-z0-9.\-_]*))"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?P<rest>:.*)?\Z"
)


def relay_fingerprint(server_id: bytes) -> str:
    """A relay id shown to people: section 13's fingerprint format over its 32 bytes."""
    return identity_fingerprint(server_id)


def relay_address(spec: str) -> str:
    """The name a relay is remembered by: ``host:port`` (host lower-case, IPv6 in
    brackets, default port 7733) for the forms the program accepts, else the
    endpoint string itself (white space escaped so it stays one token)."""
    spec = spec.strip()
    match = _FORM.match(spec)
    if match is not None and (match.group("scheme") or not match.group("rest")):
        if match.group("scheme") is None or match.group("port") is not None:
            port = int(match.group("port") or DEFAULT_PORT)
            if 0 < port < 65536:
                if match.group("v6"):
                    return f"[{match.group('v6').lower()}]:{port}"
                return f"{match.group('host').lower()}:{port}"
    return spec.replace("%", "%25").replace(" ", "%20").replace("\t", "%09") or "-"


@dataclass
class _Entry:
    ids: list[bytes] = field(default_factory=list)
    damaged: bool = False


@dataclass
class _State:
    lines: list[bytes]
    entries: dict[str, _Entry]
    attributed: dict[int, str]  # line index -> its address


class KnownRelays(PinFile):
    """The ``server_id`` remembered for each relay address."""

    FILENAME = FILENAME
    max_relays = MAX_RELAYS

    def _read(self) -> _State:
        lines = read_lines(self.path, "known-relays")
        entries: dict[str, _Entry] = {}
        attributed: dict[int, str] = {}
        problems: list[str] = []
        for index, text in data_lines(lines):
            where = f"{self.path}, line {index + 1}"
            if text is None:
                problems.append(f"{where}: not UTF-8 text; the line is kept but ignored.")
                continue
            fields = text.split()
            address = fields[0]
            entry = entries.setdefault(address, _Entry())
            attributed[index] = address
            server_id: Optional[bytes] = None
            if len(fields) == 2:
                try:
                    server_id = b64decode(fields[1], size=SERVER_ID_SIZE)
                except EncodingError:
                    server_id = None
            if server_id is None:
                entry.damaged = True
                problems.append(f"{where}: the relay id remembered for {address} is unreadable; "
                                "the relay is refused until its id is accepted again.")
                continue
            if entry.ids and not any(hmac.compare_digest(i, server_id) for i in entry.ids):
                problems.append(f"{where}: a second, different id for {address}; "
                                "the relay is refused until an id is accepted.")
            entry.ids.append(server_id)
        self._problems = problems
        return _State(lines, entries, attributed)

    @staticmethod
    def _status(entry: Optional[_Entry], server_id: bytes) -> PinStatus:
        if entry is None:
            return PinStatus.NEW
        if entry.damaged or not entry.ids:
            return PinStatus.CHANGED
        results = [hmac.compare_digest(i, server_id) for i in entry.ids]
        return PinStatus.MATCH if all(results) else PinStatus.CHANGED

    @staticmethod
    def _args(address: str, server_id: bytes) -> tuple[str, bytes]:
        if not isinstance(address, str) or not address or address.split() != [address]:
            raise ValueError("a relay address is one word; use relay_address()")
        if not isinstance(server_id, (bytes, bytearray)) or len(server_id) != SERVER_ID_SIZE:
            raise ValueError(f"a relay id is {SERVER_ID_SIZE} bytes")
        return address, bytes(server_id)

    def check(self, address: str, server_id: bytes) -> PinStatus:
        """NEW (never connected there), MATCH, or CHANGED (stop and warn)."""
        address, server_id = self._args(address, server_id)
        return self._status(self._read().entries.get(address), server_id)

    def get(self, address: str) -> Optional[bytes]:
        """The remembered id, None if none; PinError if the lines are damaged or contradict."""
        entry = self._read().entries.get(address)
        if entry is None:
            return None
        first = entry.ids[0] if entry.ids else None
        if first is None or entry.damaged or not all(hmac.compare_digest(i, first) for i in entry.ids):
            raise PinError(f"The id remembered for the relay {address} in {self.path} is damaged or "
                           "contradictory; accept the relay's id again once you trust it.")
        return first

    def _write(self, lines: list[bytes], address: str, server_id: bytes) -> None:
        """``lines`` (or the header, for a new file) and the new entry."""
        lines = list(lines) or HEADER.rstrip(b"\n").split(b"\n")
        lines.append(f"{address} {b64encode(server_id)}".encode("utf-8"))
        write_private_file(self.path, b"".join(line + b"\n" for line in lines))

    def remember(self, address: str, server_id: bytes) -> PinStatus:
        """Record the id of a relay met for the first time: NEW, or MATCH if known.

        Raises ``PinConflict`` if another id is remembered (or the entry is
        damaged): only :meth:`replace` may overwrite it.
        """
        address, server_id = self._args(address, server_id)
        with locked(self.path):
            state = self._read()
            status = self._status(state.entries.get(address), server_id)
            if status is PinStatus.CHANGED:
                raise PinConflict(f"Another id is remembered for the relay {address}; "
                                  "it can only be replaced after you accept the change.")
            if status is PinStatus.NEW:
                if len(state.entries) >= self.max_relays:
                    raise PinsFull(f"{address} is a new relay, but {self.max_relays} relays are already remembered, "
                                   f"the most kept; none is forgotten to make room. Delete the lines of relays you "
                                   f"no longer use from {self.path}.")
                head = b"" if state.lines else HEADER
                append_private_file(self.path, head + f"{address} {b64encode(server_id)}\n".encode("utf-8"))
            return status

    def replace(self, address: str, server_id: bytes) -> None:
        """Remember ``server_id`` for ``address`` after the user accepted the change."""
        address, server_id = self._args(address, server_id)
        with locked(self.path):
            state = self._read()
            kept = [line for i, line in enumerate(state.lines) if state.attributed.get(i) != address]
            self._write(kept, address, server_id)
            self._read()  # refresh ``problems``
