"""Data checks before training: schema inference, validation against the previous version, hashing.

    from mlinfra.data import validate_data

    report = validate_data(X, y, reference=previous_schema, task="classification")
    report.raise_for_errors()           # DataValidationError naming each rule and column
    report.schema.model_dump()          # the JSON stored with the model version

pandas is imported when a function needs it, not with this package.
"""

from ._frames import as_frame, as_series, data_hash, read_sample, write_sample
from ._schema import MAX_CATEGORIES, ColumnSchema, DatasetSchema, Kind, TargetSchema, infer_schema
from ._validate import DataValidationError, Finding, ValidationReport, validate_data

__all__ = [
    "MAX_CATEGORIES",
    "ColumnSchema",
    "DataValidationError",
    "DatasetSchema",
    "Finding",
    "Kind",
    "TargetSchema",
    "ValidationReport",
    "as_frame",
    "as_series",
    "data_hash",
    "infer_schema",
    "read_sample",
    "validate_data",
    "write_sample",
]
