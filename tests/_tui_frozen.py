"""A project frozen in time for the TUI's snapshots and the screenshots in docs/images: four envs
of one iris model, answered from fixed data (fixed clock, ports, paths, users), so that a screen
reads the same on every machine and every run.

`frozen_app()` is `mlinfra tui` over it with the live refresh off. The real `Source` runs on top
(its overviews, plans and confirmations are the ones users see); only the envs underneath are
stand-ins, answering what `mlinfra.api.Env` would. Live traffic comes as a fixed series, one
point per read, so that the Deployments view's charts have a shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from mlinfra.api import (
    EnvNotUpError,
    LastRefresh,
    Resource,
    StackStatus,
    VariantTraffic,
    VersionComparison,
)
from mlinfra.monitoring import Alert, DriftSettings, ReferenceProfile, Window, drift_report
from mlinfra.monitoring._alerts import Acknowledgement, Delivery
from mlinfra.registry import AliasEvent, VersionSummary
from mlinfra.rollout import Rollout, StepResult
from mlinfra.serving import Deployment
from mlinfra.state import LockHolder, UpdateRecord
from mlinfra.tui import MlinfraApp, Source
from mlinfra.tui._source import DeploymentData

__all__ = ["PROJECT", "SIZE", "frozen_app"]

PROJECT = "demo"
MODEL = "iris"
SIZE = (180, 40)
NOW = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
ROOT = "/srv/demo/.mlinfra/envs"


def digest(what: str, number: int, length: int) -> str:
    """A commit or data hash that looks like one and is the same on every run."""
    return hashlib.sha256(f"{what} {number}".encode()).hexdigest()[:length]


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def unix(**delta: float) -> float:
    return ago(**delta).timestamp()


def iso(**delta: float) -> str:
    return ago(**delta).isoformat(timespec="milliseconds")


def frozen_app(**options: Any) -> MlinfraApp:
    """The app on the frozen project, env dev, refresh off (a screen that stays still)."""
    options.setdefault("env", "dev")
    return MlinfraApp(FrozenSource(), refresh_seconds=None, **options)


class FrozenSource(Source):
    """The real Source over frozen envs; traffic one fixed point per read."""

    def __init__(self) -> None:
        super().__init__(FrozenProject())  # type: ignore[arg-type]
        self._reads = 0

    def deployment(self, name: str) -> DeploymentData:
        env = self._env(name)
        table, rollout = env.deployment(), env.rollout()
        if table is None:
            return DeploymentData(table=None, rollout=rollout, traffic=None)
        point = TRAFFIC[self._reads % len(TRAFFIC)]
        self._reads += 1
        traffic = [
            VariantTraffic("stable", table.stable, *point[0]),
            VariantTraffic("canary", table.canary or 0, *point[1]),
        ]
        return DeploymentData(table, rollout, traffic=traffic if table.canary else traffic[:1])


TRAFFIC = [  # (requests, req/s, error rate, p50 ms, p99 ms) of stable, then canary, per read
    ((138 + 9 * step % 23, 69.0 + 4.5 * (step % 5), 0.0, 1.9, 4.8 + 0.3 * (step % 4)),
     (46 + 3 * step % 7, 23.0 + 1.5 * (step % 5), 0.0 if step % 6 else 0.02, 2.1,
      5.6 + 0.5 * (step % 3)))
    for step in range(12)
]  # fmt: skip


class FrozenProject:
    name = PROJECT
    model_names = [MODEL]

    def __init__(self) -> None:
        self._envs = {env.name: env for env in (Dev(), Staging(), Prod(), Perf())}

    @property
    def env_names(self) -> list[str]:
        return list(self._envs)

    def branch_env_names(self) -> list[str]:
        return []  # no branch envs: the screens show the four envs of mlinfra.toml

    def env(self, name: str) -> FrozenEnv:
        return self._envs[name]


class FrozenEnv:
    """An env as `mlinfra.api.Env` answers for it, from fixed data."""

    name = ""
    target = "local"
    up = True
    champion = 0
    serving: Deployment | None = None
    lock: LockHolder | None = None
    refreshed: LastRefresh | None = None

    @property
    def stack_name(self) -> str:
        return self.name

    # -- the stack
    def status(self) -> StackStatus:
        updates = self.history(limit=1)
        return StackStatus(
            stack=self.name,
            engine="embedded",
            resources=self.resources() if self.up else [],
            kept=[],
            last_update=updates[0] if updates else None,
            lock=self.lock,
        )

    def outputs(self) -> dict[str, str]:
        if not self.up:
            raise EnvNotUpError(f"env {self.name!r} is not up; run `mlinfra up --env {self.name}`")
        return {"serving_url": f"http://127.0.0.1:{PORTS[self.name]}"}

    @contextmanager
    def pinned(self) -> Iterator[dict[str, str]]:
        yield self.outputs()

    def resources(self) -> list[Resource]:
        self.outputs()
        return stack(self.name)

    def history(self, limit: int = 50) -> list[UpdateRecord]:
        if not self.up:
            return []
        records = [
            update(3, self.name, "refresh", unix(hours=2), 1.4, summary={"same": 5}),
            update(2, self.name, "up", unix(days=1, hours=3), 7.9, summary={"update": 1}),
            update(1, self.name, "up", unix(days=6), 9.6, summary={"create": 9}),
        ]
        return records[:limit]

    def last_refresh(self) -> LastRefresh | None:
        return self.refreshed

    # -- the registry
    def versions(self) -> list[VersionSummary]:
        return VERSIONS if self.up else []

    def aliases(self, model: str | None = None) -> dict[str, int]:
        return {"champion": self.champion} if self.champion else {}

    def alias_history(self, model: str | None = None) -> list[AliasEvent]:
        if not self.champion:
            return []
        moves = [  # (from, to, hours ago, why): the last one leaves the champion in place
            (None, self.champion - 2, 240, "first version to pass the gates"),
            (self.champion - 2, self.champion - 1, 96, "canary promoted"),
            (self.champion - 1, self.champion, 28, "canary promoted"),
        ]
        return [
            AliasEvent(
                id=number, model=MODEL, env=self.name, alias="champion", from_version=before,
                to_version=after, at=iso(hours=hours), actor="ana" if number % 2 else "ci",
                reason=reason,
            )
            for number, (before, after, hours, reason) in enumerate(moves, start=1)
        ][::-1]  # fmt: skip

    def compare(self, model: str, left: int, right: int) -> VersionComparison:
        first, second = VERSIONS[-left], VERSIONS[-right]
        return VersionComparison(
            model=model,
            left=left,
            right=right,
            metrics={"f1": (first.score, second.score), "accuracy": (0.9667, 0.9733)},
            params={"C": (1.0, 0.5), "max_iter": (500, 1000)},
            lineage={"git_commit": (first.git_commit, second.git_commit)},
        )

    # -- the deployment
    def deployment(self) -> Deployment | None:
        self.outputs()
        return self.serving

    def rollout(self) -> Rollout | None:
        return None

    def rollback_version(self) -> int:
        return self.champion - 1

    # -- the monitor
    def alerts(self, *, include_acknowledged: bool = True, limit: int | None = None) -> list[Alert]:
        return []

    def drift_report(self) -> dict[str, Any] | None:
        return None


class Dev(FrozenEnv):
    name = "dev"
    champion = 7
    serving = Deployment(
        env="dev", model=MODEL, generation=12, stable=7, canary=8, canary_weight=25,
        updated_at=ago(minutes=18),
    )  # fmt: skip
    refreshed = LastRefresh(at=unix(hours=2), resources=5, changed=1, gone=0)

    def rollout(self) -> Rollout:
        passed = [
            StepResult(
                weight=weight, verdict="pass", reasons=[],
                canary={"requests": canary, "error_rate": 0.0, "p99_ms": 5.9},
                stable={"requests": stable, "error_rate": 0.0, "p99_ms": 4.9},
                psi=psi, at=ago(minutes=minutes),
            )
            for weight, canary, stable, psi, minutes in ((10, 212, 1890, 0.012, 12),)
        ]  # fmt: skip
        return Rollout(
            id="r-20261130-0912", env="dev", model=MODEL, stable=7, canary=8,
            steps=(10, 25, 50, 100), interval_seconds=300, step=1, results=passed,
            actor="ana", started_at=ago(minutes=18),
        )  # fmt: skip

    def alerts(self, *, include_acknowledged: bool = True, limit: int | None = None) -> list[Alert]:
        return ALERTS[:limit]

    def drift_report(self) -> dict[str, Any]:
        return {"checked_at": iso(minutes=4), "report": DRIFT}


class Staging(FrozenEnv):
    name = "staging"
    champion = 6
    serving = Deployment(
        env="staging", model=MODEL, generation=4, stable=6, updated_at=ago(days=1, hours=3)
    )


class Prod(FrozenEnv):
    name = "prod"
    target = "kubernetes"
    champion = 6
    serving = Deployment(env="prod", model=MODEL, generation=9, stable=6, updated_at=ago(days=2))
    lock = LockHolder(pid=4242, host="ci-runner-3", user="ci", command="mlinfra up", since=unix())


class Perf(FrozenEnv):
    name = "perf"
    up = False


PORTS = {"dev": 8701, "staging": 8702, "prod": 8703, "perf": 8704}


def update(
    number: int, env: str, kind: str, started: float, took: float, *, summary: dict[str, int]
) -> UpdateRecord:
    return UpdateRecord(
        id=number, stack=env, kind=kind, started=started, finished=started + took, user="ana",
        host="ana-laptop", commit=digest("stack", number, 40), dirty=False,
        result="succeeded", summary=summary, error="",
    )  # fmt: skip


def stack(env: str) -> list[Resource]:
    """The example's stack: three components and their resources, in the order up made them."""
    root = f"urn:pulumi:{env}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{env}"
    home = f"{ROOT}/{env}"
    url = f"http://127.0.0.1:{PORTS[env]}"
    made: list[Resource] = []

    def add(kind: str, name: str, parent: str, **outputs: Any) -> str:
        urn = f"urn:pulumi:{env}::{PROJECT}::{kind}::{name}"
        custom = kind.startswith("pulumi-python")
        made.append(
            Resource(
                urn=urn, type=kind, name=name, id=str(outputs.get("path", "")) if custom else "",
                parent=parent, dependencies=[], custom=custom, protect=False, status="ok",
                inputs={key: value for key, value in outputs.items() if key != "pid"},
                outputs=outputs,
            )
        )  # fmt: skip
        return urn

    dynamic = "pulumi-python:dynamic/mlinfra"
    training = add("mlinfra:index:TrainingCluster", "training", root)
    registry = add("mlinfra:index:ModelRegistry", "registry", root)
    serving = add("mlinfra:index:ServingStack", "serving", root)
    monitor = add("mlinfra:index:DriftMonitor", "serving-monitor", serving)
    add(f"{dynamic}:TrainingWorkspace", "training-workspace", training,
        path=f"{home}/training", workers=2)  # fmt: skip
    add(f"{dynamic}:RegistryStore", "registry-store", registry, path=f"{home}/registry",
        uri=f"file://{home}/registry")  # fmt: skip
    add(f"{dynamic}:GeneratedToken", "serving-token", serving, token="[secret]")
    add(f"{dynamic}:ModelServer", "serving-server", serving, url=url, path=f"{home}/serving",
        pid=31337, healthy=True, port=PORTS[env], workers=2)  # fmt: skip
    add(f"{dynamic}:DriftMonitorProcess", "serving-monitor-process", monitor, url=url,
        path=f"{home}/monitoring/run", pid=31342, healthy=True)  # fmt: skip
    return made


VERSIONS = [
    VersionSummary(
        model=MODEL, version=number, task="classification", env="dev",
        created_at=iso(days=12 - number, hours=number % 5),
        created_by="ana" if number % 3 else "ci",
        metric="f1", score=round(0.91 + number * 0.006 - (number % 4) * 0.003, 4),
        git_commit=digest("commit", number, 40), git_dirty=number == 9,
        data_hash=digest("data", (number + 1) // 3, 64),
        tags={"owner": "risk-team"} if number in (6, 7) else {},
    )
    for number in range(12, 0, -1)
]  # fmt: skip


def alert(
    number: int, kind: str, feature: str | None, statistic: str, value: float, threshold: float,
    message: str, *, minutes: float, severity: str = "warning", count: int = 1,
    acknowledged: bool = False,
) -> Alert:  # fmt: skip
    return Alert(
        id=number, env="dev", severity=severity, kind=kind, feature=feature, statistic=statistic,
        value=value, threshold=threshold,
        window=Window(label="1h", start=unix(minutes=minutes + 60), end=unix(minutes=minutes)),
        message=message, first_at=unix(minutes=minutes + 30 * (count - 1)),
        last_at=unix(minutes=minutes), count=count,
        acknowledgement=Acknowledgement(by="ana", at=unix(minutes=minutes - 5))
        if acknowledged else None,
        delivery=Delivery(status="delivered", attempts=1, delivered_at=unix(minutes=minutes)),
    )  # fmt: skip


ALERTS = [
    alert(6, "feature_drift", "petal_length", "ks_p_adjusted", 0.0, 0.05,
          "petal_length drifted: KS p = 0 after Holm, below 0.05 (Wasserstein 0.57 sd)",
          minutes=4, severity="critical", count=3),
    alert(5, "prediction_drift", None, "ks_p", 0.0003, 0.05,
          "predictions drifted: KS p = 0.0003, below 0.05", minutes=4),
    alert(4, "dataset_drift", None, "weighted_share", 0.62, 0.5,
          "dataset drifted: 62% of the importance drifts, above 50%", minutes=34),
    alert(3, "feature_drift", "sepal_width", "ks_p_adjusted", 0.011, 0.05,
          "sepal_width drifted: KS p = 0.011 after Holm, below 0.05", minutes=95,
          acknowledged=True),
    alert(2, "performance", None, "accuracy", 0.93, 0.9467,
          "accuracy 0.93 on 150 labelled rows, below the limit 0.9467", minutes=180,
          acknowledged=True),
    alert(1, "log_dropped", None, "dropped_rows", 12, 0,
          "the prediction log dropped 12 rows (disk full)", minutes=1440, acknowledged=True),
]  # fmt: skip


def _drift() -> dict[str, Any]:
    """A real drift report (mlinfra.monitoring) of iris against iris with longer petals."""
    from sklearn.datasets import load_iris

    reference = load_iris(as_frame=True).data
    reference.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    current = reference.assign(petal_length=reference["petal_length"] + 1.0)
    profile = ReferenceProfile.build(reference)
    settings = DriftSettings(min_samples=100)  # iris has 150 rows
    return drift_report(profile, profile.summarise(current), settings).model_dump(mode="json")


DRIFT = _drift()
