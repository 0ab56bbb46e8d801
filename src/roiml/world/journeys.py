"""Who transacts, when and how: the hazards of the story and the journeys they produce.

Each day a homeowner may *decide* to move, to refinance or to buy an investment property, with
a daily probability (hazard) driven by their latent propensity, tenure, equity, the gap between
their mortgage rate and today's rate (lock-in), recent life events, market heat and the season.
A decision starts a journey (searching, reading documents, talking to the agent) that ends at a
closing some weeks later. Competing decisions are drawn by inverse cumulative hazard, one round
per journey, so the whole block is simulated with matrix operations over (users, days).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from roiml.world.macro import Macro, year_fraction
from roiml.world.oracle import HORIZON_DAYS, undecided_move_probability
from roiml.world.population import Population

__all__ = ["MOVE_LAG", "Journeys", "LagDistribution", "journey_cells", "simulate_journeys"]

MOVE, REFINANCE, INVEST = 0, 1, 2
KIND_NAMES = np.array(["MOVE", "REFINANCE", "INVESTMENT"])
# Baseline daily hazards before calibration. Moves and investments are then scaled so that
# their hazard averaged over a reference population and the whole window hits the yearly
# targets below (about 8 % of owners move in a year, see WORLD.md); refinancing follows the
# rate environment, as refinance waves do, but its window average is capped.
BASE_HAZARD = np.array([0.075 / 365.0, 0.30 / 365.0, 0.0075 / 365.0])
TARGET_YEARLY_HAZARD = np.array([0.108, 1.0, 0.010])
REFINANCE_YEARLY_CAP = 0.03
REFERENCE_USERS = 2000
WARM_START_DAYS = 250
COOLDOWN_DAYS = np.array([365, 540, 720])
MAX_ROUNDS = 5


@dataclass(frozen=True)
class LagDistribution:
    """Days from decision to first closing: ``offset + Gamma(3, scale)``."""

    offset: float
    scale: float

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return (self.offset + rng.gamma(3.0, self.scale, size)).astype(np.int64)

    def cdf(self, days: np.ndarray) -> np.ndarray:
        """P(lag <= days); the Gamma(3) CDF has a closed form."""
        x = np.maximum(np.asarray(days, dtype=np.float64) - self.offset, 0.0) / self.scale
        return 1.0 - np.exp(-x) * (1.0 + x + 0.5 * x * x)


MOVE_LAG = LagDistribution(offset=40.0, scale=25.0)
_LAGS = (MOVE_LAG, LagDistribution(25.0, 9.0), LagDistribution(35.0, 20.0))
# P(lag <= k), k = 0 .. horizon - 1, for the oracle: lags are floored to whole days, so a lag of
# at most k days is a continuous draw below k + 1.
_ORACLE_LAG_CDF = MOVE_LAG.cdf(np.arange(1, HORIZON_DAYS + 1))


@dataclass
class Journeys:
    """The block's journeys and what they left in the source tables."""

    user: np.ndarray  # block-local user index
    kind: np.ndarray  # MOVE / REFINANCE / INVEST
    decision_day: np.ndarray  # window day (may be < 0: decided before the world starts)
    close_day: np.ndarray  # window day of the first closing (may be >= days: after the end)
    first_type: np.ndarray  # transaction type of the first closing
    buy_first: np.ndarray  # bool, moves only
    sell_only: np.ndarray  # bool, moves only
    move_hazard: np.ndarray  # (users, days) realised daily hazard of deciding to move
    life_events: np.ndarray  # (users, days) life-event boost, for the record
    transactions: pa.Table = field(repr=False)
    new_properties: pa.Table = field(repr=False)
    value_state: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    # Per journey, the day of its last closing: a move's second (the purchase after the sale,
    # or the sale after buying first), else its first.
    end_day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # (users, days) the oracle's chance of a move closing within the horizon while undecided,
    # from the hazard paths of the round each day belongs to (NaN on decided days).
    undecided_p_move: np.ndarray | None = field(repr=False, default=None)


def journey_cells(
    journeys: Journeys, n: int, days: int, kind: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (user, day): inside a journey of ``kind`` (decided, not yet closed), its decision day
    and its closing day. Built with difference arrays and cumulative sums, no loop."""
    mask = journeys.kind == kind
    users = journeys.user[mask]
    decided = journeys.decision_day[mask]
    closes = journeys.close_day[mask]
    first = np.clip(decided, 0, days)
    stop = np.clip(closes, 0, days)
    marks = np.zeros((3, n, days + 1))
    for layer, value in enumerate((np.ones(len(users)), decided, closes)):
        np.add.at(marks[layer], (users, first), value)
        np.add.at(marks[layer], (users, stop), -value)
    running = np.cumsum(marks, axis=2)[:, :, :days]
    inside = running[0] > 0.5
    return inside, np.where(inside, running[1], 0.0), np.where(inside, running[2], 0.0)


def _amortised_balance(
    amount: np.ndarray, rate: np.ndarray, term: np.ndarray, months: np.ndarray
) -> np.ndarray:
    r = np.maximum(rate, 0.01) / 1200.0
    n = term * 12.0
    p = np.clip(months, 0, n)
    growth_n = (1 + r) ** n
    return amount * (growth_n - (1 + r) ** p) / (growth_n - 1)


class _HomeState:
    """Mutable state of each user's primary home and mortgage."""

    def __init__(self, pop: Population) -> None:
        self.market = pop.market.copy()
        self.purchase_day = pop.purchase_day.copy()
        self.price = pop.purchase_price.copy()
        self.quality = pop.quality.copy()
        self.drift = pop.value_drift.copy()
        self.sqft = pop.sqft.copy()
        self.loan = pop.mortgage_amount.copy()
        self.rate = pop.mortgage_rate.copy()
        self.term = pop.term_years.astype(np.float64)
        self.loan_day = pop.purchase_day.copy()
        self.property_id = pop.properties["property_id"].to_numpy(zero_copy_only=False).copy()
        self.owns = np.ones(len(pop.market), dtype=bool)

    def value(self, macro: Macro, rows: np.ndarray, abs_days: np.ndarray) -> np.ndarray:
        """True value of each row's home on each absolute day (rows x days)."""
        market = self.market[rows][:, None]
        ratio = (
            macro.market_median[market, abs_days[None, :]]
            / macro.market_median[market[:, 0], self.purchase_day[rows]][:, None]
        )
        years = (abs_days[None, :] - self.purchase_day[rows][:, None]) / 365.25
        return self.price[rows][:, None] * ratio * np.exp(self.drift[rows][:, None] * years)

    def value_on(self, macro: Macro, rows: np.ndarray, abs_day: np.ndarray) -> np.ndarray:
        """True value of each row's home on its own absolute day (one value per row)."""
        market = self.market[rows]
        ratio = (
            macro.market_median[market, abs_day]
            / macro.market_median[market, self.purchase_day[rows]]
        )
        years = (abs_day - self.purchase_day[rows]) / 365.25
        return self.price[rows] * ratio * np.exp(self.drift[rows] * years)


def _life_events(pop: Population, days: int, rng: np.random.Generator) -> np.ndarray:
    # Marriage, a child, a new job, retirement, divorce: ~0.15 a year, each lifting the urge to
    # move for a few months. Events from a year before the start still echo into the window.
    n = len(pop.market)
    span = days + 365
    rate = 0.15 / 365.0 * (1.3 - 0.01 * np.clip(pop.age - 30, 0, 50))[:, None]
    impulses = (rng.random((n, span)) < rate) * rng.uniform(0.8, 1.8, (n, span))
    boost = np.zeros((n, span))
    decay = np.exp(-1.0 / 110.0)
    running = np.zeros(n)
    for day in range(span):  # recursion over days, vectorised over users
        running = running * decay + impulses[:, day]
        boost[:, day] = running
    return boost[:, 365:]


def _hazards(
    pop: Population,
    state: _HomeState,
    macro: Macro,
    rows: np.ndarray,
    days: int,
    life: np.ndarray,
    invest_latent: np.ndarray,
) -> np.ndarray:
    """Daily hazards (kinds, rows, days) of deciding to move, refinance, invest."""
    abs_days = macro.start_offset + np.arange(days)
    value = state.value(macro, rows, abs_days)
    tenure = (abs_days[None, :] - state.purchase_day[rows][:, None]) / 365.25
    months_paid = (abs_days[None, :] - state.loan_day[rows][:, None]) / 30.44
    balance = _amortised_balance(
        state.loan[rows][:, None], state.rate[rows][:, None], state.term[rows][:, None], months_paid
    )
    equity = np.clip(1.0 - balance / value, -0.5, 1.0)
    market_rate = macro.rate_30y[abs_days][None, :]
    # A mortgage counts until its last year: one paid off, or about to be by the time a
    # refinance would close, neither locks its owner in nor is refinanced (before, owners of a
    # loan paid off years ago refinanced it: a REFINANCE of a zero loan).
    term_months = state.term[rows][:, None] * 12.0
    has_loan = (state.loan[rows][:, None] > 0) & (months_paid < term_months - 12.0)
    rate_gap = np.where(has_loan, state.rate[rows][:, None] - market_rate, 0.0)
    heat = macro.market_heat[state.market[rows][:, None], abs_days[None, :]]
    # Spring up, autumn down: by the calendar's day of the year (1 January is 0).
    season = 0.3 * np.sin(2 * np.pi * (year_fraction(macro.origin, abs_days) - 50 / 365.25))
    season = season[None, :]
    age = pop.age[rows][:, None] + np.arange(days)[None, :] / 365.25
    tenure_effect = (
        -1.7 * np.exp(-tenure / 1.2)
        + 0.3 * np.exp(-(((tenure - 7.0) / 5.0) ** 2))
        - 0.03 * np.maximum(tenure - 15.0, 0.0)
    )
    log_move = (
        0.6 * pop.propensity[rows][:, None]
        + tenure_effect
        + 1.1 * (equity - 0.45)
        + 0.3 * np.clip(rate_gap, -4.0, 1.5)  # negative gap: locked in by a cheap mortgage
        + 0.2 * heat
        + life[rows]
        + season
        - 0.012 * (age - 45.0)
        + 0.08 * (pop.household[rows][:, None] - 3.0)
    )
    log_refi = (
        1.7 * np.clip(rate_gap - 0.9, -3.5, 2.5)
        + 0.8 * (equity - 0.3)
        - 2.5 * (months_paid < 12)
        - 30.0 * ~has_loan
    )
    log_invest = (
        0.55 * (pop.income[rows][:, None] - 3.0)
        + 1.2 * (equity - 0.45)
        + 0.25 * heat
        + 0.8 * invest_latent[rows][:, None]
        - 0.5 * (age < 32)
    )
    logs = np.stack([log_move, log_refi, log_invest])
    return BASE_HAZARD[:, None, None] * np.exp(logs)


def calibrate_hazards(
    reference: Population, macro: Macro, days: int, rng: np.random.Generator
) -> np.ndarray:
    """Per-kind multipliers that bring a reference population's mean hazard to its target.

    Computed once per world from a reference population drawn with its own seed, so every block
    shares the same constants and the world does not depend on how users are split in blocks.
    Time variation (season, rates, market heat) is kept: only the overall level is set.
    """
    rows = np.arange(len(reference.market))
    life = _life_events(reference, days, rng)
    hazards = _hazards(
        reference, _HomeState(reference), macro, rows, days, life, rng.normal(0, 1, len(rows))
    )
    mean_yearly = hazards.mean(axis=(1, 2)) * 365.0
    scale = TARGET_YEARLY_HAZARD / mean_yearly
    scale[REFINANCE] = min(1.0, REFINANCE_YEARLY_CAP / mean_yearly[REFINANCE])
    return scale


def simulate_journeys(
    pop: Population,
    macro: Macro,
    days: int,
    rng: np.random.Generator,
    calibration: np.ndarray,
) -> Journeys:
    """Simulate decisions and closings over ``days`` for one block of users."""
    n = len(pop.market)
    state = _HomeState(pop)
    life = _life_events(pop, days, rng)
    invest_latent = rng.normal(0, 1, n)
    eligible = np.zeros((3, n), dtype=np.int64)  # first window day each kind may be decided
    # Owners who bought recently do not refinance or move at once.
    since_purchase = macro.start_offset - pop.purchase_day
    eligible[REFINANCE] = np.maximum(0, 365 - since_purchase)
    at_risk = np.ones(n, dtype=bool)
    move_hazard = np.zeros((n, days), dtype=np.float64)
    undecided = np.full((n, days), np.nan, dtype=np.float32)
    since = np.zeros(n, dtype=np.int64)  # first day of each user's current undecided stretch
    records: dict[str, list[np.ndarray]] = {
        key: []
        for key in (
            "user",
            "kind",
            "decision",
            "close",
            "end",
            "first_type",
            "buy_first",
            "sell_only",
        )
    }
    tx_parts: list[dict[str, np.ndarray]] = []
    prop_parts: list[dict[str, np.ndarray]] = []
    window = np.arange(days)
    next_property = np.ones(n, dtype=np.int64)

    for round_number in range(MAX_ROUNDS):
        rows = np.nonzero(at_risk)[0]
        if len(rows) == 0:
            break
        hazards = _hazards(pop, state, macro, rows, days, life, invest_latent)
        hazards = np.minimum(hazards * calibration[:, None, None], 0.05)
        hazards = hazards * (window[None, None, :] >= eligible[:, rows][:, :, None])
        round_start = eligible[:, rows].min(axis=0)
        live = window[None, :] >= round_start[:, None]
        move_hazard[rows] = np.where(live, hazards[MOVE], move_hazard[rows])
        cumulative = np.cumsum(hazards, axis=2)
        threshold = rng.exponential(1.0, (3, len(rows)))
        decision = (cumulative < threshold[:, :, None]).sum(axis=2)  # == days: no decision
        kind = decision.argmin(axis=0)
        first = decision[kind, np.arange(len(rows))]
        lag = np.empty(len(rows), dtype=np.int64)
        for k in (MOVE, REFINANCE, INVEST):  # three kinds, each vectorised
            mask = kind == k
            lag[mask] = _LAGS[k].sample(rng, int(mask.sum()))
        if round_number == 0:
            # Warm start: some homeowners are already mid-move when the world begins, as they
            # would be in a running world; drawn from the hazard on the first day.
            pre_decision = -rng.integers(1, WARM_START_DAYS + 1, len(rows))
            pre_lag = MOVE_LAG.sample(rng, len(rows))
            pre = rng.random(len(rows)) < 1.0 - np.exp(-hazards[MOVE, :, 0] * WARM_START_DAYS)
            pre &= pre_decision + pre_lag >= 0
            kind = np.where(pre, MOVE, kind)
            first = np.where(pre, pre_decision, first)
            lag = np.where(pre, pre_lag, lag)
        # The oracle over the undecided stretch this round covers (from the last decision, or
        # the start, to this round's), from this round's hazard paths as they run on without a
        # decision: the realised path is cut to zero after a decision, and a mover's chance
        # summed over it ended where the move was decided (the oracle sank its own positives).
        chance = undecided_move_probability(
            hazards[MOVE], hazards[REFINANCE] + hazards[INVEST], _ORACLE_LAG_CDF
        )
        stop = np.clip(first, 0, days)
        stretch = (window[None, :] >= since[rows][:, None]) & (window[None, :] < stop[:, None])
        undecided[rows] = np.where(stretch, chance, undecided[rows])
        del chance, stretch
        decided = first < days
        at_risk[rows[~decided]] = False  # no decision left in the window for them
        rows, kind, first, lag = rows[decided], kind[decided], first[decided], lag[decided]
        since[rows] = np.clip(first, 0, days)
        if len(rows) == 0:
            break
        close = first + lag
        # A decided homeowner stops being at risk of another decision until after closing.
        move_hazard[rows] = np.where(window[None, :] > first[:, None], 0.0, move_hazard[rows])
        is_move = kind == MOVE
        sell_only = is_move & (rng.random(len(rows)) < pop.p_sell_only[rows])
        buy_first = is_move & ~sell_only & (rng.random(len(rows)) < pop.p_buy_first[rows])
        first_type = np.where(
            kind == REFINANCE,
            "REFINANCE",
            np.where(kind == INVEST, "INVESTMENT", np.where(buy_first, "BUY", "SELL")),
        )
        for key, value in (
            ("user", rows),
            ("kind", kind),
            ("decision", first),
            ("close", close),
            ("first_type", first_type),
            ("buy_first", buy_first),
            ("sell_only", sell_only),
        ):
            records[key].append(value)
        closed = close < days
        at_risk[rows[~closed]] = False  # their closing lies beyond the world's end
        end = close.copy()
        tx, props = _apply_closings(
            pop,
            state,
            macro,
            rng,
            rows[closed],
            kind[closed],
            close[closed],
            sell_only[closed],
            buy_first[closed],
            next_property,
            days,
        )
        tx_parts.append(tx)
        prop_parts.append(props)
        done = rows[closed]
        moved_out = done[sell_only[closed]]
        at_risk[moved_out] = False
        second = tx["_second_day"]
        end[closed] = second
        records["end"].append(end)
        for k in (MOVE, REFINANCE, INVEST):
            mask = kind[closed] == k
            eligible[k, done[mask]] = second[mask] + COOLDOWN_DAYS[k]
        # After a move, the new home restarts the refinance clock; every kind waits for closing.
        eligible[:, done] = np.maximum(eligible[:, done], second[None, :] + 1)
        eligible[REFINANCE, done[kind[closed] == MOVE]] = second[kind[closed] == MOVE] + 365

    cat = {
        key: (np.concatenate(parts) if parts else np.array([])) for key, parts in records.items()
    }
    transactions = _concat_tables(tx_parts, _TX_SCHEMA)
    new_properties = _concat_tables(prop_parts, _PROPERTY_SCHEMA)
    return Journeys(
        user=cat["user"].astype(np.int64),
        kind=cat["kind"].astype(np.int64),
        decision_day=cat["decision"].astype(np.int64),
        close_day=cat["close"].astype(np.int64),
        first_type=cat["first_type"].astype(str),
        buy_first=cat["buy_first"].astype(bool),
        sell_only=cat["sell_only"].astype(bool),
        move_hazard=move_hazard,
        life_events=life,
        transactions=transactions,
        new_properties=new_properties,
        end_day=cat["end"].astype(np.int64),
        undecided_p_move=undecided,
        value_state={
            "market": state.market,
            "purchase_day": state.purchase_day,
            "price": state.price,
            "drift": state.drift,
            "property_id": state.property_id,
            "owns": state.owns,
        },
    )


_TX_SCHEMA = pa.schema(
    [
        ("user_idx", pa.int64()),
        ("property_id", pa.string()),
        ("transaction_type", pa.string()),
        ("opened_day", pa.int64()),
        ("closed_day", pa.int64()),
        ("price", pa.float64()),
        ("loan_amount", pa.float64()),
        ("interest_rate", pa.float64()),
    ]
)
_PROPERTY_SCHEMA = pa.schema(
    [
        ("user_idx", pa.int64()),
        ("property_id", pa.string()),
        ("market_idx", pa.int64()),
        ("is_primary_residence", pa.bool_()),
        ("property_type", pa.string()),
        ("sqft", pa.float64()),
        ("purchased_day", pa.int64()),
        ("purchase_price", pa.float64()),
        ("mortgage_amount", pa.float64()),
        ("mortgage_rate", pa.float64()),
        ("sold_day", pa.int64()),
        ("value_drift", pa.float64()),
    ]
)


def _concat_tables(parts: list[dict[str, np.ndarray]], schema: pa.Schema) -> pa.Table:
    if not parts:
        return schema.empty_table()
    columns = {name: np.concatenate([part[name] for part in parts]) for name in schema.names}
    return pa.table(
        {name: pa.array(columns[name], schema.field(name).type) for name in schema.names}
    )


def _apply_closings(
    pop: Population,
    state: _HomeState,
    macro: Macro,
    rng: np.random.Generator,
    rows: np.ndarray,
    kind: np.ndarray,
    close: np.ndarray,
    sell_only: np.ndarray,
    buy_first: np.ndarray,
    next_property: np.ndarray,
    days: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Record the closings of one round and update each user's home and mortgage."""
    m = len(rows)
    abs_close = macro.start_offset + close
    market_rate = macro.rate_30y[abs_close]
    # value of the current home at its closing day
    value_now = state.value_on(macro, rows, abs_close)
    second_day = close.copy()
    tx: dict[str, list[np.ndarray]] = {name: [] for name in _TX_SCHEMA.names}
    props: dict[str, list[np.ndarray]] = {name: [] for name in _PROPERTY_SCHEMA.names}

    def add_tx(
        mask: np.ndarray,
        ptype: str,
        prop: np.ndarray,
        day: np.ndarray,
        price: np.ndarray,
        loan: np.ndarray,
        rate: np.ndarray,
    ) -> None:
        count = int(mask.sum())
        tx["user_idx"].append(rows[mask])
        tx["property_id"].append(prop)
        tx["transaction_type"].append(np.full(count, ptype))
        tx["opened_day"].append(day - rng.integers(25, 70, count))
        tx["closed_day"].append(day)
        tx["price"].append(price)
        tx["loan_amount"].append(loan)
        tx["interest_rate"].append(rate)

    def new_homes(
        mask: np.ndarray, day: np.ndarray, primary: bool, size_shift: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        users = rows[mask]
        count = len(users)
        ids = np.char.add(
            np.char.add(np.char.add("prop_", pop.user_index[users].astype(str)), "_"),
            next_property[users].astype(str),
        )
        next_property[users] += 1
        relocate = rng.random(count) < (0.15 if primary else 0.3)
        market = np.where(
            relocate,
            rng.choice(len(macro.market_ids), count, p=macro.market_weights),
            state.market[users],
        )
        sqft = np.clip(
            state.sqft[users] * np.exp(size_shift + rng.normal(0, 0.15, count)), 450, 9000
        )
        quality = rng.normal(0, 0.15, count)
        drift = rng.normal(0, 0.01, count)
        price = (
            macro.market_median[market, macro.start_offset + day]
            * (sqft / 1800.0) ** 0.75
            * np.exp(quality)
        )
        loan = price * np.clip(rng.normal(0.78, 0.08, count), 0.3, 0.95)
        rate = np.clip(
            macro.rate_30y[macro.start_offset + day] + rng.normal(0.25, 0.25, count), 2.0, 12.0
        )
        ptype = np.where(
            sqft < 1200, "CONDO", np.where(rng.random(count) < 0.12, "TOWNHOUSE", "SINGLE_FAMILY")
        )
        for name, value in (
            ("user_idx", users),
            ("property_id", ids),
            ("market_idx", market),
            ("is_primary_residence", np.full(count, primary)),
            ("property_type", ptype),
            ("sqft", sqft),
            ("purchased_day", day),
            ("purchase_price", price),
            ("mortgage_amount", loan),
            ("mortgage_rate", rate),
            ("sold_day", np.full(count, -1)),
            ("value_drift", drift),
        ):
            props[name].append(value)
        add_tx(mask, "BUY" if primary else "INVESTMENT", ids, day, price, loan, rate)
        if primary:
            state.market[users] = market
            state.purchase_day[users] = macro.start_offset + day
            state.loan_day[users] = macro.start_offset + day
            state.price[users] = price
            state.quality[users] = quality
            state.drift[users] = drift
            state.sqft[users] = sqft
            state.loan[users] = loan
            state.rate[users] = rate
            state.term[users] = 30.0
            state.property_id[users] = ids
        return users, ids, price, day

    is_move = kind == MOVE
    # SELL of the current home: at the first closing unless the homeowner buys first.
    sell_gap = rng.integers(10, 60, m)
    sell_day = np.where(buy_first, close + sell_gap, close)
    sells = is_move & (sell_day < days)
    sell_price = value_now * np.exp(rng.normal(0, 0.03, m))
    add_tx(
        sells,
        "SELL",
        state.property_id[rows][sells],
        sell_day[sells],
        sell_price[sells],
        np.full(int(sells.sum()), np.nan),
        np.full(int(sells.sum()), np.nan),
    )
    # BUY of the next home: first when buying first, else some days after selling.
    buy_day = np.where(buy_first, close, close + rng.integers(0, 45, m))
    buys = is_move & ~sell_only & (buy_day < days)
    upsizing = np.where(pop.age[rows] < 50, 0.12, -0.15)
    new_homes(buys, buy_day[buys], True, upsizing[buys])
    state.owns[rows[is_move & sell_only]] = False
    second_day = np.where(is_move & ~sell_only, np.maximum(sell_day, buy_day), second_day)
    # REFINANCE: a new loan at today's rate on the current balance, sometimes with cash out.
    refi = kind == REFINANCE
    if refi.any():
        users = rows[refi]
        months = (abs_close[refi] - state.loan_day[users]) / 30.44
        balance = _amortised_balance(
            state.loan[users], state.rate[users], state.term[users], months
        )
        new_loan = balance * (1 + rng.uniform(0, 0.12, len(users)))
        new_rate = np.clip(market_rate[refi] + rng.normal(0.1, 0.15, len(users)), 2.0, 12.0)
        add_tx(
            refi,
            "REFINANCE",
            state.property_id[users],
            close[refi],
            np.full(len(users), np.nan),
            new_loan,
            new_rate,
        )
        state.loan[users] = new_loan
        state.rate[users] = new_rate
        state.loan_day[users] = abs_close[refi]
        state.term[users] = np.where(rng.random(len(users)) < 0.3, 15.0, 30.0)
    invest = kind == INVEST
    if invest.any():
        new_homes(invest, close[invest], False, np.full(int(invest.sum()), -0.35))
    tx_out = {
        name: (np.concatenate(parts) if parts else np.zeros(0, dtype=object))
        for name, parts in tx.items()
    }
    prop_out = {
        name: (np.concatenate(parts) if parts else np.zeros(0)) for name, parts in props.items()
    }
    tx_out["_second_day"] = second_day
    return tx_out, prop_out
