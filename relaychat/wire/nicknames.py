"""Nickname rules (docs/protocol.rst, section 4): the one definition.

The relay, the client library, the terminal program and the pin file all
import these, so a nickname one of them accepts is one all of them accept.

ASCII only, so no script mixing; and a *skeleton* that folds the cheap
ASCII look-alikes together, so ``a1ice`` cannot pose as ``alice``.
"""

from __future__ import annotations

import re
from typing import Final

from relaychat.wire.errors import Code, ProtocolError

NICK_RULE: Final = "nicknames are 2 to 24 letters, digits, '_' or '-', starting with a letter"
"""The rule in words, for error messages."""

_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,23}\Z")

# Applied in order, each to the whole string; "rn" before nothing that makes
# an "rn", so the order is stable.
_LOOKALIKES = (("0", "o"), ("1", "l"), ("i", "l"), ("5", "s"), ("_", "-"), ("rn", "m"), ("vv", "w"))


class NicknameError(ProtocolError, ValueError):
    """A string that breaks the rules: a ``bad-nick`` error for the relay, a
    ValueError for a library caller; the same exception either way."""

    def __init__(self, nick: object) -> None:
        super().__init__(Code.BAD_NICK, NICK_RULE)  # the relay's ERR text: it never echoes the input
        self.nick = nick

    def __str__(self) -> str:
        shown = repr(self.nick)
        return f"{shown if len(shown) <= 40 else shown[:37] + '...'} is not a nickname: {NICK_RULE}."


def is_nickname(text: object) -> bool:
    """True if ``text`` follows the rules (in any letter case)."""
    return isinstance(text, str) and _NICK.match(text) is not None


def canonical(nick: object) -> str:
    """Return the canonical (lower-case) nickname, or raise :class:`NicknameError`.

    The check comes before lower-casing: ``str.lower`` maps some non-ASCII
    letters (the Kelvin sign) to ASCII ones, which must not sneak in.
    """
    if not is_nickname(nick):
        raise NicknameError(nick)
    assert isinstance(nick, str)
    return nick.lower()


def skeleton(canonical_nick: str) -> str:
    """Fold look-alike characters so that confusable nicknames collide."""
    folded = canonical_nick
    for old, new in _LOOKALIKES:
        folded = folded.replace(old, new)
    return folded
