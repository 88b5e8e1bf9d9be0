"""Prometheus metrics of the server, by model version and variant; also the data rollouts analyse.

With several workers, `PROMETHEUS_MULTIPROC_DIR` is set before this module is imported, so every
worker writes its samples to files there and `/metrics` sums all of them: a rollout reading
`/metrics` sees the whole server, whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "VariantMetrics",
    "count_logged",
    "count_rejected",
    "render",
]

# Fine enough for a p99 comparison between variants from 0.5 ms to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
_VARIANT_LABELS = ("model", "version", "variant")

REQUESTS = Counter(
    "mlinfra_requests", "Prediction requests answered, by status code.", (*_VARIANT_LABELS, "code")
)
ERRORS = Counter(
    "mlinfra_request_errors", "Requests the model failed on (5xx), by variant.", _VARIANT_LABELS
)
LATENCY = Histogram(
    "mlinfra_predict_latency_seconds",
    "Time from a read request body to its answer (checks, model, encoding), by variant.",
    _VARIANT_LABELS,
    buckets=LATENCY_BUCKETS,
)
ROWS = Counter("mlinfra_rows", "Rows predicted, by variant.", _VARIANT_LABELS)
PREDICTIONS = Counter(
    "mlinfra_predictions",
    "Predicted values (class, or decile bin of a regression), by variant.",
    (*_VARIANT_LABELS, "value"),
)
FEEDBACK_ROWS = Counter(
    "mlinfra_feedback_rows",
    "Predictions whose true label was fed back, by variant.",
    _VARIANT_LABELS,
)
FEEDBACK_CORRECT = Counter(
    "mlinfra_feedback_correct", "Fed-back classifications that were right.", _VARIANT_LABELS
)
FEEDBACK_ABS_ERROR = Counter(
    "mlinfra_feedback_abs_error", "Sum of absolute errors of fed-back regressions.", _VARIANT_LABELS
)

PREDICTION_LOG_ROWS = Counter(
    "mlinfra_prediction_log_rows",
    "Rows of the prediction log (kind predictions or labels) written, dropped (queue full) or "
    "failed (not writable).",
    ("kind", "outcome"),
)


class VariantMetrics:
    """The metric children of one variant, looked up once rather than on every request."""

    def __init__(self, model: str, version: int, variant: str) -> None:
        self.labels = (model, str(version), variant)
        self.latency = LATENCY.labels(*self.labels)
        self.rows = ROWS.labels(*self.labels)
        self.errors = ERRORS.labels(*self.labels)
        self._codes = {200: REQUESTS.labels(*self.labels, "200")}

    def answered(self, code: int, seconds: float, rows: int) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = REQUESTS.labels(*self.labels, str(code))
        counter.inc()
        self.latency.observe(seconds)
        if rows:
            self.rows.inc(rows)
        if code >= 500:
            self.errors.inc()

    def predicted(self, counts: dict[str, int]) -> None:
        for value, count in counts.items():
            PREDICTIONS.labels(*self.labels, value).inc(count)

    def fed_back(
        self, rows: int, *, correct: int | None = None, abs_error: float | None = None
    ) -> None:
        FEEDBACK_ROWS.labels(*self.labels).inc(rows)
        if correct is not None:
            FEEDBACK_CORRECT.labels(*self.labels).inc(correct)
        if abs_error is not None:
            FEEDBACK_ABS_ERROR.labels(*self.labels).inc(abs_error)


def count_rejected(code: int) -> None:
    """A request refused before any variant was chosen (bad JSON, too large, unknown model)."""
    REQUESTS.labels("", "", "", str(code)).inc()


def count_logged(kind: str, outcome: str, rows: int) -> None:
    """Called by the prediction log's writer thread with the growth of its counts."""
    PREDICTION_LOG_ROWS.labels(kind, outcome).inc(rows)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
