"""Package exports imported on first use (PEP 562), for packages whose modules are heavy.

``import roiml.pipeline.step_names`` runs ``roiml/pipeline/__init__.py`` first; if that file
imported the pipeline's steps, every light module of the package would pay for DuckDB, Arrow
and pandas (issue 17: ``roiml <verb> --help`` under a second). A package lists its exports and
gets a module ``__getattr__`` that imports each one when it is first asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    ``exports`` maps each exported name to ``"module"`` (the same name there) or
    ``"module:attribute"``. A name is imported on first access and then kept in ``namespace``,
    so later accesses are plain attribute reads.
    """
    package = namespace["__name__"]

    def getattr_(name: str) -> object:
        try:
            module, _, attribute = exports[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(import_module(module), attribute or name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return getattr_, dir_
