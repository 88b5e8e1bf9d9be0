"""`python -m mlinfra.rollout`: drive an env's running rollout to its end, detached from the CLI."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .._code_paths import add_code_path_option, put_first_on_path
from ..errors import MlinfraError
from . import TOKEN_VARIABLE, Target, drive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlinfra.rollout", description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--url", required=True, help="the env's serving URL, for /metrics")
    add_code_path_option(parser)
    args = parser.parse_args(argv)
    put_first_on_path(args.code_paths)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /metrics read
    target = Target(
        registry=args.registry, env=args.env, url=args.url, token=os.environ.get(TOKEN_VARIABLE)
    )
    try:
        rollout = drive(
            target,
            on_result=lambda r, result: logging.info(
                "%s at %s%%: %s", result.verdict, result.weight, "; ".join(result.reasons)
            ),
        )
    except MlinfraError as exc:
        logging.error("%s", exc)
        return exc.exit_code
    logging.info("rollout %s %s: %s", rollout.id, rollout.phase, rollout.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
