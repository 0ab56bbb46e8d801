"""FastAPI dependencies of the routes: the app's :class:`~roiml.serving.runtime.Serving` (set on
``app.state`` by the app factory) and the authenticated, rate-limited principal per scope.

Routes declare what they need as parameters, e.g.
``async def route(serving: ServingDep, principal: PredictPrincipal)``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from roiml.serving.components import Components
from roiml.serving.ratelimit import limited
from roiml.serving.runtime import Serving
from roiml.serving.security import Principal, Scope, require

__all__ = [
    "AdminPrincipal",
    "ComponentsDep",
    "FeedbackPrincipal",
    "PredictPrincipal",
    "ReadPrincipal",
    "ServingDep",
    "get_components",
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


ServingDep = Annotated[Serving, Depends(get_serving)]
ComponentsDep = Annotated[Components, Depends(get_components)]
# Authenticated, rate limited, holding the scope: 401, 429, 403 in that order.
PredictPrincipal = Annotated[Principal, Depends(limited(Scope.PREDICT))]
FeedbackPrincipal = Annotated[Principal, Depends(limited(Scope.FEEDBACK))]
AdminPrincipal = Annotated[Principal, Depends(limited(Scope.ADMIN))]
# Authenticated and holding the scope, not rate limited (model health was never charged).
ReadPrincipal = Annotated[Principal, Depends(require(Scope.PREDICT))]
