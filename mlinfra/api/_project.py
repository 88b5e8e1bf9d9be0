"""A project and its environments, as the CLI and the TUI see them: one API over the engine,
the state, the registry, the deployment and the monitor, so that no caller reaches into another
package's files.

    project = mlinfra.open_project(".")
    env = project.env("dev")
    env.outputs().serving_url
    env.rollback(reason="p99 doubled")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._fs import atomic_write_text
from ..errors import ConfigError, MlinfraError
from ._outputs import StackOutputs

if TYPE_CHECKING:
    import pandas

    from ..config import Environment, EnvSettings
    from ..config import Project as LoadedProject
    from ..engine import DriftReport, Engine
    from ..evaluation import Clearance
    from ..monitoring import AckResult, Alert, MonitoringDirectory, MonitorSpec
    from ..preview import BranchEnvStatus, Collected, Summary
    from ..registry import AliasEvent, ModelVersion, Registry, VersionSummary
    from ..rollout import Rollout, Snapshot, Target
    from ..serving import Deployment
    from ..state import KeptResource, LockHolder, ResourceState, UpdateRecord
    from ..training import ModelDefinition

__all__ = [
    "Env",
    "EnvNotUpError",
    "LastRefresh",
    "Project",
    "Resource",
    "StackStatus",
    "VersionComparison",
    "open_project",
]

ACTOR_TUI = "mlinfra-tui"


class EnvNotUpError(MlinfraError):
    """The env has no stack outputs yet: `mlinfra up` has not run (or it was destroyed)."""


def open_project(directory: Path | str | None = None) -> Project:
    """The mlinfra project at `directory` (or found from the current directory upwards)."""
    from ..config import load_project

    return Project(load_project(Path(directory) if directory is not None else None))


class Project:
    """A project: its config and its environments."""

    def __init__(self, loaded: LoadedProject) -> None:
        self.config = loaded
        self._envs: dict[str, Env] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def env_names(self) -> list[str]:
        return list(self.config.env_names)

    def env(self, name: str | None = None, *, branch: str | None = None) -> Env:
        """One env by name; without a name, the project's only env (ConfigError otherwise).
        With `branch`, that branch's env derived from it (a preview environment: see
        mlinfra.preview); a branch env is also found by its own name, `dev--feature-x-217d2bf5`."""
        if name is None:
            if len(self.env_names) != 1:
                known = ", ".join(self.env_names)
                raise ConfigError(f"choose an environment with --env (or MLINFRA_ENV): {known}")
            name = self.env_names[0]
        key = name if branch is None else f"{name} {branch}"
        if key not in self._envs:
            self._envs[key] = Env(self.config.environment(name, branch=branch))
        return self._envs[key]

    def envs(self) -> list[Env]:
        return [self.env(name) for name in self.env_names]

    def branch_env_names(self) -> list[str]:
        """The branch envs recorded in the project's state, oldest first, by their own names;
        no stack is read (`branch_envs()` reads each)."""
        from ..preview import branch_env_names

        return branch_env_names(self.config)

    def branch_envs(self) -> list[BranchEnvStatus]:
        """The branch envs recorded in the project's state: record, status, URL, age."""
        from ..preview import branch_envs

        return branch_envs(self.config)

    def collect_garbage(
        self,
        *,
        older_than: float | None = None,
        dry_run: bool = False,
        only: Collection[str] | None = None,
    ) -> list[Collected]:
        """Destroy the branch envs idle for longer than their TTL (or `older_than` seconds),
        data and all (only those named in `only`, if given); what happened to each, failures
        included."""
        from ..preview import collect_garbage

        return collect_garbage(self.config, older_than=older_than, dry_run=dry_run, only=only)

    @property
    def model_names(self) -> list[str]:
        return list(self.config.config.models)


@dataclass(frozen=True)
class Resource:
    """One resource of a stack, secrets masked."""

    urn: str
    type: str
    name: str
    id: str
    """the provider's id; empty for a component"""
    parent: str
    dependencies: list[str]
    custom: bool
    protect: bool
    status: str
    """ok, or pending delete (a replaced resource whose delete has not happened yet)"""
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    @classmethod
    def of(cls, state: ResourceState) -> Resource:
        from ..state import masked

        return cls(
            urn=state.urn,
            type=state.type,
            name=state.name,
            id=state.id,
            parent=state.parent,
            dependencies=list(state.dependencies),
            custom=state.custom,
            protect=state.protect,
            status="pending delete" if state.pending_delete else "ok",
            inputs=masked(state.inputs),
            outputs=masked({k: v for k, v in state.outputs.items() if k != "__provider"}),
        )

    @property
    def pending_delete(self) -> bool:
        return self.status == "pending delete"


@dataclass(frozen=True)
class StackStatus:
    """An env's stack at a glance, read through one engine: what `mlinfra status` shows."""

    stack: str
    engine: str
    resources: list[Resource]
    kept: list[KeptResource]
    """resources an earlier destroy left for their data; `destroy --delete-data` deletes them"""
    last_update: UpdateRecord | None
    lock: LockHolder | None


@dataclass(frozen=True)
class LastRefresh:
    """What the last `refresh` of an env found: when, and how many resources drifted."""

    at: float
    resources: int
    changed: int
    gone: int

    @property
    def drifted(self) -> bool:
        return bool(self.changed or self.gone)


@dataclass(frozen=True)
class VersionComparison:
    """Two versions side by side: the metrics and params that differ (equal ones left out)."""

    model: str
    left: int
    right: int
    metrics: dict[str, tuple[Any, Any]]
    params: dict[str, tuple[Any, Any]]
    lineage: dict[str, tuple[Any, Any]]


class Env:
    """One environment: its stack, registry, deployment and monitor, and the actions on them.

    Reads open what they need and close it again, so that an Env can be kept for the life of a
    TUI while other processes (`mlinfra up`, the rollout driver) change the env underneath;
    `pinned()` reads the stack's outputs once for the several reads of one action."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self._pin = threading.local()  # a pin holds for the thread that made it

    def __repr__(self) -> str:
        return f"<Env {self.name} of project {self.environment.project.name}>"

    @property
    def name(self) -> str:
        return self.environment.name

    @property
    def settings(self) -> EnvSettings:
        return self.environment.settings

    @property
    def target(self) -> str:
        return self.settings.target

    @property
    def stack_name(self) -> str:
        return self.environment.stack_name

    @property
    def base(self) -> str:
        """The env of mlinfra.toml this one is: its own name, or a branch env's base."""
        return self.environment.base

    @property
    def branch(self) -> str | None:
        """The branch of a branch env, as given to --branch; None for an env of mlinfra.toml."""
        branch = self.environment.branch
        return branch.name if branch is not None else None

    def summary(self, model: str | None = None) -> Summary:
        """What `mlinfra ci summary` says: the last update, the model against the base env's
        champion, its gates, the endpoint."""
        from ..preview import summarise

        return summarise(self, model)

    # -- the stack ----------------------------------------------------------------------------

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """The env's engine (embedded or Pulumi), closed at the end of the block."""
        from ..engine import open_engine

        engine = open_engine(self.environment)
        try:
            yield engine
        finally:
            engine.close()

    @property
    def engine_name(self) -> str:
        """The engine this env runs on (embedded, or pulumi when its CLI is found)."""
        with self.engine() as engine:
            return engine.name

    def resources(self) -> list[Resource]:
        with self.engine() as engine:
            return [Resource.of(state) for state in engine.resources()]

    def status(self) -> StackStatus:
        """Resources, what destroys kept, the last update and the lock, from one engine."""
        with self.engine() as engine:
            records = engine.history(limit=1)
            return StackStatus(
                stack=self.stack_name,
                engine=engine.name,
                resources=[Resource.of(state) for state in engine.resources()],
                kept=engine.kept(),
                last_update=records[0] if records else None,
                lock=engine.lock_holder(),
            )

    def is_up(self) -> bool:
        with self.engine() as engine:
            return bool(engine.outputs())

    def raw_outputs(self) -> dict[str, Any]:
        """The stack's outputs as exported, secrets still wrapped (mask with state.masked)."""
        with self.engine() as engine:
            return engine.outputs()

    def outputs(self) -> StackOutputs:
        """The stack's outputs, checked against what mlinfra needs (EnvNotUpError before up)."""
        from ..state import plain

        pinned: StackOutputs | None = getattr(self._pin, "outputs", None)
        if pinned is not None:
            return pinned
        outputs = self.raw_outputs()
        if not outputs:
            raise EnvNotUpError(
                f"env {self.name!r} is not up; run `mlinfra up {self.environment.cli_args}` first"
            )
        program = self.environment.project.stack_dir / "__main__.py"
        return StackOutputs(self.name, program, plain(outputs))

    @contextmanager
    def pinned(self) -> Iterator[StackOutputs]:
        """The stack's outputs read once for the block: an action's several reads (registry,
        server, monitor) see one stack and ask its engine, a `pulumi` process each, once."""
        if getattr(self._pin, "outputs", None) is not None:  # nested: the outer pin holds
            yield self.outputs()
            return
        self._pin.outputs = self.outputs()
        try:
            yield self._pin.outputs
        finally:
            self._pin.outputs = None

    def history(self, limit: int = 50) -> list[UpdateRecord]:
        """The stack's updates, newest first."""
        with self.engine() as engine:
            return engine.history(limit=limit)

    def last_update(self) -> UpdateRecord | None:
        records = self.history(limit=1)
        return records[0] if records else None

    def lock(self) -> LockHolder | None:
        """Who holds the env's lock now (an update in progress), if anyone."""
        with self.engine() as engine:
            return engine.lock_holder()

    def refresh(self, *, apply: bool = False, force_unlock: bool = False) -> list[DriftReport]:
        """Read every resource and say what changed outside mlinfra; remembered for
        `last_refresh`. With `apply`, what was read is written into the state."""
        with self.engine() as engine:
            reports = engine.refresh(apply=apply, force_unlock=force_unlock)
        found = LastRefresh(
            at=time.time(),
            resources=len(reports),
            changed=sum(report.status == "changed" for report in reports),
            gone=sum(report.status == "gone" for report in reports),
        )
        path = self._last_refresh_file
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(found)))
        return reports

    def last_refresh(self) -> LastRefresh | None:
        try:
            return LastRefresh(**json.loads(self._last_refresh_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def forget_last_refresh(self) -> None:
        """Drop what the last refresh found: before a destroy, so that the env's folder goes
        with its resources and a new stack starts with no refresh."""
        self._last_refresh_file.unlink(missing_ok=True)

    @property
    def _last_refresh_file(self) -> Path:
        return self.environment.env_dir / "last-refresh.json"

    # -- the registry -------------------------------------------------------------------------

    @contextmanager
    def registry(self) -> Iterator[Registry]:
        """The env's model registry, open for the block."""
        from ..registry import Registry

        with Registry.open(self.outputs().registry_path) as registry:
            yield registry

    def model_name(self, model: str | None = None) -> str:
        """`model`, or the project's only declared model."""
        declared = list(self.environment.project.config.models)
        if model is not None:
            return model
        if len(declared) == 1:
            return declared[0]
        raise ConfigError(f"choose a model with --model: {', '.join(declared) or 'none declared'}")

    def versions(
        self, model: str | None = None, *, limit: int | None = None
    ) -> list[VersionSummary]:
        """Registered versions, newest first (all models when none is declared)."""
        with self.registry() as registry:
            name = model if model is not None else self._only_model(registry)
            if name is not None and name not in registry.models():
                return []
            return registry.summaries(name, limit=limit)

    def version(self, model: str, ref: str | int) -> ModelVersion:
        """One version by number, `latest` or alias (of this env)."""
        with self.registry() as registry:
            return registry.resolve(model, ref, env=self.name)

    def aliases(self, model: str | None = None) -> dict[str, int]:
        """The env's aliases (champion, challenger, ...) of the model and their versions."""
        name = self.model_name(model)
        with self.registry() as registry:
            if name not in registry.models():
                return {}
            return registry.aliases(name, env=self.name)

    def alias_history(
        self, model: str | None = None, *, alias: str | None = None
    ) -> list[AliasEvent]:
        """Every move of the model's aliases (or of `alias`) in this env, oldest first: the
        audit trail."""
        name = self.model_name(model)
        with self.registry() as registry:
            if name not in registry.models():
                return []
            return registry.alias_history(name, env=self.name, alias=alias)

    def compare(self, model: str, left: int | str, right: int | str) -> VersionComparison:
        """Two versions side by side: what differs in metrics, params and lineage."""
        with self.registry() as registry:
            one = registry.resolve(model, left, env=self.name)
            other = registry.resolve(model, right, env=self.name)
        return VersionComparison(
            model=model,
            left=one.version,
            right=other.version,
            metrics=_differences(one.metrics, other.metrics),
            params=_differences(one.params, other.params),
            lineage=_differences(one.lineage, other.lineage),
        )

    def definition(self, model: str | None = None) -> ModelDefinition:
        """The model's entry points, imported from the project's own code."""
        from ..training import load_definition

        name = self.model_name(model)
        spec = self.environment.project.config.models.get(name)
        if spec is None:
            raise ConfigError(f"no [models.{name}] in {self.environment.project.config_file}")
        return load_definition(name, spec, self.environment.project.root)

    def _only_model(self, registry: Registry) -> str | None:
        declared = list(self.environment.project.config.models)
        return declared[0] if len(declared) == 1 else None

    # -- the deployment -----------------------------------------------------------------------

    def rollout_target(self) -> Target:
        """Where the env's rollouts act: its registry and its server."""
        from ..rollout import Target

        outputs = self.outputs()
        return Target(
            registry=outputs.registry_path,
            env=self.name,
            url=outputs.serving_url,
            token=outputs.serving_token,
        )

    def deployment(self) -> Deployment | None:
        """What the env serves now (stable, canary and their split); None before a deploy."""
        from ..serving import deployment_dir, read_deployment

        return read_deployment(deployment_dir(self.outputs().registry_path, self.name))

    def rollout(self) -> Rollout | None:
        """The rollout in progress, or the last one finished."""
        return self.rollout_target().store.rollout()

    def deployment_status(self, *, history: int = 10) -> dict[str, Any]:
        """Everything `mlinfra rollout status` shows: table, rollout, driver, workers, events."""
        from ..rollout import status

        return status(self.rollout_target(), history=history)

    def deployment_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Deploys, canary steps, promotions, aborts and rollbacks, oldest first."""
        return self.rollout_target().store.history(limit)

    def counters(self) -> Snapshot:
        """The server's counters for the served model now (DeploymentError if unreachable);
        two of them make live traffic (`traffic_between`)."""
        from ..rollout import scrape

        table = self.deployment()
        if table is None:
            raise MlinfraError(f"env {self.name!r} serves nothing yet; deploy a version first")
        outputs = self.outputs()
        return scrape(outputs.serving_url, model=table.model, token=outputs.serving_token)

    # -- the monitor --------------------------------------------------------------------------

    def monitor_spec(self) -> MonitorSpec:
        """What the env's drift monitor was told (ConfigError when it has none)."""
        from ..monitoring import MonitoringDirectory, MonitorSpec

        directory = self.outputs().monitoring_dir
        if directory is None:
            raise ConfigError(
                f"env {self.name} has no drift monitor: monitoring is off "
                f"([env.{self.base}.monitoring] enabled = false) or the stack predates it; "
                f"run `mlinfra up {self.environment.cli_args}`"
            )
        path = MonitoringDirectory(directory).spec
        try:
            return MonitorSpec.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(
                f"env {self.name}'s monitor has not been set up ({path} is missing); "
                f"run `mlinfra up {self.environment.cli_args} --refresh`"
            ) from None

    def alerts(self, *, include_acknowledged: bool = False, limit: int = 50) -> list[Alert]:
        """Drift alerts, newest first: open ones, or all."""
        from ..monitoring import AlertStore

        spec = self.monitor_spec()
        with AlertStore(_monitoring(spec).alerts) as store:
            return store.list(spec.env, include_acknowledged=include_acknowledged, limit=limit)

    def drift_report(self) -> dict[str, Any] | None:
        """The monitor's last check (report, histograms, alerts raised), as it wrote it."""
        from ..monitoring import read_report

        return read_report(_monitoring(self.monitor_spec()).root)

    def observe_drift(self, *, window_seconds: float | None = None) -> dict[str, Any]:
        """A drift report computed now over the live window (or `window_seconds`)."""
        from ..monitoring import observe_now

        spec = self.monitor_spec()
        if window_seconds is not None:
            spec = spec.model_copy(update={"window_seconds": window_seconds})
        return observe_now(spec)

    def record_labels(self, labels: pandas.DataFrame | Path) -> int:
        """Record the true labels of served predictions (columns request_id and label; or a
        CSV or Parquet file of them), so that the monitor measures accuracy or RMSE where
        labels exist; how many were recorded."""
        from ..monitoring import read_table, record_labels

        log = _monitoring(self.monitor_spec()).log
        return record_labels(log, read_table(labels) if isinstance(labels, Path) else labels)

    # -- actions ------------------------------------------------------------------------------

    def rollback(
        self, *, to: str | None = None, reason: str | None = None, actor: str | None = None
    ) -> Deployment:
        """Serve the previous champion (or `to`) at once; a running canary is aborted first."""
        from ..rollout import rollback

        return rollback(self.rollout_target(), to=to, reason=reason, actor=actor)

    def rollback_version(self) -> int:
        """The version `rollback()` would serve: the champion before the one serving now
        (DeploymentError when nothing is deployed or there was none before)."""
        from ..rollout import rollback_version

        return rollback_version(self.rollout_target())

    def check_release(
        self, model: str, ref: str | int, *, override: str | None = None, command: str = ""
    ) -> Clearance:
        """Check a version against the env's gates: the grounds on which it may serve, or
        ReleaseRefusedError with the failed report (unless `override` gives a reason)."""
        from ..evaluation import check_release

        declared = self.definition(model)
        with self.registry() as registry:
            version = registry.resolve(declared.name, ref, env=self.name)
            return check_release(
                declared, registry, version, env=self.name, command=command, override=override
            )

    def promote(
        self,
        *,
        reason: str = "promoted by hand",
        override: str | None = None,
        actor: str | None = None,
        command: str = "",
    ) -> Rollout:
        """Promote the running canary now if it passes the env's gates (ReleaseRefusedError
        otherwise, unless `override`); the rollout records the grounds."""
        from ..rollout import promote

        target = self.rollout_target()
        running = target.store.rollout()
        clearance = None
        if running is not None and running.active:  # else promote says there is no rollout
            clearance = self.check_release(
                running.model, str(running.canary), override=override, command=command
            )
        return promote(target, reason=reason, actor=actor, clearance=clearance)

    def abort(self, *, reason: str = "aborted by hand", actor: str | None = None) -> Rollout:
        """Abort the running canary now: all traffic back on stable."""
        from ..rollout import abort

        return abort(self.rollout_target(), reason=reason, actor=actor)

    def acknowledge(self, alert_id: int, *, by: str | None = None) -> AckResult:
        """Mark an alert as seen: not delivered any more; a repeat raises a new one."""
        from .._identity import current_user
        from ..monitoring import AlertStore

        spec = self.monitor_spec()
        with AlertStore(_monitoring(spec).alerts) as store:
            return store.acknowledge(
                alert_id, env=spec.env, by=by or current_user(), now=time.time()
            )


def _monitoring(spec: MonitorSpec) -> MonitoringDirectory:
    from ..monitoring import MonitoringDirectory

    return MonitoringDirectory(Path(spec.directory))


def _differences(left: dict[str, Any], right: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        key: (left.get(key), right.get(key))
        for key in sorted({*left, *right})
        if left.get(key) != right.get(key)
    }
