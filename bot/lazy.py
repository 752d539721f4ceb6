"""Modules imported on first use, not at start: the `kubernetes` package loads ~800 generated
modules (about 0.4 s and 45 MB) that a replica answering only probes, acks and Alertmanager
never touches until its first Kubernetes call.

`client = lazy_module("kubernetes.client")` binds a module object whose first attribute read
imports the real module; type checkers see the real import (under `TYPE_CHECKING`).

That first read may come from the event loop (a handler reading `kube.apps`), where the import
would hold every ack and every notification for its whole length (~1 s on a small machine, on
the first run after a start). The dispatcher awaits `import_lazy_modules()` before it calls a
handler: the imports run in a worker thread, and the loop keeps answering meanwhile.

`httpx`, which several clients and handlers use for their HTTP calls, is one such module here:
`from bot.lazy import httpx`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

__all__ = ["httpx", "import_lazy_modules", "import_module", "lazy_module"]

# Reentrant: a module imported under it (`import_module`) may read a lazy module's attribute
# as it loads, which imports that one in the same thread.
_IMPORT_LOCK = threading.RLock()
_MODULES: list[_LazyModule] = []


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attribute: str) -> Any:
        # Only called for what is not in __dict__ yet: the first read of anything imports.
        return getattr(self._lazy_import(), attribute)

    def _lazy_import(self) -> ModuleType:
        target = self.__dict__["_lazy_target"]
        with _IMPORT_LOCK:
            if self.__dict__.get("_lazy_imported"):  # imported while this thread waited
                return importlib.import_module(target)
            module = _import(target)
            self.__dict__.update(module.__dict__)
            self.__dict__["_lazy_imported"] = True
        return module


def _import(name: str) -> ModuleType:
    with _collector_paused():
        module = importlib.import_module(name)
        # A process that keeps its start-up heap out of the collector (`serve`) keeps these
        # modules out too: they live as long as it does. Asked here, once per module: the
        # count walks every frozen object (~10 ms).
        if gc.get_freeze_count():
            gc.freeze()
    return module


async def import_module(name: str) -> ModuleType:
    """`name` imported as the lazy modules are, in a worker thread: for a module that a
    first request of some kind needs (Bolt's, bot/slack/app.py), while the loop goes on
    answering the others. Asked again, the thread finds it imported (or waits for the import
    under way, which `sys.modules` would give half made)."""
    return await asyncio.to_thread(_import_locked, name)


def _import_locked(name: str) -> ModuleType:
    with _IMPORT_LOCK:
        return _import(name)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The collector off while a module imports (each import holds `_IMPORT_LOCK`). An
    import makes objects by the hundred thousand, all alive; the collector would walk them
    in middle and full passes of 20 ms and more, each stopping every thread, the event loop's
    acks included, and free nothing."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def lazy_module(name: str) -> ModuleType:
    module = _LazyModule(name)
    _MODULES.append(module)
    return module


async def import_lazy_modules() -> None:
    """Import every lazy module not imported yet, in a worker thread (nothing to do, and no
    thread, once they all are)."""
    pending = [m for m in _MODULES if not m.__dict__.get("_lazy_imported")]
    if pending:
        # Every run that starts meanwhile waits here, on one import, for nothing more.
        await asyncio.to_thread(_import_all, pending)


def _import_all(modules: list[_LazyModule]) -> None:
    for module in modules:
        module._lazy_import()


# A process that never calls out over HTTP from a handler does not pay for httpx at start.
if TYPE_CHECKING:
    import httpx as httpx
else:
    httpx = lazy_module("httpx")
