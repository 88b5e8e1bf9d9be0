"""Benchmark `mlinfra tui` at scale: 20 envs, 10,000 model versions, 50 live alerts.

    python bench/tui.py                       # builds the fixture in a temp dir, then removes it
    python bench/tui.py --keep /tmp/tui-bench # builds it there once; later runs reuse it

The fixture is a project from `mlinfra init` with 20 envs in mlinfra.toml (embedded engine, a
port each). Three are up: env-00 holds 10,000 versions (registered through `Registry.register`,
a small scikit-learn model), serves v1 with a v2 canary at 10% and gets steady traffic, and its
alert store holds 50 alerts; env-01 serves one version; env-02 is up with nothing deployed.

1. First screen: `mlinfra tui` started in a real pseudo-terminal, timed from exec to the
   Environments view showing the rows it read (not only the "reading…" placeholders), with the
   CPU time it had used by then; for scale, the same app started without the CLI, and a bare
   Textual app drawing one line.
2. Refresh: the app runs in a pseudo-terminal with its default 2 s refresh while another thread
   registers a version and raises an alert every second, so every read finds something new. The
   bench wraps `View._settle` (where a worker's read is applied on the UI thread) and times
   each call; a task on the UI loop also records how late it wakes (any stall: drawing, GIL),
   beside an idle process doing the same (the machine's own delay, which load makes long).
3. Filter: `/` in the Models view, keys typed one at a time; `RowTable.set_filter` timed in the
   app, and each key timed from its write to the pty to the title's new row count on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import pty
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _machine import machine_line

BIN = Path(sys.executable).parent
ENVS = [f"env-{index:02d}" for index in range(20)]
BUSY, SERVING, EMPTY = ENVS[0], ENVS[1], ENVS[2]
VERSIONS = 10_000
ALERTS = 50
ARRIVAL_SECONDS = 2.0
SIZE = (200, 50)  # columns, lines: every column of the Environments view fits
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


# -- the fixture ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlinfra(project: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "mlinfra"), *args],
        cwd=project,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"mlinfra {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def build(project: Path) -> None:
    """The project, its three envs up, versions, deployments and alerts (a few minutes)."""
    project.parent.mkdir(parents=True, exist_ok=True)  # --keep names a folder that may not exist
    mlinfra(project.parent, "init", str(project))
    config = project / "mlinfra.toml"
    text = config.read_text()
    text = re.sub(r"^gates = \[.*?\]$", "gates = []", text, count=1, flags=re.S | re.M)
    text = text[: text.index("[env.dev]")]  # the template's envs make way for twenty
    for name in ENVS:
        text += f'\n[env.{name}]\ntarget = "local"\nengine = "embedded"\n'
        text += f"serving.port = {free_port()}\n"
    config.write_text(text)
    for name in (BUSY, SERVING, EMPTY):
        mlinfra(project, "up", "--env", name, "--yes")
    register(project, BUSY, VERSIONS)
    register(project, SERVING, 1)
    mlinfra(project, "deploy", "1", "--env", SERVING)
    mlinfra(project, "deploy", "1", "--env", BUSY)
    mlinfra(project, "deploy", "2", "--env", BUSY, "--canary", "10", "--interval", "1h")
    with alert_store(project) as store:
        for index in range(ALERTS):
            raise_alert(store, index)


def open_env(project: Path, name: str) -> Any:
    import mlinfra as api

    return api.open_project(project).env(name)


class Versions:
    """Registers versions of a small iris model, each with its own params and metrics."""

    def __init__(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        from mlinfra.data import infer_schema, write_sample
        from mlinfra.registry import dump_model

        iris = load_iris(as_frame=True)
        features = iris.data.set_axis(FEATURES, axis=1)
        model = LogisticRegression(max_iter=500).fit(features, iris.target)
        self.model_bytes = dump_model(model)
        self.schema = infer_schema(features, iris.target).model_dump()
        self.sample = write_sample(features, rows=50)

    def register(self, registry: Any, env: str, number: int) -> None:
        from mlinfra.registry import NewVersion

        score = 0.9 + (number % 97) / 1000
        registry.register(
            NewVersion(
                model="iris",
                task="classification",
                env=env,
                model_bytes=self.model_bytes,
                params={"C": round(0.1 * (1 + number % 50), 2), "max_iter": 500},
                metrics={"f1": score, "accuracy": score + 0.005},
                lineage={
                    "metric": "f1",
                    "git_commit": f"{number * 2654435761 % 16**40:040x}",
                    "git_dirty": False,
                    "data_hash": f"{number % 7:064x}",
                },
                documents={"schema": self.schema},
                reference_sample=self.sample,
            )
        )


def register(project: Path, env: str, count: int) -> None:
    from mlinfra.registry import Registry

    versions = Versions()
    with Registry.open(open_env(project, env).outputs().registry_path) as registry:
        for number in range(count):
            versions.register(registry, env, number)


@contextmanager
def alert_store(project: Path) -> Any:
    from mlinfra.monitoring import AlertStore

    directory = open_env(project, BUSY).outputs().monitoring_dir
    with AlertStore(directory / "alerts.db") as store:
        yield store


def raise_alert(store: Any, index: int) -> None:
    """A distinct alert (no cool-down groups it with another)."""
    from mlinfra.monitoring import AlertCandidate, Window

    now = time.time()
    feature = FEATURES[index % len(FEATURES)]
    store.raise_alert(
        AlertCandidate(
            env=BUSY,
            severity="critical" if index % 5 == 0 else "warning",
            kind="feature_drift",
            feature=feature,
            statistic="psi",
            value=0.2 + index / 100,
            threshold=0.2,
            window=Window(label="1h", start=now - 3600, end=now),
            message=f"{feature} drifted: PSI {0.2 + index / 100:.2f} above 0.2 (bench {index})",
        ),
        now=now,
        cooldown_seconds=0,
    )


# -- a pseudo-terminal ----------------------------------------------------------------------


class Terminal:
    """A command in a pseudo-terminal of SIZE: keys in, screen text (escapes removed) out."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.leader, follower = pty.openpty()
        os.set_blocking(self.leader, False)
        columns, lines = SIZE
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower,
            start_new_session=True,
        )  # fmt: skip
        os.close(follower)
        self.text = ""

    def read(self, timeout: float = 0.005) -> None:
        while select.select([self.leader], [], [], timeout)[0]:
            try:
                chunk = os.read(self.leader, 1 << 16)
            except OSError:  # the process is gone
                return
            if not chunk:
                return
            self.text += ESCAPES.sub("", chunk.decode(errors="replace"))
            timeout = 0

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 60) -> float:
        """perf_counter() when `pattern` (a regex) first shows after offset `since`."""
        found = re.compile(pattern)
        deadline = time.perf_counter() + timeout
        while not found.search(self.text, since):
            if time.perf_counter() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{pattern!r} never shown; the screen:\n{self.text[-3000:]}")
            self.read()
        return time.perf_counter()

    def press(self, keys: str) -> int:
        """Write `keys` (at `pressed`); the offset of the screen text where their effect shows."""
        self.read(0)
        os.write(self.leader, keys.encode())
        self.pressed = time.perf_counter()
        return len(self.text)

    def quit(self) -> None:
        self.press("q")
        deadline = time.monotonic() + 20
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read(0.05)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.leader)


# -- 1. first screen ------------------------------------------------------------------------

READ_ROWS = r"succeeded.*\n(.*\n)*.*not up"  # env-00's last update, then an env that is not up
ONE_LINE_APP = """
from textual.app import App
from textual.widgets import Static

class One(App):
    def compose(self):
        yield Static("drawn by a bare Textual app")

One().run()
"""


def launches() -> list[tuple[str, list[str], str]]:
    """What is started, and what it shows once its first screen is drawn: `mlinfra tui`, then
    where its time goes (the app without the CLI, a bare Textual app)."""
    run = f"from mlinfra.tui import run; run(env={BUSY!r})"
    return [
        ("`mlinfra tui`", [str(BIN / "mlinfra"), "tui", "--env", BUSY], READ_ROWS),
        ("for scale: `mlinfra.tui.run()` alone, no CLI", [sys.executable, "-c", run], READ_ROWS),
        ("for scale: a bare Textual app drawing one line", [sys.executable, "-c", ONE_LINE_APP],
         "drawn by a bare"),
    ]  # fmt: skip


def first_screen(project: Path, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per launch: seconds from exec to its first screen with data, and the CPU seconds the
    process had used by then (which the machine's other load changes less). Launches take
    turns, so that a change in load touches them alike."""
    import psutil

    measured: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for _ in range(runs):
        for name, command, shown in launches():
            terminal = Terminal(command, project)
            try:
                seconds = terminal.wait_for(shown) - terminal.started
                used = psutil.Process(terminal.process.pid).cpu_times()
            finally:
                terminal.quit()
            measured[name][0].append(seconds)
            measured[name][1].append(used.user + used.system)
    return measured


# -- 2 and 3. the instrumented app, in its own process in the pty ---------------------------


def instrumented(project: Path, out: Path) -> None:
    """Run the app with timers around the UI-thread work; write what they measured to `out`."""
    import mlinfra as api
    from mlinfra.tui import MlinfraApp, Source
    from mlinfra.tui._table import RowTable
    from mlinfra.tui._view import View

    settles: list[tuple[str, float, bool]] = []
    filters: list[tuple[str, int, float]] = []
    stalls: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # on arrival, then steady

    settle = View._settle

    def timed_settle(view: View[Any], env: str, data: Any, problem: Any, unchanged: bool) -> None:
        started = time.perf_counter()
        settle(view, env, data, problem, unchanged)
        settles.append((type(view).__name__, time.perf_counter() - started, not unchanged))

    set_filter = RowTable.set_filter

    def timed_filter(table: RowTable, text: str) -> None:
        started = time.perf_counter()
        set_filter(table, text)
        filters.append((text, len(table.rows.rows), time.perf_counter() - started))

    View._settle = timed_settle  # type: ignore[method-assign]
    RowTable.set_filter = timed_filter  # type: ignore[method-assign]

    class Timed(MlinfraApp):
        def on_mount(self) -> None:
            super().on_mount()
            self.run_worker(self._watch_stalls())

        async def _watch_stalls(self) -> None:
            """How much later than asked the UI loop wakes this task: the longest stall seen
            in each view, in its first seconds (imported, composed, first read) and after."""
            mode, arrived = self.current_mode, time.perf_counter()
            while True:
                started = time.perf_counter()
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                if self.current_mode != mode:
                    mode, arrived = self.current_mode, now
                seen = stalls[mode]
                steady = int(now - arrived > ARRIVAL_SECONDS)
                seen[steady] = max(seen[steady], now - started - 0.005)

    Timed(Source(api.open_project(project)), env=BUSY).run()
    out.write_text(json.dumps({"settles": settles, "filters": filters, "stalls": stalls}))


@contextmanager
def churn(project: Path) -> Any:
    """A version registered and an alert raised every second, traffic at about 20 requests/s."""
    from mlinfra.registry import Registry

    stop = threading.Event()
    url = open_env(project, BUSY).outputs().serving_url

    def change() -> None:
        versions, number = Versions(), VERSIONS
        registry_path = open_env(project, BUSY).outputs().registry_path
        with Registry.open(registry_path) as registry, alert_store(project) as store:
            while not stop.wait(1.0):
                versions.register(registry, BUSY, number)
                raise_alert(store, number)
                number += 1

    def traffic() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(20 * 600):  # ten minutes at most
                if stop.wait(0.05):
                    return
                client.post(f"{url}/invocations", json={"instances": [ROW]})

    threads = [threading.Thread(target=change), threading.Thread(target=traffic)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def jump(terminal: Terminal, view: str) -> None:
    since = terminal.press(":")
    terminal.wait_for("view or env:", since)
    since = terminal.press(f"{view}\r")
    terminal.wait_for(f"env {BUSY}  ·  {view.capitalize()}", since)


FILTER_KEYS = ["v", "1", "2", "3", "\x7f", "\x7f", "\x7f", "\x7f", "c", "h", "a", "m", "p"]


IDLE = """
import sys, time
worst, end = 0.0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    started = time.perf_counter()
    time.sleep(0.005)
    worst = max(worst, time.perf_counter() - started - 0.005)
print(worst)
"""


def interactive(
    project: Path, seconds_per_view: float
) -> tuple[dict[str, Any], list[float], float]:
    """Refresh every view under churn, then filter the Models view: the app's own timings, each
    filter key's latency to the screen, and the longest stall an idle process saw meanwhile."""
    out = project / "tui-timings.json"
    command = [sys.executable, __file__, "--instrumented", str(project), str(out)]
    terminal = Terminal(command, project)
    keys: list[float] = []
    idle = subprocess.Popen(
        [sys.executable, "-c", IDLE, str(6 * seconds_per_view)], stdout=subprocess.PIPE, text=True
    )
    try:
        terminal.wait_for(READ_ROWS)
        with churn(project):
            time.sleep(seconds_per_view)
            for view in ("resources", "models", "deployments", "alerts", "history"):
                jump(terminal, view)
                time.sleep(seconds_per_view)
        jump(terminal, "models")
        time.sleep(3)  # the read after the last version the churn registered
        terminal.wait_for("filter: rows containing", terminal.press("/"))  # focused: keys go in
        typed = ""
        for key in FILTER_KEYS:
            typed = typed[:-1] if key == "\x7f" else typed + key
            since = terminal.press(key)
            shown = re.escape(f"filter {typed!r}: ") if typed else r"  ·  Models\s"
            keys.append(terminal.wait_for(shown, since) - terminal.pressed)
        terminal.wait_for("q quit", terminal.press("\r"))  # filter kept; the table has the keys
    finally:
        terminal.quit()
        machine_stall = float(idle.communicate()[0])
    if not out.exists():
        raise RuntimeError(f"the app wrote no timings; its screen:\n{terminal.text[-3000:]}")
    return json.loads(out.read_text()), keys, machine_stall


# -- the report -----------------------------------------------------------------------------

VIEWS = {
    "EnvironmentsView": "environments (20 envs)",
    "ResourcesView": "resources",
    "ModelsView": f"models ({VERSIONS:,}+ versions)",
    "DeploymentsView": "deployments (canary, live traffic)",
    "AlertsView": f"alerts ({ALERTS}+)",
    "HistoryView": "history",
}


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.1f} / {max(values) * 1000:.1f} ms"


def report(
    first: dict[str, tuple[list[float], list[float]]],
    timings: dict[str, Any],
    keys: list[float],
    machine_stall: float,
) -> list[tuple[str, ...]]:
    rows = []
    for name, (seconds, cpu) in first.items():
        target = "< 1 s" if name == "`mlinfra tui`" else "-"
        rows.append(
            (
                f"first screen with data, whole process in a pty: {name}, {len(seconds)} runs",
                target,
                f"{statistics.median(seconds):.2f} / {max(seconds):.2f} s",
            )
        )
        rows.append(("same, CPU time the process had used by then", "-",
                     f"{statistics.median(cpu):.2f} / {max(cpu):.2f} s"))  # fmt: skip
    changed: dict[str, list[float]] = defaultdict(list)
    unchanged: dict[str, list[float]] = defaultdict(list)
    for view, seconds, new in timings["settles"]:
        (changed if new else unchanged)[view].append(seconds)
    for view, label in VIEWS.items():
        rows.append((f"refresh on the UI thread: {label}, {len(changed[view])} reads shown",
                     "< 50 ms", ms(changed[view])))  # fmt: skip
        if unchanged[view]:
            rows.append((f"same, {len(unchanged[view])} reads that found nothing new", "< 50 ms",
                         ms(unchanged[view])))  # fmt: skip
    for when, index in ((f"first {ARRIVAL_SECONDS:g} s in a view", 0), ("after", 1)):
        stalls = ", ".join(
            f"{mode} {seen[index] * 1000:.0f}" for mode, seen in timings["stalls"].items()
        )
        rows.append((f"longest UI-loop stall, any cause (drawing, GIL), {when}", "-",
                     f"{stalls} ms"))  # fmt: skip
    rows.append(("same meanwhile in an idle process (the machine's own scheduling delay)", "-",
                 f"{machine_stall * 1000:.0f} ms"))  # fmt: skip
    filtered = [seconds for _, total, seconds in timings["filters"] if total >= VERSIONS]
    rows.append((f"filter {VERSIONS:,}+ rows: text set to table updated ({len(filtered)} keys)",
                 "< 100 ms", ms(filtered)))  # fmt: skip
    rows.append(("filter: key written to the pty to the new row count on screen", "-", ms(keys)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the fixture here, or reuse it")
    parser.add_argument("--runs", type=int, default=9, help="first-screen launches")
    parser.add_argument("--seconds-per-view", type=float, default=12.0)
    parser.add_argument("--instrumented", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("mlinfra.monitoring").disabled = True  # the alerts it raises, said once each
    if args.instrumented:
        instrumented(*args.instrumented)
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="mlinfra-bench-tui-"))
    project = folder / "project"
    try:
        if not (project / "mlinfra.toml").exists():
            started = time.perf_counter()
            build(project)
            print(f"fixture built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        load = os.getloadavg()[0]
        first = first_screen(project, args.runs)
        timings, keys, machine_stall = interactive(project, args.seconds_per_view)
    finally:
        if args.keep is None:
            for name in (BUSY, SERVING, EMPTY):
                mlinfra(project, "destroy", "--env", name, "--yes")
            shutil.rmtree(folder)
    print(machine_line(load) + "\n")
    print("| metric | target | measured (median / max) |\n| --- | --- | --- |")
    for row in report(first, timings, keys, machine_stall):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
