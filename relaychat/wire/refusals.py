"""The texts of two refusals a client reads: which ban and for how long
(docs/protocol.rst, section 2), and who holds a nickname (section 4).

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

from relaychat.wire.nicknames import is_nickname

__all__ = ["BAN_KINDS", "ban_text", "parse_ban", "parse_holder", "taken_text"]

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


def taken_text(holder: str, lookalike: bool) -> str:
    """The text of ``ERR ... taken``: the holder's nickname first (section 4)."""
    if lookalike:
        return f"{holder} looks the same and is bound to another key"
    return f"{holder} is bound to another key"


def parse_holder(text: str) -> Optional[tuple[str, bool]]:
    """(holder, is a look-alike) from a ``taken`` text; None if it is not one of
    :func:`taken_text`'s two forms."""
    holder = text.split(" ", 1)[0]
    if not is_nickname(holder):
        return None
    for lookalike in (False, True):
        if text == taken_text(holder, lookalike):
            return holder, lookalike
    return None

