"""Helpers for the listener tests: WebSocket frames by hand, a daemon
configuration with several listeners, and running twistd to completion."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Optional

from tests.daemon import ROOT, TWISTD

_LISTENING = re.compile(r"relaychat: (\w+) listener '([^']*)' listening on ([\d.:a-f]+):(\d+)")


def listening(log: str) -> list[tuple[str, int]]:
    """``(kind, port)`` of every listener, in the order they started (the configured order)."""
    return [(m.group(1), int(m.group(4))) for m in _LISTENING.finditer(log)]


def toml_listener(kind: str, endpoint: str, **options: object) -> str:
    lines = ["[[listener]]", f"kind = {kind!r}", f"endpoint = {endpoint!r}"]
    for key, value in options.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def write_config(path: Path, data_dir: Path, *listeners: str) -> Path:
    path.write_text(
        f"[relay]\ndata_dir = {_toml(data_dir)}\n\n" + "\n".join(listeners) + "\n[limits]\npow_bits = 0\n"
    )
    return path


def run_twistd(config: Path, cwd: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``twistd -n relaychat --config CONFIG`` to completion (for start-up failures)."""
    return subprocess.run(
        [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "relaychat", "--config", str(config)],
        cwd=str(cwd), env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


# -- WebSocket frames, client side (RFC 6455), enough to drive the server in memory --


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked frame from a client: opcode 1 text, 2 binary, 8 close (``rsv``: reserved bits, 0x70)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into ``(opcode, payload)``."""
    frames = []
    while data:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        at = 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[at:at + n]))
        data = data[at + n:]
    return frames


def upgrade_request(path: str = "/", origin: Optional[str] = None, extra: str = "") -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    lines = [
        f"GET {path} HTTP/1.1", "Host: relay.test", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("ascii")
