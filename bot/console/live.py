"""Console output from background work (alert messages and the runs they start), which must
neither cut into a command's transcript nor wait for the next command to be seen.

While a command runs it is held, and printed as soon as the command's own output ends. While the
prompt waits for a line, it is printed at once under the prompt, and the prompt is shown again
(what was already typed stays typed: the terminal keeps it, and Ctrl-R shows it again). Reading
the prompt happens in a thread of its own, so the event loop, where the alert intake and worker
run, never waits on a person.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

__all__ = ["LiveOutput", "StdinLines", "in_thread"]

T = TypeVar("T")


class LiveOutput:
    """`write` is for background work; `command()` and `read()` mark what the console does."""

    def __init__(self, write: Callable[[str], None] = print,
                 show_prompt: Callable[[str], None] | None = None) -> None:
        self._write = write
        self._show_prompt = show_prompt or _show_prompt
        self._held: list[str] = []
        self._running = False
        self._prompt: str | None = None

    def write(self, text: str) -> None:
        if self._running:
            self._held.append(text)
            return
        if self._prompt is not None:
            self._write("")  # off the prompt's line, then the prompt again below the text
            self._write(text)
            self._show_prompt(self._prompt)
            return
        self._write(text)

    @contextmanager
    def command(self) -> Iterator[None]:
        """Hold background output while the command runs; print it when it ends."""
        self._running = True
        try:
            yield
        finally:
            self._running = False
            held, self._held = self._held, []
            for text in held:
                self._write(text)

    async def read(self, read: Callable[[str], str], prompt: str) -> str:
        """`read(prompt)` in a thread, background output shown above the prompt meanwhile."""
        self._prompt = prompt
        try:
            return await in_thread(read, prompt)
        finally:
            self._prompt = None


async def in_thread(function: Callable[[str], T], argument: str) -> T:
    """`function(argument)` in a daemon thread of its own. Unlike `asyncio.to_thread`, a call
    that never returns (input() when the demo is interrupted) does not hold up the exit."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            result = function(argument)
        except BaseException as exc:  # EOFError, KeyboardInterrupt: the caller decides
            with suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
                done.set_exception(exc)
        else:
            with suppress(concurrent.futures.InvalidStateError):
                done.set_result(result)

    threading.Thread(target=run, name="opsbot-console-input", daemon=True).start()
    return await asyncio.wrap_future(done)


class StdinLines:
    """`input()` for a prompt read in a thread: lines read from file descriptor 0 with
    `os.read`. input() in a thread reads through `sys.stdin`, whose lock it holds while it
    waits, and an interpreter ending (Ctrl-C, SIGTERM) with that lock held aborts instead of
    cleaning up; os.read holds no lock."""

    def __init__(self, fd: int = 0, encoding: str | None = None) -> None:
        self._fd = fd
        self._encoding = encoding or getattr(sys.stdin, "encoding", None) or "utf-8"
        self._buffer = b""

    def __call__(self, prompt: str) -> str:
        _show_prompt(prompt)
        while b"\n" not in self._buffer:
            chunk = os.read(self._fd, 4096)
            if not chunk:  # end of input: the last line, then EOFError as input() does
                if not self._buffer:
                    raise EOFError
                chunk = b"\n"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(self._encoding, errors="replace").rstrip("\r")


def _show_prompt(prompt: str) -> None:
    sys.stdout.write(prompt)
    sys.stdout.flush()
