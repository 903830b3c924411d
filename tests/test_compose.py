"""The one composer (relaychat.tap.compose) builds the tree its module map
describes: relay listeners under one named child, which is what a drain stops."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from relaychat.config import Config, ListenerConfig
from relaychat.server.drain import Drainer
from relaychat.server.service import ListenerService
from relaychat.tap import compose


class ServiceTree(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)

    def test_the_tree_is_the_documented_map(self) -> None:
        config = Config(data_dir=self.dir / "data", listeners=(
            ListenerConfig("tcp", "tcp:0:interface=127.0.0.1"),
            ListenerConfig("websocket", "tcp:0:interface=127.0.0.1"),
        ))
        top = compose(config, MemoryReactorClock())
        self.addCleanup(top.getServiceNamed("relay").store.close)
        names = [service.name for service in top]
        self.assertEqual(names[:5], ["relay", "tick", "mail-purge", "store-check", "listeners"])
        self.assertIn("drain", names)
        self.assertNotIn("manhole", names)  # not configured: not built
        self.assertNotIn("cluster", names)
        relay_listeners = top.getServiceNamed("listeners")
        children = list(relay_listeners)
        self.assertEqual([s.name for s in children], ["listener-0", "listener-1"])
        self.assertTrue(all(isinstance(s, ListenerService) for s in children))
        self.assertFalse(any(isinstance(s, ListenerService) for s in top), "no relay listener outside 'listeners'")
        drain = top.getServiceNamed("drain")
        assert isinstance(drain, Drainer)
        self.assertIs(drain.listeners, relay_listeners, "a drain stops exactly the relay's listeners")
