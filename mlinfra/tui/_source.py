"""What the TUI reads from a project and what its actions do, as one typed surface over
`mlinfra.api`: views call nothing else, so a test or a snapshot can hand the app a `Source`
that answers from fixed data instead (see `MlinfraApp(source=...)`).

Every method blocks (SQLite, files, the server's /metrics): views call them from thread
workers, never on the UI thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailableError, MlinfraError

if TYPE_CHECKING:
    from ..api import Env, LastRefresh, Project, Resource, VariantTraffic, VersionComparison
    from ..monitoring import Alert
    from ..registry import AliasEvent, ModelVersion, Report, VersionSummary
    from ..rollout import Rollout, Snapshot
    from ..serving import Deployment
    from ..state import LockHolder, UpdateRecord

__all__ = [
    "AlertsData",
    "DeploymentData",
    "EnvOverview",
    "HistoryData",
    "ModelsData",
    "NothingToDoError",
    "Plan",
    "Source",
    "VersionDetail",
]

TUI_REASON = "from mlinfra tui"


class NothingToDoError(MlinfraError):
    """An action found nothing to act on (no canary running, nothing deployed): said, not
    confirmed."""


@dataclass(frozen=True)
class EnvOverview:
    """One env at a glance: its stack, its last update and refresh, what it serves."""

    name: str
    target: str
    engine: str
    up: bool
    resources: int
    lock: LockHolder | None
    last_update: UpdateRecord | None
    last_refresh: LastRefresh | None
    serving: Deployment | None
    problem: str | None = None
    """Why part of it could not be read (a stack not up is not a problem)."""
    applied_here: bool = True
    """False for an env no engine here can apply (kubernetes without the pulumi CLI)."""


@dataclass(frozen=True)
class ModelsData:
    versions: list[VersionSummary]
    aliases: dict[tuple[str, int], list[str]]
    """The env's aliases by (model, version)."""


@dataclass(frozen=True)
class VersionDetail:
    version: ModelVersion
    aliases: list[str]
    reports: list[Report]


@dataclass(frozen=True)
class DeploymentData:
    table: Deployment | None
    rollout: Rollout | None
    traffic: list[VariantTraffic] | None
    """Per variant since the previous read; None on the first read or when unreachable."""
    traffic_problem: str | None = None


@dataclass(frozen=True)
class AlertsData:
    alerts: list[Alert]
    report: dict[str, Any] | None
    """The monitor's last check, with each feature's histograms."""


@dataclass(frozen=True)
class HistoryData:
    updates: list[UpdateRecord]
    aliases: list[AliasEvent]
    """Every model's alias moves in the env, newest first."""


@dataclass(frozen=True)
class Plan:
    """An action and exactly what it will change, for the confirmation; `run` does it (in a
    worker) and says in one line what happened."""

    title: str
    changes: list[str]
    run: Callable[[], str]


class Source:
    """The project, read and acted on through `mlinfra.api`."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._counters: dict[str, tuple[float, Snapshot]] = {}

    @property
    def project_name(self) -> str:
        return self.project.name

    @property
    def env_names(self) -> list[str]:
        """The envs of mlinfra.toml, then the branch envs up or kept (`--branch`), each by its
        own name, as `--env` takes it."""
        return [*self.project.env_names, *self.project.branch_env_names()]

    def _env(self, name: str) -> Env:
        return self.project.env(name)

    # -- reads ----------------------------------------------------------------------------

    def overview(self, name: str) -> EnvOverview:
        from ..api import EnvNotUpError

        env = self._env(name)
        try:
            status = env.status()
        except EngineUnavailableError:
            return EnvOverview(
                name=name,
                target=env.target,
                engine="-",
                up=False,
                resources=0,
                lock=None,
                last_update=None,
                last_refresh=None,
                serving=None,
                applied_here=False,
            )
        up, serving, problem = True, None, None
        try:
            with env.pinned():  # reads the outputs once: up or not, and where the table is
                serving = env.deployment()
        except EnvNotUpError:
            up = False
        except MlinfraError as exc:
            problem = str(exc)
        return EnvOverview(
            name=name,
            target=env.target,
            engine=status.engine,
            up=up,
            resources=len(status.resources),
            lock=status.lock,
            last_update=status.last_update,
            last_refresh=env.last_refresh(),
            serving=serving,
            problem=problem,
        )

    def resources(self, name: str) -> list[Resource]:
        env = self._env(name)
        env.outputs()  # EnvNotUpError explains an empty stack better than an empty table
        return env.resources()

    def models(self, name: str) -> ModelsData:
        env = self._env(name)
        with env.pinned():
            versions = env.versions()
            aliases: dict[tuple[str, int], list[str]] = {}
            for model in sorted({version.model for version in versions}):
                for alias, number in sorted(env.aliases(model).items()):
                    aliases.setdefault((model, number), []).append(alias)
        return ModelsData(versions=versions, aliases=aliases)

    def version_detail(self, name: str, model: str, version: int) -> VersionDetail:
        env = self._env(name)
        with env.registry() as registry:
            found = registry.get(model, version)
            reports = registry.reports(found)
            aliases = registry.aliases(model, env=name)
        return VersionDetail(
            version=found,
            aliases=sorted(alias for alias, number in aliases.items() if number == version),
            reports=reports,
        )

    def compare(self, name: str, model: str, left: int, right: int) -> VersionComparison:
        return self._env(name).compare(model, left, right)

    def deployment(self, name: str) -> DeploymentData:
        """The table, the rollout, and the live traffic since the previous call for this env."""
        env = self._env(name)
        with env.pinned():
            table = env.deployment()
            rollout = env.rollout()
            if table is None:
                return DeploymentData(table=None, rollout=rollout, traffic=None)
            try:
                counters = env.counters()
            except MlinfraError as exc:
                self._counters.pop(name, None)
                return DeploymentData(table, rollout, traffic=None, traffic_problem=str(exc))
        return DeploymentData(table, rollout, traffic=self._traffic(name, counters))

    def _traffic(self, name: str, counters: Snapshot) -> list[VariantTraffic] | None:
        from ..api import traffic_between

        now = time.monotonic()
        previous = self._counters.get(name)
        self._counters[name] = (now, counters)
        if previous is None:
            return None
        return traffic_between(previous[1], counters, now - previous[0])

    def alerts(self, name: str) -> AlertsData:
        env = self._env(name)
        with env.pinned():
            return AlertsData(
                alerts=env.alerts(include_acknowledged=True, limit=500),
                report=env.drift_report(),
            )

    def history(self, name: str) -> HistoryData:
        env = self._env(name)
        with env.pinned():
            updates = env.history(limit=200)
            events = [
                event for model in self.project.model_names for event in env.alias_history(model)
            ]
        events.sort(key=lambda event: event.at, reverse=True)
        return HistoryData(updates=updates, aliases=events)

    # -- actions: each a plan first, for the confirmation ---------------------------------

    def plan_rollback(self, name: str) -> Plan:
        env = self._env(name)
        with env.pinned():
            table = _deployed(env, "roll back")
            to = env.rollback_version()
            rollout = env.rollout()
        changes = [
            f"serve {table.model} v{to} instead of v{table.stable}, at once",
            f"move the champion alias of {table.model} in {name} from v{table.stable} to v{to}",
        ]
        if rollout is not None and rollout.active:
            changes.insert(0, f"abort the running canary v{rollout.canary} first")
        return Plan(
            title=f"Roll back env {name}",
            changes=changes,
            run=lambda: _served_line(env.rollback(reason=f"rollback {TUI_REASON}")),
        )

    def plan_promote(self, name: str) -> Plan:
        env = self._env(name)
        rollout, stable = _running(env, "promote")
        changes = [
            f"check canary v{rollout.canary} against the gates of {name}, then",
            f"send all traffic to v{rollout.canary} (now {rollout.weight}%); {stable} stops "
            "serving",
            f"v{rollout.canary} becomes the champion of {rollout.model} in {name}",
        ]

        def run() -> str:
            done = env.promote(reason=f"promoted {TUI_REASON}")
            return f"{rollout.model} v{done.canary} promoted in {name}: it takes all traffic"

        return Plan(title=f"Promote the canary in env {name}", changes=changes, run=run)

    def plan_abort(self, name: str) -> Plan:
        env = self._env(name)
        rollout, stable = _running(env, "abort")
        changes = [
            f"stop canary v{rollout.canary} (now {rollout.weight}% of traffic)",
            f"send all traffic back to stable {stable}",
        ]

        def run() -> str:
            done = env.abort(reason=f"aborted {TUI_REASON}")
            return f"canary v{done.canary} aborted in {name}: all traffic on {stable}"

        return Plan(title=f"Abort the canary in env {name}", changes=changes, run=run)

    def plan_refresh(self, name: str) -> Plan:
        env = self._env(name)
        env.outputs()  # EnvNotUpError: nothing to refresh
        count = sum(resource.custom for resource in env.resources())  # components hold nothing
        changes = [
            f"read the {count} resources of stack {env.stack_name} and compare them with the state",
            "record what drifted as the env's last refresh; the state itself is not changed",
        ]

        def run() -> str:
            reports = env.refresh()
            drifted = [report for report in reports if report.status != "ok"]
            return f"refreshed {name}: {len(reports)} resources read, {len(drifted)} drifted"

        return Plan(title=f"Refresh env {name}", changes=changes, run=run)

    def plan_acknowledge(self, name: str, alert: Alert) -> Plan:
        env = self._env(name)
        subject = alert.feature or alert.kind
        changes = [
            f"mark alert {alert.id} ({alert.severity} {alert.kind}, {subject}) as acknowledged",
            "it is no longer delivered; a repeat raises a new alert",
        ]
        return Plan(
            title=f"Acknowledge alert {alert.id} in env {name}",
            changes=changes,
            run=lambda: env.acknowledge(alert.id).describe(),
        )


def _deployed(env: Env, verb: str) -> Deployment:
    table = env.deployment()
    if table is None:
        raise NothingToDoError(f"nothing is deployed in env {env.name}; nothing to {verb}")
    return table


def _running(env: Env, verb: str) -> tuple[Rollout, str]:
    """The running rollout and its stable version, as people read it."""
    rollout = env.rollout()
    if rollout is None or not rollout.active:
        raise NothingToDoError(f"no canary is running in env {env.name}; nothing to {verb}")
    return rollout, "nothing" if rollout.stable is None else f"v{rollout.stable}"


def _served_line(table: Deployment) -> str:
    return f"env {table.env} serves {table.model} v{table.stable} (generation {table.generation})"
