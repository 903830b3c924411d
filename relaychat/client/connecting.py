"""Connecting: a relay spec to an endpoint, then HELLO and REGISTER to a ChatClient."""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from relaychat.client import endpoints
from relaychat.client.chat_client import ChatClient
from relaychat.client.errors import Disconnected
from relaychat.client.protocol import HelloInfo, Registered
from relaychat.client.seen import SeenMail
from relaychat.client.values import canonical_nick
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
    timeout: float = 30.0,
    handshake_timeout: float = 30.0,
) -> Deferred[Any]:
    """Connect to a relay, say HELLO, register ``nick``; fires with a :class:`ChatClient`.

    ``endpoint`` is a Twisted client endpoint string (``tcp:host=relay:port=7733``)
    or an endpoint object. Fails with RelayError (``taken``, ``bad-nick``,
    ``version``, ...), Disconnected, or a timeout after ``timeout`` seconds.
    """
    try:
        canonical_nick(nick)
        resolved = _endpoint(reactor, endpoint)
    except ValueError as e:
        return fail(e)
    client = ChatClient(reactor, identity, known_peers, seen_mail, handshake_timeout)
    protocol = client.protocol

    def greeted(info: HelloInfo) -> Deferred[Any]:
        client.hello = info
        client.server_id = info.server_id
        client.max_frame = info.max_frame
        client.max_mail = info.max_mail
        return protocol.register(nick, identity)

    def registered(registration: Registered) -> ChatClient:
        client.registration = registration
        client.nick = registration.nick
        client.canonical_nick = registration.canonical
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
