"""`python -m mlinfra.rollout`: drive an env's running rollout to its end, detached from the CLI.

By default this is the watchdog, which runs the driver as its child and starts it again if it
dies; `--no-watchdog` drives in this process. SIGTERM pauses the rollout and stops both.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from .._code_paths import add_code_path_option, put_first_on_path
from ..errors import MlinfraError
from . import Target, drive
from ._driver import NO_WATCHDOG_OPTION, TOKEN_VARIABLE, UNEXPECTED_EXIT, watch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlinfra.rollout", description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--url", required=True, help="the env's serving URL, for /metrics")
    parser.add_argument(
        NO_WATCHDOG_OPTION,
        dest="no_watchdog",
        action="store_true",
        help="drive in this process, with nothing to start it again if it dies",
    )
    add_code_path_option(parser)
    args = parser.parse_args(argv)
    put_first_on_path(args.code_paths)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /metrics read
    target = Target(
        registry=args.registry, env=args.env, url=args.url, token=os.environ.get(TOKEN_VARIABLE)
    )
    if not args.no_watchdog:
        return watch(target, args.code_paths)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        rollout = drive(
            target,
            stop=stop,
            on_result=lambda r, result: logging.info(
                "%s at %s%%: %s", result.verdict, result.weight, "; ".join(result.reasons)
            ),
        )
    except MlinfraError as exc:
        logging.error("%s", exc)
        return exc.exit_code
    except Exception:  # a bug: logged whole, and the watchdog starts a new driver
        logging.exception("the driver crashed")
        return UNEXPECTED_EXIT
    logging.info("rollout %s %s: %s", rollout.id, rollout.phase, rollout.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
