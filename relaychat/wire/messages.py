"""Every line of the relay protocol (docs/protocol.rst, sections 1-9 and 17), once.

One small frozen class per kind of line: the client's commands, the relay's
``OK`` replies (one per command), ``ERR``, and the relay's events. Each
declares its tokens (``FIELDS``: how each is written and read), and so knows
:meth:`Message.to_line` and :meth:`Message.from_line`; the relay builds
every line it sends with them and the client reads every line it receives
with them, so the two sides cannot drift apart. ``COMMANDS``, ``REPLIES``
and ``EVENTS`` map names on the wire to the classes.

Binary fields are held decoded (bytes); integers as ints; a text field (the
end of ``ERR``, ``NOTICE``, ``BYE``) is kept to one line by :func:`one_line`
when a line is built, so no text can forge a second line. A token that does
not read raises :class:`~relaychat.wire.errors.ProtocolError` with the code
the relay answers it with (``syntax``, ``bad-key``, ``bad-nick``).

Two hot paths stay by hand, on purpose: the relay forwards ``FRAME`` lines
without parsing them (:data:`FRAME_PREFIX` and :data:`SID_LENGTH` say what it
matches), and :func:`frame_line` builds one without an object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional, Sequence, TypeVar, Union

from relaychat.wire.codec import b64encode
from relaychat.wire.errors import Code, ProtocolError
from relaychat.wire.tokens import (
    KEY32, KEY64, MAIL_ID, NICK, NONCE, NUMBER, PAYLOAD, PING_TOKEN, SID, SID_LENGTH, TOKEN, Field,
    arity, choice, number, one_line, payload, token,
)

PROTOCOL_VERSION = "1"
FRAME_PREFIX = b"FRAME "

M = TypeVar("M", bound="Message")


# == the base ===================================================================


class Message:
    """A protocol line: ``PREFIX`` (its fixed first tokens), then one token per
    field in ``FIELDS``, the last ``OPTIONAL`` of which may be absent (None);
    with ``TEXT``, a last ``str`` field holds the rest of the line."""

    __slots__ = ()
    PREFIX: ClassVar[tuple[str, ...]]
    FIELDS: ClassVar[tuple[Field[Any], ...]] = ()
    OPTIONAL: ClassVar[int] = 0
    TEXT: ClassVar[bool] = False

    def tokens(self) -> list[str]:
        """The tokens after ``PREFIX``."""
        names: tuple[str, ...] = type(self).__slots__  # a slotted dataclass: its fields, in order
        out: list[str] = []
        for name, spec in zip(names, self.FIELDS):
            value = getattr(self, name)
            if value is None:
                break  # an optional field left out, and all after it
            out.append(spec.encode(value))
        if self.TEXT:
            out.append(one_line(getattr(self, names[-1])))
        return out

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        """Read the tokens after ``PREFIX``; ProtocolError if they do not fit."""
        fields = cls.FIELDS
        fixed = len(fields)
        if cls.TEXT:
            arity(args[:fixed], fixed, fixed)
            values: list[Any] = [spec.decode(arg) for spec, arg in zip(fields, args)]
            values.append(" ".join(args[fixed:]))
            return cls(*values)
        arity(args, fixed - cls.OPTIONAL, fixed)
        values = [spec.decode(arg) for spec, arg in zip(fields, args)]
        values.extend([None] * (fixed - len(values)))
        return cls(*values)

    def to_line(self) -> str:
        """The line, without LF."""
        return " ".join([*self.PREFIX, *self.tokens()])

    @classmethod
    def from_line(cls: type[M], line: str) -> M:
        """Read a whole line (without LF) of this kind."""
        parts = line.split(" ")
        size = len(cls.PREFIX)
        if tuple(parts[:size]) != cls.PREFIX:
            raise ProtocolError(Code.SYNTAX, f"not a {' '.join(cls.PREFIX)} line")
        return cls.from_tokens(parts[size:])


# == commands: client to relay ==================================================


class Command(Message):
    __slots__ = ()
    NAME: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.PREFIX = (cls.NAME,)


@dataclass(frozen=True, slots=True)
class Hello(Command):
    """``HELLO <version> [<version>...]``: up to eight versions the client speaks."""

    NAME = "HELLO"
    versions: tuple[str, ...] = (PROTOCOL_VERSION,)

    def tokens(self) -> list[str]:
        return list(self.versions)

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Hello:
        arity(args, 1, 8)
        return cls(tuple(args))


@dataclass(frozen=True, slots=True)
class Register(Command):
    NAME = "REGISTER"
    FIELDS = (NICK, KEY32, KEY32, KEY64)
    nick: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes


@dataclass(frozen=True, slots=True)
class Prove(Command):
    NAME = "PROVE"
    FIELDS = (KEY64, NONCE)
    OPTIONAL = 1
    signature: bytes
    pow_nonce: Optional[bytes] = None


@dataclass(frozen=True, slots=True)
class Lookup(Command):
    NAME = "LOOKUP"
    FIELDS = (NICK,)
    nick: str


@dataclass(frozen=True, slots=True)
class Who(Command):
    NAME = "WHO"


@dataclass(frozen=True, slots=True)
class Ping(Command):
    NAME = "PING"
    FIELDS = (PING_TOKEN,)
    OPTIONAL = 1
    token: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Quit(Command):
    NAME = "QUIT"


@dataclass(frozen=True, slots=True)
class Offer(Command):
    NAME = "OFFER"
    FIELDS = (NICK,)
    nick: str


# ACCEPT, DECLINE and CLOSE take any token for a session id: the relay answers
# no-session to one it does not know, whatever it looks like.


@dataclass(frozen=True, slots=True)
class Accept(Command):
    NAME = "ACCEPT"
    FIELDS = (TOKEN,)
    sid: str


@dataclass(frozen=True, slots=True)
class Decline(Command):
    NAME = "DECLINE"
    FIELDS = (TOKEN,)
    sid: str


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME = "CLOSE"
    FIELDS = (TOKEN,)
    sid: str


def frame_line(session_id: str, data: bytes) -> str:
    """``FRAME <sid> <payload>``, built without an object: the client's hot path."""
    return f"FRAME {session_id} {b64encode(data)}"


@dataclass(frozen=True, slots=True)
class Frame(Command):
    """A command and, forwarded unchanged, an event. The relay never parses
    it (see the module docstring); the client reads it with this. A payload
    that is not base64 is ``bad-encoding``: the peer's fault, not the relay's."""

    NAME = "FRAME"
    FIELDS = (SID, Field(b64encode, payload(Code.BAD_ENCODING)))
    sid: str
    payload: bytes

    def to_line(self) -> str:
        return frame_line(self.sid, self.payload)


@dataclass(frozen=True, slots=True)
class Mail(Command):
    NAME = "MAIL"
    FIELDS = (NICK, PAYLOAD)
    nick: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack(Command):
    NAME = "ACK"
    FIELDS = (MAIL_ID,)
    mail_id: int


_COMMANDS: tuple[type[Command], ...] = (
    Hello, Register, Prove, Lookup, Who, Ping, Quit, Offer, Accept, Decline, Close, Frame, Mail, Ack,
)
COMMANDS: Mapping[str, type[Command]] = {c.NAME: c for c in _COMMANDS}
"""Command name to class: what a client may send."""


# == replies: relay to client, one per command ==================================


class Reply(Message):
    """``OK <COMMAND> ...``; ``COMMAND`` names the command it answers."""

    __slots__ = ()
    COMMAND: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.PREFIX = ("OK", cls.COMMAND)


@dataclass(frozen=True, slots=True)
class HelloOk(Reply):
    """``OK HELLO <version> <server_id> max_line=<n> max_frame=<n> max_mail=<n> [key=value...]``."""

    COMMAND = "HELLO"
    version: str
    server_id: bytes
    max_line: int
    max_frame: int
    max_mail: int
    extra: Mapping[str, str] = field(default_factory=dict)  # options of a newer relay: clients ignore them

    def tokens(self) -> list[str]:
        options = {"max_line": self.max_line, "max_frame": self.max_frame, "max_mail": self.max_mail, **self.extra}
        return [self.version, b64encode(self.server_id), *(f"{k}={v}" for k, v in options.items())]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> HelloOk:
        if len(args) < 5:
            raise ProtocolError(Code.SYNTAX, "OK HELLO has a version, a server id and limits")
        values: dict[str, str] = {}
        for option in args[2:]:
            name, equals, value = option.partition("=")
            if not equals or not name:
                raise ProtocolError(Code.SYNTAX, "OK HELLO options are key=value")
            values[name] = value
        try:
            limits = [number(values.pop(name)) for name in ("max_line", "max_frame", "max_mail")]
        except KeyError:
            raise ProtocolError(Code.SYNTAX, "OK HELLO lacks a limit") from None
        return cls(token(args[0]), KEY32.decode(args[1]), limits[0], limits[1], limits[2], values)


@dataclass(frozen=True, slots=True)
class RegisterOk(Reply):
    COMMAND = "REGISTER"
    FIELDS = (NICK, KEY32, NUMBER)
    canonical: str
    challenge: bytes
    pow_bits: int


@dataclass(frozen=True, slots=True)
class ProveOk(Reply):
    COMMAND = "PROVE"
    FIELDS = (NICK, choice("new", "known"), NUMBER)
    nick: str
    new: bool  # the nickname was bound just now
    pending_mail: int


@dataclass(frozen=True, slots=True)
class LookupOk(Reply):
    """The relay's *claim*; the client verifies static_sig and the pin."""

    COMMAND = "LOOKUP"
    FIELDS = (NICK, KEY32, KEY32, KEY64, choice("online", "offline"))
    nick: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes
    online: bool


@dataclass(frozen=True, slots=True)
class WhoOk(Reply):
    """Ends a ``WHO``; the :class:`User` lines before it belong to it."""

    COMMAND = "WHO"
    FIELDS = (NUMBER, NUMBER)
    shown: int
    online: int


@dataclass(frozen=True, slots=True)
class PingOk(Reply):
    COMMAND = "PING"
    FIELDS = (PING_TOKEN,)
    OPTIONAL = 1
    token: Optional[str] = None


@dataclass(frozen=True, slots=True)
class OfferOk(Reply):
    COMMAND = "OFFER"
    FIELDS = (SID, NICK)
    sid: str
    nick: str


@dataclass(frozen=True, slots=True)
class AcceptOk(Reply):
    COMMAND = "ACCEPT"
    FIELDS = (SID,)
    sid: str


@dataclass(frozen=True, slots=True)
class DeclineOk(Reply):
    COMMAND = "DECLINE"
    FIELDS = (SID,)
    sid: str


@dataclass(frozen=True, slots=True)
class CloseOk(Reply):
    COMMAND = "CLOSE"
    FIELDS = (SID,)
    sid: str


@dataclass(frozen=True, slots=True)
class MailOk(Reply):
    COMMAND = "MAIL"
    FIELDS = (MAIL_ID,)
    mail_id: int


@dataclass(frozen=True, slots=True)
class AckOk(Reply):
    COMMAND = "ACK"
    FIELDS = (MAIL_ID,)
    mail_id: int


_REPLIES: tuple[type[Reply], ...] = (
    HelloOk, RegisterOk, ProveOk, LookupOk, WhoOk, PingOk, OfferOk, AcceptOk, DeclineOk, CloseOk, MailOk, AckOk,
)
REPLIES: Mapping[str, type[Reply]] = {r.COMMAND: r for r in _REPLIES}
"""Command name to the class of its ``OK`` reply (``QUIT`` and ``FRAME`` have none)."""


@dataclass(frozen=True, slots=True)
class Err(Message):
    """``ERR <COMMAND> <code> <text>``; ``command`` is ``-`` for a line that
    could not be read. ``code`` is the wire word: a client must accept codes
    it does not know (see :class:`~relaychat.wire.errors.Code`)."""

    PREFIX = ("ERR",)
    FIELDS = (TOKEN, TOKEN)
    TEXT = True
    command: str
    code: str
    text: str

    @classmethod
    def of(cls, command: str, code: Code, text: str) -> Err:
        return cls(command, code.word, text)

    @property
    def sid(self) -> str:
        """For ``FRAME`` and ``CLOSE`` failures: the session id that starts the text (or ``-``)."""
        return self.text.split(" ", 1)[0]


# == events: relay to client, unasked ===========================================


class Event(Message):
    __slots__ = ()
    NAME: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.PREFIX = (cls.NAME,)


@dataclass(frozen=True, slots=True)
class User(Event):
    """A data line of a ``WHO`` reply (it comes before ``OK WHO``)."""

    NAME = "USER"
    FIELDS = (NICK, KEY32)
    nick: str
    identity_pub: bytes


@dataclass(frozen=True, slots=True)
class Offered(Event):
    NAME = "OFFERED"
    FIELDS = (SID, NICK, KEY32)
    sid: str
    nick: str
    identity_pub: bytes


@dataclass(frozen=True, slots=True)
class Accepted(Event):
    NAME = "ACCEPTED"
    FIELDS = (SID,)
    sid: str


@dataclass(frozen=True, slots=True)
class SessionClosed(Event):
    """``CLOSED <sid> <reason>``; reasons are :class:`~relaychat.wire.errors.Closed`
    values, kept as words so a newer relay's reason still reads."""

    NAME = "CLOSED"
    FIELDS = (SID, TOKEN)
    sid: str
    reason: str


@dataclass(frozen=True, slots=True)
class StoredMail(Event):
    """``MAIL <mail_id> <sender_nick> <time> <payload>``: mail delivered by the relay."""

    NAME = "MAIL"
    FIELDS = (MAIL_ID, NICK, NUMBER, PAYLOAD)
    mail_id: int
    sender: str
    time: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Notice(Event):
    NAME = "NOTICE"
    TEXT = True
    text: str


@dataclass(frozen=True, slots=True)
class Goodbye(Event):
    """``BYE <code> <text>``; codes are :class:`~relaychat.wire.errors.Bye` values."""

    NAME = "BYE"
    FIELDS = (TOKEN,)
    TEXT = True
    code: str
    text: str


_EVENTS: tuple[type[Event], ...] = (User, Offered, Accepted, SessionClosed, StoredMail, Notice, Goodbye)
EVENTS: Mapping[str, type[Event] | type[Frame]] = {**{e.NAME: e for e in _EVENTS}, Frame.NAME: Frame}
"""Event name to class: what the relay sends unasked (``FRAME`` included)."""

FromRelay = Union[Reply, Err, Event, Frame]


def parse_from_relay(line: str) -> Optional[FromRelay]:
    """Read a line the relay sent; None for an event this version does not know
    (section 2 lets relays add events). ProtocolError if it is malformed."""
    parts = line.split(" ")
    first = parts[0]
    if first == "OK":
        if len(parts) < 2:
            raise ProtocolError(Code.SYNTAX, "OK names a command")
        reply = REPLIES.get(parts[1])
        if reply is None:
            raise ProtocolError(Code.SYNTAX, f"no such reply: OK {parts[1][:16]}")
        return reply.from_tokens(parts[2:])
    if first == "ERR":
        return Err.from_tokens(parts[1:])
    event = EVENTS.get(first)
    if event is None:
        return None
    return event.from_tokens(parts[1:])


def parse_command(line: str) -> Command:
    """Read a line a client sent (for tests and tools; the relay's own
    dispatcher checks state and order before it reads the arguments)."""
    parts = line.split(" ")
    command = COMMANDS.get(parts[0])
    if command is None:
        raise ProtocolError(Code.UNKNOWN, "no such command")
    return command.from_tokens(parts[1:])
