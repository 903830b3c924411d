"""``twistd relaychat``: command-line options and the service they build."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from twisted.application.service import IService
from twisted.python import usage

from relaychat.config import Config, ConfigError, ListenerConfig, load


class Options(usage.Options):
    synopsis = "[--config FILE] [--data-dir DIR] [--listen ENDPOINT ...]"
    longdesc = (
        "Run the relaychat relay. With no options it listens for plain TCP on "
        "127.0.0.1:7733 and keeps its data in $XDG_DATA_HOME/relaychat "
        "(~/.local/share/relaychat). See conf/relaychat.toml for every setting."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: embedded defaults)."],
        ["data-dir", "d", None, "Data directory (overrides relay.data_dir)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Listen for plain TCP on this endpoint string instead of the configured listeners (repeatable)."""
        self["listen"].append(endpoint)

    def postOptions(self) -> None:
        try:
            config = load(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        if self["data-dir"]:
            config = dataclasses.replace(config, data_dir=Path(self["data-dir"]).resolve())
        if self["listen"]:
            config = dataclasses.replace(config, listeners=tuple(ListenerConfig("tcp", e) for e in self["listen"]))
        self.config: Config = config


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from relaychat.server.clock import make_monotonic
    from relaychat.server.service import make_service

    make_monotonic(reactor)  # every time-out measures a duration: docs/protocol.rst, section 8
    try:
        return make_service(options.config, reactor)
    except ConfigError as e:
        raise SystemExit(f"relaychat: {e}") from None
