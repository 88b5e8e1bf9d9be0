"""Benchmark large request bodies: how long health probes and one-row predictions wait behind them.

    python bench/big_bodies.py                      # this checkout's server
    git archive HEAD~1 mlinfra | tar -x -C /tmp/old # an older copy of the package, to compare:
    python bench/big_bodies.py --source /tmp/old --label "before"

One server worker serves the iris example's model (bench/serving.py builds it). Four bodies of
about 10 MB each (MLflow `dataframe_split`, 470,000 rows, just under the default 10 MiB limit) are
posted at once; meanwhile one client sends health probes and one-row predictions in turn, one at a
time. Also measures the server's RSS growth for the first such body, then for four at once
(psutil, sampled every 5 ms). Prints a markdown table for docs/benchmarks.md, "Large bodies".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import serving as serving_bench

LIMIT = 10 * 1024 * 1024
BIG_REQUESTS = 4
ONE_ROW = {"dataframe_split": {"columns": serving_bench.COLUMNS, "data": [serving_bench.ROW]}}
PROBES = ("/v2/health/live", "/v2/health/ready", "one-row predict")


def big_body(limit: int = LIMIT) -> tuple[bytes, int]:
    """An MLflow `dataframe_split` body of iris rows (drawn with replacement) just under `limit`."""
    from sklearn.datasets import load_iris

    row_bytes = len(json.dumps(serving_bench.ROW)) + 2
    count = int(limit * 0.99) // row_bytes
    rows = load_iris().data.round(1)[random.Random(0).choices(range(150), k=count)].tolist()
    body = json.dumps({"dataframe_split": {"columns": serving_bench.COLUMNS, "data": rows}})
    assert len(body) <= limit, len(body)
    return body.encode(), len(rows)


class RssSampler:
    """The peak resident memory of a process while running, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _probe(client: httpx.Client, url: str, kind: str) -> float:
    start = time.perf_counter()
    if kind == "one-row predict":
        response = client.post(url + "/invocations", json=ONE_ROW)
    else:
        response = client.get(url + kind)
    assert response.status_code == 200, (kind, response.status_code, response.text)
    return time.perf_counter() - start


def _post_big(url: str, body: bytes, rows: int) -> float:
    start = time.perf_counter()
    response = httpx.post(
        url + "/invocations",
        content=body,
        headers={"content-type": "application/json"},
        timeout=300,
    )
    assert response.status_code == 200, (response.status_code, response.text[:200])
    assert len(response.json()["predictions"]) == rows
    return time.perf_counter() - start


def _post_all_at_once(url: str, body: bytes, rows: int) -> list[float]:
    with ThreadPoolExecutor(BIG_REQUESTS) as pool:
        return list(pool.map(lambda _: _post_big(url, body, rows), range(BIG_REQUESTS)))


def _under_load(url: str, body: bytes, rows: int) -> dict:
    """Probe in turn while BIG_REQUESTS big bodies are in flight; latencies by probe kind."""
    latencies: dict[str, list[float]] = {kind: [] for kind in PROBES}
    with httpx.Client(timeout=300) as client, ThreadPoolExecutor(BIG_REQUESTS) as pool:
        _probe(client, url, "one-row predict")  # the connection is open before the load
        start = time.perf_counter()
        bigs = [pool.submit(_post_big, url, body, rows) for _ in range(BIG_REQUESTS)]
        turn = 0
        while not all(big.done() for big in bigs):
            kind = PROBES[turn % len(PROBES)]
            latencies[kind].append(_probe(client, url, kind))
            turn += 1
        big_seconds = [big.result() for big in bigs]
    return {
        "latencies": latencies,
        "big": big_seconds,
        "wall": time.perf_counter() - start,
    }


def _idle(url: str, runs: int = 60) -> dict[str, list[float]]:
    with httpx.Client(timeout=30) as client:
        return {kind: [_probe(client, url, kind) for _ in range(runs)] for kind in PROBES}


def _rss_growth(pid: int, action: Callable[[], object]) -> float:
    """MiB the server's RSS rose above its level before `action`, at its peak."""
    with RssSampler(pid) as sampler:
        before = sampler.peak
        action()
    return (sampler.peak - before) / 2**20


def measure(source: str | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="mlinfra-bench-big-"))
    try:
        registry, _ = serving_bench._registry(folder)
        port = serving_bench._free_port()
        env = {"PYTHONPATH": source} if source else {}
        command = [sys.executable, "-m", "mlinfra.serving", "--port", str(port),
                   "--workers", "1", "--registry", str(registry), "--env", "bench"]  # fmt: skip
        process = serving_bench._spawn(command, env, cwd=folder)
        url = f"http://127.0.0.1:{port}"
        try:
            serving_bench._wait(url, "/v2/health/ready")
            body, rows = big_body()
            idle = _idle(url)
            rss_idle = psutil.Process(process.pid).memory_info().rss / 2**20
            one = _rss_growth(process.pid, lambda: _post_big(url, body, rows))
            four = _rss_growth(process.pid, lambda: _post_all_at_once(url, body, rows))
            load = _under_load(url, body, rows)
            rss = psutil.Process(process.pid).memory_info().rss / 2**20
        finally:
            serving_bench._stop(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"idle": idle, "load": load, "rss_one": one, "rss_four": four, "rss_end": rss,
            "rss_idle": rss_idle, "body": len(body), "rows": rows}  # fmt: skip


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1000:.1f} / {p99 * 1000:.1f} / {ordered[-1] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a directory holding the mlinfra package to serve from")
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    result = measure(args.source)
    load = result["load"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}, load average "
          f"{os.getloadavg()[0]:.1f}; server: {args.label}; body {result['body'] / 1e6:.1f} MB, "
          f"{result['rows']:,} rows")  # fmt: skip
    print()
    print("| | health live ms (p50 / p99 / max) | health ready ms | one-row predict ms |")
    print("|---|---|---|---|")
    for name, latencies in (("idle", result["idle"]), (f"{BIG_REQUESTS} big in flight",
                                                       load["latencies"])):  # fmt: skip
        print(f"| {name} | " + " | ".join(_ms(latencies[kind]) for kind in PROBES) + " |")
    print()
    print(f"big requests: {min(load['big']):.2f} to {max(load['big']):.2f} s each, all "
          f"{BIG_REQUESTS} done in {load['wall']:.2f} s; probes answered meanwhile: "
          f"{sum(len(v) for v in load['latencies'].values())}")  # fmt: skip
    print(f"server RSS {result['rss_idle']:.0f} MiB idle; growth at its peak: the first big "
          f"body {result['rss_one']:.0f} MiB, then {BIG_REQUESTS} at once "
          f"{result['rss_four']:.0f} MiB more; at the end {result['rss_end']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
