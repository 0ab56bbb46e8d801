"""The four models: labels, datasets, training, evaluation, explanations."""

from roiml.models.artifact import MODEL_NAMES, ModelArtifact, model_type_of

__all__ = ["MODEL_NAMES", "ModelArtifact", "model_type_of"]
