"""The daemon's configuration: embedded defaults, overlaid by a TOML file.

Every key is checked: an unknown key or a value of the wrong type stops
start-up with a message naming the key, because a typo that silently keeps
a default (a limit, a listener) is worse than not starting.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from relaychat.server.limits import Limits, MailPolicy

DEFAULT_PORT = 7733
DEFAULT_ENDPOINT = f"tcp:{DEFAULT_PORT}:interface=127.0.0.1"


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
class Config:
    data_dir: Path
    listeners: tuple[ListenerConfig, ...]
    limits: Limits = Limits()
    mail: MailPolicy = MailPolicy()
    manhole: ManholeConfig = ManholeConfig()
    source: str = "embedded defaults"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/relaychat``, else ``~/.local/share/relaychat``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "relaychat"


def load(path: Optional[str] = None) -> Config:
    """Read ``path`` (or nothing) into a :class:`Config`."""
    if path is None:
        return Config(data_dir=default_data_dir(), listeners=(ListenerConfig("tcp", DEFAULT_ENDPOINT),))
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse(document, base=Path(path).resolve().parent, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse(document: Mapping[str, Any], base: Path, source: str = "<config>") -> Config:
    """Build a :class:`Config` from a parsed TOML document; paths are relative to ``base``."""
    _only(document, {"relay", "listener", "limits", "mailbox", "manhole"}, "")
    relay = _table(document, "relay")
    _only(relay, {"data_dir"}, "relay.")
    data_dir = _path(relay, "data_dir", "relay.", base) or default_data_dir()
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
        manhole=_manhole(_table(document, "manhole"), base),
        source=source,
    )


def _listener(item: Any, index: int, base: Path) -> ListenerConfig:
    where = f"listener[{index}]."
    if not isinstance(item, dict):
        raise ConfigError(f"listener[{index}] must be a table")
    from relaychat.server.listeners import KINDS  # the kinds know their options

    kind = _string(item, "kind", where, required=True)
    if kind not in KINDS:
        raise ConfigError(f"{where}kind: must be one of {', '.join(sorted(KINDS))}, not {kind!r}")
    endpoint = _string(item, "endpoint", where, required=True)
    assert endpoint is not None  # required
    options = {k: v for k, v in item.items() if k not in ("kind", "endpoint")}
    allowed = KINDS[kind].options
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"unknown key {where}{key} for a {kind} listener")
        if allowed[key] is Path:
            options[key] = _path(item, key, where, base)
        elif not isinstance(value, allowed[key]):
            raise ConfigError(f"{where}{key}: expected {allowed[key].__name__}")
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
        endpoint=_string(table, "endpoint", "manhole.") or ManholeConfig.endpoint,
        authorized_keys=_path(table, "authorized_keys", "manhole.", base),
        allow_remote=flags["allow_remote"],
    )


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


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {where}{key}")


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


def _string(table: Mapping[str, Any], key: str, where: str, required: bool = False) -> Optional[str]:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key}: expected a non-empty string")
    return value


def _path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Optional[Path]:
    value = _string(table, key, where)
    return None if value is None else base / os.path.expanduser(value)
