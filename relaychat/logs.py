"""The operator's log: our lines and every warning, without Twisted's chatter.

At the default level the daemon's log holds what an operator acts on:
relaychat's own lines (listeners, drains, the console's audit trail) and
any warning or error of the relay's own or of the libraries underneath.
Left out are debug events; those libraries' informational noise (a
listening port's "RelayFactory starting on 7733" beside our own listener
line, "(TCP Port 7733 Closed)", the SSH server's dozens of lines per
console login); and their warnings about what a peer sent (two lines for
each refused WebSocket handshake), which anyone could repeat to fill the
log. ``twistd relaychat --verbose`` keeps everything.

twistd builds the log observer from its own options before the plugin's
service exists, so the plugin supplies it through twistd's ``--logger``
option when the operator has not given one (:func:`install`); it writes
where twistd would (``--logfile``, ``--syslog``, stdout with
``--nodaemon``), in twistd's text format, rotating on SIGUSR1 as twistd
does. An explicit ``--logger`` wins, e.g. ``--logger
relaychat.logs.json_stdout`` for one JSON object per line on stdout.
"""

from __future__ import annotations

import re
import signal
import sys
from typing import IO, Any, Mapping, cast

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (
    FilteringLogObserver, ILogFilterPredicate, ILogObserver, LegacyLogObserverWrapper, LogLevel, PredicateResult,
    jsonFileLogObserver, textFileLogObserver,
)
from twisted.python import logfile
from twisted.python.log import ILogObserver as ILegacyLogObserver
from zope.interface import implementer

_CHATTY_NAMESPACES = ("twisted.conch.", "relaychat.admin.manhole.ConsoleFactory", "twisted.web.")
_REMOTE_CAUSED_NAMESPACES = ("autobahn.",)
"""Libraries whose warnings are about what a peer sent (autobahn: two lines,
one a warning, for every refused WebSocket handshake): anyone could fill
the log with them, and the relay answers the peer already."""
_DISCONNECT_BY_APPLICATION = 11  # RFC 4253, 11.1
_CHATTY_LEGACY = re.compile(r"^(\S+( \(TLS\))? starting on \d+|\(\w+ Port \S+ Closed\))$")
"""Legacy ``log.msg`` lines of twisted.internet's ports (no namespace of their own)."""


# constantly (PredicateResult's base) ships no type information: its three
# answers, named once with their type.
_YES: PredicateResult = PredicateResult.yes
_NO: PredicateResult = PredicateResult.no
_MAYBE: PredicateResult = PredicateResult.maybe


@implementer(ILogFilterPredicate)
class _OperatorPredicate:
    """Keep warnings and worse, and relaychat's lines; drop debug and library chatter.

    A class declaring :class:`ILogFilterPredicate` (one instance,
    :data:`operator_predicate`) rather than a function, so that the type
    checker sees what :class:`FilteringLogObserver` is given.
    """

    def __call__(self, event: Mapping[str, Any]) -> PredicateResult:
        level = event.get("log_level", LogLevel.info)
        namespace = str(event.get("log_namespace", ""))
        if _ordinary_ssh_goodbye(namespace, event):
            return _NO
        if namespace.startswith(_REMOTE_CAUSED_NAMESPACES) and level < LogLevel.error:
            return _NO
        if level >= LogLevel.warn or event.get("isError"):
            return _YES
        if level < LogLevel.info:
            return _NO
        if namespace.startswith(_CHATTY_NAMESPACES):
            return _NO
        if namespace == "log_legacy":
            message = " ".join(str(part) for part in event.get("message", ()))
            if _CHATTY_LEGACY.match(message):
                return _NO
        return _MAYBE


operator_predicate = _OperatorPredicate()


def _ordinary_ssh_goodbye(namespace: str, event: Mapping[str, Any]) -> bool:
    """conch logs an ``ssh`` client leaving normally (disconnect code 11, "by
    application") as an error; the console's own "logged out" line says it."""
    return (namespace.startswith("twisted.conch.ssh.transport.") and event.get("code") == _DISCONNECT_BY_APPLICATION
            and str(event.get("log_format", "")).startswith("Got remote error"))


def operator_filter(observer: ILogObserver, verbose: bool = False) -> ILogObserver:
    """``observer`` behind :func:`operator_predicate` (or unchanged with ``verbose``)."""
    if verbose:
        return observer
    return FilteringLogObserver(observer, [operator_predicate])


def twistd_observer(options: Mapping[str, Any], verbose: bool = False) -> ILogObserver:
    """Where twistd's own options say to log, filtered for the operator.

    The same choices as twistd's default logger: ``--syslog`` (with
    ``--prefix``), ``--logfile=-`` or ``--nodaemon`` without a log file for
    stdout, else the file (``twistd.log`` by default) rotated on SIGUSR1.
    """
    if options.get("syslog"):
        from twisted.python import syslog

        # SyslogObserver is unannotated; its emit is the legacy observer the wrapper calls
        emit = cast(ILegacyLogObserver, syslog.SyslogObserver(options.get("prefix", "")).emit)
        return operator_filter(LegacyLogObserverWrapper(emit), verbose)
    name = options.get("logfile") or ""
    if name == "-" or (options.get("nodaemon") and not name):
        if not options.get("nodaemon"):
            sys.exit("Daemons cannot log to stdout, exiting!")
        stream: IO[str] = sys.stdout
    else:
        log_file = logfile.LogFile.fromFullPath(name or "twistd.log")
        if not signal.getsignal(signal.SIGUSR1):
            def rotate(number: int, frame: Any) -> None:
                from twisted.internet import reactor

                cast(IReactorFromThreads, reactor).callFromThread(log_file.rotate)

            signal.signal(signal.SIGUSR1, rotate)
        stream = cast(IO[str], log_file)  # not an IO, but it has the write and flush that the observer calls
    return operator_filter(textFileLogObserver(stream), verbose)


class _Choice:
    """What :func:`install` was told, for :func:`operator_log` (twistd calls a
    ``--logger`` factory by name, without arguments)."""

    options: Mapping[str, Any] = {}
    verbose = False


def install(twistd_options: Any, verbose: bool = False) -> None:
    """Make twistd log through :func:`operator_log`, unless ``--logger`` was given."""
    if twistd_options is None or twistd_options.get("logger"):
        return
    _Choice.options, _Choice.verbose = twistd_options, verbose
    twistd_options["logger"] = f"{__name__}.operator_log"


def operator_log() -> ILogObserver:
    """The default ``--logger`` of ``twistd relaychat``: see :func:`twistd_observer`."""
    return twistd_observer(_Choice.options, _Choice.verbose)


def json_stdout() -> ILogObserver:
    """For ``twistd --logger relaychat.logs.json_stdout``: JSON lines on stdout, filtered the same way."""
    return operator_filter(jsonFileLogObserver(sys.stdout))
