"""Every line of the relay protocol (docs/protocol.rst, sections 1-9 and 17), once.

One small frozen class per kind of line: the client's commands, the relay's
``OK`` replies (one per command), ``ERR``, and the relay's events. Each
knows its own shape, :meth:`Message.to_line` and :meth:`Message.from_line`;
the relay builds every line it sends with them and the client reads every
line it receives with them, so the two sides cannot drift apart.

Binary fields are held decoded (bytes); integers as ints; text fields (the
ends of ``ERR``, ``NOTICE``, ``BYE``) are kept to one line by
:func:`one_line` when a line is built, so no text can forge a second line.
A field that does not parse raises :class:`~relaychat.wire.errors.ProtocolError`
with the code the relay answers it with (``syntax``, ``bad-key``,
``bad-nick``).

Two hot paths stay by hand, on purpose: the relay forwards ``FRAME`` lines
without parsing them (:data:`FRAME_PREFIX`, :data:`SID_LENGTH` say what it
matches), and :func:`frame_line` builds one without a dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Optional, Sequence, TypeVar, Union

from relaychat.wire.codec import EncodingError, b64decode, b64encode
from relaychat.wire.errors import Code, ProtocolError
from relaychat.wire.nicknames import canonical, is_nickname

PROTOCOL_VERSION = "1"
SID_LENGTH = 16  # lower-case hex characters
FRAME_PREFIX = b"FRAME "
MAX_PING_TOKEN = 64
_HEX = frozenset("0123456789abcdef")

M = TypeVar("M", bound="Message")


# == fields =====================================================================


def one_line(text: str) -> str:
    """Keep operator or error text on one line so it cannot forge protocol lines."""
    return " ".join(text.split()) or "-"


def arity(args: Sequence[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ProtocolError(Code.SYNTAX, f"expected {want} arguments, got {len(args)}")


def number(text: str) -> int:
    """An unsigned decimal integer without leading zeros (section 1)."""
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0") or len(text) > 19:
        raise ProtocolError(Code.SYNTAX, "expected a decimal number")
    return int(text)


def is_sid(text: str) -> bool:
    return len(text) == SID_LENGTH and all(c in _HEX for c in text)


def sid(text: str) -> str:
    """A session id as the relay makes them; for lines the relay sent."""
    if not is_sid(text):
        raise ProtocolError(Code.SYNTAX, "expected a session id")
    return text


def safe_sid(text: str) -> str:
    """Echo a session id only if it looks like one, so errors cannot carry junk."""
    return text if is_sid(text) else "-"


def key(text: str, size: int) -> bytes:
    """A key, signature or challenge of exactly ``size`` bytes."""
    try:
        return b64decode(text, size=size)
    except EncodingError as e:
        raise ProtocolError(Code.BAD_KEY, f"bad binary field: {e}") from None


def payload(text: str, code: Code = Code.SYNTAX, max_size: Optional[int] = None) -> bytes:
    """A non-empty base64 payload (frames and mail)."""
    if not text:
        raise ProtocolError(code, "the payload is empty")
    try:
        return b64decode(text, max_size=max_size)
    except EncodingError:
        raise ProtocolError(code, "the payload is not base64") from None


def nick(text: str) -> str:
    """A nickname field, as given (the relay shows the first registered spelling)."""
    canonical(text)  # raises NicknameError, a bad-nick ProtocolError
    return text


def _choice(text: str, yes: str, no: str) -> bool:
    if text not in (yes, no):
        raise ProtocolError(Code.SYNTAX, f"expected {yes} or {no}")
    return text == yes


# == the base ===================================================================


class Message:
    """A protocol line. ``PREFIX`` is its fixed first token or tokens."""

    __slots__ = ()
    PREFIX: ClassVar[tuple[str, ...]]

    def tokens(self) -> list[str]:
        """The tokens after ``PREFIX``."""
        raise NotImplementedError

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        """Build from the tokens after ``PREFIX``; ProtocolError if they do not fit."""
        raise NotImplementedError

    def to_line(self) -> str:
        """The line, without LF."""
        return " ".join([*self.PREFIX, *self.tokens()])

    @classmethod
    def from_line(cls: type[M], line: str) -> M:
        """Parse a whole line (without LF) of this kind."""
        parts = line.split(" ")
        size = len(cls.PREFIX)
        if tuple(parts[:size]) != cls.PREFIX:
            raise ProtocolError(Code.SYNTAX, f"not a {' '.join(cls.PREFIX)} line")
        return cls.from_tokens(parts[size:])


class _Empty(Message):
    """A line with no tokens after its prefix."""

    __slots__ = ()

    def tokens(self) -> list[str]:
        return []

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        arity(args, 0, 0)
        return cls()


class _Sid(Message):
    """A line whose one token is a session id."""

    __slots__ = ()
    sid: str

    def tokens(self) -> list[str]:
        return [self.sid]

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        arity(args, 1, 1)
        return cls(args[0])  # type: ignore[call-arg]


class _Nick(Message):
    """A line whose one token is a nickname."""

    __slots__ = ()
    nick: str

    def tokens(self) -> list[str]:
        return [self.nick]

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        arity(args, 1, 1)
        return cls(nick(args[0]))  # type: ignore[call-arg]


class _MailId(Message):
    __slots__ = ()
    mail_id: int

    def tokens(self) -> list[str]:
        return [str(self.mail_id)]

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        arity(args, 1, 1)
        try:
            return cls(number(args[0]))  # type: ignore[call-arg]
        except ProtocolError:
            raise ProtocolError(Code.SYNTAX, "a mail id is a decimal number") from None


# == commands: client to relay ==================================================


class Command(Message):
    __slots__ = ()
    NAME: ClassVar[str]


@dataclass(frozen=True, slots=True)
class Hello(Command):
    NAME = "HELLO"
    PREFIX = (NAME,)
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
    PREFIX = (NAME,)
    nick: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes

    def tokens(self) -> list[str]:
        return [self.nick, b64encode(self.identity_pub), b64encode(self.static_pub), b64encode(self.static_sig)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Register:
        arity(args, 4, 4)
        return cls(nick(args[0]), key(args[1], 32), key(args[2], 32), key(args[3], 64))


@dataclass(frozen=True, slots=True)
class Prove(Command):
    NAME = "PROVE"
    PREFIX = (NAME,)
    signature: bytes
    pow_nonce: Optional[bytes] = None

    def tokens(self) -> list[str]:
        tokens = [b64encode(self.signature)]
        if self.pow_nonce is not None:
            tokens.append(b64encode(self.pow_nonce))
        return tokens

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Prove:
        arity(args, 1, 2)
        nonce = None
        if len(args) == 2:
            try:
                nonce = b64decode(args[1], max_size=32)
            except EncodingError as e:
                raise ProtocolError(Code.BAD_KEY, f"bad binary field: {e}") from None
        return cls(key(args[0], 64), nonce)


@dataclass(frozen=True, slots=True)
class Lookup(_Nick, Command):
    NAME = "LOOKUP"
    PREFIX = (NAME,)
    nick: str


@dataclass(frozen=True, slots=True)
class Who(_Empty, Command):
    NAME = "WHO"
    PREFIX = (NAME,)


@dataclass(frozen=True, slots=True)
class Ping(Command):
    NAME = "PING"
    PREFIX = (NAME,)
    token: Optional[str] = None

    def tokens(self) -> list[str]:
        return [self.token] if self.token is not None else []

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Ping:
        arity(args, 0, 1)
        if args and not 0 < len(args[0]) <= MAX_PING_TOKEN:
            raise ProtocolError(Code.SYNTAX, f"a PING token is at most {MAX_PING_TOKEN} characters")
        return cls(args[0] if args else None)


@dataclass(frozen=True, slots=True)
class Quit(_Empty, Command):
    NAME = "QUIT"
    PREFIX = (NAME,)


@dataclass(frozen=True, slots=True)
class Offer(_Nick, Command):
    NAME = "OFFER"
    PREFIX = (NAME,)
    nick: str


@dataclass(frozen=True, slots=True)
class Accept(_Sid, Command):
    """``sid`` is not checked for form: the relay answers ``no-session`` to any id it does not know."""

    NAME = "ACCEPT"
    PREFIX = (NAME,)
    sid: str


@dataclass(frozen=True, slots=True)
class Decline(_Sid, Command):
    NAME = "DECLINE"
    PREFIX = (NAME,)
    sid: str


@dataclass(frozen=True, slots=True)
class Close(_Sid, Command):
    NAME = "CLOSE"
    PREFIX = (NAME,)
    sid: str


def frame_line(session_id: str, data: bytes) -> str:
    """``FRAME <sid> <payload>``, built without an object: the client's hot path."""
    return f"FRAME {session_id} {b64encode(data)}"


@dataclass(frozen=True, slots=True)
class Frame(Command):
    """Both a command and, forwarded unchanged, an event. The relay never
    parses it (see the module docstring); the client reads it with this."""

    NAME = "FRAME"
    PREFIX = (NAME,)
    sid: str
    payload: bytes

    def to_line(self) -> str:
        return frame_line(self.sid, self.payload)

    def tokens(self) -> list[str]:
        return [self.sid, b64encode(self.payload)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Frame:
        if len(args) != 2 or not args[1]:
            raise ProtocolError(Code.SYNTAX, "FRAME takes a session id and one payload")
        return cls(sid(args[0]), payload(args[1], Code.BAD_ENCODING))


@dataclass(frozen=True, slots=True)
class Mail(Command):
    NAME = "MAIL"
    PREFIX = (NAME,)
    nick: str
    payload: bytes

    def tokens(self) -> list[str]:
        return [self.nick, b64encode(self.payload)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Mail:
        arity(args, 2, 2)
        return cls(nick(args[0]), payload(args[1]))


@dataclass(frozen=True, slots=True)
class Ack(_MailId, Command):
    NAME = "ACK"
    PREFIX = (NAME,)
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


@dataclass(frozen=True, slots=True)
class HelloOk(Reply):
    COMMAND = "HELLO"
    PREFIX = ("OK", COMMAND)
    version: str
    server_id: bytes
    max_line: int
    max_frame: int
    max_mail: int
    extra: Mapping[str, str] = field(default_factory=dict)
    """Further ``key=value`` options from a newer relay (clients ignore them)."""

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
        return cls(args[0], key(args[1], 32), *limits, values)


@dataclass(frozen=True, slots=True)
class RegisterOk(Reply):
    COMMAND = "REGISTER"
    PREFIX = ("OK", COMMAND)
    canonical: str
    challenge: bytes
    pow_bits: int

    def tokens(self) -> list[str]:
        return [self.canonical, b64encode(self.challenge), str(self.pow_bits)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> RegisterOk:
        arity(args, 3, 3)
        return cls(canonical(args[0]), key(args[1], 32), number(args[2]))


@dataclass(frozen=True, slots=True)
class ProveOk(Reply):
    COMMAND = "PROVE"
    PREFIX = ("OK", COMMAND)
    nick: str
    new: bool  # the nickname was bound just now
    pending_mail: int

    def tokens(self) -> list[str]:
        return [self.nick, "new" if self.new else "known", str(self.pending_mail)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> ProveOk:
        arity(args, 3, 3)
        return cls(nick(args[0]), _choice(args[1], "new", "known"), number(args[2]))


@dataclass(frozen=True, slots=True)
class LookupOk(Reply):
    """The relay's *claim*; the client verifies static_sig and the pin."""

    COMMAND = "LOOKUP"
    PREFIX = ("OK", COMMAND)
    nick: str
    identity_pub: bytes
    static_pub: bytes
    static_sig: bytes
    online: bool

    def tokens(self) -> list[str]:
        return [self.nick, b64encode(self.identity_pub), b64encode(self.static_pub), b64encode(self.static_sig),
                "online" if self.online else "offline"]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> LookupOk:
        arity(args, 5, 5)
        return cls(nick(args[0]), key(args[1], 32), key(args[2], 32), key(args[3], 64),
                   _choice(args[4], "online", "offline"))


@dataclass(frozen=True, slots=True)
class WhoOk(Reply):
    """Ends a ``WHO``; the :class:`User` lines before it belong to it."""

    COMMAND = "WHO"
    PREFIX = ("OK", COMMAND)
    shown: int
    online: int

    def tokens(self) -> list[str]:
        return [str(self.shown), str(self.online)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> WhoOk:
        arity(args, 2, 2)
        return cls(number(args[0]), number(args[1]))


@dataclass(frozen=True, slots=True)
class PingOk(Reply):
    COMMAND = "PING"
    PREFIX = ("OK", COMMAND)
    token: Optional[str] = None

    def tokens(self) -> list[str]:
        return [self.token] if self.token is not None else []

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> PingOk:
        return cls(Ping.from_tokens(args).token)


@dataclass(frozen=True, slots=True)
class OfferOk(Reply):
    COMMAND = "OFFER"
    PREFIX = ("OK", COMMAND)
    sid: str
    nick: str

    def tokens(self) -> list[str]:
        return [self.sid, self.nick]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> OfferOk:
        arity(args, 2, 2)
        return cls(sid(args[0]), nick(args[1]))


class _SidReply(_Sid, Reply):
    __slots__ = ()

    @classmethod
    def from_tokens(cls: type[M], args: Sequence[str]) -> M:
        arity(args, 1, 1)
        return cls(sid(args[0]))  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class AcceptOk(_SidReply):
    COMMAND = "ACCEPT"
    PREFIX = ("OK", COMMAND)
    sid: str


@dataclass(frozen=True, slots=True)
class DeclineOk(_SidReply):
    COMMAND = "DECLINE"
    PREFIX = ("OK", COMMAND)
    sid: str


@dataclass(frozen=True, slots=True)
class CloseOk(_SidReply):
    COMMAND = "CLOSE"
    PREFIX = ("OK", COMMAND)
    sid: str


@dataclass(frozen=True, slots=True)
class MailOk(_MailId, Reply):
    COMMAND = "MAIL"
    PREFIX = ("OK", COMMAND)
    mail_id: int


@dataclass(frozen=True, slots=True)
class AckOk(_MailId, Reply):
    COMMAND = "ACK"
    PREFIX = ("OK", COMMAND)
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

    def tokens(self) -> list[str]:
        return [self.command, self.code, one_line(self.text)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Err:
        if len(args) < 2 or not args[0] or not args[1]:
            raise ProtocolError(Code.SYNTAX, "ERR has a command and a code")
        return cls(args[0], args[1], " ".join(args[2:]) or args[1])


# == events: relay to client, unasked ===========================================


class Event(Message):
    __slots__ = ()
    NAME: ClassVar[str]


@dataclass(frozen=True, slots=True)
class User(Event):
    """A data line of a ``WHO`` reply (it comes before ``OK WHO``)."""

    NAME = "USER"
    PREFIX = (NAME,)
    nick: str
    identity_pub: bytes

    def tokens(self) -> list[str]:
        return [self.nick, b64encode(self.identity_pub)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> User:
        arity(args, 2, 2)
        return cls(nick(args[0]), key(args[1], 32))


@dataclass(frozen=True, slots=True)
class Offered(Event):
    NAME = "OFFERED"
    PREFIX = (NAME,)
    sid: str
    nick: str
    identity_pub: bytes

    def tokens(self) -> list[str]:
        return [self.sid, self.nick, b64encode(self.identity_pub)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Offered:
        arity(args, 3, 3)
        return cls(sid(args[0]), nick(args[1]), key(args[2], 32))


@dataclass(frozen=True, slots=True)
class Accepted(Event):
    NAME = "ACCEPTED"
    PREFIX = (NAME,)
    sid: str

    def tokens(self) -> list[str]:
        return [self.sid]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Accepted:
        arity(args, 1, 1)
        return cls(sid(args[0]))


@dataclass(frozen=True, slots=True)
class SessionClosed(Event):
    """``CLOSED <sid> <reason>``; reasons are :class:`~relaychat.wire.errors.Closed`
    values, kept as words so a newer relay's reason still reads."""

    NAME = "CLOSED"
    PREFIX = (NAME,)
    sid: str
    reason: str

    def tokens(self) -> list[str]:
        return [self.sid, self.reason]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> SessionClosed:
        arity(args, 2, 2)
        return cls(sid(args[0]), args[1])


@dataclass(frozen=True, slots=True)
class StoredMail(Event):
    """``MAIL <mail_id> <sender_nick> <time> <payload>``: mail delivered by the relay."""

    NAME = "MAIL"
    PREFIX = (NAME,)
    mail_id: int
    sender: str
    time: int
    payload: bytes

    def tokens(self) -> list[str]:
        return [str(self.mail_id), self.sender, str(self.time), b64encode(self.payload)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> StoredMail:
        arity(args, 4, 4)
        return cls(number(args[0]), nick(args[1]), number(args[2]), payload(args[3]))


@dataclass(frozen=True, slots=True)
class Notice(Event):
    NAME = "NOTICE"
    PREFIX = (NAME,)
    text: str

    def tokens(self) -> list[str]:
        return [one_line(self.text)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Notice:
        return cls(" ".join(args))


@dataclass(frozen=True, slots=True)
class Goodbye(Event):
    """``BYE <code> <text>``; codes are :class:`~relaychat.wire.errors.Bye` values."""

    NAME = "BYE"
    PREFIX = (NAME,)
    code: str
    text: str

    def tokens(self) -> list[str]:
        return [self.code, one_line(self.text)]

    @classmethod
    def from_tokens(cls, args: Sequence[str]) -> Goodbye:
        if not args or not args[0]:
            raise ProtocolError(Code.SYNTAX, "BYE has a code")
        return cls(args[0], " ".join(args[1:]) or args[0])


_EVENTS: tuple[type[Event], ...] = (User, Offered, Accepted, SessionClosed, StoredMail, Notice, Goodbye)
EVENTS: Mapping[str, type[Message]] = {**{e.NAME: e for e in _EVENTS}, Frame.NAME: Frame}
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
    return event.from_tokens(parts[1:])  # type: ignore[return-value]


def parse_command(line: str) -> Command:
    """Read a line a client sent (for tests and tools; the relay's own
    dispatcher checks state and order before it parses the arguments)."""
    parts = line.split(" ")
    command = COMMANDS.get(parts[0])
    if command is None:
        raise ProtocolError(Code.UNKNOWN, "no such command")
    return command.from_tokens(parts[1:])


__all__ = [
    "COMMANDS", "EVENTS", "FRAME_PREFIX", "PROTOCOL_VERSION", "REPLIES", "SID_LENGTH",
    "Accept", "AcceptOk", "Accepted", "Ack", "AckOk", "Close", "CloseOk", "Command", "Decline", "DeclineOk",
    "Err", "Event", "Frame", "FromRelay", "Goodbye", "Hello", "HelloOk", "Lookup", "LookupOk", "Mail",
    "MailOk", "Message", "Notice", "Offer", "OfferOk", "Offered", "Ping", "PingOk", "Prove", "ProveOk",
    "Quit", "Register", "RegisterOk", "Reply", "SessionClosed", "StoredMail", "User", "Who", "WhoOk",
    "frame_line", "is_nickname", "one_line", "parse_command", "parse_from_relay",
]
