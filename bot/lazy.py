"""Modules imported on first use, not at start: the `kubernetes` package loads ~800 generated
modules (about 0.4 s and 45 MB) that a replica answering only probes, acks and Alertmanager
never touches until its first Kubernetes call.

`client = lazy_module("kubernetes.client")` binds a module object whose first attribute read
imports the real module; type checkers see the real import (under `TYPE_CHECKING`)."""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]

_IMPORT_LOCK = threading.Lock()


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attribute: str) -> Any:
        # Only called for what is not in __dict__ yet: the first read of anything imports.
        with _IMPORT_LOCK:
            module = importlib.import_module(self.__dict__["_lazy_target"])
            self.__dict__.update(module.__dict__)
        return getattr(module, attribute)


def lazy_module(name: str) -> ModuleType:
    return _LazyModule(name)
