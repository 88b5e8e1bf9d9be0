"""Loader output as DataFrames, their content hash, and the samples stored with a version."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ._schema import DatasetSchema

if TYPE_CHECKING:
    import pandas

__all__ = ["as_frame", "as_series", "data_hash", "read_sample", "write_sample"]

SAMPLE_ROWS = 1000


def as_frame(features: Any) -> pandas.DataFrame:
    """Features as a DataFrame; arrays get columns x0, x1, ... as scikit-learn names them."""
    import pandas as pd

    if isinstance(features, pd.DataFrame):
        return features
    frame = pd.DataFrame(features)
    if all(isinstance(name, int) for name in frame.columns):
        frame.columns = [f"x{i}" for i in range(frame.shape[1])]
    return frame


def as_series(target: Any, *, index: pandas.Index | None = None) -> pandas.Series:
    import pandas as pd

    if isinstance(target, pd.DataFrame) and target.shape[1] == 1:
        return target.iloc[:, 0]
    if isinstance(target, pd.Series):
        return target
    return pd.Series(target, name="target", index=index)


def data_hash(features: pandas.DataFrame, target: pandas.Series | None = None) -> str:
    """sha256 of the exact data: column names, dtypes and every value in row order."""
    import pandas as pd

    digest = hashlib.sha256()
    for part in (features, target):
        if part is None:
            continue
        frame = part.to_frame() if isinstance(part, pd.Series) else part
        layout = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
        digest.update(json.dumps(layout).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def write_sample(features: pandas.DataFrame, *, rows: int = SAMPLE_ROWS, seed: int = 0) -> bytes:
    """A seeded sample of at most `rows` rows, as JSON (columns and values, no index)."""
    sample = features.sample(n=min(rows, len(features)), random_state=seed)
    return sample.to_json(
        orient="split", index=False, date_format="iso", double_precision=15
    ).encode()


def read_sample(data: bytes, schema: DatasetSchema) -> pandas.DataFrame:
    """A sample written by `write_sample`, with the dtypes recorded in `schema`."""
    import pandas as pd

    parsed = json.loads(data)
    frame = pd.DataFrame(parsed["data"], columns=parsed["columns"])
    for column in schema.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        if column.kind == "datetime":
            frame[column.name] = pd.to_datetime(values, format="ISO8601").astype(column.dtype)
        elif column.kind == "category":
            frame[column.name] = values.astype(pd.CategoricalDtype(column.categories))
        else:
            frame[column.name] = values.astype(column.dtype)
    return frame
