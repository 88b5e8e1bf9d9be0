"""The metrics mlinfra computes, by task, named the way gates and `--json` output name them.

The table is plain data so that config validation can check gate names without importing sklearn.
Classification averages are macro (every class counts the same); `roc_auc` is one-vs-rest.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas

__all__ = [
    "LATENCY_METRICS",
    "METRICS",
    "Metric",
    "Task",
    "compute_metrics",
    "default_metric",
    "greater_is_better",
    "measure_latency",
    "metric_names",
    "score",
]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    function: str  # in sklearn.metrics
    greater_is_better: bool = True
    needs_proba: bool = False
    options: dict[str, Any] = field(default_factory=dict)


_MACRO = {"average": "macro", "zero_division": 0}
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("accuracy", "classification", "accuracy_score"),
        Metric("balanced_accuracy", "classification", "balanced_accuracy_score"),
        Metric("f1", "classification", "f1_score", options=_MACRO),
        Metric("precision", "classification", "precision_score", options=_MACRO),
        Metric("recall", "classification", "recall_score", options=_MACRO),
        Metric("roc_auc", "classification", "roc_auc_score", needs_proba=True),
        Metric("log_loss", "classification", "log_loss", greater_is_better=False, needs_proba=True),
        Metric("r2", "regression", "r2_score"),
        Metric("mae", "regression", "mean_absolute_error", greater_is_better=False),
        Metric("rmse", "regression", "root_mean_squared_error", greater_is_better=False),
        Metric("median_ae", "regression", "median_absolute_error", greater_is_better=False),
        Metric("mape", "regression", "mean_absolute_percentage_error", greater_is_better=False),
    )
}
# Milliseconds per row predicted in one batch, and for one row on its own (what a server sees).
LATENCY_METRICS = ("latency_ms_per_row", "latency_ms_single_row")
_SINGLE_ROW_SAMPLES = 30
_BATCH_BUDGET_S = 0.2


def metric_names(task: Task) -> list[str]:
    return [name for name, metric in METRICS.items() if metric.task == task]


def default_metric(task: Task) -> str:
    return "accuracy" if task == "classification" else "r2"


def greater_is_better(name: str) -> bool:
    return name not in LATENCY_METRICS and METRICS[name].greater_is_better


def score(name: str, estimator: Any, features: Any, target: Any) -> float:
    """One metric of a fitted estimator; the callable scikit-learn's `scoring=` expects."""
    value = compute_metrics(METRICS[name].task, estimator, features, target, only=(name,))[name]
    if value is None:
        raise ValueError(f"metric {name} is undefined on this data")
    return value


def compute_metrics(
    task: Task,
    estimator: Any,
    features: Any,
    target: Any,
    *,
    only: tuple[str, ...] | None = None,
) -> dict[str, float | None]:
    """Every metric of the task (or `only` these); None where one is undefined on this data."""
    import numpy as np
    import sklearn.metrics

    names = only or tuple(metric_names(task))
    predicted = estimator.predict(features)
    proba = None
    if any(METRICS[n].needs_proba for n in names) and hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(features)
    results: dict[str, float | None] = {}
    for name in names:
        metric = METRICS[name]
        function = getattr(sklearn.metrics, metric.function)
        try:
            with warnings.catch_warnings():
                # A slice may hold one class only: sklearn warns, and the report shows the
                # value it still computes, or None (n/a) where the metric is undefined.
                warnings.simplefilter("ignore")
                if not metric.needs_proba:
                    value = function(target, predicted, **metric.options)
                elif proba is None:
                    value = None
                else:
                    value = _proba_metric(function, target, proba, list(estimator.classes_))
        except ValueError:  # e.g. roc_auc when the target holds one class only
            value = None
        results[name] = None if value is None or not np.isfinite(value) else float(value)
    return results


def _proba_metric(function: Any, target: Any, proba: Any, classes: list[Any]) -> float:
    if function.__name__ == "roc_auc_score":
        if len(classes) == 2:
            return function(target, proba[:, 1])
        return function(target, proba, multi_class="ovr", average="macro", labels=classes)
    return function(target, proba, labels=classes)


def measure_latency(estimator: Any, features: pandas.DataFrame) -> dict[str, float | None]:
    """Median prediction time per row, batched and one row at a time, in milliseconds.

    Measured in CPU time (the process's), not wall time: on a busy machine, a CI runner
    say, wall time grows with every other process (a 4 ms predict took 15-75 ms), while the
    model's own cost, which a latency gate is about, stays put. On an idle machine the two
    agree."""
    import statistics

    if len(features) == 0:
        return dict.fromkeys(LATENCY_METRICS)
    batch: list[float] = []
    started = time.perf_counter()
    while len(batch) < 3 or (time.perf_counter() - started < _BATCH_BUDGET_S and len(batch) < 50):
        tick = time.process_time()
        estimator.predict(features)
        batch.append(time.process_time() - tick)
    single: list[float] = []
    for i in range(min(_SINGLE_ROW_SAMPLES, len(features))):
        row = features.iloc[[i]]
        tick = time.process_time()
        estimator.predict(row)
        single.append(time.process_time() - tick)
    return {
        "latency_ms_per_row": statistics.median(batch) / len(features) * 1000,
        "latency_ms_single_row": statistics.median(single) * 1000,
    }
