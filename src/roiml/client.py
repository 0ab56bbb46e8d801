"""A Python client of the roiml API, for notebooks and services that call it.

    from roiml import Client

    with Client("http://127.0.0.1:8000", token=None) as api:
        answer = api.predict("move-probability", "user_123")
        batch = api.predict_batch([{"entity_id": "user_1", "prediction_type": "MOVE_PROBABILITY"}])
        stored = api.online_features(["user_1", "user_2"], feature_sets=["property"])

Each method returns the answer's JSON as a dict (the shapes are the API's OpenAPI document,
``/api/ml/openapi.json``). A refused request raises :class:`ApiError` with the status, the API's
own ``detail`` and, for a 429 or 503, when to come back. Only httpx, a runtime dependency
already; nothing of the server is imported, so the client costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from roiml.errors import RoimlError

__all__ = ["ApiError", "Client", "PredictionRoute"]

PredictionRoute = Literal[
    "move-probability", "transaction-type", "contact-timing", "property-value"
]
_PREFIX = "/api/ml/v1"


class ApiError(RoimlError):
    """The API refused a request: ``status``, its ``detail`` and (429, 503) ``retry_after``
    seconds."""

    def __init__(self, status: int, detail: object, retry_after: float | None = None) -> None:
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        super().__init__(f"the API answered {status}: {detail}{wait}")


class Client:
    """The API at ``base_url`` (``http://host:port``), as the tenant of ``token`` (a JWT; None
    where the API runs without auth). ``transport`` lets a test or an in-process caller hand
    httpx an ASGI app instead of a socket."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def predict(
        self,
        route: PredictionRoute,
        entity_id: str,
        *,
        as_of_date: datetime | str | None = None,
        features: Mapping[str, float | None] | None = None,
        horizon_months: int | None = None,
    ) -> dict[str, Any]:
        """One explained prediction (``POST /v1/predict/<route>``); ``features`` replaces the
        feature store's vector, ``as_of_date`` (RFC 3339 with an offset) asks about a past
        instant."""
        body: dict[str, Any] = {"entity_id": entity_id}
        if as_of_date is not None:
            body["as_of_date"] = (
                as_of_date.isoformat() if isinstance(as_of_date, datetime) else as_of_date
            )
        if features is not None:
            body["features"] = dict(features)
        if horizon_months is not None:
            body["horizon_months"] = horizon_months
        return self._call("POST", f"/predict/{route}", body)

    def predict_batch(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Up to 1,000 predictions (``POST /v1/predict/batch``); an item the API cannot answer
        is an error in its place, not an exception."""
        return self._call("POST", "/predict/batch", {"requests": [dict(i) for i in items]})

    def online_features(
        self, entity_ids: Sequence[str], feature_sets: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """What the online store holds for up to 100 homeowners (``POST
        /v1/features/online``)."""
        body: dict[str, Any] = {"entity_ids": list(entity_ids)}
        if feature_sets is not None:
            body["feature_sets"] = list(feature_sets)
        return self._call("POST", "/features/online", body)

    def models(self) -> dict[str, Any]:
        """The tenant's models as served (``GET /v1/models``)."""
        return self._call("GET", "/models")

    def feature_service(self, model_name: str) -> dict[str, Any]:
        """A model's inputs in order (``GET /v1/models/<name>/features``)."""
        return self._call("GET", f"/models/{model_name}/features")

    def feedback(self, prediction_id: str, **outcome: Any) -> dict[str, Any]:
        """The real outcome of a prediction (``POST /v1/predictions/<id>/feedback``), e.g.
        ``actual_class="HIGH"`` or ``actual_value=512000``."""
        return self._call("POST", f"/predictions/{prediction_id}/feedback", outcome)

    def _call(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, _PREFIX + path, json=body)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            answer: dict[str, Any] = response.json()
            return answer
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        retry = response.headers.get("Retry-After")
        raise ApiError(
            response.status_code, detail, float(retry) if retry and retry.isdigit() else None
        )
