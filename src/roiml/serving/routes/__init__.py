"""The API's routes, one ``APIRouter`` per concern; :func:`roiml.serving.app.create_app`
includes :data:`ROUTERS` in this order (the order of the OpenAPI document)."""

from roiml.serving.routes import (
    batch,
    dashboard,
    features,
    feedback,
    health,
    models,
    predictions,
)

__all__ = ["ROUTERS"]

ROUTERS = (
    predictions.router,
    batch.router,
    models.router,
    features.router,
    feedback.router,
    health.router,
    dashboard.router,
)
