"""Benchmark the model server: one-row throughput and latency, batch rows/s, overhead per request.

    python bench/serving.py               # mlinfra's server; MLflow's if /work/bench-venv has it
    python bench/serving.py --duration 20 --extras /work/bench-extras   # with uvloop + httptools

The model is the iris example's (StandardScaler + LogisticRegression, fitted on the bundled data),
served by one worker. Load comes from `wrk` in its own process on loopback (10 connections,
single-row requests in MLflow's `dataframe_split` format, which both servers take). MLflow runs
from its own virtual environment, never this project's, with the same model, worker count and load.
Prints a markdown table; copy it into docs/benchmarks.md under "Serving" with the machine and date.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]

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

inner = create_app(ServerOptions(registry=Path(sys.argv[1]), env="bench"))
app = FastAPI(lifespan=inner.router.lifespan_context, openapi_url=None)
app.add_exception_handler(HTTPProblem, inner.exception_handlers[HTTPProblem])
for route in inner.routes:
    app.add_api_route(route.path, route.endpoint, methods=sorted(route.methods))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url}{path} did not answer 200 within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _spawn(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


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


def _measure(name: str, url: str, folder: Path, args: argparse.Namespace, batch: bool) -> dict:
    single = {"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}
    check = httpx.post(url, json=single, timeout=10)
    assert check.status_code == 200, f"{name}: {check.status_code} {check.text}"
    _wrk(url, _lua(folder, single), connections=10, duration=2)  # warm-up
    result = {"server": name}
    result["load"] = _wrk(url, _lua(folder, single), connections=10, duration=args.duration)
    result["serial"] = _wrk(url, _lua(folder, single), connections=1, duration=args.duration // 2)
    if batch:
        rows = [ROW] * 1000
        body = {"dataframe_split": {"columns": COLUMNS, "data": rows}}
        result["batch"] = _wrk(url, _lua(folder, body), connections=2, duration=args.duration // 2)
    return result


def _mlinfra(folder: Path, registry: Path, args: argparse.Namespace, framework: str) -> dict:
    port = _free_port()
    env = {"PYTHONPATH": args.extras} if args.extras else {}
    if framework == "starlette":
        command = [sys.executable, "-m", "mlinfra.serving", "--port", str(port), "--workers", "1",
                   "--registry", str(registry), "--env", "bench"]  # fmt: skip
    else:
        command = [sys.executable, "-c", FASTAPI_SERVER, str(registry), str(port)]
    process = _spawn(command, env)
    try:
        _wait(f"http://127.0.0.1:{port}", "/v2/health/ready")
        url = f"http://127.0.0.1:{port}/invocations"
        return _measure(f"mlinfra ({framework})", url, folder, args, batch=framework == "starlette")
    finally:
        _stop(process)


def _mlflow(folder: Path, args: argparse.Namespace) -> dict | None:
    if args.mlflow_venv is None:
        print("(no --mlflow-venv given: MLflow's server skipped)", file=sys.stderr)
        return None
    venv = args.mlflow_venv
    mlflow = venv / "bin" / "mlflow"
    if not mlflow.exists():
        print(f"(no {mlflow}: MLflow's server skipped)", file=sys.stderr)
        return None
    model_dir = folder / "mlflow-model"
    save = TRAIN.format(columns=COLUMNS) + (
        "import mlflow.sklearn\n"
        f"mlflow.sklearn.save_model(model, {str(model_dir)!r}, input_example=features.head(2))\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", save], check=True,
                   capture_output=True)  # fmt: skip
    port = _free_port()
    process = _spawn(
        [
            str(mlflow),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "--env-manager",
            "local",
            "-w",
            "1",
        ],  # fmt: skip
        {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
    )
    try:
        _wait(f"http://127.0.0.1:{port}", "/ping")
        return _measure("MLflow", f"http://127.0.0.1:{port}/invocations", folder, args, batch=True)
    finally:
        _stop(process)


def _mlflow_version(venv: Path | None) -> str:
    python = venv / "bin" / "python" if venv is not None else None
    if python is None or not python.exists():
        return "-"
    return subprocess.run([str(python), "-c", "import mlflow; print(mlflow.__version__)"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--extras", help="a directory put on the server's PYTHONPATH (uvloop)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--mlflow-venv",
        type=Path,
        help="a virtualenv with mlflow installed (../shared/anchors/mlflow_serve.sh makes one)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    folder = Path(tempfile.mkdtemp(prefix="mlinfra-bench-serving-"))
    try:
        registry, raw = _registry(folder)
        inside = _served_model_seconds(registry)
        results = [_mlinfra(folder, registry, args, "starlette"),
                   _mlinfra(folder, registry, args, "fastapi")]  # fmt: skip
        if not args.no_mlflow:
            mlflow = _mlflow(folder, args)
            if mlflow is not None:
                results.append(mlflow)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _print(results, raw, inside, args)


def _print(results: list[dict], raw: float, inside: float, args: argparse.Namespace) -> None:
    mlflow = _mlflow_version(args.mlflow_venv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
          f"wrk 1 thread, {args.duration} s runs; "
          f"MLflow {mlflow}; extras on path: {args.extras or 'none'}")  # fmt: skip
    print(f"raw model.predict, one row (DataFrame): {raw * 1e6:.0f} µs median; the server's "
          f"checks + model (numpy twin), no HTTP: {inside * 1e6:.0f} µs\n")  # fmt: skip
    print("| server, 1 worker | req/s (10 conn) | p50 ms | p99 ms | p50 ms (1 conn) "
          "| time per request / raw predict | 1,000-row batch rows/s | failed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        load, serial = result["load"], result["serial"]
        overhead = (1 / load["rps"]) / raw  # CPU time per request against the bare predict
        batch = f"{result['batch']['rps'] * 1000:,.0f}" if "batch" in result else "-"
        failed = int(load["failed"] + serial["failed"] + result.get("batch", {}).get("failed", 0))
        print(f"| {result['server']} | {load['rps']:,.0f} | {load['p50']:.2f} | {load['p99']:.2f} "
              f"| {serial['p50']:.2f} | {overhead:.1f}x | {batch} | {failed} |")  # fmt: skip


if __name__ == "__main__":
    main()
