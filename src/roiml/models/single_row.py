"""One row through LightGBM's single-row fast path, for the API's one-entity requests.

``Booster.predict`` on a one-row matrix spends most of its time around the trees: it builds a
predictor and a parameter string, asks for the output size and copies the input, every call.
LightGBM's ``LGBM_BoosterPredictForMatSingleRowFast*`` C functions set all of that up once (a
"FastConfig") and then only walk the trees; the answers are the same numbers, bit for bit.

LightGBM keeps the iteration range to predict with on the booster itself, not on the FastConfig:
any ``Booster.predict`` with another ``num_iteration`` would silently change what an existing
FastConfig predicts. So each :class:`SingleRowPredictor` predicts with a private copy of the
booster (the model text round-trips exactly), which nothing else touches.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import weakref
from typing import Any

import lightgbm as lgb
import lightgbm.basic
import numpy as np

__all__ = ["SingleRowPredictor", "single_row_predictor"]

_LIB: Any = getattr(lightgbm.basic, "_LIB")  # noqa: B009 (private: not in lightgbm's stubs)

# LightGBM's C API constants (c_api.h).
_DTYPE_FLOAT64 = 1
_PREDICT_NORMAL = 0
_PREDICT_RAW_SCORE = 1
_PREDICT_LEAF_INDEX = 2
_PREDICT_CONTRIB = 3
# The batch path's num_threads=1 (roiml.models.predict): the same configuration either way.
_PARAMETERS = b"num_threads=1"


def _check(code: int) -> None:
    if code != 0:
        raise lgb.basic.LightGBMError(_LIB.LGBM_GetLastError().decode("utf-8"))


class SingleRowPredictor:
    """``booster.predict(row[None, :], ...)`` for one row at a time, at a fraction of the cost.

    The arguments mean what they mean for ``Booster.predict`` (``num_iteration=None``: the
    booster's best iteration, if it has one and ``start_iteration <= 0``), fixed at construction;
    :meth:`predict` returns the same array, shape and dtype as ``Booster.predict`` would. One
    instance may be shared by threads (calls are serialised by a lock; a call takes microseconds).
    """

    def __init__(
        self,
        booster: lgb.Booster,
        *,
        raw_score: bool = False,
        pred_leaf: bool = False,
        pred_contrib: bool = False,
        start_iteration: int = 0,
        num_iteration: int | None = None,
    ) -> None:
        # Booster.predict's precedence when several flags are set.
        predict_type = _PREDICT_NORMAL
        if raw_score:
            predict_type = _PREDICT_RAW_SCORE
        if pred_leaf:
            predict_type = _PREDICT_LEAF_INDEX
        if pred_contrib:
            predict_type = _PREDICT_CONTRIB
        if num_iteration is None:
            num_iteration = booster.best_iteration if start_iteration <= 0 else -1
        self.num_feature = booster.num_feature()
        self._pred_leaf = predict_type == _PREDICT_LEAF_INDEX
        self._matrix_shaped = predict_type in (_PREDICT_LEAF_INDEX, _PREDICT_CONTRIB)
        self._lock = threading.Lock()
        self._handle = ctypes.c_void_p()
        # Not the caller's booster: see the module docstring. Held so that it outlives the
        # FastConfig, which points into it.
        self._booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=-1))
        size = ctypes.c_int64(0)
        _check(
            _LIB.LGBM_BoosterCalcNumPredict(
                self._booster._handle,
                ctypes.c_int(1),
                ctypes.c_int(predict_type),
                ctypes.c_int(start_iteration),
                ctypes.c_int(num_iteration),
                ctypes.byref(size),
            )
        )
        self._size = size.value
        self._out_len = ctypes.c_int64(0)
        _check(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(start_iteration),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.num_feature),
                ctypes.c_char_p(_PARAMETERS),
                ctypes.byref(self._handle),
            )
        )
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast

    def predict(self, row: np.ndarray) -> np.ndarray:
        """The prediction for ``row`` (1-D, float64, C-contiguous, ``num_feature`` values)."""
        if not isinstance(row, np.ndarray) or row.ndim != 1 or row.dtype != np.float64:
            raise ValueError(
                f"expected a 1-D float64 row of {self.num_feature} values, got "
                f"{_describe(row)}; pass matrix[i] of a float64 matrix"
            )
        if row.shape[0] != self.num_feature:
            raise ValueError(f"expected {self.num_feature} features, got {row.shape[0]}")
        if not row.flags.c_contiguous:
            raise ValueError("the row is a strided view; pass np.ascontiguousarray(row)")
        out = np.empty(self._size, dtype=np.float64)
        with self._lock:
            _check(
                self._predict(
                    self._handle,
                    ctypes.c_void_p(row.ctypes.data),
                    ctypes.byref(self._out_len),
                    ctypes.c_void_p(out.ctypes.data),
                )
            )
            written = self._out_len.value
        if written != self._size:
            raise lgb.basic.LightGBMError(f"LightGBM wrote {written} values, not {self._size}")
        if self._pred_leaf:
            out = out.astype(np.int32)
        # Booster.predict's shapes for one row: (1,) for a single output, else (1, outputs).
        if self._matrix_shaped or self._size != 1:
            return out.reshape(1, -1)
        return out

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value is not None:
            # At interpreter shutdown the library may already be gone; nothing left to free.
            with contextlib.suppress(Exception):
                _LIB.LGBM_FastConfigFree(handle)
            handle.value = None


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array of shape {value.shape}"
    return type(value).__name__


# Per booster, its predictors by kind (value, or SHAP values), dropped with the booster: a
# predictor holds its own copy of the model, not the booster.
_SHARED: weakref.WeakKeyDictionary[lgb.Booster, dict[bool, SingleRowPredictor]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_LOCK = threading.Lock()


def single_row_predictor(booster: lgb.Booster, *, pred_contrib: bool = False) -> SingleRowPredictor:
    """The booster's shared one-row predictor of its value (or, with ``pred_contrib``, of its
    SHAP values), built on first use. Request threads may meet a booster at the same time; the
    model is copied once."""
    predictor = _SHARED.get(booster, {}).get(pred_contrib)
    if predictor is None:
        with _SHARED_LOCK:
            kinds = _SHARED.setdefault(booster, {})
            predictor = kinds.get(pred_contrib)
            if predictor is None:
                predictor = SingleRowPredictor(booster, pred_contrib=pred_contrib)
                kinds[pred_contrib] = predictor
    return predictor
