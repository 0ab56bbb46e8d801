"""Alerts: a row in ``monitoring_alerts``, a log line, and a webhook POST with bounded retries.

The webhook never breaks the job: every failure (refused connection, timeout, 5xx after the
retries, 4xx) ends as a ``FAILED: <why>`` delivery on the row and a log line. A rerun of the same
period re-posts only the alerts not yet delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from roiml.db.base import utcnow
from roiml.db.ml_tables import MonitoringAlert
from roiml.settings import Settings

__all__ = [
    "Alert",
    "Delivery",
    "WebhookConfig",
    "already_sent",
    "deliver",
    "post_webhook",
    "store_alerts",
]

log = logging.getLogger(__name__)

SENT = "SENT"
NOT_CONFIGURED = "NOT_CONFIGURED"
# Statuses the receiver will not change its mind about: retrying them only wastes the budget.
_FINAL_CLIENT_ERRORS = frozenset(range(400, 500)) - {408, 425, 429}


@dataclass
class Alert:
    """One threshold crossed (the ``alerts`` JSON entry of an ``ml_monitoring`` row)."""

    kind: str
    subject: str
    value: float | None
    threshold: float | None
    message: str
    delivery: str = "PENDING"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "delivery": self.delivery,
        }


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how patiently alerts are posted."""

    url: str | None
    timeout_seconds: float = 5.0
    retries: int = 3
    backoff_seconds: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        return cls(
            url=settings.monitoring_webhook_url,
            timeout_seconds=settings.monitoring_webhook_timeout_seconds,
            retries=settings.monitoring_webhook_retries,
            backoff_seconds=settings.monitoring_webhook_backoff_seconds,
        )

    @property
    def budget_seconds(self) -> float:
        """The longest a delivery can take: every attempt's timeout plus every wait."""
        waits = sum(self.backoff_seconds * 2.0**i for i in range(self.retries))
        return float(self.timeout_seconds * (self.retries + 1) + waits)


@dataclass
class Delivery:
    """The outcome of one POST (with its retries)."""

    status: str
    detail: str | None = None
    attempts: int = 0
    delivered_at: datetime | None = None
    errors: list[str] = field(default_factory=list)


def post_webhook(
    config: WebhookConfig,
    payload: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
) -> Delivery:
    """POST ``payload`` as JSON; retry connection errors, timeouts, 408/425/429 and 5xx.

    Waits ``backoff_seconds``, then twice that, and so on between attempts; each attempt is
    bounded by ``timeout_seconds``, so the whole delivery by :attr:`WebhookConfig.budget_seconds`.
    Never raises: the outcome is the returned :class:`Delivery`.
    """
    if not config.url:
        return Delivery(NOT_CONFIGURED, "ROIML_MONITORING_WEBHOOK_URL is not set")
    own = client is None
    http = client or httpx.Client(timeout=config.timeout_seconds)
    delivery = Delivery("FAILED")
    try:
        for attempt in range(config.retries + 1):
            if attempt:
                sleep(config.backoff_seconds * 2 ** (attempt - 1))
            delivery.attempts = attempt + 1
            try:
                response = http.post(config.url, json=payload)
            except httpx.HTTPError as exc:
                delivery.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.is_success:
                delivery.status, delivery.delivered_at = SENT, utcnow()
                delivery.detail = f"HTTP {response.status_code}"
                return delivery
            delivery.errors.append(f"HTTP {response.status_code}")
            if response.status_code in _FINAL_CLIENT_ERRORS:
                break
    finally:
        if own:
            http.close()
    last = delivery.errors[-1] if delivery.errors else "no attempt made"
    delivery.status = f"FAILED: {last}"[:32]
    delivery.detail = (
        f"{config.url} not reached after {delivery.attempts} attempt(s): "
        + "; ".join(delivery.errors)
    )
    return delivery


def deliver(
    config: WebhookConfig,
    header: dict[str, Any],
    alerts: Sequence[Alert],
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Log every alert, then POST them together (one request per model and period)."""
    for alert in alerts:
        log.warning("monitoring alert: %s", alert.message)
    if not alerts:
        return Delivery(SENT, "nothing to send")
    delivery = post_webhook(config, {**header, "alerts": [a.as_json() for a in alerts]}, sleep)
    if delivery.status == SENT:
        log.info("monitoring: %d alert(s) posted to the webhook", len(alerts))
    elif delivery.status != NOT_CONFIGURED:
        log.error("monitoring: webhook delivery failed: %s", delivery.detail)
    for alert in alerts:
        alert.delivery = delivery.status
    return delivery


def store_alerts(
    session: Session,
    tenant_id: str,
    model_name: str,
    model_version: str,
    period_start: datetime,
    alerts: Sequence[Alert],
    delivery: Delivery,
) -> None:
    """Upsert one ``monitoring_alerts`` row per alert (key: model, version, period, kind, subject).

    Rows of this period no longer raised are left as they were: they record what was sent.
    """
    existing = {
        (row.kind, row.subject): row
        for row in session.scalars(
            select(MonitoringAlert).where(
                MonitoringAlert.tenant_id == tenant_id,
                MonitoringAlert.model_name == model_name,
                MonitoringAlert.model_version == model_version,
                MonitoringAlert.period_start == period_start,
            )
        )
    }
    now = utcnow()
    for alert in alerts:
        row = existing.get((alert.kind, alert.subject[:128]))
        if row is None:
            row = MonitoringAlert(
                tenant_id=tenant_id,
                model_name=model_name,
                model_version=model_version,
                period_start=period_start,
                kind=alert.kind,
                subject=alert.subject[:128],
                raised_at=now,
                attempts=0,
            )
            session.add(row)
        row.value = alert.value
        row.threshold = alert.threshold
        row.message = alert.message
        if row.delivery == SENT and alert.delivery != SENT:
            alert.delivery = SENT  # delivered by an earlier run of this period
            continue
        row.delivery = alert.delivery
        row.delivery_detail = delivery.detail
        row.attempts = (row.attempts or 0) + delivery.attempts
        row.delivered_at = delivery.delivered_at


def already_sent(
    session: Session, tenant_id: str, model_name: str, model_version: str, period_start: datetime
) -> set[tuple[str, str]]:
    """(kind, subject) of this period's alerts a previous run delivered."""
    rows = session.execute(
        select(MonitoringAlert.kind, MonitoringAlert.subject).where(
            MonitoringAlert.tenant_id == tenant_id,
            MonitoringAlert.model_name == model_name,
            MonitoringAlert.model_version == model_version,
            MonitoringAlert.period_start == period_start,
            MonitoringAlert.delivery == SENT,
        )
    )
    return {(kind, subject) for kind, subject in rows}
