"""``relaychat``: the terminal chat program.

Asks only what it must: the server defaults to the one used last (kept in
``client.toml`` in the config directory, see :data:`PROFILE_HELP`), else
``localhost`` (port 7733); the nickname is asked once and remembered, the identity key is created on
the first run (mode 0600) and a passphrase is asked only when the key file
is encrypted (or, with ``--passphrase``, when a new key is created).
Expected failures -- connection refused, nickname taken, wrong passphrase,
no terminal -- end with a sentence and a non-zero status, never a traceback;
unexpected ones are logged to ``client.log`` in the config directory, since
the screen belongs to the chat.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.stdio import StandardIO
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.logfile import LogFile

from relaychat import client as library
from relaychat.client import SeenMail
from relaychat.chat.controller import ChatController
from relaychat.chat.presenter import Presenter
from relaychat.chat.terminal import ChatServerProtocol, ChatTerminal, raw_terminal, terminal_size
from relaychat.crypto import keyfiles, keypair
from relaychat.crypto.identity import IdentityError
from relaychat.crypto.keyfiles import PassphraseRequired, WrongPassphrase, write_private_file
from relaychat.crypto.keypair import Identity
from relaychat.crypto.pins import KnownPeers
from relaychat.crypto.safety import identity_fingerprint
from relaychat.wire.nicknames import NICK_RULE, is_nickname

__all__ = ["Options", "Server", "main", "parse_server"]

#: What :func:`relaychat.client.open_profile` returns.
Profile = tuple[Identity, KnownPeers, SeenMail]

DEFAULT_PORT = 7733
DEFAULT_SERVER = "localhost"
NICK_FILE = "nickname"
LOG_FILE = "client.log"
LOG_BYTES = 1 << 20  # client.log's size before it is rotated to client.log.1 (the only older one kept)
PROFILE_FILE = "client.toml"
PASSPHRASE_TRIES = 3
#: The head of ``client.toml``: what it is, for whoever opens it.
PROFILE_HELP = """\
# relaychat's memory of where you chat (written after each successful login).
# server: the relay, as --server takes it (HOST, HOST:PORT, [IPv6]:PORT,
#   tls:HOST:PORT[:fingerprint=sha256:HEX|:trust=PATH], or a Twisted endpoint).
# `relaychat` with no --server connects there; --server replaces it.
# Edit or delete this file freely.
"""


class Options(usage.Options):
    synopsis = "Usage: relaychat [--server HOST[:PORT]] [--nick NICK] [--config-dir DIR] [--passphrase]"
    longdesc = (
        "Chat end-to-end encrypted through a relaychat relay. Type /help once "
        "connected. Keys, pinned peers and the remembered nickname live in the "
        "config directory."
    )
    optParameters = [
        ["server", "s", None,
         (f"The relay: HOST, HOST:PORT (default port {DEFAULT_PORT}), [IPv6]:PORT, "
          "tls:HOST:PORT[:fingerprint=sha256:HEX|:trust=PATH], or a Twisted client endpoint string. "
          f"Default: the one used last (remembered in {PROFILE_FILE}), else {DEFAULT_SERVER}.")],
        ["nick", "n", None, "Your nickname (asked on the first run, then remembered)."],
        ["config-dir", "c", None, "Where your keys live (default: $XDG_CONFIG_HOME/relaychat)."],
    ]
    optFlags = [
        ["passphrase", "p", "Protect a NEW identity key with a passphrase (asked twice)."],
        ["rotate-static-key", None, "Replace your static (mail) key with a new one, certified by your "
         "identity key; contacts see it at your next login (the previous one is kept to open mail "
         "already sealed to it)."],
        ["no-color", None, "Do not colour status lines (also: the NO_COLOR variable)."],
    ]

    def opt_version(self) -> None:
        """Show relaychat's version and exit."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("relaychat")
        except PackageNotFoundError:  # run from a checkout that is not installed
            shown = "(not installed)"
        print(f"relaychat {shown}")
        sys.exit(0)

    def postOptions(self) -> None:
        nick = self["nick"]
        if nick is not None and not is_nickname(nick):
            raise usage.UsageError(f"'{nick}' is not a nickname: {NICK_RULE}.")
        if self["server"] is not None:
            self["server"] = parse_server(self["server"])


# -- the server -------------------------------------------------------------------

_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[A-Za-z0-9.\-_]+))(?::(?P<port>\d{1,5}))?\Z")


@dataclass(frozen=True)
class Server:
    """Where the relay is: a label for people, and how to make the endpoint."""

    label: str
    host: str | None = None
    port: int = DEFAULT_PORT
    endpoint_string: str | None = None

    @property
    def spec(self) -> str:
        """What ``--server`` takes to mean this server again."""
        return self.endpoint_string if self.endpoint_string is not None else self.label

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        if self.endpoint_string is not None:
            return library.endpoint_from_string(reactor, self.endpoint_string)
        assert self.host is not None
        return HostnameEndpoint(reactor, self.host, self.port)


def parse_server(spec: str) -> Server:
    """``localhost``, ``relay.example:7000``, ``[::1]:7733`` or an endpoint string.

    Raises ``usage.UsageError`` with a sentence when it is none of these.
    """
    spec = spec.strip()
    match = _HOST_PORT.match(spec)
    if match is not None:
        host = match.group("v6") or match.group("host")
        port = int(match.group("port") or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise usage.UsageError(f"{port} is not a port number (1 to 65535).")
        shown = f"[{host}]" if match.group("v6") else host
        return Server(f"{shown}:{port}", host=host, port=port)
    from twisted.internet import reactor

    try:
        library.endpoint_from_string(reactor, spec)
    except (ValueError, TypeError, KeyError):
        raise usage.UsageError(
            f"'{spec}' is not a server: use HOST, HOST:PORT, [IPv6]:PORT or an endpoint "
            "string such as tcp:host=relay.example:port=7733."
        ) from None
    return Server(spec, endpoint_string=spec)


# -- questions before the screen starts ----------------------------------------------


def _say(text: str, stream: TextIO = sys.stderr) -> None:
    print(f"relaychat: {text}", file=stream)


def remembered_server(config_dir: Path) -> Server | None:
    """The relay of the last successful login (``client.toml``); None if none
    is remembered or the file does not make sense (then the default is used)."""
    try:
        with open(config_dir / PROFILE_FILE, "rb") as f:
            spec = tomllib.load(f).get("server")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(spec, str):
        return None
    try:
        return parse_server(spec)
    except usage.UsageError:
        return None


def remember_server(config_dir: Path, server: Server) -> None:
    """Keep ``server`` in ``client.toml`` for the next ``relaychat`` without --server."""
    text = PROFILE_HELP + f"server = {json.dumps(server.spec)}\n"  # a JSON string is a TOML basic string
    try:
        write_private_file(config_dir / PROFILE_FILE, text.encode("utf-8"))
    except OSError:
        pass  # only a convenience


def choose_server(options: Options, config_dir: Path) -> Server:
    """``--server``, else the remembered relay, else localhost."""
    given: Server | None = options["server"]
    if given is not None:
        return given
    return remembered_server(config_dir) or parse_server(DEFAULT_SERVER)


#: Said before the first question, so the answer can be right the first time.
NICK_QUESTION = (
    "Choose a nickname: 2 to 24 letters (a-z, A-Z), digits, '_' or '-', starting with a letter. "
    "Others see it; on a relay it is bound to your key, and one that looks like a taken name "
    "(a1ice for alice) is refused."
)


def ask_nick(config_dir: Path, ask: Callable[[str], str] = input,
             tell: Callable[[str], None] = print) -> str | None:
    """The remembered nickname, else ask (until it follows the rules)."""
    try:
        remembered = (config_dir / NICK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        remembered = ""
    if is_nickname(remembered):
        return remembered
    tell(NICK_QUESTION)
    for _ in range(5):
        try:
            nick = ask("Nickname: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return None
        if is_nickname(nick):
            return nick
        tell(f"'{nick}' is not a nickname: {NICK_RULE}.")
    return None


def remember_nick(config_dir: Path, nick: str) -> None:
    try:
        write_private_file(config_dir / NICK_FILE, (nick + "\n").encode("utf-8"))
    except OSError:
        pass  # only a convenience: next time we ask again


def _new_passphrase(ask: Callable[[str], str], tell: Callable[[str], None]) -> bytes | None:
    for _ in range(PASSPHRASE_TRIES):
        first = ask("New passphrase for your identity key: ")
        if not first:
            tell("The passphrase is empty; type one, or run without --passphrase.")
            continue
        if ask("The same passphrase again: ") != first:
            tell("The two passphrases differ.")
            continue
        return first.encode("utf-8")
    return None


def open_profile(config_dir: Path, want_passphrase: bool, ask: Callable[[str], str] = getpass.getpass,
                 tell: Callable[[str], None] = print, rotate: bool = False) -> Profile | None:
    """(identity, known peers, seen mail), creating the identity on the first run;
    with ``rotate``, an existing identity gets a new static key first.

    Returns None after saying why (``tell``), when the key cannot be opened.
    """
    try:
        if not keypair.exists(config_dir):
            passphrase = _new_passphrase(ask, tell) if want_passphrase else None
            if want_passphrase and passphrase is None:
                tell("No identity was created.")
                return None
            profile = library.open_profile(config_dir, passphrase)
            tell(f"Created your identity key in {config_dir} (fingerprint {identity_fingerprint(profile[0].identity_public)}).")
            return profile
        if want_passphrase:
            tell("Note: --passphrase only applies when a new identity is created; using the existing one.")
        try:
            return _rotated(library.open_profile(config_dir, None), config_dir, None, rotate, tell)
        except PassphraseRequired:
            pass
        for _ in range(PASSPHRASE_TRIES):
            secret = ask(f"Passphrase for {config_dir / keyfiles.IDENTITY_FILE}: ")
            if not secret:
                continue
            try:
                return _rotated(library.open_profile(config_dir, secret.encode("utf-8")), config_dir,
                                secret.encode("utf-8"), rotate, tell)
            except WrongPassphrase:
                tell("That passphrase does not unlock the key.")
        tell("Could not unlock your identity key.")
    except (EOFError, KeyboardInterrupt):
        tell("")
    except (IdentityError, OSError) as e:
        tell(str(e))
    return None


def _rotated(profile: Profile, config_dir: Path, passphrase: bytes | None, rotate: bool,
             tell: Callable[[str], None]) -> Profile:
    """``--rotate-static-key``: protocol section 12 (sealed mail has no forward secrecy)."""
    if not rotate:
        return profile
    identity, known_peers, seen_mail = profile
    rotated = identity.rotate_static(config_dir, passphrase)
    tell("Your static key was replaced; the relay publishes the new one when you register now.")
    return rotated, known_peers, seen_mail


def log_observer(config_dir: Path) -> FilteringLogObserver:
    """Warnings and errors into ``client.log`` (0600), bounded: past
    :data:`LOG_BYTES` it becomes ``client.log.1`` (the one older file kept),
    since what the network does can be logged without end."""
    keyfiles.make_private_dir(config_dir)
    log_file = LogFile(LOG_FILE, str(config_dir), rotateLength=LOG_BYTES, defaultMode=0o600, maxRotatedFiles=1)
    stream = cast(IO[Any], log_file)  # LogFile has the write/flush the observer uses; it is not an io class
    return FilteringLogObserver(textFileLogObserver(stream), [LogLevelFilterPredicate(LogLevel.warn)])


def start_logging(config_dir: Path) -> None:
    """Warnings and errors go to ``client.log`` (:func:`log_observer`): the screen is the chat's.

    Standard output and error are redirected too, so nothing a library
    prints can land in the middle of the chat screen.
    """
    globalLogBeginner.beginLoggingTo([log_observer(config_dir)], redirectStandardIO=True)


# -- the screen -----------------------------------------------------------------------


def _colour_wanted(options: Options) -> bool:
    return not options["no-color"] and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def run_screen(reactor: Any, options: Options, profile: Profile, nick: str, config_dir: Path) -> int:
    """Run the chat screen until /quit; returns the exit status."""
    identity, known_peers, seen_mail = profile
    server = choose_server(options, config_dir)
    outcome: list[int] = []

    with raw_terminal(0, 1):
        width, height = terminal_size(1)
        screen = ChatTerminal(colour=_colour_wanted(options), width=width, height=height)
        stdio = StandardIO(ChatServerProtocol(lambda: screen), reactor=reactor)

        def stop() -> None:
            if reactor.running:
                reactor.stop()

        def finish(status: int) -> None:
            """Flush what is on its way to the screen, then stop."""
            if outcome:
                return
            outcome.append(status)
            screen.finish()
            stdio.loseConnection()
            reactor.callLater(2.0, stop)

        controller = ChatController(screen, Presenter(), reactor, server.label, finish)
        screen.on_line = controller.handle_line
        screen.on_interrupt = controller.quit
        screen.on_lost = lambda: stop() if outcome else controller.quit()

        def registered(client: library.ChatClient) -> library.ChatClient:
            remember_nick(config_dir, client.nick)  # asked once, then known
            remember_server(config_dir, server)  # `relaychat` alone comes back here
            return client

        def connect(accept_relay_id: bytes | None = None) -> Deferred[Any]:
            d = library.connect(reactor, server.endpoint(reactor), identity, nick, known_peers, seen_mail=seen_mail,
                                address=library.relay_address(server.label), accept_relay_id=accept_relay_id)
            return d.addCallback(registered)

        def resized(signum: int, frame: object) -> None:
            reactor.callFromThread(lambda: screen.terminalSize(*terminal_size(1)))

        def terminated(signum: int, frame: object) -> None:
            """SIGTERM: leave as /quit does (the relay is told); a second one stops at once."""
            if outcome:
                reactor.callFromThread(stop)
            else:
                reactor.callFromThread(controller.quit)

        previous = signal.signal(signal.SIGWINCH, resized)
        try:
            reactor.callWhenRunning(controller.start, connect, nick)
            # After the reactor's own handlers are installed, so ours is the one that runs.
            reactor.callWhenRunning(signal.signal, signal.SIGTERM, terminated)
            reactor.run()
        finally:
            signal.signal(signal.SIGWINCH, previous)
    return outcome[0] if outcome else 1


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``relaychat [options]``."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> int:
    """Ask what must be asked, in cooked mode; then run the screen. Returns the exit status."""
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        _say(f"{e}\nTry: relaychat --help")
        return 2
    if not (os.isatty(0) and os.isatty(1)):
        _say("the chat screen needs a terminal (standard input and output must be a TTY).")
        return 2
    config_dir = Path(options["config-dir"] or keyfiles.default_config_dir()).expanduser()
    nick = options["nick"] or ask_nick(config_dir)
    if nick is None:
        return 1
    profile = open_profile(config_dir, options["passphrase"], rotate=options["rotate-static-key"])
    if profile is None:
        return 1
    try:
        start_logging(config_dir)
    except OSError as e:
        _say(f"Cannot write the log in {config_dir}: {e.strerror}.")
        return 1
    from twisted.internet import reactor

    try:
        return run_screen(reactor, options, profile, nick, config_dir)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


if __name__ == "__main__":
    main()
