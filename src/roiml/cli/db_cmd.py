"""``roiml db``: create, migrate and inspect the relational store.

Alembic and the schema are imported inside each verb: `roiml db --help` need not load them.
"""

from __future__ import annotations

import typer

from roiml.cli.common import (
    JSON_OPTION,
    console,
    handle_errors,
    open_engine,
    print_json,
    settings_or_exit,
)

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade_cmd(
    url: str | None = typer.Option(None, help="Database URL (default: ROIML_DATABASE_URL)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or migrate the database to the newest schema; running it twice changes nothing."""
    from roiml.db.migrate import current_revision, upgrade

    settings = settings_or_exit()
    with open_engine(settings, url, require_schema=False) as engine:
        before = current_revision(engine)
        after = upgrade(engine)
        shown = engine.url.render_as_string(hide_password=True)
    if as_json:
        print_json(
            {"database": shown, "before": before, "after": after, "changed": before != after}
        )
        return
    if before == after:
        console.print(f"{shown}: already at revision {after}; nothing to do")
    else:
        console.print(f"{shown}: migrated {before or 'empty'} -> {after}")


@app.command("current")
@handle_errors
def current_cmd(
    url: str | None = typer.Option(None, help="Database URL (default: ROIML_DATABASE_URL)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the schema revision of the database and the newest one shipped."""
    from roiml.db.revision import current_revision, head_revision

    settings = settings_or_exit()
    with open_engine(settings, url, require_schema=False) as engine:
        revision, head = current_revision(engine), head_revision()
    if as_json:
        print_json({"revision": revision, "head": head, "up_to_date": revision == head})
        return
    console.print(f"database: {revision or 'empty'}; head: {head}")


@app.command("grant-app-role")
@handle_errors
def grant_app_role_cmd(
    role: str | None = typer.Option(None, help="Role name (default: ROIML_APP_ROLE)."),
    password: str | None = typer.Option(None, help="Set this password on the role."),
    url: str | None = typer.Option(None, help="Database URL of the table owner."),
    as_json: bool = JSON_OPTION,
) -> None:
    """PostgreSQL only: create the application role (no RLS bypass) and grant it DML."""
    from roiml.db.roles import grant_app_role

    settings = settings_or_exit()
    with open_engine(settings, url, require_schema=False) as engine:
        grant_app_role(engine, role or settings.app_role, password)
    if as_json:
        print_json({"role": role or settings.app_role, "granted": True})
        return
    console.print(f"role {role or settings.app_role} can read and write, under row-level security")
