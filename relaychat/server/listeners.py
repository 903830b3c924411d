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
    ``web_client = true`` also serves the browser client's page there
    (:mod:`relaychat.server.webclient`); ``path`` then defaults to ``/relay``.

Every kind takes ``reuse_port = true`` (SO_REUSEPORT on a ``tcp:`` endpoint):
several relay processes (cluster nodes, :mod:`relaychat.cluster`) then listen
on one port and the kernel spreads new connections among them.

Certificates and keys are read when the service is built, before twistd
drops privileges, so a missing, unreadable or mismatched file stops
start-up with a :class:`~relaychat.config.ConfigError` naming the listener.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred, execute
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.tcp import makeBinding
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from relaychat.certificates import CertificateError, server_options
from relaychat.config import DEFAULT_BACKLOG, ConfigError, ListenerConfig, split_endpoint
from relaychat.server.protocol import RelayFactory
from relaychat.server.tlslayer import server_context
from relaychat.server.webclient import with_page
from relaychat.server.websocket import WebSocketFactory
from relaychat.server.wsframes import FRAMING

Builder = Callable[[ListenerConfig, IProtocolFactory, Any, int], tuple[IStreamServerEndpoint, IProtocolFactory]]

log = Logger(namespace="relaychat")

_QUEUED_ENDPOINTS = ("tcp", "tcp6", "ssl", "unix")
"""Endpoint types whose parser takes ``backlog=`` (``systemd:`` sockets are
already listening: their queue is the socket unit's ``Backlog=``)."""


def describe(listener: ListenerConfig) -> str:
    """How messages name a listener: ``tls listener 'tcp:7734'``."""
    return f"{listener.kind} listener {listener.endpoint!r}"


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint binding with SO_REUSEPORT (Twisted's endpoint strings have no such option)."""

    def __init__(self, reactor: Any, port: int, interface: str, backlog: int) -> None:
        self.reactor, self.port, self.interface, self.backlog = reactor, port, interface, backlog

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        binding = makeBinding(self.interface, self.port, reuseAddress=True, reusePort=True)
        return execute(self.reactor.listenTCP, binding, factory, backlog=self.backlog)


def _reuse_port_endpoint(listener: ListenerConfig, reactor: Any, backlog: int) -> ReusePortEndpoint:
    """``tcp:PORT[:interface=ADDRESS][:backlog=N]`` with SO_REUSEPORT; nothing else is accepted."""
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", listener.endpoint)]
    wrong = ConfigError(f"{describe(listener)}: reuse_port needs an endpoint string tcp:PORT[:interface=ADDRESS][:backlog=N]")
    if len(parts) < 2 or parts[0].lower() != "tcp" or not parts[1].isdigit():
        raise wrong
    options = {"interface": "", "backlog": str(backlog)}
    for part in parts[2:]:
        key, _, value = part.partition("=")
        if key not in options or not value:
            raise wrong
        options[key] = value
    if not options["backlog"].isdigit():
        raise wrong
    return ReusePortEndpoint(reactor, int(parts[1]), options["interface"], int(options["backlog"]))


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added, unless it has one or its type takes none."""
    parts = split_endpoint(description)
    if parts[0].lower() not in _QUEUED_ENDPOINTS or any(p.startswith("backlog=") for p in parts[1:]):
        return description
    return f"{description}:backlog={backlog}"


def server_endpoint(reactor: Any, description: str, backlog: int, where: str) -> IStreamServerEndpoint:
    """Parse a server endpoint string with our listen queue; a bad one is a ConfigError naming ``where``."""
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, with_backlog(description, backlog))
    except Exception as e:  # serverFromString raises whatever its parser does
        raise ConfigError(f"{where}: bad endpoint string: {e}") from None
    return endpoint


def _endpoint(listener: ListenerConfig, reactor: Any, backlog: int, tls: bool = False) -> IStreamServerEndpoint:
    scheme = listener.endpoint.split(":", 1)[0].lower()
    if tls and scheme in ("ssl", "tls"):
        raise ConfigError(f"{describe(listener)}: use a tcp: endpoint string; the listener adds TLS itself")
    if listener.options.get("reuse_port"):
        return _reuse_port_endpoint(listener, reactor, backlog)
    return server_endpoint(reactor, listener.endpoint, backlog, describe(listener))


def _tls_files(listener: ListenerConfig) -> tuple[Path, Path, str]:
    options = listener.options
    certificate, private_key = options.get("certificate"), options.get("private_key")
    if certificate is None or private_key is None:
        raise ConfigError(f"{describe(listener)}: certificate and private_key are both required for TLS")
    return Path(certificate), Path(private_key), options.get("minimum_tls", "1.2")


def _tls(listener: ListenerConfig) -> ssl.SSLContext:
    """The TLS context for the listener's certificate and key; the relay's
    adapters run TLS themselves on the TCP transport (relaychat.server.tlslayer)."""
    try:
        return server_context(*_tls_files(listener))
    except CertificateError as e:
        raise ConfigError(f"{describe(listener)}: {e}") from None
    except (OSError, ssl.SSLError) as e:  # the files changed between the check and the load
        raise ConfigError(f"{describe(listener)}: cannot load the certificate and key: {e}") from None


def _twisted_tls(listener: ListenerConfig, factory: IProtocolFactory) -> IProtocolFactory:
    """``factory`` behind Twisted's TLS (for a Site, which cannot run our TLS layer)."""
    try:
        options = server_options(*_tls_files(listener))
    except CertificateError as e:
        raise ConfigError(f"{describe(listener)}: {e}") from None
    wrapped = TLSMemoryBIOFactory(options, False, factory)
    wrapped.noisy = False
    return wrapped


def _build_tcp(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any,
               backlog: int = DEFAULT_BACKLOG) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    return _endpoint(listener, reactor, backlog), factory


def _build_tls(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any,
               backlog: int = DEFAULT_BACKLOG) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    if not isinstance(factory, RelayFactory):
        raise TypeError(f"a tls listener serves a RelayFactory, not {factory!r}")
    return _endpoint(listener, reactor, backlog, tls=True), factory.with_tls(_tls(listener))


def _build_websocket(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any,
                     backlog: int = DEFAULT_BACKLOG) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    if not isinstance(factory, RelayFactory):
        raise TypeError(f"a websocket listener serves a RelayFactory, not {factory!r}")
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
    web_client = options.get("web_client", False)
    secure = "certificate" in options or "private_key" in options
    if not secure and "minimum_tls" in options:
        raise ConfigError(f"{describe(listener)}: minimum_tls needs certificate and private_key")
    # said at start-up: an install without the C extension is slower, not broken (wsframes.FRAMING)
    log.info("relaychat: {listener}: WebSocket framing {framing}", listener=describe(listener), framing=FRAMING)
    if web_client:
        # twisted.web serves the page on the same connections, so TLS is
        # Twisted's here and the WebSocket adapter takes the connection over
        # from the Site (relaychat.server.webclient).
        page_path = "/relay" if path is None else path
        websocket = WebSocketFactory(factory, reactor, path=page_path, allowed_origins=origins)
        _label(listener.kind, websocket)  # its connections, taken over from the Site, are its own
        wrapped = with_page(websocket, page_path, lambda site: _twisted_tls(listener, site) if secure else site)
        return _endpoint(listener, reactor, backlog, tls=secure), wrapped
    websocket = WebSocketFactory(
        factory, reactor, path=path, allowed_origins=origins,
        tls=_tls(listener) if secure else None,
    )
    return _endpoint(listener, reactor, backlog, tls=secure), websocket


BUILDERS: dict[str, Builder] = {"tcp": _build_tcp, "tls": _build_tls, "websocket": _build_websocket}
"""How each kind of :data:`relaychat.config.LISTENER_OPTIONS` becomes an endpoint and a factory."""


def build(listener: ListenerConfig, factory: IProtocolFactory, reactor: Any,
          backlog: int = DEFAULT_BACKLOG) -> tuple[IStreamServerEndpoint, IProtocolFactory]:
    """The endpoint and the factory serving ``factory``'s hub on ``listener``.

    ``factory`` should serve this listener alone: the factories that make
    its connections are labelled with the listener's kind (``.kind``), which
    is how the metrics count a connection by the listener it came in on
    (:func:`relaychat.server.metrics.listener_kind`).
    """
    endpoint, served = BUILDERS[listener.kind](listener, factory, reactor, backlog)
    _label(listener.kind, factory, served)
    return endpoint, served


def _label(kind: str, *factories: Any) -> None:
    for factory in factories:
        factory.kind = kind
