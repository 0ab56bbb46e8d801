"""The MLflow pyfunc face of a roiml model, so ``mlflow models serve`` can answer with it.

MLflow stores the :class:`~roiml.models.artifact.ModelArtifact` directory as the pyfunc model's
artifact; this wrapper loads it and predicts with the main booster. roiml's own serving reads
the same directory through :meth:`roiml.registry.ModelRegistry.load_model` instead, with
explanations and every part of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from roiml.models.artifact import ModelArtifact

__all__ = ["ARTIFACT_KEY", "RoimlPyfuncModel", "main_booster"]

# The key of the ModelArtifact directory in the pyfunc model's ``artifacts``.
ARTIFACT_KEY = "roiml_model"


def main_booster(model: ModelArtifact) -> lgb.Booster:
    """The booster whose output is the model's primary prediction: part ``main``, else the
    first part by name (a model split in parts has no single main one)."""
    if "main" in model.boosters:
        return model.boosters["main"]
    return model.boosters[sorted(model.boosters)[0]]


class RoimlPyfuncModel(PythonModel):
    """Predicts the main booster's primary output (probability, class probabilities or value)
    for a DataFrame holding the model's features."""

    def __init__(self) -> None:
        self._model: ModelArtifact | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Load the ModelArtifact directory MLflow unpacked next to this model."""
        self._model = ModelArtifact.load(Path(context.artifacts[ARTIFACT_KEY]))

    # MLflow reads these type hints: a DataFrame in, so the signature's columns are enforced.
    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """The main booster's output for each row of ``model_input`` (columns by name)."""
        if self._model is None:
            raise RuntimeError("the model is not loaded; MLflow calls load_context first")
        table = pa.Table.from_pandas(model_input, preserve_index=False)
        prediction: np.ndarray = np.asarray(
            main_booster(self._model).predict(self._model.matrix(table))
        )
        return prediction
