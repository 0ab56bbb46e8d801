"""The ``roiml`` command line: one verb per arrow of the data flow.

Run as a program, ``roiml`` imports a verb group's module (``db_cmd``, ``data_cmd``, ...) only
when that verb is used: ``roiml --help`` lists the groups from :data:`GROUPS` without importing
any of them, and ``roiml db current`` imports ``db_cmd`` alone, so no verb pays seconds for
another group's imports (issue 17). Seen as a Typer application (``typer.main.get_command(app)``,
``app.registered_groups``, as the tests use it), every group is there as usual, imported on
first access.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import typer

# Typer 0.29 carries its own copy of click: its commands and contexts are of these classes.
from typer import _click
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.main import get_group_from_info
from typer.models import TyperInfo

from roiml.cli import demo_cmd, serve_cmd, train_cmd, tune_cmd
from roiml.cli.common import set_global_options

__all__ = ["GROUPS", "app"]

# Verb group -> (its module, which defines ``app``; the group's help). The help lives here, not
# in the module, so that ``roiml --help`` can print it without importing the module.
GROUPS: dict[str, tuple[str, str]] = {
    "db": ("roiml.cli.db_cmd", "Create, migrate and inspect the relational store."),
    "world": ("roiml.cli.world_cmd", "Generate and describe the simulated world."),
    "data": ("roiml.cli.data_cmd", "Load CSV or Parquet into the source tables."),
    "features": ("roiml.cli.features_cmd", "Feature catalog, computation and backfills."),
    "pipeline": ("roiml.cli.pipeline_cmd", "The daily feature pipeline."),
    "models": ("roiml.cli.models_cmd", "The model registry: versions, stages and their history."),
    "monitor": ("roiml.cli.monitor_cmd", "Model monitoring: drift, performance, alerts."),
}


def _group_info(name: str) -> TyperInfo:
    """The group ``name`` as ``app.add_typer(module.app, name=name, help=...)`` registers it."""
    module, help_text = GROUPS[name]
    sub_app = import_module(module).app
    assert isinstance(sub_app, typer.Typer), module
    return TyperInfo(sub_app, name=name, help=help_text)


_type_label = TyperOption.display_type_rich


def _no_label_on_flags(self: TyperOption, ctx: _click.Context) -> str | None:
    """The type column of an option's help row, empty for a flag: Typer 0.29 writes
    ``<bool>`` beside every flag (``--json``, ``--help``), which says nothing a flag does not."""
    return None if getattr(self, "is_flag", False) else _type_label(self, ctx)


TyperOption.display_type_rich = _no_label_on_flags  # type: ignore[method-assign]


class _Placeholder(TyperCommand):
    """A verb group not imported yet: its name and help, for the root's command list."""


class _RootGroup(TyperGroup):
    """The root command: each verb group is a placeholder until a command line names it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, help_text) in GROUPS.items():
            # Built from app.registered_groups (tests), the real groups are already here.
            self.commands.setdefault(name, _Placeholder(name, help=help_text))

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        """Import the named verb group's module and build its command before resolving it."""
        if args and isinstance(self.commands.get(args[0]), _Placeholder):
            self.commands[args[0]] = get_group_from_info(
                _group_info(args[0]),
                pretty_exceptions_short=app.pretty_exceptions_short,
                suggest_commands=self.suggest_commands,
                rich_markup_mode=self.rich_markup_mode,
            )
        return super().resolve_command(ctx, args)


class _RoimlTyper(typer.Typer):
    """The root Typer application, whose verb groups are imported when first needed."""

    def __init__(self, **kwargs: Any) -> None:
        self._groups: list[TyperInfo] | None = None
        super().__init__(cls=_RootGroup, **kwargs)

    @property
    def registered_groups(self) -> list[TyperInfo]:
        """Every verb group, as ``add_typer`` would have registered it (imports them all)."""
        if self._groups is None:
            self._groups = [_group_info(name) for name in GROUPS]
        return self._groups

    @registered_groups.setter
    def registered_groups(self, groups: list[TyperInfo]) -> None:
        # typer.Typer.__init__ starts the list empty; an empty list here means "not loaded".
        self._groups = groups or None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run as the ``roiml`` program: build the root with placeholders, then run it.

        Typer's own ``__call__`` also installs its pretty-exception hook, which this app
        disables (``pretty_exceptions_enable=False``); so building and calling the command is
        all it does here.
        """
        loaded, self._groups = self._groups, []  # no group: _RootGroup adds placeholders
        try:
            command = typer.main.get_command(self)
        finally:
            self._groups = loaded
        return command(*args, **kwargs)


app = _RoimlTyper(
    name="roiml",
    help="roiml: point-in-time features, four models, explained serving and monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"roiml {version('roiml')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("roiml (not installed: no version recorded)")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print roiml's version and exit.",
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        metavar="DIR",
        help="Data directory of every verb (default: ROIML_DATA_DIR, else ./data).",
    ),
    tenant: str | None = typer.Option(
        None,
        "--tenant",
        metavar="TENANT",
        help="Tenant of every verb (default: ROIML_TENANT_ID, else demo); a verb's own "
        "--tenant wins.",
    ),
) -> None:
    """roiml: point-in-time features, four models, explained serving and monitoring."""
    set_global_options(data_dir, tenant)


app.command("train")(train_cmd.train)
app.command("tune")(tune_cmd.tune)
app.command("serve")(serve_cmd.serve)
app.command("demo")(demo_cmd.demo)


if __name__ == "__main__":  # pragma: no cover
    app()
