"""``roiml world``: generate the simulated world and print its base rates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import typer
from rich.table import Table

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    console,
    handle_errors,
    open_engine,
    print_json,
    progress,
    settings_or_exit,
)
from roiml.errors import WorldError

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


def _parse_date(value: str, option: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise WorldError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from exc


@app.command("generate")
@handle_errors
def generate_cmd(
    users: int = typer.Option(10_000, "--users", help="Number of homeowners."),
    start: str = typer.Option("2023-01-01", "--start", help="First simulated day (YYYY-MM-DD)."),
    end: str = typer.Option(
        "2024-12-31", "--end", help="Last simulated day, inclusive (YYYY-MM-DD)."
    ),
    seed: int = typer.Option(42, "--seed", help="Same seed, same world."),
    tenant: str | None = TENANT_OPTION,
    markets: int = typer.Option(12, "--markets", help="Number of housing markets."),
    replace: bool = typer.Option(False, "--replace", help="Replace the tenant's existing world."),
    shift_from: str | None = typer.Option(
        None, "--shift-from", help="Inject a shift from this day on (YYYY-MM-DD), see below."
    ),
    rate_shock: float = typer.Option(
        0.0, "--rate-shock", help="With --shift-from: mortgage rates jump by this many points."
    ),
    email_open_shift: float = typer.Option(
        0.0,
        "--email-open-shift",
        help="With --shift-from: change of the log-odds of opening an email (-1: fewer opens).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fill the source tables with a simulated world; keep its ground truth apart (Parquet).

    --shift-from with --rate-shock and/or --email-open-shift injects a drift scenario (a rate
    shock, a change in email habits) that `roiml monitor run` should flag.
    """
    # The generator (NumPy, SQLAlchemy, Arrow) only when generating, not for --help.
    from roiml.world.config import WorldConfig
    from roiml.world.generate import generate_world

    settings = settings_or_exit()
    first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
    if last < first:
        raise WorldError(f"--end {last} is before --start {first}")
    config = WorldConfig(
        users=users,
        start=first,
        # --end is the last simulated day, as in every --start/--end of roiml; the generator's
        # end is the day after it.
        end=last + timedelta(days=1),
        seed=seed,
        tenant_id=tenant or settings.tenant_id,
        markets=markets,
        shift_from=_parse_date(shift_from, "--shift-from") if shift_from else None,
        rate_shock=rate_shock,
        email_open_shift=email_open_shift,
    )
    label = f"{config.users:,} users"
    with (
        open_engine(settings) as engine,
        progress("world", config.blocks, quiet=as_json) as report_progress,
    ):
        report = generate_world(
            engine,
            settings.data_dir,
            config,
            replace=replace,
            on_block=lambda done, total: report_progress(label, done, total),
        )
    if as_json:
        print_json(
            {
                "tenant": config.tenant_id,
                "start": config.start,
                "end": last,
                "users": config.users,
                "rows": report.rows,
                "seconds": report.seconds,
                "truth_dir": str(report.truth_dir),
            }
        )
        return
    table = Table(title=f"world of tenant {config.tenant_id!r}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in report.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"seconds: {report.seconds}")
    console.print(f"ground truth: {report.truth_dir}")


@app.command("stats")
@handle_errors
def stats_cmd(
    tenant: str | None = TENANT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Row counts and base rates (moves per year, open rates, ...) of a tenant's data."""
    from roiml.world.stats import world_stats

    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        stats = world_stats(engine, settings.data_dir, tenant_id)
    if as_json:
        print_json(stats)
        return
    if not stats["rows"]["users"]:
        console.print(f"tenant {tenant_id!r} has no users; run `roiml world generate` first")
        return
    rows = Table(title=f"tenant {tenant_id!r}: rows")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in stats["rows"].items():
        rows.add_row(name, f"{count:,}")
    console.print(rows)
    if "rates" in stats:
        rates = Table(
            title=f"base rates over {stats['window']['start']} .. {stats['window']['end']}"
        )
        rates.add_column("rate")
        rates.add_column("value", justify="right")
        for name, value in stats["rates"].items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    rates.add_row(f"{name}.{sub}", str(sub_value))
            else:
                rates.add_row(name, str(value))
        for name, value in stats["transactions_in_window"].items():
            rates.add_row(f"transactions.{name}", f"{value:,}")
        console.print(rates)
    if stats.get("truth"):
        console.print("ground truth:", stats["truth"])
