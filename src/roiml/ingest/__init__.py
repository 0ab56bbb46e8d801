"""Importing the platform's own CSV and Parquet files into the source tables."""

from roiml.ingest.importer import import_file

__all__ = ["import_file"]
