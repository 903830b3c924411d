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

from relaychat.client import ContactInfo, Disconnected, How, Verification
from relaychat.chat.commands import help_lines, help_topic
from relaychat.chat.failures import (
    EXPECTED_FAILURES,
    ban_words,
    count,
    describe_failure,
    duration,
    goodbye,
    is_expected,
)
from relaychat.chat.inert import render_inert

__all__ = [
    "CONTINUATION",
    "EXPECTED_FAILURES",
    "STATUS_PREFIX",
    "WARNING_PREFIX",
    "Kind",
    "Line",
    "Presenter",
    "ban_words",
    "cell_width",
    "describe_failure",
    "duration",
    "goodbye",
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
    if " " <= ch <= "~":  # printable ASCII, by far the most common: skip the Unicode tables
        return 1
    if ch in "\u200c\u200d" or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def text_width(text: str) -> int:
    return sum(cell_width(ch) for ch in text)


def _split_row(text: str, start: int, width: int) -> tuple[int, int]:
    """Where the row of ``text`` beginning at ``start`` ends (at most ``width``
    cells), and where the next begins: (end, next start).

    Breaks after the last space in the row when there is one in its second
    half, otherwise mid-word; combining marks stay with their base. Looks
    only at the row itself, so wrapping costs time in proportion to the text.
    """
    used = 0
    cut = len(text)
    for index in range(start, len(text)):
        w = cell_width(text[index])
        if w and used + w > width:
            cut = max(index, start + 1)  # always progress, even past a character wider than the row
            break
        used += w
    if cut == len(text):
        return cut, cut
    space = text.rfind(" ", start, cut + 1)
    if space > start and space - start >= (cut - start) // 2:
        return space, space + 1
    return cut, cut


def wrap(text: str, width: int, indent: str = CONTINUATION) -> list[str]:
    """Break an inert line (it may contain ``\\n``) into screen rows.

    Rows after the first are indented, so nothing but the start of a line
    the program wrote ever reaches column 0.
    """
    width = max(width, text_width(indent) + 10)
    rows: list[str] = []
    for logical in text.split("\n"):
        first = True
        position = 0
        while first or position < len(logical):
            room = width if first else width - text_width(indent)
            end, following = _split_row(logical, position, room)
            row = logical[position:end]
            rows.append(row if first else indent + row)
            position = following
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


def _preview(text: str, most: int = 80) -> str:
    """A line that was not sent, short enough to recognise: inert, on one row."""
    flat = " ".join(text.split("\n"))
    shown = flat if len(flat) <= most else flat[:most] + f"… ({len(text)} characters)"
    return render_inert(shown)


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

    def prompt(self, active: str | None, verified: bool = False, waiting: bool = False) -> str:
        """The text before the input: who plain lines go to; ``waiting``: the
        connection or that conversation is being made again."""
        if active is None:
            return "(reconnecting) > " if waiting else "> "
        mark = ", waiting" if waiting else ", verified" if verified else ""
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

    def lost(self) -> list[Line]:
        """The connection broke and the program is reconnecting (one line)."""
        return self._status("Lost the connection to the relay (it may be restarting); reconnecting…", kind=Kind.ERROR)

    def reconnected(self, nick: str, server: str) -> list[Line]:
        return self._status(f"Reconnected to {_say(server)} as {_nick(nick)}.", kind=Kind.GOOD)

    def disconnected(self, error: Disconnected) -> list[Line]:
        """The relay ended the connection for good (kicked, banned, ...): why, in words."""
        return self._status(_say(goodbye(error)), "Type /quit to leave.", kind=Kind.ERROR)

    def gave_up(self, sentence: str) -> list[Line]:
        """Reconnecting failed in a way no retry changes."""
        return self._status(_say(sentence), "Not reconnecting; type /quit to leave.", kind=Kind.ERROR)

    # -- conversations broken by a connection

    def resuming(self, nick: str, cause: str | None) -> list[Line]:
        n = _nick(nick)
        why = {
            "lost": "the connection to the relay was lost",
            "gone": f"{n} lost the connection to the relay",
            "draining": "the relay is restarting",
        }.get(cause or "", "a connection was lost")
        return self._status(
            f"The conversation with {n} was cut off ({why}); it resumes with a new handshake when you are "
            f"both back. Lines you type for {n} wait until then.", kind=Kind.ERROR)

    def waiting(self, nick: str) -> list[Line]:
        return self._status(f"Not sent yet: it goes to {_nick(nick)} when the conversation is back.")

    def resumed(self, nick: str, sent: int, verified: Verification | None = None) -> list[Line]:
        """``verified``: the record for this very key (verification lasts, section 13)."""
        n = _nick(nick)
        lines = [self.status(
            f"Re-established the conversation with {n}: a new handshake, and {n}'s key is the one "
            "pinned before.", Kind.GOOD)]
        if sent:
            lines.append(self.status(f"Sent the {count(sent, 'line')} that waited for {n}."))
        if verified is not None:
            lines.append(self.status(f"VERIFIED: you verified this key {self._how(verified)}.", Kind.GOOD))
        else:
            lines.append(self.status(f"NOT VERIFIED: /verify <secret> or /verified checks {n}."))
        return lines

    def resume_failed(self, nick: str, reason: str, unsent: Sequence[str]) -> list[Line]:
        """``reason``: a whole sentence (why); then each line that waited, by name."""
        n = _nick(nick)
        why = f"{_say(reason)} " if reason else ""
        lines = self._status(f"{why}The conversation with {n} was not taken up again.", kind=Kind.ERROR)
        lines += self._status(*(f"Not sent to {n}: {_preview(text)}" for text in unsent), kind=Kind.ERROR)
        return lines

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
        """``reason`` is the library's whole sentence ("The offer from bob timed out.")."""
        return self._status(_say(reason))

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

    def unconfirmed(self, nick: str, first_words: Sequence[str], count: int, resuming: bool = False) -> list[Line]:
        """The conversation ended with messages the peer never confirmed: name them.
        ``resuming``: it is being taken up again, which does not send them again."""
        if not count:
            return []
        n = _nick(nick)
        lines = self._status(
            f"{n} never confirmed {count} of your messages; they may not have arrived:", kind=Kind.ERROR)
        lines += [self.status(f"    \u201c{_say(words)}\u201d", Kind.ERROR) for words in first_words]
        if count > len(first_words):
            lines += self._status(f"    and {count - len(first_words)} earlier ones", kind=Kind.ERROR)
        if resuming:
            lines += self._status(f"Taking the conversation up again does not send them again; repeat what {n} lacks.",
                                  kind=Kind.ERROR)
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
        """``reason`` is the library's whole sentence, naming the peer."""
        return self._status(_say(reason), kind=Kind.ERROR)

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
        """``reason`` is the library's whole sentence, naming the sender; ``sent`` the relay's time."""
        return self._status(f"{_say(reason)} (It reached the relay at {self._format_time(sent)}.)", kind=Kind.ERROR)

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
