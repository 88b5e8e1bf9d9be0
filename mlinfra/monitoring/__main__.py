"""`python -m mlinfra.monitoring --spec FILE`: an env's drift monitor, run by its supervisor
(or with `--once` by a scheduler such as a Kubernetes CronJob: one check, then exit)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .._fs import read_record
from ._monitor import run_monitor
from ._spec import MonitorSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlinfra.monitoring", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="the monitor.json to run")
    parser.add_argument("--once", action="store_true", help="check once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s"
    )
    spec = read_record(args.spec, MonitorSpec)
    if spec is None:
        print(f"no monitor spec at {args.spec}; `mlinfra up` writes it", file=sys.stderr)
        return 2
    return run_monitor(spec, once=args.once)


if __name__ == "__main__":
    sys.exit(main())
