"""Listener kinds: how one ``[[listener]]`` entry becomes an endpoint and a factory.

Every kind serves the same :class:`~relaychat.server.protocol.RelayFactory`;
a kind only says which options it takes and how to wrap the transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint

from relaychat.config import ListenerConfig

Builder = Callable[[ListenerConfig, IProtocolFactory, Any], tuple[IStreamServerEndpoint, IProtocolFactory]]


@dataclass(frozen=True)
class ListenerKind:
    build: Builder
    options: Mapping[str, type] = field(default_factory=dict)


def _build_tcp(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    return serverFromString(reactor, listener.endpoint), factory


KINDS: dict[str, ListenerKind] = {
    "tcp": ListenerKind(_build_tcp),
}
