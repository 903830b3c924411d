"""The C frame loops (relaychat/server/wsframes.c) against the Python ones in
relaychat/server/wsframes.py, the reference: the same frames of every kind,
split the same way, must give the same events, output, state and close
codes; and each C function against a plain model of its contract, on any
bytes at all, since it reads what the network sends."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Callable, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from relaychat.server import wsframes
from relaychat.server.wsframes import COMPILED, FRAMING, Policy, WebSocketServer
from tests.listener_support import upgrade_request

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_C = "RELAYCHAT_TEST_WITHOUT_C"


def frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0, masked: bool = True,
          width: Optional[int] = None, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A client frame; ``width`` 7, 16 or 64 writes the length in that many bits (non-minimal too)."""
    n = len(payload)
    width = width or (7 if n < 126 else 16 if n < 65536 else 64)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if width == 7:
        head += bytes([bit | n])
    elif width == 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


TEXTS = st.one_of(
    st.binary(max_size=40).map(lambda b: bytes(c & 0x7F for c in b).replace(b"\n", b"")),  # ASCII lines
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),  # UTF-8, LFs, surrogates (invalid)
    st.binary(max_size=30),  # anything
    st.builds(lambda n, c: c * n, st.integers(100, 400), st.sampled_from([b"a", b"\xc3\xa9", b"\n", b"\xff"])),
)
MASKS = st.binary(min_size=4, max_size=4)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame of any kind, well-formed or not."""
    kind = draw(st.sampled_from(["text"] * 6 + ["wide", "fragment", "control", "close", "binary", "odd"]))
    payload, mask = draw(TEXTS), draw(MASKS)
    if kind == "text":
        return frame(payload, mask=mask)
    if kind == "wide":  # lengths written in more bits than needed
        return frame(payload, mask=mask, width=draw(st.sampled_from([16, 64])))
    if kind == "fragment":
        return frame(payload, opcode=draw(st.sampled_from([0, 1, 2])), fin=draw(st.booleans()), mask=mask)
    if kind == "control":
        return frame(payload[:draw(st.sampled_from([125, 130]))], opcode=draw(st.sampled_from([9, 10])),
                     fin=draw(st.booleans()) or draw(st.booleans()), mask=mask)
    if kind == "close":
        return frame(draw(st.sampled_from([b"", b"\x03", b"\x03\xe8", b"\x03\xe9bye", b"\x0b\xb8\xff"])),
                     opcode=8, mask=mask)
    if kind == "binary":
        return frame(payload, opcode=2, mask=mask)
    return draw(st.sampled_from([  # unmasked, reserved bits, unknown opcode, a long 64-bit length
        frame(payload, masked=False), frame(payload, rsv=0x40, mask=mask), frame(payload, opcode=3, mask=mask),
        b"\x81\xff" + struct.pack("!Q", 1 << 63) + mask, b"\x81\xff" + struct.pack("!Q", 2 ** 64 - 1) + mask,
    ]))


def pieces(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(set(c % (len(wire) + 1) for c in cuts))
    return [wire[a:b] for a, b in zip([0] + points, points + [len(wire)])]


class Built(SynchronousTestCase):
    def test_the_c_loops_are_built_where_setup_declares_them(self) -> None:
        """CI installs with a compiler: the extension must be there and in use. Only
        RELAYCHAT_TEST_WITHOUT_C=1 (an install known to have no compiler) excuses it."""
        self.assertIn('Extension("_relaychat_wsframes", ["relaychat/server/wsframes.c"]', (ROOT / "setup.py").read_text())
        if os.environ.get(WITHOUT_C) == "1":
            raise SkipTest(f"{WITHOUT_C}=1: the framing runs {FRAMING}")
        self.assertTrue(COMPILED, f"the framing runs {FRAMING}; build it with `pip install .` "
                                  "or `python setup.py build_ext --inplace`, or set RELAYCHAT_TEST_WITHOUT_C=1")
        self.assertEqual(FRAMING, "in C (_relaychat_wsframes)")
        ws = WebSocketServer(Policy(), 1024)
        self.assertIsNotNone(ws._read_c)  # the default is the C loops
        self.assertIsNotNone(ws._write_c)
        self.assertIsNone(WebSocketServer(Policy(), 1024, compiled=False)._read_c)


class Compiled(SynchronousTestCase):
    def setUp(self) -> None:
        if not COMPILED:
            raise SkipTest(f"the framing runs {FRAMING}")


class SameAsPython(Compiled):
    """Whole servers, one over each pair of loops, fed the same bytes."""

    def pair(self, limit: int) -> tuple[WebSocketServer, WebSocketServer]:
        servers = WebSocketServer(Policy(), limit, compiled=True), WebSocketServer(Policy(), limit, compiled=False)
        for ws in servers:
            ws.receive(upgrade_request())
            ws.data_to_send()
        return servers

    def same(self, c: WebSocketServer, py: WebSocketServer, where: object) -> None:
        self.assertEqual((c.state, c.close_code, c._buffer, c._fragment_opcode, c._fragment_size, c._partial),
                         (py.state, py.close_code, py._buffer, py._fragment_opcode, py._fragment_size, py._partial), where)

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(frames(), max_size=25), st.lists(st.integers(0, 10 ** 6), max_size=6),
           st.sampled_from([100, 125, 126, 300, 1024, 65536]), st.booleans(), st.booleans(), st.data())
    def test_frames_of_every_kind_split_anywhere(self, sent: list[bytes], cuts: list[int], limit: int,
                                                 closing: bool, truncated: bool, data: st.DataObject) -> None:
        wire = b"".join(sent)
        if truncated and wire:
            wire = wire[:data.draw(st.integers(0, len(wire) - 1))]
        c, py = self.pair(limit)
        if closing:
            c.close()
            py.close()
        for k, piece in enumerate(pieces(wire, cuts)):
            self.assertEqual(c.receive(piece), py.receive(piece), k)
            pong = k % 2 == 0
            self.assertEqual(c.data_to_send(pong), py.data_to_send(pong), k)
            self.same(c, py, k)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(0, 10 ** 5), max_size=6))
    def test_many_clean_messages_and_one_odd_one(self, messages: list[bytes], cuts: list[int]) -> None:
        """Runs the C loop takes whole, with LFs, bad UTF-8 and a 64-bit frame among them."""
        texts = [m.replace(b"\n", b"") for m in messages] + [b"x\ny", b"\xe2\x82", b"z" * 70]
        wire = b"".join(frame(m, width=64 if len(m) == 70 else None) for m in texts[len(texts) % 3:])
        c, py = self.pair(4096)
        for k, piece in enumerate(pieces(wire, cuts)):
            self.assertEqual(c.receive(piece), py.receive(piece), k)
            self.assertEqual(c.data_to_send(), py.data_to_send(), k)
            self.same(c, py, k)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(frames(), max_size=15), st.lists(st.integers(0, 40), min_size=1, max_size=8))
    def test_the_c_loop_may_stop_at_any_frame(self, sent: list[bytes], reaches: list[int]) -> None:
        """The Python code takes over wherever the C loop stops: here it is made to
        see only the next few bytes of each read, so it stops short at any frame."""
        c, py = self.pair(1024)
        read = c._read_c
        assert read is not None
        calls = iter(reaches * 100)

        def short(data: bytes, start: int, limit: int) -> tuple[bytes, int, Optional[bytes]]:
            return read(memoryview(data)[:start + next(calls, 0)], start, limit)  # type: ignore[arg-type]

        c._read_c = short
        wire = b"".join(sent)
        self.assertEqual(c.receive(wire), py.receive(wire))
        self.assertEqual(c.data_to_send(), py.data_to_send())
        self.same(c, py, "")

    def test_messages_at_the_limit_and_past_it(self) -> None:
        for limit in (125, 126, 65535, 65536):
            for n in (limit - 1, limit, limit + 1):
                for width in {7 if n < 126 else 16 if n < 65536 else 64, 64}:
                    c, py = self.pair(limit)
                    wire = frame(b"ok") + frame(b"a" * n, width=width) + frame(b"after")
                    self.assertEqual(c.receive(wire), py.receive(wire), (limit, n, width))
                    self.assertEqual(c.data_to_send(), py.data_to_send())
                    self.same(c, py, (limit, n, width))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(st.binary(max_size=200), st.sampled_from([b"\n", b"\xff\n", b"x" * 70000 + b"\n"])),
                    max_size=10), st.lists(st.integers(0, 10 ** 6), max_size=5))
    def test_lines_out(self, chunks: list[bytes], cuts: list[int]) -> None:
        c, py = self.pair(1024)
        for piece in pieces(b"".join(chunks), cuts):
            c.send_lines(piece)
            py.send_lines(piece)
            self.assertEqual(c.data_to_send(), py.data_to_send())
            self.same(c, py, piece[:40])


class GuardedBuffer:
    """Memory whose end is followed by an inaccessible page (mmap, then mprotect through ctypes)."""

    def __enter__(self) -> GuardedBuffer:
        import ctypes
        import mmap

        self.page = mmap.PAGESIZE
        self.size = 20 * self.page  # room for the longest test buffer, then the guard page
        self.map = mmap.mmap(-1, self.size + self.page)
        self.anchor = ctypes.c_char.from_buffer(self.map)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if libc.mprotect(ctypes.addressof(self.anchor) + self.size, self.page, 0) != 0:  # 0: PROT_NONE
            raise SkipTest(f"mprotect failed: errno {ctypes.get_errno()}")
        self.whole = memoryview(self.map)
        self.views: list[memoryview] = []
        return self

    def ending_with(self, data: bytes) -> memoryview:
        start = self.size - len(data)
        self.whole[start:self.size] = data
        self.views.append(self.whole[start:self.size])
        return self.views[-1]

    def __exit__(self, *exc: object) -> None:
        for view in [*self.views, self.whole]:
            view.release()
        del self.anchor
        self.map.close()


def read_model(data: bytes, start: int, limit: int) -> tuple[bytes, int, Optional[bytes]]:
    """read_text_frames's contract (relaychat/server/wsframes.c), written plainly."""
    lines, i = b"", start
    while True:
        if len(data) - i < 2 or data[i] != 0x81 or not data[i + 1] & 0x80:
            return lines, i, None
        n, at = data[i + 1] & 0x7F, i + 2
        if n >= 126:
            width = 2 if n == 126 else 8
            if len(data) - at < width:
                return lines, i, None
            n, at = int.from_bytes(data[at:at + width], "big"), at + width
        if n > limit or at + 4 + n > len(data):
            return lines, i, None
        mask = data[at:at + 4]
        message = bytes(b ^ mask[k % 4] for k, b in enumerate(data[at + 4:at + 4 + n]))
        i = at + 4 + n
        try:
            message.decode("utf-8")
        except UnicodeDecodeError:
            return lines, i, message
        if b"\n" in message:
            return lines, i, message
        lines += message + b"\n"


def write_model(data: bytes) -> tuple[bytes, int]:
    *lines, rest = data.split(b"\n")
    out = b"".join(frame(line, masked=False) for line in lines)
    return out, len(data) - len(rest)


class Functions(Compiled):
    """Each C function against its model, on any bytes."""

    read: Callable[[bytes, int, int], tuple[bytes, int, Optional[bytes]]]

    def setUp(self) -> None:
        super().setUp()
        import _relaychat_wsframes

        self.read, self.write = _relaychat_wsframes.read_text_frames, _relaychat_wsframes.write_text_frames

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.one_of(frames(), st.binary(max_size=12)), max_size=12), st.integers(0, 40),
           st.integers(-1, 70000))
    def test_read_on_any_bytes(self, parts: list[bytes], start: int, limit: int) -> None:
        data = b"".join(parts)
        start = min(start, len(data))
        self.assertEqual(self.read(data, start, limit), read_model(data, start, limit))
        # any buffer, not only bytes
        self.assertEqual(self.read(bytearray(data), start, limit), read_model(data, start, limit))
        self.assertEqual(self.read(memoryview(data), start, limit), read_model(data, start, limit))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.sampled_from([b"\n", b"y" * 130, b"z" * 65536]), max_size=4))
    def test_write_on_any_bytes(self, data: bytes, long: list[bytes]) -> None:
        data = data + b"".join(long) + data[:5]
        self.assertEqual(self.write(data), write_model(data))
        self.assertEqual(self.write(bytearray(data)), write_model(data))

    def test_header_lengths_at_every_boundary(self) -> None:
        for n in (0, 1, 124, 125, 126, 127, 65535, 65536, 65537):
            line = bytes([n % 251]) * n
            self.assertEqual(self.write(line + b"\n"), (frame(line, masked=False), n + 1), n)
            for width in (7, 16, 64):
                if n < 126 or width != 7 and (n < 65536 or width == 64):
                    data = frame(line, width=width, mask=b"\x01\x02\x03\x04")
                    self.assertEqual(self.read(data, 0, 70000), (line + b"\n", len(data), None), (n, width))

    def test_nothing_is_read_past_the_buffer(self) -> None:
        """Every prefix of some frames, ending where the memory ends: a read past
        the buffer kills the test process (a guard page, PROT_NONE, follows it)."""
        with GuardedBuffer() as guarded:
            wire = b"".join([frame(b"a" * 130), frame(b"b" * 70000, width=64), frame(b"c"), frame(b"d\n"),
                             frame(b"e" * 5, width=16), frame(b"\xc3\xa9"), frame(b"f" * 200, opcode=9)])
            for end in range(len(wire) + 1):
                view = guarded.ending_with(wire[:end])
                self.assertEqual(self.read(view, 0, 70000), read_model(wire[:end], 0, 70000), end)
            for end in range(0, 300):
                data = b"x" * end + b"\n" * (end % 3)
                self.assertEqual(self.write(guarded.ending_with(data)), write_model(data))

    def test_bad_arguments_raise_rather_than_read_outside(self) -> None:
        data = frame(b"abc")
        for start in (-1, len(data) + 1, 2 ** 62):
            self.assertRaises(ValueError, self.read, data, start, 100)
        self.assertRaises(OverflowError, self.read, data, 2 ** 64, 100)
        self.assertRaises(TypeError, self.read, "text", 0, 100)
        self.assertRaises(TypeError, self.read, data, 0)
        self.assertRaises(TypeError, self.write, "text")
        self.assertEqual(self.read(data, len(data), 100), (b"", len(data), None))
        self.assertEqual(self.read(data, 0, -5), (b"", 0, None))
        self.assertEqual(self.read(data, 0, 2 ** 62), (b"abc\n", len(data), None))
        self.assertEqual(self.write(b""), (b"", 0))

    def test_a_huge_announced_length_is_not_taken(self) -> None:
        for n in (2 ** 63, 2 ** 64 - 1, 2 ** 62 + 1):
            data = b"\x81\xff" + struct.pack("!Q", n) + b"\x00" * 20
            self.assertEqual(self.read(data, 0, 2 ** 63 - 1), (b"", 0, None))


class Documented(SynchronousTestCase):
    def test_the_stub_names_what_the_module_has(self) -> None:
        stub = (ROOT / "_relaychat_wsframes.pyi").read_text()
        source = (ROOT / "relaychat" / "server" / "wsframes.c").read_text()
        names = set(re.findall(r"^def (\w+)\(", stub, re.M))
        self.assertEqual(names, set(re.findall(r'^    \{"(\w+)",', source, re.M)))
        self.assertEqual(names, {"read_text_frames", "write_text_frames"})
        self.assertIs(wsframes.COMPILED, COMPILED)
