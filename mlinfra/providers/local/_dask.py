"""The local training cluster: a Dask scheduler and its workers (dask `distributed`), each under
a supervisord of its own that restarts it if it dies, listening on loopback.

The workers run `dask worker --nworkers N`: a nanny per worker process restarts a killed worker
at once, and the scheduler re-runs the tasks it held on the others. If the scheduler dies, the
workers exit, and both supervisords start them again on the same ports (recorded in the state),
so the cluster mends itself; a cluster whose supervisord is gone is seen by `refresh` and made
again by `up --refresh`. Ready once the scheduler counts every worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult
from pydantic import Field

from ..._code_paths import add_code_path_option, code_path_arguments, put_first_on_path
from ...errors import DeploymentError
from ._base import AbsolutePath, LocalProvider, LocalResource, ProviderInputs, gone
from ._health import HEALTH_TIMEOUT, UP_STATES
from ._ports import port_free
from ._supervisor import Supervisor

__all__ = ["DaskCluster", "DaskClusterArgs", "DaskClusterProvider"]

_PARTS = ("scheduler", "workers")
_PORT_OUTPUTS = ("scheduler_port", "dashboard_port")


class DaskInputs(ProviderInputs):
    run_dir: AbsolutePath
    workers: int = Field(ge=1, le=256)
    host: str = "127.0.0.1"
    code_paths: list[AbsolutePath] = Field(default_factory=list)


class DaskClusterProvider(LocalProvider[DaskInputs]):
    """A new run dir is a replacement; other changes are an update, which restarts the cluster
    on the ports it had. The id is the run dir."""

    inputs_model = DaskInputs
    replace_on = frozenset({"run_dir"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        _stop(Path(inputs.run_dir))  # what a killed create left
        ports = _start(inputs, {})
        return CreateResult(id_=inputs.run_dir, outs=_outputs(inputs, ports))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self.parse(news)
        _stop(Path(id_))
        ports = _start(inputs, {key: olds[key] for key in _PORT_OUTPUTS if olds.get(key)})
        return UpdateResult(outs=_outputs(inputs, ports))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        run_dir = Path(id_)
        if all(_supervisor(run_dir, part).process() is None for part in _PARTS):
            return gone()
        inputs = self.parse(props)
        ports = {key: int(props[key]) for key in _PORT_OUTPUTS}
        problem = _problem(run_dir, inputs, ports)
        return ReadResult(id_=id_, outs=_outputs(inputs, ports, problem=problem))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        _stop(Path(id_))
        shutil.rmtree(id_, ignore_errors=True)

    def drifted(self, outs: dict[str, Any]) -> bool:
        return outs.get("healthy") is False


def _supervisor(run_dir: Path, part: str) -> Supervisor:
    return Supervisor(run_dir / part)


def _stop(run_dir: Path) -> None:
    for part in reversed(_PARTS):  # workers first: a scheduler gone first makes them retry
        _supervisor(run_dir, part).stop()


def _start(inputs: DaskInputs, previous: dict[str, int]) -> dict[str, int]:
    """Start the scheduler and the workers; the ports they listen on, kept from `previous`
    where still free; once the scheduler counts every worker."""
    run_dir = Path(inputs.run_dir)
    ports = {key: _port(inputs.host, previous.get(key)) for key in _PORT_OUTPUTS}
    scheduler = [
        sys.executable, "-m", "distributed.cli.dask_scheduler",
        "--host", inputs.host,
        "--port", str(ports["scheduler_port"]),
        "--dashboard-address", f"{inputs.host}:{ports['dashboard_port']}",
        "--no-show",
    ]  # fmt: skip
    workers = [
        sys.executable, "-m", "mlinfra.providers.local._dask",
        *code_path_arguments(inputs.code_paths),
        "--",
        _address(inputs.host, ports["scheduler_port"]),
        "--nworkers", str(inputs.workers),
        "--nthreads", "1",  # a fit uses one core; a worker per core
        "--host", inputs.host,
        "--no-dashboard",
        "--dashboard-address", f"{inputs.host}:0",  # its /metrics and /health, on loopback too
        "--local-directory", str(run_dir / "workers" / "space"),
    ]  # fmt: skip
    for part, command in zip(_PARTS, (scheduler, workers), strict=True):
        instance = _supervisor(run_dir, part)
        instance.write(command, {})
        instance.launch()
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while (problem := _problem(run_dir, inputs, ports)) is not None:
        if time.monotonic() > deadline or _given_up(run_dir):
            logs = "; ".join(f"{part}: {_supervisor(run_dir, part).log_tail(2)}" for part in _PARTS)
            _stop(run_dir)
            raise DeploymentError(f"the Dask cluster did not start: {problem}; logs: {logs}")
        time.sleep(0.2)
    return ports


def _given_up(run_dir: Path) -> bool:
    return any(_supervisor(run_dir, part).program_state() == "FATAL" for part in _PARTS)


def _problem(run_dir: Path, inputs: DaskInputs, ports: dict[str, int]) -> str | None:
    """Why the cluster is not whole, or None: both programs run and the scheduler counts
    every worker."""
    import httpx

    for part in _PARTS:
        state = _supervisor(run_dir, part).program_state()
        if state not in UP_STATES:
            return f"its {part} is not running (supervisord says {state})"
    url = f"http://{inputs.host}:{ports['dashboard_port']}/json/counts.json"
    try:
        counts = httpx.get(url, timeout=5, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return "its scheduler does not answer"
    if counts.get("workers") != inputs.workers:
        return f"{counts.get('workers', 0)} of {inputs.workers} workers connected"
    return None


def _port(host: str, wanted: int | None) -> int:
    """`wanted` if it can still be listened on, else one the system picks now."""
    if wanted and port_free(host, wanted):
        return wanted
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _address(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def _outputs(
    inputs: DaskInputs, ports: dict[str, int], *, problem: str | None = None
) -> dict[str, Any]:
    outs = {
        **inputs.model_dump(),
        **ports,
        "scheduler": _address(inputs.host, ports["scheduler_port"]),
        "dashboard": f"http://{inputs.host}:{ports['dashboard_port']}/status",
        "healthy": problem is None,
    }
    if problem is not None:
        outs["problem"] = problem
    return outs


@dataclass(frozen=True, kw_only=True)
class DaskClusterArgs:
    run_dir: pulumi.Input[str]
    workers: pulumi.Input[int]
    host: pulumi.Input[str] = "127.0.0.1"
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)


class DaskCluster(LocalResource[DaskClusterArgs], module="mlinfra", name="DaskCluster"):
    """`scheduler` is the address clients connect to; `dashboard` the Dask dashboard's URL;
    `healthy` what the last read found: every worker connected."""

    provider_type = DaskClusterProvider
    computed = ("scheduler", "dashboard", "scheduler_port", "dashboard_port", "healthy")
    scheduler: pulumi.Output[str]
    dashboard: pulumi.Output[str]
    healthy: pulumi.Output[bool]


def _run_workers(argv: list[str] | None = None) -> None:
    """`python -m mlinfra.providers.local._dask --code-path DIR -- <dask worker arguments>`:
    the workers, with the project's modules on the import path of every worker process the
    nannies start (PYTHONPATH, as they are new interpreters)."""
    parser = argparse.ArgumentParser(prog="python -m mlinfra.providers.local._dask")
    add_code_path_option(parser)
    parser.add_argument("worker_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    inherited = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    os.environ["PYTHONPATH"] = os.pathsep.join([*args.code_paths, *inherited])
    put_first_on_path(args.code_paths)
    worker_args = args.worker_args[1:] if args.worker_args[:1] == ["--"] else args.worker_args
    sys.argv = ["dask worker", *worker_args]
    from distributed.cli.dask_worker import main

    main()


if __name__ == "__main__":
    _run_workers()
