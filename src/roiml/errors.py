"""Errors a user can meet. Each message says what was wrong and what to do about it.

The CLI prints them without a traceback and exits non-zero; the API maps them to 4xx/503.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailableError",
    "FeatureError",
    "ImportValidationError",
    "ModelError",
    "PipelineError",
    "PredictionLogFullError",
    "RegistryError",
    "RoimlError",
    "TrainingError",
    "WorldError",
]


class RoimlError(Exception):
    """Base of every error roiml raises on purpose."""

    exit_code: int = 1


class ConfigurationError(RoimlError):
    """A setting is missing or malformed."""

    exit_code = 2


class DatabaseUnavailableError(RoimlError):
    """The database could not be reached."""

    exit_code = 3


class FeatureError(RoimlError):
    """A feature request is malformed: unknown feature or entity type, bad dates or frames."""

    exit_code = 2


class PipelineError(RoimlError):
    """A pipeline step cannot run: bad date or shard, missing input, failed gate."""

    exit_code = 6


class WorldError(RoimlError):
    """The simulated world was asked for something it cannot generate."""

    exit_code = 2


class ModelError(RoimlError):
    """A model cannot be used as asked: unknown name, or inputs that do not match its features."""

    exit_code = 2


class TrainingError(RoimlError):
    """A model cannot be trained honestly from the data given (too few labels, bad split)."""

    exit_code = 7


class RegistryError(RoimlError):
    """The model registry refused an operation (unknown version or stage); nothing changed."""

    exit_code = 8


class ImportValidationError(RoimlError):
    """An imported file does not match its table's contract; nothing was written."""

    exit_code = 4

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


class PredictionLogFullError(RoimlError):
    """The prediction log cannot take more predictions: the database is not accepting writes and
    the on-disk buffer is at ``prediction_log_buffer_max_mb``. The API answers 503 rather than
    serve a prediction it cannot record."""

    exit_code = 3
