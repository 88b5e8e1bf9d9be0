"""Checks on data before training: on its own, and against the schema of the previous version
(and before evaluation: against the schema the evaluated version was trained on).

Errors stop training; warnings are reported and recorded. Each finding names its rule and column:

    rule                severity  when
    empty_data          error     no rows
    length_mismatch     error     features and target differ in length
    duplicate_columns   error     two columns share a name
    target_nulls        error     the target has missing values
    single_class        error     classification with fewer than two classes
    all_null            warning   a column holds no values at all
    missing_column      error     a column of the previous version is gone
    unexpected_column   warning   a column the previous version did not have
    type_changed        error     a column changed kind (int/float, category/string: warning)
    nulls_appeared      error     nulls in over 1% of rows of a column that had none (else warning),
                                  or any when the fitted model checked for cannot take them there
    out_of_range        warning   numbers beyond the previous range by more than its width
    unseen_categories   warning   categories the previous version never saw
    label_classes       warning   classes appeared or disappeared
    label_shift         warning   class shares moved by a total variation over 0.2, or the mean of a
                                  regression target by over 3 standard deviations
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ValidationError
from ._schema import ColumnSchema, DatasetSchema, TargetSchema, infer_schema

if TYPE_CHECKING:
    import pandas

__all__ = ["DataValidationError", "Finding", "ValidationReport", "validate_data"]

_NULL_SHARE_FOR_ERROR = 0.01
_LABEL_SHIFT_TVD = 0.2
_LABEL_SHIFT_STDS = 3.0
_SOFT_KIND_CHANGES = ({"int", "float"}, {"category", "string"})


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Literal["error", "warning"]
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of `validate_data`, with the inferred schema of the data checked."""

    schema: DatasetSchema
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One line naming each error's rule and column."""
        parts = [f"{f.rule} ({f.column})" if f.column else f.rule for f in self.errors]
        return f"data failed {len(parts)} check(s): {', '.join(parts)}"

    def error_details(self) -> str:
        """Each error's rule, column and what was found: for a line with no findings table."""
        return "; ".join(
            f"{f.rule} ({f.column}: {f.message})" if f.column else f"{f.rule} ({f.message})"
            for f in self.errors
        )

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [finding.to_dict() for finding in self.findings]}

    def raise_for_errors(self) -> None:
        if self.errors:
            raise DataValidationError(self)


class DataValidationError(ValidationError):
    """Data failed a hard check; `report` holds every finding."""

    def __init__(self, report: ValidationReport, message: str | None = None) -> None:
        super().__init__(message or f"{report.summary()}; nothing was trained")
        self.report = report


def validate_data(
    features: pandas.DataFrame,
    target: pandas.Series | None = None,
    *,
    reference: DatasetSchema | None = None,
    task: Literal["classification", "regression"] | None = None,
    takes_nulls: Callable[[str], bool] | None = None,
) -> ValidationReport:
    """Infer the data's schema and check it, against `reference` when there is one.

    `takes_nulls(column)` is asked about each column where nulls appeared: a fitted model that
    cannot take them there fails on any share of them, not only on over 1%.
    """
    schema = infer_schema(features, target, task=task)
    findings = list(_own_checks(features, target, schema, task))
    if reference is not None:
        findings += _against_columns(features, schema, reference, takes_nulls)
        if schema.target is not None and reference.target is not None:
            findings += _against_target(schema.target, reference.target)
    return ValidationReport(schema=schema, findings=tuple(findings))


def _error(rule: str, column: str | None, message: str) -> Finding:
    return Finding(rule, "error", column, message)


def _warning(rule: str, column: str | None, message: str) -> Finding:
    return Finding(rule, "warning", column, message)


def _own_checks(
    features: pandas.DataFrame,
    target: pandas.Series | None,
    schema: DatasetSchema,
    task: str | None,
) -> list[Finding]:
    found = []
    if schema.rows == 0:
        found.append(_error("empty_data", None, "the data has no rows"))
    duplicated = sorted({str(n) for n in features.columns[features.columns.duplicated()]})
    found += [
        _error("duplicate_columns", name, "two columns share this name") for name in duplicated
    ]
    found += [
        _warning("all_null", column.name, "every value is missing")
        for column in schema.columns
        if schema.rows and column.null_count == schema.rows
    ]
    if target is None or schema.target is None:
        return found
    name = schema.target.name
    if len(target) != len(features):
        found.append(
            _error(
                "length_mismatch",
                name,
                f"{len(features)} feature rows, {len(target)} target values",
            )
        )
    nulls = int(target.isna().sum())
    if nulls:
        found.append(_error("target_nulls", name, f"{nulls} target values are missing"))
    if task == "classification" and schema.rows and len(schema.target.classes or {}) < 2:
        found.append(_error("single_class", name, "classification needs at least two classes"))
    return found


def _against_columns(
    features: pandas.DataFrame,
    schema: DatasetSchema,
    reference: DatasetSchema,
    takes_nulls: Callable[[str], bool] | None,
) -> list[Finding]:
    found = []
    names = set(schema.names)
    for gone in reference.columns:
        if gone.name not in names:
            found.append(
                _error("missing_column", gone.name, f"column is missing (was {gone.dtype})")
            )
    for position, new in enumerate(schema.columns):
        old = reference.column(new.name)
        if old is None:
            found.append(_warning("unexpected_column", new.name, "column is new in this data"))
            continue
        found += _compare_column(features.iloc[:, position], new, old, schema.rows, takes_nulls)
    return found


def _compare_column(
    series: pandas.Series,
    new: ColumnSchema,
    old: ColumnSchema,
    rows: int,
    takes_nulls: Callable[[str], bool] | None,
) -> list[Finding]:
    found = []
    if new.kind != old.kind:
        soft = {new.kind, old.kind} in _SOFT_KIND_CHANGES
        make = _warning if soft else _error
        found.append(
            make("type_changed", new.name, f"was {old.kind} ({old.dtype}), now {new.kind}")
        )
        if not soft:
            return found
    if old.null_count == 0 and new.null_count:
        share = new.null_count / max(rows, 1)
        message = f"{new.null_count} missing values ({share:.1%} of rows)"
        taken = takes_nulls is None or takes_nulls(new.name)
        if not taken:
            message += "; the model cannot take missing values here"
        make = _error if share > _NULL_SHARE_FOR_ERROR or not taken else _warning
        found.append(make("nulls_appeared", new.name, message))
    if (
        new.kind in ("int", "float")
        and isinstance(old.min, int | float)
        and isinstance(old.max, int | float)
    ):
        low, high = float(old.min), float(old.max)
        width = max(high - low, 1e-9 * max(abs(low), abs(high), 1.0))
        values = series.dropna().astype(float)
        outside = int(((values < low - width) | (values > high + width)).sum())
        if outside:
            found.append(
                _warning(
                    "out_of_range",
                    new.name,
                    f"{outside} values far outside the previous range [{old.min}, {old.max}] "
                    f"(now [{new.min}, {new.max}])",
                )
            )
    if old.categories is not None and new.kind in ("category", "string"):
        seen = set(map(str, old.categories))
        unseen = sorted({str(v) for v in series.dropna().unique()} - seen)
        if unseen:
            shown = ", ".join(unseen[:5]) + (", ..." if len(unseen) > 5 else "")
            found.append(_warning("unseen_categories", new.name, f"{len(unseen)} new: {shown}"))
    return found


def _against_target(new: TargetSchema, old: TargetSchema) -> list[Finding]:
    if new.kind != old.kind and {new.kind, old.kind} not in _SOFT_KIND_CHANGES:
        return [
            _error("type_changed", new.name, f"target was {old.kind} ({old.dtype}), now {new.kind}")
        ]
    if new.classes is not None and old.classes is not None:
        return _class_changes(new.name, new.classes, old.classes)
    if None not in (new.mean, old.mean, old.std) and old.std:
        moved = abs(new.mean - old.mean) / old.std  # type: ignore[operator]
        if moved > _LABEL_SHIFT_STDS:
            return [
                _warning("label_shift", new.name, f"mean moved {moved:.1f} standard deviations")
            ]
    return []


def _class_changes(name: str, new: dict[str, int], old: dict[str, int]) -> list[Finding]:
    found = []
    appeared, vanished = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if appeared or vanished:
        found.append(
            _warning("label_classes", name, f"new classes {appeared}, missing classes {vanished}")
        )
    new_total, old_total = sum(new.values()) or 1, sum(old.values()) or 1
    distance = 0.5 * sum(
        abs(new.get(c, 0) / new_total - old.get(c, 0) / old_total) for c in set(new) | set(old)
    )
    if distance > _LABEL_SHIFT_TVD:
        found.append(
            _warning("label_shift", name, f"class shares moved by total variation {distance:.2f}")
        )
    return found
