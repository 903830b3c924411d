"""Error and goodbye codes of the relay protocol (docs/protocol.rst, section 2).

Each code knows whether it counts as a protocol violation, so the policy
"repeated violations end the connection" lives in one table, not in every
handler.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """``ERR`` codes; the value is (wire word, counts as a violation)."""

    SYNTAX = ("syntax", True)
    UNKNOWN = ("unknown", True)
    ORDER = ("order", True)
    VERSION = ("version", True)
    TOO_LONG = ("too-long", True)
    BAD_ENCODING = ("bad-encoding", True)
    TOO_BIG = ("too-big", True)
    BAD_NICK = ("bad-nick", True)
    BAD_KEY = ("bad-key", True)
    BAD_SIGNATURE = ("bad-signature", True)
    POW = ("pow", True)
    NO_SESSION = ("no-session", True)
    TAKEN = ("taken", False)
    NO_SUCH_USER = ("no-such-user", False)
    NO_SUCH_MAIL = ("no-such-mail", False)
    OFFLINE = ("offline", False)
    INVALID = ("invalid", False)
    LIMIT = ("limit", False)
    QUOTA = ("quota", False)
    BANNED = ("banned", False)
    DRAINING = ("draining", False)
    INTERNAL = ("internal", False)
    UNAVAILABLE = ("unavailable", False)  # shared state (a cluster's Redis) unreachable: try again

    @property
    def word(self) -> str:
        return self.value[0]

    @property
    def is_violation(self) -> bool:
        return self.value[1]


class Bye(enum.Enum):
    """Reasons the relay gives in ``BYE`` before closing a connection."""

    QUIT = "quit"
    TIMEOUT = "timeout"
    IDLE = "idle"
    VIOLATIONS = "violations"
    BUSY = "busy"
    BANNED = "banned"
    KICKED = "kicked"
    REPLACED = "replaced"
    DRAINING = "draining"
    SLOW = "slow"


class Closed(enum.Enum):
    """Reasons in the ``CLOSED <sid> <reason>`` event."""

    DECLINED = "declined"
    CLOSED = "closed"
    GONE = "gone"
    TIMEOUT = "timeout"
    KICKED = "kicked"
    DRAINING = "draining"


class ProtocolError(Exception):
    """A request the relay refuses; carries the code and a sentence for people."""

    def __init__(self, code: Code, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
