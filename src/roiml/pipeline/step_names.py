"""The daily pipeline's step names, without the steps.

``roiml pipeline --help`` lists them; :mod:`roiml.pipeline.steps` imports the feature engine and
the store (DuckDB, Arrow, pandas, seconds of imports), so the names live here, where the CLI can
read them for nothing, and the steps module imports them from here.
"""

from __future__ import annotations

__all__ = ["COMPUTE_STEPS", "STEPS"]

# Compute step -> the feature set it computes.
COMPUTE_STEPS = {
    f"compute_{name}": name
    for name in ("behavioral", "property", "market", "transactional", "temporal")
}
STEPS = ("extract", *COMPUTE_STEPS, "validate", "store", "update_statistics")
