"""The bundled example brought up for real (`mlinfra up`), with real models registered straight
into its registry, for tests that drive the `mlinfra` command against the live server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _serving import ROW, register
from conftest import MLINFRA, IrisProject, cli_env
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra.registry import Registry
from mlinfra.serving import Deployment, deployment_dir, read_acks, read_deployment


@dataclass
class LiveEnv:
    """One env of the example, up, with its outputs read back through the CLI."""

    project: IrisProject
    name: str
    registry: Path
    url: str
    token: str | None

    @property
    def directory(self) -> Path:
        """The env's deployment folder: deployment.json, pending.json, history.jsonl, ..."""
        return deployment_dir(self.registry, self.name)

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.project.cli(*args, "--env", self.name, env=env)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a command in the background, output discarded (for runs a test kills)."""
        return subprocess.Popen(
            [*MLINFRA, *args, "--env", self.name],
            cwd=self.project.root,
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """Run a command with --json; it must succeed."""
        done = self.cli(*args, "--json", env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def predict(
        self, headers: dict[str, str] | None = None, *, client: httpx.Client | None = None
    ) -> httpx.Response:
        """One prediction request with the env's token (on `client`'s kept connection if given)."""
        auth = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return (client or httpx).post(
            f"{self.url}/invocations",
            json={"instances": [ROW]},
            headers={**auth, **(headers or {})},
            timeout=10,
        )

    def aliases(self) -> dict[int, list[str]]:
        """The env's registry aliases by version, as `models list` shows them."""
        return {row["version"]: row["aliases"] for row in self.ok("models", "list")}

    def history(self) -> list[dict[str, Any]]:
        """The env's deployment history, as `rollout status` reports it."""
        return self.ok("rollout", "status", "--history", "50")["history"]

    def table(self) -> Deployment | None:
        """What the env's deployment table says now (the file the server polls)."""
        return read_deployment(self.directory)

    def tamper(self, version: int) -> None:
        """Change the stored artifact of `version` behind the registry's back."""
        with Registry.open(self.registry) as opened:
            digest = opened.get("iris", version).artifact_sha256
        artifact = self.registry / "artifacts" / digest[:2] / digest[2:]
        artifact.write_bytes(artifact.read_bytes()[:-4] + b"evil")

    def worker_pids(self) -> list[int]:
        """The live server workers that acknowledge deployment tables."""
        return [ack.pid for ack in read_acks(self.directory)]


def bring_up(project: IrisProject, env: str = "dev", *, models: int = 2) -> LiveEnv:
    """`mlinfra up` the env with no gates, and register `models` versions (v1 a logistic
    regression, v2 a decision tree, v3... more trees) without training."""
    project.set_gates()  # these versions are fitted here, not judged on the example's data
    done = project.cli("up", "--env", env, "--yes")
    assert done.returncode == 0, done.stderr
    outputs = project.cli("outputs", "--env", env, "--json", "--show-secrets")
    assert outputs.returncode == 0, outputs.stderr
    values = json.loads(outputs.stdout)
    live = LiveEnv(
        project=project,
        name=env,
        registry=Path(values["registry_path"]),
        url=values["serving_url"],
        token=values.get("serving_token"),
    )
    estimators = [LogisticRegression(max_iter=500)] + [
        DecisionTreeClassifier(max_depth=depth, random_state=0) for depth in range(3, 2 + models)
    ]
    for estimator in estimators:
        register(live.registry, estimator)
    return live


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """Stop these processes (SIGSTOP) and let them go on afterwards: a server worker that is
    alive but has not yet loaded a new table, for as long as the test needs."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
