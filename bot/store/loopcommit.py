"""PostgreSQL: a group of plain inserts committed from the event loop, on connections of its
own, as one multi-row statement in autocommit (committed when the server answers it).

The commit threads (bot/store/batch.py) need the interpreter's lock after each wait on the
server, and get it only when the loop goes idle: a burst of requests is parsed to its end, then
committed while the loop waits, and the next burst waits for that commit. Sent from the loop,
a group's statement is on its way the moment the loop pass that gathered it ends, and the
server works on it while the loop parses the next group: the server's time overlaps the loop's
instead of adding to it. A group whose statement fails here for any reason goes to the commit
threads, which try it again and, if it fails again, each write alone; after a failure the loop
path rests a while, so a database that is down costs one attempt, not one a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["LoopConnections"]

log = logging.getLogger("opsbot.store")

#: Connections the loop path keeps: while it is busy, the next group grows. One: groups of
#: the intake's bench alternated 1 and 9 notifications, and a second connection (or a third)
#: only split them further, at a statement's client cost (~0.1 ms of the loop) each.
CONNECTIONS = 1
#: How long the loop path rests after a failure (the threads take every group meanwhile).
REST_S = 5.0


class LoopConnections:
    """The loop path's psycopg connections (opened on first use, in autocommit) and the one
    statement each runs at a time. On the loop: `free`, then `reserve` a connection for the
    task that will `run` the statement. `close` from any thread."""

    def __init__(self, connect_params: dict[str, Any], deadline_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._params = connect_params
        self._deadline_s = deadline_s
        self._clock = clock
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self.busy = 0  # statements reserved or running, a connection each
        self._rest_until = 0.0
        self._closed = False

    def resting(self) -> bool:
        return self._closed or self._clock() < self._rest_until

    def free(self) -> bool:
        """Whether a statement may be sent now: the path is not resting, and not every
        connection it may have is taken."""
        return not self.resting() and self.busy < CONNECTIONS

    def reserve(self) -> None:
        """Take a connection for the statement about to be sent (`run` gives it back)."""
        self.busy += 1

    async def run(self, sql: str, params: tuple[Any, ...]) -> None:
        """Send `sql` (numbered placeholders, `$1`, sent as it is: the connections' cursors
        are raw cursors; after `reserve`) and wait for the server's answer (its commit, in
        autocommit); raises whatever stopped it, after dropping the connection and resting
        the path."""
        connection = None
        try:
            async with asyncio.timeout(self._deadline_s):
                connection = self._idle.pop() if self._idle else await self._connect()
                await connection.execute(sql, params)
        except BaseException as exc:
            self._rest_until = self._clock() + REST_S
            log.info("a group commit from the loop failed (%s); the commit threads take "
                     "groups for the next %.0f s", type(exc).__name__, REST_S)
            if connection is not None:
                self._drop(connection)
            raise
        else:
            if self._closed:
                self._drop(connection)
            else:
                self._idle.append(connection)
        finally:
            self.busy -= 1

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        return await psycopg.AsyncConnection.connect(
            autocommit=True, cursor_factory=psycopg.AsyncRawCursor, **self._params)

    def _drop(self, connection: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)
        # Closed without a round trip (and from any thread): the server ends the session
        # when the socket closes.
        connection.pgconn.finish()

    def close(self) -> None:
        """Close the idle connections; a busy one is closed when its statement returns."""
        self._closed = True
        for connection in list(self._idle):
            self._drop(connection)
