"""`python -m mlinfra.serving`: the model server of one env, a master process and N uvicorn
workers on one listening socket (see _master.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._code_paths import add_code_path_option, put_first_on_path, record_code_paths
from ..errors import ConfigError
from ._deployments import deployment_dir

if TYPE_CHECKING:
    from ..monitoring._log import LogSettings

# Workers are separate processes started by uvicorn from an import string, so the options reach
# them through the environment.
_ENV_PREFIX = "MLINFRA_SERVING_"
# uvicorn kills and restarts a worker that does not answer its master's ping within this long
# (its default, 5 s, killed workers that were starting or merely slow on a busy machine, and
# restarted them into the same wait); a hung worker goes after 30 s, as with gunicorn's --timeout.
_WORKER_SILENCE_SECONDS = 30


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlinfra.serving", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--registry", type=Path, required=True, help="the env's model registry")
    parser.add_argument("--env", required=True, help="the env whose deployment table to serve")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token to require")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=2.0,
        help="longest a small request waits to be predicted with others (0: no micro-batching)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=64, help="rows predicted in one call at most (64)"
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--handover", type=Path, help="unix socket at which to give the port to a successor"
    )
    parser.add_argument(
        "--take-over", type=Path, help="take the port from the server handing it over there"
    )
    _add_log_options(parser)
    add_code_path_option(parser)
    return parser.parse_args(argv)


# The prediction log's options: flag, LogSettings field, type, help. Absent: the writer's default.
_LOG_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--log-dir", "directory", Path, "log predictions there (Parquet); without it nothing is"),
    ("--log-sample-rate", "sample_rate", float, "share of requests logged, 0 to 1 (1)"),
    ("--log-segment-seconds", "segment_seconds", float, "a segment is written this often (60)"),
    ("--log-max-bytes", "max_bytes", int, "the oldest segments go beyond this size (1 GiB)"),
    ("--log-retention-seconds", "retention_seconds", float, "older segments go (7 days)"),
    ("--log-queue-rows", "queue_rows", int, "rows waiting to be written, at most (50,000)"),
)


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    for flag, _, kind, text in _LOG_OPTIONS:
        parser.add_argument(flag, type=kind, help=text)


def _log_settings(values: dict[str, str]) -> LogSettings | None:
    """The prediction log's settings from option values (text) by field; None without a
    directory: nothing is logged."""
    if "directory" not in values:
        return None
    from ..monitoring._log import LogSettings

    given = {field: kind(values[field]) for _, field, kind, _ in _LOG_OPTIONS if field in values}
    return LogSettings(**given)


def _log_variable(field: str) -> str:
    return f"{_ENV_PREFIX}LOG_{field.upper()}"


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.token_file is not None and not args.token_file.is_file():
        sys.exit(f"token file {args.token_file} does not exist")
    os.environ[f"{_ENV_PREFIX}REGISTRY"] = str(args.registry.resolve())
    os.environ[f"{_ENV_PREFIX}ENV"] = args.env
    os.environ[f"{_ENV_PREFIX}MAX_BODY_BYTES"] = str(args.max_body_bytes)
    if not 0 <= args.batch_window_ms <= 1000 or args.max_batch < 1:
        sys.exit("--batch-window-ms must be 0 to 1000 (0: off) and --max-batch at least 1")
    os.environ[f"{_ENV_PREFIX}BATCH_WINDOW_MS"] = str(args.batch_window_ms)
    os.environ[f"{_ENV_PREFIX}MAX_BATCH"] = str(args.max_batch)
    if args.token_file is not None:
        os.environ[f"{_ENV_PREFIX}TOKEN_FILE"] = str(args.token_file.resolve())
    os.environ[f"{_ENV_PREFIX}CODE_PATHS"] = json.dumps(args.code_paths)
    log_values = {
        field: str(value.resolve() if isinstance(value, Path) else value)
        for flag, field, _, _ in _LOG_OPTIONS
        if (value := getattr(args, flag.removeprefix("--").replace("-", "_"))) is not None
    }
    if log_values and "directory" not in log_values:
        sys.exit(f"--log-{next(iter(log_values)).replace('_', '-')} needs --log-dir")
    try:
        _log_settings(log_values)  # refused here, once, rather than by every worker
    except ConfigError as exc:
        sys.exit(str(exc))
    for field, text in log_values.items():
        os.environ[_log_variable(field)] = text
    # Samples of all workers go to one directory, so /metrics and rollouts see the whole server.
    # It starts empty: counters restart with the server, as Prometheus expects of a new process.
    deployment = deployment_dir(args.registry, args.env)
    metrics_dir = deployment / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    record_code_paths(deployment, args.code_paths)  # so its rollout driver imports the same

    import uvicorn

    from ._master import run_master

    config = uvicorn.Config(
        "mlinfra.serving.__main__:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        timeout_worker_healthcheck=_WORKER_SILENCE_SECONDS,
        http="mlinfra.serving._http:GuardedHTTP",  # deadlines on request heads (slowloris)
        ws="none",
        proxy_headers=False,  # nothing reads the client's address; its middleware costs 3%
    )
    run_master(config, handover=args.handover, take_over=args.take_over)


def app_from_environment() -> object:
    """The app for one worker, built from the options `main` left in the environment."""
    from ._master import die_with_master

    die_with_master()
    put_first_on_path(json.loads(os.environ.get(f"{_ENV_PREFIX}CODE_PATHS", "[]")))
    from ._app import ServerOptions, create_app

    token_file = os.environ.get(f"{_ENV_PREFIX}TOKEN_FILE")
    token = Path(token_file).read_text().strip() if token_file else None
    return create_app(
        ServerOptions(
            registry=Path(os.environ[f"{_ENV_PREFIX}REGISTRY"]),
            env=os.environ[f"{_ENV_PREFIX}ENV"],
            token=token or None,
            max_body_bytes=int(os.environ[f"{_ENV_PREFIX}MAX_BODY_BYTES"]),
            batch_window_ms=float(os.environ[f"{_ENV_PREFIX}BATCH_WINDOW_MS"]),
            max_batch=int(os.environ[f"{_ENV_PREFIX}MAX_BATCH"]),
            prediction_log=_log_settings(
                {
                    field: os.environ[_log_variable(field)]
                    for _, field, _, _ in _LOG_OPTIONS
                    if _log_variable(field) in os.environ
                }
            ),
        )
    )


if __name__ == "__main__":
    main()
