"""The daemon's configuration: embedded defaults, overlaid by a TOML file.

Every key is checked: an unknown key or a value of the wrong type stops
start-up with a message naming the key, because a typo that silently keeps
a default (a limit, a listener) is worse than not starting.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from relaychat.server.limits import Limits, MailPolicy, NicknamePolicy

DEFAULT_PORT = 7733
DEFAULT_ENDPOINT = f"tcp:{DEFAULT_PORT}:interface=127.0.0.1"
DEFAULT_BACKLOG = 4096
"""Listen queue length for every listener whose endpoint string does not
say ``backlog=``: Twisted's default of 50 overflows in a reconnect burst.
The kernel caps it at ``net.core.somaxconn`` (4096 on current Linux)."""
DEFAULT_DRAIN_GRACE = 30.0
"""Seconds a SIGTERM drain lets sessions finish before closing stragglers."""


class Strings:
    """The type of an option that is a list of strings (``allowed_origins``)."""


TLS_OPTIONS: Mapping[str, type] = {"certificate": Path, "private_key": Path, "minimum_tls": str}
LISTENER_OPTIONS: Mapping[str, Mapping[str, type]] = {  # reuse_port: SO_REUSEPORT, for cluster nodes sharing a port
    "tcp": {"reuse_port": bool},
    "tls": {**TLS_OPTIONS, "reuse_port": bool},
    "websocket": {"path": str, "allowed_origins": Strings, "web_client": bool, **TLS_OPTIONS, "reuse_port": bool},
}
"""Each listener kind and the options it takes (the builders are in
:mod:`relaychat.server.listeners`; ``kind`` and ``endpoint`` are common)."""

_PORTED_ENDPOINTS = ("tcp", "tcp6", "ssl")
_SECTIONS = ("relay", "listener", "limits", "mailbox", "nicknames", "manhole", "metrics", "cluster")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class ListenerConfig:
    """One listener: a kind (``tcp``, ``tls``, ``websocket``), an endpoint
    string, and the kind's own options (checked by the kind's builder)."""

    kind: str
    endpoint: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ManholeConfig:
    """The admin console (``relaychat.admin``): off unless enabled, loopback unless
    ``allow_remote``, and only for the keys in ``authorized_keys``."""

    enabled: bool = False
    endpoint: str = "tcp:7736:interface=127.0.0.1"
    authorized_keys: Optional[Path] = None
    allow_remote: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: several relays as one over Redis (:mod:`relaychat.cluster`);
    off unless ``redis`` is set, and then ``node`` is required."""

    redis: Optional[str] = None  # a Twisted client endpoint string: tcp:HOST:PORT, tls:HOST:PORT
    node: Optional[str] = None  # this node's name, unique in the cluster
    password_file: Optional[Path] = None  # a file holding Redis's password (AUTH)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics and ``/healthz`` on their own endpoint: off unless set."""

    endpoint: Optional[str] = None


@dataclass(frozen=True)
class Config:
    data_dir: Path
    listeners: tuple[ListenerConfig, ...]
    limits: Limits = Limits()
    mail: MailPolicy = MailPolicy()
    nicknames: NicknamePolicy = NicknamePolicy()
    manhole: ManholeConfig = ManholeConfig()
    metrics: MetricsConfig = MetricsConfig()
    backlog: int = DEFAULT_BACKLOG
    drain_grace: float = DEFAULT_DRAIN_GRACE
    cluster: ClusterConfig = ClusterConfig()
    source: str = "embedded defaults"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/relaychat``, else ``~/.local/share/relaychat``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "relaychat"


def load(path: Optional[str] = None, node: Optional[str] = None) -> Config:
    """Read ``path`` (or nothing) into a :class:`Config`.

    :param node: this process's cluster node name, instead of ``cluster.node``
        (``--node``: N instances of one systemd template share one file).
    """
    if path is None:
        if node is not None:
            raise ConfigError("--node needs a configuration file with a [cluster] redis")
        return Config(data_dir=default_data_dir(), listeners=(ListenerConfig("tcp", DEFAULT_ENDPOINT),))
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if node is not None:
        cluster = document.get("cluster")
        if not isinstance(cluster, dict) or "redis" not in cluster:
            raise ConfigError(f"{path}: --node needs a [cluster] section with redis")
        document = {**document, "cluster": {**cluster, "node": node}}
    try:
        return parse(document, base=Path(path).resolve().parent, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse(document: Mapping[str, Any], base: Path, source: str = "<config>") -> Config:
    """Build a :class:`Config` from a parsed TOML document; paths are relative to ``base``."""
    for key in document:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown section [{key}]{_suggest(key, _SECTIONS, '[{}]')}")
    relay = _table(document, "relay")
    _only(relay, {"data_dir", "backlog", "drain_grace"}, "relay.")
    data_dir = _path(relay, "data_dir", "relay.", base) or default_data_dir()
    backlog = _number(relay, "backlog", "relay.", DEFAULT_BACKLOG, int)
    drain_grace = _number(relay, "drain_grace", "relay.", DEFAULT_DRAIN_GRACE, float)
    if backlog < 1:
        raise ConfigError("relay.backlog must be at least 1")
    if drain_grace < 0:
        raise ConfigError("relay.drain_grace must not be negative")
    listeners = tuple(_listener(item, i, base) for i, item in enumerate(_array(document, "listener")))
    if not listeners:
        listeners = (ListenerConfig("tcp", DEFAULT_ENDPOINT),)
    limits = _dataclass(Limits, _table(document, "limits"), "limits.")
    mail = _dataclass(MailPolicy, _table(document, "mailbox"), "mailbox.")
    try:
        mail.check_fits(limits)
    except ValueError as e:
        raise ConfigError(f"mailbox.{e}") from None
    return Config(
        data_dir=data_dir,
        listeners=listeners,
        limits=limits,
        mail=mail,
        nicknames=_dataclass(NicknamePolicy, _table(document, "nicknames"), "nicknames."),
        manhole=_manhole(_table(document, "manhole"), base),
        metrics=_metrics(_table(document, "metrics")),
        backlog=backlog,
        drain_grace=drain_grace,
        cluster=_cluster(_table(document, "cluster"), base),
        source=source,
    )


def _listener(item: Any, index: int, base: Path) -> ListenerConfig:
    where = f"listener[{index}]."
    if not isinstance(item, dict):
        raise ConfigError(f"listener[{index}] must be a table")
    kind = _required_string(item, "kind", where)
    if kind not in LISTENER_OPTIONS:
        raise ConfigError(f"{where}kind: must be one of {', '.join(sorted(LISTENER_OPTIONS))}, not {kind!r}"
                          f"{_suggest(kind, LISTENER_OPTIONS)}")
    endpoint = _required_endpoint(item, "endpoint", where)
    options = {k: v for k, v in item.items() if k not in ("kind", "endpoint")}
    allowed = LISTENER_OPTIONS[kind]
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"unknown key {where}{key} for a {kind} listener{_suggest(key, allowed)}")
        if allowed[key] is Path:
            options[key] = _path(item, key, where, base)
        elif allowed[key] is Strings:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}{key}: expected a list of strings, such as [\"a\", \"b\"]")
        elif not isinstance(value, allowed[key]):
            raise ConfigError(f"{where}{key}: expected {_a(allowed[key])}")
    return ListenerConfig(kind, endpoint, options)


def _manhole(table: Mapping[str, Any], base: Path) -> ManholeConfig:
    _only(table, {"enabled", "endpoint", "authorized_keys", "allow_remote"}, "manhole.")
    flags = {}
    for key in ("enabled", "allow_remote"):
        flags[key] = table.get(key, False)
        if not isinstance(flags[key], bool):
            raise ConfigError(f"manhole.{key}: expected true or false")
    return ManholeConfig(
        enabled=flags["enabled"],
        endpoint=_endpoint(table, "endpoint", "manhole.") or ManholeConfig.endpoint,
        authorized_keys=_path(table, "authorized_keys", "manhole.", base),
        allow_remote=flags["allow_remote"],
    )


def _cluster(table: Mapping[str, Any], base: Path) -> ClusterConfig:
    _only(table, {"redis", "node", "password_file"}, "cluster.")
    redis = _string(table, "redis", "cluster.")
    node = _string(table, "node", "cluster.")
    if redis is None:
        if table:
            raise ConfigError("cluster.redis is required to run as a node of a cluster")
        return ClusterConfig()
    from relaychat.cluster.routing import NODE_NAME

    if node is None or not NODE_NAME.match(node):
        raise ConfigError("cluster.node: a name of 1 to 32 lower-case letters, digits or '-' is required")
    if redis.split(":", 1)[0].lower() not in ("tcp", "tls", "unix"):
        raise ConfigError("cluster.redis: expected an endpoint string such as \"tcp:127.0.0.1:6379\"")
    return ClusterConfig(redis, node, _path(table, "password_file", "cluster.", base))


def _metrics(table: Mapping[str, Any]) -> MetricsConfig:
    _only(table, {"endpoint"}, "metrics.")
    return MetricsConfig(endpoint=_endpoint(table, "endpoint", "metrics."))


def _dataclass(cls: type, table: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _only(table, set(fields), where)
    values = {}
    for key, value in table.items():
        wanted: Any = type(fields[key].default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wanted is int and isinstance(value, float)):
            raise ConfigError(f"{where}{key}: expected {'an integer' if wanted is int else 'a number'}")
        values[key] = wanted(value)
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{where}{e}") from None


def _only(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {where}{key}{_suggest(key, allowed)}")


def _suggest(word: str, choices: Iterable[str], form: str = "{}") -> str:
    """`` (did you mean max_line?)`` for a near miss, else nothing."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {form.format(close[0])}?)" if close else ""


def _a(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(kind, kind.__name__)


def _number(table: Mapping[str, Any], key: str, where: str, default: Any, kind: type) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
        raise ConfigError(f"{where}{key}: expected {_a(kind)}")
    return kind(value)


def _endpoint(table: Mapping[str, Any], key: str, where: str) -> Optional[str]:
    """An endpoint string, its port checked here so the message is ours, not the parser's."""
    value = _string(table, key, where)
    if value is not None:
        check_endpoint(value, f"{where}{key}")
    return value


def _required_endpoint(table: Mapping[str, Any], key: str, where: str) -> str:
    value = _required_string(table, key, where)
    check_endpoint(value, f"{where}{key}")
    return value


def check_endpoint(description: str, where: str) -> None:
    """Refuse a TCP endpoint string whose port is not a number, naming ``where``."""
    parts = split_endpoint(description)
    if parts[0].lower() in _PORTED_ENDPOINTS:
        positional = [p for p in parts[1:] if "=" not in p]
        named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        port = named.get("port", positional[0] if positional else "")
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{where} {description!r}: the port must be a number from 0 to 65535, not {port!r}")


def split_endpoint(description: str) -> list[str]:
    """Split on the colons of an endpoint string, honouring ``\\:`` escapes (``interface=\\:\\:1``)."""
    parts, current, escaped = [], [], False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _table(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table ([{key}])")
    return value


def _array(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be an array of tables ([[{key}]])")
    return value


def _string(table: Mapping[str, Any], key: str, where: str) -> Optional[str]:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key}: expected a non-empty string")
    return value


def _required_string(table: Mapping[str, Any], key: str, where: str) -> str:
    value = _string(table, key, where)
    if value is None:
        raise ConfigError(f"{where}{key} is required")
    return value


def _path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Optional[Path]:
    value = _string(table, key, where)
    return None if value is None else base / os.path.expanduser(value)
