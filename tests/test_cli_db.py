"""``roiml db``: upgrade and current through the real CLI, clean errors, --help everywhere, and
one vocabulary across the verbs (issue 21)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.main import get_command, get_command_name
from typer.testing import CliRunner, Result

from roiml.cli.main import app
from roiml.db.engine import make_engine
from roiml.db.revision import head_revision
from roiml.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean ROIML_* environment rooted in tmp_path, and fresh cached settings."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repository
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def flat(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(output.split())


def assert_clean_failure(result: Result, code: int) -> str:
    """Exit ``code`` with a single ``error:`` line on stderr and no traceback; return the line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_upgrade_twice_then_current(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    db = tmp_path / "cli" / "roiml.db"
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{db}")

    first = invoke("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"migrated empty -> {head_revision()}" in flat(first.stdout)
    assert db.exists()

    second = invoke("db", "upgrade")
    assert second.exit_code == 0, second.output
    assert "nothing to do" in flat(second.stdout)
    assert f"already at revision {head_revision()}" in flat(second.stdout)

    current = invoke("db", "current")
    assert current.exit_code == 0, current.output
    assert flat(current.stdout) == f"database: {head_revision()}; head: {head_revision()}"


def test_default_database_lives_under_data_dir(tmp_path: Path) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "roiml.db").exists()


def test_url_option_overrides_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nope")
    target = tmp_path / "by-option.db"
    result = invoke("db", "upgrade", "--url", f"sqlite:///{target}")
    assert result.exit_code == 0, result.output
    assert target.exists()


def test_current_of_an_empty_database(tmp_path: Path) -> None:
    result = invoke("db", "current", "--url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.exit_code == 0, result.output
    assert flat(result.stdout) == f"database: empty; head: {head_revision()}"


@pytest.mark.parametrize("verb", ["upgrade", "current", "grant-app-role"])
def test_database_down_exits_3_with_one_line(monkeypatch: pytest.MonkeyPatch, verb: str) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nope")
    line = assert_clean_failure(invoke("db", verb), 3)
    assert "127.0.0.1:1/nope" in line
    assert "cannot reach the database" in line
    assert "ROIML_DATABASE_URL" in line  # what to do about it


def test_password_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://postgres:hunter2@127.0.0.1:1/nope")
    line = assert_clean_failure(invoke("db", "upgrade"), 3)
    assert "hunter2" not in line
    assert "127.0.0.1:1/nope" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("postgresql://postgres@127.0.0.1:notaport/x", "not a valid SQLAlchemy URL"),
        ("mysql://u@localhost/db", "use sqlite or postgresql"),
        ("postgresql+nosuchdriver://u@localhost/db", "driver that is not available"),
    ],
)
def test_malformed_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", url)
    line = assert_clean_failure(invoke("db", "upgrade"), 2)
    assert says in line


def test_invalid_settings_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROIML_TENANT_ID", "not a slug!")
    result = invoke("db", "current")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "invalid settings" in result.stderr
    assert "tenant_id" in result.stderr
    # pydantic's "[type=..., input_value=...]" is printed literally, not eaten as rich markup.
    assert "input_value='not a slug!'" in result.stderr


def test_grant_app_role_on_sqlite_is_refused(tmp_path: Path) -> None:
    result = invoke("db", "grant-app-role", "--url", f"sqlite:///{tmp_path / 'x.db'}")
    line = assert_clean_failure(result, 2)
    assert "PostgreSQL" in line


@pytest.mark.postgres
def test_upgrade_and_grant_on_postgres(postgres_empty_url: str) -> None:
    first = invoke("db", "upgrade", "--url", postgres_empty_url)
    assert first.exit_code == 0, first.output
    assert f"-> {head_revision()}" in flat(first.stdout)
    assert "nothing to do" in flat(invoke("db", "upgrade", "--url", postgres_empty_url).stdout)

    role = f"roiml_cli_{uuid.uuid4().hex[:10]}"
    try:
        granted = invoke("db", "grant-app-role", "--url", postgres_empty_url, "--role", role)
        assert granted.exit_code == 0, granted.output
        assert f"role {role}" in flat(granted.stdout)
    finally:
        engine = make_engine(postgres_empty_url)
        with engine.begin() as conn:
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        engine.dispose()


@pytest.mark.postgres
def test_grant_app_role_rejects_bad_name_via_cli(postgres_url: str) -> None:
    # The CLI checks the connection first, so this needs a reachable server.
    result = invoke("db", "grant-app-role", "--url", postgres_url, "--role", "Bad-Name")
    line = assert_clean_failure(result, 2)
    assert "role name" in line


def walk(typer_app: typer.Typer, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of ``typer_app``: groups and their commands, recursively."""
    yield path
    for command in typer_app.registered_commands:
        assert command.callback is not None
        yield (*path, command.name or get_command_name(command.callback.__name__))
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        name = group.name or group.typer_instance.info.name
        assert isinstance(name, str), group
        yield from walk(group.typer_instance, (*path, name))


COMMAND_PATHS = list(walk(app))


def test_the_walk_finds_the_db_verbs() -> None:
    assert {("db",), ("db", "upgrade"), ("db", "current"), ("db", "grant-app-role")} <= set(
        COMMAND_PATHS
    )
    assert {("world",), ("data",)} <= set(COMMAND_PATHS)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "roiml")
def test_help_works_for_every_verb(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "Traceback" not in result.output


def test_verbs_refuse_a_database_that_is_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty.db").touch()
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["pipeline", "status"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "run `roiml db upgrade` first" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "verb", [("models", "list"), ("pipeline", "status"), ("features", "compute")]
)
def test_a_reading_verb_creates_no_database(cli_env: Path, verb: tuple[str, ...]) -> None:
    """A mistyped data directory is an error naming it, and nothing is left behind (models
    list created an empty database and its folder)."""
    data_dir = cli_env / "data"
    line = assert_clean_failure(invoke(*verb), 2)
    assert "there is no database at" in flat(line) and "roiml db upgrade" in flat(line)
    assert not data_dir.exists(), sorted(data_dir.rglob("*"))


def test_serve_refuses_a_database_that_is_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request would fail on a missing table: the server does not start."""
    started: list[object] = []
    monkeypatch.setattr("roiml.serving.server.serve", lambda *args: started.append(args))
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    line = assert_clean_failure(invoke("serve", "--port", "8765"), 2)
    assert "there is no database at" in line
    (tmp_path / "empty.db").touch()
    line = assert_clean_failure(invoke("serve", "--port", "8765"), 2)
    assert "run `roiml db upgrade` first" in line
    assert started == []


def test_serve_starts_with_a_warning_while_the_database_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API answers from the online store and spools its log while the database is away."""
    started: list[object] = []
    monkeypatch.setattr("roiml.serving.server.serve", lambda *args: started.append(args))
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nope")
    get_settings.cache_clear()
    result = invoke("serve", "--port", "8765")
    assert result.exit_code == 0, result.output
    assert "warning: cannot reach the database" in flat(result.output)
    assert len(started) == 1


def test_features_compute_of_an_unknown_entity_is_an_error(cli_env: Path) -> None:
    """The API answers 404 for an id that is no user of the tenant; the CLI used to print
    zeros and nulls for it and exit 0."""
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke("features", "compute", "--entity", "user_999999")
    line = assert_clean_failure(result, 2)
    assert "'user_999999' is not a user of tenant 'demo'" in flat(line)
    # A user of the tenant is computed as before, the unknown one beside it still refused.
    world = invoke(
        "world", "generate", "--users", "20", "--start", "2024-01-01", "--end", "2024-02-29"
    )
    assert world.exit_code == 0, world.output
    known = invoke("features", "compute", "--entity", "user_1", "--date", "2024-02-15")
    assert known.exit_code == 0, known.output
    assert '"entity_id": "user_1"' in known.stdout
    # A few entities side by side, a column each (it used to print only "pass --output").
    two = invoke("features", "compute", "--entity", "user_1", "--entity", "user_2")
    assert two.exit_code == 0, two.output
    assert "user_1" in two.stdout and "user_2" in two.stdout
    assert "doc_access_count_7d" in two.stdout and "pass --output" not in two.stdout
    both = invoke("features", "compute", "--entity", "user_1", "--entity", "ghost")
    assert "'ghost' is not a user" in flat(assert_clean_failure(both, 2))


def test_features_online_reads_the_online_store_as_it_is(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feast's online read from the CLI: each set's stored vector and its age, nothing
    computed; a set the store does not hold is shown missing; an unknown id is an error."""
    from roiml.settings import Settings
    from roiml.store.materialize import materialize_day
    from roiml.store.retrieval import FeatureStore

    assert invoke("db", "upgrade").exit_code == 0
    world = invoke(
        "world", "generate", "--users", "20", "--start", "2024-01-01", "--end", "2024-02-29"
    )
    assert world.exit_code == 0, world.output
    store = FeatureStore.from_settings(Settings(_env_file=None, data_dir=cli_env / "data"))
    day = date(2024, 2, 28)
    materialize_day(store, day, now=datetime(2024, 2, 28, 2), on_time=True)
    store.online.close()
    store.engine.dispose()
    monkeypatch.setenv("ROIML_TODAY", "2024-02-29")  # the API's clock: the vectors are fresh
    get_settings.cache_clear()
    args = ["features", "online", "--entity", "user_1", "--entity", "user_2"]
    read = invoke(*args, "--feature-set", "property", "--feature-set", "market", "--json")
    assert read.exit_code == 0, read.output
    first, second = json.loads(read.stdout)
    assert first["entity_id"] == "user_1" and second["entity_id"] == "user_2"
    stored = first["feature_sets"]["property"]
    assert stored["as_of"] == "2024-02-28T00:00:00"
    assert 24 * 3600 <= stored["age_seconds"] < 48 * 3600
    assert "property_sqft" in stored["features"] and set(first["feature_sets"]) == {
        "property",
        "market",
    }
    shown = invoke(*args)
    assert shown.exit_code == 0, shown.output
    assert "behavioral" in shown.stdout and "2024-02-28 00:00:00" in shown.stdout
    monkeypatch.setenv("ROIML_TODAY", "2024-03-30")  # past the 7-day TTL: missing, not computed
    get_settings.cache_clear()
    stale = json.loads(invoke(*args, "--json").stdout)
    assert all(v is None for v in stale[0]["feature_sets"].values())
    ghost = invoke("features", "online", "--entity", "user_1", "--entity", "ghost")
    assert "'ghost' is not a user of tenant 'demo'" in flat(assert_clean_failure(ghost, 2))
    bad = invoke("features", "online", "--entity", "user_1", "--feature-set", "nope")
    assert "the tenant's sets are" in flat(assert_clean_failure(bad, 2))


def test_pipeline_status_without_runs_says_how_to_make_one(cli_env: Path) -> None:
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke("pipeline", "status")
    assert result.exit_code == 0, result.output
    assert "no pipeline run is recorded for tenant 'demo'" in flat(result.stdout)
    assert "roiml pipeline run --date" in flat(result.stdout)


# --- one vocabulary across the verbs (issue 21) --------------------------------------------------
# Help on every option, --json on every verb that prints a result, --date for the day (old names
# still accepted, with a notice), inclusive --start/--end, and the root's --data-dir and --tenant.

# Verbs that print no result of their own: the server runs until stopped; the demo narrates its
# steps and then serves.
NO_RESULT = {("serve",), ("demo",)}


def _commands(
    command: typer.core.TyperGroup | typer.core.TyperCommand, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand]]:
    """Every leaf command of the CLI with its path."""
    if isinstance(command, typer.core.TyperGroup):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))  # type: ignore[arg-type]
    else:
        yield path, command


ROOT = get_command(app)
LEAVES = dict(_commands(ROOT))  # type: ignore[arg-type]


def test_the_walk_finds_every_verb() -> None:
    assert {("db", "current"), ("pipeline", "status"), ("features", "list"), ("train",)} <= set(
        LEAVES
    )
    assert len(LEAVES) > 30


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    missing = [
        param.name
        for param in LEAVES[path].params
        if param.param_type_name == "option" and not getattr(param, "help", None)
    ]
    assert not missing, f"roiml {' '.join(path)}: options without help: {missing}"


@pytest.mark.parametrize("path", sorted(set(LEAVES) - NO_RESULT), ids=" ".join)
def test_every_verb_that_prints_a_result_has_json(path: tuple[str, ...]) -> None:
    options = {opt for param in LEAVES[path].params for opt in getattr(param, "opts", [])}
    assert "--json" in options, f"roiml {' '.join(path)} has no --json"


def test_flags_have_no_type_label() -> None:
    """Typer labels every flag ``<bool>``; the help shows the type of options with values only."""
    shown = invoke("world", "generate", "--help").stdout
    assert "<bool>" not in shown and "<int>" in shown and "--replace" in shown


def test_the_root_has_data_dir_and_tenant_with_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    flat = " ".join(result.stdout.split())
    assert "--data-dir" in flat and "Data directory of every verb" in flat
    assert "--tenant" in flat and "Tenant of every verb" in flat


@pytest.mark.parametrize(
    ("path", "old"),
    [
        (("monitor", "run"), "--period"),
        (("features", "compute"), "--as-of"),
        (("features", "sync"), "--as-of"),
        (("models", "history"), "--at"),
        (("features", "training-set"), "--feature-sets"),
    ],
)
def test_old_option_names_are_hidden(path: tuple[str, ...], old: str) -> None:
    help_text = invoke(*path, "--help").stdout
    assert old not in help_text
    assert ("--features" if old == "--feature-sets" else "--date") in help_text


def test_global_data_dir_and_tenant_feed_the_settings(cli_env: Path) -> None:
    target = cli_env / "elsewhere"
    result = invoke("--data-dir", str(target), "db", "upgrade", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["after"]
    assert (target / "roiml.db").exists() and not (cli_env / "data").exists()

    current = invoke("--data-dir", str(target), "db", "current", "--json")
    assert current.exit_code == 0, current.output
    assert json.loads(current.stdout)["up_to_date"] is True

    # The root's tenant is the default of a verb; the verb's own --tenant wins.
    status = invoke("--data-dir", str(target), "--tenant", "acme", "pipeline", "status")
    assert "tenant 'acme'" in " ".join(status.stdout.split())
    own = invoke(
        "--data-dir", str(target), "--tenant", "acme", "pipeline", "status", "--tenant", "beta"
    )
    assert "tenant 'beta'" in " ".join(own.stdout.split())

    bad = invoke("--data-dir", str(target), "--tenant", "not a tenant", "pipeline", "status")
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output
    assert bad.stderr.strip().startswith("error: roiml --tenant: tenant_id must be")


def test_the_root_options_do_not_outlive_their_run(cli_env: Path) -> None:
    """The settings of one run (tests invoke the app many times in a process) are not the
    next run's."""
    target = cli_env / "elsewhere"
    assert invoke("--data-dir", str(target), "db", "upgrade").exit_code == 0
    result = invoke("db", "upgrade", "--json")
    assert json.loads(result.stdout)["database"].endswith(f"{cli_env}/data/roiml.db")


def test_world_end_is_inclusive_and_json_is_the_whole_stdout(cli_env: Path) -> None:
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke(
        "world", "generate", "--users", "20", "--start", "2024-01-01", "--end", "2024-02-29",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # nothing but the document on stdout
    assert report["end"] == "2024-02-29" and report["rows"]["users"] == 20
    truth = json.loads((Path(report["truth_dir"]) / "world.json").read_text())
    # The generator's end is the day after the last simulated day.
    assert truth["config"]["end"] == "2024-03-01"
    reversed_ = invoke("world", "generate", "--start", "2024-03-01", "--end", "2024-02-01")
    assert reversed_.exit_code != 0 and "--end 2024-02-01 is before --start" in reversed_.stderr

    # The old name of the day still works, with a one-line notice on stderr only.
    old = invoke("features", "compute", "--entity", "user_1", "--as-of", "2024-02-15", "--json")
    assert old.exit_code == 0, old.output
    assert old.stderr.strip() == "warning: --as-of is deprecated; use --date"
    new = invoke("features", "compute", "--entity", "user_1", "--date", "2024-02-15", "--json")
    assert json.loads(new.stdout) == json.loads(old.stdout)
    assert json.loads(new.stdout)[0]["entity_id"] == "user_1"
    assert new.stderr == ""


@pytest.mark.parametrize(
    "verb",
    [
        ("pipeline", "status"),
        ("features", "list", "--set", "temporal"),
        ("db", "current"),
        ("world", "stats"),
        ("models", "list"),
        ("data", "contract", "list"),
    ],
)
def test_json_verbs_print_one_document(cli_env: Path, verb: tuple[str, ...]) -> None:
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke(*verb, "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
