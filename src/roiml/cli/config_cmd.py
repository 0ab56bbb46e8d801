"""``roiml models config``: editable copies of the shipped training configs, outside the package.

The shipped configs are read-only defaults inside the installed package; ``init`` copies a
recipe's files (comments kept) to ``<data_dir>/configs/<tenant>/``, where ``roiml train`` reads
them before the shipped ones, or to ``--dir`` for ``roiml train --config-dir``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    console,
    handle_errors,
    open_engine,
    print_json,
    settings_or_exit,
)
from roiml.errors import TrainingError

__all__ = ["RECIPE_OPTION", "app", "check_recipe"]

app = typer.Typer(no_args_is_help=True)

_RECIPES = ("auto", "homeowners", "sales-records")
# `--recipe`, shared by `roiml train` and `roiml models config init`.
RECIPE_OPTION = typer.Option(
    "auto",
    "--recipe",
    help="homeowners (platform or simulated), sales-records (a sales file), or auto: read from "
    "the tenant's data.",
)


def check_recipe(value: str) -> str:
    """``value`` if it names a recipe or ``auto``, else a one-line error listing them."""
    if value not in _RECIPES:
        raise TrainingError(f"--recipe {value!r} is not one of {', '.join(_RECIPES)}")
    return value


@app.command("init")
@handle_errors
def init_cmd(
    tenant: str | None = TENANT_OPTION,
    recipe: str = RECIPE_OPTION,
    directory: Path | None = typer.Option(
        None, "--dir", help="Where to write (default: <data_dir>/configs/<tenant>/)."
    ),
    model: str = typer.Option("all", "--model", "-m", help="One model, or 'all' of the recipe."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already there."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write editable copies of a recipe's shipped training configs; `roiml train` reads
    <data_dir>/configs/<tenant>/ before the shipped defaults."""
    from roiml.models.config import RECIPE_MODELS, Recipe, shipped_config_text, tenant_config_dir

    check_recipe(recipe)
    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    if recipe == "auto":
        from roiml.models.recipe import choose_recipe, read_shape
        from roiml.world import truth_dir

        with open_engine(settings) as engine:
            choice = choose_recipe(
                read_shape(engine, tenant_id, truth_dir(settings.data_dir, tenant_id))
            )
        chosen, reason = choice.recipe, choice.reason
    else:
        chosen, reason = Recipe(recipe), "given by --recipe"
    names = RECIPE_MODELS[chosen] if model == "all" else (model,)
    target = directory or tenant_config_dir(settings.data_dir, tenant_id)
    texts = {name: shipped_config_text(name, chosen) for name in names}
    existing = [name for name in names if (target / f"{name}.yaml").exists()]
    if existing and not force:
        raise TrainingError(
            f"{target} already holds {', '.join(f'{n}.yaml' for n in existing)}; "
            "edit it there, or pass --force to overwrite it with the shipped defaults"
        )
    target.mkdir(parents=True, exist_ok=True)
    # soft_wrap: a path or a reason cut across lines could not be copied or searched.
    if not as_json:
        console.print(f"recipe: {chosen.value} ({reason})", soft_wrap=True)
    written = []
    for name, text in texts.items():
        path = target / f"{name}.yaml"
        path.write_text(text)
        written.append(str(path))
        if not as_json:
            console.print(f"wrote {path}", soft_wrap=True)
    if as_json:
        print_json({"recipe": chosen.value, "reason": reason, "written": written})
