"""The Alerts view: the env's drift alerts, newest first (acknowledged ones dimmed), and under
them the highlighted alert's feature as the monitor's last check saw it: reference against
current. `K` acknowledges the alert under the cursor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult

from ._detail import Line
from ._format import at, number
from ._histogram import HistogramChart, Histograms
from ._table import Row, Rows, RowTable
from ._view import VIEW_CSS, NothingToShowError, View

if TYPE_CHECKING:
    from ..monitoring import Alert

__all__ = ["AlertsView"]

COLUMNS = (
    "id",
    "severity",
    "kind",
    "feature",
    "count",
    "last (UTC)",
    "acknowledged",
    "statistic",
    "value",
    "threshold",
    "message",
)


@dataclass(frozen=True)
class AlertsShown:
    rows: Rows
    alerts: dict[str, Alert]
    histograms: dict[str, Histograms | str]
    """By feature (or "prediction"): what the monitor's last check drew, or why nothing."""
    checked_at: str


class AlertsView(View[AlertsShown]):
    TITLE = "Alerts"
    CSS_PATH = [VIEW_CSS, Path(__file__).with_name("_alerts.tcss")]

    def __init__(self) -> None:
        super().__init__()
        self._shown: AlertsShown | None = None

    def compose_content(self) -> ComposeResult:
        yield RowTable(COLUMNS, id="alerts")
        yield HistogramChart(id="histogram")

    @property
    def selected_alert(self) -> Alert | None:
        """The alert under the cursor, which `K` acknowledges."""
        row = self.query_one(RowTable).cursor_row
        if row is None or self._shown is None:
            return None
        return self._shown.alerts.get(row.key)

    def read(self, env: str) -> AlertsShown:
        data = self.source.alerts(env)
        if not data.alerts:
            raise NothingToShowError(f"no drift alerts in env {env}: the monitor raised none")
        report = data.report or {}
        return self.derived(
            data,
            lambda: AlertsShown(
                rows=Rows.of(COLUMNS, [_row(alert) for alert in data.alerts]),
                alerts={str(alert.id): alert for alert in data.alerts},
                histograms=_histograms(report.get("report")),
                checked_at=at(report.get("checked_at")),
            ),
        )

    def show(self, data: AlertsShown) -> None:
        self._shown = data
        self.query_one(RowTable).show(data.rows)
        self._draw()

    @on(RowTable.Selected, "#alerts")
    def _open(self) -> None:
        alert = self.selected_alert
        if alert is not None:
            self.tui.open_detail(
                f"Alert {alert.id}",
                ("section", "name", "value"),
                lambda: _detail(alert),
            )

    @on(RowTable.Highlighted, "#alerts")
    def _draw(self) -> None:
        chart = self.query_one(HistogramChart)
        alert = self.selected_alert
        if alert is None or self._shown is None:
            chart.show("")
            return
        subject = alert.feature or ("prediction" if alert.kind == "prediction_drift" else None)
        if subject is None:
            chart.show(f"alert {alert.id} is about the whole model ({alert.kind}): no histogram")
            return
        found = self._shown.histograms.get(subject)
        if found is None:
            chart.show(
                f"the monitor's last check ({self._shown.checked_at} UTC) has no histogram "
                f"of {subject}"
            )
            return
        chart.show(found)


def _row(alert: Alert) -> Row:
    ack = alert.acknowledgement
    return Row(
        str(alert.id),
        (
            str(alert.id),
            alert.severity,
            alert.kind,
            alert.feature or "-",
            str(alert.count),
            at(alert.last_at),
            "-" if ack is None else f"{ack.by} {at(ack.at)}",
            alert.statistic,
            number(alert.value),
            number(alert.threshold),
            alert.message,
        ),
        style="dim" if ack is not None else "red" if alert.severity == "critical" else "",
    )


def _detail(alert: Alert) -> list[Line]:
    ack, delivery, window = alert.acknowledgement, alert.delivery, alert.window
    return [
        ("alert", "message", alert.message),
        ("alert", "severity", alert.severity),
        ("alert", "kind", alert.kind),
        ("alert", "feature", alert.feature or "-"),
        ("alert", "measured", f"{alert.statistic} = {number(alert.value)}"),
        ("alert", "threshold", number(alert.threshold)),
        ("alert", "occurrences", f"{alert.count}, first {at(alert.first_at)} UTC"),
        ("alert", "last", f"{at(alert.last_at)} UTC"),
        ("alert", "window", f"{window.label}: {at(window.start)} to {at(window.end)} UTC"),
        ("alert", "acknowledged", "-" if ack is None else f"by {ack.by} at {at(ack.at)} UTC"),
        ("delivery", "status", delivery.status),
        ("delivery", "attempts", str(delivery.attempts)),
        ("delivery", "delivered", at(delivery.delivered_at)),
        ("delivery", "next attempt", at(delivery.next_attempt_at)),
        ("delivery", "last error", delivery.last_error or "-"),
    ]


def _histograms(report: dict[str, Any] | None) -> dict[str, Histograms | str]:
    if not report:
        return {}
    features = [*report.get("features", [])]
    if report.get("prediction"):
        features.append({**report["prediction"], "feature": "prediction"})
    drawn: dict[str, Histograms | str] = {}
    for feature in features:
        histogram = feature.get("histogram")
        name = feature["feature"]
        if not histogram:
            drawn[name] = f"{name}: {feature.get('status', 'not tested')}, no histogram"
            continue
        if histogram.get("edges"):
            edges = histogram["edges"]
            caption = f"{len(histogram['reference'])} bins from {edges[0]:.4g} to {edges[-1]:.4g}"
        else:
            caption = "categories: " + ", ".join(histogram.get("categories") or [])
        drawn[name] = Histograms(
            feature=f"{name} ({feature.get('status', '')})",
            reference=histogram["reference"],
            current=histogram["current"],
            caption=caption,
        )
    return drawn
