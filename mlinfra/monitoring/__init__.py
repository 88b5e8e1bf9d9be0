"""Watching production: the prediction log, drift detection, alerts and continuous training.

The server writes the prediction log (`PredictionLogWriter`); the monitor process
(`python -m mlinfra.monitoring`, run by the `DriftMonitor` resource) folds it into windows
(`DriftWatch`), compares them with the served version's reference sample (`ReferenceProfile`,
`drift_report`), raises alerts (`AlertStore`) and delivers them (`deliver_due`). `compare_files`
runs the same detectors on two files. Names are imported on first use (PEP 562): the server and
the CLI import this package, and most of them need neither pyarrow nor scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._alerts import (
        AckResult,
        Alert,
        AlertCandidate,
        AlertKind,
        AlertNotFoundError,
        AlertStore,
        RaisedAlert,
        Severity,
        Window,
    )
    from ._log import LogSettings, PredictionLogWriter
    from ._log_files import PredictionLog, RowCounts, record_labels
    from ._monitor import observe_now, read_report, run_monitor
    from ._profile import ReferenceProfile, WindowSummary
    from ._report import DriftReport, DriftSettings, FeatureDrift, Histogram, drift_report
    from ._spec import SPEC_FILE, MonitoringDirectory, MonitorSpec, MonitorStatus
    from ._tables import compare_files, read_table
    from ._watch import DriftWatch
    from ._webhook import DeliveryResult, deliver_due, mask_webhook_url, slack_payload

_WHERE = {
    "_alerts": (
        "AckResult",
        "Alert",
        "AlertCandidate",
        "AlertKind",
        "AlertNotFoundError",
        "AlertStore",
        "RaisedAlert",
        "Severity",
        "Window",
    ),
    "_log": ("LogSettings", "PredictionLogWriter"),
    "_log_files": ("PredictionLog", "RowCounts", "record_labels"),
    "_monitor": ("observe_now", "read_report", "run_monitor"),
    "_profile": ("ReferenceProfile", "WindowSummary"),
    "_report": ("DriftReport", "DriftSettings", "FeatureDrift", "Histogram", "drift_report"),
    "_spec": ("SPEC_FILE", "MonitorSpec", "MonitorStatus", "MonitoringDirectory"),
    "_tables": ("compare_files", "read_table"),
    "_watch": ("DriftWatch",),
    "_webhook": ("DeliveryResult", "deliver_due", "mask_webhook_url", "slack_payload"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "SPEC_FILE",
    "AckResult",
    "Alert",
    "AlertCandidate",
    "AlertKind",
    "AlertNotFoundError",
    "AlertStore",
    "DeliveryResult",
    "DriftReport",
    "DriftSettings",
    "DriftWatch",
    "FeatureDrift",
    "Histogram",
    "LogSettings",
    "MonitorSpec",
    "MonitorStatus",
    "MonitoringDirectory",
    "PredictionLog",
    "PredictionLogWriter",
    "RaisedAlert",
    "ReferenceProfile",
    "RowCounts",
    "Severity",
    "Window",
    "WindowSummary",
    "compare_files",
    "deliver_due",
    "drift_report",
    "mask_webhook_url",
    "observe_now",
    "read_report",
    "read_table",
    "record_labels",
    "run_monitor",
    "slack_payload",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
