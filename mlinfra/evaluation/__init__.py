"""Evaluation: metrics by task, gates from mlinfra.toml, and reports stored in the registry.

from mlinfra.evaluation import evaluate

report = evaluate(registry, version, env="staging", features=X, target=y,
                  gates=["accuracy >= 0.9", "f1 >= champion - 0.01"], against="champion")
report.raise_if_failed()            # GateFailedError (exit 7) naming the failed gates

clearance = check_release(declared, registry, version, env="prod", command="mlinfra deploy 4")
# the stored report if it fits today's gates and champion, else evaluated now; failed gates
# raise ReleaseRefusedError (exit 7) unless override="why" is given (recorded in the registry)
promotion = promote_version(declared, dev_registry, prod_registry, "4",
                            source_env="dev", target_env="prod", command="...")
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
from ._promotion import PROMOTION_KIND, Promotion, promote_version
from ._release import (
    EVALUATION_KIND,
    OVERRIDE_KIND,
    Clearance,
    Override,
    ReleaseRefusedError,
    check_release,
)
from ._report import EvaluationReport

__all__ = [
    "EVALUATION_KIND",
    "LATENCY_METRICS",
    "METRICS",
    "OVERRIDE_KIND",
    "PROMOTION_KIND",
    "Clearance",
    "DeclaredModel",
    "EvaluationReport",
    "Gate",
    "GateResult",
    "Metric",
    "Override",
    "Promotion",
    "ReleaseRefusedError",
    "check_release",
    "compute_metrics",
    "default_metric",
    "evaluate",
    "evaluate_declared",
    "greater_is_better",
    "measure_latency",
    "metric_names",
    "parse_gate",
    "promote_version",
    "score",
]
