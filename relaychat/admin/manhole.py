"""The admin console's SSH side: key-only login into a Python shell over the live relay.

The shape is Twisted's manhole (a ``TerminalRealm`` whose terminal runs a
``ColoredManhole``), with what ``twistd manhole`` lacks for a relay:

* one credential checker only, for public keys, so the server offers no
  other method ("Permission denied (publickey)" to a password);
* host keys held per factory instance, never in class attributes that
  every factory in the process would share;
* an avatar that knows which key logged in, so the log names the admin by
  the key's fingerprint: at login, at logout, for each line typed and for
  each helper action;
* every refused login (a key not listed, another user name, a password or
  keyboard-interactive attempt, a client that gives up) logged as a
  warning with the peer's address and the offered key's fingerprint;
* non-ASCII typed at the prompt (an em dash, a smiley) kept, where
  Twisted's line editor drops every byte outside ``string.printable``.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.conch.checkers import InMemorySSHKeyDB, SSHPublicKeyChecker
from twisted.conch.error import ConchError, IgnoreAuthentication
from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.manhole import ColoredManhole, ManholeInterpreter
from twisted.conch.manhole_ssh import TerminalRealm, TerminalSession, TerminalSessionTransport, TerminalUser
from twisted.conch.ssh.common import getNS
from twisted.conch.ssh.connection import SSHConnection
from twisted.conch.ssh.factory import SSHFactory
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.userauth import SSHUserAuthServer
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from zope.interface import implementer

from relaychat.admin.keys import openssh_fingerprint

log = Logger(namespace="relaychat.admin")

USER = "admin"  # the one login name; the key, not the name, is what is checked
_LOGGED_LINE_MAX = 500


@dataclass(frozen=True)
class Admin:
    """Who logged in: the login name and the fingerprint of the key used."""

    user: str
    fingerprint: str

    def __str__(self) -> str:
        return self.fingerprint


@implementer(ICredentialsChecker)
class AdminKeyChecker:
    """Twisted's public-key checker, answering with an :class:`Admin` instead of a bare name.

    The fingerprint is taken from the very key the signature was verified
    against, so what the log says is what logged in.

    Twisted's checker answers "this key would do" to an unsigned probe of
    any key; like sshd, this one says so only for a listed key and the
    right user, so a stranger's key is refused (and logged) at once,
    before the client signs anything.
    """

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, authorized: Iterable[Key], user: str = USER) -> None:
        keys = list(authorized)
        self._user = user.encode("utf-8")
        self._blobs = frozenset(key.blob() for key in keys)
        self._checker = SSHPublicKeyChecker(InMemorySSHKeyDB({self._user: keys}))

    # The avatar id is an Admin, which the portal hands to ConsoleRealm untouched
    # (ICredentialsChecker's annotation says bytes).
    def requestAvatarId(self, credentials: Any) -> Deferred[Admin]:  # type: ignore[override]
        offered: _OfferedKey = credentials  # what credentialInterfaces admits
        if not offered.signature and (offered.username != self._user or offered.blob not in self._blobs):
            return fail(UnauthorizedLogin("Key not authorized"))
        checked: Deferred[bytes] = self._checker.requestAvatarId(credentials)
        return checked.addCallback(
            lambda user: Admin(user.decode("utf-8", "replace"), openssh_fingerprint(offered.blob)))


class _OfferedKey(Protocol):
    """The attributes that :class:`ISSHPrivateKey`'s documentation promises
    (the interface itself declares none)."""

    username: bytes
    blob: bytes
    signature: Optional[bytes]


class AuditedManhole(ColoredManhole):
    """The Python shell, logging each line typed under the admin's fingerprint.

    The helpers log what they do; this also covers plain Python typed at the
    prompt, which could change the relay without going through a helper.
    """

    BANNER = b"relaychat admin console. help() lists the helpers; Ctrl-D leaves."

    def __init__(self, namespace: dict[str, Any], admin: Admin) -> None:
        super().__init__(namespace)
        self.admin = admin
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def connectionMade(self) -> None:
        super().connectionMade()
        self.interpreter = ConsoleInterpreter(self, self.namespace)

    def terminalSize(self, width: int, height: int) -> None:
        """Redraw on a new size as Twisted does (the screen is cleared), greeting first.

        The SSH glue calls this once as the shell opens, so it is also
        where the admin is first told where they are.
        """
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.width, self.height = width, height
        self.terminal.write(self.BANNER)
        self.terminal.nextLine()
        self.drawInputLine()

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        """Put a UTF-8 character typed at the prompt into the line as one character.

        The terminal parser hands us one byte at a time and Twisted's line
        editor keeps only ``string.printable``, so every byte of ``—`` or
        ``☺`` vanished. Bytes are decoded here; each whole printable
        character becomes one element of the line buffer (so the cursor and
        backspace count it once), and the line reaches the interpreter as
        the UTF-8 it was typed in.
        """
        if isinstance(keyID, bytes) and len(keyID) == 1 and (keyID[0] >= 0x80 or self._utf8_pending()):
            for char in self._utf8.decode(keyID):
                if char.isprintable():
                    self.characterReceived(char.encode("utf-8"), False)
            return
        super().keystrokeReceived(keyID, modifier)

    def _utf8_pending(self) -> bool:
        return bool(self._utf8.getstate()[0])

    def lineReceived(self, line: bytes) -> None:
        if line.strip():
            text = _shortened(line.decode("utf-8", "replace"))
            log.info("admin {admin}: typed {line!r}", admin=self.admin.fingerprint, line=text)
        super().lineReceived(line)


class ConsoleInterpreter(ManholeInterpreter):
    """Twisted's interpreter, showing a Deferred's result as the result itself.

    A cluster-wide helper answers once the other nodes have (a Deferred);
    Twisted would print ``<Deferred #0>`` and later ``Deferred #0 called
    back: ...``. Here the admin sees that the nodes are being asked, then
    the helper's text, as for any other helper.
    """

    def displayhook(self, obj: Any) -> None:
        if not isinstance(obj, Deferred):
            super().displayhook(obj)
            return
        self.locals["_"] = obj
        waiting = [False]

        def show(result: Any) -> None:
            if result is not None:
                self.write(repr(result), waiting[0])

        def failed(failure: Failure) -> None:
            self.write(f"failed: {failure.getErrorMessage()}", waiting[0])

        obj.addCallbacks(show, failed)
        if not obj.called:
            waiting[0] = True
            self.write("(asking every node)")


class AuditedUserAuth(SSHUserAuthServer):
    """Twisted's ``ssh-userauth`` server, warning of every login it refuses.

    Twisted logs refusals at debug level only, with neither the address
    nor the key. Here each refused request is a warning naming the peer,
    the user name asked for, the method, and for a public key its
    ``SHA256:`` fingerprint (never the key itself, so a log reader can
    match it against ``ssh-keygen -l`` output without the log holding
    keys). A client that leaves having offered nothing we accept (an
    OpenSSH client told to use only passwords sends just the ``none``
    probe, then gives up) gets one warning too.
    """

    _NAME_SHOWN = 64

    def serviceStarted(self) -> None:
        super().serviceStarted()
        self._offered: Optional[bytes] = None
        self._refusals = 0
        self._logged_in = False

    def ssh_USERAUTH_REQUEST(self, packet: bytes) -> Any:
        self._offered = None
        return super().ssh_USERAUTH_REQUEST(packet)

    def auth_publickey(self, packet: bytes) -> Any:
        try:
            self._offered = getNS(packet[1:], 2)[1]
        except Exception:  # a malformed request: Twisted's own parsing will refuse it
            self._offered = None
        return super().auth_publickey(packet)

    def _cbFinishedAuth(self, result: Any) -> None:
        self._logged_in = True
        super()._cbFinishedAuth(result)

    def _ebBadAuth(self, reason: Failure) -> None:
        if not reason.check(IgnoreAuthentication) and self.method != b"none":
            self._refusals += 1
            method = self.method.decode("ascii", "replace")[: self._NAME_SHOWN]
            if reason.check(ConchError) and method != "publickey":
                why = "only public keys are accepted"
            else:
                why = reason.getErrorMessage()
            key = f" with key {openssh_fingerprint(self._offered)}" if self._offered is not None else ""
            if self._budget().allow(self.clock.seconds()):
                log.warn("admin console: refused {method} login from {peer} as {user!r}{key}: {why}",
                         method=method, peer=self._peer(), user=self._user(), key=key, why=why)
        super()._ebBadAuth(reason)

    def serviceStopped(self) -> None:
        if not self._logged_in and not self._refusals and self._budget().allow(self.clock.seconds()):
            log.warn("admin console: {peer} left without logging in (offered no public key{user})",
                     peer=self._peer(), user=f" for {self._user()!r}" if self.user is not None else "")
        super().serviceStopped()

    def _budget(self) -> WarningBudget:
        factory = getattr(self.transport, "factory", None)
        assert isinstance(factory, ConsoleFactory), "AuditedUserAuth serves ConsoleFactory's connections only"
        return factory.refusal_warnings

    def _user(self) -> str:
        return (self.user or b"").decode("utf-8", "replace")[: self._NAME_SHOWN]

    def _peer(self) -> str:
        ssh: Any = self.transport
        peer = ssh.transport.getPeer()
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if host is None:
            return "a local socket"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WarningBudget:
    """At most ``limit`` refusal warnings per ``period`` seconds; the rest are counted.

    Whoever can reach the console's port can make it refuse logins as fast
    as it can connect, and each refusal is a log line: without a bound
    that fills the operator's disk. Past the budget, refusals are counted,
    and the count is logged in one line when the next period begins.
    """

    def __init__(self, limit: int = 30, period: float = 60.0) -> None:
        self.limit = limit
        self.period = period
        self._started = float("-inf")
        self._used = 0
        self._suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self._started >= self.period:
            if self._suppressed:
                log.warn("admin console: {count} more refused logins were not logged in {period:.0f} s",
                         count=self._suppressed, period=self.period)
            self._started, self._used, self._suppressed = now, 0, 0
        if self._used < self.limit:
            self._used += 1
            return True
        self._suppressed += 1
        return False


def _shortened(text: str) -> str:
    if len(text) > _LOGGED_LINE_MAX:
        return text[:_LOGGED_LINE_MAX] + f"... ({len(text) - _LOGGED_LINE_MAX} more characters)"
    return text


def run_once(namespace: dict[str, Any], source: str) -> tuple[str, bool]:
    """Run ``source`` in ``namespace`` as the shell would; return what it printed and whether it succeeded.

    An expression's value is printed with ``repr`` (a helper's answer is
    its text); statements run as they are. It runs on the reactor thread
    like the shell, so what it prints is captured by swapping ``sys.stdout``
    for the duration.
    """
    output, ok, _ = _run(namespace, source, wait=False)
    return output, ok


def run_waiting(namespace: dict[str, Any], source: str) -> "Deferred[tuple[str, bool]]":
    """:func:`run_once`, waiting for a value that is a Deferred (a cluster-wide helper's answer)
    and printing what it fires with."""
    output, ok, later = _run(namespace, source, wait=True)
    if later is None:
        return succeed((output, ok))

    def shown(result: Any) -> tuple[str, bool]:
        return output + (repr(result) + "\n" if result is not None else ""), True

    def failed(failure: Failure) -> tuple[str, bool]:
        return output + failure.getTraceback(), False
    return later.addCallbacks(shown, failed)


def _run(namespace: dict[str, Any], source: str, wait: bool) -> tuple[str, bool, Optional[Deferred[Any]]]:
    out = io.StringIO()
    later: Optional[Deferred[Any]] = None
    try:
        with contextlib.redirect_stdout(out):
            try:
                code = compile(source, "<ssh>", "eval")
            except SyntaxError:
                exec(compile(source, "<ssh>", "exec"), namespace)
            else:
                result = eval(code, namespace)
                if wait and isinstance(result, Deferred):
                    later = result
                elif result is not None:
                    print(repr(result))
    except Exception:
        out.write(traceback.format_exc(limit=-8))
        return out.getvalue(), False, None
    return out.getvalue(), True, later


class ConsoleSessionTransport(TerminalSessionTransport):
    """Twisted's glue between the SSH channel and the terminal, ending with exit status 0.

    Twisted's closes the channel without an exit status, which ``ssh``
    reports as failure (255) even when the admin left with Ctrl-D.
    """

    def __init__(self, proto: Any, chainedProtocol: Any, avatar: Any, width: int, height: int) -> None:
        super().__init__(proto, chainedProtocol, avatar, width, height)
        chainedProtocol.transport.loseConnection = self._exit

    def _exit(self) -> None:
        self.proto.processEnded(Failure(ProcessDone(0)))


class ConsoleSession(TerminalSession):
    """A terminal session that also copes with what a real ``ssh`` sends.

    Twisted's version assumes a pty was asked for and raises on window
    changes and on end of input; a client's ``ssh -T`` or a closed stdin
    would log a traceback instead of behaving.
    """

    width, height = 80, 24

    def openShell(self, proto: Any) -> None:
        # the shell of this login (Twisted's builds chainedProtocolFactory(), a bare ServerProtocol)
        assert self.admin is not None, "ConsoleRealm sets the admin"
        terminal = ServerProtocol(AuditedManhole, self.namespace, self.admin)
        self.terminal_transport = self.transportFactory(
            proto, terminal, IConchUser(self.original), self.width, self.height
        )

    namespace: dict[str, Any] = {}
    admin: Optional[Admin] = None

    def execCommand(self, proto: Any, command: bytes) -> None:
        """``ssh -p 7736 admin@host 'stats()'``: run one line, print, exit.

        For scripts and monitoring: the line runs as if typed at the
        prompt (an expression's value is printed), is logged as typed, and
        the exit status is 0, or 1 if it raised (the traceback is printed).
        """
        line = command.decode("utf-8", "replace")
        log.info("admin {admin}: ran {line!r}", admin=str(self.admin), line=_shortened(line))
        def done(result: tuple[str, bool]) -> None:
            output, ok = result
            proto.write(output.encode("utf-8"))
            proto.processEnded(Failure(ProcessDone(0) if ok else ProcessTerminated(exitCode=1)))
        run_waiting(self.namespace, line).addCallback(done)

    def windowChanged(self, size: tuple[int, int, int, int]) -> None:
        self.height, self.width = size[:2]
        terminal = getattr(getattr(self, "terminal_transport", None), "chainedProtocol", None)
        if terminal is not None and terminal.terminalProtocol is not None:
            terminal.terminalProtocol.terminalSize(self.width, self.height)

    def eofReceived(self) -> None:
        terminal = getattr(getattr(self, "terminal_transport", None), "chainedProtocol", None)
        if terminal is not None:
            terminal.loseConnection()


@implementer(IRealm)  # TerminalRealm is one without saying so
class ConsoleRealm(TerminalRealm):
    """Gives each login its own shell, whose helpers log under that login's key.

    :param namespace_for: builds the shell's namespace for one admin.
    """

    def __init__(self, namespace_for: Callable[[Admin], dict[str, Any]]) -> None:
        super().__init__()
        self.namespace_for = namespace_for

    # The avatar id is the Admin our checker made (IRealm's annotation says bytes).
    def requestAvatar(  # type: ignore[override]
        self, avatarId: Admin, mind: object, *interfaces: Any,
    ) -> tuple[Any, Any, Callable[[], None]]:
        if IConchUser not in interfaces:
            raise NotImplementedError("the admin console only serves SSH users")
        namespace = self.namespace_for(avatarId)
        holder = Componentized()
        user = TerminalUser(holder, avatarId)
        session = ConsoleSession(holder)
        session.namespace = namespace
        session.admin = avatarId
        session.transportFactory = ConsoleSessionTransport
        holder.setComponent(IConchUser, user)
        holder.setComponent(ISession, session)
        log.info("admin {admin}: logged in as {user}", admin=avatarId.fingerprint, user=avatarId.user)
        return IConchUser, user, lambda: log.info("admin {admin}: logged out", admin=avatarId.fingerprint)


class ConsoleFactory(SSHFactory):
    """An SSH server factory whose host key belongs to this instance alone."""

    noisy = False

    def __init__(self, portal: Portal, host_key: Key) -> None:
        self.portal = portal
        self.services = {b"ssh-userauth": AuditedUserAuth, b"ssh-connection": SSHConnection}
        self.refusal_warnings = WarningBudget()
        name = host_key.sshType()
        self.publicKeys = {name: host_key.public()}
        self.privateKeys = {name: host_key}
        self.primes = None  # fixed Diffie-Hellman groups and curves only; no moduli file


def console_factory(authorized: Iterable[Key], host_key: Key,
                    namespace_for: Callable[[Admin], dict[str, Any]]) -> ConsoleFactory:
    """The SSH factory of the admin console: only the given keys log in, as ``admin``."""
    portal = Portal(ConsoleRealm(namespace_for), [AdminKeyChecker(authorized)])
    return ConsoleFactory(portal, host_key)
