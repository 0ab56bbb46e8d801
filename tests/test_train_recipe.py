"""`roiml train` picks its recipe from the tenant's data and its configs from outside the
package; the periods can be given as dates."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text

from roiml.errors import TrainingError
from roiml.models.config import (
    RECIPE_MODELS,
    Recipe,
    SplitConfig,
    resolve_config,
    shipped_config_text,
    tenant_config_dir,
)
from roiml.models.dataset import sale_periods, split_by_time
from roiml.models.recipe import TenantShape, choose_recipe, read_shape
from roiml.models.train import plan_training
from roiml.settings import Settings

# --- the recipe -------------------------------------------------------------------------------


def test_a_simulated_world_is_homeowners_whatever_its_rows() -> None:
    choice = choose_recipe(TenantShape(True, 0, 10, False))
    assert choice.recipe is Recipe.HOMEOWNERS and "simulated" in choice.reason


def test_priced_purchases_without_activity_or_sellers_are_a_sales_file() -> None:
    choice = choose_recipe(TenantShape(False, 0, 2930, False))
    assert choice.recipe is Recipe.SALES_RECORDS and "2,930 priced purchases" in choice.reason


def test_sellers_with_activity_are_homeowners() -> None:
    assert choose_recipe(TenantShape(False, 12, 30, True)).recipe is Recipe.HOMEOWNERS


@pytest.mark.parametrize(
    "shape",
    [TenantShape(False, 0, 30, True), TenantShape(False, 12, 30, False)],
    ids=["activity-but-no-sellers", "sellers-but-no-activity"],
)
def test_data_that_could_be_either_names_the_flag(shape: TenantShape) -> None:
    with pytest.raises(TrainingError, match=r"pass --recipe homeowners .* --recipe sales-records"):
        choose_recipe(shape)


def test_no_priced_sale_at_all_says_what_to_import() -> None:
    with pytest.raises(TrainingError, match=r"no priced sale.*--recipe"):
        choose_recipe(TenantShape(False, 0, 0, True))


def _insert(engine: Engine, table: str, **values: object) -> None:
    columns = ", ".join(values)
    marks = ", ".join(f":{c}" for c in values)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)


def _home(engine: Engine, tenant: str, user: str, prop: str) -> None:
    at = datetime(2024, 1, 2)
    _insert(
        engine,
        "users",
        user_id=user,
        tenant_id=tenant,
        market_id="m",
        created_at=at,
        email_opt_in=False,
        is_active=True,
    )
    _insert(
        engine,
        "properties",
        property_id=prop,
        tenant_id=tenant,
        owner_user_id=user,
        market_id="m",
        property_type="SINGLE_FAMILY",
        purchased_at=at,
        purchase_price=100.0,
        is_primary_residence=True,
    )


def _sale(engine: Engine, tenant: str, user: str, prop: str, kind: str, price: float) -> None:
    at = datetime(2024, 3, 1)
    _insert(
        engine,
        "transactions",
        tenant_id=tenant,
        user_id=user,
        property_id=prop,
        transaction_type=kind,
        opened_at=at,
        closed_at=at,
        price=price,
    )


def test_read_shape_counts_one_tenant_only(sqlite_engine: Engine, tmp_path: Path) -> None:
    _home(sqlite_engine, "a", "u1", "p1")
    _home(sqlite_engine, "b", "u1", "p1")
    _sale(sqlite_engine, "a", "u1", "p1", "BUY", 100.0)
    _sale(sqlite_engine, "a", "u1", "p1", "BUY", 0.0)  # unpriced: not a value label
    _sale(sqlite_engine, "b", "u1", "p1", "SELL", 120.0)
    shape = read_shape(sqlite_engine, "a", tmp_path / "no-truth")
    assert shape == TenantShape(False, 0, 1, False)
    assert read_shape(sqlite_engine, "b", tmp_path).priced_sells == 1
    assert read_shape(sqlite_engine, "b", tmp_path).simulated  # tmp_path is a directory


# --- configs outside the package --------------------------------------------------------------


def test_the_shipped_recipes_parse_and_differ_where_they_must() -> None:
    for recipe, models in RECIPE_MODELS.items():
        for name in models:
            assert resolve_config(name, recipe).origin == "shipped"
    homeowners = resolve_config("property_value_model", Recipe.HOMEOWNERS).config
    sales = resolve_config("property_value_model", Recipe.SALES_RECORDS).config
    assert (homeowners.sale_rows, sales.sale_rows) == ("sellers", "buyers")
    assert "purchase_price" in sales.exclude_features
    with pytest.raises(TrainingError, match=r"no move_probability_model.*--recipe homeowners"):
        shipped_config_text("move_probability_model", Recipe.SALES_RECORDS)


def test_a_tenant_config_overrides_the_shipped_and_config_dir_overrides_both(
    tmp_path: Path,
) -> None:
    tenant_dir = tenant_config_dir(tmp_path / "data", "kc")
    assert tenant_dir == tmp_path / "data" / "configs" / "kc"
    tenant_dir.mkdir(parents=True)
    raw = yaml.safe_load(shipped_config_text("property_value_model", Recipe.SALES_RECORDS))
    (tenant_dir / "property_value_model.yaml").write_text(
        yaml.safe_dump({**raw, "num_boost_round": 123})
    )
    loaded = resolve_config("property_value_model", Recipe.SALES_RECORDS, tenant_dir=tenant_dir)
    assert (loaded.origin, loaded.config.num_boost_round) == ("tenant", 123)
    other = tmp_path / "exp"
    other.mkdir()
    (other / "property_value_model.yaml").write_text(yaml.safe_dump({**raw, "num_boost_round": 7}))
    given = resolve_config(
        "property_value_model", Recipe.SALES_RECORDS, config_dir=other, tenant_dir=tenant_dir
    )
    assert (given.origin, given.config.num_boost_round) == ("--config-dir", 7)
    with pytest.raises(TrainingError, match="roiml models config init --dir"):
        resolve_config("move_probability_model", config_dir=other)


def test_plan_for_a_sales_file_trains_the_value_model_only(
    sqlite_engine: Engine, settings: Settings
) -> None:
    _home(sqlite_engine, settings.tenant_id, "u1", "p1")
    _sale(sqlite_engine, settings.tenant_id, "u1", "p1", "BUY", 100.0)
    plan = plan_training(settings, sqlite_engine, settings.tenant_id)
    assert plan.recipe.recipe is Recipe.SALES_RECORDS
    assert [m.value for m in plan.configs] == ["PROPERTY_VALUE"]
    assert set(plan.left_out) == {
        "move_probability_model",
        "transaction_type_model",
        "contact_timing_model",
    }
    dated = plan_training(
        settings,
        sqlite_engine,
        settings.tenant_id,
        test_from=date(2024, 6, 1),
        valid_from=date(2024, 4, 1),
    )
    split = next(iter(dated.configs.values())).config.split
    assert (split.test_from, split.valid_from) == (date(2024, 6, 1), date(2024, 4, 1))
    with pytest.raises(TrainingError, match="valid_from 2024-07-01 is not before"):
        plan_training(
            settings,
            sqlite_engine,
            settings.tenant_id,
            test_from=date(2024, 6, 1),
            valid_from=date(2024, 7, 1),
        )


def test_undecidable_data_fails_unless_every_config_is_the_users(
    sqlite_engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # A priced SELL by a homeowner but no activity: a platform tenant or a converted file.
    _home(sqlite_engine, settings.tenant_id, "u1", "p1")
    _sale(sqlite_engine, settings.tenant_id, "u1", "p1", "SELL", 100.0)
    with pytest.raises(TrainingError, match="--recipe"):
        plan_training(settings, sqlite_engine, settings.tenant_id)
    given = tmp_path / "given"
    given.mkdir()
    (given / "property_value_model.yaml").write_text(
        shipped_config_text("property_value_model", Recipe.SALES_RECORDS)
    )
    from roiml.db.enums import ModelType

    plan = plan_training(
        settings, sqlite_engine, settings.tenant_id, [ModelType.PROPERTY_VALUE], config_dir=given
    )
    assert plan.configs[ModelType.PROPERTY_VALUE].config.sale_rows == "buyers"
    forced = plan_training(settings, sqlite_engine, settings.tenant_id, recipe=Recipe.SALES_RECORDS)
    assert forced.recipe.reason == "given by --recipe"


# --- periods by date --------------------------------------------------------------------------

END = datetime(2024, 12, 1)
FIRST = datetime(2023, 4, 1)


def test_split_by_date_starts_each_period_on_its_day() -> None:
    split = split_by_time(
        END, FIRST, 28, SplitConfig(test_from=date(2024, 9, 1), valid_from=date(2024, 6, 1))
    )
    assert split.test == (datetime(2024, 9, 1), datetime(2024, 11, 3))
    assert split.valid == (datetime(2024, 6, 1), datetime(2024, 8, 4))
    assert split.train[0] == FIRST and split.train[1] < datetime(2024, 6, 1)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (SplitConfig(test_from=date(2024, 11, 20)), "leaves no test snapshot.*on or before"),
        (
            SplitConfig(test_from=date(2024, 9, 1), valid_from=date(2024, 8, 20)),
            "not before 2024-08-04, where the 28-day purge gap",
        ),
        (
            SplitConfig(test_from=date(2024, 9, 1), valid_from=date(2023, 3, 1)),
            "leaves no training snapshot",
        ),
    ],
)
def test_bad_dates_for_the_snapshot_models_say_the_fix(split: SplitConfig, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        split_by_time(END, FIRST, 28, split)


def test_sale_periods_by_date_and_by_days() -> None:
    assert sale_periods(END, SplitConfig(test_days=60, valid_days=45)) == (
        datetime(2024, 8, 18),
        datetime(2024, 10, 2),
    )
    dated = SplitConfig(test_from=date(2024, 10, 1), valid_from=date(2024, 7, 1))
    assert sale_periods(END, dated) == (datetime(2024, 7, 1), datetime(2024, 10, 1))
    with pytest.raises(TrainingError, match=r"at or after the data's end.*2024-11-30"):
        sale_periods(END, SplitConfig(test_from=date(2024, 12, 1)))
    with pytest.raises(TrainingError, match="--valid-from 2024-11-01 is not before"):
        sale_periods(END, SplitConfig(test_days=60, valid_from=date(2024, 11, 1)))
