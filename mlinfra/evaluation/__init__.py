"""Evaluation: metrics by task, gates from mlinfra.toml, and reports stored in the registry.

from mlinfra.evaluation import evaluate

report = evaluate(registry, version, env="staging", features=X, target=y,
                  gates=["accuracy >= 0.9", "f1 >= champion - 0.01"], against="champion")
report.raise_if_failed()            # GateFailedError (exit 7) naming the failed gates
"""

from ._evaluate import DeclaredModel, evaluate, evaluate_declared
from ._gates import Gate, GateResult, parse_gate
from ._metrics import (
    LATENCY_METRICS,
    METRICS,
    Metric,
    compute_metrics,
    default_metric,
    greater_is_better,
    measure_latency,
    metric_names,
    score,
)
from ._report import EvaluationReport

__all__ = [
    "LATENCY_METRICS",
    "METRICS",
    "DeclaredModel",
    "EvaluationReport",
    "Gate",
    "GateResult",
    "Metric",
    "compute_metrics",
    "default_metric",
    "evaluate",
    "evaluate_declared",
    "greater_is_better",
    "measure_latency",
    "metric_names",
    "parse_gate",
    "score",
]
