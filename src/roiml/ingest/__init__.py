"""Importing the platform's own CSV and Parquet files into the source tables.

``import_file`` is loaded on first use (PEP 562): the importer pulls in pandas and SQLAlchemy,
and every ``import roiml.ingest.<module>`` (the CLI's format and source enums among them) runs
this file first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roiml.ingest.importer import import_file

__all__ = ["import_file"]


def __getattr__(name: str) -> object:
    """``import_file`` from :mod:`roiml.ingest.importer`, imported when first asked for."""
    if name == "import_file":
        from roiml.ingest.importer import import_file

        globals()["import_file"] = import_file
        return import_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
