"""Refusing to start, in one line.

Whatever stops the daemon from starting (a bad configuration, a listener
that cannot listen, storage it cannot use) is raised as a
:class:`StartupError`: the operator sees one line, ``relaychat: <what is
wrong, naming the file, key or listener>``, and the process exits with
status 1; no traceback, no twistd usage text.
"""

from __future__ import annotations


class StartupError(SystemExit, Exception):
    """The daemon cannot start; ``str()`` is the one line shown.

    It is a :class:`SystemExit`, so leaving twistd (from option parsing,
    ``makeService`` or a service's start) the process exits with status 1
    printing only the message; and an :class:`Exception`, so twistd's
    start-up code sees it (a daemonizing twistd reports it to the waiting
    parent and removes its pid file).
    """

    def __init__(self, message: str) -> None:
        line = " ".join(message.split())
        super().__init__(line if line.startswith("relaychat: ") else f"relaychat: {line}")

    def __str__(self) -> str:
        return str(self.code)
