"""A command line to its handler: decode, check the connection's state allows it, parse, call, answer.

The table says which component handles each command and in which
:class:`~relaychat.server.connection.State` a connection may send it. Each
handler gets the parsed message (a class of
:mod:`relaychat.wire.messages`) and answers by raising: a
:class:`~relaychat.wire.errors.ProtocolError` is ``ERR <CMD> <code>``, a
:class:`~relaychat.server.store.StorageError` is ``ERR <CMD> unavailable``
and the connection carries on, and anything else is a bug, answered
``ERR <CMD> internal`` and logged once. So no input raises out of the
hub, and a reply always names the command it answers.

``FRAME`` is in the table only so that the state check and the error
replies are the same as for every other command: the hub's hot path
forwards good frames before they come here.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.server.connection import Connection, Life, State
from relaychat.server.store import StorageError
from relaychat.wire import messages as m
from relaychat.wire.errors import Bye, Code, ProtocolError
from relaychat.wire.lines import strip_cr

if TYPE_CHECKING:
    from relaychat.server.hub import Hub

log = Logger(namespace="relaychat")

Handler = Callable[[Connection, Any, float], None]  # the message is of the command's class

_ORDER_HINTS = {
    State.CONNECTED: "say HELLO first",
    State.GREETED: "REGISTER first",
    State.CHALLENGED: "PROVE, or REGISTER again",
    State.REGISTERED: "already registered; reconnect to change nickname",
}


class Commands:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        names, sessions, mailbox = hub.registration, hub.sessions, hub.mailbox
        anyone = frozenset(State)
        registered = frozenset({State.REGISTERED})
        self.handlers: dict[str, tuple[Optional[Handler], frozenset[State]]] = {
            "HELLO": (names.hello, frozenset({State.CONNECTED})),
            "PING": (self._ping, anyone),
            "QUIT": (self._quit, anyone),
            "REGISTER": (names.register, frozenset({State.GREETED, State.CHALLENGED})),
            "PROVE": (names.prove, frozenset({State.CHALLENGED})),
            # The directory is for registered users: WHO and LOOKUP answer far
            # more than they cost to ask, and need not serve anonymous scrapers.
            "LOOKUP": (names.lookup, registered),
            "WHO": (names.who, registered),
            "OFFER": (sessions.offer, registered),
            "ACCEPT": (sessions.accept, registered),
            "DECLINE": (sessions.decline, registered),
            "CLOSE": (sessions.close, registered),
            "FRAME": (None, registered),  # the hub's hot path forwards it; handle() refuses a bare one
            "MAIL": (mailbox.mail, registered),
            "ACK": (mailbox.ack, registered),
        }

    def handle(self, client: Connection, line: bytes, now: float) -> None:
        """Handle one line (its LF removed) that is not a frame the hot path took."""
        hub = self.hub
        try:
            text = strip_cr(line).decode("utf-8")
        except UnicodeDecodeError:
            hub.error(client, "-", Code.BAD_ENCODING, "a line must be UTF-8")
            return
        if "\x00" in text:
            hub.error(client, "-", Code.BAD_ENCODING, "a line must not contain NUL")
            return
        parts = text.split(" ")
        name = parts[0]
        if not name:  # an empty line, or one starting with a space
            hub.error(client, "-", Code.SYNTAX, "a line starts with a command")
            return
        entry = self.handlers.get(name)
        if entry is None:
            shown = name if name.isascii() and name.isalpha() and name.isupper() and len(name) <= 16 else "-"
            hub.error(client, shown, Code.UNKNOWN, "no such command")
            return
        handler, allowed = entry
        if client.state not in allowed:
            hub.error(client, name, Code.ORDER, _ORDER_HINTS[client.state])
            return
        if "" in parts:
            hub.error(client, name, Code.SYNTAX, "tokens are separated by exactly one space")
            return
        if handler is None:
            hub.forward_frame(client, line)
            return
        try:
            message = m.COMMANDS[name].from_tokens(parts[1:])
        except ProtocolError as e:
            if name == "PROVE":  # the challenge is spent by a malformed PROVE too
                hub.registration.abandon(client)
            hub.error(client, name, e.code, e.text)
            return
        try:
            handler(client, message, now)
        except ProtocolError as e:
            hub.error(client, name, e.code, e.text)
        except StorageError as e:  # the store has logged it; the connection carries on
            hub.stats.storage_errors += 1
            hub.error(client, name, Code.UNAVAILABLE, str(e))
        except Exception as e:  # a bug: answer it, keep the connection, log it once
            self._internal(client, name, e)

    def go_on(self, client: Connection, command: str, result: Any, then: Callable[[Any], None]) -> None:
        """Go on with ``then(result)``, the directory's answer to ``command``
        (:meth:`Hub.await_answer <relaychat.server.hub.Hub.await_answer>`), answering what it raises."""
        hub = self.hub
        if client.life is not Life.OPEN:
            return
        try:
            if isinstance(result, Failure):
                result.raiseException()
            then(result)
        except ProtocolError as e:
            hub.error(client, command, e.code, e.text)
        except StorageError as e:  # the local store failed (it has logged it); the connection carries on
            hub.stats.storage_errors += 1
            hub.error(client, command, Code.UNAVAILABLE, str(e))
        except Exception:
            hub.error(client, command, Code.UNAVAILABLE, "the relay cannot reach its shared state; try again")

    def _internal(self, client: Connection, name: str, error: Exception) -> None:
        """An unexpected exception in a handler: ``ERR <CMD> internal``.

        The log names the exception's type and where it was raised, never its
        message or any value: those may hold a key or a payload. A half-done
        registration is abandoned, so the connection is in a state it could
        reach by itself.
        """
        hub = self.hub
        where = "".join(traceback.format_tb(error.__traceback__))
        log.error("relaychat: internal error in {command}: {kind}\n{where}", command=name,
                  kind=type(error).__qualname__, where=where)
        if client.state is State.CHALLENGED:
            hub.registration.abandon(client)
        extra = hub.stats.extra
        extra["internal_errors"] = extra.get("internal_errors", 0) + 1
        hub.error(client, name, Code.INTERNAL, "the relay failed to handle this; it had no effect")

    def _ping(self, client: Connection, ping: m.Ping, now: float) -> None:
        self.hub.send(client, m.PingOk(ping.token))

    def _quit(self, client: Connection, quit: m.Quit, now: float) -> None:
        self.hub.bye(client, Bye.QUIT, "goodbye")
