"""What a rollout is: its plan, the analysis policy, and the record kept while it runs and after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._durations import parse_duration as parse_interval
from .._process import ProcessIdentity
from ..errors import ConfigError
from ..evaluation import Clearance

__all__ = [
    "DEFAULT_STEPS",
    "MAX_INTERVAL_SECONDS",
    "MAX_STEPS",
    "MIN_INTERVAL_SECONDS",
    "AnalysisPolicy",
    "Phase",
    "Rollout",
    "StepResult",
    "Window",
    "check_interval",
    "check_step_count",
    "parse_duration",
    "parse_steps",
]

DEFAULT_STEPS = (10, 25, 50, 100)
# A step waits up to max_wait_intervals for traffic, so these bound a rollout at days, not years;
# below a tenth of a second the driver would do little but read /metrics.
MIN_INTERVAL_SECONDS = 0.1
MAX_INTERVAL_SECONDS = 24 * 3600.0
MAX_STEPS = 20
Phase = Literal["progressing", "paused", "promoted", "aborted"]


def _now() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> float:
    """`30s`, `2m`, `500ms`, `1h` or plain seconds, as seconds, from 100 ms to 24 h."""
    return check_interval(parse_interval(text, what="interval"), text)


def check_interval(seconds: float, text: str | None = None) -> float:
    """Refuse an analysis window outside 100 ms to 24 h."""
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise ConfigError(
            f"interval {text or f'{seconds:g} s'!r}: use a duration from 100ms to 24h (the "
            "analysis window of each step, which may wait up to 10 of them for traffic)"
        )
    return seconds


def check_step_count(steps: tuple[int, ...]) -> tuple[int, ...]:
    if len(steps) > MAX_STEPS:
        raise ConfigError(
            f"steps {list(steps)}: use at most {MAX_STEPS} steps (each waits at least one interval)"
        )
    return steps


def parse_steps(text: str | None, canary: int | None) -> tuple[int, ...]:
    """Canary weights per step, rising and ending at 100; `--canary PCT` sets the first one."""
    if text:
        try:
            steps = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise ConfigError(f"--steps {text!r}: use percentages such as 10,25,50,100") from None
    else:
        steps = DEFAULT_STEPS
    if canary is not None:
        if not 0 < canary <= 100:
            raise ConfigError(f"--canary {canary}: use a percentage from 1 to 100")
        steps = (canary, *(step for step in steps if step > canary))
    if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise ConfigError(f"steps {list(steps)}: use rising percentages from 1 to 100")
    if steps[-1] != 100:
        steps = (*steps, 100)
    return check_step_count(steps)


class AnalysisPolicy(BaseModel):
    """When a canary step passes: canary compared with stable over the same window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_samples: int = Field(
        default=100, ge=1, description="canary requests needed before any verdict"
    )
    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    max_latency_ratio: float = Field(default=1.5, ge=1, description="canary p99 over stable p99")
    latency_slack_ms: float = Field(
        default=5.0, ge=0, description="p99 differences below this are noise"
    )
    max_psi: float = Field(default=0.25, ge=0, description="prediction distribution shift (PSI)")
    max_accuracy_drop: float = Field(
        default=0.02, ge=0, le=1, description="where labels are fed back"
    )
    max_error_increase: float = Field(
        default=0.1,
        ge=0,
        description="relative rise of a regression's mean absolute error on labels",
    )
    max_wait_intervals: int = Field(
        default=10,
        ge=1,
        description="intervals to wait for min_samples before pausing as inconclusive",
    )


class StepResult(BaseModel):
    """One analysis: the verdict of a step and the numbers behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: int
    verdict: Literal["pass", "fail", "inconclusive"]
    reasons: list[str]
    canary: dict[str, Any]
    stable: dict[str, Any]
    psi: float | None = None
    at: datetime = Field(default_factory=_now)


class Rollout(BaseModel):
    """The record of one rollout, rewritten at every change; the env's latest is `rollout.json`."""

    model_config = ConfigDict(extra="forbid")

    id: str
    env: str
    model: str
    stable: int | None
    canary: int
    steps: tuple[int, ...]
    interval_seconds: float
    policy: AnalysisPolicy = AnalysisPolicy()
    mode: Literal["split", "shadow"] = "split"
    sticky_header: str | None = None
    phase: Phase = "progressing"
    step: int = Field(default=0, description="index into steps of the current weight")
    reason: str | None = None
    results: list[StepResult] = Field(default_factory=list)
    actor: str
    clearance: Clearance | None = Field(
        default=None, description="why the canary may take traffic: its gates, or an override"
    )
    controller_pid: int | None = Field(
        default=None, description="the driving process; None while no one drives it (paused)"
    )
    controller_started: float | None = Field(default=None, description="its start time")
    watchdog: ProcessIdentity | None = Field(
        default=None, description="the process that restarts a detached driver when it dies"
    )
    driver_restarts: int = Field(
        default=0, ge=0, description="times a driver took over from one that had died"
    )
    started_at: datetime = Field(default_factory=_now)
    finished_at: datetime | None = None

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or steps[-1] != 100:
            raise ValueError("steps must end at 100")
        return steps

    @property
    def weight(self) -> int:
        return self.steps[self.step] if self.phase in ("progressing", "paused") else 0

    @property
    def active(self) -> bool:
        return self.phase in ("progressing", "paused")

    @property
    def controller(self) -> ProcessIdentity | None:
        if self.controller_pid is None:
            return None
        return ProcessIdentity(pid=self.controller_pid, started=self.controller_started)


class Window(BaseModel):
    """Where the driver is in the current step's analysis, kept (in `window.json`) so that a
    driver started after one died continues the window instead of opening a new one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout: str
    step: int
    opened_at: datetime = Field(description="when the baseline counters were read")
    intervals: int = Field(default=0, description="intervals waited out on thin traffic so far")
    baseline: dict[str, Any] = Field(description="the server's counters when the window opened")
    start: dict[str, Any] = Field(description="the counters when the rollout's first window opened")
