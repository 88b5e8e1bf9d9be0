"""Adaptive micro-batching: small prediction requests that arrive together are predicted in one
model call, each answered with its own rows.

A one-row predict is mostly fixed cost (scikit-learn checks its input on every call: about
0.5 ms for the iris pipeline, and about as much for 10 rows), so requests that arrive together
share one call. It never adds a wait of its own when traffic is light. A worker's event loop
reads every request that arrived since its last turn before it runs their handlers, so a request
joins a batch that is predicted once the handlers of that turn have run (`loop.call_soon`): a lone
request is predicted at once. A batch waits longer only while the requests it expects have not
all joined: as many as the last batch of its kind held, for at most the window (2 ms by
default), so that clients answered together stay together; one that times out expects fewer.

It never changes an answer. A request is checked on its own (a bad one is refused at once and
never joins), and only requests for the same model version, outputs and input dtypes are
batched. A batch whose call fails is predicted again one request at a time, so that each gets
the answer or the error it would have alone. And a model is batched only once it has shown, on
its reference sample, that every row of a batch of every size up to `max_rows`, at every
position, gets bit for bit the answer it gets alone (`batch_invariant`): BLAS routines round
differently with the shape of the matrix, so a linear model's probabilities can differ in their
last digit between a batch and one row; such a model (for those outputs) is predicted one
request at a time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Histogram

from ._protocols import Columns

if TYPE_CHECKING:
    from ._loading import ServedModel

__all__ = [
    "BATCH_REQUESTS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_WINDOW_MS",
    "MicroBatcher",
    "batch_invariant",
]

log = logging.getLogger("mlinfra.serving")
DEFAULT_WINDOW_MS = 2.0
DEFAULT_MAX_ROWS = 64
# Batch sizes checked on the reference sample: all up to this, then powers of two and max_rows.
_EVERY_SIZE_UP_TO = 64

BATCH_REQUESTS = Histogram(
    "mlinfra_batch_requests",
    "Requests predicted together in one model call (micro-batching), by version and outputs.",
    ("model", "version", "outputs"),
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

Outputs = dict[str, np.ndarray]
_Key = tuple["ServedModel", tuple[str, ...], Any]  # model, outputs, input dtypes


@dataclass(eq=False, slots=True)
class _Waiting:
    """A checked request in a batch, until its outputs are set on its future."""

    inputs: Any
    rows: int
    columns: Columns
    outcome: asyncio.Future[Outputs]


@dataclass(eq=False, slots=True)
class _Batch:
    opened: float  # loop time of its first request
    expected: int  # requests it waits for, the window permitting
    waiting: list[_Waiting] = field(default_factory=list)
    rows: int = 0


class MicroBatcher:
    """Batches of one worker's small prediction requests, predicted on its event loop."""

    def __init__(
        self, *, window_ms: float = DEFAULT_WINDOW_MS, max_rows: int = DEFAULT_MAX_ROWS
    ) -> None:
        self.window = window_ms / 1000
        self.max_rows = max_rows
        self._pending: dict[_Key, _Batch] = {}
        # Requests of the last batch per model (and outputs, layout); forgotten with the model.
        self._last_size: weakref.WeakKeyDictionary[ServedModel, dict[tuple[Any, ...], int]]
        self._last_size = weakref.WeakKeyDictionary()
        self._turn: asyncio.Handle | None = None  # predicts what is due after this loop turn
        self._timer: asyncio.TimerHandle | None = None
        # True/False once checked, None while being checked; forgotten with the model.
        self._verdicts: weakref.WeakKeyDictionary[ServedModel, dict[tuple[str, ...], bool | None]]
        self._verdicts = weakref.WeakKeyDictionary()

    def takes(self, model: ServedModel, outputs: tuple[str, ...], rows: int) -> bool:
        """Whether a request of `rows` rows asking `model` for `outputs` may join a batch.

        The first such request starts the check of the model (in a thread) and goes alone, as
        do those after it until the check is done.
        """
        if rows >= self.max_rows:
            return False
        verdicts = self._verdicts.setdefault(model, {})
        if outputs in verdicts:
            return verdicts[outputs] is True
        verdicts[outputs] = None
        checking = asyncio.get_running_loop().run_in_executor(
            None, batch_invariant, model, outputs, self.max_rows
        )
        checking.add_done_callback(functools.partial(self._checked, model, outputs))
        return False

    def _checked(
        self, model: ServedModel, outputs: tuple[str, ...], checking: asyncio.Future[bool]
    ) -> None:
        error = None if checking.cancelled() else checking.exception()
        verdict = not checking.cancelled() and error is None and checking.result()
        self._verdicts.setdefault(model, {})[outputs] = verdict
        what = f"{model.name} v{model.version} ({', '.join(outputs)})"
        if verdict:
            log.info("micro-batching %s", what)
        else:
            why = f"its check failed: {error}" if error else "batched answers differ from alone"
            log.info("predicting %s one request at a time: %s", what, why)

    def submit(
        self, model: ServedModel, inputs: Any, outputs: tuple[str, ...], columns: Columns
    ) -> asyncio.Future[Outputs]:
        """Add a checked request (`takes` said yes) to its batch; its own rows of the outputs,
        or what predicting it alone raised, come on the future."""
        loop = asyncio.get_running_loop()
        rows = len(inputs)
        key = (model, outputs, _layout(inputs))
        batch = self._pending.get(key)
        if batch is not None and batch.rows + rows > self.max_rows:
            self._predict(key)  # full: this request starts the next one
            batch = None
        if batch is None:
            expected = self._last_size.get(model, {}).get(key[1:], 1)
            batch = _Batch(opened=loop.time(), expected=expected)
            self._pending[key] = batch
        waiting = _Waiting(inputs, rows, columns, loop.create_future())
        batch.waiting.append(waiting)
        batch.rows += rows
        if batch.rows >= self.max_rows:
            self._predict(key)
        elif self._turn is None:
            self._turn = loop.call_soon(self._predict_due)
        return waiting.outcome

    def _predict_due(self) -> None:
        """Predict the batches that have all their expected requests, or waited long enough."""
        self._turn = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = asyncio.get_running_loop().time()
        for key, batch in list(self._pending.items()):
            if len(batch.waiting) >= batch.expected or now >= batch.opened + self.window:
                self._predict(key)
        if self._pending:
            deadline = min(batch.opened for batch in self._pending.values()) + self.window
            self._timer = asyncio.get_running_loop().call_at(deadline, self._predict_due)

    def _predict(self, key: _Key) -> None:
        batch = self._pending.pop(key)
        model, outputs, _ = key
        waiting = [w for w in batch.waiting if not w.outcome.done()]  # a cancelled request
        self._last_size.setdefault(model, {})[key[1:]] = len(batch.waiting)
        if not waiting:
            return
        BATCH_REQUESTS.labels(model.name, str(model.version), ",".join(outputs)).observe(
            len(waiting)
        )
        if len(waiting) == 1:
            _alone(model, outputs, waiting[0])
            return
        rows = sum(request.rows for request in waiting)
        try:
            together = model.infer(_stacked([w.inputs for w in waiting]), outputs, {})
            if any(len(values) != rows for values in together.values()):
                raise ValueError("an output is not one value per row")
        except Exception:  # each gets the answer, or the error, it would have had alone
            for request in waiting:
                _alone(model, outputs, request)
            return
        start = 0
        for request in waiting:
            end = start + request.rows
            request.outcome.set_result({name: v[start:end] for name, v in together.items()})
            start = end


def _alone(model: ServedModel, outputs: tuple[str, ...], request: _Waiting) -> None:
    try:
        request.outcome.set_result(model.infer(request.inputs, outputs, request.columns))
    except Exception as exc:
        request.outcome.set_exception(exc)


def _layout(inputs: Any) -> Any:
    """What two requests' inputs must share to be stacked without a conversion."""
    if isinstance(inputs, np.ndarray):
        return inputs.dtype
    return tuple(inputs.dtypes)  # a DataFrame


def _stacked(inputs: Sequence[Any]) -> Any:
    if isinstance(inputs[0], np.ndarray):
        return np.concatenate(inputs)
    import pandas as pd

    return pd.concat(inputs, ignore_index=True)


def batch_invariant(model: ServedModel, outputs: tuple[str, ...], max_rows: int) -> bool:
    """Whether `model` answers every row of a batch exactly (bit for bit) as it answers that
    row alone, on rows of its reference sample, at every batch size up to `max_rows` (powers of
    two beyond 64) and every position in it."""
    if model.reference is None or len(model.reference) == 0:
        return False
    frame = model.reference[model.schema.names]
    table = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    names = table["columns"]
    samples = table["data"]
    rows = [
        {name: [value] for name, value in zip(names, samples[i % len(samples)], strict=True)}
        for i in range(max_rows)
    ]
    inputs = [model.inputs(row) for row in rows]
    alone = [model.infer(x, outputs, row) for x, row in zip(inputs, rows, strict=True)]
    for size in _sizes(max_rows):
        together = model.infer(_stacked(inputs[:size]), outputs, {})
        for name in outputs:
            expected = np.concatenate([answer[name] for answer in alone[:size]])
            if not _identical(together[name], expected):
                return False
    return True


def _sizes(max_rows: int) -> list[int]:
    sizes = set(range(2, min(max_rows, _EVERY_SIZE_UP_TO) + 1))
    sizes.update(2**p for p in range(7, max_rows.bit_length()) if 2**p <= max_rows)
    sizes.add(max_rows)
    return sorted(size for size in sizes if size >= 2)


def _identical(got: np.ndarray, expected: np.ndarray) -> bool:
    """Equal dtypes, shapes and values; floats compared by their bits (-0.0 is not 0.0)."""
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    if got.dtype == object:
        return [(type(v), v) for v in got.ravel().tolist()] == [
            (type(v), v) for v in expected.ravel().tolist()
        ]
    return bool(np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes())
