"""Analysis of one canary step on counts as `/metrics` gives them: pure functions, no server."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlinfra.errors import ConfigError
from mlinfra.rollout import AnalysisPolicy, VariantStats, analyse, parse_duration, parse_steps, psi
from mlinfra.rollout._analysis import TAIL_REQUESTS, latency_quantile
from mlinfra.serving._metrics import LATENCY_BUCKETS

POLICY = AnalysisPolicy(min_samples=100)


def stats(
    requests: int, errors: int = 0, latency_ms: float = 1.0, classes: dict | None = None
) -> VariantStats:
    """A variant whose every request took `latency_ms`, as cumulative Prometheus buckets."""
    buckets = {b: float(requests if latency_ms / 1000 <= b else 0) for b in LATENCY_BUCKETS}
    buckets[math.inf] = float(requests)
    predictions = (
        classes
        if classes is not None
        else {"0": requests / 3, "1": requests / 3, "2": requests / 3}
    )
    return VariantStats(requests=requests, errors=errors, latency=buckets, predictions=predictions)


def merged(*variants: VariantStats) -> VariantStats:
    """One variant whose requests are all of `variants`' requests."""
    return VariantStats(
        requests=sum(v.requests for v in variants),
        latency={b: sum(v.latency[b] for v in variants) for b in variants[0].latency},
        predictions={k: sum(v.predictions[k] for v in variants) for k in variants[0].predictions},
    )


def test_same_behaviour_passes() -> None:
    result = analyse(25, stats(200), stats(600), POLICY)
    assert result.verdict == "pass" and result.psi == pytest.approx(0, abs=1e-9)


def test_thin_canary_traffic_gives_no_verdict_even_when_every_request_failed() -> None:
    result = analyse(10, stats(99, errors=99), stats(1000), POLICY)
    assert result.verdict == "inconclusive" and result.reasons == ["99 canary requests, 100 needed"]


def test_error_rate_above_stable_plus_tolerance_fails() -> None:
    assert analyse(50, stats(200, errors=2), stats(200, errors=1), POLICY).verdict == "pass"
    failed = analyse(50, stats(200, errors=6), stats(200, errors=1), POLICY)
    assert failed.verdict == "fail" and failed.reasons[0].startswith("error rate 3.00% (6/200)")


def test_slow_canary_fails_on_p99_but_tiny_differences_are_noise() -> None:
    assert (
        analyse(50, stats(200, latency_ms=1.4), stats(200, latency_ms=1.0), POLICY).verdict
        == "pass"
    )
    assert (
        analyse(50, stats(200, latency_ms=4.0), stats(200, latency_ms=1.0), POLICY).verdict
        == "pass"
    )
    slow = analyse(50, stats(200, latency_ms=40), stats(200, latency_ms=1.0), POLICY)
    assert slow.verdict == "fail" and slow.reasons[0].startswith("p97 latency")


def test_a_few_stalled_requests_in_a_thin_window_are_not_a_slow_canary() -> None:
    policy = AnalysisPolicy(min_samples=20)
    stalled = merged(stats(16, latency_ms=1.0), stats(4, latency_ms=50))  # a GC pause, say
    assert analyse(50, stalled, stats(20), policy).verdict == "pass"
    slow = analyse(50, stats(20, latency_ms=20), stats(20), policy)
    assert slow.verdict == "fail" and slow.reasons[0].startswith("p75 latency")


def test_a_step_shows_latency_at_the_quantile_it_judged() -> None:
    """The step line must not show a p99 of 50 ms next to a pass judged on p75."""
    policy = AnalysisPolicy(min_samples=20)
    stalled = merged(stats(16, latency_ms=1.0), stats(4, latency_ms=50))
    result = analyse(50, stalled, stats(20), policy)
    assert result.canary["tail_quantile"] == result.stable["tail_quantile"] == 0.75
    assert result.canary["tail_ms"] == pytest.approx(stalled.quantile(0.75) * 1000, abs=1e-3)
    assert result.canary["tail_ms"] < 2 < 40 < result.canary["p99_ms"]


@given(st.integers(min_value=1, max_value=100_000))
def test_latency_quantile_leaves_five_requests_above_it_and_is_p99_on_500(requests: int) -> None:
    q = latency_quantile(requests)
    assert 0.5 <= q <= 0.99
    assert requests * (1 - q) >= min(TAIL_REQUESTS, requests / 2) - 1e-9
    assert (q == 0.99) == (requests >= 500)


def test_shifted_prediction_distribution_fails() -> None:
    skewed = stats(300, classes={"0": 290, "1": 5, "2": 5})
    result = analyse(50, skewed, stats(300), POLICY)
    assert result.verdict == "fail" and "PSI" in result.reasons[0] and result.psi > 0.25


def test_without_stable_traffic_the_canary_is_held_to_absolute_limits() -> None:
    quiet = VariantStats()
    assert analyse(100, stats(200), quiet, POLICY).verdict == "pass"
    assert analyse(100, stats(200, errors=10), quiet, POLICY).verdict == "fail"


def test_p99_interpolates_within_its_bucket_like_prometheus() -> None:
    buckets = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, math.inf: 100.0}
    assert VariantStats(requests=100, latency=buckets).p99() == pytest.approx(0.0047)
    assert VariantStats().p99() is None
    overflow = {0.001: 0.0, math.inf: 10.0}
    assert VariantStats(requests=10, latency=overflow).p99() == 0.001


def test_window_is_the_difference_of_two_scrapes_and_survives_a_server_restart() -> None:
    earlier, later = stats(100, errors=1), stats(250, errors=4)
    window = later.minus(earlier)
    assert (window.requests, window.errors) == (150, 3)
    restarted = stats(20)
    assert restarted.minus(earlier).requests == 20


def test_psi_is_zero_for_equal_and_large_for_disjoint_distributions() -> None:
    assert psi({"a": 10, "b": 10}, {"a": 50, "b": 50}) == pytest.approx(0)
    assert psi({"a": 100}, {"b": 100}) > 1
    assert psi({}, {"a": 1}) is None


@pytest.mark.parametrize(
    ("text", "canary", "steps"),
    [
        (None, None, (10, 25, 50, 100)),
        (None, 5, (5, 10, 25, 50, 100)),
        (None, 30, (30, 50, 100)),
        ("20,60", None, (20, 60, 100)),
        ("100", None, (100,)),
    ],
)
def test_steps_rise_to_one_hundred(text: str | None, canary: int | None, steps: tuple) -> None:
    assert parse_steps(text, canary) == steps


@pytest.mark.parametrize("text", ["50,10", "0,100", "10,abc", "10,10,100", "150"])
def test_bad_steps_are_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="steps"):
        parse_steps(text, None)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("30s", "2m", "500ms", "1h", "1.5")] == [
        30,
        120,
        0.5,
        3600,
        1.5,
    ]
    for bad in ("", "0s", "10 parsecs", "-1s"):
        with pytest.raises(ConfigError, match="interval"):
            parse_duration(bad)


def labelled(
    requests: int, labels: int, *, correct: int | None = None, abs_error: float | None = None
) -> VariantStats:
    base = stats(requests)
    base.feedback = {"rows": labels}
    if correct is not None:
        base.feedback["correct"] = correct
    if abs_error is not None:
        base.feedback["abs_error"] = abs_error
    return base


def test_accuracy_drop_on_fed_back_labels_fails_once_both_sides_have_enough() -> None:
    worse = analyse(50, labelled(300, 200, correct=150), labelled(300, 200, correct=190), POLICY)
    assert worse.verdict == "fail" and worse.reasons[0].startswith("accuracy 75.00% on 200 labels")
    assert worse.canary["accuracy"] == 0.75
    close = analyse(50, labelled(300, 200, correct=187), labelled(300, 200, correct=190), POLICY)
    assert close.verdict == "pass"
    thin = analyse(50, labelled(300, 99, correct=10), labelled(300, 200, correct=190), POLICY)
    assert thin.verdict == "pass"  # 99 labels cannot convict


def test_regression_mean_absolute_error_rise_fails() -> None:
    worse = analyse(
        50, labelled(300, 100, abs_error=130.0), labelled(300, 100, abs_error=100.0), POLICY
    )
    assert worse.verdict == "fail" and worse.reasons[0].startswith("mean absolute error 1.3")
    same = analyse(
        50, labelled(300, 100, abs_error=105.0), labelled(300, 100, abs_error=100.0), POLICY
    )
    assert same.verdict == "pass"


def test_public_api_is_the_documented_surface() -> None:
    import mlinfra.rollout
    import mlinfra.serving

    assert mlinfra.rollout.__all__ == [
        "DEFAULT_STEPS", "TOKEN_VARIABLE", "AnalysisPolicy", "Rollout", "Snapshot", "StepResult",
        "Target", "VariantStats", "abort", "analyse", "begin", "deploy", "drive", "parse_duration",
        "parse_steps", "promote", "psi", "recover", "resume", "rollback", "rollback_version",
        "scrape", "spawn_driver", "status", "stop_driver",
    ]  # fmt: skip
    assert mlinfra.serving.__all__ == [
        "Deployment", "WorkerAck", "deployment_dir", "read_acks", "read_deployment",
        "write_deployment",
    ]  # fmt: skip
