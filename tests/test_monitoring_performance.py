"""Realised metrics against scikit-learn, CBPE against the truth it estimates, decay, webhook."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from monitoring_fixtures import Receiver, closed_port_url
from roiml.monitoring.alerts import WebhookConfig, post_webhook
from roiml.monitoring.performance import (
    compare_with_registered,
    estimated_binary,
    estimated_multiclass,
    realised_binary,
    realised_multiclass,
    realised_regression,
)


def test_realised_binary_matches_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(2000)
    label = rng.random(2000) < p
    decision = p > 0.7
    got = realised_binary(label, p, decision)
    assert got["auc"] == pytest.approx(roc_auc_score(label, p))
    assert got["precision"] == pytest.approx(precision_score(label, decision))
    assert got["recall"] == pytest.approx(recall_score(label, decision))
    assert got["f1"] == pytest.approx(f1_score(label, decision))
    assert realised_binary(np.zeros(5, bool), p[:5], decision[:5])["auc"] is None


def test_cbpe_estimates_what_calibrated_probabilities_later_realise() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(1, 6, 200_000)
    label = rng.random(p.size) < p  # calibrated by construction
    decision = p > np.quantile(p, 0.95)
    estimated = estimated_binary(p, decision)
    realised = realised_binary(label, p, decision)
    for metric in ("auc", "accuracy", "precision", "recall", "f1"):
        assert estimated[metric] == pytest.approx(realised[metric], abs=0.01), metric


def test_multiclass_realised_and_estimated() -> None:
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet([2, 1, 1, 0.5], 5000)
    # A class drawn from each row's probabilities: calibrated by construction.
    label = (rng.random(5000)[:, None] > probabilities.cumsum(axis=1)).sum(axis=1)
    predicted = probabilities.argmax(axis=1)
    got = realised_multiclass(label, predicted, probabilities, 4)
    assert got["f1"] == pytest.approx(f1_score(label, predicted, average="macro"))
    assert got["accuracy"] == pytest.approx(np.mean(label == predicted))
    estimated = estimated_multiclass(predicted, probabilities, probabilities.max(axis=1))
    assert estimated["accuracy"] == pytest.approx(got["accuracy"], abs=0.03)
    assert estimated["f1"] == pytest.approx(got["f1"], abs=0.05)
    only_confidence = estimated_multiclass(predicted, None, np.full(10, 0.3))
    assert only_confidence["accuracy"] == pytest.approx(0.3) and only_confidence["f1"] is None


def test_regression_and_decay() -> None:
    actual = np.array([100.0, 200.0, 300.0, 400.0])
    got = realised_regression(actual, actual * 1.1)
    assert got["mape"] == pytest.approx(0.1) and got["mae"] == pytest.approx(25.0)
    change, decayed = compare_with_registered(
        {"auc": 0.66, "precision": 0.58, "mape": 0.30, "r2": -1.0},
        {"auc": 0.76, "precision": 0.6, "mape": 0.26, "r2": 0.8},
        tolerance=0.1,
    )
    assert decayed == ["auc", "mape"]  # 13 % and 15 % worse; precision 3 %; r2 never judged
    assert change["auc"] == pytest.approx(-0.1)


def test_webhook_retries_server_errors_but_not_client_errors() -> None:
    waits: list[float] = []
    receiver = Receiver(status=503)
    config = WebhookConfig(receiver.url, timeout_seconds=2, retries=2, backoff_seconds=0.1)
    with receiver.running():
        failed = post_webhook(config, {"x": 1}, waits.append)
    assert failed.status == "FAILED: HTTP 503" and failed.attempts == 3
    assert waits == [0.1, 0.2] and len(receiver.bodies) == 3
    refused = Receiver(status=400)
    with refused.running():
        once = post_webhook(WebhookConfig(refused.url, 2, 2, 0.1), {"x": 1}, waits.append)
    assert once.attempts == 1 and once.status == "FAILED: HTTP 400"
    assert config.budget_seconds == pytest.approx(2 * 3 + 0.1 + 0.2)
    down = post_webhook(WebhookConfig(closed_port_url(), 1, 0, 0), {"x": 1})
    assert down.status.startswith("FAILED: ConnectError") and "not reached" in (down.detail or "")
    assert post_webhook(WebhookConfig(None), {}).status == "NOT_CONFIGURED"
