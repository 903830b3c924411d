"""How the relay says which ban refused a client, and for how long (docs/protocol.rst, section 2).

Both ``BYE banned`` and ``ERR <COMMAND> banned`` carry, as the first two
words of their text, the kind of ban (``nick``, ``key`` or ``address``)
and the whole seconds it still runs, then a sentence::

    BYE banned nick 3600 this nickname is banned for 3600 more seconds

The relay formats it with :func:`ban_text`; clients read it back with
:func:`parse_ban` (and show a plain text if a relay does not follow it).
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["BAN_KINDS", "ban_text", "parse_ban"]

#: Ban kinds and what they are called in sentences.
BAN_KINDS = {"nick": "nickname", "key": "identity key", "address": "address"}
_MAX_SECONDS = 10**12


def ban_text(kind: str, seconds: float) -> str:
    """The text after ``banned`` for a ban of ``kind`` that ends in ``seconds``."""
    left = max(1, math.ceil(seconds))
    unit = "second" if left == 1 else "seconds"
    return f"{kind} {left} this {BAN_KINDS[kind]} is banned for {left} more {unit}"


def parse_ban(text: str) -> Optional[tuple[str, int]]:
    """(kind, seconds left) from a ``banned`` text; None if it does not say."""
    parts = text.split(" ", 2)
    if len(parts) < 2 or parts[0] not in BAN_KINDS:
        return None
    seconds = parts[1]
    if not (seconds.isascii() and seconds.isdigit()) or len(seconds) > 13 or int(seconds) > _MAX_SECONDS:
        return None
    return parts[0], int(seconds)
