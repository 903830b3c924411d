"""Nickname rules (docs/protocol.rst, section 4).

ASCII only, so no script mixing; and a *skeleton* that folds the cheap
ASCII look-alikes together, so ``a1ice`` cannot pose as ``alice``.
"""

from __future__ import annotations

import re

from relaychat.wire.errors import Code, ProtocolError

_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,23}\Z")

# Applied in order, each to the whole string; "rn" before nothing that makes
# an "rn", so the order is stable.
_LOOKALIKES = (("0", "o"), ("1", "l"), ("i", "l"), ("5", "s"), ("_", "-"), ("rn", "m"), ("vv", "w"))


def canonical(nick: str) -> str:
    """Return the canonical (lower-case) nickname, or refuse it with a reason."""
    if not _NICK.match(nick):
        raise ProtocolError(
            Code.BAD_NICK,
            "a nickname is 2 to 24 letters, digits, '_' or '-', starting with a letter",
        )
    return nick.lower()


def skeleton(canonical_nick: str) -> str:
    """Fold look-alike characters so that confusable nicknames collide."""
    folded = canonical_nick
    for old, new in _LOOKALIKES:
        folded = folded.replace(old, new)
    return folded
