"""Importing the platform's own CSV and Parquet files into the source tables.

``import_file`` is loaded on first use (PEP 562): the importer pulls in pandas and SQLAlchemy,
and every ``import roiml.ingest.<module>`` (the CLI's format and source enums among them) runs
this file first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roiml.lazy import lazy_exports

if TYPE_CHECKING:
    from roiml.ingest.importer import import_file

__all__ = ["import_file"]

__getattr__, __dir__ = lazy_exports(globals(), {"import_file": "roiml.ingest.importer"})
