"""Compile a list of feature definitions into one DuckDB query over an entity frame.

The query has four layers: the context row (frame + user + ASOF joins, each a CTE on the last),
one aggregate CTE per window group, a ``base`` row with every needed feature, and the final
projection (derived features, float64). Only the joins and groups the request needs are built.
Pure string work: no I/O, cached per request shape.

DuckDB's cost for a small frame is nearly all per operator and per column carried through it
(planning, vector allocation, the ASOF joins' sorts), not per row, so the shape is kept lean:
joins that add few columns come first in the chain, window groups join the narrowest relation
holding what they read (usually the frame itself), and the frame's time span comes in as the
parameters ``$lo`` and ``$hi`` rather than as a subquery repeated in every group.

A frame of exactly one row (a single entity at serving time) gets a shape of its own from the
same definitions, ``one_row_sql``, since there the cost is all in starting DuckDB's pipelines
(one per join build, grouping, sort and scan) and in the vectors each operator allocates per
column: every source is scanned once into a materialised CTE, each context join adds only its
own columns (read from the joins it needs) and takes the top row of a plain join, and each window
group is an ungrouped aggregate, cross-joined into the one row. The property tests hold it to the
batch shape's values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from roiml.features.catalog import CATALOG, Catalog
from roiml.features.definition import CONTEXT, DERIVED, ComputedGroup, FeatureDefinition

__all__ = ["FRAME_COLUMNS", "CompiledQuery", "compile_features"]

# The columns of view ``frame``; the query's parameters ``$lo`` and ``$hi`` are the least and
# greatest ``as_of`` in it.
FRAME_COLUMNS = ("row_id", "entity_id", "as_of")
_USER_COLUMNS = (
    "u.created_at AS user_created_at",
    "u.market_id AS user_market_id",
    "u.agent_id AS user_agent_id",
)
_CONTEXT_REFERENCE = re.compile(r"\bc\.([A-Za-z_][A-Za-z_0-9]*)")


@dataclass(frozen=True)
class CompiledQuery:
    """SQL reading view ``frame`` (row_id, entity_id, as_of) and the source tables it lists;
    run it with the ``parameters`` it names: ``lo`` and ``hi``, the frame's least and greatest
    as-of."""

    sql: str
    features: tuple[str, ...]
    tables: tuple[str, ...]  # source tables the query reads
    lookback_days: dict[str, int | None]  # per table: history needed before the earliest as-of
    # The parameters the SQL uses, of ``lo`` and ``hi``: DuckDB refuses values it does not use.
    parameters: tuple[str, ...] = ()
    # The same query with the span read from ``frame`` instead of parameters, for a plan that
    # is prepared once and executed again: DuckDB re-plans a prepared statement that takes
    # parameters on every execution, so the reusable one takes none.
    reusable_sql: str = ""
    # The query for a frame of exactly one row (serving), in a shape of fewer, cheaper operators.
    one_row_sql: str = ""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _closure(requested: list[FeatureDefinition], catalog: Catalog) -> list[FeatureDefinition]:
    needed: dict[str, FeatureDefinition] = {}
    for feature in requested:
        if feature.scope == DERIVED:
            for name in feature.needs:
                needed.setdefault(name, catalog.features[name])
        needed.setdefault(feature.name, feature)
    return list(needed.values())


def _joins_for(features: list[FeatureDefinition], catalog: Catalog) -> list[str]:
    direct = {need for f in features if f.scope != DERIVED for need in f.needs}
    for feature in features:
        group = catalog.groups.get(feature.scope)
        if isinstance(group, ComputedGroup):
            direct.update(group.needs)
    wanted = direct.union(*(_needs_of(name, catalog) for name in direct))
    # Dependencies first; among joins free to go next, the one adding the fewest columns, so
    # the wide ones (the home's 19) are carried through as few later joins as possible. Ties
    # keep catalog order. The order changes no value: an ASOF LEFT JOIN keeps every row once.
    order: list[str] = []
    pending = [name for name in catalog.joins if name in wanted]
    while pending:
        ready = [n for n in pending if all(need in order for need in catalog.joins[n].needs)]
        chosen = min(ready, key=lambda n: len(catalog.joins[n].columns))
        order.append(chosen)
        pending.remove(chosen)
    return order


def _needs_of(name: str, catalog: Catalog) -> set[str]:
    """The joins ``name`` builds on, directly or through another."""
    found: set[str] = set()
    stack = list(catalog.joins[name].needs)
    while stack:
        need = stack.pop()
        if need not in found:
            found.add(need)
            stack.extend(catalog.joins[need].needs)
    return found


# The as-of of a one-row frame, for a computed group's pruning bounds (the one-row query takes
# no parameters).
_ONE_ROW_AS_OF = "(SELECT max(as_of) FROM frame)"


def _computed_group(
    group: ComputedGroup,
    members: list[FeatureDefinition],
    context: str,
    lo: str,
    hi: str,
    rows_of: str | None = None,
) -> str:
    """The CTE ``g_<group>`` of a computed group: its features over its SQL's output row ``e``,
    per row of ``rows_of`` (left-joined) or per output row."""
    items = ", ".join(f"{f.expression} AS {_quote(f.name)}" for f in members)
    # One line: the query's CTEs are separated by ",\n" (what reads it may split on that).
    relation = " ".join(group.build(context, lo, hi).split())
    if rows_of is None:
        return f"g_{group.name} AS (SELECT e.row_id, {items} FROM ({relation}) e)"
    return (
        f"g_{group.name} AS (SELECT {items} FROM (SELECT row_id FROM {rows_of}) f "
        f"LEFT JOIN ({relation}) e ON e.row_id = f.row_id)"
    )


def _context_columns(expressions: list[str]) -> set[str]:
    """The context-row columns (``c.<name>``) that ``expressions`` read."""
    return {name for text in expressions for name in _CONTEXT_REFERENCE.findall(text)}


def compile_features(names: tuple[str, ...], catalog: Catalog = CATALOG) -> CompiledQuery:
    """The query computing ``names`` for every row of view ``frame``."""
    return _compile(names, catalog)


@lru_cache(maxsize=256)
def _compile(names: tuple[str, ...], catalog: Catalog) -> CompiledQuery:
    requested = catalog.resolve(list(names))
    features = _closure(requested, catalog)
    joins = _joins_for(features, catalog)
    lookback: dict[str, int | None] = {"users": None}

    def need_table(table: str, days: int | None) -> None:
        if table in lookback and (lookback[table] is None or days is None):
            lookback[table] = None
        else:
            lookback[table] = (
                days if table not in lookback else max(lookback[table] or 0, days or 0)
            )

    head = (
        "c0 AS (SELECT f.row_id, f.entity_id, f.as_of, "
        + ", ".join(_USER_COLUMNS)
        + " FROM frame f LEFT JOIN users u ON u.user_id = f.entity_id)"
    )
    ctes, single = [head], [head]
    for index, name in enumerate(joins, start=1):
        join = catalog.joins[name]
        for table in join.tables:
            need_table(table, join.lookback_days)
        ctes.append(
            f"c{index} AS (SELECT c.*, {', '.join(join.columns)} FROM c{index - 1} c "
            f"ASOF LEFT JOIN ({join.ranked_relation}) j ON {join.condition})"
        )
        # One context row: each join adds only its own columns, read from the joins it needs,
        # and its latest match is the top row of a plain join (DuckDB 1.5 cannot re-execute a
        # prepared ASOF join; its nested-loop rewrite costs a grouping per join).
        inputs = ["c0", *(f"j_{n}" for n in joins if n in _needs_of(name, catalog))]
        rows = inputs[0] if len(inputs) == 1 else f"(SELECT * FROM {', '.join(inputs)})"
        single.append(
            f"j_{name} AS (SELECT {', '.join(join.columns)} FROM {rows} c "
            f"LEFT JOIN ({join.relation}) j ON {join.condition} "
            f"ORDER BY {join.latest_first} LIMIT 1)"
        )
    context = f"c{len(joins)}"
    single.append("ctx AS (SELECT * FROM " + ", ".join(["c0", *(f"j_{n}" for n in joins)]) + ")")

    by_group: dict[str, list[FeatureDefinition]] = {}
    for feature in features:
        if feature.scope not in (CONTEXT, DERIVED):
            by_group.setdefault(feature.scope, []).append(feature)
    for group_name, members in by_group.items():
        group = catalog.groups[group_name]
        if isinstance(group, ComputedGroup):
            for table, days in group.lookback_days.items():
                need_table(table, days)
            ctes.append(_computed_group(group, members, context, "$lo", "$hi"))
            # One frame row: the group's SQL over the one context row, left-joined to the frame
            # so that the cross join in ``base`` always meets exactly one row.
            single.append(_computed_group(group, members, "ctx", *(_ONE_ROW_AS_OF,) * 2, "frame"))
            continue
        for table in group.tables:
            need_table(table, group.lookback_days)
        window = lower = ""
        if group.lookback_days is not None:
            window = f" AND e.ts >= c.as_of - INTERVAL {group.lookback_days} DAY"
            lower = f" AND r.ts >= $lo - INTERVAL {group.lookback_days} DAY"
        aggregates = ", ".join(f"{f.expression} AS {_quote(f.name)}" for f in members)
        # A group reading only the frame's own columns joins the frame, not the context row:
        # it then waits for no ASOF join and carries three columns instead of dozens.
        reads = _context_columns([f.expression for f in members]) | {group.frame_key}
        rows_of = "frame" if reads <= set(FRAME_COLUMNS) else context
        # Rows outside the frame's whole time span cannot match any frame row; dropping them
        # before the join keeps the join's candidate pairs down on multi-day backfills.
        rows = f"(SELECT * FROM ({group.relation}) r WHERE r.ts < $hi{lower})"
        on = f"e.key = c.{group.frame_key} AND e.ts < c.as_of{window}"
        ctes.append(
            f"g_{group_name} AS (SELECT c.row_id, {aggregates} FROM {rows_of} c "
            f"JOIN {rows} e ON {on} GROUP BY c.row_id)"
        )
        # One frame row: an ungrouped aggregate, null where the grouped one would have no row,
        # over only the context columns it reads.
        narrow = (
            "frame"
            if rows_of == "frame"
            else f"(SELECT {', '.join(sorted(reads | set(FRAME_COLUMNS)))} FROM ctx)"
        )
        single.append(
            f"g_{group_name} AS (SELECT "
            + ", ".join(
                f"CASE WHEN count(*) > 0 THEN {f.expression} END AS {_quote(f.name)}"
                for f in members
            )
            + f" FROM {narrow} c JOIN ({group.relation}) e ON {on})"
        )

    base_items = []
    for feature in features:
        if feature.scope == CONTEXT:
            base_items.append(f"{feature.expression} AS {_quote(feature.name)}")
        elif feature.scope != DERIVED:
            column = f"g_{feature.scope}.{_quote(feature.name)}"
            if feature.fill is not None:
                column = f"coalesce({column}, {feature.fill})"
            base_items.append(f"{column} AS {_quote(feature.name)}")
    columns = "".join(f", {item}" for item in base_items)
    group_joins = "".join(f" LEFT JOIN g_{name} USING (row_id)" for name in by_group)
    ctes.append(
        f"base AS (SELECT c.row_id, c.entity_id, c.as_of{columns} FROM {context} c{group_joins})"
    )
    single.append(
        f"base AS (SELECT c.row_id, c.entity_id, c.as_of{columns} FROM ctx c"
        + "".join(f", g_{name}" for name in by_group)
        + ")"
    )
    outputs = []
    for feature in requested:
        expression = feature.expression if feature.scope == DERIVED else _quote(feature.name)
        outputs.append(f"CAST({expression} AS DOUBLE) AS {_quote(feature.name)}")
    final = "\nSELECT entity_id, as_of, " + ", ".join(outputs) + " FROM base"
    sql = "WITH " + ",\n".join(ctes) + final + " ORDER BY row_id"
    # Joined to the relations without the span prefilter instead, the prepared plan of DuckDB
    # 1.5.6 grew the process by ~0.3 MB per execution; with it read from the frame, it does not.
    reusable_sql = sql.replace("$lo", "(SELECT min(as_of) FROM frame)").replace(
        "$hi", "(SELECT max(as_of) FROM frame)"
    )
    tables = tuple(sorted(lookback))
    # Each source is scanned once into memory: a prepared plan's Arrow scan costs ~0.4 ms to
    # start, and the full catalog reads the same tables ~35 times.
    scans = [f"{name} AS MATERIALIZED (SELECT * FROM {name})" for name in (*tables, "frame")]
    one_row_sql = "WITH " + ",\n".join([*scans, *single]) + final
    return CompiledQuery(
        sql=sql,
        reusable_sql=reusable_sql,
        one_row_sql=one_row_sql,
        features=tuple(f.name for f in requested),
        tables=tables,
        lookback_days=lookback,
        parameters=tuple(name for name in ("lo", "hi") if f"${name}" in sql),
    )
