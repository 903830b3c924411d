"""FRAME lines the hub's hot path could not simply forward, and the checks of
a FRAME payload (docs/protocol.rst section 7): strict base64, its decoded size.

:class:`FrameForwarding` is a mixin of :class:`~relaychat.server.hub.Hub`:
``_end_run`` forwards a run of frames found by the hot loop in
``Hub._handle`` once their payloads pass one check over the whole run, and
``_frame_error`` takes a line the loop refused, forwards it if it is good
after all, or says why not. The functions below read a payload without
decoding it.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Optional, cast

import pybase64

from relaychat.server.connection import Connection, Session
from relaychat.server.limits import FRAME_LINE_OVERHEAD, Limits
from relaychat.wire.errors import Code
from relaychat.wire.lines import strip_cr
from relaychat.wire.tokens import SID_LENGTH, safe_sid

_PAYLOAD_AT = FRAME_LINE_OVERHEAD  # len("FRAME ") + SID_LENGTH + 1


class FrameForwarding:
    limits: Limits

    if TYPE_CHECKING:  # provided by the Hub
        from relaychat.server.hub import Stats

        stats: Stats
        _dirty: list[Connection]
        _frame_line_max: int

        def _error(self, client: Connection, command: str, code: Code, text: str) -> None: ...

    def _end_run(self, client: Connection, session: Optional[Session], lines: list[Optional[bytes]], pads: int) -> None:
        """Forward a run of frames for one session in one piece, once every
        payload in it is strict base64.

        Deleting the alphabet from the run must leave each line's two
        prefix spaces and LF, and the ``pads`` padding characters the loop
        found at line ends: one C pass (``bytes.translate``) over the run,
        with no copy of a payload. Anything else in it (a NUL, ESC, CR, a
        byte that is not ASCII, a space, padding inside a payload) and the
        run is handled frame by frame by :meth:`_frame_error`, which
        forwards the good ones and refuses the others.
        """
        assert session is not None  # a run has its session
        run = cast("list[bytes]", lines)  # the hot loop put only whole frame lines in a run
        block = b"\n".join([*run, b""])
        if len(block) > BULK_LINE * len(run):
            # Big frames: pybase64's SIMD decoder checks a payload about ten
            # times faster than translate can (0.06 against 0.8 ns a byte),
            # though a call costs more than translate does on a small frame.
            good = all(strict_base64(line) for line in run)
        else:
            rest = block.translate(None, B64_ALPHABET)
            good = len(rest) == 3 * len(run) + pads and rest.count(b"=") == pads
        if not good:
            for line in run:
                self._frame_error(client, line)
            return
        peer = session.other(client)
        if not peer.outbox:
            self._dirty.append(peer)
        peer.outbox.append(block)
        stats = self.stats
        session.frames += len(run)
        session.bytes += len(block)
        stats.frames += len(run)
        stats.bytes += len(block)

    def _frame_error(self, client: Connection, line: bytes) -> None:
        """The hot path did not take this FRAME line: forward it if it is good
        once a CR before the LF is removed, else say why not."""
        parts = strip_cr(line).split(b" ")
        sid = parts[1].decode("ascii", "replace") if len(parts) > 1 else "-"
        if len(parts) != 3 or len(parts[1]) != SID_LENGTH or not parts[2]:
            self._error(client, "FRAME", Code.SYNTAX, f"{safe_sid(sid)} FRAME takes a session id and one payload")
            return
        session = client.sessions.get(parts[1])
        if session is None or not session.open:
            self._error(client, "FRAME", Code.NO_SESSION, f"{safe_sid(sid)} no open session with that id")
            return
        clean = b" ".join(parts)
        size = payload_size(clean) if len(clean) <= self._frame_line_max else -2
        if size == -1:
            self._error(client, "FRAME", Code.SYNTAX, f"{sid} the payload is not base64 (RFC 4648, with padding)")
        elif not 0 < size <= self.limits.max_frame:
            self._error(client, "FRAME", Code.TOO_BIG,
                        f"{sid} a frame payload is at most {self.limits.max_frame} bytes once decoded")
        else:
            peer = session.other(client)
            if not peer.outbox:
                self._dirty.append(peer)
            peer.outbox.append(clean + b"\n")
            session.frames += 1
            session.bytes += len(clean) + 1
            self.stats.frames += 1
            self.stats.bytes += len(clean) + 1


B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
B64_VALUE = bytes(B64_ALPHABET.find(bytes([i])) & 0xFF for i in range(256))


def payload_size(line: bytes) -> int:
    """Decoded size of the payload of ``FRAME <sid> <payload>``, or -1 if the
    payload is not strict base64 (RFC 4648 alphabet, padding only at the end,
    length a multiple of 4, unused bits zero: one spelling per byte string).

    The caller has checked the prefix, so deleting the alphabet from the
    whole line must leave exactly its two spaces and the padding: one C
    pass over the bytes, with no copy of the payload.
    """
    chars = len(line) - _PAYLOAD_AT
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


BULK_LINE = 2048  # bytes per frame line from which strict_base64 is the faster check


def strict_base64(line: bytes) -> bool:
    """The payload of a FRAME line is RFC 4648 base64, padding at the end
    only (pybase64 in validate mode; the unused bits are checked apart, by
    the run loop or tail_padding)."""
    try:
        pybase64.b64decode(memoryview(line)[_PAYLOAD_AT:], validate=True)
    except binascii.Error:
        return False
    return True


_PAD_MASK = (0, 3, 15)  # the bits a last data character may not carry before one or two "="


def tail_padding(line: bytes) -> int:
    """How many ``=`` end ``line`` (0 to 2), or -1 if the character before
    them carries bits the padding says are unused (a second spelling)."""
    if line[-1] != 61:
        return 0
    pads = 2 if line[-2] == 61 else 1
    return -1 if B64_VALUE[line[-1 - pads]] & _PAD_MASK[pads] else pads
