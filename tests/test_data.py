"""Schema inference, validation, hashing and samples on real pandas frames, many from hypothesis."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlinfra.data import (
    DatasetSchema,
    DataValidationError,
    data_hash,
    infer_schema,
    read_sample,
    validate_data,
    write_sample,
)

KINDS = ("int", "float", "bool", "category", "string", "datetime")
REFERENCE_RULES = {
    "missing_column",
    "unexpected_column",
    "type_changed",
    "nulls_appeared",
    "out_of_range",
    "unseen_categories",
    "label_classes",
    "label_shift",
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def frames(draw: st.DrawFn, min_rows: int = 0) -> pd.DataFrame:
    """DataFrames with 1-5 columns of every kind mlinfra knows, some with missing values."""
    rows = draw(st.integers(min_rows, 25))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
    columns = {}
    for i, kind in enumerate(kinds):
        nulls = draw(st.booleans()) and kind in ("float", "string")
        columns[f"c{i}_{kind}"] = draw(_column(kind, rows, nulls))
    return pd.DataFrame(columns)


def _column(kind: str, rows: int, nulls: bool) -> st.SearchStrategy[pd.Series]:
    def listed(values: st.SearchStrategy) -> st.SearchStrategy[list]:
        item = st.one_of(st.none(), values) if nulls else values
        return st.lists(item, min_size=rows, max_size=rows)

    if kind == "int":
        return listed(st.integers(-(10**9), 10**9)).map(lambda v: pd.Series(v, dtype="int64"))
    if kind == "float":
        finite = st.floats(-1e9, 1e9, allow_nan=False)
        return listed(finite).map(lambda v: pd.Series(v, dtype="float64"))
    if kind == "bool":
        return listed(st.booleans()).map(lambda v: pd.Series(v, dtype="bool"))
    if kind == "category":
        return listed(st.sampled_from(["red", "green", "blue"])).map(
            lambda v: pd.Series(v, dtype=pd.CategoricalDtype(["red", "green", "blue"]))
        )
    if kind == "string":
        return listed(st.text("abcxyz", min_size=1, max_size=4)).map(pd.Series)
    days = st.integers(0, 20_000).map(lambda d: pd.Timestamp("1990-01-01") + pd.Timedelta(days=d))
    return listed(days).map(lambda v: pd.Series(v, dtype="datetime64[ns]"))


@SETTINGS
@given(frames())
def test_schema_is_plain_json_and_round_trips(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame)
    text = json.dumps(schema.model_dump())
    assert DatasetSchema.model_validate(json.loads(text)) == schema
    assert schema.names == list(frame.columns)
    for column in schema.columns:
        assert column.null_count == int(frame[column.name].isna().sum())
        assert column.kind == column.name.split("_", 1)[1]


@SETTINGS
@given(frames())
def test_data_passes_against_its_own_schema(frame: pd.DataFrame) -> None:
    report = validate_data(frame, reference=infer_schema(frame))
    assert not [f for f in report.findings if f.rule in REFERENCE_RULES]


@SETTINGS
@given(frames(min_rows=1), st.data())
def test_a_dropped_column_is_an_error_naming_it(frame: pd.DataFrame, data: st.DataObject) -> None:
    dropped = data.draw(st.sampled_from(list(frame.columns)))
    report = validate_data(frame.drop(columns=[dropped]), reference=infer_schema(frame))
    assert [(f.rule, f.column) for f in report.errors] == [("missing_column", dropped)]
    with pytest.raises(DataValidationError, match=f"missing_column \\({dropped}\\)"):
        report.raise_for_errors()


@SETTINGS
@given(frames(min_rows=1))
def test_every_cell_counts_in_the_data_hash(frame: pd.DataFrame) -> None:
    assert data_hash(frame) == data_hash(frame.copy())
    changed = frame.copy()
    column = changed.columns[0]
    original = changed[column].iloc[0]
    replacement = {
        "int": 7 if original != 7 else 8,
        "float": 0.5 if original != 0.5 else 1.5,
        "bool": not original,
        "category": "red" if original != "red" else "blue",
        "string": "zzzzz",
        "datetime": pd.Timestamp("2100-01-01"),
    }[column.split("_", 1)[1]]
    changed.loc[changed.index[0], column] = replacement
    assert data_hash(changed) != data_hash(frame)
    assert data_hash(frame.rename(columns={column: "other"})) != data_hash(frame)


@SETTINGS
@given(frames(min_rows=1), st.integers(1, 30))
def test_reference_sample_keeps_values_and_dtypes(frame: pd.DataFrame, rows: int) -> None:
    schema = infer_schema(frame)
    back = read_sample(write_sample(frame, rows=rows, seed=3), schema)
    expected = frame.sample(n=min(rows, len(frame)), random_state=3).reset_index(drop=True)
    assert list(back.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(back, expected, check_exact=False, rtol=1e-12)


def test_kind_change_is_an_error_and_int_to_float_a_warning() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [1, 2, 3]})
    changed = frame.assign(a=["x", "y", "z"], b=[1.5, 2.5, 3.5])
    report = validate_data(changed, reference=infer_schema(frame))
    found = {(f.rule, f.column, f.severity) for f in report.findings}
    assert found == {("type_changed", "a", "error"), ("type_changed", "b", "warning")}


def test_nulls_where_there_were_none_are_an_error_above_one_percent() -> None:
    frame = pd.DataFrame({"a": np.arange(200, dtype=float)})
    few = frame.copy()
    few.loc[0, "a"] = np.nan
    many = frame.copy()
    many.loc[:9, "a"] = np.nan
    reference = infer_schema(frame)
    assert [f.severity for f in validate_data(few, reference=reference).findings] == ["warning"]
    (error,) = validate_data(many, reference=reference).errors
    assert (error.rule, error.column) == ("nulls_appeared", "a")
    assert "10 missing values (5.0% of rows)" in error.message


def test_values_far_outside_range_and_new_categories_are_warnings() -> None:
    frame = pd.DataFrame({"x": [0.0, 10.0, 5.0], "colour": ["red", "blue", "red"]})
    later = pd.DataFrame({"x": [0.0, 25.0, 10.5], "colour": ["red", "mauve", "teal"]})
    report = validate_data(later, reference=infer_schema(frame))
    assert report.ok
    by_rule = {f.rule: f for f in report.warnings}
    assert by_rule["out_of_range"].column == "x"
    assert "1 values far outside" in by_rule["out_of_range"].message  # 10.5 is within a width
    assert "2 new: mauve, teal" in by_rule["unseen_categories"].message


def test_label_changes_are_reported() -> None:
    features = pd.DataFrame({"x": range(100)})
    before = pd.Series(["a"] * 50 + ["b"] * 50, name="y")
    after = pd.Series(["a"] * 90 + ["c"] * 10, name="y")
    reference = infer_schema(features, before, task="classification")
    report = validate_data(features, after, reference=reference, task="classification")
    rules = {f.rule for f in report.warnings}
    assert rules == {"label_classes", "label_shift"}


def test_regression_target_mean_shift_is_reported() -> None:
    features = pd.DataFrame({"x": range(100)})
    before = pd.Series(np.linspace(0, 1, 100), name="price")
    reference = infer_schema(features, before, task="regression")
    report = validate_data(features, before + 10, reference=reference, task="regression")
    assert [(f.rule, f.column) for f in report.warnings] == [("label_shift", "price")]


@pytest.mark.parametrize(
    ("features", "target", "rule"),
    [
        (pd.DataFrame({"x": []}), pd.Series([], dtype=int), "empty_data"),
        (pd.DataFrame({"x": [1, 2]}), pd.Series([1, 2, 3]), "length_mismatch"),
        (pd.DataFrame({"x": [1, 2]}), pd.Series([1.0, None]), "target_nulls"),
        (pd.DataFrame({"x": [1, 2]}), pd.Series([1, 1]), "single_class"),
        (pd.DataFrame([[1, 2]], columns=["x", "x"]), pd.Series([1]), "duplicate_columns"),
    ],
)
def test_data_that_cannot_train_is_refused(
    features: pd.DataFrame, target: pd.Series, rule: str
) -> None:
    report = validate_data(features, target, task="classification")
    assert rule in {f.rule for f in report.errors}
