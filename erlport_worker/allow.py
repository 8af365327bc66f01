"""``--allow``: which functions a call from Erlang may reach.

Without an allow list any importable function can be called, as with stock
ErlPort. With one, the call's module must be an allowed module or one of its
submodules, and each dotted part of the function name must be a public
attribute (no leading ``_``) that the module itself provides: defined there
(its ``__module__`` is inside the allowed names) or listed in the module's
``__all__``. Nothing resolves through an allowed module to another one: a
module object is never a step (``import os as o`` does not make ``o.system``
callable), nor is a function the module merely imported.
"""
from __future__ import annotations

import importlib
import re
import sys
from types import ModuleType
from typing import Iterable, Optional

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _imported(name: str):
    """The module ``name``, imported if need be.

    A module that is fully imported is taken straight from ``sys.modules``:
    ``importlib.import_module`` costs about 1 us even then, more than the rest
    of a trivial call's dispatch. One that another thread is still importing
    goes through importlib, which waits for it.
    """
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return importlib.import_module(name)
    return module


class NotAllowed(PermissionError):
    """The called module or function is outside what the worker may call."""


def check_module_name(name: str) -> str:
    """``name`` if it is a dotted Python module name; ValueError otherwise."""
    if not _MODULE_NAME.fullmatch(name):
        raise ValueError(f"not a module name: {name!r}")
    return name


class AllowList:
    """Resolves ``module`` + dotted ``function`` names to callables, within ``names``.

    ``names`` None allows everything (attributes are looked up with getattr
    along the dots).
    """

    def __init__(self, names: Optional[Iterable[str]]) -> None:
        self.names = None if names is None else tuple(names)

    def permits_module(self, module: str) -> bool:
        """Whether ``module`` is an allowed module or inside one."""
        return self.names is None or any(
            module == name or module.startswith(name + ".") for name in self.names)

    def resolve(self, module: str, function: str):
        """The object ``module.function`` names; NotAllowed if the list excludes it."""
        if self.names is None:
            target = _imported(module)
            if "." not in function:
                return getattr(target, function)
            for part in function.split("."):
                target = getattr(target, part)
            return target
        if not self.permits_module(module):
            raise NotAllowed(f"module {module!r} is not allowed (--allow {' '.join(self.names)})")
        target = _imported(module)
        if target.__name__ != module:
            raise NotAllowed(f"{module!r} is not the module it names ({target.__name__!r})")
        for part in function.split("."):
            target = self._step(target, part, module, function)
        return target

    def _step(self, owner, part: str, module: str, function: str):
        def refuse(why: str) -> NotAllowed:
            return NotAllowed(f"function {function!r} of module {module!r} is not allowed: {why}")

        if not part or part.startswith("_"):
            raise refuse(f"{part!r} is not a public name")
        value = getattr(owner, part)
        if isinstance(value, ModuleType):
            raise refuse(f"{part!r} is the module {value.__name__!r}")
        exported = isinstance(owner, ModuleType) and part in getattr(owner, "__all__", ())
        origin = getattr(value, "__module__", None)
        if not exported and not (isinstance(origin, str) and self.permits_module(origin)):
            raise refuse(f"{part!r} comes from {origin or 'no module'!r}, not from an allowed "
                         "module or its __all__")
        return value
