"""The friendly client library: connect, register, call, chat, mail.

Built for programs (the terminal client, bots, tests) that want end-to-end
encrypted conversations over a relaychat relay without knowing the wire
protocol. Everything that waits returns a Twisted ``Deferred``; everything
that arrives unasked (offers, messages, mail, the end of a conversation) is
delivered to *observers*, plain callables registered with ``observe_*``.
Events that arrive before the first observer of their kind is registered
are kept and handed over on registration, so nothing is lost between
``connect()`` firing and the program wiring itself up.

Typical use::

    identity, peers, seen = open_profile()           # ~/.config/relaychat
    client = yield connect(reactor, "tcp:relay.example:7733", identity, "alice", peers)
    conversation = yield client.call("bob")         # handshake verified
    print(conversation.safety_number)
    conversation.observe_messages(print)
    conversation.send("hello")

Trust (protocol section 13) is enforced here, not left to the program: the
peer's identity key is pinned on first contact, and a different key for a
pinned nickname fails the conversation (or mail) with :class:`KeyChanged`
without pinning anything; :meth:`ChatClient.accept_new_key` is the one
explicit way to replace a pin. Pins are per relay, so the relay's own id is
pinned too, per address: :func:`connect` fails with :class:`RelayChanged`
before registering when it changes, until ``accept_relay_id`` names the new
one. What the user verified (``Conversation.verified``,
:meth:`ChatClient.mark_verified`, a successful SMP check) is kept with the
key and shown by :meth:`ChatClient.contacts`. Every message sent is
confirmed end to end (``Conversation.observe_delivered``, ``Ended.unconfirmed``),
and sealed mail comes back with a read receipt (:class:`MailRead`). The
profile files (:class:`ProfileFiles`) live beside the known-peers file and
are safe for several clients to share.

Received text is returned as it came; programs must show it inert
(section 16, ``relaychat.chat.inert``). Nothing here logs keys or text.
"""

from relaychat.client.channel import SMPAborted, SMPRequested, SMPResult
from relaychat.client.contacts import How, Verification
from relaychat.client.conversation import CLOSE_LINGER
from relaychat.client.chat_client import MAX_UNANSWERED_OFFERS, ChatClient
from relaychat.client.connecting import connect, endpoint_from_string
from relaychat.client.conversation import Conversation
from relaychat.client.errors import (
    ConversationClosed,
    ConversationFailed,
    Declined,
    Disconnected,
    HandshakeFailed,
    KeyChanged,
    MailError,
    MessageRejected,
    MessageTooLong,
    NotPinned,
    RelayChanged,
    RelayError,
    TooMuchWork,
    UncertifiedKeys,
)
from relaychat.client.known_relays import KnownRelays, relay_address, relay_fingerprint
from relaychat.client.feed import UNOBSERVED_KEPT
from relaychat.client.offer import IncomingOffer
from relaychat.client.reconnect import (
    Backoff,
    Connected,
    GaveUp,
    LinkEvent,
    LinkState,
    Lost,
    Reconnector,
    ResumeFailed,
    Resumed,
    Resuming,
    Resumption,
    Retrying,
    retry_after,
)
from relaychat.client.seen import SeenMail
from relaychat.client.endpoints import explain as explain_tls_failure
from relaychat.client.trust import ProfileFiles, open_profile
from relaychat.client.values import (
    ContactInfo,
    Delivery,
    Ended,
    MailEvent,
    MailProblem,
    MailRead,
    PeerInfo,
    ReceivedMail,
    SMPEvent,
    User,
    canonical_nick,
)
from relaychat.crypto.smp import SMPUsageError

__all__ = [
    "Backoff",
    "CLOSE_LINGER",
    "ChatClient",
    "Connected",
    "ContactInfo",
    "Delivery",
    "GaveUp",
    "How",
    "KnownRelays",
    "LinkEvent",
    "LinkState",
    "Lost",
    "MailRead",
    "NotPinned",
    "ProfileFiles",
    "Reconnector",
    "RelayChanged",
    "ResumeFailed",
    "Resumed",
    "Resuming",
    "Resumption",
    "Retrying",
    "Verification",
    "relay_address",
    "relay_fingerprint",
    "retry_after",
    "Conversation",
    "ConversationClosed",
    "ConversationFailed",
    "Declined",
    "Disconnected",
    "Ended",
    "HandshakeFailed",
    "IncomingOffer",
    "KeyChanged",
    "MailError",
    "MailEvent",
    "MailProblem",
    "MessageRejected",
    "MessageTooLong",
    "PeerInfo",
    "ReceivedMail",
    "RelayError",
    "SMPAborted",
    "SMPEvent",
    "SMPRequested",
    "SMPResult",
    "SMPUsageError",
    "SeenMail",
    "TooMuchWork",
    "MAX_UNANSWERED_OFFERS",
    "UNOBSERVED_KEPT",
    "UncertifiedKeys",
    "User",
    "canonical_nick",
    "connect",
    "endpoint_from_string",
    "explain_tls_failure",
    "open_profile",
]
