"""`python -m mlinfra.serving`: the model server of one env, a master process and N uvicorn
workers on one listening socket (see _master.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from .._code_paths import add_code_path_option, put_first_on_path, record_code_paths
from ._deployments import deployment_dir

# Workers are separate processes started by uvicorn from an import string, so the options reach
# them through the environment.
_ENV_PREFIX = "MLINFRA_SERVING_"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlinfra.serving", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--registry", type=Path, required=True, help="the env's model registry")
    parser.add_argument("--env", required=True, help="the env whose deployment table to serve")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token to require")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--handover", type=Path, help="unix socket at which to give the port to a successor"
    )
    parser.add_argument(
        "--take-over", type=Path, help="take the port from the server handing it over there"
    )
    add_code_path_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.token_file is not None and not args.token_file.is_file():
        sys.exit(f"token file {args.token_file} does not exist")
    os.environ[f"{_ENV_PREFIX}REGISTRY"] = str(args.registry.resolve())
    os.environ[f"{_ENV_PREFIX}ENV"] = args.env
    os.environ[f"{_ENV_PREFIX}MAX_BODY_BYTES"] = str(args.max_body_bytes)
    if args.token_file is not None:
        os.environ[f"{_ENV_PREFIX}TOKEN_FILE"] = str(args.token_file.resolve())
    os.environ[f"{_ENV_PREFIX}CODE_PATHS"] = json.dumps(args.code_paths)
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
        http="mlinfra.serving._http:GuardedHTTP",  # deadlines on request heads (slowloris)
        ws="none",
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
        )
    )


if __name__ == "__main__":
    main()
