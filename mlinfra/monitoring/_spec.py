"""What one env's drift monitor is told: written by its provider as a private file (it holds the
webhook URL and the server's token), read by `python -m mlinfra.monitoring` when it starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .._process import ProcessIdentity

__all__ = ["SPEC_FILE", "MonitorSpec", "MonitorStatus", "MonitoringDirectory"]

SPEC_FILE = "monitor.json"


class MonitorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str
    registry: str
    """The registry the env serves from: the served version's reference sample is there."""
    directory: str
    """The env's monitoring directory: the prediction log, alerts, reports and status."""
    url: str
    """The env's model server, for the rollback policy."""
    token: str | None = None
    project_dir: str | None = None
    """Where mlinfra.toml is: the retrain policy runs `mlinfra cycle` there."""
    code_paths: list[str] = Field(default_factory=list)
    interval_seconds: float = Field(60.0, gt=0)
    window_seconds: float = Field(3600.0, gt=0)
    min_samples: int = Field(200, ge=1)
    significance: float = Field(0.05, gt=0, lt=1)
    policy: Literal["alert", "retrain", "rollback"] = "alert"
    webhook: str = ""
    cooldown_seconds: float = Field(3600.0, ge=0)
    retrain_cooldown_seconds: float = Field(6 * 3600.0, ge=0)


class MonitorStatus(BaseModel):
    """The monitor's heartbeat, rewritten after every check, and what it must remember across
    restarts so that a restarted monitor keeps its cool-downs."""

    model_config = ConfigDict(extra="ignore")

    process: ProcessIdentity
    started_at: float
    heartbeat_at: float
    checks: int = 0
    last_error: str | None = None
    watching: str | None = None
    """The model version whose traffic is watched, e.g. "iris v3"."""
    last_retrain_at: float | None = None
    last_rollback_at: float | None = None


@dataclass(frozen=True)
class MonitoringDirectory:
    """An env's monitoring directory: what the server logs, what the monitor finds and raises."""

    root: Path

    @property
    def log(self) -> Path:
        """The prediction log (predictions/ and labels/ segments)."""
        return self.root / "log"

    @property
    def alerts(self) -> Path:
        return self.root / "alerts.db"

    @property
    def report(self) -> Path:
        """The monitor's last check: the drift report and what it did about it."""
        return self.root / "report.json"

    @property
    def spec(self) -> Path:
        """What the env's monitor was told (written by its provider)."""
        return self.root / "run" / SPEC_FILE

    def holds(self, env: str) -> str | None:
        """What deleting the directory would lose (prediction-log segments, alerts), or None:
        reports and heartbeats are derived, these are data."""
        from ._alerts import AlertStore

        segments = [path for path in self.log.rglob("*.parquet") if path.is_file()]
        alerts = 0
        if self.alerts.exists():
            with AlertStore(self.alerts) as store:
                alerts = len(store.list(env))
        if not segments and not alerts:
            return None
        size = sum(path.stat().st_size for path in segments) / 1e6
        held = [f"{len(segments)} prediction-log segments ({size:.1f} MB)"] if segments else []
        held += [f"{alerts} alert{'' if alerts == 1 else 's'}"] if alerts else []
        return " and ".join(held)

    @property
    def status(self) -> Path:
        """The monitor's heartbeat and memory across restarts (last retrain, ...)."""
        return self.root / "status.json"
