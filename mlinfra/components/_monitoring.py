"""DriftMonitor: what watches an env's predictions and acts on drift, beside its model server."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from .._durations import parse_duration
from ..config import Environment
from ..errors import ConfigError
from ..providers.local import DriftMonitorArgs as ProcessArgs
from ..providers.local import DriftMonitorProcess
from ._target import Target

__all__ = ["DriftMonitor", "DriftMonitorArgs", "MonitoringArgs"]

# The server closes a prediction-log segment (and the monitor can read it) at least this often.
_MAX_SEGMENT_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """The `[env.E.monitoring]` settings as the serving stack's parts take them."""

    directory: str
    """The env's monitoring directory (prediction log, alerts, reports); absolute."""
    sample_rate: float = 1.0
    interval_seconds: float = 60.0
    window_seconds: float = 3600.0
    min_samples: int = 200
    significance: float = 0.05
    policy: str = "alert"
    webhook: pulumi.Input[str] = ""
    """Secret: a Slack-style webhook URL holds its key in its path."""
    cooldown_seconds: float = 3600.0
    retrain_cooldown_seconds: float = 6 * 3600.0
    log_retention_seconds: float = 7 * 86400.0
    log_max_bytes: int = 1024 * 1024 * 1024
    project_dir: str | None = None
    """Where `mlinfra cycle` runs for the retrain policy; the project root."""

    @property
    def log_dir(self) -> str:
        return str(Path(self.directory) / "log")

    @property
    def segment_seconds(self) -> float:
        return min(self.interval_seconds, _MAX_SEGMENT_SECONDS)

    @classmethod
    def from_environment(cls, env: Environment) -> MonitoringArgs | None:
        """None when monitoring is off for the env."""
        settings = env.settings.monitoring
        if not settings.enabled:
            return None
        return cls(
            directory=str(env.env_dir / "monitoring"),
            sample_rate=settings.sample_rate,
            interval_seconds=parse_duration(settings.interval),
            window_seconds=parse_duration(settings.window),
            min_samples=settings.min_samples,
            significance=settings.significance,
            policy=settings.policy,
            webhook=_secret(_webhook(env.base, settings.webhook)),
            cooldown_seconds=parse_duration(settings.cooldown),
            retrain_cooldown_seconds=parse_duration(settings.retrain_cooldown),
            log_retention_seconds=parse_duration(settings.log_retention),
            log_max_bytes=settings.log_max_mb * 1024 * 1024,
            project_dir=str(env.project.root.resolve()),
        )


def _secret(url: str) -> pulumi.Input[str]:
    """A webhook URL as a secret (a Slack URL holds its key); none is no secret, so that an
    env without one needs no secret key."""
    return pulumi.Output.secret(url) if url else ""


def _webhook(env: str, value: str) -> str:
    """The URL itself, or the one the `$VARIABLE` it names holds."""
    if not value.startswith("$"):
        return value
    name = value[1:].strip("{}")
    url = os.environ.get(name, "")
    if not url:
        raise ConfigError(
            f"env.{env}.monitoring.webhook names ${name}, which is not set; export it, or set "
            'webhook = "" to log alerts only'
        )
    return url


@dataclass(frozen=True, kw_only=True)
class DriftMonitorArgs:
    monitoring: MonitoringArgs
    registry_path: pulumi.Input[str]
    env: str
    url: pulumi.Input[str]
    """The env's model server (the rollback policy acts through it)."""
    token: pulumi.Input[str] | None = None
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    """The project's own modules, importable when the served model is loaded; absolute."""
    target: Target = "local"


class DriftMonitor(pulumi.ComponentResource):
    """On `local` (only), a supervised process that checks the prediction log every interval against
    the served version's reference sample, raises alerts and applies the env's policy."""

    directory: pulumi.Output[str]
    healthy: pulumi.Output[bool]

    def __init__(
        self, name: str, args: DriftMonitorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        if args.target != "local":
            raise ConfigError(
                f"DriftMonitor: target {args.target!r}; on kubernetes, ServingStack declares "
                "the monitor as a CronJob (mlinfra.kubernetes.KubeDriftMonitor)"
            )
        super().__init__("mlinfra:index:DriftMonitor", name, None, opts)
        settings = args.monitoring
        process = DriftMonitorProcess(
            f"{name}-process",
            ProcessArgs(
                run_dir=str(Path(settings.directory) / "run"),
                directory=settings.directory,
                registry=args.registry_path,
                env=args.env,
                url=args.url,
                token=args.token,
                project_dir=settings.project_dir,
                code_paths=args.code_paths,
                interval_seconds=settings.interval_seconds,
                window_seconds=settings.window_seconds,
                min_samples=settings.min_samples,
                significance=settings.significance,
                policy=settings.policy,
                webhook=settings.webhook,
                cooldown_seconds=settings.cooldown_seconds,
                retrain_cooldown_seconds=settings.retrain_cooldown_seconds,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.directory = pulumi.Output.from_input(settings.directory)
        self.healthy = process.healthy
        self.register_outputs({"directory": self.directory, "healthy": self.healthy})
