"""Connecting: a relay spec to an endpoint, then HELLO, the relay's id, and REGISTER to a ChatClient.

Between HELLO and REGISTER the relay's ``server_id`` is checked against the
one remembered for its address (``known_relays``, protocol section 13): a
relay that changed it is refused with :class:`RelayChanged` before we
register, since every pin is keyed by that id.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from relaychat.client import endpoints
from relaychat.client.chat_client import ChatClient
from relaychat.client.errors import Disconnected, RelayChanged
from relaychat.client.known_relays import KnownRelays, relay_address
from relaychat.client.protocol import HelloInfo, Registered
from relaychat.client.seen import SeenMail
from relaychat.client.trust import ProfileFiles
from relaychat.client.values import canonical_nick
from relaychat.crypto.pins import PinConflict, PinError, PinStatus
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers


def endpoint_from_string(reactor: Any, spec: str) -> IStreamClientEndpoint:
    """A relay spec (``tcp:HOST:PORT``, ``tls:HOST:PORT[:trust=...|:fingerprint=...]``)
    or any Twisted client endpoint string; see :mod:`relaychat.client.endpoints`."""
    return endpoints.client_endpoint(reactor, spec)


def _endpoint(reactor: Any, endpoint: Union[str, IStreamClientEndpoint]) -> IStreamClientEndpoint:
    return endpoint_from_string(reactor, endpoint) if isinstance(endpoint, str) else endpoint


def connect(
    reactor: Any,
    endpoint: Union[str, IStreamClientEndpoint],
    identity: Identity,
    nick: str,
    known_peers: KnownPeers,
    *,
    seen_mail: Optional[SeenMail] = None,
    known_relays: Optional[KnownRelays] = None,
    address: Optional[str] = None,
    accept_relay_id: Optional[bytes] = None,
    timeout: float = 30.0,
    handshake_timeout: float = 30.0,
) -> Deferred[Any]:
    """Connect to a relay, say HELLO, check its id, register ``nick``; fires with a :class:`ChatClient`.

    ``endpoint`` is a Twisted client endpoint string (``tcp:host=relay:port=7733``)
    or an endpoint object. The profile's other files are found beside
    ``known_peers`` (the seen-mail record too, unless ``seen_mail`` is
    given). ``address`` names the relay in ``known_relays`` (default: from
    the endpoint string, else the peer's host and port). Fails with
    RelayChanged (the relay's id differs from the one remembered for its
    address; pass ``accept_relay_id=error.new_id`` once the user accepted
    that very id), RelayError (``taken``, ``bad-nick``, ``version``, ...),
    Disconnected, or a timeout after ``timeout`` seconds.
    """
    try:
        canonical_nick(nick)
        resolved = _endpoint(reactor, endpoint)
    except ValueError as e:
        return fail(e)
    files = ProfileFiles.beside(known_peers, seen_mail, known_relays)
    client = ChatClient(reactor, identity, known_peers, handshake_timeout=handshake_timeout, files=files)
    protocol = client.protocol
    if address is None and isinstance(endpoint, str):
        address = relay_address(endpoint)

    def greeted(info: HelloInfo) -> Deferred[Any]:
        client.relay_address = address or _peer_address(protocol)
        client.relay_first_contact = check_relay(files.known_relays, client.relay_address, info.server_id,
                                                 accept_relay_id, files)
        client.hello = info
        client.server_id = info.server_id
        client.max_frame = info.max_frame
        client.max_mail = info.max_mail
        return protocol.register(nick, identity)

    def registered(registration: Registered) -> ChatClient:
        client.registration = registration
        client.nick = registration.nick
        client.canonical_nick = registration.canonical
        client.mailbox.send_receipts()  # read receipts owed since an earlier login
        return client

    def failed(failure: Failure) -> Failure:
        if protocol.transport is not None and protocol.connected:
            protocol.transport.loseConnection()
        if failure.check(CancelledError):
            return Failure(Disconnected("timeout", f"the relay did not answer within {timeout:g} seconds"))
        return failure

    connecting: Deferred[Any] = connectProtocol(resolved, protocol)
    connecting.addCallback(lambda _: protocol.hello())
    connecting.addCallback(greeted)
    connecting.addCallback(registered)
    if timeout:
        connecting.addTimeout(timeout, reactor)
    connecting.addErrback(failed)
    return connecting


def _peer_address(protocol: Any) -> str:
    peer = protocol.transport.getPeer() if protocol.transport is not None else None
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return relay_address(f"{host}:{port}" if ":" not in str(host) else f"[{host}]:{port}") if host else "-"


def check_relay(known: KnownRelays, address: str, server_id: bytes, accept: Optional[bytes] = None,
                files: Optional[ProfileFiles] = None) -> bool:
    """Section 13: the id a relay announces must be the one remembered for its
    address. Returns True on a first connection (now remembered); raises
    RelayChanged for another id, unless the user accepted exactly that id,
    in which case the pins (and verifications) of the old id carry over to
    the new one: accepting says "the same relay, rebuilt", so its users' keys
    are still checked, and only a genuinely different relay shows key changes."""
    try:
        status = known.check(address, server_id)
    except PinError:
        status = PinStatus.CHANGED
    if status is PinStatus.CHANGED:
        try:
            remembered = known.get(address)
        except PinError:
            remembered = None
        if accept is None or accept != server_id:
            raise RelayChanged(address, remembered, server_id)
        known.replace(address, server_id)
        if remembered is not None and files is not None:
            carry_over(files, remembered, server_id)
        return False
    if status is PinStatus.NEW:
        try:
            known.remember(address, server_id)
        except PinConflict:  # another client remembered another id meanwhile
            return check_relay(known, address, server_id, accept, files)
        return True
    return False


def carry_over(files: ProfileFiles, old_id: bytes, new_id: bytes) -> None:
    """Pin under ``new_id`` every key pinned under ``old_id`` (where nothing is
    pinned yet), with its contact record: a stricter start than no pins."""
    for nick, key in files.known_peers.pins_on(old_id).items():
        if key is None:
            continue
        try:
            files.known_peers.pin(new_id, nick, key)
        except PinConflict:
            continue  # a pin already made under the new id stands
        record = files.contacts.get(old_id, nick, key)
        if record is not None and record.verified is not None:
            files.contacts.verify(new_id, nick, key, record.verified.how, record.verified.time)
