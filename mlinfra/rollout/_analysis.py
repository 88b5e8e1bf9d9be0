"""The verdict of one canary step: canary against stable on errors, tail latency (p99 once the
window holds 500 requests), predictions and, where labels are fed back, accuracy.

No verdict is given on thin traffic: below `min_samples` canary requests the step is
inconclusive, and accuracy counts only once both variants have `min_samples` labels. Stable is
compared over the same window when it had enough traffic there, else over the whole rollout so
far; with no stable traffic at all the canary is held to absolute limits.
"""

from __future__ import annotations

import math

from ._model import AnalysisPolicy, StepResult
from ._stats import VariantStats, psi

__all__ = ["analyse", "latency_quantile"]

TAIL_REQUESTS = 5


def analyse(
    weight: int, canary: VariantStats, stable: VariantStats, policy: AnalysisPolicy
) -> StepResult:
    """Compare the two variants' windows and say pass, fail or inconclusive, with reasons."""
    tail = latency_quantile(canary.requests)
    if canary.requests < policy.min_samples:
        return StepResult(
            weight=weight,
            verdict="inconclusive",
            reasons=[f"{canary.requests} canary requests, {policy.min_samples} needed"],
            canary=canary.summary(tail),
            stable=stable.summary(tail),
        )
    compared = stable.requests >= policy.min_samples
    failures = [*_errors(canary, stable if compared else None, policy)]
    shift = None
    if compared:
        failures += _latency(canary, stable, tail, policy)
        failures += _quality(canary, stable, policy)
        shift = psi(stable.predictions, canary.predictions)
        if shift is not None and shift > policy.max_psi:
            failures.append(
                f"predictions shifted: PSI {shift:.3f} against stable, limit {policy.max_psi}"
            )
    notes = [] if compared else [f"stable had {stable.requests} requests: absolute limits only"]
    return StepResult(
        weight=weight,
        verdict="fail" if failures else "pass",
        reasons=failures or notes or ["canary within every limit"],
        canary=canary.summary(tail),
        stable=stable.summary(tail),
        psi=None if shift is None else round(shift, 6),
    )


def _errors(canary: VariantStats, stable: VariantStats | None, policy: AnalysisPolicy) -> list[str]:
    baseline = stable.error_rate if stable is not None else 0.0
    limit = baseline + policy.max_error_rate_increase
    if canary.error_rate <= limit:
        return []
    return [
        f"error rate {canary.error_rate:.2%} ({canary.errors}/{canary.requests}) against "
        f"stable {baseline:.2%}, limit {limit:.2%}"
    ]


def _latency(
    canary: VariantStats, stable: VariantStats, q: float, policy: AnalysisPolicy
) -> list[str]:
    """The canary's tail latency against stable's, at the quantile the window supports."""
    canary_tail, stable_tail = canary.quantile(q), stable.quantile(q)
    if canary_tail is None or stable_tail is None:
        return []
    slack = policy.latency_slack_ms / 1000
    limit = max(stable_tail * policy.max_latency_ratio, stable_tail + slack)
    if canary_tail <= limit:
        return []
    return [
        f"p{q * 100:g} latency {canary_tail * 1000:.1f} ms against stable "
        f"{stable_tail * 1000:.1f} ms, limit {limit * 1000:.1f} ms"
    ]


def latency_quantile(requests: int) -> float:
    """p99, or a lower quantile on a window too thin for it: the quantile judged always has
    `TAIL_REQUESTS` requests above it, so one stalled request (a GC pause, a busy core) never
    aborts a rollout, while a canary that is slower throughout fails all the same."""
    if requests <= 0:
        return 0.99
    return max(0.5, min(0.99, math.floor(100 * (1 - TAIL_REQUESTS / requests)) / 100))


def _quality(canary: VariantStats, stable: VariantStats, policy: AnalysisPolicy) -> list[str]:
    """Accuracy (or mean absolute error) on labels fed back, once both sides have enough."""
    if min(canary.labelled, stable.labelled) < policy.min_samples:
        return []
    canary_accuracy, stable_accuracy = canary.accuracy(), stable.accuracy()
    if canary_accuracy is not None and stable_accuracy is not None:
        if canary_accuracy < stable_accuracy - policy.max_accuracy_drop:
            return [
                f"accuracy {canary_accuracy:.2%} on {canary.labelled} labels against stable "
                f"{stable_accuracy:.2%}, may drop {policy.max_accuracy_drop:.2%}"
            ]
        return []
    canary_mae, stable_mae = canary.mean_abs_error(), stable.mean_abs_error()
    if canary_mae is None or stable_mae is None:
        return []
    limit = stable_mae * (1 + policy.max_error_increase)
    if canary_mae > limit:
        return [
            f"mean absolute error {canary_mae:.4g} on {canary.labelled} labels against stable "
            f"{stable_mae:.4g}, limit {limit:.4g}"
        ]
    return []
