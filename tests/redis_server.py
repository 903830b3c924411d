"""A real ``redis-server`` for a test: a free port, its own data directory, stopped by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Optional

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` with append-only persistence on 127.0.0.1, in the foreground as our child."""

    def __init__(self, directory: str, *options: str) -> None:
        self.directory = directory
        self.options = options  # more redis-server options, e.g. "--appendfsync", "always"
        self.port = free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "RedisServer":
        assert REDIS_SERVER is not None
        os.makedirs(self.directory, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", "redis.log", *self.options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server did not start")

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL, as a crash: what the AOF has not yet written is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis-server finishes its AOF and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
