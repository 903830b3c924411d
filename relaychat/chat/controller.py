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
conversation start and ``/contacts`` read it.
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
    Conversation,
    Delivery,
    Ended,
    IncomingOffer,
    KeyChanged,
    MailEvent,
    MailProblem,
    MailRead,
    PeerInfo,
    RelayChanged,
    relay_fingerprint,
    SMPAborted,
    SMPEvent,
    SMPRequested,
    SMPResult,
)
from relaychat.chat.presenter import Line, Presenter, describe_failure, is_expected
from relaychat.crypto.pins import PinError, PinStatus
from relaychat.crypto.safety import identity_fingerprint, safety_number
from relaychat.crypto.smp import SMPUsageError

__all__ = ["ChatController", "View"]

_log = Logger()

#: Seconds ``/quit`` waits for conversations to close cleanly before leaving.
QUIT_GRACE = 3.0


class View(Protocol):
    """What the controller needs from a screen."""

    def show(self, lines: Sequence[Line]) -> None: ...

    def set_prompt(self, prompt: str) -> None: ...


class ChatController:
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
        self._conversations: dict[str, Conversation] = {}
        self._offers: dict[str, IncomingOffer] = {}
        self._calls: dict[str, Deferred[Any]] = {}
        self._key_changes: dict[str, KeyChanged] = {}
        self._relay_change: RelayChanged | None = None
        self._connect: Callable[..., Deferred[Any]] | None = None
        self._smp_asked: set[str] = set()
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
        verified = conversation is not None and conversation.verified is not None
        self._view.set_prompt(self._presenter.prompt(nick, verified))

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
        ``connect(accept_relay_id=...)`` after the user accepted a changed relay)
        and wire the session up; on failure say why and exit(1), except for a
        changed relay, which waits for /trust-relay or /quit."""
        self._show(self._presenter.welcome() + self._presenter.connecting(self._server))
        self._update_prompt()
        self._connect = connect
        d = connect()
        d.addCallbacks(self.attach, self._connect_failed, errbackArgs=(nick,))
        return d

    def _connect_failed(self, failure: Failure, nick: str | None) -> None:
        exc = failure.value
        assert exc is not None  # a Failure always holds its exception
        if isinstance(exc, RelayChanged):
            change = self._relay_change = exc
            old = relay_fingerprint(change.known_id) if change.known_id is not None else None
            self._show(self._presenter.relay_changed(change.address, old, change.new_fingerprint))
            return
        if not is_expected(exc):
            _log.failure("Unexpected failure while connecting", failure)
        self._show(self._presenter.connect_failed(describe_failure(exc, nick, self._server)))
        self._exit(1)

    def attach(self, client: ChatClient) -> None:
        """Use a connected, registered ChatClient and subscribe to its events."""
        self._client = client
        self._presenter.me = client.nick
        self._show(self._presenter.connected(client.nick, self._server, identity_fingerprint(client.identity.identity_public)))
        if client.relay_first_contact:
            self._show(self._presenter.relay_first_contact(client.relay_address, relay_fingerprint(client.server_id)))
        client.observe_offers(self._offered)
        client.observe_mail(self._mail_arrived)
        client.observe_notices(lambda text: self._show(self._presenter.notice(text)))
        client.observe_disconnect(self._disconnected)
        self._update_prompt()

    def quit(self) -> None:
        """Close conversations cleanly (bounded wait), then exit(0)."""
        if self._leaving:
            return
        self._leaving = True
        self._show(self._presenter.info("Leaving ..."))
        client, self._client = self._client, None
        if client is None:
            self._exit(0)
            return
        d = self._guard(client.quit)
        if not isinstance(d, Deferred):
            self._exit(0)
            return
        d.addTimeout(QUIT_GRACE, self._clock)
        d.addErrback(lambda f: None)  # leaving anyway; the relay notices the close
        d.addBoth(lambda _: self._exit(0))

    def _disconnected(self, reason: str) -> None:
        if self._leaving:
            return
        self._client = None
        self._conversations.clear()
        self._offers.clear()
        self._active = None
        self._show(self._presenter.disconnected(reason))
        self._update_prompt()

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
        if self._client is None and not isinstance(command, (cmd.Help, cmd.Quit, cmd.TrustRelay)):
            self._show(self._presenter.error("Not connected to the relay. /quit leaves."))
            return
        try:
            self._handlers[type(command)](command)
        except Exception:  # a bug must not take the screen down with it
            self._failed(Failure())

    # -- conversations

    def _conversation_for(self, nick: str | None) -> Any:
        """The conversation with ``nick``, or the active one; shows why if none."""
        key = nick.lower() if nick else self._active
        conversation = self._conversations.get(key) if key else None
        if conversation is None:
            if nick:
                self._show(self._presenter.error(f"You have no conversation with {nick}; /connect {nick} first."))
            else:
                self._show(self._presenter.error(
                    "You are not in a conversation. /connect <nick> starts one; "
                    "/mail <nick> <text> reaches someone offline."))
        return conversation

    def _send(self, conversation: Conversation, text: str) -> None:
        sent = self._guard(lambda: conversation.send(text) or True, conversation.nick)
        if sent is not None:
            to = conversation.nick if len(self._conversations) > 1 else None
            self._show(self._presenter.own_message(text, to))

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
        else:
            d = self._guard(lambda: self._library.call(nick), nick)
            if d is None:
                return
            self._calls[key] = d
            self._show(self._presenter.calling(nick))
            d.addBoth(self._call_over, key)
            d.addCallbacks(self._opened, self._failed, errbackArgs=(nick,))

    def _call_over(self, result: Any, key: str) -> Any:
        self._calls.pop(key, None)
        return result

    def _opened(self, conversation: Conversation) -> None:
        key = conversation.nick.lower()
        self._conversations[key] = conversation
        self._key_changes.pop(key, None)
        self._smp_asked.discard(key)
        self._show(self._presenter.opened(conversation.nick, conversation.first_contact, conversation.verified))
        if conversation.lookalike_of is not None:
            self._show(self._presenter.lookalike(conversation.nick, conversation.lookalike_of))
        conversation.observe_messages(lambda text: self._show(self._presenter.message(conversation.nick, text)))
        conversation.observe_delivered(lambda d: self._delivered(conversation, d))
        conversation.observe_smp(lambda event: self._smp_event(conversation, event))
        conversation.observe_warnings(lambda sentence: self._show(self._presenter.error(sentence)))
        conversation.observe_end(lambda ended: self._ended(conversation, ended))
        if key in self._conversations:
            self._activate(key)

    def _activate(self, key: str) -> None:
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
        if isinstance(ended.error, KeyChanged):
            self._key_changed(ended.error)
        elif not self._leaving:
            self._show(self._presenter.ended(conversation.nick, ended.clean, ended.by_peer, ended.reason))
        self._show(self._presenter.unconfirmed(conversation.nick, ended.unconfirmed, ended.unconfirmed_count))
        if self._active == key:
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

    # -- trust

    def _my_key(self) -> tuple[bytes, str]:
        return self._library.identity.identity_public, self._library.canonical_nick

    def _key_changed(self, exc: KeyChanged) -> None:
        key = exc.nick.lower()
        self._key_changes[key] = exc
        number = None
        if self._client is not None:
            mine, me = self._my_key()
            number = safety_number(mine, me, exc.new_key, key)
        old = identity_fingerprint(exc.pinned_key) if exc.pinned_key is not None else None
        self._show(self._presenter.key_changed(exc.nick, old, identity_fingerprint(exc.new_key), number))

    def _do_trust(self, command: cmd.Trust) -> None:
        change = self._key_changes.get(command.nick.lower())
        if change is None:
            self._show(self._presenter.error(f"There is no changed key for {command.nick} waiting for a decision."))
            return
        def accept() -> bool:
            self._library.accept_new_key(change.nick, change.new_key)
            return True
        if self._guard(accept, change.nick):
            del self._key_changes[command.nick.lower()]
            self._show(self._presenter.trusted(change.nick, identity_fingerprint(change.new_key)))

    def _do_safety(self, command: cmd.Safety) -> None:
        nick = command.nick or (self._conversations[self._active].nick if self._active else None)
        if nick is None:
            self._show(self._presenter.error("You are not in a conversation; /safety <nick> names one."))
            return
        key = nick.lower()
        mine, me = self._my_key()
        conversation = self._conversations.get(key)
        if conversation is not None:
            peer_key, source = conversation.peer_identity, "this conversation"
        elif key in self._key_changes:
            peer_key, source = self._key_changes[key].new_key, "their NEW, not yet trusted key"
        else:
            try:
                peer_key, source = self._library.pinned_key(nick), "the key you pinned"
            except PinError as e:
                self._show(self._presenter.error(str(e)))
                return
        if peer_key is None:  # nothing pinned, or a conversation still in its handshake
            self._show(self._presenter.error(f"You have no key for {nick} yet; /connect {nick} first."))
            return
        self._show(self._presenter.safety(
            nick, identity_fingerprint(mine), identity_fingerprint(peer_key), safety_number(mine, me, peer_key, key),
            source, self._verification(key, peer_key, conversation)))

    def _do_verify(self, command: cmd.Verify) -> None:
        conversation = self._conversation_for(None)
        if conversation is None:
            return
        key = conversation.nick.lower()
        if key in self._smp_asked:
            self._smp_asked.discard(key)
            if self._guard(lambda: conversation.smp_respond(command.secret) or True, conversation.nick):
                self._show(self._presenter.smp_answered(conversation.nick))
        elif self._guard(lambda: self._smp_restart(conversation, command.secret), conversation.nick):
            self._show(self._presenter.smp_started(conversation.nick))

    @staticmethod
    def _smp_restart(conversation: Conversation, secret: str) -> bool:
        """Start a check; typing /verify again (a typo in the secret) starts over."""
        try:
            conversation.smp_start(secret)
        except SMPUsageError:
            conversation.smp_abort()
            conversation.smp_start(secret)
        return True

    def _smp_event(self, conversation: Conversation, event: SMPEvent) -> None:
        key = conversation.nick.lower()
        if isinstance(event, SMPRequested):
            self._smp_asked.add(key)
            self._show(self._presenter.smp_requested(conversation.nick))
        elif isinstance(event, SMPResult):
            self._show(self._presenter.smp_result(conversation.nick, event.equal))
            self._update_prompt()
        elif isinstance(event, SMPAborted):
            self._smp_asked.discard(key)
            self._show(self._presenter.smp_aborted(conversation.nick, event.reason))

    def _verification(self, key: str, peer_key: bytes, conversation: Conversation | None) -> Any:
        if conversation is not None:
            return conversation.verified
        return self._guard(lambda: self._library.verification(key, peer_key))

    def _do_verified(self, command: cmd.Verified) -> None:
        """The user says they compared the safety number: record it with the key."""
        nick = command.nick or (self._conversations[self._active].nick if self._active else None)
        if nick is None:
            self._show(self._presenter.error("You are not in a conversation; /verified <nick> names one."))
            return
        conversation = self._conversations.get(nick.lower())
        if conversation is not None:
            def mark() -> bool:
                conversation.mark_verified()
                return True
            key = conversation.peer_identity
        else:
            def mark() -> bool:
                self._library.mark_verified(nick)
                return True
            key = self._library.pinned_key(nick)
        done = self._guard(mark, nick)
        if done is not None and key is not None:
            self._show(self._presenter.marked_verified(nick, identity_fingerprint(key)))
            self._update_prompt()

    def _do_contacts(self, command: cmd.Contacts) -> None:
        contacts = self._guard(lambda: self._library.contacts())
        if contacts is not None:
            self._show(self._presenter.contacts(contacts))

    def _do_trust_relay(self, command: cmd.TrustRelay) -> None:
        change, self._relay_change = self._relay_change, None
        if change is None or self._connect is None:
            self._show(self._presenter.error("No relay is waiting for a decision about its identity."))
            return
        self._show(self._presenter.relay_trusted(change.address, change.new_fingerprint))
        d = self._connect(accept_relay_id=change.new_id)
        d.addCallbacks(self.attach, self._connect_failed, errbackArgs=(None,))

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
