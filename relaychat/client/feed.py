"""Observers of one kind of event, and how much a relay can make us hold for them."""

from __future__ import annotations

from collections import deque
from typing import Callable, Generic, TypeVar

from twisted.logger import Logger

log = Logger(namespace="relaychat.client")

T = TypeVar("T")

# What a relay can make us hold before the program answers: offers past this
# are declined at once; events nobody observes yet keep only the newest 1,000
# (unobserved mail is not ACKed, so the relay delivers it again next time).
UNOBSERVED_KEPT = 1000


class Feed(Generic[T]):
    """Observers of one kind of event; events before the first observer wait for it.

    An observer that raises is logged and does not stop the others, nor the
    protocol: one buggy callback must not desynchronise a conversation.
    """

    def __init__(self) -> None:
        self._observers: list[Callable[[T], None]] = []
        self._backlog: deque[T] = deque(maxlen=UNOBSERVED_KEPT)  # a relay's flood ages out, oldest first

    def add(self, observer: Callable[[T], None]) -> None:
        self._observers.append(observer)
        backlog, self._backlog = self._backlog, deque(maxlen=UNOBSERVED_KEPT)
        for item in backlog:
            call_observer(observer, item)

    def emit(self, item: T) -> None:
        if not self._observers:
            self._backlog.append(item)
        for observer in list(self._observers):
            call_observer(observer, item)

    @property
    def observed(self) -> bool:
        return bool(self._observers)


def call_observer(observer: Callable[[T], None], item: T) -> None:
    """Call a program's observer; what it raises is logged, not passed on."""
    try:
        observer(item)
    except Exception:
        log.failure("a relaychat observer raised an exception")
