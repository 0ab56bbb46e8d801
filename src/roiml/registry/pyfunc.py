"""The MLflow pyfunc face of a roiml model: ``mlflow models serve`` or any MLflow host can answer
with it, in an environment without roiml.

This file is self-contained on purpose: it imports nothing from roiml. MLflow keeps a copy of
it next to every registered model ("models from code": the pyfunc's ``python_model`` is this
file's path; MLflow copies it beside the model's ``MLmodel``) and runs it to load the model, so
``mlflow.pyfunc.load_model("models:/<tenant>.<name>@production")`` works in a fresh environment
built only from the model's ``requirements.txt`` (MLflow, LightGBM, NumPy, pandas, PyArrow), where
``No module named 'roiml'`` would otherwise stop it. ``tests/test_portable_model.py`` proves it in
a separate virtual environment.

MLflow stores the :class:`~roiml.models.artifact.ModelArtifact` directory as the pyfunc model's
``roiml_model`` artifact; this wrapper reads the two things prediction needs from it (``meta.json``
and the main booster's text model) and predicts with the main booster. roiml's own serving reads
the same directory through :meth:`roiml.registry.ModelRegistry.load_model` instead, with
explanations and every part of the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel, PythonModelContext

__all__ = ["ARTIFACT_FORMAT_VERSION", "ARTIFACT_KEY", "RoimlPyfuncModel", "main_part"]

# The key of the ModelArtifact directory in the pyfunc model's ``artifacts``.
ARTIFACT_KEY = "roiml_model"
# roiml.models.artifact.FORMAT_VERSION, repeated because this file may not import roiml;
# tests/test_registry.py checks the two agree.
ARTIFACT_FORMAT_VERSION = 1


def main_part(parts: Sequence[str]) -> str:
    """The part whose booster gives the model's primary prediction: ``main``, else the first
    part by name (a model split in parts has no single main one)."""
    if not parts:
        raise ValueError("the model has no booster")
    return "main" if "main" in parts else sorted(parts)[0]


def input_matrix(rows: pa.Table, feature_names: Sequence[str], model_name: str) -> np.ndarray:
    """The booster's input: ``feature_names`` taken by name from ``rows`` as float64 columns
    (null -> NaN). The same rule as :meth:`roiml.models.artifact.ModelArtifact.matrix`."""
    missing = [name for name in feature_names if name not in rows.column_names]
    if missing:
        raise ValueError(
            f"{model_name}: the input lacks {len(missing)} of the model's features "
            f"(first: {', '.join(missing[:5])}); send one column per feature"
        )
    columns = [
        rows[name].cast(pa.float64()).to_numpy(zero_copy_only=False) for name in feature_names
    ]
    if not columns:
        return np.empty((rows.num_rows, 0))
    return np.column_stack(columns).astype(np.float64, copy=False)


class RoimlPyfuncModel(PythonModel):
    """Predicts the main booster's primary output (probability, class probabilities or value)
    for a DataFrame holding the model's features."""

    def __init__(self) -> None:
        self._booster: lgb.Booster | None = None
        self._features: list[str] = []
        self._name = "model"

    def load_context(self, context: PythonModelContext) -> None:
        """Read ``meta.json`` and the main booster from the artifact MLflow unpacked next to
        this model (the drift reference and the other parts are roiml's, not needed here)."""
        directory = Path(context.artifacts[ARTIFACT_KEY])
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise ValueError(f"{directory} holds no roiml model (meta.json is missing)")
        meta: Mapping[str, Any] = json.loads(meta_path.read_text())
        if meta.get("format_version") != ARTIFACT_FORMAT_VERSION:
            raise ValueError(
                f"{directory}: model format {meta.get('format_version')} is not "
                f"{ARTIFACT_FORMAT_VERSION}; load it with the roiml version that trained it"
            )
        part = main_part(list(meta["parts"]))
        self._booster = lgb.Booster(model_file=str(directory / f"booster-{part}.txt"))
        self._features = list(meta["feature_names"])
        self._name = str(meta.get("name", "model"))

    # MLflow reads these type hints: a DataFrame in, so the signature's columns are enforced.
    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """The main booster's output for each row of ``model_input`` (columns by name)."""
        if self._booster is None:
            raise RuntimeError("the model is not loaded; MLflow calls load_context first")
        table = pa.Table.from_pandas(model_input, preserve_index=False)
        prediction: np.ndarray = np.asarray(
            self._booster.predict(input_matrix(table, self._features, self._name))
        )
        return prediction


# MLflow runs this file as the model's code under a module name of its own and takes the model
# from set_model; imported as part of roiml, the module only defines the class.
if __name__ != "roiml.registry.pyfunc":
    set_model(RoimlPyfuncModel())
