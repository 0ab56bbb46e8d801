"""The daily product on every date: 35 consecutive days replayed as production runs them (the
pipeline and its gate, the whole population through the batch route, monitoring the night
after) on an undrifted world raise no gate failure and no drift alert; and each injected fault
is caught on the first day it reaches the pipeline's input (half a day's sessions lost by the
gate's arrival check: it moves too few features to be seen in them on the day).

The harness is ``bench/replay.py`` (``python -m bench replay`` runs it over a year). The world
is the smallest that trains the four models and that the gate judges: it compares two days
only on at least 1,000 values of a feature.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from bench.replay import (
    CLEAN,
    FAULTS,
    DayRecord,
    GateIssue,
    ModelDay,
    Replay,
    detection,
    next_survey,
    prepare,
    replay_days,
    replay_faults,
    summarize,
)

USERS = 1200
# Across the 15th (a month of market figures published), a month's and a year's end, and
# five weekly rate surveys: no date of the window is special to the product.
FIRST = date(2024, 12, 10)
DAYS = 35
LAST = FIRST + timedelta(days=DAYS - 1)
FAULT_DAY = date(2025, 1, 2)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    root: Path = tmp_path_factory.mktemp("replay")
    prepared = prepare(root, users=USERS, first_day=FIRST, last_day=LAST, seed=7)
    yield prepared
    prepared.close()


@pytest.fixture(scope="module")
def undrifted(replay: Replay) -> list[DayRecord]:
    return replay_days(replay, CLEAN, FIRST, LAST)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_35_undrifted_days_fail_no_gate_and_raise_no_alert(
    undrifted: list[DayRecord],
) -> None:
    summary = summarize(undrifted)
    print(json.dumps(summary, indent=1))  # the evidence, shown when the test fails
    assert [r.day for r in undrifted] == [FIRST + timedelta(days=i) for i in range(DAYS)]
    assert summary["gate_failures"] == 0, summary["gate_failures_by_feature"]
    assert summary["drift_alert_days"] == 0, sorted(summary["drift_alerts_by_feature"])
    # Nor any other alert: a drifted score, an estimated metric's decay.
    assert summary["other_alert_days"] == 0, summary["other_alerts_by_day"]
    # Every day ran the whole way: gated against the day before, everyone scored, monitored.
    assert all(r.gate_compared for r in undrifted)
    assert all(r.predictions > 0 and r.prediction_errors == 0 for r in undrifted)
    assert all(len(r.models) == 4 for r in undrifted)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)  # with the undrifted replay, when run alone
@pytest.mark.parametrize(
    "names",
    [
        # The world's own shifts, in one world: the rate's features read economic_indicators
        # only, the email features email_events only, so each detection stays its own.
        ("rate_shock", "email_open_shift"),
        # Two data faults on one day: half of the day's sessions lost, the rate as a fraction.
        ("half_sessions", "rate_as_fraction"),
    ],
)
def test_each_fault_is_caught_on_the_first_day_it_reaches_the_input(
    replay: Replay, undrifted: list[DayRecord], names: tuple[str, ...]
) -> None:
    # The first Thursday of January: a weekly rate survey and a campaign send (the monthly
    # market report) on the same day. The shifts start on it; the email shift reaches the
    # input the day after (the send's opens), the rates and the data faults two days after
    # (the survey is known once its day is over).
    nominal = FAULT_DAY
    assert next_survey(replay.engine, CLEAN, nominal) == nominal
    found = replay_faults(replay, [FAULTS[n] for n in names], nominal, 0, control=undrifted)
    print(json.dumps(found, indent=1))
    delays = {v["fault"]: v["delay_days"] for v in found}
    assert {v["fault"]: v["before"] for v in found} == {name: [] for name in names}
    assert delays == dict.fromkeys(names, 0), delays


def _day(day: date, gate: tuple[str, ...] = (), drift: tuple[str, ...] = ()) -> DayRecord:
    issues = [GateIssue(f, "shift", "") for f in gate]
    models = {"m": ModelDay("DRIFT" if drift else "OK", 10, list(drift), [])}
    return DayRecord(day, not gate, True, issues, "", [], 10, 0, models, {})


def test_detection_counts_related_flags_from_the_start_beyond_the_undrifted_twin() -> None:
    fault, start = FAULTS["half_sessions"], date(2025, 1, 4)
    days = [start + timedelta(days=i) for i in range(-1, 3)]
    records = [
        _day(days[0], drift=("session_count_30d",)),  # before the start: reported as such
        _day(days[1], gate=("mortgage_rate_30y",), drift=("session_count_7d",)),
        _day(days[2], drift=("session_count_7d",)),
        _day(days[3]),
    ]
    # The undrifted world flagged session_count_7d on the start day too: not the fault's.
    control = [_day(days[1], drift=("session_count_7d",))]
    found = detection(records, fault, start, control)
    assert found["before"] == [{"day": "2025-01-03", "gate": [], "drift": ["session_count_30d"]}]
    assert (found["day"], found["delay_days"], found["raw_day"]) == ("2025-01-05", 1, "2025-01-04")
    assert found["drift"] == ["session_count_7d"] and found["gate"] == []
    assert detection(records[3:], fault, start)["day"] is None
