"""``roiml data``: load the platform's own data into the source tables."""

from __future__ import annotations

import typer

app = typer.Typer(help="Load CSV or Parquet into the source tables.", no_args_is_help=True)
