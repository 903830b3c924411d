"""The admin console as a service of the daemon: off by default, loopback by default.

:func:`make_manhole_service` checks everything it can while the daemon is
being built (where the console listens, who may log in, the host key) and
raises :class:`~relaychat.config.ConfigError` with a message naming the
problem, so twistd refuses to start rather than run a console that is
unsafe or that nobody can log into.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from twisted.application.service import IService, IServiceCollection
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from relaychat.admin.cluster_view import ClusterOperations
from relaychat.admin.helpers import Console
from relaychat.admin.keys import load_host_key, openssh_fingerprint, read_authorized_keys
from relaychat.admin.manhole import USER, Admin, console_factory
from relaychat.config import Config, ConfigError, ListenerConfig, ManholeConfig, split_endpoint
from relaychat.server.drain import Drainer
from relaychat.server.hub import Hub
from relaychat.server.service import ListenerService

log = Logger(namespace="relaychat.admin")

SERVICE_NAME = "manhole"


class ConsoleListener(ListenerService):
    """The console's SSH listener: a listener like the relay's (same start-up
    failures), but named as the console, and outside the relay's listeners,
    so a drain leaves it running."""

    def describe(self) -> str:
        return f"admin console (ssh) {self.listener.endpoint!r}"


def make_manhole_service(config: Config, hub: Hub, top_service: IServiceCollection, drainer: Drainer,
                         data_dir: str, reactor: Any) -> Optional[IService]:
    """The admin console's listener, or ``None`` when ``[manhole]`` is not enabled.

    The caller adds it to the daemon's ``MultiService``; ``top_service`` is
    that same tree (``daemon`` in the shell), ``drainer`` the daemon's drain.
    """
    manhole = config.manhole
    if not manhole.enabled:
        return None
    check_endpoint(manhole)
    authorized = read_authorized_keys(manhole.authorized_keys)
    host_key = load_host_key(data_dir)
    try:
        endpoint = serverFromString(reactor, manhole.endpoint)
    except Exception as e:  # serverFromString raises whatever its parser does
        raise ConfigError(f"manhole.endpoint {manhole.endpoint!r}: bad endpoint string: {e}") from None

    def namespace_for(admin: Admin) -> dict[str, Any]:
        console = Console(hub, config, reactor.seconds, daemon=top_service, drainer=drainer, admin=admin.fingerprint,
                          cluster=cluster_console(top_service))
        return console.namespace()

    factory = console_factory(authorized, host_key, namespace_for)
    service = ConsoleListener(ListenerConfig("ssh", manhole.endpoint), endpoint, factory, reactor)
    service.setName(SERVICE_NAME)
    log.info(
        "relaychat: admin console enabled for {count} keys, user {user!r}, host key {host}",
        count=len(authorized), user=USER, host=openssh_fingerprint(host_key.public().blob()),
    )
    return service


def cluster_console(top_service: IServiceCollection) -> Optional[ClusterOperations]:
    """The cluster node's console part (:mod:`relaychat.cluster.console`), when the daemon is a node."""
    try:
        node = top_service.getServiceNamed("cluster")
    except KeyError:
        return None
    console: ClusterOperations = getattr(node, "console")
    return console


def check_endpoint(manhole: ManholeConfig) -> None:
    """Refuse a console reachable from beyond this machine unless the config says so.

    Loopback addresses and UNIX sockets are local. Anything else (no
    ``interface=``, which means every interface, a public address, a
    host name, another endpoint type) needs ``manhole.allow_remote = true``.
    """
    if manhole.allow_remote or is_local_endpoint(manhole.endpoint):
        return
    raise ConfigError(
        f"manhole.endpoint {manhole.endpoint!r} is reachable from other machines; listen on loopback "
        "(e.g. 'tcp:7736:interface=127.0.0.1') or set manhole.allow_remote = true"
    )


def is_local_endpoint(description: str) -> bool:
    """Whether a server endpoint string can only be reached from this machine."""
    parts = split_endpoint(description)
    kind = parts[0].lower() if parts else ""
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    options = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    try:
        return ipaddress.ip_address(options.get("interface", "")).is_loopback
    except ValueError:
        return False
