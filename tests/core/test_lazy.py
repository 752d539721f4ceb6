"""Lazy modules: imported on first use, and by `import_lazy_modules` in a worker thread, so
the first run after a start never imports on the event loop (bot/lazy.py)."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bot import lazy
from bot.lazy import import_lazy_modules, lazy_module
from bot.services import Services
from tests.core.test_dispatcher import _dispatch, test_services  # noqa: F401 (fixture)

MODULE = "opsbot_lazy_probe"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A lazy module whose import records the thread that ran it (in `IMPORTED_BY`)."""
    (tmp_path / f"{MODULE}.py").write_text(
        "import threading\nIMPORTED_BY = threading.get_ident()\nANSWER = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    module = lazy_module(MODULE)
    yield module
    lazy._MODULES.remove(module)  # type: ignore[arg-type]
    sys.modules.pop(MODULE, None)


def test_the_first_read_imports(probe: ModuleType) -> None:
    assert MODULE not in sys.modules
    assert probe.ANSWER == 42
    assert threading.get_ident() == probe.IMPORTED_BY


async def test_import_lazy_modules_imports_in_a_worker_thread(probe: ModuleType) -> None:
    assert MODULE not in sys.modules
    await import_lazy_modules()
    assert MODULE in sys.modules
    assert threading.get_ident() != probe.IMPORTED_BY  # not the event loop's thread
    assert probe.ANSWER == 42
    assert gc.get_freeze_count() == 0  # only a process that froze its heap freezes more


async def test_a_process_that_froze_its_start_up_heap_freezes_the_modules_too(
        probe: ModuleType) -> None:
    gc.freeze()  # as `serve` does once started
    try:
        await import_lazy_modules()
        imported = sys.modules[MODULE].__dict__
        assert not any(obj is imported for obj in gc.get_objects())  # frozen ones are not
    finally:
        gc.unfreeze()


async def test_a_run_imports_them_before_its_first_step(
        probe: ModuleType, test_services: Services) -> None:  # noqa: F811
    outcome, _ = await _dispatch(test_services, "echo hi")
    assert outcome.status == "succeeded"
    assert MODULE in sys.modules
    assert threading.get_ident() != sys.modules[MODULE].IMPORTED_BY


async def test_runs_that_start_together_wait_for_one_import_and_one_freeze(
        probe: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first runs after a start all wait for the same import; once it is done they go on
    at once: the heap is frozen and its size counted once, in the importing thread, never
    once per run on the event loop (each count walks every frozen object)."""
    counted: list[int] = []
    froze: list[int] = []

    class CountingGc:  # the collector as lazy.py sees it, with its two calls counted
        def __getattr__(self, name: str) -> object:
            return getattr(gc, name)

        def get_freeze_count(self) -> int:
            counted.append(threading.get_ident())
            return gc.get_freeze_count()

        def freeze(self) -> None:
            froze.append(threading.get_ident())
            gc.freeze()

    monkeypatch.setattr(lazy, "gc", CountingGc())
    gc.freeze()  # as `serve` does once started
    try:
        await asyncio.gather(*(import_lazy_modules() for _ in range(20)))
    finally:
        gc.unfreeze()
    assert probe.ANSWER == 42
    loop_thread = threading.get_ident()
    assert len(counted) == 1 and len(froze) == 1
    assert loop_thread not in counted + froze


async def test_import_module_imports_in_a_worker_thread_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "opsbot_on_demand_probe"
    (tmp_path / f"{name}.py").write_text(
        "import threading\nIMPORTED_BY = threading.get_ident()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = await lazy.import_module(name)
        assert sys.modules[name] is module
        assert threading.get_ident() != module.IMPORTED_BY  # not the event loop's thread
        assert await lazy.import_module(name) is module
        assert name not in {m.__name__ for m in lazy._MODULES}  # not one every run imports
    finally:
        sys.modules.pop(name, None)
