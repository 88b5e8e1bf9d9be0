"""Benchmark the model server: one-row throughput and latency, batch rows/s, overhead per request;
mlinfra with and without micro-batching and the prediction log, side by side with its peers.

    python bench/serving.py                                   # mlinfra's server alone
    python bench/serving.py --duration 5 --rounds 3 --mlflow-venv VENV --mlserver-venv VENV2

The model is the iris example's (StandardScaler + LogisticRegression, fitted on the bundled data),
served by one worker. Load comes from `wrk` in its own process on loopback (one thread, 10
connections), single-row requests: MLflow's `dataframe_split` body and the Open Inference Protocol
v2 body (one [1, 4] FP64 tensor), each to the servers that take it. mlinfra runs as it ships
(micro-batching on), with `--batch-window-ms 0`, with the prediction log at sample rate 1.0, and
its handlers behind FastAPI (with `pip install -e .[bench]`). Each peer runs from its own
virtual environment, never this project's, with the same model, worker count and load: MLflow's
`models serve`, and Seldon MLServer with mlserver-sklearn and parallel_workers 0 (as
../shared/anchors/mlserver_v2.sh runs it); a peer whose venv is not given is skipped with a note.
Prints a markdown table; copy it into docs/benchmarks.md under "Serving" with the machine and
date.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]
BATCH_ROWS = 1000

# The iris example's model, trained the same way in whichever environment runs this snippet.
TRAIN = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

iris = load_iris(as_frame=True)
features = iris.data.set_axis({columns!r}, axis=1)
target = iris.target.map(dict(enumerate(iris.target_names.tolist()))).astype(str)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, target)
"""

# A FastAPI app over the very same route handlers, to compare the two frameworks fairly.
FASTAPI_SERVER = """
import sys
from pathlib import Path
import uvicorn
from fastapi import FastAPI
from mlinfra.serving._app import ServerOptions, create_app
from mlinfra.serving._http import HTTPProblem

inner = create_app(ServerOptions(registry=Path(sys.argv[1]), env="bench")).app  # its Starlette app
app = FastAPI(lifespan=inner.router.lifespan_context, openapi_url=None)
app.add_exception_handler(HTTPProblem, inner.exception_handlers[HTTPProblem])
for route in inner.routes:
    app.add_api_route(route.path, route.endpoint, methods=sorted(route.methods))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""

# The peers' model directories, written by their own venv's Python (the folder is argv[1]).
MLFLOW_MODEL = """
import sys
import mlflow.sklearn
mlflow.sklearn.save_model(model, sys.argv[1], input_example=features.head(2))
"""
# MLServer decodes a v2 tensor to a numpy array: fitted on one, the model predicts it without
# scikit-learn's feature-name warning on every request. Its server settings (ports, workers) come
# from the environment (`MLSERVER_*`), so that the ports are free ones.
MLSERVER_MODEL = """
import json, sys
from pathlib import Path
import joblib
folder = Path(sys.argv[1]) / "iris"
folder.mkdir(parents=True)
joblib.dump(model.fit(features.to_numpy(), target), folder / "model.joblib")
settings = {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}
(folder / "model-settings.json").write_text(json.dumps(settings))
"""


@dataclass(frozen=True)
class Target:
    """A server to measure: how to start it, the path answering 200 once it serves, and its
    prediction path for each body it takes ("dataframe_split", "v2"). The command and the
    environment's values may name free ports: {port} (HTTP, measured), {grpc_port},
    {metrics_port}."""

    name: str
    command: list[str]
    ready: str
    routes: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def _body(kind: str, rows: list[list[float]]) -> dict:
    if kind == "dataframe_split":
        return {"dataframe_split": {"columns": COLUMNS, "data": rows}}
    data = [value for row in rows for value in row]
    return {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64",
                        "data": data}]}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _registry(folder: Path) -> tuple[Path, float]:
    """A registry holding the iris model as v1, and the model's own one-row predict time (s)."""
    import pandas as pd

    from mlinfra.data import infer_schema, write_sample
    from mlinfra.registry import NewVersion, Registry, dump_model, initialize
    from mlinfra.serving import Deployment, deployment_dir, write_deployment

    scope: dict = {}
    exec(TRAIN.format(columns=COLUMNS), scope)
    model, features = scope["model"], scope["features"]
    root = folder / "registry"
    initialize(root)
    with Registry.open(root) as registry:
        registry.register(
            NewVersion(
                model="iris",
                task="classification",
                env="bench",
                model_bytes=dump_model(model),
                params={},
                metrics={},
                lineage={},
                documents={"schema": infer_schema(features, scope["target"]).model_dump()},
                reference_sample=write_sample(features),
            )
        )
    write_deployment(
        deployment_dir(root, "bench"), Deployment(env="bench", model="iris", generation=1, stable=1)
    )
    one = pd.DataFrame([ROW], columns=COLUMNS)
    return root, _median_seconds(lambda: model.predict(one))


def _median_seconds(call: Callable[[], object], runs: int = 2000) -> float:
    for _ in range(200):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _served_model_seconds(registry: Path) -> float:
    """What the server itself spends in checks and the model for one row (no HTTP, no JSON)."""
    from mlinfra.serving._loading import load_served_model

    served = load_served_model(registry, "iris", 1)
    columns = {name: [value] for name, value in zip(COLUMNS, ROW, strict=True)}
    return _median_seconds(lambda: served.infer(served.inputs(columns), ("predict",), columns))


def _lua(folder: Path, body: dict) -> Path:
    script = folder / f"post-{abs(hash(json.dumps(body)))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    return script


def _wrk(url: str, script: Path, *, connections: int, duration: int) -> dict[str, float]:
    """Requests/s, p50 and p99 in ms, and the count of non-2xx answers, as wrk reports them."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * units[unit]

    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": percentile("50"),
        "p99": percentile("99"),
        "failed": float(failed.group(1)) if failed else 0.0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _measure(url: str, kind: str, folder: Path, args: argparse.Namespace) -> dict:
    """Single rows on 10 connections and on one, then 1,000-row requests on two."""
    single = _body(kind, [ROW])
    check = httpx.post(url, json=single, timeout=10)
    assert check.status_code == 200, f"{url}: {check.status_code} {check.text}"
    script = _lua(folder, single)
    _wrk(url, script, connections=10, duration=2)  # warm-up
    half = max(1, args.duration // 2)
    batch = _lua(folder, _body(kind, [ROW] * BATCH_ROWS))
    return {
        "load": _wrk(url, script, connections=10, duration=args.duration),
        "serial": _wrk(url, script, connections=1, duration=half),
        "batch": _wrk(url, batch, connections=2, duration=half),
    }


def _run(target: Target, folder: Path, args: argparse.Namespace) -> list[dict]:
    """Start `target`, measure each of its routes, stop it."""
    ports = {name: _free_port() for name in ("port", "grpc_port", "metrics_port")}

    def placed(text: str) -> str:
        for name, port in ports.items():
            text = text.replace(f"{{{name}}}", str(port))
        return text

    process = subprocess.Popen(
        [placed(part) for part in target.command],
        env={**os.environ, **{name: placed(value) for name, value in target.env.items()}},
        cwd=target.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{ports['port']}"
    try:
        _wait(base + target.ready)
        return [
            {"server": target.name, "body": kind, **_measure(base + path, kind, folder, args)}
            for kind, path in target.routes.items()
        ]
    finally:
        _stop(process)


MLINFRA_ROUTES = {"dataframe_split": "/invocations", "v2": "/v2/models/iris/infer"}
BATCHING_ON = "mlinfra, micro-batching on"
BATCHING_OFF = "mlinfra, --batch-window-ms 0"
LOG_ON = "mlinfra, prediction log at rate 1.0"


def _mlinfra(name: str, registry: Path, args: argparse.Namespace, *options: str) -> Target:
    command = [sys.executable, "-m", "mlinfra.serving", "--port", "{port}", "--workers", "1",
               "--registry", str(registry), "--env", "bench", *options]  # fmt: skip
    return Target(name, command, "/v2/health/ready", MLINFRA_ROUTES, _extras(args))


def _fastapi(registry: Path, args: argparse.Namespace) -> Target | None:
    if importlib.util.find_spec("fastapi") is None:
        print("(no fastapi here: pip install -e '.[bench]'; the FastAPI row skipped)",
              file=sys.stderr)  # fmt: skip
        return None
    command = [sys.executable, "-c", FASTAPI_SERVER, str(registry), "{port}"]
    routes = {"dataframe_split": "/invocations"}
    return Target("mlinfra (FastAPI)", command, "/v2/health/ready", routes, _extras(args))


def _extras(args: argparse.Namespace) -> dict[str, str]:
    return {"PYTHONPATH": args.extras} if args.extras else {}


def _peer_venv(venv: Path | None, program: str, option: str) -> Path | None:
    """`venv` if it has `program`; else None, with a note that the peer is skipped."""
    if venv is None:
        print(f"(no {option} given: {program} skipped)", file=sys.stderr)
        return None
    if not (venv / "bin" / program).exists():
        print(f"(no {venv / 'bin' / program}: {program} skipped)", file=sys.stderr)
        return None
    return venv


def _in_venv(venv: Path, snippet: str, *argv: str) -> None:
    """Train the model with `venv`'s own Python and run `snippet` on it there."""
    code = TRAIN.format(columns=COLUMNS) + snippet
    subprocess.run([str(venv / "bin" / "python"), "-c", code, *argv], check=True,
                   capture_output=True)  # fmt: skip


def _venv_path(venv: Path) -> str:
    return f"{venv / 'bin'}:{os.environ['PATH']}"


def _mlflow(folder: Path, args: argparse.Namespace) -> Target | None:
    venv = _peer_venv(args.mlflow_venv, "mlflow", "--mlflow-venv")
    if venv is None:
        return None
    model_dir = folder / "mlflow-model"
    _in_venv(venv, MLFLOW_MODEL, str(model_dir))
    command = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir),
               "-p", "{port}", "-h", "127.0.0.1", "--env-manager", "local", "-w", "1"]  # fmt: skip
    env = {"PATH": _venv_path(venv), "MLFLOW_TRACKING_URI": (folder / "mlruns").as_uri()}
    return Target("MLflow", command, "/ping", {"dataframe_split": "/invocations"}, env)


def _mlserver(folder: Path, args: argparse.Namespace) -> Target | None:
    venv = _peer_venv(args.mlserver_venv, "mlserver", "--mlserver-venv")
    if venv is None:
        return None
    models = folder / "mlserver-models"
    _in_venv(venv, MLSERVER_MODEL, str(models))
    env = {
        "PATH": _venv_path(venv),
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": "{port}",
        "MLSERVER_GRPC_PORT": "{grpc_port}",
        "MLSERVER_METRICS_PORT": "{metrics_port}",
        "MLSERVER_PARALLEL_WORKERS": "0",  # inference in the server process: its fastest here
    }
    command = [str(venv / "bin" / "mlserver"), "start", "."]
    routes = {"v2": "/v2/models/iris/infer"}
    return Target("MLServer", command, "/v2/models/iris/ready", routes, env, cwd=models)


def _logged(log_dir: Path) -> str:
    """What the prediction log's server wrote (read once it stopped, which writes the rest)."""
    from mlinfra.monitoring import PredictionLog

    rows = PredictionLog(log_dir).counts().predictions
    return f"{rows.written:,} rows written, {rows.dropped:,} dropped, {rows.failed:,} failed"


def _version(venv: Path | None, module: str) -> str:
    python = venv / "bin" / "python" if venv is not None else None
    if python is None or not python.exists():
        return "-"
    return subprocess.run([str(python), "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every server this often, in turn, and report each one's median round: on a "
        "shared machine, load from elsewhere then weighs on all of them alike",
    )
    parser.add_argument("--extras", help="a directory put on mlinfra's PYTHONPATH (uvloop)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow even if given")
    parser.add_argument("--mlflow-venv", type=Path, help="a virtualenv with mlflow, scikit-learn")
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        help="a virtualenv with mlserver 1.7, mlserver-sklearn, scikit-learn",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    folder = Path(tempfile.mkdtemp(prefix="mlinfra-bench-serving-"))
    try:
        registry, raw = _registry(folder)
        inside = _served_model_seconds(registry)
        log_dir = folder / "prediction-log"
        log_options = ("--log-dir", str(log_dir), "--log-sample-rate", "1.0")
        targets = [
            _mlinfra(BATCHING_ON, registry, args),
            _mlinfra(BATCHING_OFF, registry, args, "--batch-window-ms", "0"),
            _mlinfra(LOG_ON, registry, args, *log_options),
            _fastapi(registry, args),
            _mlserver(folder, args),
            None if args.no_mlflow else _mlflow(folder, args),
        ]
        present = [target for target in targets if target is not None]
        load_before = os.getloadavg()[0]
        runs = [row for _ in range(args.rounds) for t in present for row in _run(t, folder, args)]
        logged = _logged(log_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = _medians(runs)
    _print(results, raw, inside, args, (load_before, os.getloadavg()[0]))
    _print_ratios(results, logged)


def _medians(runs: list[dict]) -> list[dict]:
    """Of each server and body's rounds, the one with the median req/s (the lower of two)."""
    rounds: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        rounds.setdefault((run["server"], run["body"]), []).append(run)
    return [
        sorted(rows, key=lambda row: row["load"]["rps"])[(len(rows) - 1) // 2]
        for rows in rounds.values()
    ]


def _print(
    results: list[dict],
    raw: float,
    inside: float,
    args: argparse.Namespace,
    load_average: tuple[float, float],
) -> None:
    peers = (f"MLServer {_version(args.mlserver_venv, 'mlserver')}, "
             f"MLflow {_version(args.mlflow_venv, 'mlflow')}")  # fmt: skip
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
          f"wrk 1 thread, {args.duration} s runs, median of {args.rounds} rounds; {peers}; "
          f"extras on path: {args.extras or 'none'}; "
          f"load average {load_average[0]:.1f} before, {load_average[1]:.1f} after")  # fmt: skip
    print(f"raw model.predict, one row (DataFrame): {raw * 1e6:.0f} µs median; the server's "
          f"checks + model (numpy twin), no HTTP: {inside * 1e6:.0f} µs\n")  # fmt: skip
    print("| server, 1 worker | body | req/s (10 conn) | p50 ms | p99 ms | p50 ms (1 conn) "
          "| time per request / raw predict | 1,000-row batch rows/s | failed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        load, serial, batch = result["load"], result["serial"], result["batch"]
        overhead = (1 / load["rps"]) / raw  # CPU time per request against the bare predict
        failed = int(load["failed"] + serial["failed"] + batch["failed"])
        print(f"| {result['server']} | {result['body']} | {load['rps']:,.0f} | {load['p50']:.2f} "
              f"| {load['p99']:.2f} | {serial['p50']:.2f} | {overhead:.1f}x "
              f"| {batch['rps'] * BATCH_ROWS:,.0f} | {failed} |")  # fmt: skip


def _print_ratios(results: list[dict], logged: str) -> None:
    """Throughput (10 connections) of one configuration against another, for each body."""
    rps = {(r["server"], r["body"]): r["load"]["rps"] for r in results}

    def ratios(one: str, other: str) -> str:
        pairs = [(body, rps[one, body] / rps[other, body])
                 for (server, body) in rps if server == one and (other, body) in rps]  # fmt: skip
        return ", ".join(f"{ratio:.2f}x ({body})" for body, ratio in pairs) or "-"

    print(f"\nmicro-batching on / off: {ratios(BATCHING_ON, BATCHING_OFF)}")
    print(f"prediction log at rate 1.0 / off: {ratios(LOG_ON, BATCHING_ON)}; the log: {logged}")
    for peer in ("MLServer", "MLflow"):
        if any(server == peer for server, _ in rps):
            print(f"mlinfra (as shipped) / {peer}: {ratios(BATCHING_ON, peer)}")


if __name__ == "__main__":
    main()
