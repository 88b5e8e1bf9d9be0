"""Helpers for the serving and rollout tests: a real registry with real models, a real server.

The server runs as `python -m mlinfra.serving` in its own process group on a free loopback port,
exactly as the ServingStack starts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from conftest import free_port
from sklearn.datasets import load_iris

from mlinfra.data import infer_schema, write_sample
from mlinfra.registry import NewVersion, Registry, dump_model, initialize
from mlinfra.serving import Deployment, read_deployment, write_deployment
from mlinfra.serving import deployment_dir as _deployment_dir

IRIS = load_iris(as_frame=True)
FEATURES: pd.DataFrame = IRIS.data
TARGET: pd.Series = IRIS.target
COLUMNS = list(FEATURES.columns)
ROW = [5.1, 3.5, 1.4, 0.2]


def new_registry(root: Path) -> Path:
    initialize(root)
    return root


def register(
    registry: Path,
    estimator: Any,
    *,
    name: str = "iris",
    features: pd.DataFrame | None = None,
    target: pd.Series | None = None,
    schema_features: pd.DataFrame | None = None,
) -> int:
    """Fit `estimator` and register it as training does: skops artifact, schema, reference sample.

    `schema_features` records a different schema than the model was fitted on (a broken version).
    """
    features = FEATURES if features is None else features
    target = TARGET if target is None else target
    estimator.fit(features, target)
    described = features if schema_features is None else schema_features
    with Registry.open(registry) as opened:
        version = opened.register(
            NewVersion(
                model=name,
                task="classification" if target.dtype.kind in "iub" else "regression",
                env="dev",
                model_bytes=dump_model(estimator),
                params={},
                metrics={},
                lineage={"test": True},
                documents={"schema": infer_schema(described, target).model_dump()},
                reference_sample=write_sample(described, rows=50),
            )
        )
    return version.version


def serve_table(registry: Path, env: str, *, model: str = "iris", **fields: Any) -> Deployment:
    """Write the env's deployment table directly (what a rollout does), next generation."""
    directory = _deployment_dir(registry, env)
    previous = read_deployment(directory)
    table = Deployment(
        env=env,
        model=model,
        generation=(previous.generation if previous else 0) + 1,
        **fields,
    )
    write_deployment(directory, table)
    return table


@dataclass
class Server:
    """A real server process; stop() ends its whole process group."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(self.url + path, **kwargs)

    def wait_generation(self, generation: int, timeout: float = 20) -> None:
        """Until the server answers ready with `generation` (every worker, for one worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get("/v2/health/ready")
            if response.status_code == 200 and response.json()["generation"] >= generation:
                return
            time.sleep(0.05)
        raise AssertionError(f"generation {generation} not served; log:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(
    registry: Path, env: str = "dev", *, workers: int = 1, extra: tuple[str, ...] = ()
) -> Server:
    port = free_port()
    log = registry.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "mlinfra.serving", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    command += ["--registry", str(registry), "--env", env, *extra]
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
        try:
            if server.get("/v2/health/live").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"server not live within 30 s:\n{log.read_text()}")
