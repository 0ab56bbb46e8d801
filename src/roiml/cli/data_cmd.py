"""``roiml data``: load the platform's own data into the source tables."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from roiml.cli.common import console, handle_errors, open_engine, settings_or_exit
from roiml.db import SOURCE_TABLES
from roiml.ingest.options import FileFormat, MarketLevel, RealSalesSource

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


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
    # The importer (pandas, SQLAlchemy) only when importing.
    from roiml.ingest import import_file
    from roiml.ingest.contract import table_contract

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


@app.command("real-sales")
@handle_errors
def real_sales_cmd(
    source: RealSalesSource = typer.Option(
        RealSalesSource.KC_HOUSE_SALES,
        help="kc-house-sales (King County 2014-15, shipped with roiml) or seattle-sales "
        "(Seattle 2010-16, fetch it first with scripts/fetch_real_sales.sh seattle).",
    ),
    output: Path = typer.Option(..., help="Directory to write users, properties, transactions."),
    input_path: Path | None = typer.Option(
        None,
        "--input",
        help="Source file (default: the shipped file, or <data_dir>/real_sales/ for seattle).",
    ),
    file_format: FileFormat = typer.Option(FileFormat.PARQUET, "--format", help="Output format."),
    market: MarketLevel = typer.Option(
        MarketLevel.LOCAL,
        help="market_id: local = zip code or assessment area; region = one id for the set.",
    ),
    limit: int | None = typer.Option(None, min=1, help="Convert only the first N sales."),
) -> None:
    """Convert a real public house-sales data set into files for `roiml data import`."""
    from roiml.ingest.real_sales import convert_real_sales, default_input

    if input_path is None and source is RealSalesSource.SEATTLE_SALES:
        input_path = default_input(source, settings_or_exit().data_dir)
    started = time.perf_counter()
    written = convert_real_sales(
        source,
        output,
        path=input_path,
        file_format=file_format,
        market_level=market,
        limit=limit,
    )
    elapsed = time.perf_counter() - started
    console.print(f"{source}: wrote {len(written)} files to {output} in {elapsed:.2f} s")
    console.print("import them in this order, into a tenant of their own:")
    for table, path in written.items():
        console.print(
            f"  roiml data import {table} {path} --tenant TENANT", highlight=False, soft_wrap=True
        )
