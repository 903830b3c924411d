"""HELLO, REGISTER and PROVE (docs/protocol.rst sections 3 and 5): how a
connection comes to hold a nickname.

A mixin of :class:`~relaychat.server.hub.Hub`, like the session commands:
the checks of a registration in order (nickname, bans, the static key's
certificate, the look-alike rule, then the signed challenge and the proof
of work), and what binding a nickname does (the older connection goes, the
pending mail follows).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from relaychat.crypto.identity import KeyFormatError, pow_ok, verify_registration, verify_static_sig
from relaychat.server.bans import Bans, key_id
from relaychat.server.connection import Claim, Connection, State
from relaychat.server.limits import Limits
from relaychat.server.registry import Registry
from relaychat.server.store import Store
from relaychat.wire import messages as m
from relaychat.wire.errors import Bye, Closed, Code, ProtocolError
from relaychat.wire.messages import PROTOCOL_VERSION
from relaychat.wire.nicknames import canonical


class RegistrationCommands:
    bans: Bans
    limits: Limits
    online: dict[str, Connection]
    registry: Registry
    server_id: bytes
    store: Store
    wall: Callable[[], float]
    _hello: m.HelloOk

    if TYPE_CHECKING:  # provided by the Hub
        from relaychat.server.hub import Stats

        stats: Stats

        def _send(self, client: Connection, message: m.Message) -> None: ...
        def _bye(self, client: Connection, bye: Bye, text: str, session_reason: Closed = Closed.GONE) -> None: ...

    def _hello_cmd(self, client: Connection, hello: m.Hello, now: float) -> None:
        if PROTOCOL_VERSION not in hello.versions:
            raise ProtocolError(Code.VERSION, f"supported={PROTOCOL_VERSION}")
        client.state = State.GREETED
        self._send(client, self._hello)

    def _register(self, client: Connection, register: m.Register, now: float) -> None:
        canon = canonical(register.nick)
        self._refuse_banned(canon, register.identity_pub, now)
        try:
            certified = verify_static_sig(register.identity_pub, register.static_pub, register.static_sig)
        except KeyFormatError as e:  # not a usable point: small order, off the curve
            raise ProtocolError(Code.BAD_KEY, str(e)) from None
        if not certified:
            raise ProtocolError(Code.BAD_SIGNATURE, "static_sig does not verify")
        existing = self.registry.check_claim(register.nick, register.identity_pub)
        pow_bits = 0 if existing is not None else self.limits.pow_bits
        challenge = os.urandom(32)
        client.claim = Claim(register.nick, canon, register.identity_pub, register.static_pub,
                             register.static_sig, challenge, pow_bits)
        client.state = State.CHALLENGED
        self._send(client, m.RegisterOk(canon, challenge, pow_bits))

    def _refuse_banned(self, canon: str, identity_pub: bytes, now: float) -> None:
        if self.bans.banned("nick", canon, now):
            raise ProtocolError(Code.BANNED, "this nickname is banned")
        if self.bans.banned("key", key_id(identity_pub), now):
            raise ProtocolError(Code.BANNED, "this identity key is banned")

    def _prove(self, client: Connection, prove: m.Prove, now: float) -> None:
        claim = client.claim
        assert claim is not None
        client.claim = None  # the challenge is spent, whatever happens next
        client.state = State.GREETED
        if not verify_registration(
            self.server_id, claim.challenge, claim.identity_pub, claim.static_pub,
            claim.static_sig, claim.canonical, prove.signature,
        ):
            raise ProtocolError(Code.BAD_SIGNATURE, "the signature does not verify")
        if claim.pow_bits:
            nonce = prove.pow_nonce
            if not nonce or not pow_ok(claim.challenge, nonce, claim.pow_bits):
                raise ProtocolError(Code.POW, f"proof of work of {claim.pow_bits} bits needed")
        self._refuse_banned(claim.canonical, claim.identity_pub, now)  # a ban may have come since REGISTER
        existing = self.registry.find(claim.canonical)
        # Stored: a calendar time, not the monotonic clock of this process.
        binding = self.registry.bind(claim.display, claim.identity_pub, claim.static_pub, claim.static_sig,
                                     self.wall())
        previous = self.online.get(binding.canonical)
        if previous is not None:
            self._bye(previous, Bye.REPLACED, "you logged in elsewhere")
        client.state = State.REGISTERED
        client.splitter.max_line = self.limits.max_line
        client.nick = binding.canonical
        client.display = binding.display
        client.identity_pub = binding.identity_pub
        self.online[binding.canonical] = client
        self.stats.registrations += 1
        pending = self.store.pending_mail(binding.canonical)
        self._send(client, m.ProveOk(binding.display, not existing, len(pending)))
        shown: dict[str, str] = {}  # every event names people in their display form
        for mail in pending:
            if mail.sender not in shown:
                sender = self.registry.find(mail.sender)
                shown[mail.sender] = sender.display if sender is not None else mail.sender
            self._send(client, m.StoredMail(mail.id, shown[mail.sender], int(mail.created), mail.body))
