"""One blocking line client for every listener kind (tcp, tls, websocket,
wss), able to tell a line from the end of the connection: what the tests of
"every way the relay ends a connection" need."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Optional

from tests.listener_support import client_frame, upgrade_request

KINDS = ("tcp", "tls", "websocket", "wss")


class Closed(Exception):
    """The relay closed the connection (after a clean close, for TLS and WebSocket)."""


class Channel:
    """Lines in and out over one connection of ``kind``; :meth:`read_line`
    raises :class:`Closed` once the relay has closed the socket."""

    def __init__(self, kind: str, port: int, cafile: Optional[Path] = None, timeout: float = 10.0) -> None:
        self.kind = kind
        self.timeout = timeout
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket = raw
        if kind in ("tls", "wss"):
            context = ssl.create_default_context(cafile=str(cafile))
            self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.buffer = b""
        self.websocket = kind in ("websocket", "wss")
        if self.websocket:
            self.sock.sendall(upgrade_request("/"))
            while b"\r\n\r\n" not in self.buffer:
                self.buffer += self._recv()
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, line: str) -> None:
        data = line.encode("utf-8")
        self.sock.sendall(client_frame(data) if self.websocket else data + b"\n")

    def read_line(self) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._websocket_message() if self.websocket else self._stream_line()
            if line is not None:
                return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind}: no line; have {self.buffer[:200]!r}")
            chunk = self._recv()
            if not chunk:
                self._finish_close()
                raise Closed(self.kind)
            self.buffer += chunk

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read_line()

    def expect_close(self) -> None:
        """Read up to the end of the connection; anything else is a failure."""
        try:
            line = self.read_line()
        except Closed:
            return
        raise AssertionError(f"{self.kind}: expected the connection to close, got {line!r}")

    def close(self) -> None:
        self.sock.close()

    # -- insides

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(f"{self.kind}: nothing arrived; have {self.buffer[:200]!r}") from None
        except ConnectionResetError:
            raise AssertionError(f"{self.kind}: the relay reset the connection instead of closing it") from None

    def _stream_line(self) -> Optional[str]:
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8")

    def _websocket_message(self) -> Optional[str]:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                return None
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                return None
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + size:
            return None
        payload, self.buffer = data[at:at + size], data[at + size:]
        if opcode == 8:  # the relay's close: answer it, then the relay closes the TCP connection
            self.sock.sendall(client_frame(payload[:2], opcode=8))
            while self._recv():
                pass
            self._finish_close()
            raise Closed(self.kind)
        return payload.decode("utf-8")

    def _finish_close(self) -> None:
        """For TLS, the end seen so far is the relay's close_notify: answer
        it and see that the relay then closes the TCP connection itself."""
        if isinstance(self.sock, ssl.SSLSocket):
            try:
                raw = self.sock.unwrap()
            except (ssl.SSLError, OSError):
                return  # the TCP connection is already gone
            try:
                rest = raw.recv(65536)
            except socket.timeout:
                raise AssertionError(f"{self.kind}: the relay sent close_notify but kept the socket open") from None
            if rest:
                raise AssertionError(f"{self.kind}: data after the TLS close")
