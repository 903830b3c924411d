"""One ``redis-server`` and a set of ``twistd relaychat`` nodes shared by every test of a class.

Starting Redis and two or three daemons costs seconds; a class whose tests
can share them (each test uses its own nicknames) makes them in its first
test and removes them after its last (trial has no ``setUpClass``); an
``atexit`` hook covers a run of only some of its tests.
"""

from __future__ import annotations

import atexit
import re
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from twisted.trial.unittest import SkipTest

from relaychat.crypto.keypair import Identity
from tests.daemon import Daemon, LineSocket, _text
from tests.redis_server import REDIS_SERVER, RedisServer

POW_BITS = 4
_LISTENING = re.compile(r"relaychat: (?:(\w+) listener|metrics listener) '([^']*)' listening on [\d.:a-f]+:(\d+)")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def node_config(home: Path, name: str, redis: str, extra: str = "", listener: str = "tcp:0:interface=127.0.0.1",
                cluster_node: bool = True) -> str:
    """A node's TOML: its own data directory, one TCP listener, cheap proof of work."""
    node = f'node = "{name}"\n' if cluster_node else ""
    return (f'[relay]\ndata_dir = "{home / name}"\ndrain_grace = 1.0\n'
            f'[[listener]]\nkind = "tcp"\nendpoint = "{listener}"\n'
            f'[limits]\npow_bits = {POW_BITS}\n'
            f'[cluster]\nredis = "{redis}"\n{node}{extra}')


def listening(daemon: Daemon, kind: str) -> list[int]:
    """The ports ``daemon`` logged for its listeners of ``kind`` (``metrics`` for the metrics one)."""
    ports = []
    for line in list(daemon.output):
        match = _LISTENING.search(_text(line))
        if match and (match.group(1) or "metrics") == kind:
            ports.append(int(match.group(3)))
    return ports


class ClusterClients:
    """Clients of the nodes in ``self.daemons``, closed with the test (``self.sockets``)."""

    daemons: list[Daemon]
    sockets: list[LineSocket]

    def port(self, node: int) -> int:
        return listening(self.daemons[node], "tcp")[0]

    def client(self, node: int, timeout: float = 10.0) -> LineSocket:
        s = LineSocket(self.port(node), timeout=timeout)
        self.sockets.append(s)
        return s

    def registered(self, node: int, nick: str, identity: Optional[Identity] = None) -> LineSocket:
        s = self.client(node)
        reply = s.register(nick, identity or Identity.generate())
        assert reply.startswith("OK PROVE"), reply
        return s

    def who(self, s: LineSocket) -> tuple[set[str], str]:
        s.send("WHO")
        users = set()
        while True:
            line = s.read_line()
            if line.startswith("USER "):
                users.add(line.split(" ")[1])
            else:
                return users, line

    def sees(self, s: LineSocket, *nicks: str) -> None:
        """Wait until ``s``'s WHO lists every one of ``nicks`` (presence travels through Redis)."""
        wait_for(lambda: set(nicks) <= self.who(s)[0], what=f"{nicks} in WHO")


class SharedCluster(ClusterClients):
    """A mixin for trial test cases: ``self.redis``, ``self.daemons`` (one per name in ``names``)."""

    names: ClassVar[tuple[str, ...]] = ("a", "b")
    redis_options: ClassVar[tuple[str, ...]] = ()
    _shared: ClassVar[dict[type, dict[str, Any]]] = {}

    redis: RedisServer
    daemons: list[Daemon]
    home: Path
    extra: dict[str, Any]  # what a class keeps for all its tests

    # What a test class may change: each node's extra TOML (after [cluster] node = ...),
    # and files the nodes need, made in the shared home first.
    def extra_config(self, name: str) -> str:
        return ""

    def prepare_home(self, home: Path, cleanups: list[Callable[[], object]]) -> None:
        pass

    def setUp(self) -> None:
        if REDIS_SERVER is None:
            raise SkipTest("redis-server is not installed")
        cls = type(self)
        shared = SharedCluster._shared.get(cls)
        if shared is None:
            shared = SharedCluster._shared[cls] = {"done": 0, "cleanups": [], "extra": {}}
            atexit.register(_finish, cls)
            try:
                self._prepare(shared)
            except BaseException:
                _finish(cls)
                raise
        for name in ("redis", "daemons", "home", "extra"):
            setattr(self, name, shared[name])
        self.sockets: list[LineSocket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])
        self.addCleanup(self._test_done, cls)

    def _prepare(self, shared: dict[str, Any]) -> None:
        home = Path(self.mktemp()).resolve()  # type: ignore[attr-defined]
        home.mkdir(parents=True)
        shared["home"] = home
        self.prepare_home(home, shared["cleanups"])
        redis = RedisServer(str(home / "redis"), *self.redis_options).start()
        shared["cleanups"].append(redis.stop)
        shared["redis"] = redis
        shared["daemons"] = []
        for name in self.names:
            config = home / f"{name}.toml"
            config.write_text(node_config(home, name, redis.endpoint, self.extra_config(name)))
            daemon = Daemon("--config", str(config), cwd=str(home))
            shared["cleanups"].append(daemon.stop)
            daemon.start()
            shared["daemons"].append(daemon)
        for daemon in shared["daemons"]:
            self.joined(daemon)

    def joined(self, daemon: Daemon) -> None:
        wait_for(lambda: "joined through" in daemon.log(), what=f"a node to join:\n{daemon.log()}")

    def _test_done(self, cls: type) -> None:
        shared = SharedCluster._shared.get(cls)
        if shared is None:
            return
        shared["done"] += 1
        if shared["done"] == len([n for n in dir(cls) if n.startswith("test_")]):
            _finish(cls)

def _finish(cls: type) -> None:
    shared = SharedCluster._shared.pop(cls, None)
    if shared is None:
        return
    for cleanup in reversed(shared.get("cleanups", [])):
        try:
            cleanup()
        except Exception:
            pass
