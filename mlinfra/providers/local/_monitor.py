"""The drift monitor: `python -m mlinfra.monitoring` under supervisord, which restarts it if it
dies; ready once it has written a heartbeat.

The monitor stands beside the request path, never on it: an update restarts it (a check missed,
nothing served differently). Deleting it stops it and keeps the alerts and prediction log it
holds, which are data like models are, unless `--delete-data` says they may go.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult
from pydantic import Field

from ..._fs import read_record
from ...engine._data import data_loss_allowed
from ...errors import DeploymentError, StateError
from ._base import AbsolutePath, LocalProvider, LocalResource, ProviderInputs, gone, is_unknown
from ._health import HEALTH_TIMEOUT, UP_STATES
from ._supervisor import Supervisor

__all__ = ["DriftMonitorArgs", "DriftMonitorProcess", "DriftMonitorProvider"]

# A heartbeat older than this many intervals (plus a margin for a slow check) is a hung monitor.
_STALE_INTERVALS = 3
_STALE_MARGIN_SECONDS = 60.0
_SECRETS = ("token", "webhook")  # never in outputs, the state or a command line


class MonitorInputs(ProviderInputs):
    run_dir: AbsolutePath
    directory: AbsolutePath
    registry: AbsolutePath
    env: str
    url: str
    token: str | None = None
    project_dir: AbsolutePath | None = None
    code_paths: list[AbsolutePath] = Field(default_factory=list)
    interval_seconds: float = Field(60.0, gt=0)
    window_seconds: float = Field(3600.0, gt=0)
    min_samples: int = Field(200, ge=1)
    significance: float = Field(0.05, gt=0, lt=1)
    policy: str = "alert"
    webhook: str = ""
    cooldown_seconds: float = Field(3600.0, ge=0)
    retrain_cooldown_seconds: float = Field(6 * 3600.0, ge=0)


class DriftMonitorProvider(LocalProvider[MonitorInputs]):
    """A new run dir is a replacement; every other input is an update, which restarts the
    monitor with its new spec. The id is the run dir."""

    inputs_model = MonitorInputs
    replace_on = frozenset({"run_dir"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        instance = Supervisor(Path(inputs.run_dir))
        instance.stop()  # what a killed create left
        self._start(instance, inputs)
        return CreateResult(id_=inputs.run_dir, outs=self._outputs(instance, inputs))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self.parse(news)
        instance = Supervisor(Path(id_))
        instance.stop()
        self._start(instance, inputs)
        return UpdateResult(outs=self._outputs(instance, inputs))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        instance = Supervisor(Path(id_))
        if instance.process() is None:
            return gone()
        inputs = self.parse(props)
        outs = self._outputs(instance, inputs, trouble=_trouble(instance, inputs))
        for secret in _SECRETS:  # what is read holds the secrets' digests, not the secrets
            digest = f"{secret}_sha256"
            outs[digest] = props.get(digest, outs[digest])
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Stop the monitor. Its directory goes too, unless it holds data (the prediction
        log, alerts) and `--delete-data` was not given: then the data stays for the next
        `up`, which watches on from it."""
        from ...monitoring import MonitoringDirectory

        Supervisor(Path(id_)).stop()
        shutil.rmtree(id_, ignore_errors=True)
        directory = props.get("directory")
        if not isinstance(directory, str) or not directory:
            return
        held = MonitoringDirectory(Path(directory)).holds(str(props.get("env", "")))
        if held is None or data_loss_allowed():
            shutil.rmtree(directory, ignore_errors=True)

    def comparable(self, props: dict[str, Any]) -> dict[str, Any]:
        values = super().comparable(props)
        values["code_paths"] = values["code_paths"] or []
        # Outputs keep digests of the secrets; inputs carry the secrets themselves.
        for secret in _SECRETS:
            value = values.pop(secret)
            values[secret] = (
                props.get(f"{secret}_sha256", "")
                if value is None
                else (value if is_unknown(value) else _digest(value))
            )
        return values

    def drifted(self, outs: dict[str, Any]) -> bool:
        return outs.get("healthy") is False

    def _start(self, instance: Supervisor, inputs: MonitorInputs) -> None:
        from ...monitoring import SPEC_FILE, MonitorSpec

        spec = MonitorSpec.model_validate(inputs.model_dump(exclude={"run_dir"}))
        command = [
            sys.executable,
            "-m",
            "mlinfra.monitoring",
            "--spec",
            str(instance.run_dir / SPEC_FILE),
        ]
        instance.write(command, {SPEC_FILE: spec.model_dump_json(indent=2)})
        instance.launch()
        started = time.time()
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while (trouble := _trouble(instance, inputs, since=started)) is not None:
            if instance.program_state() in {"BACKOFF", "FATAL", "EXITED"}:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if trouble is not None:
            log = instance.log_tail(3)
            instance.stop()
            raise DeploymentError(
                f"the drift monitor for env {inputs.env} did not start: {trouble}; its log "
                f"says: {log}"
            )

    def _outputs(
        self, instance: Supervisor, inputs: MonitorInputs, *, trouble: str | None = None
    ) -> dict[str, Any]:
        process = instance.program()
        outs = {
            **inputs.model_dump(exclude=set(_SECRETS)),
            **{f"{secret}_sha256": _digest(getattr(inputs, secret)) for secret in _SECRETS},
            "webhook_host": _masked(inputs.webhook),
            "pid": process.pid if process is not None else None,
            "healthy": trouble is None,
        }
        if trouble is not None:
            outs["problem"] = trouble
        return outs


def _trouble(instance: Supervisor, inputs: MonitorInputs, *, since: float = 0.0) -> str | None:
    """Why the monitor is not watching, or None: it runs and its heartbeat is fresh (and, while
    starting, newer than `since`)."""
    from ...monitoring import MonitoringDirectory, MonitorStatus

    state = instance.program_state()
    program = instance.program()
    if state not in UP_STATES or program is None:
        return f"supervisord says {state}"
    try:
        status = read_record(MonitoringDirectory(Path(inputs.directory)).status, MonitorStatus)
    except StateError as exc:
        return str(exc)
    if status is None or status.process.pid != program.pid or status.heartbeat_at < since:
        return "no heartbeat yet"
    stale_after = _STALE_INTERVALS * inputs.interval_seconds + _STALE_MARGIN_SECONDS
    if since == 0.0 and time.time() - status.heartbeat_at > stale_after:
        return f"no heartbeat for {time.time() - status.heartbeat_at:.0f} s"
    return None


def _digest(secret: str | None) -> str:
    return hashlib.sha256(secret.encode()).hexdigest() if secret else ""


def _masked(url: str) -> str:
    """A webhook URL is a secret (its path is the key): keep the host, hide the rest."""
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/***"


@dataclass(frozen=True, kw_only=True)
class DriftMonitorArgs:
    run_dir: pulumi.Input[str]
    directory: pulumi.Input[str]
    registry: pulumi.Input[str]
    env: pulumi.Input[str]
    url: pulumi.Input[str]
    token: pulumi.Input[str] | None = None
    project_dir: pulumi.Input[str] | None = None
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    interval_seconds: pulumi.Input[float] = 60.0
    window_seconds: pulumi.Input[float] = 3600.0
    min_samples: pulumi.Input[int] = 200
    significance: pulumi.Input[float] = 0.05
    policy: pulumi.Input[str] = "alert"
    webhook: pulumi.Input[str] = ""
    cooldown_seconds: pulumi.Input[float] = 3600.0
    retrain_cooldown_seconds: pulumi.Input[float] = 6 * 3600.0


class DriftMonitorProcess(
    LocalResource[DriftMonitorArgs], module="mlinfra", name="DriftMonitorProcess"
):
    """`healthy` is what the last read found: running, with a fresh heartbeat."""

    provider_type = DriftMonitorProvider
    computed = ("pid", "healthy")
    pid: pulumi.Output[int]
    healthy: pulumi.Output[bool]
