"""Deadlines for the waits every request makes and that almost never run out: its body arriving
(bot/bodies.py), its store write committing (bot/store/batch.py).

`asyncio.timeout` schedules a timer on the loop's heap and cancels it: about 8 µs a use on the
bench's machine, and an Alertmanager notification made two, some 2% of the intake's time. A
`Deadline` costs two dictionary operations: each loop has one timer that looks at the armed
deadlines every `TICK_S`, while any is armed. A deadline runs out up to `TICK_S` late, so this is
for waits bounded in seconds, not for timing.

It ends the wait as `asyncio.timeout` does: the task is cancelled, and the cancellation becomes
`TimeoutError` on the way out of the block (a cancellation from elsewhere stays one).
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType

__all__ = ["TICK_S", "Deadline"]

#: How often a loop's armed deadlines are looked at (how late one may run out).
TICK_S = 0.05


class _Watch:
    """A loop's armed deadlines, looked at by one timer while any is armed. It holds no
    reference to its loop, which is its key in `_WATCHES` (held weakly): its pending timer
    does, from the loop's own heap."""

    def __init__(self) -> None:
        self.armed: dict[Deadline, None] = {}  # an ordered set
        self.ticking = False

    def arm(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        self.armed[deadline] = None
        if not self.ticking:
            self.ticking = True
            loop.call_later(TICK_S, self._look, loop)

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline in [d for d in self.armed if d.when <= now]:
            del self.armed[deadline]
            deadline.expire()
        if self.armed:
            loop.call_later(TICK_S, self._look, loop)
        else:
            self.ticking = False


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = \
    weakref.WeakKeyDictionary()


def _watch(loop: asyncio.AbstractEventLoop) -> _Watch:
    watch = _WATCHES.get(loop)
    if watch is None:
        watch = _WATCHES[loop] = _Watch()
    return watch


class Deadline:
    """`with Deadline(seconds):` inside a task: if the block still waits `seconds` later
    (up to `TICK_S` more), it is cancelled and `TimeoutError` is raised from it. A plain
    `with`: entering and leaving await nothing."""

    __slots__ = ("_cancelling", "_expired", "_seconds", "_task", "_watch", "when")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        self.when = loop.time() + self._seconds
        self._watch = _watch(loop)
        self._watch.arm(self, loop)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._watch.armed.pop(self, None)
        if (self._expired and exc_type is asyncio.CancelledError
                and self._task.uncancel() <= self._cancelling):
            raise TimeoutError from exc

    @property
    def expired(self) -> bool:
        """Whether the deadline ran out (the block was cancelled for it)."""
        return self._expired

    def expire(self) -> None:
        """Run out now: the block's task is cancelled (the watch calls this when it is due)."""
        self._expired = True
        self._task.cancel()
