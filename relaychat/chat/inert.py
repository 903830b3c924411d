"""Showing text that came from the network without letting it act on the terminal.

docs/protocol.rst section 16: messages, nicknames and the relay's ``NOTICE``,
``BYE`` and ``ERR`` texts are arbitrary, so a peer or a relay could send
escape sequences that clear the screen, move the cursor, retitle the window
or paint a line that looks like one of our own ``***`` status lines. Every
piece of such text goes through :func:`render_inert` before it reaches the
terminal; what comes out can only print glyphs, plus (in multi-line mode)
line breaks that are always followed by an indent, so a received line can
never start at the left margin where status lines live.

What is escaped, and why:

* C0 controls, DEL and C1 controls (including ESC, CSI ``\\x9b``, NEL
  ``\\x85``, TAB, CR) as ``\\xNN``, as section 16 requires. They are the
  terminal's command language.
* Unicode format characters (category Cf) such as the bidi embeddings and
  overrides U+202A-202E, the isolates U+2066-2069, the marks U+200E/200F
  and U+061C, zero-width spaces, U+FEFF and the invisible tag characters,
  as ``\\uXXXX`` / ``\\UXXXXXXXX``: they reorder or hide what is shown (a
  right-to-left override can make ``alice`` read ``ecila``, tags can carry
  invisible text). ZWJ and ZWNJ are kept: emoji sequences and several
  scripts need them, and they cannot reorder or hide anything.
* Lone surrogates, which cannot be encoded for the terminal at all.
* U+2028/U+2029 (line and paragraph separators), which some terminals and
  many copy-and-paste targets treat as line breaks: a break in multi-line
  mode, an escape otherwise.
* Combining marks beyond :data:`MAX_MARKS` on one base character: "Zalgo"
  towers can paint over neighbouring lines in some terminals. Real text
  needs far fewer.

Backslashes are left alone: a peer typing ``\\x1b`` literally gets the same
harmless glyphs as an escaped ESC, and keeping paths and smileys readable
matters more than telling the two apart.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_MARKS", "render_inert"]

#: Combining marks kept on one base character; further ones are escaped.
MAX_MARKS = 8

#: The indent that follows each line break in multi-line text.
DEFAULT_INDENT = "    "

# Format characters that are needed for correct display and cannot reorder
# or hide text: ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER.
_KEPT_FORMAT = frozenset("\u200c\u200d")
_LINE_SEPARATORS = frozenset("\u2028\u2029")
_MARK_CATEGORIES = frozenset(("Mn", "Me"))


def _escape(ch: str) -> str:
    """Python-style escape of one character: ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _is_dangerous(ch: str) -> bool:
    """True for characters that must never reach the terminal as themselves."""
    category = unicodedata.category(ch)
    if category in ("Cc", "Cs"):
        return True
    if category == "Cf":
        return ch not in _KEPT_FORMAT
    return ch in _LINE_SEPARATORS


def render_inert(text: str, *, multiline: bool = False, indent: str = DEFAULT_INDENT) -> str:
    """Return ``text`` with everything that could act on a terminal escaped.

    With ``multiline=False`` (nicknames, relay texts, anything shown on one
    line) the result contains no control character at all. With
    ``multiline=True`` (chat messages) each line break -- LF, CR LF, U+2028
    or U+2029 -- becomes ``"\\n" + indent``, and that LF is the only control
    character in the result; the caller turns it into a new screen line.
    ``indent`` must be non-empty so that continuation lines cannot begin at
    the left margin.
    """
    if not isinstance(text, str):
        raise TypeError(f"render_inert() takes text (str), not {type(text).__name__}")
    if multiline and not indent:
        raise ValueError("multi-line text needs a non-empty indent")
    out: list[str] = []
    marks = 0
    index = 0
    length = len(text)
    while index < length:
        ch = text[index]
        index += 1
        if multiline and (ch == "\n" or ch in _LINE_SEPARATORS):
            out.append("\n" + indent)
            marks = 0
            continue
        if multiline and ch == "\r" and index < length and text[index] == "\n":
            out.append("\n" + indent)
            index += 1
            marks = 0
            continue
        if _is_dangerous(ch):
            out.append(_escape(ch))
            marks = 0
            continue
        if unicodedata.category(ch) in _MARK_CATEGORIES:
            marks += 1
            out.append(ch if marks <= MAX_MARKS else _escape(ch))
            continue
        marks = 0
        out.append(ch)
    return "".join(out)
