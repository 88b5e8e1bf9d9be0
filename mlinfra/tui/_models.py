"""The Models view: the env's registered versions, newest first, with the env's aliases;
Enter shows a version (lineage, params, metrics, gate results), `c` on two versions compares
them side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from ._detail import Line
from ._format import at, number, short
from ._source import ModelsData
from ._table import Row, Rows, RowTable
from ._view import NothingToShowError, View

if TYPE_CHECKING:
    from ..registry import VersionSummary
    from ._source import Source, VersionDetail

__all__ = ["ModelsView"]

COLUMNS = (
    "model",
    "version",
    "created (UTC)",
    "by",
    "aliases",
    "metric",
    "score",
    "commit",
    "data hash",
    "tags",
)


class ModelsView(View[Rows]):
    TITLE = "Models"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "compare", "compare"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._marked: str | None = None
        self._rows = VersionRows()

    def compose_content(self) -> ComposeResult:
        yield RowTable(COLUMNS, id="versions")

    def read(self, env: str) -> Rows:
        data = self.source.models(env)
        if not data.versions:
            raise NothingToShowError(
                f"no versions registered in env {env} yet; run `mlinfra train`"
            )
        return self.derived(data, lambda: Rows.of(COLUMNS, self._rows.of(data)))

    def show(self, data: Rows) -> None:
        self.query_one(RowTable).show(data)

    @on(RowTable.Selected, "#versions")
    def _open(self, event: RowTable.Selected) -> None:
        model, version = _ref(event.row.key)
        env, source = self.tui.env_name, self.source
        assert env is not None
        self.tui.open_detail(
            f"{model} v{version}",
            ("section", "name", "value"),
            lambda: _detail(source.version_detail(env, model, version)),
        )

    def action_compare(self) -> None:
        """Mark the version under the cursor; on a second version, compare the two."""
        row = self.query_one(RowTable).cursor_row
        if row is None:
            return
        if self._marked is None or self._marked == row.key:
            self._marked = None if self._marked == row.key else row.key
            if self._marked is not None:
                self.notify(f"{row.key} marked: press c on another version to compare")
            return
        (model, left), (other, right) = _ref(self._marked), _ref(row.key)
        if other != model:
            self.notify(
                f"compare versions of one model: {self._marked} is {model}", severity="warning"
            )
            return
        self._marked = None
        env, source = self.tui.env_name, self.source
        assert env is not None
        self.tui.open_detail(
            f"{model} v{left} vs v{right}: what differs",
            ("section", "name", f"v{left}", f"v{right}"),
            lambda: _comparison(source, env, model, left, right),
        )


class VersionRows:
    """Each version's row, made again only when the version or its aliases changed: a read
    that finds one new version among 10,000 makes one row, not 10,000 (touched by the read
    worker only)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, int], tuple[VersionSummary, list[str], Row]] = {}

    def of(self, data: ModelsData) -> list[Row]:
        made, rows = {}, []
        for version in data.versions:
            key = (version.model, version.version)
            named = data.aliases.get(key, [])
            before = self._made.get(key)
            if before is not None and before[0] == version and before[1] == named:
                row = before[2]
            else:
                row = _row(version, named)
            made[key] = (version, named, row)
            rows.append(row)
        self._made = made
        return rows


def _row(version: VersionSummary, named: list[str]) -> Row:
    return Row(
        f"{version.model}:v{version.version}",
        (
            version.model,
            f"v{version.version}",
            at(version.created_at),
            version.created_by,
            ", ".join(named),
            version.metric or "-",
            number(version.score),
            short(version.git_commit, 10) + ("+dirty" if version.git_dirty else ""),
            short(version.data_hash),
            ", ".join(f"{key}={value}" for key, value in version.tags.items()),
        ),
        style="bold" if "champion" in named else "",
    )


def _ref(key: str) -> tuple[str, int]:
    model, _, version = key.rpartition(":v")
    return model, int(version)


def _detail(detail: VersionDetail) -> list[Line]:
    version = detail.version
    lines: list[Line] = [
        ("version", "created (UTC)", at(version.created_at)),
        ("version", "created by", version.created_by),
        ("version", "registered in", version.env),
        ("version", "task", version.task),
        ("version", "aliases", ", ".join(detail.aliases) or "-"),
        ("version", "artifact", f"sha256 {version.artifact_sha256}"),
    ]
    lines += [("lineage", key, number(value)) for key, value in sorted(version.lineage.items())]
    lines += [("param", key, number(value)) for key, value in sorted(version.params.items())]
    lines += [("metric", key, number(value)) for key, value in sorted(version.metrics.items())]
    from ..evaluation import EVALUATION_KIND

    evaluations = [report for report in detail.reports if report.kind == EVALUATION_KIND]
    if evaluations:
        latest = evaluations[-1]
        for gate in latest.body.get("gates", []):
            lines.append((f"gate (report {latest.id})", gate["gate"], _gate(gate)))
    else:
        lines.append(("gate", "-", "not evaluated in this env yet: `mlinfra evaluate`"))
    for report in detail.reports:
        verdict = "passed" if report.passed else "FAILED"
        lines.append(("report", f"{report.id} {report.kind}", f"{verdict} {at(report.created_at)}"))
    return lines


def _gate(gate: dict[str, object]) -> str:
    detail = gate.get("detail")
    return f"{gate['status']}: {detail}" if detail else str(gate["status"])


def _comparison(source: Source, env: str, model: str, left: int, right: int) -> list[Line]:
    compared = source.compare(env, model, left, right)
    lines: list[Line] = []
    for section, differences in (
        ("metric", compared.metrics),
        ("param", compared.params),
        ("lineage", compared.lineage),
    ):
        lines += [(section, key, number(a), number(b)) for key, (a, b) in differences.items()]
        if not differences:
            lines.append((section, "(all the same)", "", ""))
    return lines
