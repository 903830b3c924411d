"""What makes a ``FRAME`` line good: strict base64 under the frame limit, for an open session.

Pure functions over bytes, no hub and no I/O. The hub's hot path
(:meth:`relaychat.server.hub.Hub._handle`) stays hand-written in the hub,
where a line costs a few comparisons: it reads :data:`B64_VALUE` and
:func:`tail_padding` per line and asks :func:`run_is_strict` once per run of
frames. Whatever that path does not take comes to :func:`check_frame`,
which says exactly what is wrong with it, or forwards it once a CR is gone.

Strict base64 (RFC 4648 alphabet, padding only at the end, length a
multiple of 4, unused bits zero) gives each payload one spelling, so the
relay forwards the bytes a client sent and the peer decodes what was meant.
"""

from __future__ import annotations

import binascii

import pybase64

from relaychat.server.connection import Session
from relaychat.server.limits import FRAME_LINE_OVERHEAD
from relaychat.wire.errors import Code, ProtocolError
from relaychat.wire.lines import strip_cr
from relaychat.wire.messages import FRAME_PREFIX
from relaychat.wire.tokens import SID_LENGTH, safe_sid

PAYLOAD_AT = FRAME_LINE_OVERHEAD
"""Where the payload of ``FRAME <sid> <payload>`` starts: ``len(FRAME_PREFIX) + SID_LENGTH + 1``."""
assert PAYLOAD_AT == len(FRAME_PREFIX) + SID_LENGTH + 1

B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
B64_VALUE = bytes(B64_ALPHABET.find(bytes([i])) & 0xFF for i in range(256))
"""Each byte's value as a base64 digit (0xFF for a byte outside the alphabet)."""

BULK_LINE = 2048
"""Bytes per frame line from which :func:`strict_base64` is the faster check of a run."""

_PAD_MASK = (0, 3, 15)  # the bits a last data character may not carry before one or two "="


def payload_size(line: bytes) -> int:
    """Decoded size of the payload of ``FRAME <sid> <payload>``, or -1 if the
    payload is not strict base64.

    The caller has checked the prefix, so deleting the alphabet from the
    whole line must leave exactly its two spaces and the padding: one C
    pass over the bytes, with no copy of the payload.
    """
    chars = len(line) - PAYLOAD_AT
    if chars & 3:
        return -1
    rest = line.translate(None, B64_ALPHABET)
    if rest == b"  ":
        return chars // 4 * 3
    if rest == b"  =" and line[-1] == 61 and not B64_VALUE[line[-2]] & 3:
        return chars // 4 * 3 - 1
    if rest == b"  ==" and line.endswith(b"==") and not B64_VALUE[line[-3]] & 15:
        return chars // 4 * 3 - 2
    return -1


def strict_base64(line: bytes) -> bool:
    """The payload of a FRAME line is RFC 4648 base64, padding at the end
    only (pybase64 in validate mode; the unused bits are checked apart, by
    the run loop or :func:`tail_padding`)."""
    try:
        pybase64.b64decode(memoryview(line)[PAYLOAD_AT:], validate=True)
    except binascii.Error:
        return False
    return True


def tail_padding(line: bytes) -> int:
    """How many ``=`` end ``line`` (0 to 2), or -1 if the character before
    them carries bits the padding says are unused (a second spelling)."""
    if line[-1] != 61:
        return 0
    pads = 2 if line[-2] == 61 else 1
    return -1 if B64_VALUE[line[-1 - pads]] & _PAD_MASK[pads] else pads


def run_is_strict(run: list[bytes], block: bytes, pads: int) -> bool:
    """Every payload of ``run`` (frame lines of one session whose lengths the
    hot path checked; ``block`` is them joined, each with its LF) is strict
    base64, given the ``pads`` padding characters found at line ends.

    Deleting the alphabet from the block must leave each line's two prefix
    spaces and LF, and those padding characters: one C pass
    (``bytes.translate``) with no copy of a payload. Anything else (a NUL,
    ESC, CR, a byte that is not ASCII, a space, padding inside a payload)
    fails the whole run, which the hub then checks frame by frame.
    """
    if len(block) > BULK_LINE * len(run):
        # Big frames: pybase64's SIMD decoder checks a payload about ten
        # times faster than translate can (0.06 against 0.8 ns a byte),
        # though a call costs more than translate does on a small frame.
        return all(strict_base64(line) for line in run)
    rest = block.translate(None, B64_ALPHABET)
    return len(rest) == 3 * len(run) + pads and rest.count(b"=") == pads


def check_frame(line: bytes, sessions: dict[bytes, Session], frame_line_max: int, max_frame: int) -> tuple[Session, bytes]:
    """The slow path: the session and the line to forward (a CR before the
    LF removed, no LF) if ``line`` is a good ``FRAME`` for one of
    ``sessions``; else raises the :class:`ProtocolError` to answer it with.

    ``frame_line_max`` is the longest line whose payload can decode to
    ``max_frame`` bytes: a longer one is refused before it is looked at.
    """
    parts = strip_cr(line).split(b" ")
    sid = parts[1].decode("ascii", "replace") if len(parts) > 1 else "-"
    if len(parts) != 3 or len(parts[1]) != SID_LENGTH or not parts[2]:
        raise ProtocolError(Code.SYNTAX, f"{safe_sid(sid)} FRAME takes a session id and one payload")
    session = sessions.get(parts[1])
    if session is None or not session.open:
        raise ProtocolError(Code.NO_SESSION, f"{safe_sid(sid)} no open session with that id")
    clean = b" ".join(parts)
    size = payload_size(clean) if len(clean) <= frame_line_max else -2
    if size == -1:
        raise ProtocolError(Code.SYNTAX, f"{sid} the payload is not base64 (RFC 4648, with padding)")
    if not 0 < size <= max_frame:
        raise ProtocolError(Code.TOO_BIG, f"{sid} a frame payload is at most {max_frame} bytes once decoded")
    return session, clean
