"""twistd plugin: ``twistd -n relaychat``. The work is in :mod:`relaychat.tap`."""

from twisted.application.service import ServiceMaker

relaychat = ServiceMaker(
    "relaychat",
    "relaychat.tap",
    "End-to-end encrypted chat relay: nickname registry, sessions, offline mail.",
    "relaychat",
)
