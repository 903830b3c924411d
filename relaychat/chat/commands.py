"""The ``/command args`` language of the chat program, parsed without I/O.

One table, :data:`COMMANDS`, drives both parsing and ``/help``: each row
names a command class, its spellings, its parameters written the way help
shows them (``<nick>`` required word, ``[nick]`` optional word,
``<text...>`` the rest of the line) and a one-line summary. Adding a
command is adding a row and a dataclass; the help text cannot drift from
what the parser accepts.

A line that does not start with ``/`` is a message for the current
conversation; ``//text`` sends ``/text`` for the rare message that must
begin with a slash.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from relaychat.wire.nicknames import NICK_RULE, is_nickname

__all__ = [
    "COMMANDS",
    "Accept",
    "Close",
    "Command",
    "CommandError",
    "CommandSpec",
    "Connect",
    "Contacts",
    "Decline",
    "Help",
    "Mail",
    "Msg",
    "Quit",
    "Safety",
    "Say",
    "Switch",
    "Trust",
    "TrustRelay",
    "Verified",
    "Verify",
    "Who",
    "Whois",
    "help_lines",
    "help_topic",
    "is_nickname",
    "parse",
]

# Section 4 of docs/protocol.rst (relaychat.wire.nicknames). Checked here so a
# typo is reported at once, in words, instead of as a relay error code a
# round trip later.


class CommandError(ValueError):
    """The line is not a valid command; ``str(e)`` is a sentence for the user."""


# -- command objects --------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Send ``text`` to the current conversation."""

    text: str


@dataclass(frozen=True)
class Connect:
    nick: str


@dataclass(frozen=True)
class Accept:
    nick: str | None = None


@dataclass(frozen=True)
class Decline:
    nick: str | None = None


@dataclass(frozen=True)
class Who:
    pass


@dataclass(frozen=True)
class Whois:
    nick: str


@dataclass(frozen=True)
class Safety:
    nick: str | None = None


@dataclass(frozen=True)
class Verify:
    secret: str


@dataclass(frozen=True)
class Trust:
    nick: str


@dataclass(frozen=True)
class Verified:
    nick: str | None = None


@dataclass(frozen=True)
class Contacts:
    pass


@dataclass(frozen=True)
class TrustRelay:
    pass


@dataclass(frozen=True)
class Msg:
    nick: str
    text: str


@dataclass(frozen=True)
class Mail:
    nick: str
    text: str


@dataclass(frozen=True)
class Switch:
    nick: str


@dataclass(frozen=True)
class Close:
    nick: str | None = None


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Help:
    command: str | None = None


Command = (
    Say | Connect | Accept | Decline | Who | Whois | Safety | Verify | Verified | Trust | TrustRelay | Contacts
    | Msg | Mail | Switch | Close | Quit | Help
)


# -- the table ------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    required: bool
    rest: bool  # takes the rest of the line, spaces included


_PARAM_RE = re.compile(r"(?:<(\w+)(\.\.\.)?>|\[(\w+)(\.\.\.)?\])\Z")


def _parse_params(spec: str) -> tuple[_Param, ...]:
    """Read ``"<nick> <text...>"`` into parameter descriptions."""
    params = []
    for token in spec.split():
        match = _PARAM_RE.match(token)
        if match is None:
            raise ValueError(f"bad parameter {token!r} in command table")
        if match.group(1):
            params.append(_Param(match.group(1), True, bool(match.group(2))))
        else:
            params.append(_Param(match.group(3), False, bool(match.group(4))))
    return tuple(params)


@dataclass(frozen=True)
class CommandSpec:
    """One row of the table: everything parsing and help need to know."""

    factory: type[Command]
    names: tuple[str, ...]  # first is the name help shows
    params: str
    summary: str  # one line in the list: short enough for 80 columns
    details: str = ""  # more, for /help <command>

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.params}".rstrip()

    @property
    def parameters(self) -> tuple[_Param, ...]:
        return _parse_params(self.params)


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(Connect, ("connect", "call", "query"), "<nick>",
                "Ask nick for an encrypted conversation.",
                "If nick has already asked you, this accepts their offer instead."),
    CommandSpec(Accept, ("accept", "yes"), "[nick]",
                "Accept an offered conversation.",
                "The nickname is needed only when several offers wait."),
    CommandSpec(Decline, ("decline", "no"), "[nick]",
                "Decline an offered conversation."),
    CommandSpec(Msg, ("msg",), "<nick> <text...>",
                "Send text to nick without switching to them."),
    CommandSpec(Switch, ("switch", "to"), "<nick>",
                "Send plain lines to nick from now on."),
    CommandSpec(Who, ("who", "list"), "",
                "List who is online."),
    CommandSpec(Whois, ("whois", "lookup"), "<nick>",
                "Show nick's key fingerprint and whether online.",
                "The key is what the relay claims; only a conversation or a safety number confirms it."),
    CommandSpec(Safety, ("safety", "code", "fingerprint", "fp"), "[nick]",
                "Show the safety number to compare with nick.",
                "Read it to each other over another channel (phone, in person): if both screens show "
                "the same 60 digits, nobody is in the middle. Also shows both key fingerprints."),
    CommandSpec(Verify, ("verify", "smp"), "<secret...>",
                "Check a secret you both know (both type it).",
                "Agree on a secret beforehand (not in this chat). Each of you types /verify with it; "
                "the check reveals nothing about the secret, only whether both typed the same, "
                "and it fails if someone is in the middle."),
    CommandSpec(Verified, ("verified",), "[nick]",
                "Say you compared the safety number with nick.",
                "Only after both of you read the same 60 digits (/safety) over another channel. It is "
                "remembered with nick's key: later conversations start verified, until the key changes."),
    CommandSpec(Contacts, ("contacts", "peers"), "",
                "Your contacts, verified or not, and when seen."),
    CommandSpec(Trust, ("trust",), "<nick>",
                "Accept nick's new key after a key warning.",
                "Only after comparing the safety number shown in the warning with nick over another "
                "channel: it replaces the key you pinned for nick."),
    CommandSpec(TrustRelay, ("trust-relay",), "",
                "Accept the relay's new identity after a warning.",
                "Only after its operator confirmed that the relay was rebuilt: your pinned contacts "
                "carry over, so their keys are still checked."),
    CommandSpec(Mail, ("mail",), "<nick> <text...>",
                "Leave sealed mail for nick to read later.",
                "The relay keeps it (encrypted to nick's key) until nick connects."),
    CommandSpec(Close, ("close", "bye"), "[nick]",
                "End the conversation (current or with nick).",
                "Also stops calling nick, or declines nick's offer."),
    CommandSpec(Help, ("help", "?"), "[command]",
                "This list, or more about one command."),
    CommandSpec(Quit, ("quit", "exit", "q"), "",
                "Leave relaychat (Ctrl-C also does)."),
)

_BY_NAME: dict[str, CommandSpec] = {name: spec for spec in COMMANDS for name in spec.names}

# Fields the dataclasses use for each parameter name in the table.
_FIELD_FOR_PARAM = {"nick": "nick", "text": "text", "secret": "secret", "command": "command"}


def _check_table(table: Iterable[CommandSpec]) -> None:
    """The table and the dataclasses must agree; checked once, at import."""
    for spec in table:
        fields = {f.name for f in dataclasses.fields(spec.factory)}
        names = {_FIELD_FOR_PARAM[p.name] for p in spec.parameters}
        if fields != names:
            raise AssertionError(f"/{spec.name}: table has {sorted(names)}, class has {sorted(fields)}")


_check_table(COMMANDS)


# -- parsing --------------------------------------------------------------------


def _check_nick(value: str) -> str:
    if not is_nickname(value):
        raise CommandError(f"'{value}' is not a nickname: {NICK_RULE}.")
    return value


def _unknown(name: str) -> CommandError:
    close = difflib.get_close_matches(name, _BY_NAME, n=1)
    hint = f" Did you mean /{close[0]}?" if close else ""
    return CommandError(f"There is no command /{name}.{hint} Type /help for the list.")


def _split_word(text: str) -> tuple[str, str]:
    """The first whitespace-separated word and the rest, left-stripped."""
    parts = text.lstrip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _bind(spec: CommandSpec, args: str) -> Command:
    """Match ``args`` against the spec's parameters and build the command."""
    # str or None per parameter: which field takes None is the table's to say
    # (its params match the dataclass's fields, _check_table), not the type checker's
    values: dict[str, Any] = {}
    rest = args.strip()
    for param in spec.parameters:
        if param.rest:
            value: str | None = rest
            rest = ""
        else:
            value, rest = _split_word(rest)
        if not value:
            if param.required:
                raise CommandError(f"Usage: {spec.usage} -- {spec.summary}")
            value = None
        elif param.name == "nick":
            value = _check_nick(value)
        values[_FIELD_FOR_PARAM[param.name]] = value
    if rest.strip():
        raise CommandError(f"Too many words for /{spec.name}. Usage: {spec.usage}")
    return spec.factory(**values)


def parse(line: str) -> Command | None:
    """Turn one typed line into a command; None for a blank line.

    Raises :class:`CommandError` with a sentence explaining the mistake.
    """
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    name, args = _split_word(line[1:])
    if not name or line[1:2].isspace():
        raise CommandError("A command name must follow the '/'. Type /help for the list.")
    spec = _BY_NAME.get(name.lower())
    if spec is None:
        raise _unknown(name.lower())
    return _bind(spec, args)


# -- help -----------------------------------------------------------------------


def help_lines() -> list[str]:
    """The command list, one line per command, usages aligned."""
    width = max(len(spec.usage) for spec in COMMANDS)
    lines = ["Commands; other lines go to the current conversation:"]
    lines.extend(f"  {spec.usage:<{width}}  {spec.summary}" for spec in COMMANDS)
    lines.append("  Start a message with // to send text that begins with /.")
    return lines


def help_topic(name: str) -> list[str]:
    """Help on one command, given with or without its slash, by any spelling."""
    key = name.lstrip("/").lower()
    spec = _BY_NAME.get(key)
    if spec is None:
        raise _unknown(key)
    lines = [f"{spec.usage} -- {spec.summary}"]
    if spec.details:
        lines.append(spec.details)
    if len(spec.names) > 1:
        lines.append("Also: " + ", ".join(f"/{n}" for n in spec.names[1:]))
    return lines
