"""The ASGI app: Open Inference Protocol v2 and MLflow scoring routes over one runtime."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _metrics, _protocols
from ._http import (
    PIECE_ITEMS,
    BearerAuth,
    HTTPProblem,
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


def create_app(options: ServerOptions) -> Any:
    """The server for one env; a bearer-token guard wraps it when a token is given."""
    runtime = Runtime(
        registry_root=options.registry, env=options.env, poll_seconds=options.poll_seconds
    )
    routes = _Routes(runtime, options)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # uvicorn accepts requests once this yields: a worker (re)started in a deployed env
        # answers with the deployed model from its first request, never "no model is deployed";
        # one that cannot load it while the server it replaces still serves accepts nothing.
        with exit_on_term():
            await runtime.start(hold=predecessor_serves)
        watcher = asyncio.create_task(runtime.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            routes.large.close()

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
            Route("/v2/models/{name}/infer", routes.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", routes.infer, methods=["POST"]),
            Route("/invocations", routes.invocations, methods=["POST"]),
            Route("/feedback", routes.feedback, methods=["POST"]),
            Route("/metrics", routes.metrics),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPProblem: _problem_response},
    )
    if options.token:
        return BearerAuth(app, token=options.token, open_paths=_OPEN_PATHS)
    return app


async def _problem_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    _metrics.count_rejected(exc.status)
    return exc.response()


Handler = Callable[[Any], Response]


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
    def __init__(self, runtime: Runtime, options: ServerOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.large = _LargeRequests()

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
        return await self._answer(
            request,
            functools.partial(
                _predict, served, variant, _protocols.decode_v2, _protocols.encode_v2
            ),
        )

    async def invocations(self, request: Request) -> Response:
        served = self._served()
        variant = served.pick(_sticky_value(request, served))
        return await self._answer(
            request,
            functools.partial(
                _predict, served, variant, _protocols.decode_mlflow, _protocols.encode_mlflow
            ),
        )

    async def feedback(self, request: Request) -> Response:
        """True labels for earlier answers, so that rollouts can compare accuracy."""
        return await self._answer(request, functools.partial(self._fed_back, self._served()))

    async def _answer(self, request: Request, handle: Handler) -> Response:
        """Read the body and `handle` it: a small one here, a large one (or one of unknown
        length) in a worker thread."""
        limit = self.options.max_body_bytes
        declared = declared_length(request, limit)
        if declared is not None and declared < LARGE_BODY_BYTES:
            return handle(parse_json(await read_body(request, limit)))
        return await self.large.answer(request, limit, handle)

    def _fed_back(self, served: Served, body: Any) -> Response:
        version, predictions, labels = _protocols.decode_feedback(body)
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


def _predict(served: Served, variant: Variant, decode: Any, encode: Any, body: Any) -> Response:
    """Decode, check, predict all rows in one call, answer; timed without the body read, so a
    variant's latency is its own and not the wait behind another variant's request."""
    start = time.perf_counter()
    model = variant.model
    rows = 0
    try:
        decoded = decode(body, model)
        rows = decoded.rows
        outputs = model.infer(model.inputs(decoded.columns), decoded.outputs, decoded.columns)
        response = json_response(encode(body, model, outputs), in_pieces=rows > PIECE_ITEMS)
    except HTTPProblem as problem:
        variant.metrics.answered(problem.status, time.perf_counter() - start, 0)
        return problem.response()
    except Exception as exc:
        variant.metrics.answered(500, time.perf_counter() - start, rows)
        message = f"model {model.name} v{model.version} failed: {type(exc).__name__}: {exc}"
        log.warning("%s", message)
        return json_response({"error": message}, 500)
    variant.metrics.answered(200, time.perf_counter() - start, rows)
    variant.metrics.predicted(value_counts(outputs, served.bin_edges))
    response.headers["x-model-version"] = str(model.version)
    response.headers["x-model-variant"] = variant.name
    shadow = served.shadow()
    if shadow is not None:
        response.background = BackgroundTask(_mirror, served, shadow, decoded)
    return response


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
