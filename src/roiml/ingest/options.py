"""The choices the ingest commands take: file format, real-sales source, market level.

``roiml data --help`` shows them as option types. The modules that use them
(:mod:`roiml.ingest.read`, :mod:`roiml.ingest.real_sales`) import Arrow, NumPy and the ORM at
the top, seconds a help page need not pay (issue 17), so the enums live here and those modules
re-export them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FileFormat", "MarketLevel", "RealSalesSource"]


class FileFormat(StrEnum):
    """The file formats the importer reads."""

    CSV = "csv"
    PARQUET = "parquet"


class RealSalesSource(StrEnum):
    """The real data sets that can be converted."""

    KC_HOUSE_SALES = "kc-house-sales"
    SEATTLE_SALES = "seattle-sales"


class MarketLevel(StrEnum):
    """What ``market_id`` holds: the sale's local area, or one id for the whole data set."""

    LOCAL = "local"
    REGION = "region"
