"""``roiml data``: load the platform's own data into the source tables."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit
from roiml.db import SOURCE_TABLES
from roiml.ingest import import_file
from roiml.ingest.contract import table_contract
from roiml.ingest.read import FileFormat

app = typer.Typer(help="Load CSV or Parquet into the source tables.", no_args_is_help=True)


@app.command("import")
@handle_errors
def import_cmd(
    table: str = typer.Argument(..., help=f"Source table: {', '.join(SOURCE_TABLES)}."),
    file: Path = typer.Argument(..., help="CSV (header line first) or Parquet file."),
    tenant: str | None = typer.Option(None, help="Tenant of the rows (default: ROIML_TENANT_ID)."),
    file_format: FileFormat | None = typer.Option(
        None, "--format", help="File format (default: from the suffix .csv, .parquet or .pq)."
    ),
    url: str | None = typer.Option(None, help="Database URL (default: ROIML_DATABASE_URL)."),
) -> None:
    """Validate FILE against TABLE's contract, then write all of it or, on any error, nothing."""
    table_contract(table)  # an unknown table fails before any connection is made
    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    started = time.perf_counter()
    with open_engine(settings, url) as engine:
        written = import_file(engine, table, file, tenant_id, file_format)
    elapsed = time.perf_counter() - started
    rows = "row" if written == 1 else "rows"
    console.print(
        f"{table}: wrote {written:,} {rows} from {file.name} for tenant {tenant_id} "
        f"in {elapsed:.2f} s"
    )
