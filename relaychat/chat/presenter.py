"""What the chat program prints for each event, as plain data; no terminal.

The :class:`Presenter` turns events (connected, offer received, message,
key changed, ...) into :class:`Line` values: a kind, used only for colour,
and the finished text. The terminal (``relaychat.chat.terminal``) just
wraps and writes them, and the controller decides *when*; keeping the words
here makes them testable without a terminal and keeps the rule for untrusted
text in one place:

* every line the program itself says starts with ``*** `` (``!!! `` for the
  loud key-change warning);
* every message starts with ``<nick> ``;
* everything that came from the network -- nicknames, messages, relay
  texts, error sentences quoting them -- goes through
  :func:`relaychat.chat.inert.render_inert`, and continuation lines of a
  message are indented, so received text can never produce a line that
  starts with ``***`` or ``!!!`` at the left margin.

:func:`wrap` does the same for lines longer than the screen: the terminal's
own wrapping would put the overflow at column 0, so lines are broken here,
with continuation rows indented.
"""

from __future__ import annotations

import enum
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet import error as net_error

from relaychat.client import (
    ContactInfo,
    ConversationFailed,
    Disconnected,
    How,
    MailError,
    MessageTooLong,
    NotPinned,
    RelayChanged,
    RelayError,
    Verification,
    explain_tls_failure,
)
from relaychat.chat.commands import help_lines, help_topic
from relaychat.chat.inert import render_inert
from relaychat.crypto.identity import IdentityError
from relaychat.crypto.pins import PinError

__all__ = [
    "CONTINUATION",
    "EXPECTED_FAILURES",
    "STATUS_PREFIX",
    "WARNING_PREFIX",
    "Kind",
    "Line",
    "Presenter",
    "cell_width",
    "describe_failure",
    "is_expected",
    "text_width",
    "wrap",
]

STATUS_PREFIX = "*** "
WARNING_PREFIX = "!!! "
#: Indent of a message's continuation lines and of wrapped rows.
CONTINUATION = "    "


class Kind(enum.Enum):
    """What a line is; the terminal picks a colour from it, nothing more."""

    STATUS = "status"  # the program speaking: progress, results, help
    GOOD = "good"  # verified, conversation open
    ERROR = "error"  # something the user asked for failed
    WARNING = "warning"  # stop and think: key changed, check failed
    MESSAGE = "message"  # from a peer
    OWN = "own"  # what we sent


@dataclass(frozen=True)
class Line:
    kind: Kind
    text: str


# -- layout -----------------------------------------------------------------------


def cell_width(ch: str) -> int:
    """Terminal columns one character takes: 0 for combining marks, 2 for wide.

    An approximation of wcwidth; when it is off, the terminal (with
    auto-wrap disabled by the terminal module) cuts the row short rather than
    wrapping it to the left margin.
    """
    if ch in "\u200c\u200d" or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def text_width(text: str) -> int:
    return sum(cell_width(ch) for ch in text)


def _split_row(text: str, width: int) -> tuple[str, str]:
    """Cut ``text`` into a first row of at most ``width`` cells and the rest.

    Breaks after the last space in the row when there is one in its second
    half, otherwise mid-word; combining marks stay with their base.
    """
    used = 0
    cut = len(text)
    for index, ch in enumerate(text):
        w = cell_width(ch)
        if w and used + w > width:
            cut = index
            break
        used += w
    if cut == len(text):
        return text, ""
    space = text.rfind(" ", 0, cut + 1)
    if space >= cut // 2 and space > 0:
        return text[:space], text[space + 1 :]
    return text[:cut], text[cut:]


def wrap(text: str, width: int, indent: str = CONTINUATION) -> list[str]:
    """Break an inert line (it may contain ``\\n``) into screen rows.

    Rows after the first are indented, so nothing but the start of a line
    the program wrote ever reaches column 0.
    """
    width = max(width, text_width(indent) + 10)
    rows: list[str] = []
    for logical in text.split("\n"):
        first = True
        rest = logical
        while first or rest:
            room = width if first else width - text_width(indent)
            row, rest = _split_row(rest, room)
            rows.append(row if first else indent + row)
            first = False
    return rows


# -- words --------------------------------------------------------------------------


def _nick(nick: str) -> str:
    """A nickname as shown; the relay could send anything, so it is inert."""
    return render_inert(nick)


def _say(text: str) -> str:
    """A sentence that may quote network text (relay errors, reasons)."""
    return render_inert(text)


def _local_time(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


class Presenter:
    """Lines for each event. Stateless apart from our own nickname.

    ``format_time`` turns Unix seconds into the text shown for mail (local
    time by default; tests pass a fixed one).
    """

    def __init__(self, me: str = "", format_time: Callable[[int], str] = _local_time) -> None:
        self.me = me
        self._format_time = format_time

    # -- helpers

    @staticmethod
    def status(text: str, kind: Kind = Kind.STATUS) -> Line:
        return Line(kind, STATUS_PREFIX + text)

    def _status(self, *texts: str, kind: Kind = Kind.STATUS) -> list[Line]:
        return [self.status(t, kind) for t in texts]

    def _warning(self, *texts: str) -> list[Line]:
        return [Line(Kind.WARNING, WARNING_PREFIX + t) for t in texts]

    def prompt(self, active: str | None, verified: bool = False) -> str:
        """The text before the input: who plain lines go to."""
        if active is None:
            return "> "
        mark = ", verified" if verified else ""
        return f"[{_nick(active)}{mark}] > "

    # -- the relay connection

    def welcome(self) -> list[Line]:
        return self._status("relaychat -- type /help for commands, /quit to leave.")

    def connecting(self, server: str) -> list[Line]:
        return self._status(f"Connecting to {_say(server)} ...")

    def connected(self, nick: str, server: str, fingerprint: str) -> list[Line]:
        return self._status(
            f"Connected to {_say(server)} as {_nick(nick)}.",
            f"Your fingerprint: {fingerprint}",
            "Type /connect <nick> to talk to someone, /who to see who is online.",
        )

    def connect_failed(self, sentence: str) -> list[Line]:
        return self._status(_say(sentence), kind=Kind.ERROR)

    def disconnected(self, reason: str) -> list[Line]:
        """``reason`` is the library's sentence ("Disconnected from the relay: ...")."""
        return self._status(
            _say(reason),
            "Your conversations have ended. Type /quit to leave.",
            kind=Kind.ERROR,
        )

    def notice(self, text: str) -> list[Line]:
        return self._status(f"Notice from the relay: {_say(text)}")

    # -- starting conversations

    def calling(self, nick: str) -> list[Line]:
        return self._status(f"Calling {_nick(nick)} ... waiting for them to /accept.")

    def offer(self, nick: str, fingerprint: str, changed: bool) -> list[Line]:
        n = _nick(nick)
        lines = self._status(
            f"{n} wants to talk (key {fingerprint}). Type /accept {n} or /decline {n}."
        )
        if changed:
            lines += self._warning(
                f"This is NOT the key you pinned for {n}: someone may be impersonating them.",
                "If you accept, the conversation will stop at the key check.",
            )
        return lines

    def lookalike(self, nick: str, pinned: str) -> list[Line]:
        """A first contact whose name imitates a pinned contact's (section 13)."""
        n, p = _nick(nick), _nick(pinned)
        return self._warning(
            f"{n} is NOT your contact {p}: a new name that looks like theirs, and no pinned key guards it.",
            "An honest relay refuses such names. Do not trust it as them.",
        )

    def offer_withdrawn(self, nick: str, reason: str) -> list[Line]:
        return self._status(f"{_nick(nick)}'s offer is gone: {_say(reason)}")

    def accepting(self, nick: str) -> list[Line]:
        return self._status(f"Accepted. Handshake with {_nick(nick)} ... checking keys.")

    def declined(self, nick: str) -> list[Line]:
        return self._status(f"Declined {_nick(nick)}'s offer.")

    def opened(self, nick: str, first_contact: bool, verified: Verification | None = None) -> list[Line]:
        """The handshake is done; say, from the record kept with the pin, whether
        the user ever verified this very key (protocol section 13)."""
        n = _nick(nick)
        done = self.status(f"Handshake done: end-to-end encrypted conversation with {n}.", Kind.GOOD)
        if first_contact:
            trust = self.status(
                f"NOT VERIFIED: first contact, {n}'s key is pinned now. "
                f"Compare the safety number (/safety, then /verified {n}) or check a shared secret (/verify <secret>)."
            )
        elif verified is not None:
            trust = self.status(
                f"VERIFIED: {n}'s key is the one you verified {self._how(verified)} on "
                f"{self._format_time(verified.time)}.", Kind.GOOD)
        else:
            trust = self.status(
                f"NOT VERIFIED: {n}'s key matches the one pinned earlier, but you never verified it. "
                f"/safety then /verified {n}, or /verify <secret>."
            )
        return [done, trust]

    @staticmethod
    def _how(verified: Verification) -> str:
        return "by a shared secret" if verified.how is How.SMP else "by comparing the safety number"

    def switched(self, nick: str) -> list[Line]:
        return self._status(f"Plain lines now go to {_nick(nick)}.")

    # -- messages

    def message(self, nick: str, text: str) -> list[Line]:
        return [Line(Kind.MESSAGE, f"<{_nick(nick)}> {render_inert(text, multiline=True, indent=CONTINUATION)}")]

    def delivered(self, nick: str, first_words: str) -> list[Line]:
        """The peer's client confirmed one of our messages (section 11 receipt)."""
        return self._status(f"delivered to {_nick(nick)}: \u201c{_say(first_words)}\u201d")

    def unconfirmed(self, nick: str, first_words: Sequence[str], count: int) -> list[Line]:
        """The conversation ended with messages the peer never confirmed: name them."""
        if not count:
            return []
        n = _nick(nick)
        lines = self._status(
            f"{n} never confirmed {count} of your messages; they may not have arrived:", kind=Kind.ERROR)
        lines += [self.status(f"    \u201c{_say(words)}\u201d", Kind.ERROR) for words in first_words]
        if count > len(first_words):
            lines += self._status(f"    and {count - len(first_words)} earlier ones", kind=Kind.ERROR)
        return lines

    def own_message(self, text: str, to: str | None = None) -> list[Line]:
        """Our line; ``to`` names the peer when several conversations are open."""
        who = _nick(self.me) if to is None else f"{_nick(self.me)}->{_nick(to)}"
        return [Line(Kind.OWN, f"<{who}> {render_inert(text, multiline=True, indent=CONTINUATION)}")]

    # -- ending

    def closed_by_me(self, nick: str) -> list[Line]:
        return self._status(f"Closed the conversation with {_nick(nick)}.")

    def ended(self, nick: str, clean: bool, by_peer: bool, reason: str) -> list[Line]:
        n = _nick(nick)
        if clean and by_peer:
            return self._status(f"{n} left the conversation.")
        if clean:
            return self._status(f"The conversation with {n} is closed.")
        # The library's reason is a whole sentence ("... ended without their
        # goodbye ...; the last messages may have been lost.").
        return self._status(_say(reason) or f"The conversation with {n} ended abnormally.", kind=Kind.ERROR)

    # -- trust

    def key_changed(self, nick: str, old_fingerprint: str | None, new_fingerprint: str,
                    new_safety_number: str | None) -> list[Line]:
        n = _nick(nick)
        lines = self._warning(
            f"WARNING: {n}'s identity key has CHANGED. The conversation was stopped.",
            f"  pinned key: {old_fingerprint or '(the pin is damaged)'}",
            f"  new key:    {new_fingerprint}",
            "Either they reinstalled, or someone (the relay?) is impersonating them.",
        )
        if new_safety_number is not None:
            lines += self._warning(f"  safety number with the new key: {new_safety_number}")
        lines += self._warning(
            f"Compare it with {n} over another channel (phone, in person).",
            f"Only if it matches, type /trust {n}. Until then nothing is sent to them.",
        )
        return lines

    def relay_changed(self, address: str, old_fingerprint: str | None, new_fingerprint: str) -> list[Line]:
        a = _say(address)
        return self._warning(
            f"WARNING: the relay at {a} has CHANGED its identity. Not registering.",
            f"  remembered: {old_fingerprint or '(the record is damaged)'}",
            f"  now:        {new_fingerprint}",
            "Either its operator rebuilt it, or something else answers there that could make",
            "every contact look like a first contact, so impersonating them would go unnoticed.",
            "Ask the operator over another channel. Only if they confirm, type /trust-relay; /quit leaves.",
        )

    def relay_trusted(self, address: str, fingerprint: str) -> list[Line]:
        return self._status(f"Accepting the new identity {fingerprint} of {_say(address)}; your pinned "
                            "contacts carry over. Connecting again ...")

    def relay_first_contact(self, address: str, fingerprint: str) -> list[Line]:
        return self._status(f"First connection to {_say(address)}: its identity {fingerprint} is "
                            "remembered, and a change will be refused.")

    def trusted(self, nick: str, fingerprint: str) -> list[Line]:
        n = _nick(nick)
        return self._status(f"Pinned {n}'s new key {fingerprint}. Type /connect {n} to talk.")

    def safety(self, nick: str, my_fingerprint: str, peer_fingerprint: str, number: str,
               source: str, verified: Verification | None) -> list[Line]:
        n = _nick(nick)
        state = f"VERIFIED {self._how(verified)}" if verified is not None else "not verified yet"
        mine, theirs = "Your fingerprint:", f"{n}'s fingerprint:"
        width = max(len(mine), len(theirs))
        lines = self._status(
            f"Safety number with {n} ({source}; {state}):",
            f"    {number}",
            f"{mine:<{width}} {my_fingerprint}",
            f"{theirs:<{width}} {peer_fingerprint}",
            f"Compare it with {n} over another channel; it must be the same on both screens.",
        )
        if verified is None:
            lines += self._status(f"If it is, type /verified {n}: it is remembered with this key.")
        return lines

    def smp_started(self, nick: str) -> list[Line]:
        return self._status(f"Asked {_nick(nick)} to check the secret; they must type /verify with the same secret.")

    def smp_answered(self, nick: str) -> list[Line]:
        return self._status(f"Checking the secret with {_nick(nick)} ...")

    def smp_requested(self, nick: str) -> list[Line]:
        n = _nick(nick)
        return self._status(f"{n} asks you to check a shared secret: type /verify <the secret you agreed with {n}>.")

    def smp_result(self, nick: str, equal: bool) -> list[Line]:
        n = _nick(nick)
        if equal:
            return self._status(
                f"VERIFIED: {n} knows the same secret; nobody is in the middle of this conversation.",
                f"Remembered with {n}'s key: later conversations start verified, until the key changes.",
                kind=Kind.GOOD,
            )
        return self._warning(
            f"The secret check with {n} FAILED: you typed different secrets, or someone is in the middle.",
            "Do not trust this conversation until you have compared the safety number (/safety).",
        )

    def smp_aborted(self, nick: str, reason: str) -> list[Line]:
        return self._status(f"The secret check with {_nick(nick)} stopped: {_say(reason)}", kind=Kind.ERROR)

    # -- directory and mail

    def marked_verified(self, nick: str, fingerprint: str) -> list[Line]:
        n = _nick(nick)
        return self._status(
            f"Recorded: you compared the safety number with {n} (key {fingerprint}).",
            f"Conversations with this key now start verified; a key change clears it.",
            kind=Kind.GOOD,
        )

    def contacts(self, contacts: Sequence[ContactInfo]) -> list[Line]:
        if not contacts:
            return self._status("You have no contacts on this relay yet.")
        lines = self._status(f"Contacts on this relay ({len(contacts)}):")
        for c in contacts:
            n = _nick(c.nick)
            if c.identity_pub is None:
                lines += self._warning(f"  {n}: the pin is damaged; check the key with them, then /trust {n}")
                continue
            state = (f"VERIFIED {self._how(c.verified)} ({self._format_time(c.verified.time)})"
                     if c.verified is not None else "not verified")
            seen = (f"first seen {self._format_time(c.first_seen)}, last seen {self._format_time(c.last_seen)}"
                    if c.first_seen is not None and c.last_seen is not None else "first and last seen not recorded")
            lines += self._status(f"  {n}: {state}", f"    key {c.identity_fingerprint}; {seen}")
        return lines

    def who(self, nicks: Sequence[str]) -> list[Line]:
        shown = sorted((_nick(n) for n in nicks), key=str.lower)
        if not shown:
            return self._status("Nobody is online.")
        return self._status(f"Online ({len(shown)}): " + ", ".join(shown))

    def whois(self, nick: str, online: bool, fingerprint: str, pin: str) -> list[Line]:
        n = _nick(nick)
        pinned = {
            "new": "not pinned yet (you have never talked)",
            "match": "the key you pinned",
            "changed": "NOT the key you pinned",
        }.get(pin, pin)
        return self._status(
            f"{n} is {'online' if online else 'offline'}; key {fingerprint} ({pinned}, as the relay claims)."
        )

    def mail_sent(self, nick: str) -> list[Line]:
        return self._status(f"Sealed mail for {_nick(nick)} is stored on the relay until they connect.")

    def mail(self, sender: str, sent: int, text: str) -> list[Line]:
        return self._status(f"Mail from {_nick(sender)}, sent {self._format_time(sent)}:") + self.message(sender, text)

    def mail_read(self, reader: str, first_words: str, sent: int, read: int) -> list[Line]:
        return self._status(f"{_nick(reader)} read your mail \u201c{_say(first_words)}\u201d "
                            f"(sent {self._format_time(sent)}) at {self._format_time(read)}.")

    def mail_problem(self, sender: str, sent: int, reason: str) -> list[Line]:
        return self._status(
            f"Mail from {_nick(sender)} (sent {self._format_time(sent)}) cannot be shown: {_say(reason)}",
            kind=Kind.ERROR,
        )

    # -- failures

    def failure(self, exc: BaseException, nick: str | None = None, server: str | None = None) -> list[Line]:
        """A failed request as a sentence, never a traceback."""
        return self.error(describe_failure(exc, nick, server))

    # -- everything else

    def error(self, sentence: str) -> list[Line]:
        return self._status(_say(sentence), kind=Kind.ERROR)

    def info(self, *sentences: str) -> list[Line]:
        return self._status(*(_say(s) for s in sentences))

    def help(self, topic: str | None = None) -> list[Line]:
        lines: Iterable[str] = help_lines() if topic is None else help_topic(topic)
        return self._status(*lines)


# -- failures as sentences --------------------------------------------------------

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
        return _disconnected(exc, server)
    if isinstance(exc, RelayError):
        template = _RELAY_CODES.get(exc.code)
        return template.format(n=n) if template else _say(str(exc))
    if isinstance(exc, defer.CancelledError):
        return f"Stopped calling {n}." if nick else "Cancelled."
    network = _connect_failure(exc, server or "the relay")
    return network if network is not None else _say(str(exc))
