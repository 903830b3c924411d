"""The chat program's behaviour: typed commands in, library calls out, lines shown.

:class:`ChatController` sits between the terminal (a :class:`View`: it shows
lines and a prompt) and the client library (``relaychat.client``). It
keeps the little state a chat program needs -- open conversations, waiting
offers, the conversation plain lines go to, keys that changed -- and asks
the :class:`~relaychat.chat.presenter.Presenter` for the words. It never
touches the terminal itself, so tests drive it with a fake view and a fake
client, and the pseudo-terminal test only has to prove the wiring.

Trust decisions stay with the user: a :class:`~relaychat.client.KeyChanged`
from any path (calling, accepting, a conversation, mail) is recorded and
shown as a loud warning with the safety number of the *new* key, and only
``/trust <nick>`` replaces the pin. A relay whose identity changed
(:class:`~relaychat.client.RelayChanged`) is as loud, and only
``/trust-relay`` connects to it. Verification is the library's record, kept
with the pin: ``/verified`` and a successful ``/verify`` write it, every
conversation start and ``/contacts`` read it. Those commands live in
:mod:`relaychat.chat.trust_commands`; connection and conversation life,
including the Reconnector's taking conversations up again, live here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from relaychat.chat import commands as cmd
from relaychat.client import (
    ChatClient,
    Connected,
    Conversation,
    Delivery,
    Ended,
    GaveUp,
    IncomingOffer,
    KeyChanged,
    LinkEvent,
    LinkState,
    Lost,
    MailEvent,
    MailProblem,
    MailRead,
    PeerInfo,
    Reconnector,
    RelayChanged,
    ResumeFailed,
    Resumed,
    Resuming,
    relay_fingerprint,
)
from relaychat.chat.presenter import Line, Presenter, describe_failure, is_expected
from relaychat.chat.trust_commands import TrustCommands
from relaychat.crypto.pins import PinStatus
from relaychat.crypto.safety import identity_fingerprint

__all__ = ["ChatController", "View"]

_log = Logger()

#: Seconds ``/quit`` waits for conversations to close cleanly before leaving.
QUIT_GRACE = 3.0


class View(Protocol):
    """What the controller needs from a screen."""

    def show(self, lines: Sequence[Line]) -> None: ...

    def set_prompt(self, prompt: str) -> None: ...

    def alert(self, title: str | None = None) -> None: ...

    def set_title(self, title: str) -> None: ...


class ChatController(TrustCommands):
    """One user's chat session: commands, events and what to show for them.

    ``exit(status)`` is called once, when the program should end (after
    ``/quit``, or when connecting failed).
    """

    def __init__(self, view: View, presenter: Presenter, clock: IReactorTime, server: str,
                 exit: Callable[[int], None]) -> None:
        self._view = view
        self._presenter = presenter
        self._clock = clock
        self._server = server
        self._exit = exit
        # Keyed by canonical nickname.
        self._client: ChatClient | None = None
        self._link: Reconnector | None = None
        self._conversations: dict[str, Conversation] = {}
        self._offers: dict[str, IncomingOffer] = {}
        self._calls: dict[str, Deferred[Any]] = {}
        self._key_changes: dict[str, KeyChanged] = {}
        self._relay_change: RelayChanged | None = None
        self._connect: Callable[..., Deferred[Any]] | None = None
        self._smp_asked: set[str] = set()
        self._alerted: set[str] = set()  # conversations with news not seen in front
        self._active: str | None = None
        self._leaving = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            cmd.Say: self._do_say,
            cmd.Connect: self._do_connect,
            cmd.Accept: self._do_accept,
            cmd.Decline: self._do_decline,
            cmd.Who: self._do_who,
            cmd.Whois: self._do_whois,
            cmd.Safety: self._do_safety,
            cmd.Verify: self._do_verify,
            cmd.Verified: self._do_verified,
            cmd.Contacts: self._do_contacts,
            cmd.Trust: self._do_trust,
            cmd.TrustRelay: self._do_trust_relay,
            cmd.Msg: self._do_msg,
            cmd.Mail: self._do_mail,
            cmd.Switch: self._do_switch,
            cmd.Close: self._do_close,
            cmd.Quit: lambda _: self.quit(),
            cmd.Help: self._do_help,
        }

    # -- output

    def _show(self, lines: Sequence[Line]) -> None:
        self._view.show(lines)

    def _update_prompt(self) -> None:
        conversation = self._conversations.get(self._active) if self._active else None
        nick = conversation.nick if conversation is not None else None
        resumption = self._resumption(self._active)
        if nick is None and resumption is not None:
            nick = resumption.nick
        verified = conversation is not None and conversation.verified is not None
        self._view.set_prompt(self._presenter.prompt(
            nick, verified, waiting=resumption is not None or self._offline))

    @property
    def _offline(self) -> bool:
        return (self._client is None and self._link is not None and not self._leaving
                and self._link.state is not LinkState.STOPPED)

    def _resumption(self, key: str | None) -> Any:
        return self._link.resumption(key) if key and self._link is not None else None

    def _alert(self, nick: str, what: str = "new message from") -> None:
        """Something for a conversation that is not in front: bell and title,
        until that conversation is brought to the front."""
        alert = getattr(self._view, "alert", None)
        if alert is not None and self._active != nick.lower():
            self._alerted.add(nick.lower())
            alert(f"relaychat: {what} {nick}")

    def _seen(self, key: str) -> None:
        """``key`` is in front now: the title stops calling for it."""
        if key in self._alerted:
            self._alerted.discard(key)
            set_title = getattr(self._view, "set_title", None)
            if set_title is not None:
                set_title("relaychat" if not self._alerted else
                          f"relaychat: new messages from {', '.join(sorted(self._alerted))}")

    def _failed(self, failure: Failure, nick: str | None = None) -> None:
        """Errback for every request: a KeyChanged warning, or a sentence."""
        exc = failure.value
        assert exc is not None  # a Failure always holds its exception
        if isinstance(exc, KeyChanged):
            self._key_changed(exc)
            return
        if not is_expected(exc):
            _log.failure("Unexpected failure", failure)
        self._show(self._presenter.failure(exc, nick))

    @property
    def _library(self) -> ChatClient:
        """The connected client; commands that need one run only once attached."""
        if self._client is None:
            raise RuntimeError("not connected to a relay yet")
        return self._client

    def _guard(self, action: Callable[[], Any], nick: str | None = None) -> Any:
        """Run a synchronous library call, turning its exceptions into sentences."""
        try:
            return action()
        except Exception:
            self._failed(Failure(), nick)
            return None

    # -- start and stop

    def start(self, connect: Callable[..., Deferred[Any]], nick: str | None = None) -> Deferred[Any]:
        """Connect (``connect()`` fires with a ChatClient registered as ``nick``;
        ``connect(accept_relay_id=...)`` after the user accepted a changed relay),
        then stay connected: a lost connection is made again, with backoff.
        If the first connection fails, say why and exit(1), except for a
        changed relay, which waits for /trust-relay or /quit."""
        self._show(self._presenter.welcome() + self._presenter.connecting(self._server))
        self._update_prompt()
        self._connect = connect
        d = self._start_link(connect)
        d.addErrback(self._connect_failed, nick)
        return d

    def _start_link(self, connect: Callable[[], Deferred[ChatClient]]) -> Deferred[ChatClient]:
        """A new Reconnector over ``connect``; fires with the first client."""
        self._link = Reconnector(self._clock, connect)
        self._link.observe(self._link_event)
        self._link.observe_offers(self._offered)
        return self._link.start()

    def _connect_failed(self, failure: Failure, nick: str | None) -> None:
        exc = failure.value
        assert exc is not None  # a Failure always holds its exception
        if isinstance(exc, RelayChanged):
            self._relay_changed(exc)
            return
        if not is_expected(exc):
            _log.failure("Unexpected failure while connecting", failure)
        self._show(self._presenter.connect_failed(describe_failure(exc, nick, self._server)))
        self._exit(1)

    def _link_event(self, event: LinkEvent) -> None:
        if self._leaving:
            return
        if isinstance(event, Connected):
            self.attach(event.client, again=event.again)
        elif isinstance(event, Lost):
            self._disconnected(event)
        elif isinstance(event, GaveUp) and isinstance(event.error, RelayChanged):
            self._relay_changed(event.error)  # it came back as someone else: only /trust-relay goes on
        elif isinstance(event, GaveUp):
            self._show(self._presenter.gave_up(describe_failure(event.error, self._presenter.me, self._server)))
        elif isinstance(event, Resuming):
            self._show(self._presenter.resuming(event.resumption.nick, event.resumption.cause))
        elif isinstance(event, Resumed):
            self._resumed(event)
        elif isinstance(event, ResumeFailed):
            nick = event.resumption.nick
            if isinstance(event.error, KeyChanged):  # loud, with the new safety number, as anywhere
                self._key_changed(event.error)
            reason = "" if isinstance(event.error, KeyChanged) else describe_failure(event.error, nick)
            self._show(self._presenter.resume_failed(nick, reason, event.unsent))
        self._update_prompt()

    def attach(self, client: ChatClient, again: bool = False) -> None:
        """Use a connected, registered ChatClient and subscribe to its events."""
        self._client = client
        self._presenter.me = client.nick
        if again:
            self._show(self._presenter.reconnected(client.nick, self._server))
        else:
            self._show(self._presenter.connected(
                client.nick, self._server, identity_fingerprint(client.identity.identity_public)))
        if client.relay_first_contact:
            self._show(self._presenter.relay_first_contact(client.relay_address, relay_fingerprint(client.server_id)))
        if self._link is None:  # used without start(): offers come from the client itself
            client.observe_offers(self._offered)
        client.observe_mail(self._mail_arrived)
        client.observe_notices(lambda text: self._show(self._presenter.notice(text)))
        self._update_prompt()

    def quit(self) -> None:
        """Close conversations cleanly (bounded wait), then exit(0)."""
        if self._leaving:
            return
        self._leaving = True
        self._show(self._presenter.info("Leaving ..."))
        client, self._client = self._client, None
        link, self._link = self._link, None
        if link is not None:
            for resumption in link.resumptions():
                if resumption.queued:
                    self._show(self._presenter.resume_failed(
                        resumption.nick, "You are leaving.", tuple(resumption.queued)))
            stop = link.stop
        elif client is not None:
            stop = client.quit
        else:
            self._exit(0)
            return
        d = self._guard(stop)
        if not isinstance(d, Deferred):
            self._exit(0)
            return
        d.addTimeout(QUIT_GRACE, self._clock)
        d.addErrback(lambda f: None)  # leaving anyway; the relay notices the close
        d.addBoth(lambda _: self._exit(0))

    def _disconnected(self, event: Lost) -> None:
        self._client = None
        self._conversations.clear()
        self._offers.clear()
        self._calls.clear()
        if event.retry_in is not None:
            self._show(self._presenter.lost())
        else:
            self._active = None
            self._show(self._presenter.disconnected(event.error))

    def _resumed(self, event: Resumed) -> None:
        self._show(self._presenter.resumed(event.resumption.nick, event.sent, event.conversation.verified))
        self._opened(event.conversation, resumed=True)

    # -- typed lines

    def handle_line(self, line: str) -> None:
        """Run one line the user typed."""
        try:
            command = cmd.parse(line)
        except cmd.CommandError as e:
            self._show(self._presenter.error(str(e)))
            return
        if command is None:
            return
        # Offline but reconnecting: lines still go to conversations being taken up again.
        still = (cmd.Say, cmd.Msg, cmd.Close) if self._offline else ()
        if self._client is None and not isinstance(command, (cmd.Help, cmd.Quit, cmd.TrustRelay) + still):
            self._show(self._presenter.error(
                "Not connected to the relay right now; reconnecting…" if self._offline
                else "Not connected to the relay. /quit leaves."))
            return
        try:
            self._handlers[type(command)](command)
        except Exception:  # a bug must not take the screen down with it
            self._failed(Failure())

    # -- conversations

    def _conversation_for(self, nick: str | None) -> Any:
        """The conversation with ``nick``, or the active one, or the Resumption
        that stands for it while it is being taken up again; shows why if none."""
        key = nick.lower() if nick else self._active
        conversation = self._conversations.get(key) if key else None
        if conversation is None:
            conversation = self._resumption(key)
        if conversation is None:
            if nick:
                self._show(self._presenter.error(f"You have no conversation with {nick}; /connect {nick} first."))
            else:
                self._show(self._presenter.error(
                    "You are not in a conversation. /connect <nick> starts one; "
                    "/mail <nick> <text> reaches someone offline."))
        return conversation

    def _send(self, conversation: Any, text: str) -> None:
        """Send to a Conversation, or keep for a Resumption (shown as waiting)."""
        if self._succeeds(lambda: conversation.send(text), conversation.nick):
            to = conversation.nick if len(self._conversations) > 1 else None
            self._show(self._presenter.own_message(text, to))
            if not isinstance(conversation, Conversation) and self._resumption(conversation.nick) is conversation:
                self._show(self._presenter.waiting(conversation.nick))

    def _do_say(self, command: cmd.Say) -> None:
        conversation = self._conversation_for(None)
        if conversation is not None:
            self._send(conversation, command.text)

    def _do_msg(self, command: cmd.Msg) -> None:
        conversation = self._conversation_for(command.nick)
        if conversation is not None:
            self._send(conversation, command.text)

    def _do_connect(self, command: cmd.Connect) -> None:
        nick, key = command.nick, command.nick.lower()
        if key == self._library.canonical_nick:
            self._show(self._presenter.error("That is your own nickname."))
        elif key in self._conversations:
            self._activate(key)
        elif key in self._offers:
            self._accept(self._offers.pop(key))
        elif key in self._calls:
            self._show(self._presenter.error(f"Already calling {nick}; /close {nick} stops calling."))
        elif self._resumption(key) is not None:
            self._show(self._presenter.error(
                f"The conversation with {nick} is being taken up again; /close {nick} stops that."))
        else:
            ringing = lambda: self._show(self._presenter.calling(nick))  # noqa: E731 -- once the relay took it
            d = self._guard(lambda: self._library.call(nick, ringing=ringing), nick)
            if d is None:
                return
            self._calls[key] = d
            d.addBoth(self._call_over, key)
            d.addCallbacks(self._opened, self._failed, errbackArgs=(nick,))

    def _call_over(self, result: Any, key: str) -> Any:
        self._calls.pop(key, None)
        return result

    def _opened(self, conversation: Conversation, resumed: bool = False) -> None:
        key = conversation.nick.lower()
        self._conversations[key] = conversation
        self._key_changes.pop(key, None)
        self._smp_asked.discard(key)
        if not resumed:
            self._show(self._presenter.opened(conversation.nick, conversation.first_contact, conversation.verified))
        if conversation.lookalike_of is not None:
            self._show(self._presenter.lookalike(conversation.nick, conversation.lookalike_of))
        conversation.observe_messages(lambda text: self._message(conversation, text))
        conversation.observe_delivered(lambda d: self._delivered(conversation, d))
        conversation.observe_smp(lambda event: self._smp_event(conversation, event))
        conversation.observe_warnings(lambda sentence: self._show(self._presenter.error(sentence)))
        conversation.observe_end(lambda ended: self._ended(conversation, ended))
        if key in self._conversations:
            self._activate(key)

    def _message(self, conversation: Conversation, text: str) -> None:
        self._show(self._presenter.message(conversation.nick, text))
        self._alert(conversation.nick)

    def _activate(self, key: str) -> None:
        self._seen(key)
        if self._active != key:
            previous = self._active
            self._active = key
            if previous is not None:
                self._show(self._presenter.switched(self._conversations[key].nick))
        self._update_prompt()

    def _ended(self, conversation: Conversation, ended: Ended) -> None:
        key = conversation.nick.lower()
        if self._conversations.get(key) is conversation:
            del self._conversations[key]
        self._smp_asked.discard(key)
        # Cut off by a connection: the Reconnector's lines say it (Lost, Resuming), and
        # the conversation stays in front while it is taken up again.
        broke = ended.connection_broke and self._link is not None and self._link.state is not LinkState.STOPPED
        if isinstance(ended.error, KeyChanged):
            self._key_changed(ended.error)
        elif broke:
            pass
        elif not self._leaving:
            self._show(self._presenter.ended(conversation.nick, ended.clean, ended.by_peer, ended.reason))
        # Unconfirmed lines are named even when the conversation is taken up again:
        # they are not sent again in the new session (they may well have arrived).
        self._show(self._presenter.unconfirmed(conversation.nick, ended.unconfirmed, ended.unconfirmed_count,
                                               resuming=broke))
        if self._active == key and not broke:
            self._active = None
            if len(self._conversations) == 1:
                only = next(iter(self._conversations))
                self._activate(only)
                self._show(self._presenter.switched(self._conversations[only].nick))
        self._update_prompt()

    def _do_switch(self, command: cmd.Switch) -> None:
        conversation = self._conversation_for(command.nick)
        if conversation is not None:
            if self._active in (None, command.nick.lower()):  # else _activate says it
                self._show(self._presenter.switched(conversation.nick))
            self._activate(command.nick.lower())

    def _do_close(self, command: cmd.Close) -> None:
        key = command.nick.lower() if command.nick else self._active
        if key in self._calls:
            self._calls[key].cancel()
        elif key not in self._conversations and self._link is not None and key and self._link.abandon(key):
            self._update_prompt()
        elif key in self._offers:
            self._decline(self._offers.pop(key))
        elif key is not None and self._conversation_for(command.nick) is not None:
            conversation = self._conversations[key]
            d = self._guard(conversation.close, conversation.nick)
            if d is not None:
                d.addErrback(self._failed, conversation.nick)

    # -- offers

    def _offered(self, offer: IncomingOffer) -> None:
        key = offer.nick.lower()
        self._offers[key] = offer
        self._show(self._presenter.offer(offer.nick, offer.fingerprint, offer.pin is PinStatus.CHANGED))
        self._alert(offer.nick, "a call from")
        if offer.lookalike_of is not None:
            self._show(self._presenter.lookalike(offer.nick, offer.lookalike_of))
        offer.observe_withdrawn(lambda reason: self._withdrawn(offer, reason))

    def _withdrawn(self, offer: IncomingOffer, reason: str) -> None:
        key = offer.nick.lower()
        if self._offers.get(key) is offer:
            del self._offers[key]
            self._show(self._presenter.offer_withdrawn(offer.nick, reason))

    def _pick_offer(self, nick: str | None) -> Any:
        """The offer from ``nick``, or the only one waiting; shows why if none."""
        if nick is not None:
            offer = self._offers.pop(nick.lower(), None)
            if offer is None:
                self._show(self._presenter.error(f"{nick} has not offered you a conversation."))
            return offer
        if len(self._offers) == 1:
            return self._offers.pop(next(iter(self._offers)))
        if not self._offers:
            self._show(self._presenter.error("Nobody is waiting for you to accept."))
        else:
            names = ", ".join(o.nick for o in self._offers.values())
            self._show(self._presenter.error(f"Several offers wait ({names}); say whose, e.g. /accept <nick>."))
        return None

    def _do_accept(self, command: cmd.Accept) -> None:
        offer = self._pick_offer(command.nick)
        if offer is not None:
            self._accept(offer)

    def _accept(self, offer: IncomingOffer) -> None:
        d = self._guard(offer.accept, offer.nick)
        if d is not None:
            self._show(self._presenter.accepting(offer.nick))
            d.addCallbacks(self._opened, self._failed, errbackArgs=(offer.nick,))

    def _do_decline(self, command: cmd.Decline) -> None:
        offer = self._pick_offer(command.nick)
        if offer is not None:
            self._decline(offer)

    def _decline(self, offer: IncomingOffer) -> None:
        d = self._guard(offer.decline, offer.nick)
        if d is not None:
            self._show(self._presenter.declined(offer.nick))
            d.addErrback(self._failed, offer.nick)

    # -- the relay's identity (the rest of trust: trust_commands.py)

    def _do_trust_relay(self, command: cmd.TrustRelay) -> None:
        change, self._relay_change = self._relay_change, None
        if change is None or self._connect is None:
            self._show(self._presenter.error("No relay is waiting for a decision about its identity."))
            return
        self._show(self._presenter.relay_trusted(change.address, change.new_fingerprint))
        connect, accepted = self._connect, [change.new_id]

        def connect_once() -> Deferred[ChatClient]:  # the accepted id counts for the next connection only
            return connect(accept_relay_id=accepted.pop() if accepted else None)

        self._start_link(connect_once).addErrback(self._connect_failed, None)

    def _relay_changed(self, change: RelayChanged) -> None:
        """Loud, and nothing registered: only /trust-relay connects to it (or /quit)."""
        self._relay_change = change
        old = relay_fingerprint(change.known_id) if change.known_id is not None else None
        self._show(self._presenter.relay_changed(change.address, old, change.new_fingerprint))

    def _delivered(self, conversation: Conversation, delivery: Delivery) -> None:
        if not self._leaving:
            self._show(self._presenter.delivered(conversation.nick, delivery.first_words))

    # -- directory, mail, help

    def _do_who(self, command: cmd.Who) -> None:
        d = self._guard(self._library.who)
        if d is not None:
            d.addCallbacks(lambda users: self._show(self._presenter.who([u.nick for u in users])), self._failed)

    def _do_whois(self, command: cmd.Whois) -> None:
        d = self._guard(lambda: self._library.lookup(command.nick), command.nick)
        if d is not None:
            d.addCallbacks(self._show_whois, self._failed, errbackArgs=(command.nick,))

    def _show_whois(self, info: PeerInfo) -> None:
        self._show(self._presenter.whois(info.nick, info.online, identity_fingerprint(info.identity_pub), info.pin.value))

    def _do_mail(self, command: cmd.Mail) -> None:
        d = self._guard(lambda: self._library.send_mail(command.nick, command.text), command.nick)
        if d is not None:
            d.addCallbacks(lambda _: self._show(self._presenter.mail_sent(command.nick)),
                           self._failed, errbackArgs=(command.nick,))

    def _mail_arrived(self, event: MailEvent) -> None:
        if isinstance(event, MailRead):
            self._show(self._presenter.mail_read(event.reader, event.first_words, event.sent, event.read))
            return
        if isinstance(event, MailProblem):
            if isinstance(event.error, KeyChanged):
                self._key_changed(event.error)
            else:
                self._show(self._presenter.mail_problem(event.sender, event.time, event.reason))
            return
        if event.lookalike_of is not None:
            self._show(self._presenter.lookalike(event.sender, event.lookalike_of))
        self._show(self._presenter.mail(event.sender, event.time, event.text))

    def _do_help(self, command: cmd.Help) -> None:
        try:
            self._show(self._presenter.help(command.command))
        except cmd.CommandError as e:
            self._show(self._presenter.error(str(e)))
