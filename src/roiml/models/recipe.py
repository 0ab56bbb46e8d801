"""Which recipe fits a tenant's data: homeowners' histories, or a file of sales records.

The two differ in where a value label comes from. A platform tenant (or the simulated world)
records homeowners who sell: each priced SELL is seen from its seller's snapshots before it. A
sales file (docs/REAL_DATA.md) records priced purchases by buyers nobody observed before:
there is no SELL, no session, no document read, no email. The choice is read from the data
itself, not from how it arrived, because that is what decides whether the labels exist:

* the world's ground truth exists for the tenant: it was simulated (homeowners);
* priced SELLs of primary residences and homeowner activity (sessions, document reads or
  emails): homeowners;
* priced purchases and neither SELLs nor activity: a sales file (sales-records);
* anything else (activity but no SELL, SELLs but no activity) could be either: the caller is
  told to say which with ``--recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from roiml.errors import TrainingError
from roiml.models.config import Recipe

__all__ = ["RecipeChoice", "TenantShape", "choose_recipe", "read_shape"]

_ACTIVITY = ("platform_sessions", "document_access_events", "email_events")


@dataclass(frozen=True)
class TenantShape:
    """What the recipe is decided on: counts (activity: whether any) of the tenant's rows."""

    simulated: bool
    priced_sells: int
    priced_purchases: int
    activity: bool


@dataclass(frozen=True)
class RecipeChoice:
    """The recipe taken and the sentence saying why."""

    recipe: Recipe
    reason: str


def read_shape(engine: Engine, tenant_id: str, truth_dir: Path) -> TenantShape:
    """The counts :func:`choose_recipe` decides on, in a few indexed queries."""
    params = {"tenant": tenant_id}
    with engine.connect() as conn:
        sells: int = conn.execute(
            text(
                "SELECT count(*) FROM transactions t JOIN properties p "
                "ON p.tenant_id = t.tenant_id AND p.property_id = t.property_id "
                "WHERE t.tenant_id = :tenant AND t.transaction_type = 'SELL' AND t.price > 0 "
                "AND p.is_primary_residence"
            ),
            params,
        ).scalar_one()
        purchases: int = conn.execute(
            text(
                "SELECT count(*) FROM transactions WHERE tenant_id = :tenant "
                "AND transaction_type IN ('BUY', 'INVESTMENT') AND price > 0"
            ),
            params,
        ).scalar_one()
        # Existence, not counts: the activity tables are the largest of all.
        activity = any(
            conn.execute(
                text(f"SELECT 1 FROM {table} WHERE tenant_id = :tenant LIMIT 1"), params
            ).first()
            is not None
            for table in _ACTIVITY
        )
    return TenantShape(truth_dir.is_dir(), int(sells), int(purchases), activity)


def choose_recipe(shape: TenantShape) -> RecipeChoice:
    """The recipe for ``shape``, or a :class:`TrainingError` naming ``--recipe`` when the data
    could be either."""
    sells, purchases = shape.priced_sells, shape.priced_purchases
    if shape.simulated:
        return RecipeChoice(Recipe.HOMEOWNERS, "the tenant is a simulated world (its truth exists)")
    if sells and shape.activity:
        return RecipeChoice(
            Recipe.HOMEOWNERS,
            f"{sells:,} priced sales by homeowners whose activity is recorded",
        )
    if purchases and not sells and not shape.activity:
        return RecipeChoice(
            Recipe.SALES_RECORDS,
            f"{purchases:,} priced purchases and no homeowner activity nor SELL: a sales file",
        )
    if not sells and not purchases:
        raise TrainingError(
            "the tenant has no priced sale (a SELL or BUY with a price) to learn a value from; "
            "import transactions with prices, or pass --recipe homeowners|sales-records"
        )
    seen = (
        f"{sells:,} priced SELLs, {purchases:,} priced purchases, "
        f"{'some' if shape.activity else 'no'} homeowner activity"
    )
    raise TrainingError(
        f"cannot tell a platform tenant from a sales file ({seen}); pass "
        "--recipe homeowners (sellers' histories) or --recipe sales-records (each priced purchase)"
    )
