"""FastAPI dependencies of the routes: the app's :class:`~roiml.serving.runtime.Serving` (set on
``app.state`` by the app factory), the health caches over it, and the authenticated,
rate-limited principal per scope.

Routes declare what they need as parameters, e.g.
``async def route(serving: ServingDep, principal: PredictPrincipal)``. Every route is rate
limited: the scoped principals below charge the caller's budget, and :data:`PublicPrincipal`
(for the routes anyone may call) charges a token's budget or, without one, the client
address's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request

from roiml.serving.components import Components
from roiml.serving.health import ModelHealthRollup, ServiceHealthCache
from roiml.serving.ratelimit import limited, limited_metrics, limited_public
from roiml.serving.runtime import Serving
from roiml.serving.security import Principal, Scope

__all__ = [
    "AdminPrincipal",
    "ComponentsDep",
    "FeedbackPrincipal",
    "HealthRollupDep",
    "MetricsViewer",
    "PredictPrincipal",
    "PublicPrincipal",
    "ReadPrincipal",
    "ServiceHealthDep",
    "ServingDep",
    "get_components",
    "get_health_rollup",
    "get_service_health",
    "get_serving",
    "serving_of",
]


def serving_of(request: Request) -> Serving:
    """The app's :class:`Serving`, read off ``app.state`` (the prediction routes call this
    directly: one dependency layer fewer on the hot path)."""
    serving: Serving = request.app.state.serving
    return serving


async def get_serving(request: Request) -> Serving:
    """Dependency: the app's :class:`Serving` (async: a sync one would run on a thread)."""
    return serving_of(request)


async def get_components(request: Request) -> Components:
    """Dependency: the app's :class:`Components`."""
    return serving_of(request).parts


async def get_health_rollup(request: Request) -> ModelHealthRollup:
    """Dependency: the app's model-health roll-up, made on first use."""
    state = request.app.state
    # Made here rather than by the app factory: the roll-up is the health routes' own state.
    # No await between the read and the write, so two requests cannot both make one.
    rollup: ModelHealthRollup | None = getattr(state, "model_health_rollup", None)
    if rollup is None:
        rollup = state.model_health_rollup = ModelHealthRollup(serving_of(request).parts)
    return rollup


async def get_service_health(request: Request) -> ServiceHealthCache:
    """Dependency: the app's cached service health, made on first use."""
    state = request.app.state
    cache: ServiceHealthCache | None = getattr(state, "service_health_cache", None)
    if cache is None:
        serving = serving_of(request)
        cache = state.service_health_cache = ServiceHealthCache(serving.parts, serving.health_redis)
    return cache


ServingDep = Annotated[Serving, Depends(get_serving)]
ComponentsDep = Annotated[Components, Depends(get_components)]
HealthRollupDep = Annotated[ModelHealthRollup, Depends(get_health_rollup)]
ServiceHealthDep = Annotated[ServiceHealthCache, Depends(get_service_health)]
# Authenticated, rate limited, holding the scope: 401, 429, 403 in that order.
PredictPrincipal = Annotated[Principal, Depends(limited(Scope.PREDICT))]
FeedbackPrincipal = Annotated[Principal, Depends(limited(Scope.FEEDBACK))]
AdminPrincipal = Annotated[Principal, Depends(limited(Scope.ADMIN))]
# Model health: a prediction client's question about its own models; rate limited like one.
ReadPrincipal = PredictPrincipal
# Routes anyone may call (/health, /metrics): the token's principal, or None without one
# while auth is on; rate limited either way.
PublicPrincipal = Annotated[Principal | None, Depends(limited_public)]
# /metrics: as PublicPrincipal, or "scraper" for the bearer of ROIML_METRICS_TOKEN.
MetricsViewer = Annotated[Principal | Literal["scraper"] | None, Depends(limited_metrics)]
