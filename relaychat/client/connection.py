"""The client's end of the relay protocol, sans I/O (docs/protocol.rst sections 1-9).

Bytes in, events out, in the manner of h11's ``Connection``: a
:class:`RelayConnection` turns each command into the bytes to write
(:meth:`~RelayConnection.send`) and each chunk the relay sent into a list of
events (:meth:`~RelayConnection.receive_data`). It owns no socket, no
reactor and no Deferred, so every rule of section 2 is tested with plain
calls; :class:`relaychat.client.protocol.RelayClientProtocol` is the thin
Twisted adapter that writes the bytes and turns answers into Deferreds.

Replies are matched to commands with a first-in first-out queue, as section
2 prescribes: every command but ``FRAME`` and ``QUIT`` gets exactly one
``OK``/``ERR``, in order; ``ERR FRAME`` carries the session id and becomes a
:class:`FrameRefused` for the session, never popping the queue. ``USER``
data lines are collected for the ``WHO`` at the head of the queue. Every
line is read by its class in :mod:`relaychat.wire.messages`.

The relay is a remote party too: a line past the announced ``max_line``
(itself capped by :data:`MAX_LINE_CEILING`), more than
:data:`MAX_WHO_LINES` ``USER`` lines, or a reply nobody asked for ends the
connection (:class:`Broken`; the connection reads nothing after it).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

from relaychat.wire import messages as m
from relaychat.wire.errors import ProtocolError
from relaychat.wire.lines import LineSplitter, strip_cr
from relaychat.wire.tokens import is_sid

DEFAULT_MAX_LINE = 65536
# Our own ceilings on what a relay may announce or send: it must not make us buffer without bound.
MAX_LINE_CEILING = 1 << 20
MAX_WHO_LINES = 10000


class ConnectionState(enum.Enum):
    OPEN = "open"
    BROKEN = "broken"  # the relay broke the protocol: the adapter drops the connection


# -- events ---------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """The ``OK`` for ``command``; for ``WHO``, ``users`` holds its ``USER`` lines."""

    command: str
    reply: m.Reply
    users: tuple[m.User, ...] = ()


@dataclass(frozen=True)
class Refused:
    """The ``ERR`` for ``command`` (``error.text`` may be empty)."""

    command: str
    error: m.Err


@dataclass(frozen=True)
class Unreadable:
    """The reply to ``command`` came but could not be read; the queue moved on."""

    command: str
    problem: str


@dataclass(frozen=True)
class FrameRefused:
    """A ``FRAME`` of session ``sid`` failed: ``ERR FRAME`` from the relay, or a
    forwarded payload that does not decode (``bad-encoding``, ``too-big``:
    ``forwarded``, the peer's doing, since the relay passes payloads on unread)."""

    sid: str
    code: str
    text: str
    forwarded: bool = False


@dataclass(frozen=True)
class Broken:
    """The relay broke the protocol; ``text`` says how. Nothing is read after it."""

    text: str


Event = Union[Answered, Refused, Unreadable, FrameRefused, Broken, m.Frame, m.Event]
"""What :meth:`RelayConnection.receive_data` returns: answers to commands, the
relay's events (Offered, Accepted, SessionClosed, StoredMail, Notice, Goodbye)
and forwarded frames, each as its wire class."""


class RelayConnection:
    """One connection's protocol state: the queue of unanswered commands, the
    relay's announced limits, the ``WHO`` being collected."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.splitter = LineSplitter(max_line)
        self.state = ConnectionState.OPEN
        self.hello: Optional[m.HelloOk] = None  # once the relay answered HELLO
        self.goodbye: Optional[m.Goodbye] = None
        self.malformed = 0  # events from the relay we could not read (and ignored)
        self._waiting: deque[str] = deque()  # commands awaiting their reply, oldest first
        self._users: list[m.User] = []

    @property
    def max_line(self) -> int:
        return self.splitter.max_line

    @property
    def waiting(self) -> int:
        """How many commands await a reply."""
        return len(self._waiting)

    # -- out --------------------------------------------------------------------------

    def send(self, command: m.Command) -> bytes:
        """The bytes for ``command``; ValueError (and nothing queued) if it cannot be sent."""
        for token in command.tokens():
            if not token or " " in token or "\n" in token or "\r" in token:
                raise ValueError(f"{command.NAME}: arguments are single non-empty tokens")
        data = self._line(command.to_line())
        if not isinstance(command, (m.Frame, m.Quit)):
            self._waiting.append(command.NAME)
        return data

    def send_frame(self, sid: str, payload: bytes) -> bytes:
        """The bytes for ``FRAME`` (no reply on success); built by hand, this is the hot path."""
        if self.hello is not None and len(payload) > self.hello.max_frame:
            raise ValueError(f"a frame is at most {self.hello.max_frame} bytes")
        return self._line(m.frame_line(sid, payload))

    def _line(self, line: str) -> bytes:
        data = line.encode("utf-8")
        if len(data) > self.splitter.max_line:
            raise ValueError(f"a line is at most {self.splitter.max_line} bytes")
        return data + b"\n"

    # -- in ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for line in self.splitter.feed(data):
            if self.state is ConnectionState.BROKEN:
                break
            if line is None:
                self._broken(events, f"the relay sent a line longer than {self.splitter.max_line} bytes")
                break
            try:
                text = strip_cr(line).decode("utf-8")
            except UnicodeDecodeError:
                if line.startswith(m.FRAME_PREFIX):  # a peer's bytes: that session fails, not the connection
                    self._bad_frame(line[6:22].decode("latin-1"), events)
                    continue
                self._broken(events, "the relay sent a line that is not UTF-8")
                break
            self._receive_line(text, events)
        return events

    def _broken(self, events: list[Event], text: str) -> None:
        self.state = ConnectionState.BROKEN
        events.append(Broken(text))

    def _receive_line(self, text: str, events: list[Event]) -> None:
        parts = text.split(" ")
        kind = parts[0]
        if kind in ("OK", "ERR"):
            self._reply(kind, parts, events)
        elif kind == "USER":
            self._user(parts, events)
        elif kind == "FRAME":
            self._frame(parts, events)
        else:
            event = m.EVENTS.get(kind)
            if event is None:
                return  # an event of a newer relay: ignore it (section 2 lets relays add)
            try:
                message = event.from_tokens(parts[1:])
            except ProtocolError:
                self.malformed += 1
                return
            if isinstance(message, m.Goodbye):
                self.goodbye = message
            events.append(message)

    def _reply(self, kind: str, parts: list[str], events: list[Event]) -> None:
        if len(parts) < 2 or (kind == "ERR" and len(parts) < 3):
            self._broken(events, f"the relay sent a malformed {'reply' if kind == 'OK' else 'error'}")
            return
        command = parts[1]
        if command == "FRAME":  # never queued: route to the session (section 2)
            if kind == "ERR":  # ERR FRAME <code> <sid> <text>
                sid = parts[3] if len(parts) > 3 else "-"
                events.append(FrameRefused(sid, parts[2], " ".join(parts[4:])))
            return
        if not self._waiting:
            self._broken(events, f"the relay sent a reply to {command} that nobody asked for")
            return
        head = self._waiting[0]
        if command != head and command != "-":
            self._broken(events, f"the relay answered {command} when {head} was expected")
            return
        self._waiting.popleft()
        users, self._users = tuple(self._users), []
        if kind == "ERR":
            events.append(Refused(head, m.Err.from_tokens(parts[1:])))
            return
        try:
            reply = m.REPLIES[head].from_tokens(parts[2:])
        except ProtocolError as e:
            events.append(Unreadable(head, e.text))
            return
        if isinstance(reply, m.HelloOk):
            self.hello = reply
            self.splitter.max_line = min(reply.max_line, MAX_LINE_CEILING)
        events.append(Answered(head, reply, users))

    def _user(self, parts: list[str], events: list[Event]) -> None:
        if not self._waiting or self._waiting[0] != "WHO":
            self.malformed += 1  # USER outside WHO
            return
        if len(self._users) >= MAX_WHO_LINES:
            self._broken(events, f"the relay sent more than {MAX_WHO_LINES} USER lines for one WHO")
            return
        try:
            self._users.append(m.User.from_tokens(parts[1:]))
        except ProtocolError:
            self.malformed += 1

    def _frame(self, parts: list[str], events: list[Event]) -> None:
        try:
            frame = m.Frame.from_tokens(parts[1:])
        except ProtocolError:
            self._bad_frame(parts[1] if len(parts) > 1 else "", events)
            return
        if self.hello is not None and len(frame.payload) > self.hello.max_frame:
            events.append(FrameRefused(frame.sid, "too-big", "the relay forwarded a frame larger than it allows", True))
            return
        events.append(frame)

    def _bad_frame(self, sid: str, events: list[Event]) -> None:
        """A FRAME that is not what a peer can send (not UTF-8, not one strict
        base64 payload): only that session can have been harmed, so only that
        session fails. A line without a session id is counted, and ignored."""
        if not is_sid(sid):
            self.malformed += 1
            return
        events.append(FrameRefused(sid, "bad-encoding", "the relay forwarded a frame that is not valid base64", True))
