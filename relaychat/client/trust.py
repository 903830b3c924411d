"""Trust glue: where the identity, pins and seen-mail record live, and the channel's view of one pin.

Protocol section 13: the pin is checked by the library, not left to the
program; a damaged pin file fails the conversation rather than trusting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

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
