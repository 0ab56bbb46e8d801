"""A tenant's own contract: the declaration file, its rules, the CLI, the generated doc."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roiml.cli.main import app
from roiml.errors import ImportValidationError
from roiml.ingest.contract import Kind, Precision, table_contract
from roiml.ingest.contract_doc import render_contract
from roiml.ingest.extensions import (
    ColumnRole,
    ExtensionColumn,
    TenantContract,
    contract_path,
    load_tenant_contract,
    parse_contract_text,
    save_tenant_contract,
)
from roiml.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]

CONTRACT = """\
columns:
  - table: properties
    name: grade
    type: integer
    role: numeric
    minimum: 1
    maximum: 13
    description: building grade
  - table: properties
    name: view
    type: integer
    role: categorical
    allowed_values: [0, 1, 2, 3, 4]
  - table: properties
    name: zipcode
    type: string
    max_length: 5
  - table: transactions
    name: sale_kind
    type: string
precision:
  transactions.closed_at: month
"""


def test_contract_file_parses_whole() -> None:
    contract = parse_contract_text(CONTRACT, "kc", "kc.yaml")
    grade, view, zipcode = contract.columns("properties")
    assert (grade.kind, grade.role, grade.minimum, grade.maximum) == (
        Kind.INTEGER,
        ColumnRole.NUMERIC,
        1,
        13,
    )
    # YAML numbers become the text the importer compares; strings default to categorical.
    assert view.allowed_values == ("0", "1", "2", "3", "4")
    assert (zipcode.role, zipcode.length_limit) == (ColumnRole.CATEGORICAL, 5)
    assert [c.name for c in contract.columns("transactions")] == ["sale_kind"]
    assert contract.columns("users") == ()
    assert contract.precision("transactions", "closed_at") is Precision.MONTH
    assert contract.precision("transactions", "opened_at") is Precision.SECOND


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("minimum: 1", "minimum: 20"), ["kc.yaml line 2", "minimum 20 is above maximum 13"]),
        (("    role: numeric\n", "    rol: numeric\n"), ["kc.yaml line 5", "rol", "Extra inputs"]),
        (("name: grade", "name: sqft"), ["line 2", "sqft is a built-in column of properties"]),
        (("name: grade", "name: Grade"), ["line 2", "snake_case"]),
        (("name: grade", "name: " + "g" * 49), ["line 2", "at most 48 characters"]),
        (
            ("table: properties\n    name: grade", "table: searches\n    name: grade"),
            ["line 2", "searches"],
        ),
        (("type: integer\n    role: numeric", "type: text\n    role: numeric"), ["line 4", "type"]),
        (
            (
                "name: zipcode\n    type: string",
                "name: zipcode\n    type: string\n    role: numeric",
            ),
            ["kc.yaml line 14", "a string column cannot be numeric"],
        ),
        (
            ("transactions.closed_at: month", "transactions.user_id: month"),
            ["kc.yaml line 22", "only datetime columns take a precision"],
        ),
        (
            ("transactions.closed_at: month", "transactions.closed_at: week"),
            ["kc.yaml line 22", "precision"],
        ),
        (
            ("allowed_values: [0, 1, 2, 3, 4]", "allowed_values: [0, 1, x]"),
            ["kc.yaml line 9", "'x' is not an integer"],
        ),
        (("name: view", "name: grade"), ["grade is declared twice"]),
        (("columns:\n", "columns: [\n"), ["kc.yaml line", "not valid YAML"]),
    ],
)
def test_malformed_contract_names_file_line_and_fix(
    change: tuple[str, str], fragments: list[str]
) -> None:
    text = CONTRACT.replace(*change, 1)
    assert text != CONTRACT
    with pytest.raises(ImportValidationError) as caught:
        parse_contract_text(text, "kc", "kc.yaml")
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_empty_file_and_no_file_are_empty_contracts(tmp_path: Path) -> None:
    assert not parse_contract_text("", "kc", "kc.yaml")
    assert not load_tenant_contract(tmp_path, "kc")
    with pytest.raises(ImportValidationError, match="tenant"):
        contract_path(tmp_path, "../etc")


def test_saved_contract_loads_back_and_reloads_on_change(tmp_path: Path) -> None:
    contract = parse_contract_text(CONTRACT, "kc", "kc.yaml")
    path = save_tenant_contract(tmp_path, contract)
    assert path == tmp_path / "contracts" / "kc.yaml"
    loaded = load_tenant_contract(tmp_path, "kc")
    assert loaded == contract
    assert load_tenant_contract(tmp_path, "kc") is loaded  # cached while the file is unchanged
    smaller = loaded.without("properties", "view")
    time.sleep(0.01)
    save_tenant_contract(tmp_path, smaller)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert [c.name for c in load_tenant_contract(tmp_path, "kc").columns("properties")] == [
        "grade",
        "zipcode",
    ]
    path.write_text("columns: 3\n")
    with pytest.raises(ImportValidationError, match=r"kc\.yaml line 1: columns"):
        load_tenant_contract(tmp_path, "kc")


def test_with_columns_replaces_in_place_and_checks() -> None:
    contract = parse_contract_text(CONTRACT, "kc", "kc.yaml")
    wider = ExtensionColumn("properties", "grade", Kind.FLOAT, ColumnRole.NUMERIC, maximum=20)
    changed = contract.with_columns([wider])
    assert [c.name for c in changed.columns("properties")] == ["grade", "view", "zipcode"]
    assert changed.column("properties", "grade") == wider
    with pytest.raises(ImportValidationError, match="minimum/maximum are for integer and float"):
        contract.with_columns(
            [ExtensionColumn("users", "nick", Kind.STRING, ColumnRole.CATEGORICAL, minimum=1)]
        )
    with pytest.raises(ImportValidationError, match="not declared"):
        contract.without("users", "nick")
    assert TenantContract("kc").with_precision("properties", "sold_at", Precision.DAY)


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_data(isolated_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    isolated_env.setenv("ROIML_DATA_DIR", str(data_dir))
    isolated_env.setenv("ROIML_TENANT_ID", "kc")
    get_settings.cache_clear()
    yield data_dir


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "contract", *args])
    return result.exit_code, " ".join(result.output.split())


def test_cli_add_list_remove(cli_data: Path) -> None:
    code, out = _run(
        "add",
        "properties",
        "grade",
        "--type",
        "integer",
        "--numeric",
        "--min",
        "1",
        "--max",
        "13",
        "--description",
        "building grade",
    )
    assert code == 0, out
    assert "declared 1 column for tenant kc: properties.grade" in out
    code, out = _run(
        "add",
        "properties",
        "view",
        "--type",
        "integer",
        "--categorical",
        "--allowed",
        "0,1,2,3,4",
        "--tenant",
        "other",
    )
    assert code == 0, out
    code, out = _run("precision", "transactions", "closed_at", "day")
    assert code == 0, out
    code, out = _run("list", "--json")
    listed = json.loads(out)
    assert listed["tenant"] == "kc"
    assert [c["name"] for c in listed["columns"]] == ["grade"]
    assert listed["columns"][0]["minimum"] == 1
    assert listed["precision"] == {"transactions.closed_at": "day"}
    code, out = _run("list", "--tenant", "other", "--json")
    assert code == 0 and json.loads(out)["columns"][0]["allowed_values"] == list("01234")
    code, out = _run("list")  # the table
    assert code == 0 and "grade" in out and "1..13" in out and "known to the day" in out
    code, out = _run("remove", "properties", "grade")
    assert code == 0, out
    code, out = _run("remove", "properties", "grade")
    assert code == 4 and "properties.grade is not declared for tenant 'kc'" in out


def test_cli_add_errors_are_one_line_with_exit_4(cli_data: Path, tmp_path: Path) -> None:
    code, out = _run("add", "properties", "sqft", "--type", "integer")
    assert code == 4 and "sqft is a built-in column of properties" in out
    code, out = _run("add", "properties", "grade", "--type", "number")
    assert code == 4 and "--type 'number' is not a type" in out
    code, out = _run("add", "properties", "grade")
    assert code == 4 and "--file contract.yaml" in out
    code, out = _run("precision", "transactions", "closed_at", "week")
    assert code == 4 and "second, day or month" in out
    assert "Traceback" not in out


def test_cli_add_file_is_validated_whole(cli_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "contract.yaml"
    bad.write_text(CONTRACT.replace("maximum: 13", "maximum: 0"))
    code, out = _run("add", "--file", str(bad))
    assert code == 4 and "contract.yaml line 2" in out and "above maximum" in out
    assert not (cli_data / "contracts" / "kc.yaml").exists()  # nothing declared
    good = tmp_path / "good.yaml"
    good.write_text(CONTRACT)
    code, out = _run("add", "--file", str(good))
    assert code == 0 and "declared 4 columns" in out
    loaded = load_tenant_contract(cli_data, "kc")
    assert len(loaded.extensions) == 4
    assert loaded.precision("transactions", "closed_at") is Precision.MONTH
    code, out = _run("add", "--file", str(good), "--type", "integer")
    assert code == 4 and "not both" in out


# --- the generated document ----------------------------------------------------------------


def test_data_contract_doc_is_fresh() -> None:
    written = (ROOT / "docs" / "DATA_CONTRACT.md").read_text(encoding="utf-8")
    assert written == render_contract(), "run `roiml data contract doc` to regenerate it"


def test_doc_lists_every_column_with_its_limits() -> None:
    text = render_contract()
    for table in ("users", "properties", "transactions", "market_statistics"):
        for name, spec in table_contract(table).columns.items():
            assert f"| `{name}`" in text, (table, name)
            if spec.enum_values:
                assert ", ".join(f"`{v}`" for v in spec.enum_values) in text
    assert "| `latitude` | float |  | -90 to 90 |" in text
    assert "| `bedrooms` | integer (32-bit) |  | 0 to 50 |" in text
    assert "| `purchase_price` | float | required | > 0 |" in text
    assert "`users` |" in text  # a reference
