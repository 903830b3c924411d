"""``relaychat-web RELAY``: the browser client from your own installed package.

A relay that serves the page could serve different code to different
people. This command serves the files of the relaychat you installed, on
loopback only, and points the page at any relay's WebSocket address, so
the relay supplies nothing but the connection. It prints the files'
digest: the same number a relay with ``web_client = true`` logs, so you
can also check what a relay serves.

Usage: ``relaychat-web [--port N] wss://relay.example/relay``; then open the
printed ``http://127.0.0.1:N/`` (a loopback address is a secure context,
so WebCrypto and the page's storage work). The relay's WebSocket listener
must allow that origin (``allowed_origins``; its default allows any).
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, Optional
from urllib.parse import urlsplit

from twisted.python import usage

from relaychat import web

LOOPBACK_NAMES = ("localhost",)


class Options(usage.Options):
    synopsis = "Usage: relaychat-web [--port N] RELAY_WEBSOCKET_URL"
    longdesc = __doc__.split("\n\n")[1]
    optParameters = [["port", "p", 0, "Loopback port to serve the page on (0: any free port).", int]]

    # usage.Options passes the positional arguments to parseArgs, whose base takes none
    def parseArgs(self, relay: str) -> None:  # type: ignore[override]
        self["relay"] = check_relay_url(relay)


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_relay_url(url: str) -> str:
    """``wss://`` anywhere, ``ws://`` only to a loopback relay (anything else
    would carry the relay protocol, keys and all, in the clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.query or parts.fragment:
        raise usage.UsageError(f"{url!r} is not a WebSocket address such as wss://relay.example/relay")
    if parts.scheme == "ws" and not _loopback(parts.hostname):
        raise usage.UsageError(f"{url!r}: use wss:// for a relay that is not on this machine")
    if any(c in url for c in " '\";"):
        raise usage.UsageError(f"{url!r} contains characters a WebSocket address does not need")
    return url


def main(argv: Optional[list[str]] = None, reactor: Any = None) -> int:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"relaychat-web: {e}\n{options.synopsis}", file=sys.stderr)
        return 2
    if reactor is None:
        from twisted.internet import reactor as default

        reactor = default
    from relaychat.server.webclient import local_site

    port = reactor.listenTCP(options["port"], local_site(options["relay"]), interface="127.0.0.1")
    print(f"relaychat-web: open http://127.0.0.1:{port.getHost().port}/ (relay {options['relay']})")
    print(f"relaychat-web: files sha256 {web.digest()}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
