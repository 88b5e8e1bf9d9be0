"""Checking parameters and search spaces against the estimator before any work starts.

scikit-learn validates parameters only inside `fit`; we ask it earlier (through each estimator's
`_parameter_constraints`), so a typo fails in a second with the estimator's own message rather
than after the data loaded and half the trials ran.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import ParameterError

__all__ = ["apply_params", "check_search_space", "parse_overrides"]


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["max_depth=3", "criterion=gini"]` -> {"max_depth": 3, "criterion": "gini"}.

    Values are Python literals when they parse as one (3, 0.1, None, True, [1, 2]), else text.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param expects key=value, got {item!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        params[key.strip()] = value
    return params


def apply_params(estimator: Any, params: Mapping[str, Any]) -> Any:
    """`estimator` with `params` set, refused if a name is unknown or a value invalid."""
    _check_names(estimator, params, "parameter")
    estimator.set_params(**params)
    _validate(estimator, "")
    return estimator


def check_search_space(estimator: Any, space: Mapping[str, Any], strategy: str) -> None:
    """Every key a parameter of the estimator, every candidate value acceptable to it."""
    from sklearn.base import clone

    if not space:
        raise ParameterError("the search space is empty; give at least one parameter")
    _check_names(estimator, space, "search space key")
    for key, values in space.items():
        if hasattr(values, "rvs"):
            if strategy == "grid":
                raise ParameterError(
                    f"search space {key!r} is a distribution; grid search needs a list of values "
                    "(use --search random or halving)"
                )
            candidates = [values.rvs(random_state=0)]
        elif isinstance(values, list | tuple) and values:
            candidates = list(values)
        else:
            raise ParameterError(
                f"search space {key!r} must be a non-empty list of values or a scipy "
                f"distribution, got {values!r}"
            )
        for value in candidates:
            trial = clone(estimator)
            trial.set_params(**{key: value})
            _validate(trial, f"search space {key}={value!r}: ")


def _check_names(estimator: Any, params: Iterable[str], what: str) -> None:
    valid = estimator.get_params(deep=True)
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else ""
            known = hint or f"{type(estimator).__name__} takes: {', '.join(sorted(valid))}"
            raise ParameterError(f"unknown estimator {what} {key!r}; {known}")


def _validate(estimator: Any, prefix: str) -> None:
    """Run scikit-learn's own parameter checks on the estimator and every estimator inside it."""
    from sklearn.utils._param_validation import InvalidParameterError

    nested = [v for v in estimator.get_params(deep=True).values() if hasattr(v, "get_params")]
    for part in [estimator, *nested]:
        if not hasattr(part, "_parameter_constraints"):
            continue  # the user's own estimators declare no constraints
        try:
            part._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(f"{prefix}{exc}") from exc
