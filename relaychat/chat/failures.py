"""Failures and goodbyes as sentences for people, never tracebacks.

The library's exceptions already carry sentences; this module adds the
words for what a person can act on: relay error codes, network and TLS
failures while connecting, and why the relay ended a connection (a kick,
a ban -- which one and for how long --, a login elsewhere). Network text
in any of them is made inert (protocol section 16).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet import error as net_error

from relaychat.chat.inert import render_inert
from relaychat.client import (
    ConversationFailed,
    Disconnected,
    MailError,
    MessageTooLong,
    NotPinned,
    RelayChanged,
    RelayError,
    explain_tls_failure,
)
from relaychat.crypto.identity import IdentityError
from relaychat.crypto.pins import PinError

__all__ = ["EXPECTED_FAILURES", "ban_words", "count", "describe_failure", "duration", "goodbye", "is_expected"]


def _nick(nick: str) -> str:
    return render_inert(nick)


def _say(text: str) -> str:
    return render_inert(text)


def count(n: int, thing: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def duration(seconds: int) -> str:
    """A time span as people say it: "45 seconds", "20 minutes", "3 hours", "2 days"."""
    for unit, size, up_to in (("second", 1, 90), ("minute", 60, 90 * 60), ("hour", 3600, 48 * 3600)):
        if seconds < up_to:
            return count(max(1, round(seconds / size)), unit)
    return count(round(seconds / 86400), "day")



_BANNED = {"nick": "your nickname", "key": "your identity key", "address": "your address"}


def ban_words(error: RelayError) -> str:
    """Which ban, and for how long, from a ``banned`` refusal (protocol section 2)."""
    ban = error.ban
    if ban is None:
        return "The relay has banned this nickname, your key or your address."
    kind, seconds = ban
    return f"The relay has banned {_BANNED[kind]} for another {duration(seconds)}."


def goodbye(error: Disconnected) -> str:
    """Why the relay ended the connection, in words (the ``BYE`` code and text)."""
    text = error.text.rstrip(".")
    if error.code == "kicked":
        return f"The relay operator disconnected you: {text}."
    if error.code == "banned":
        return ban_words(error)
    if error.code == "replaced":
        return "You logged in with this nickname somewhere else, so the relay disconnected this one."
    if error.code == "violations":
        return "The relay disconnected you after too many protocol errors (a bug in relaychat?)."
    if error.code == "quit":
        return "Disconnected from the relay."
    return str(error)



try:  # TLS failures, when the TLS extras are installed
    from OpenSSL.SSL import Error as _SSLError
    from service_identity import VerificationError as _VerificationError

    _TLS_FAILURES: tuple[type[BaseException], ...] = (_SSLError, _VerificationError)
except ImportError:  # pragma: no cover
    _TLS_FAILURES = ()

# Relay error codes (protocol section 2) that a person can act on, in words.
# ``{n}`` is the nickname the request was about.
_RELAY_CODES = {
    "offline": "{n} is not online. /mail {n} <text> leaves them a sealed message.",
    "no-such-user": "Nobody is registered as {n} on this relay.",
    "invalid": "That request makes no sense to the relay (calling yourself?).",
    "limit": "Too many conversations or offers at once; /close one first.",
    "quota": "{n}'s mailbox is full, or you left them too much mail; try again later.",
    "draining": "The relay is shutting down and takes no new requests.",
    "banned": "The relay has banned this nickname, your key or your address.",
    "taken": "The nickname {n} belongs to someone else's key on this relay; choose another with --nick.",
    "bad-nick": "{n} is not an acceptable nickname on this relay.",
    "pow": "The relay refused the registration's proof of work.",
}


def _disconnected(exc: Disconnected, server: str | None) -> str:
    """The connection ended; while connecting (``server`` given), say so in those words."""
    if server is None:
        return _say(str(exc))
    where, text = render_inert(server), render_inert(exc.text.rstrip("."))
    return f"Could not connect to {where}: {text}."


def _connect_failure(exc: BaseException, server: str) -> str | None:
    """Network errors from endpoints, in words; None if not one of them."""
    where = render_inert(server)
    if isinstance(exc, net_error.ConnectionRefusedError):
        return f"Could not connect to {where}: the connection was refused. Is the relay running there?"
    if isinstance(exc, net_error.DNSLookupError):
        return f"Could not connect to {where}: the host name was not found."
    if isinstance(exc, (net_error.TimeoutError, defer.TimeoutError)):
        return f"Could not connect to {where}: no answer in time."
    if _TLS_FAILURES and isinstance(exc, _TLS_FAILURES):
        return f"Could not connect securely to {where}: {render_inert(explain_tls_failure(exc).rstrip('.'))}."
    if isinstance(exc, net_error.ConnectionDone):
        return f"The relay at {where} closed the connection."
    if isinstance(exc, net_error.ConnectError):
        return f"Could not connect to {where}: {render_inert(str(exc))}"
    return None


#: Failures that happen in normal use and carry (or get) a sentence; anything
#: else is a bug, named as one and logged with its traceback.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (
    RelayError,
    RelayChanged,
    NotPinned,
    ConversationFailed,
    MessageTooLong,
    MailError,
    PinError,
    IdentityError,
    defer.CancelledError,
    defer.TimeoutError,
    net_error.ConnectError,
    net_error.DNSLookupError,
    net_error.TimeoutError,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
) + _TLS_FAILURES


def is_expected(exc: BaseException) -> bool:
    """True for failures people cause or meet (refused, offline, tampering), not bugs."""
    return isinstance(exc, EXPECTED_FAILURES)


def describe_failure(exc: BaseException, nick: str | None = None, server: str | None = None) -> str:
    """One sentence for a failed request; network text in it is made inert.

    The library's exceptions already carry sentences (``str(e)``); relay
    error codes that people can do something about get a better one here.
    Anything unexpected is named as a bug rather than shown as a traceback.
    """
    if not is_expected(exc):
        return (
            f"Something went wrong inside relaychat ({type(exc).__name__}: {_say(str(exc))}). "
            "This is a bug; details are in the log."
        )
    n = _nick(nick) if nick else "they"
    if isinstance(exc, Disconnected):
        if exc.code not in ("lost", "timeout", "protocol", "tls"):  # the relay said why: kicked, banned, ...
            return goodbye(exc)
        if server is None and nick and exc.code == "lost":  # a request under way, not the connecting itself
            return f"What you asked about {n} was cut off with the connection to the relay."
        return _disconnected(exc, server)
    if isinstance(exc, RelayError):
        if exc.code == "banned":
            return ban_words(exc)
        holder = exc.holder
        if holder is not None and holder[1]:
            return (f"{n} is too similar to {_nick(holder[0])}, which belongs to someone else; "
                    "choose another with --nick.")
        template = _RELAY_CODES.get(exc.code)
        return template.format(n=n) if template else _say(str(exc))
    if isinstance(exc, defer.CancelledError):
        return f"Stopped calling {n}." if nick else "Cancelled."
    network = _connect_failure(exc, server or "the relay")
    return network if network is not None else _say(str(exc))
