"""The code MLflow runs to build roiml's pyfunc model ("models from code").

:meth:`roiml.registry.ModelRegistry.register_model` passes this file's path as the pyfunc's
``python_model``: MLflow copies it next to the registered model and runs it when loading, instead
of unpickling a Python object with CloudPickle (which it warns about on every registration).
"""

from __future__ import annotations

from mlflow.models import set_model

from roiml.registry.pyfunc import RoimlPyfuncModel

set_model(RoimlPyfuncModel())
