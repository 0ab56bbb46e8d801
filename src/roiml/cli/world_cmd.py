"""``roiml world``: the simulated world."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate and describe the simulated world.", no_args_is_help=True)
