"""Trust glue: where the identity, pins and the other profile files live, and the channel's view of one pin.

Protocol section 13: the pin is checked by the library, not left to the
program; a damaged pin file fails the conversation rather than trusting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from relaychat.client.contacts import Contacts
from relaychat.client.known_relays import KnownRelays
from relaychat.client.mail_receipts import ReceiptOutbox, SentMail
from relaychat.client.seen import SeenMail
from relaychat.crypto.keyfiles import StrPath, default_config_dir
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers, PinStatus

if TYPE_CHECKING:
    from relaychat.client.chat_client import ChatClient


def open_profile(
    config_dir: Optional[StrPath] = None, passphrase: Optional[bytes] = None
) -> tuple[Identity, KnownPeers, SeenMail]:
    """Load (or on first run create, mode 0600) the identity, known peers and seen-mail
    record in ``config_dir`` (default ``$XDG_CONFIG_HOME/relaychat``). Raises the
    identity module's errors (PassphraseRequired, WrongPassphrase, KeyStorageError)."""
    directory = default_config_dir() if config_dir is None else config_dir
    identity = Identity.load_or_create(directory, passphrase)
    return identity, KnownPeers.in_directory(directory), SeenMail.in_directory(directory)


@dataclass(frozen=True)
class ProfileFiles:
    """Everything a client remembers between runs besides its keys, one file each
    in the profile directory, each safe for several clients to share."""

    known_peers: KnownPeers  # the pinned identity key per (relay, nickname)
    known_relays: KnownRelays  # the relay id per relay address
    contacts: Contacts  # verified or not, first and last seen, per pinned key
    seen_mail: SeenMail  # message ids of mail already shown
    sent_mail: SentMail  # our mail awaiting its read receipt
    receipts_owed: ReceiptOutbox  # read receipts not yet stored by the relay

    @classmethod
    def beside(cls, known_peers: KnownPeers, seen_mail: Optional[SeenMail] = None,
               known_relays: Optional[KnownRelays] = None) -> ProfileFiles:
        """The files in the directory of ``known_peers`` (the profile directory);
        ``seen_mail`` and ``known_relays`` may be given to use others."""
        directory = Path(known_peers.path).parent
        return cls(
            known_peers,
            known_relays if known_relays is not None else KnownRelays.in_directory(directory),
            Contacts.in_directory(directory),
            seen_mail if seen_mail is not None else SeenMail.in_directory(directory),
            SentMail.in_directory(directory),
            ReceiptOutbox.in_directory(directory),
        )


# -- trust ------------------------------------------------------------------------


class PinnedPeer:
    """The channel's PinSource for one nickname, backed by the known-peers file."""

    def __init__(self, client: ChatClient, nick: str) -> None:
        self._client = client
        self._nick = nick

    def check(self, identity_pub: bytes) -> PinStatus:
        return self._client.pin_status(self._nick, identity_pub)

    def pinned(self) -> Optional[bytes]:
        return self._client.pinned_key(self._nick)
