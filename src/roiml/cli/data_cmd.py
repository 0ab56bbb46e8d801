"""``roiml data``: load the platform's own data into the source tables."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from roiml.cli.common import (
    JSON_OPTION,
    console,
    err_console,
    handle_errors,
    open_engine,
    print_json,
    settings_or_exit,
)
from roiml.db import SOURCE_TABLES
from roiml.ingest.options import FileFormat, MarketLevel, RealSalesSource

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


@app.command("import")
@handle_errors
def import_cmd(
    table: str = typer.Argument(..., help=f"Source table: {', '.join(SOURCE_TABLES)}."),
    file: Path = typer.Argument(..., help="CSV (header line first) or Parquet file."),
    more: list[str] | None = typer.Argument(
        None,
        metavar="[TABLE FILE]...",
        help="More files of the same import, as TABLE FILE pairs: all are written, or none; "
        "a reference may name a row of another file (users before properties before "
        "transactions, whatever the order given).",
    ),
    tenant: str | None = typer.Option(
        None, help="Tenant of the rows (default: roiml --tenant, else ROIML_TENANT_ID)."
    ),
    file_format: FileFormat | None = typer.Option(
        None, "--format", help="File format (default: from the suffix .csv, .parquet or .pq)."
    ),
    url: str | None = typer.Option(None, help="Database URL (default: ROIML_DATABASE_URL)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate FILE against TABLE's contract (and the tenant's declared columns), then write all
    of it or, on any error, nothing."""
    # The importer (pandas, SQLAlchemy) only when importing.
    from roiml.errors import ImportValidationError
    from roiml.ingest.contract import table_contract
    from roiml.ingest.extensions import load_tenant_contract
    from roiml.ingest.importer import import_files

    extra = more or []
    if len(extra) % 2:
        raise ImportValidationError(
            f"{extra[-1]!r} has no file: give more files as TABLE FILE pairs, e.g. "
            "`roiml data import users users.csv properties properties.csv`"
        )
    files = [(table, file), *((t, Path(f)) for t, f in zip(extra[::2], extra[1::2], strict=True))]
    for name, _ in files:
        table_contract(name)  # an unknown table fails before any connection is made
    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    # A malformed contract fails here too, before any connection is made.
    extensions = load_tenant_contract(settings.data_dir, tenant_id)
    started = time.perf_counter()
    with open_engine(settings, url) as engine:
        written = import_files(engine, files, tenant_id, file_format, extensions=extensions)
    elapsed = time.perf_counter() - started
    if as_json:
        print_json(
            {
                "tenant": tenant_id,
                "files": [
                    {"table": name, "file": str(path), "rows": count}
                    for (name, path), count in zip(files, written, strict=True)
                ],
                "seconds": round(elapsed, 3),
            }
        )
        return
    took = f" in {elapsed:.2f} s" if len(files) == 1 else ""
    for (name, path), count in zip(files, written, strict=True):
        rows = "row" if count == 1 else "rows"
        console.print(
            f"{name}: wrote {count:,} {rows} from {path.name} for tenant {tenant_id}{took}",
            highlight=False,
        )
    if len(files) > 1:
        console.print(f"one import of {len(files)} files in {elapsed:.2f} s", highlight=False)


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
    as_json: bool = JSON_OPTION,
) -> None:
    """Convert a real public house-sales data set into files for `roiml data import`."""
    from roiml.ingest.real_sales import convert_real_sales, default_input

    if input_path is None and source is RealSalesSource.SEATTLE_SALES:
        input_path = default_input(source, settings_or_exit().data_dir)
    started = time.perf_counter()
    converted = convert_real_sales(
        source,
        output,
        path=input_path,
        file_format=file_format,
        market_level=market,
        limit=limit,
    )
    elapsed = time.perf_counter() - started
    if as_json:
        print_json(
            {
                "source": str(source),
                "files": {table: str(path) for table, path in converted.files.items()},
                "contract": str(converted.contract),
                "seconds": round(elapsed, 3),
            }
        )
        return
    console.print(
        f"{source}: wrote {len(converted.files)} files and {converted.contract.name} to {output} "
        f"in {elapsed:.2f} s"
    )
    console.print("declare the extra columns, then import the files, into a tenant of their own:")
    pairs = " ".join(f"{table} {path}" for table, path in converted.files.items())
    for line in (
        f"roiml data contract add --file {converted.contract} --tenant TENANT",
        f"roiml data import {pairs} --tenant TENANT",
    ):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


# ---- roiml data contract ------------------------------------------------------------------------

contract_app = typer.Typer(
    no_args_is_help=True,
    help="Declare the columns a tenant's files add to the source tables (docs/DATA_CONTRACT.md).",
)
app.add_typer(contract_app, name="contract")

_TENANT = typer.Option(
    None, help="Tenant whose contract this is (default: roiml --tenant, else ROIML_TENANT_ID)."
)
_DECLARED_TYPES = "integer, float, boolean, string, date or datetime"


def _contract_target(tenant: str | None) -> tuple[Path, str]:
    """The data directory and the tenant a contract verb works on."""
    settings = settings_or_exit()
    return settings.data_dir, tenant or settings.tenant_id


@contract_app.command("add")
@handle_errors
def contract_add_cmd(
    table: str | None = typer.Argument(
        None, help="Table the column extends (users, properties, transactions)."
    ),
    name: str | None = typer.Argument(None, help="The column's name in the files (snake_case)."),
    column_type: str | None = typer.Option(None, "--type", help=f"{_DECLARED_TYPES}."),
    categorical: bool | None = typer.Option(
        None,
        "--categorical/--numeric",
        help="How it becomes a feature (default: categorical for string and boolean columns).",
    ),
    unit: str | None = typer.Option(None, help="Unit of a numeric column, e.g. sqft or years."),
    allowed: str | None = typer.Option(
        None, help="Comma-separated values a categorical column may take, e.g. a,b,c."
    ),
    minimum: float | None = typer.Option(None, "--min", help="Smallest valid value (numbers)."),
    maximum: float | None = typer.Option(None, "--max", help="Largest valid value (numbers)."),
    max_length: int | None = typer.Option(None, help="Longest valid text (strings; default 256)."),
    description: str = typer.Option("", help="What the column holds, for the feature catalog."),
    file: Path | None = typer.Option(
        None,
        "--file",
        help="A contract YAML file (e.g. from `roiml data real-sales`): "
        "declare all of its columns at once; nothing changes unless all are valid.",
    ),
    tenant: str | None = _TENANT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Declare column NAME of TABLE (or every column of --file) for the tenant's imports."""
    from roiml.errors import ImportValidationError
    from roiml.ingest.contract import Kind
    from roiml.ingest.extensions import (
        ColumnRole,
        ExtensionColumn,
        default_role,
        load_tenant_contract,
        parse_contract_text,
        save_tenant_contract,
    )

    data_dir, tenant_id = _contract_target(tenant)
    contract = load_tenant_contract(data_dir, tenant_id)
    single = (column_type, categorical, unit, allowed, minimum, maximum, max_length)
    if file is not None:
        if table is not None or any(v is not None for v in single) or description:
            raise ImportValidationError(
                "--file declares the columns its file lists; give either --file or "
                "TABLE NAME --type ..., not both"
            )
        if not file.is_file():
            raise ImportValidationError(f"{file} does not exist or is not a file")
        declared = parse_contract_text(file.read_text(encoding="utf-8"), tenant_id, str(file))
        updated = contract.with_columns(declared.extensions)
        for (table_name, column_name), precision in declared.precisions.items():
            updated = updated.with_precision(table_name, column_name, precision)
        added = [c.qualified_name for c in declared.extensions]
    else:
        if table is None or name is None or column_type is None:
            raise ImportValidationError(
                "give TABLE NAME --type TYPE (e.g. `roiml data contract add properties grade "
                "--type integer --numeric --min 1 --max 13`), or --file contract.yaml"
            )
        try:
            kind = Kind(column_type.lower())
        except ValueError:
            raise ImportValidationError(
                f"--type {column_type!r} is not a type; use {_DECLARED_TYPES}"
            ) from None
        role = (
            default_role(kind)
            if categorical is None
            else ColumnRole.CATEGORICAL
            if categorical
            else ColumnRole.NUMERIC
        )
        values = tuple(v.strip() for v in allowed.split(",") if v.strip()) if allowed else ()
        column = ExtensionColumn(
            table=table,
            name=name,
            kind=kind,
            role=role,
            unit=unit,
            allowed_values=values,
            minimum=minimum,
            maximum=maximum,
            max_length=max_length,
            description=description,
        )
        updated = contract.with_columns([column])
        added = [column.qualified_name]
    path = save_tenant_contract(data_dir, updated)
    if as_json:
        print_json({"tenant": tenant_id, "declared": added, "contract": str(path)})
        return
    console.print(
        f"declared {len(added)} column{'s' if len(added) != 1 else ''} for tenant {tenant_id}: "
        f"{', '.join(added)} ({path})",
        highlight=False,
        soft_wrap=True,
    )


@contract_app.command("precision")
@handle_errors
def contract_precision_cmd(
    table: str = typer.Argument(..., help="Table of the datetime column."),
    column: str = typer.Argument(..., help="A datetime column, built-in or declared."),
    precision: str = typer.Argument(
        ..., help="second (a full timestamp), day (the time is unknown) or month (the day is too)."
    ),
    tenant: str | None = _TENANT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Say how precisely COLUMN is known in the tenant's files, e.g. transactions closed_at day."""
    from roiml.errors import ImportValidationError
    from roiml.ingest.extensions import Precision, load_tenant_contract, save_tenant_contract

    data_dir, tenant_id = _contract_target(tenant)
    try:
        chosen = Precision(precision.lower())
    except ValueError:
        raise ImportValidationError(
            f"precision {precision!r} is not one; use second, day or month"
        ) from None
    contract = load_tenant_contract(data_dir, tenant_id).with_precision(table, column, chosen)
    path = save_tenant_contract(data_dir, contract)
    if as_json:
        print_json(
            {
                "tenant": tenant_id,
                "table": table,
                "column": column,
                "precision": str(chosen),
                "contract": str(path),
            }
        )
        return
    console.print(f"{table}.{column}: precision {chosen} for tenant {tenant_id} ({path})")


@contract_app.command("list")
@handle_errors
def contract_list_cmd(
    tenant: str | None = _TENANT,
    as_json: bool = JSON_OPTION,
) -> None:
    """The columns the tenant declared, and the precision of its datetime columns."""
    from rich.table import Table

    from roiml.ingest.extensions import load_tenant_contract

    data_dir, tenant_id = _contract_target(tenant)
    contract = load_tenant_contract(data_dir, tenant_id)
    document = contract.to_document()
    if as_json:
        print_json({"tenant": tenant_id, **document})
        return
    if not contract:
        console.print(
            f"tenant {tenant_id} declares no columns; add one with `roiml data contract add`"
        )
        return
    view = Table("table", "column", "type", "role", "unit", "valid values", "description")
    for column in contract.extensions:
        limits = ", ".join(column.allowed_values)
        if column.minimum is not None or column.maximum is not None:
            low = "" if column.minimum is None else f"{column.minimum:g}"
            high = "" if column.maximum is None else f"{column.maximum:g}"
            limits = f"{low}..{high}"
        elif column.length_limit is not None and not limits:
            limits = f"up to {column.length_limit} characters"
        view.add_row(
            column.table,
            column.name,
            str(column.kind),
            str(column.role),
            column.unit or "",
            limits,
            column.description,
        )
    console.print(view)
    for (table, name), precision in sorted(contract.precisions.items()):
        console.print(f"{table}.{name}: known to the {precision}", highlight=False)


@contract_app.command("remove")
@handle_errors
def contract_remove_cmd(
    table: str = typer.Argument(..., help="Table of the declared column."),
    name: str = typer.Argument(..., help="The declared column."),
    tenant: str | None = _TENANT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget column NAME of TABLE: later imports reject it; stored values stay, unused."""
    from roiml.ingest.extensions import load_tenant_contract, save_tenant_contract

    data_dir, tenant_id = _contract_target(tenant)
    contract = load_tenant_contract(data_dir, tenant_id).without(table, name)
    path = save_tenant_contract(data_dir, contract)
    if as_json:
        print_json({"tenant": tenant_id, "removed": f"{table}.{name}", "contract": str(path)})
        return
    console.print(f"removed {table}.{name} from tenant {tenant_id}'s contract ({path})")


@contract_app.command("doc")
@handle_errors
def contract_doc_cmd(
    output: Path = typer.Option(
        Path("docs/DATA_CONTRACT.md"), "--output", help="Where to write the document."
    ),
    check: bool = typer.Option(False, "--check", help="Only check the file is up to date."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate docs/DATA_CONTRACT.md from the source tables (or --check it is current)."""
    from roiml.ingest.contract_doc import render_contract

    text = render_contract()
    if check:
        current = output.exists() and output.read_text(encoding="utf-8") == text
        if as_json:
            print_json({"output": str(output), "up_to_date": current})
        elif current:
            console.print(f"{output} is up to date")
        if not current:
            err_console.print(f"{output} is stale; run `roiml data contract doc`")
            raise typer.Exit(1)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    if as_json:
        print_json({"output": str(output), "written": True})
        return
    console.print(f"wrote {output}")
