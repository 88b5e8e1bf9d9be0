"""Rollouts: what an env serves, changed safely (canary steps with automated analysis, promotion,
abort, instant rollback), every change reflected in the registry's aliases and audit trail.

    target = Target(registry=Path(".mlinfra/envs/dev/registry"), env="dev", url="http://127.0.0.1:8701")
    deploy(target, "v4", steps=(10, 50, 100), interval_seconds=30, wait=True)
    # canary at 10%, analysed at each step until promoted, aborted or paused
    rollback(target)           # the previous champion, at once
    resume(target)             # a new driver for a paused rollout, or one whose driver died

Functions take explicit values (no engine, no config) so that tests and the TUI call them directly.
"""

from ._analysis import analyse
from ._controller import Target, abort, begin, promote, recover, rollback, rollback_version
from ._driver import TOKEN_VARIABLE, spawn_driver, stop_driver
from ._model import DEFAULT_STEPS, AnalysisPolicy, Rollout, StepResult, parse_duration, parse_steps
from ._run import deploy, drive, resume, status
from ._stats import Snapshot, VariantStats, psi, scrape

__all__ = [
    "DEFAULT_STEPS",
    "TOKEN_VARIABLE",
    "AnalysisPolicy",
    "Rollout",
    "Snapshot",
    "StepResult",
    "Target",
    "VariantStats",
    "abort",
    "analyse",
    "begin",
    "deploy",
    "drive",
    "parse_duration",
    "parse_steps",
    "promote",
    "psi",
    "recover",
    "resume",
    "rollback",
    "rollback_version",
    "scrape",
    "spawn_driver",
    "status",
    "stop_driver",
]
