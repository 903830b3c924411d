"""The trust commands of the chat program: key changes, safety numbers, checks.

``/safety``, ``/verify`` (the SMP check, section 14), ``/verified``,
``/trust`` and ``/contacts``, and the loud warning for a changed key from
any path. :class:`TrustCommands` is a part of
:class:`~relaychat.chat.controller.ChatController` (its only user, whose
state it reads), kept apart so each module holds one subject. Trust
decisions stay with the user: only ``/trust <nick>`` replaces a pin, and a
verification is the library's record, kept with the key it was made for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from relaychat.chat import commands as cmd
from relaychat.client import (
    Conversation,
    KeyChanged,
    Resumption,
    SMPAborted,
    SMPEvent,
    SMPRequested,
    SMPResult,
)
from relaychat.crypto.pins import PinError
from relaychat.crypto.safety import identity_fingerprint, safety_number
from relaychat.crypto.smp import SMPUsageError

if TYPE_CHECKING:
    from relaychat.chat.presenter import Line, Presenter
    from relaychat.client import ChatClient

__all__ = ["TrustCommands"]


class TrustCommands:
    """The trust half of the controller's commands (mixed into ChatController)."""

    if TYPE_CHECKING:  # what it uses of ChatController, which defines all of it
        _client: ChatClient | None  # None until attached; commands use _library
        _conversations: dict[str, Conversation]
        _key_changes: dict[str, KeyChanged]
        _smp_asked: set[str]
        _active: str | None
        _presenter: Presenter

        @property
        def _library(self) -> ChatClient: ...

        def _show(self, lines: Sequence[Line]) -> None: ...

        def _guard(self, action: Callable[[], Any], nick: str | None = None) -> Any: ...

        def _conversation_for(self, nick: str | None) -> Any: ...

        def _resumption(self, key: str | None) -> Any: ...

        def _update_prompt(self) -> None: ...

    def _active_nick(self) -> str | None:
        """Who plain lines go to: the conversation in front, or the one being taken up again."""
        if self._active is None:
            return None
        front = self._conversations.get(self._active) or self._resumption(self._active)
        return front.nick if front is not None else None

    def _succeeds(self, action: Callable[[], object], nick: str | None = None) -> bool:
        """Run ``action`` for its effect under :meth:`_guard`: whether it
        succeeded (a failure is shown as a sentence)."""
        def run() -> bool:
            action()
            return True
        return bool(self._guard(run, nick))

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
        if self._succeeds(lambda: self._library.accept_new_key(change.nick, change.new_key), change.nick):
            del self._key_changes[command.nick.lower()]
            self._show(self._presenter.trusted(change.nick, identity_fingerprint(change.new_key)))

    def _do_safety(self, command: cmd.Safety) -> None:
        nick = command.nick or self._active_nick()
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
            if peer_key is None:
                self._show(self._presenter.error(f"You have no key for {nick} yet; /connect {nick} first."))
                return
        if peer_key is None:  # a conversation opens once verified, with the peer's key
            self._show(self._presenter.error(f"The conversation with {nick} is not verified yet."))
            return
        self._show(self._presenter.safety(
            nick, identity_fingerprint(mine), identity_fingerprint(peer_key), safety_number(mine, me, peer_key, key),
            source, self._verification(key, peer_key, conversation)))

    def _do_verify(self, command: cmd.Verify) -> None:
        conversation = self._conversation_for(None)
        if conversation is None:
            return
        if isinstance(conversation, Resumption):  # no session to check in yet
            self._show(self._presenter.error(f"The conversation with {conversation.nick} is not back yet."))
            return
        key = conversation.nick.lower()
        if key in self._smp_asked:
            self._smp_asked.discard(key)
            if self._succeeds(lambda: conversation.smp_respond(command.secret), conversation.nick):
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
        nick = command.nick or self._active_nick()
        if nick is None:
            self._show(self._presenter.error("You are not in a conversation; /verified <nick> names one."))
            return
        conversation = self._conversations.get(nick.lower())
        if conversation is not None:
            done = self._succeeds(conversation.mark_verified, nick)
            key = conversation.peer_identity
        else:
            done = self._succeeds(lambda: self._library.mark_verified(nick), nick)
            key = self._library.pinned_key(nick)
        if done and key is not None:
            self._show(self._presenter.marked_verified(nick, identity_fingerprint(key)))
            self._update_prompt()

    def _do_contacts(self, command: cmd.Contacts) -> None:
        contacts = self._guard(self._library.contacts)
        if contacts is not None:
            self._show(self._presenter.contacts(contacts))
