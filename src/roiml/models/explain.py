"""Exact per-prediction explanations: path-dependent TreeSHAP, precomputed per leaf.

For a row, the contributions plus the base value sum to the model's raw score (log-odds for a
binary model, the class's raw score for a multiclass one, the prediction for a regression).
The values are LightGBM's own ``pred_contrib`` (same algorithm, same cover weights; a test
checks them against it to 1e-9), computed faster:

* LightGBM walks every path of every tree per row, O(leaves x depth^2) per tree, and for a
  multiclass model explains every class. Here the work that does not depend on the row is done
  once per booster: a leaf's share of a feature's SHAP value depends on the row only through
  *which* of the leaf's path features the row satisfies (a bit mask, its *case*: one of 2^d for
  d distinct path features), so every case is tabulated at load. Per row there is then one
  vectorised pass: every distinct path condition's outcome, every leaf's case in one sparse
  product, one gather from the tables and one ``add.reduceat`` per feature.
* A multiclass model is explained only for the class asked about (1/K of its trees).

The maths (Lundberg et al. 2020, Algorithm 2; "Fast TreeSHAP", Yang 2021): for a leaf with value
v, unique path features P (d of them), cover fraction z_j (the product of the data-count ratios
of the splits on feature j along the path) and o_j = 1 if the row follows every split on j,

    phi_k += v (o_k - z_k) sum_{S subset of P-k} |S|!(d-|S|-1)!/d! prod_{j in S} o_j
             prod_{j in P-S-k} z_j

which only depends on the set O = {j: o_j = 1}; with A = O - k it is
v (o_k - z_k) prod_{j in P-O-k} z_j sum_m w(m, d) e_{|A|-m}(z_A), e being the elementary
symmetric polynomials.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse

from roiml.models.single_row import single_row_predictor

__all__ = ["Contributions", "TreeExplainer", "contributions", "explainer", "top_features"]

# LightGBM's kZeroThreshold: |x| at or under it is "zero" for missing_type Zero.
_ZERO = 1e-35
# Rows x cells per pass: bounds the temporaries (12 bytes a cell: ~12 MB) while giving each
# cell's table entries enough rows to be reused from cache (1M measured best of 64k to 8M).
_CHUNK_CELLS = 1 << 20
# 2^d table rows per cell: 8 features is 2 KB a cell; deeper paths use LightGBM's own.
_MAX_SLOTS = 8


@dataclass(frozen=True)
class Contributions:
    """SHAP values per row and feature, and each row's base value (expected raw score)."""

    values: np.ndarray  # (rows, features)
    base: np.ndarray  # (rows,)


@dataclass(frozen=True)
class _Forest:
    """The trees of one output (one class of a multiclass model), flattened for NumPy.

    A *condition* is what a row must satisfy to follow every split on one feature along one
    leaf's path: ``low < x <= high``, or for a missing x, that every such split sends a missing
    value the path's way. Leaves of sibling paths share most of them, so each distinct condition
    is evaluated once per row. A leaf's *case* has bit s set when the row meets the condition of
    the leaf's s-th path feature; ``case_weight`` holds those 2^s, so that the cases of all
    leaves are one sparse product with the conditions' outcomes. A *cell* is one (leaf, path
    feature) pair; cells are sorted by feature so that one ``add.reduceat`` sums them into SHAP
    values, and each cell's 2^d contributions (one per case of its leaf) lie together in
    ``cell_table``.
    """

    condition_feature: np.ndarray  # (conditions,) int
    low: np.ndarray  # (conditions,) float64
    high: np.ndarray  # (conditions,) float64
    nan_follows: np.ndarray  # (conditions,) bool
    case_weight: scipy.sparse.csr_matrix  # (leaves, conditions) int32: 2^slot, or 0
    cell_leaf: np.ndarray  # (cells,) intp
    cell_table: np.ndarray  # (sum of the cells' 2^d,) float64: a cell's contribution per case
    cell_offset: np.ndarray  # (cells,) int32: where each cell's cases start in cell_table
    feature_start: np.ndarray  # (present features,) first cell of each feature
    present: np.ndarray  # (present features,) their indices
    expected_value: float
    features: int


class TreeExplainer:
    """Exact TreeSHAP for one LightGBM booster, tables built once."""

    def __init__(self, booster: lgb.Booster) -> None:
        model = booster.dump_model()
        self.features = int(model["max_feature_idx"]) + 1
        self.classes = int(model.get("num_tree_per_iteration", 1))
        trees = model["tree_info"]
        _check_splits(trees)
        self._forests = [
            _build_forest([t["tree_structure"] for t in trees[k :: self.classes]], self.features)
            for k in range(self.classes)
        ]

    @property
    def nbytes(self) -> int:
        """Memory held by the tables."""
        return sum(f.cell_table.nbytes + f.case_weight.data.nbytes for f in self._forests)

    def explain(
        self, matrix: np.ndarray, class_index: np.ndarray | int | None = None
    ) -> Contributions:
        """SHAP values of every row of ``matrix`` for one output (``class_index`` per row, or one
        for all rows, for a multiclass booster)."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        rows = matrix.shape[0]
        if matrix.shape[1] != self.features:
            raise ValueError(f"expected {self.features} features, got {matrix.shape[1]}")
        if self.classes == 1:
            return _explain_forest(self._forests[0], matrix)
        chosen = np.broadcast_to(np.asarray(0 if class_index is None else class_index), (rows,))
        classes = np.unique(chosen)
        if classes.size == 1:  # one row, or one class for all: no split and scatter
            return _explain_forest(self._forests[int(classes[0])], matrix)
        values = np.empty((rows, self.features))
        base = np.empty(rows)
        for k in classes:
            picked = np.flatnonzero(chosen == k)
            part = _explain_forest(self._forests[int(k)], matrix[picked])
            values[picked] = part.values
            base[picked] = part.base
        return Contributions(values, base)


_EXPLAINERS: weakref.WeakKeyDictionary[lgb.Booster, TreeExplainer | None] = (
    weakref.WeakKeyDictionary()
)


def explainer(booster: lgb.Booster) -> TreeExplainer | None:
    """The booster's tabulated explainer, built on first use (None if it cannot be tabulated:
    categorical or zero-as-missing splits, or paths with more than 8 distinct features;
    LightGBM's own ``pred_contrib`` then serves)."""
    if booster not in _EXPLAINERS:
        try:
            _EXPLAINERS[booster] = TreeExplainer(booster)
        except ValueError:
            _EXPLAINERS[booster] = None
    return _EXPLAINERS[booster]


def contributions(
    booster: lgb.Booster, matrix: np.ndarray, class_index: np.ndarray | int | None = None
) -> Contributions:
    """TreeSHAP values of ``matrix``'s rows; for a multiclass booster, of ``class_index``
    (one class for all rows, or one per row)."""
    tabulated = explainer(booster)
    if tabulated is not None:
        return tabulated.explain(matrix, class_index)
    if matrix.shape[0] == 1:
        row = np.ascontiguousarray(matrix[0], dtype=np.float64)
        return _split_contrib(
            single_row_predictor(booster, pred_contrib=True).predict(row), row.size, class_index
        )
    return lightgbm_contributions(booster, matrix, class_index)


def lightgbm_contributions(
    booster: lgb.Booster, matrix: np.ndarray, class_index: np.ndarray | int | None = None
) -> Contributions:
    """The same values from LightGBM's ``pred_contrib`` (the reference, and the fallback)."""
    raw = np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=1))
    return _split_contrib(raw, matrix.shape[1], class_index)


def _split_contrib(
    raw: np.ndarray, features: int, class_index: np.ndarray | int | None
) -> Contributions:
    """``pred_contrib``'s rows, (features + 1) per class, as the chosen class's contributions."""
    width = features + 1
    if raw.shape[1] == width:
        return Contributions(raw[:, :-1], raw[:, -1])
    per_class = raw.reshape(raw.shape[0], -1, width)
    rows = np.arange(raw.shape[0])
    chosen = np.broadcast_to(np.asarray(0 if class_index is None else class_index), rows.shape)
    picked = per_class[rows, chosen]
    return Contributions(picked[:, :-1], picked[:, -1])


def top_features(
    values: np.ndarray, feature_names: list[str], inputs: np.ndarray, k: int = 5
) -> list[list[tuple[str, float, float | None]]]:
    """Per row, the ``k`` features with the largest absolute contribution:
    ``(name, contribution, value)``, value None where the input was missing."""
    k = min(k, values.shape[1])
    # A stable sort, not argpartition: equal magnitudes (often several zeros) must come in
    # column order, and for ~100 features a partition plus that tie fix-up measured slower.
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    rows = np.arange(values.shape[0])[:, None]
    picked = values[rows, order].tolist()
    given = inputs[rows, order].tolist()
    return [
        [
            # NaN is the only float unequal to itself: a missing input shows as None. (Doing
            # this on an object array instead measured slower for the API's one row.)
            (feature_names[c], contribution, value if value == value else None)
            for c, contribution, value in zip(columns, row_values, row_inputs, strict=True)
        ]
        for columns, row_values, row_inputs in zip(order.tolist(), picked, given, strict=True)
    ]


# ---------------------------------------------------------------------------------- per row


def _explain_forest(forest: _Forest, matrix: np.ndarray) -> Contributions:
    rows = matrix.shape[0]
    values = np.zeros((rows, forest.features))
    cells = forest.cell_leaf.size
    if cells:
        step = max(1, _CHUNK_CELLS // cells)
        for start in range(0, rows, step):
            chunk = slice(start, start + step)
            values[chunk, forest.present] = _chunk(forest, matrix[chunk])
    return Contributions(values, np.full(rows, forest.expected_value))


def _chunk(forest: _Forest, matrix: np.ndarray) -> np.ndarray:
    x = matrix[:, forest.condition_feature]
    met = (x > forest.low) & (x <= forest.high)
    missing = np.isnan(x)
    if missing.any():
        met = np.where(missing, forest.nan_follows, met)
    outcome = met.view(np.uint8)
    if matrix.shape[0] == 1:
        # The API's common case; the 1-D product and gathers cost ~20% less than the 2-D ones.
        case = forest.case_weight @ outcome[0]
        index = case[forest.cell_leaf]
        index += forest.cell_offset
        contribution = np.take(forest.cell_table, index)
        return np.add.reduceat(contribution, forest.feature_start)[None, :]
    # Cell-major: each cell's row of indexes falls in that cell's 2^d table entries (at most
    # 2 KB), which stay in cache across the chunk's rows; row-major swept the whole table once
    # per row (measured ~25% slower on the value model).
    case = forest.case_weight @ outcome.T  # (leaves, rows)
    index = case[forest.cell_leaf]
    index += forest.cell_offset[:, None]
    contribution = np.take(forest.cell_table, index)
    return np.add.reduceat(contribution, forest.feature_start, axis=0).T


# ---------------------------------------------------------------------------------- tables


@dataclass
class _Leaf:
    """A leaf and, per distinct feature on its path (first-seen order), what a row must satisfy
    to follow the path and the product of the path's cover fractions for that feature."""

    value: float = 0.0
    low: dict[int, float] = field(default_factory=dict)
    high: dict[int, float] = field(default_factory=dict)
    nan_follows: dict[int, bool] = field(default_factory=dict)
    zero_fraction: dict[int, float] = field(default_factory=dict)

    def child(self, feature: int, threshold: float, left: bool, nan_left: bool, z: float) -> _Leaf:
        low, high = dict(self.low), dict(self.high)
        low.setdefault(feature, -np.inf)
        high.setdefault(feature, np.inf)
        if left:
            high[feature] = min(high[feature], threshold)
        else:
            low[feature] = max(low[feature], threshold)
        nan_follows = dict(self.nan_follows)
        nan_follows[feature] = nan_follows.get(feature, True) and nan_left == left
        zero_fraction = dict(self.zero_fraction)
        zero_fraction[feature] = zero_fraction.get(feature, 1.0) * z
        return _Leaf(0.0, low, high, nan_follows, zero_fraction)


def _check_splits(trees: list[dict[str, Any]]) -> None:
    def walk(node: dict[str, Any]) -> None:
        if "split_index" not in node:
            return
        if node.get("decision_type", "<=") != "<=":
            raise ValueError("categorical splits are not tabulated")
        if node.get("missing_type", "None") == "Zero":
            raise ValueError("zero-as-missing splits are not tabulated")
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in trees:
        walk(tree["tree_structure"])


def _count(node: dict[str, Any]) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _build_forest(roots: list[dict[str, Any]], features: int) -> _Forest:
    leaves: list[_Leaf] = []
    expected = 0.0

    def walk(node: dict[str, Any], path: _Leaf, total: float) -> None:
        nonlocal expected
        if "split_index" not in node:
            expected += _count(node) / total * float(node["leaf_value"])
            path.value = float(node["leaf_value"])
            leaves.append(path)
            return
        feature = int(node["split_feature"])
        threshold = float(node["threshold"])
        # missing_type None: LightGBM reads NaN as 0; NaN: a missing value takes the default.
        if node.get("missing_type", "None") == "None":
            nan_left = threshold >= 0.0
        else:
            nan_left = bool(node["default_left"])
        parent = _count(node)
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            z = _count(child) / parent
            walk(child, path.child(feature, threshold, left, nan_left, z), total)

    for root in roots:
        if "split_index" not in root:
            expected += float(root["leaf_value"])  # a stump: its value is its expectation
            continue
        walk(root, _Leaf(), _count(root))

    slots = max((len(leaf.zero_fraction) for leaf in leaves), default=1)
    if slots > _MAX_SLOTS:
        raise ValueError(f"paths with {slots} distinct features are too deep to tabulate")
    conditions: dict[tuple[int, float, float, bool], int] = {}
    weight: list[tuple[int, int, int]] = []  # (leaf, condition, 2^slot)
    cells: list[tuple[int, int, int]] = []  # (feature, leaf, slot)
    for i, leaf in enumerate(leaves):
        for slot, feature in enumerate(leaf.zero_fraction):
            key = (feature, leaf.low[feature], leaf.high[feature], leaf.nan_follows[feature])
            weight.append((i, conditions.setdefault(key, len(conditions)), 1 << slot))
            cells.append((feature, i, slot))
    by_leaf = np.array(weight, dtype=np.intp).reshape(-1, 3)
    # Cases and table positions are int32: the per-row index arrays are half the memory
    # traffic of intp ones, and the gather is bound by that traffic.
    case_weight = scipy.sparse.csr_matrix(
        (by_leaf[:, 2].astype(np.int32), (by_leaf[:, 0], by_leaf[:, 1])),
        shape=(len(leaves), len(conditions)),
    )
    cells.sort()
    cell = np.array(cells, dtype=np.intp).reshape(-1, 3)
    cell_leaf, cell_slot = cell[:, 1].copy(), cell[:, 2]
    # Each cell holds the 2^d cases of its own leaf only (a padded 2^slots made the tables of the
    # value model about three times larger, and the per-row gather slower for it).
    distinct = np.array([len(leaf.zero_fraction) for leaf in leaves], dtype=np.intp)
    cases = 1 << distinct[cell_leaf]
    cell_offset = np.cumsum(cases) - cases
    if cases.sum() >= np.iinfo(np.int32).max:
        raise ValueError("the explanation tables would exceed 2^31 entries")
    cell_table = np.zeros(int(cases.sum()))
    # Tabulate leaves with the same number of distinct path features together.
    for d in np.unique(distinct):
        members = np.flatnonzero(distinct == d)
        zero = np.array([list(leaves[i].zero_fraction.values()) for i in members])
        value = np.array([leaves[i].value for i in members])
        tables = _leaf_tables(zero, value, int(d))  # (members, 2^d, d)
        position = np.zeros(len(leaves), dtype=np.intp)
        position[members] = np.arange(members.size)
        mine = np.flatnonzero(distinct[cell_leaf] == d)
        target = cell_offset[mine, None] + np.arange(1 << d)
        cell_table[target] = tables[position[cell_leaf[mine]], :, cell_slot[mine]]
    present, feature_start = np.unique(cell[:, 0], return_index=True)
    return _Forest(
        condition_feature=np.array([k[0] for k in conditions], dtype=np.intp),
        low=np.array([k[1] for k in conditions], dtype=np.float64),
        high=np.array([k[2] for k in conditions], dtype=np.float64),
        nan_follows=np.array([k[3] for k in conditions], dtype=bool),
        case_weight=case_weight,
        cell_leaf=cell_leaf,
        cell_table=cell_table,
        cell_offset=cell_offset.astype(np.int32),
        feature_start=feature_start,
        present=present,
        expected_value=expected,
        features=features,
    )


def _leaf_tables(zero: np.ndarray, value: np.ndarray, d: int) -> np.ndarray:
    """``(leaves, 2^d, d)``: each leaf's contribution to each of its path features, for every
    set O of path features the row follows (bit j of the case index = feature j followed)."""
    weight = [math.factorial(m) * math.factorial(d - m - 1) / math.factorial(d) for m in range(d)]
    out = np.zeros((zero.shape[0], 1 << d, d))
    for case in range(1 << d):
        followed = [bool(case >> j & 1) for j in range(d)]
        for k in range(d):
            others = [j for j in range(d) if j != k]
            inside = [j for j in others if followed[j]]
            # Features the row does not follow can only sit outside S: factor z_j always.
            factor = np.ones(zero.shape[0])
            for j in others:
                if not followed[j]:
                    factor = factor * zero[:, j]
            # sum_{S subset of inside} w(|S|) prod_{j in inside - S} z_j via e_r(z_inside).
            elementary = [np.ones(zero.shape[0])] + [np.zeros(zero.shape[0])] * len(inside)
            for j in inside:
                for r in range(len(elementary) - 1, 0, -1):
                    elementary[r] = elementary[r] + zero[:, j] * elementary[r - 1]
            total = sum(weight[m] * elementary[len(inside) - m] for m in range(len(inside) + 1))
            out[:, case, k] = value * (float(followed[k]) - zero[:, k]) * factor * total
    return out
