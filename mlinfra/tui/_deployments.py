"""The Deployments view: what the env serves and how traffic splits, live requests/s, latency
and errors per variant (with small charts of the last minutes), and the canary's progress with
the analysis of each step."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from ._format import at, milliseconds, number, percent
from ._source import DeploymentData
from ._table import Row, Rows, RowTable
from ._view import VIEW_CSS, NothingToShowError, View

if TYPE_CHECKING:
    from ..rollout import Rollout
    from ..serving import Deployment

__all__ = ["DeploymentsView"]

TRAFFIC = ("variant", "version", "weight", "req/s", "error rate", "p50 ms", "p99 ms", "requests")
ANALYSIS = (
    "step",
    "weight",
    "verdict",
    "canary req",
    "canary err",
    "canary p99",
    "stable req",
    "stable err",
    "stable p99",
    "psi",
    "at (UTC)",
    "reasons",
)
CHARTED = ("stable", "canary")
MEASURES = {"rps": ("requests", "/s"), "p99": ("p99 latency", "ms")}
POINTS = 60
"""Reads kept per chart: two minutes at the default interval."""


class DeploymentsView(View[DeploymentData]):
    TITLE = "Deployments"
    CSS_PATH = [VIEW_CSS, Path(__file__).with_name("_deployments.tcss")]

    def __init__(self) -> None:
        super().__init__()
        self._series: dict[tuple[str, str], deque[float]] = {}
        self._charted_versions: dict[str, int] = {}

    def compose_content(self) -> ComposeResult:
        yield Static(id="serving", markup=False)
        yield Static(id="traffic-problem", markup=False)
        yield RowTable(TRAFFIC, id="traffic")
        with Horizontal(id="charts"):
            for variant in CHARTED:
                with Vertical(classes="chart", id=f"chart-{variant}"):
                    for measure in MEASURES:
                        yield Label(
                            id=f"{variant}-{measure}-label", classes="chart-label", markup=False
                        )
                        yield Sparkline([], id=f"{variant}-{measure}")
        yield Static(id="progress", markup=False)
        yield RowTable(ANALYSIS, id="analysis")

    def read(self, env: str) -> DeploymentData:
        data = self.source.deployment(env)
        if data.table is None:
            raise NothingToShowError(
                f"nothing is deployed in env {env} yet; run `mlinfra deploy latest --env {env}`"
            )
        return data

    def show(self, data: DeploymentData) -> None:
        table = data.table
        assert table is not None
        self.query_one("#serving", Static).update(_serving(table))
        problem = self.query_one("#traffic-problem", Static)
        problem.update(data.traffic_problem or "")
        problem.display = data.traffic_problem is not None
        self._show_traffic(table, data)
        self.query_one("#progress", Static).update(_progress(data.rollout))
        results = [] if data.rollout is None else _analysis(data.rollout)
        self.query_one("#analysis", RowTable).show(Rows.of(ANALYSIS, results))

    def _show_traffic(self, table: Deployment, data: DeploymentData) -> None:
        weights = _weights(table)
        rows = []
        for variant in data.traffic or []:
            rows.append(
                Row(
                    variant.variant,
                    (
                        variant.variant,
                        f"v{variant.version}",
                        weights.get(variant.variant, "-"),
                        f"{variant.requests_per_second:.1f}",
                        percent(variant.error_rate),
                        milliseconds(variant.p50_ms),
                        milliseconds(variant.p99_ms),
                        str(variant.requests),
                    ),
                    style="red" if variant.error_rate > 0 else "",
                )
            )
            self._chart(
                variant.variant, variant.version, variant.requests_per_second, variant.p99_ms
            )
        if data.traffic is not None:  # a served variant that answered nothing charts a zero
            answered = {variant.variant for variant in data.traffic}
            for name, version in (("stable", table.stable), ("canary", table.canary)):
                if version is not None and name not in answered:
                    self._chart(name, version, 0.0, None)
        if data.traffic == []:
            rows.append(Row("-", ("no requests since the last read", *[""] * (len(TRAFFIC) - 1))))
        if data.traffic is None and data.traffic_problem is None:
            rows.append(Row("-", ("measuring…", *[""] * (len(TRAFFIC) - 1))))
        self.query_one("#traffic", RowTable).show(Rows.of(TRAFFIC, rows))
        self.query_one("#chart-canary").display = table.canary is not None
        self.query_one("#charts").display = data.traffic_problem is None

    def _chart(self, variant: str, version: int, rps: float, p99: float | None) -> None:
        if variant not in CHARTED:
            return
        if self._charted_versions.get(variant) != version:  # another version: a new chart
            self._charted_versions[variant] = version
            for measure in MEASURES:
                self._series[(variant, measure)] = deque(maxlen=POINTS)
        self._series[(variant, "rps")].append(rps)
        self._series[(variant, "p99")].append(p99 or 0.0)
        for measure, (what, unit) in MEASURES.items():
            series = self._series[(variant, measure)]
            label = self.query_one(f"#{variant}-{measure}-label", Label)
            label.update(
                f"{variant} v{version} {what}: {series[-1]:.1f} {unit} now, "
                f"{max(series):.1f} at most in the last {len(series)} reads"
            )
            # one point would fill the chart: it starts with the second
            chart = self.query_one(f"#{variant}-{measure}", Sparkline)
            chart.data = list(series) if len(series) > 1 else []


def _weights(table: Deployment) -> dict[str, str]:
    if table.canary is None:
        return {"stable": "100%"}
    if table.mode == "shadow":
        return {"stable": "100%", "shadow": "copy", "canary": "copy"}
    return {"stable": f"{100 - table.canary_weight}%", "canary": f"{table.canary_weight}%"}


def _serving(table: Deployment) -> str:
    text = f"{table.model}: stable v{table.stable}"
    if table.canary is not None:
        share = "shadow copy" if table.mode == "shadow" else f"{table.canary_weight}%"
        text += f", canary v{table.canary} ({share})"
    if table.sticky_header:
        text += f", sticky on header {table.sticky_header}"
    return f"{text}  ·  generation {table.generation}, since {at(table.updated_at)} UTC"


def _progress(rollout: Rollout | None) -> str:
    if rollout is None:
        return "no rollout yet: `mlinfra deploy VERSION --canary PCT` starts one"
    stable = "nothing" if rollout.stable is None else f"v{rollout.stable}"
    head = f"rollout {rollout.id}: {rollout.model} {stable} -> v{rollout.canary}, {rollout.phase}"
    if not rollout.active:
        when = at(rollout.finished_at)
        return f"last {head} at {when} UTC" + (f" ({rollout.reason})" if rollout.reason else "")
    steps = []
    for index, weight in enumerate(rollout.steps):
        if index < rollout.step:
            steps.append(f"{weight}% ✓")
        elif index == rollout.step:
            steps.append(f"[{weight}%]")
        else:
            steps.append(f"{weight}%")
    every = f"analysed every {number(rollout.interval_seconds)} s"
    return f"{head}, step {rollout.step + 1} of {len(rollout.steps)}: {'  '.join(steps)}  ({every})"


def _analysis(rollout: Rollout) -> list[Row]:
    rows = []
    for index, result in enumerate(rollout.results):
        canary, stable = result.canary, result.stable
        rows.append(
            Row(
                str(index),
                (
                    str(index + 1),
                    f"{result.weight}%",
                    result.verdict,
                    number(canary.get("requests")),
                    percent(canary.get("error_rate")),
                    milliseconds(canary.get("p99_ms")),
                    number(stable.get("requests")),
                    percent(stable.get("error_rate")),
                    milliseconds(stable.get("p99_ms")),
                    number(result.psi),
                    at(result.at),
                    "; ".join(result.reasons) or "-",
                ),
                style={"fail": "red", "inconclusive": "yellow"}.get(result.verdict, ""),
            )
        )
    return rows
