"""The ASGI app: Open Inference Protocol v2 and MLflow scoring routes over one runtime."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..monitoring._ids import REQUEST_ID_RULE, RequestIds, valid_request_id
from . import _metrics, _protocols
from ._batching import DEFAULT_MAX_ROWS, DEFAULT_WINDOW_MS, MicroBatcher
from ._http import (
    PIECE_ITEMS,
    BearerAuth,
    HTTPProblem,
    Receive,
    Scope,
    Send,
    declared_length,
    json_response,
    parse_json,
    read_body,
    release,
    shortened,
)
from ._loading import value_counts
from ._master import exit_on_term, predecessor_serves
from ._protocols import Decoded
from ._runtime import Runtime, Served, Variant

if TYPE_CHECKING:
    from ..monitoring._log import LogSettings, PredictionLogWriter

__all__ = ["LARGE_ADMITTED", "LARGE_BODY_BYTES", "LARGE_THREADS", "ServerOptions", "create_app"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Bodies from this size (about 1,500 rows, 1.5 ms of work) are parsed and answered in a worker
# thread, so that they never hold up health probes and small requests; smaller ones are answered
# on the event loop, which is faster for them. Of large requests, a worker runs LARGE_THREADS at a
# time (the GIL makes more no faster) and admits LARGE_ADMITTED (reading, waiting or running),
# which bounds its memory; one more is a 503 with Retry-After.
LARGE_BODY_BYTES = 32 * 1024
LARGE_THREADS = 1
LARGE_ADMITTED = 8
log = logging.getLogger("mlinfra.serving")
_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping"})


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    registry: Path
    env: str
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    poll_seconds: float = 0.2
    prediction_log: LogSettings | None = None
    """Where and how answered requests are logged; None: they are not."""
    batch_window_ms: float = DEFAULT_WINDOW_MS
    """Longest a small request waits for others to be predicted with; 0: micro-batching off."""
    max_batch: int = DEFAULT_MAX_ROWS
    """Rows predicted in one call at most, of requests batched together."""


def create_app(options: ServerOptions) -> Any:
    """The server for one env; a bearer-token guard wraps it when a token is given."""
    runtime = Runtime(
        registry_root=options.registry, env=options.env, poll_seconds=options.poll_seconds
    )
    routes = _Routes(runtime, options, _prediction_log(options.prediction_log))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # uvicorn accepts requests once this yields: a worker (re)started in a deployed env
        # answers with the deployed model from its first request, never "no model is deployed";
        # one that cannot load it while the server it replaces still serves accepts nothing.
        with exit_on_term():
            await runtime.start(hold=predecessor_serves)
        # What startup loaded (libraries, the model) lives as long as the worker: kept out of
        # the collector's full passes, which would walk it all (0.1 s or more, measured) while
        # requests wait.
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(runtime.watch())
        if routes.log is not None:
            routes.log.start()
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            routes.large.close()
            if routes.log is not None:  # its open segments are written now, not lost
                await asyncio.to_thread(routes.log.close)

    app = Starlette(
        routes=[
            Route("/v2/health/live", routes.live),
            Route("/v2/health/ready", routes.ready),
            Route("/ping", routes.ping),
            Route("/v2", routes.server_metadata),
            Route("/v2/models/{name}", routes.model_metadata),
            Route("/v2/models/{name}/versions/{version}", routes.model_metadata),
            Route("/v2/models/{name}/ready", routes.model_ready),
            Route("/v2/models/{name}/versions/{version}/ready", routes.model_ready),
            # POSTs to these three are answered by _PredictionRoutes; here: 405 to other methods
            Route("/v2/models/{name}/infer", routes.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", routes.infer, methods=["POST"]),
            Route("/invocations", routes.invocations, methods=["POST"]),
            Route("/feedback", routes.feedback, methods=["POST"]),
            Route("/metrics", routes.metrics),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPProblem: _problem_response, HTTPException: _route_error_response},
    )
    predictions = _PredictionRoutes(app, routes)
    if options.token:
        return BearerAuth(predictions, token=options.token, open_paths=_OPEN_PATHS)
    return predictions


class _PredictionRoutes:
    """The prediction routes, answered without Starlette's router and middleware in between.

    Those layers cost a tenth of a one-row prediction's time. This does what they do for these
    routes: the path's parameters, an HTTPProblem answered as its JSON, anything else left to
    uvicorn's 500. Every other request, and another method on these paths, goes to `app`.
    """

    _PATHS = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")

    def __init__(self, app: Starlette, routes: _Routes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler(scope)
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except HTTPProblem as problem:
            _metrics.count_rejected(problem.status)
            response = problem.response()
        await response(scope, receive, send)

    def _handler(self, scope: Scope) -> Callable[[Request], Awaitable[Response]] | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"]
        if path == "/invocations":
            scope["path_params"] = {}
            return self.routes.invocations
        matched = self._PATHS.fullmatch(path)
        if matched is None:
            return None
        name, version = matched.group("name", "version")
        scope["path_params"] = {"name": name} if version is None else matched.groupdict()
        return self.routes.infer


def _prediction_log(settings: LogSettings | None) -> PredictionLogWriter | None:
    if settings is None:
        return None
    from ..monitoring._log import PredictionLogWriter  # pyarrow, only where logging is on

    return PredictionLogWriter(settings, count=_metrics.count_logged)


async def _problem_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    _metrics.count_rejected(exc.status)
    return exc.response()


async def _route_error_response(request: Request, exc: Exception) -> Response:
    """A path the server does not have (404) or a method it does not take there (405, with
    Allow), answered in JSON like every other error; not counted with prediction requests."""
    assert isinstance(exc, HTTPException)
    what = "no such route" if exc.status_code == 404 else str(exc.detail).lower()
    problem = HTTPProblem(
        exc.status_code, f"{what}: {request.method} {shortened(request.url.path)}",
        headers=exc.headers,
    )  # fmt: skip
    return problem.response()


Handler = Callable[[Any], Response]
SmallHandler = Callable[[Any], Awaitable[Response]]


class _LargeRequests:
    """Large bodies: admitted up to LARGE_ADMITTED at once, then parsed and answered in
    LARGE_THREADS worker threads, in the order they were read."""

    def __init__(self) -> None:
        self.admitted = 0
        self.threads = ThreadPoolExecutor(LARGE_THREADS, thread_name_prefix="mlinfra-large")

    async def answer(self, request: Request, limit: int, handle: Handler) -> Response:
        if self.admitted >= LARGE_ADMITTED:
            raise HTTPProblem(
                503,
                f"the server is busy with {LARGE_ADMITTED} large requests; retry shortly",
                headers={"retry-after": "1"},
            )
        self.admitted += 1
        try:
            raw = await read_body(request, limit)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.threads, _parse_and_handle, raw, handle)
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


def _parse_and_handle(raw: bytes, handle: Handler) -> Response:
    with _FULL_COLLECTIONS.paused():
        body = parse_json(raw, interruptible=True)
        response = None
        try:
            response = handle(body)
            return response
        finally:
            if response is None or response.background is None:  # a shadow copy reads it later
                release(body)


class _CollectorPause:
    """No full garbage collection while a large body is in memory.

    Each would walk the body's half a million lists holding the GIL (50 to 250 ms measured), and
    several run while one is parsed. Those lists hold no cycles: reference counting frees them.
    Young collections go on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._full_threshold = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                young, middle, self._full_threshold = gc.get_threshold()
                gc.set_threshold(young, middle, 2**31 - 1)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    young, middle, _ = gc.get_threshold()
                    gc.set_threshold(young, middle, self._full_threshold)


_FULL_COLLECTIONS = _CollectorPause()


class _Routes:
    def __init__(
        self, runtime: Runtime, options: ServerOptions, log: PredictionLogWriter | None
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.large = _LargeRequests()
        self.log = log
        self.ids = RequestIds()
        self.batcher = (
            MicroBatcher(window_ms=options.batch_window_ms, max_rows=options.max_batch)
            if options.batch_window_ms > 0 and options.max_batch > 1
            else None
        )

    async def live(self, _request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, _request: Request) -> Response:
        # The protocol says a 4xx means "not ready"; probes only look at the status.
        served = self.runtime.served
        if served is None:
            return json_response({"ready": False, "reason": self.runtime.unavailable_reason}, 400)
        return json_response({"ready": True, "generation": served.deployment.generation})

    async def ping(self, _request: Request) -> Response:
        if self.runtime.served is None:
            return json_response({"error": self.runtime.unavailable_reason}, 503)
        return Response("\n", media_type="application/json")

    async def server_metadata(self, _request: Request) -> Response:
        from .. import __version__

        return json_response({"name": "mlinfra", "version": __version__, "extensions": []})

    async def model_metadata(self, request: Request) -> Response:
        variant = self._variant(request)
        return json_response(_protocols.v2_metadata(variant.model))

    async def model_ready(self, request: Request) -> Response:
        self._variant(request)
        return json_response({"ready": True})

    async def metrics(self, _request: Request) -> Response:
        return Response(_metrics.render(), media_type=_metrics.CONTENT_TYPE_LATEST)

    async def infer(self, request: Request) -> Response:
        served = self._served()
        variant = self._variant(request, served)
        return await self._prediction(
            request, served, variant, _protocols.decode_v2, _protocols.encode_v2
        )

    async def invocations(self, request: Request) -> Response:
        served = self._served()
        variant = served.pick(_sticky_value(request, served))
        return await self._prediction(
            request, served, variant, _protocols.decode_mlflow, _protocols.encode_mlflow
        )

    async def _prediction(
        self, request: Request, served: Served, variant: Variant, decode: Any, encode: Any
    ) -> Response:
        """A small request is predicted with others arriving with it (micro-batching on)."""
        args = (served, variant, decode, encode, self.log, self._request_id(request))
        batched = None
        if self.batcher is not None:
            batched = functools.partial(_predict_batched, self.batcher, *args)
        return await self._answer(request, functools.partial(_predict, *args), batched)

    async def feedback(self, request: Request) -> Response:
        """True labels for earlier answers, so that rollouts can compare accuracy."""
        return await self._answer(request, functools.partial(self._fed_back, self._served()))

    async def _answer(
        self, request: Request, handle: Handler, small: SmallHandler | None = None
    ) -> Response:
        """Read the body and `handle` it: a small one here (with `small`, if given), a large
        one (or one of unknown length) in a worker thread."""
        limit = self.options.max_body_bytes
        declared = declared_length(request, limit)
        if declared is not None and declared < LARGE_BODY_BYTES:
            body = parse_json(await read_body(request, limit))
            return handle(body) if small is None else await small(body)
        return await self.large.answer(request, limit, handle)

    def _request_id(self, request: Request) -> str:
        """The request's `x-request-id`, or a new id (a v2 body's own `id` comes first)."""
        given = request.headers.get("x-request-id")
        if given is None or given == "":
            return self.ids.new()
        if not valid_request_id(given):
            raise HTTPProblem(422, f"x-request-id must be {REQUEST_ID_RULE}", field="x-request-id")
        return given

    def _fed_back(self, served: Served, body: Any) -> Response:
        feedback = _protocols.decode_feedback(body)
        if isinstance(feedback, _protocols.LabelsById):
            return self._labels_by_id(feedback)
        version, predictions, labels = feedback
        variant = served.by_version(version)
        if variant is None:
            raise HTTPProblem(422, f"version {version} is not deployed here", field="version")
        if variant.model.task == "regression":
            try:
                errors = [
                    abs(float(p) - float(t)) for p, t in zip(predictions, labels, strict=True)
                ]
            except (ValueError, OverflowError):
                raise HTTPProblem(
                    422, "regression labels must be numbers", field="labels"
                ) from None
            if not all(math.isfinite(e) for e in errors):
                raise HTTPProblem(422, "labels and predictions must be finite", field="labels")
            variant.metrics.fed_back(len(labels), abs_error=sum(errors))
        else:
            right = sum(str(p) == str(t) for p, t in zip(predictions, labels, strict=True))
            variant.metrics.fed_back(len(labels), correct=right)
        return json_response({"rows": len(labels), "version": version, "variant": variant.name})

    def _labels_by_id(self, feedback: _protocols.LabelsById) -> Response:
        """Labels for logged predictions, written to the log beside them (off this path)."""
        if self.log is None:
            raise HTTPProblem(
                409,
                f"labels by request id need the prediction log, which is off in env "
                f"{self.runtime.env!r}: turn on [env.{self.runtime.env}.monitoring], or send "
                "version, predictions and labels",
            )
        if not self.log.record_labels(feedback.request_ids, feedback.labels):
            raise HTTPProblem(
                503,
                "the prediction log's queue is full; retry shortly",
                headers={"retry-after": "1"},
            )
        return json_response({"rows": len(feedback.labels), "logged": True})

    def _served(self) -> Served:
        served = self.runtime.served
        if served is None:
            raise HTTPProblem(503, self.runtime.unavailable_reason)
        return served

    def _variant(self, request: Request, served: Served | None = None) -> Variant:
        """The variant a `/v2/models/{name}[/versions/{v}]` path names; 404 if none."""
        served = served or self._served()
        name = request.path_params["name"]
        if name != served.deployment.model:
            raise HTTPProblem(
                404,
                f"model {shortened(name)} is not served here; it serves "
                f"{served.deployment.model!r}",
            )
        version = request.path_params.get("version")
        if version is None:
            return served.pick(_sticky_value(request, served))
        number = _protocols.version_number(version)
        variant = served.by_version(number) if number is not None else None
        if variant is None:
            raise HTTPProblem(
                404,
                f"version {shortened(version)} of {name!r} is not deployed in env "
                f"{self.runtime.env!r}",
            )
        return variant


def _sticky_value(request: Request, served: Served) -> str | None:
    header = served.deployment.sticky_header
    return request.headers.get(header) if header else None


def _predict(
    served: Served,
    variant: Variant,
    decode: Any,
    encode: Any,
    prediction_log: PredictionLogWriter | None,
    request_id: str,
    body: Any,
) -> Response:
    """Decode, check, predict all rows in one call, answer, log."""
    checked = _checked(served, variant, decode, encode, prediction_log, request_id, body)
    return checked if isinstance(checked, Response) else checked.answer(checked.infer)


async def _predict_batched(
    batcher: MicroBatcher,
    served: Served,
    variant: Variant,
    decode: Any,
    encode: Any,
    prediction_log: PredictionLogWriter | None,
    request_id: str,
    body: Any,
) -> Response:
    """`_predict`, with the model called once for this request and others arriving with it."""
    checked = _checked(served, variant, decode, encode, prediction_log, request_id, body)
    if isinstance(checked, Response):
        return checked
    model, decoded = variant.model, checked.decoded
    if not batcher.takes(model, decoded.outputs, decoded.rows):
        return checked.answer(checked.infer)
    outcome = batcher.submit(model, checked.inputs, decoded.outputs, decoded.columns)
    with contextlib.suppress(Exception):
        await outcome  # what predicting it raised is answered below, as it would be alone
    return checked.answer(outcome.result)


def _checked(
    served: Served,
    variant: Variant,
    decode: Any,
    encode: Any,
    prediction_log: PredictionLogWriter | None,
    request_id: str,
    body: Any,
) -> _Checked | Response:
    """The request decoded and checked against the schema, or the answer refusing it."""
    start = time.perf_counter()
    model = variant.model
    rows = 0
    try:
        decoded = decode(body, model)
        rows = decoded.rows
        inputs = model.inputs(decoded.columns, decoded.matrix)
    except Exception as exc:
        return _failed(variant, start, rows, exc)
    return _Checked(
        served, variant, encode, prediction_log, decoded.id or request_id, body, decoded, inputs,
        start,
    )  # fmt: skip


@dataclass(slots=True)
class _Checked:
    """A prediction request that passed its checks, until its answer; timed from its body read,
    so a variant's latency is its own and not the wait behind another variant's request.
    Shadow predictions (`_mirror`) are not logged."""

    served: Served
    variant: Variant
    encode: Any
    prediction_log: PredictionLogWriter | None
    request_id: str
    body: Any
    decoded: Decoded
    inputs: Any
    start: float

    def infer(self) -> dict[str, Any]:
        """All the request's rows predicted in one call of their own."""
        decoded = self.decoded
        return self.variant.model.infer(self.inputs, decoded.outputs, decoded.columns)

    def answer(self, predicted: Callable[[], dict[str, Any]]) -> Response:
        """The answer with the outputs `predicted()` returns (or the error it raises)."""
        variant, decoded, request_id = self.variant, self.decoded, self.request_id
        model, rows = variant.model, decoded.rows
        try:
            outputs = predicted()
            response = json_response(
                self.encode(self.body, model, outputs, request_id), in_pieces=rows > PIECE_ITEMS
            )
        except Exception as exc:
            return _failed(variant, self.start, rows, exc)
        variant.metrics.answered(200, time.perf_counter() - self.start, rows)
        variant.metrics.predicted(value_counts(outputs, self.served.bin_edges))
        response.headers["x-model-version"] = str(model.version)
        response.headers["x-model-variant"] = variant.name
        response.headers["x-request-id"] = request_id
        if self.prediction_log is not None:
            self.prediction_log.record(
                model, variant.name, request_id, decoded.columns, rows, outputs
            )
        shadow = self.served.shadow()
        if shadow is not None:
            response.background = BackgroundTask(_mirror, self.served, shadow, decoded)
        return response


def _failed(variant: Variant, start: float, rows: int, exc: Exception) -> Response:
    """The answer to a request refused (an HTTPProblem) or failed (anything else: a 500)."""
    if isinstance(exc, HTTPProblem):
        variant.metrics.answered(exc.status, time.perf_counter() - start, 0)
        return exc.response()
    variant.metrics.answered(500, time.perf_counter() - start, rows)
    model = variant.model
    message = f"model {model.name} v{model.version} failed: {type(exc).__name__}: {exc}"
    log.warning("%s", message)
    return json_response({"error": message}, 500)


def _mirror(served: Served, shadow: Variant, decoded: Decoded) -> None:
    """Predict a copy of the request on the shadow variant, after the answer has gone out."""
    start = time.perf_counter()
    model = shadow.model
    try:
        outputs = model.infer(model.inputs(decoded.columns), ("predict",), decoded.columns)
    except HTTPProblem as problem:
        shadow.metrics.answered(problem.status, time.perf_counter() - start, 0)
        return
    except Exception:
        shadow.metrics.answered(500, time.perf_counter() - start, decoded.rows)
        return
    shadow.metrics.answered(200, time.perf_counter() - start, decoded.rows)
    shadow.metrics.predicted(value_counts(outputs, served.bin_edges))
