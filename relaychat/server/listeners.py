"""Listener kinds: how one ``[[listener]]`` entry becomes an endpoint and a factory.

Every kind serves the same hub through one of its two adapters
(:mod:`relaychat.server.protocol`, :mod:`relaychat.server.websocket`);
a kind only says which options it takes and which adapter, with or
without TLS, a connection gets:

``tcp``
    plain TCP (loopback, or behind a TLS terminator). No options.
``tls``
    TLS (pyOpenSSL) over the endpoint, which must be a plain ``tcp:`` (or
    ``unix:``) endpoint string. Options ``certificate`` (PEM file, leaf
    first, then any intermediates), ``private_key`` (unencrypted PEM),
    ``minimum_tls`` (``"1.2"``, the default, or ``"1.3"``).
``websocket``
    one protocol line per WebSocket text message. Options
    ``path`` (only this request path is served; default any),
    ``allowed_origins`` (browser ``Origin`` patterns such as
    ``"https://*.example.org"``; default any), and, for ``wss://``, the
    same ``certificate``, ``private_key`` and ``minimum_tls`` as ``tls``.

Certificates and keys are read when the service is built, before twistd
drops privileges, so a missing, unreadable or mismatched file stops
start-up with a :class:`~relaychat.config.ConfigError` naming the listener.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint

from relaychat.config import ConfigError, ListenerConfig
from relaychat.certificates import CertificateError
from relaychat.server.protocol import RelayFactory
from relaychat.server.tlslayer import server_context

Builder = Callable[[ListenerConfig, IProtocolFactory, Any], tuple[IStreamServerEndpoint, IProtocolFactory]]


@dataclass(frozen=True)
class ListenerKind:
    build: Builder
    options: Mapping[str, type] = field(default_factory=dict)


def describe(listener: ListenerConfig) -> str:
    """How messages name a listener: ``tls listener 'tcp:7734'``."""
    return f"{listener.kind} listener {listener.endpoint!r}"


def _endpoint(listener: ListenerConfig, reactor: Any, tls: bool = False) -> IStreamServerEndpoint:
    scheme = listener.endpoint.split(":", 1)[0].lower()
    if tls and scheme in ("ssl", "tls"):
        raise ConfigError(f"{describe(listener)}: use a tcp: endpoint string; the listener adds TLS itself")
    try:
        return serverFromString(reactor, listener.endpoint)
    except Exception as e:  # serverFromString raises whatever its parser does
        raise ConfigError(f"{describe(listener)}: bad endpoint string: {e}") from None


def _tls(listener: ListenerConfig) -> ssl.SSLContext:
    """The TLS context for the listener's certificate and key; the relay's
    adapters run TLS themselves on the TCP transport (relaychat.server.tlslayer)."""
    options = listener.options
    certificate, private_key = options.get("certificate"), options.get("private_key")
    if certificate is None or private_key is None:
        raise ConfigError(f"{describe(listener)}: certificate and private_key are both required for TLS")
    try:
        return server_context(Path(certificate), Path(private_key), options.get("minimum_tls", "1.2"))
    except CertificateError as e:
        raise ConfigError(f"{describe(listener)}: {e}") from None
    except (OSError, ssl.SSLError) as e:  # the files changed between the check and the load
        raise ConfigError(f"{describe(listener)}: cannot load the certificate and key: {e}") from None


def _build_tcp(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    return _endpoint(listener, reactor), factory


def _build_tls(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    if not isinstance(factory, RelayFactory):
        raise TypeError(f"a tls listener serves a RelayFactory, not {factory!r}")
    return _endpoint(listener, reactor, tls=True), factory.with_tls(_tls(listener))


def _build_websocket(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    from relaychat.server.websocket import WebSocketFactory

    options = listener.options
    origins = options.get("allowed_origins", ["*"])
    if not origins or not all(isinstance(o, str) and (o == "*" or "://" in o) for o in origins):
        raise ConfigError(
            f"{describe(listener)}: allowed_origins must be a list of origins such as "
            f"\"https://chat.example\" or \"https://*.example.org\", or [\"*\"]"
        )
    path = options.get("path")
    if path is not None and not path.startswith("/"):
        raise ConfigError(f"{describe(listener)}: path must start with /")
    secure = "certificate" in options or "private_key" in options
    if not secure and "minimum_tls" in options:
        raise ConfigError(f"{describe(listener)}: minimum_tls needs certificate and private_key")
    websocket = WebSocketFactory(
        factory, reactor, path=path, allowed_origins=origins,  # type: ignore[arg-type]
        tls=_tls(listener) if secure else None,
    )
    return _endpoint(listener, reactor, tls=secure), websocket


_TLS_OPTIONS: dict[str, type] = {"certificate": Path, "private_key": Path, "minimum_tls": str}

KINDS: dict[str, ListenerKind] = {
    "tcp": ListenerKind(_build_tcp),
    "tls": ListenerKind(_build_tls, _TLS_OPTIONS),
    "websocket": ListenerKind(_build_websocket, {"path": str, "allowed_origins": list, **_TLS_OPTIONS}),
}
