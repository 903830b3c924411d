"""Who is who: HELLO, REGISTER and PROVE bind a nickname to a key; LOOKUP and WHO read the bindings.

A connection moves CONNECTED -> GREETED (``HELLO``) -> CHALLENGED
(``REGISTER``: the claim is checked, a challenge sent) -> REGISTERED
(``PROVE``: the challenge signed, the proof of work done, the nickname
bound), as docs/protocol.rst section 3 says. The claim in between lives on
the connection (:class:`~relaychat.server.connection.Claim`); what this
object holds is only the greeting it answers with.

A component of the :class:`~relaychat.server.hub.Hub`, which dispatches
the commands here and owns the tables: every storage or directory answer
goes through :meth:`Hub.await_answer <relaychat.server.hub.Hub.await_answer>`,
so a cluster's directory may answer later and the client's further lines
wait, in order. The hourly allowances of new nicknames are
:class:`~relaychat.server.quotas.Quotas`'.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from relaychat.crypto.identity import KeyFormatError, pow_ok, verify_registration, verify_static_sig
from relaychat.server.bans import key_id
from relaychat.server.connection import Claim, Connection, State
from relaychat.server.store import Binding, Mail
from relaychat.wire import messages as m
from relaychat.wire.errors import Bye, Code, ProtocolError
from relaychat.wire.messages import PROTOCOL_VERSION
from relaychat.wire.nicknames import canonical
from relaychat.wire.refusals import ban_text

if TYPE_CHECKING:
    from relaychat.server.hub import Hub


class Registration:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.hello_ok = self._greeting()

    def _greeting(self) -> m.HelloOk:
        hub = self.hub
        return m.HelloOk(PROTOCOL_VERSION, hub.server_id, hub.limits.max_line, hub.limits.max_frame,
                         hub.mail.max_mail)

    def renew_greeting(self) -> None:
        """The hub's ``server_id`` changed (a cluster's was adopted): say it in ``HELLO`` from now on."""
        self.hello_ok = self._greeting()

    def abandon(self, client: Connection) -> None:
        """Forget a registration in progress: its challenge is spent, a new ``REGISTER`` is needed."""
        client.claim = None
        client.state = State.GREETED

    # -- greeting and registration -------------------------------------------

    def hello(self, client: Connection, hello: m.Hello, now: float) -> None:
        if PROTOCOL_VERSION not in hello.versions:
            raise ProtocolError(Code.VERSION, f"supported={PROTOCOL_VERSION}")
        client.state = State.GREETED
        self.hub.send(client, self.hello_ok)

    def register(self, client: Connection, register: m.Register, now: float) -> None:
        canon = canonical(register.nick)
        self._refuse_banned(canon, register.identity_pub, now)
        try:
            certified = verify_static_sig(register.identity_pub, register.static_pub, register.static_sig)
        except KeyFormatError as e:  # not a usable point: small order, off the curve
            raise ProtocolError(Code.BAD_KEY, str(e)) from None
        if not certified:
            raise ProtocolError(Code.BAD_SIGNATURE, "static_sig does not verify")
        self.hub.await_answer(client, "REGISTER", self.hub.directory.check_claim(register.nick, register.identity_pub),
                              lambda existing: self._challenge(client, register, canon, existing))

    def _challenge(self, client: Connection, register: m.Register, canon: str, existing: Any) -> None:
        hub = self.hub
        if existing is None:
            hub.quotas.check_new_name(client.address, hub.now)  # before the client works for it
        pow_bits = 0 if existing is not None else hub.limits.pow_bits
        challenge = os.urandom(32)
        client.claim = Claim(register.nick, canon, register.identity_pub, register.static_pub,
                             register.static_sig, challenge, pow_bits)
        client.state = State.CHALLENGED
        hub.send(client, m.RegisterOk(canon, challenge, pow_bits))

    def _refuse_banned(self, canon: str, identity_pub: bytes, now: float) -> None:
        bans = self.hub.bans
        for kind, value in (("nick", canon), ("key", key_id(identity_pub))):
            if bans.banned(kind, value, now):
                raise ProtocolError(Code.BANNED, ban_text(kind, bans.remaining(kind, value, now)))

    def prove(self, client: Connection, prove: m.Prove, now: float) -> None:
        hub = self.hub
        claim = client.claim
        assert claim is not None
        self.abandon(client)  # the challenge is spent, whatever happens next
        if not verify_registration(
            hub.server_id, claim.challenge, claim.identity_pub, claim.static_pub,
            claim.static_sig, claim.canonical, prove.signature,
        ):
            raise ProtocolError(Code.BAD_SIGNATURE, "the signature does not verify")
        if claim.pow_bits:
            nonce = prove.pow_nonce
            if not nonce or not pow_ok(claim.challenge, nonce, claim.pow_bits):
                raise ProtocolError(Code.POW, f"proof of work of {claim.pow_bits} bits needed")
        self._refuse_banned(claim.canonical, claim.identity_pub, now)  # a ban may have come since REGISTER
        if hub.shared_mail is None and hub.registry.find(claim.canonical) is None:
            hub.quotas.check_new_name(client.address, now)  # others from the address may have bound since
        # Stored: a calendar time, not the monotonic clock of this process.
        bound = hub.directory.bind(claim.display, claim.identity_pub, claim.static_pub, claim.static_sig,
                                   hub.wall())
        shared = hub.shared_mail
        if shared is not None:  # the mail waiting, before we say yes: a failure is then a plain refusal
            bound.addCallback(lambda result: shared.pending(result[0].canonical).addCallback(
                lambda mails: (*result, mails)))
        hub.await_answer(client, "PROVE", bound, lambda result: self._registered(client, *result))

    def _registered(self, client: Connection, binding: Binding, new: bool, pending: Optional[list[Mail]] = None) -> None:
        hub = self.hub
        if new:
            hub.quotas.spent_new_name(client.address, hub.now)
        hub.store.note_use(binding.canonical, hub.wall())
        # The last storage calls: if they fail, nothing below has changed.
        waiting = hub.mailbox.waiting(binding.canonical, pending)
        previous = hub.online.get(binding.canonical)
        if previous is not None:
            hub.bye(previous, Bye.REPLACED, "you logged in elsewhere")
        client.state = State.REGISTERED
        client.splitter.max_line = hub.limits.max_line
        client.nick = binding.canonical
        client.display = binding.display
        client.identity_pub = binding.identity_pub
        hub.online[binding.canonical] = client
        hub.stats.registrations += 1
        if hub.elsewhere is not None:
            hub.elsewhere.joined(client)
        hub.send(client, m.ProveOk(binding.display, new, len(waiting)))
        for mail in waiting:
            hub.send(client, mail)

    # -- the directory ---------------------------------------------------------

    def lookup(self, client: Connection, lookup: m.Lookup, now: float) -> None:
        self.hub.await_answer(client, "LOOKUP", self.hub.directory.find(lookup.nick),
                              lambda b: self._looked_up(client, b))

    def _looked_up(self, client: Connection, binding: Optional[Binding]) -> None:
        if binding is None:
            raise ProtocolError(Code.NO_SUCH_USER, "no such nickname")
        online = self._is_online(binding.canonical)
        self.hub.send(client, m.LookupOk(
            binding.display, binding.identity_pub, binding.static_pub, binding.static_sig, online))

    def who(self, client: Connection, who: m.Who, now: float) -> None:
        hub = self.hub
        shown = 0
        max_who = hub.limits.max_who
        for other in hub.online.values():
            if shown >= max_who:
                break
            assert other.display is not None and other.identity_pub is not None
            hub.send(client, m.User(other.display, other.identity_pub))
            shown += 1
        total = len(hub.online)
        if hub.elsewhere is not None:
            remote = hub.elsewhere.remote
            total += len(remote)
            for user in remote.values():
                if shown >= max_who:
                    break
                hub.send(client, m.User(user.display, user.identity_pub))
                shown += 1
        hub.send(client, m.WhoOk(shown, total))

    def _is_online(self, canon: str) -> bool:
        """Whether ``canon`` is connected to this node or, in a cluster, to any."""
        hub = self.hub
        return canon in hub.online or (hub.elsewhere is not None and canon in hub.elsewhere.remote)
