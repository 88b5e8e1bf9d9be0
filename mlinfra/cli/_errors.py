"""The one place where errors meet the user: a line for known errors, a log file for bugs."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from typer import Abort

try:  # recent typer vendors click; older releases use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click import ClickException  # type: ignore[no-redef,assignment]

from .._fs import atomic_write_text
from ..errors import MlinfraError
from ._output import error_console

__all__ = ["EXIT_INTERRUPTED", "EXIT_UNEXPECTED", "run_guarded"]

EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


def run_guarded(command: Callable[[], object]) -> int:
    """Run the CLI; turn every outcome into an exit code CI can trust."""
    try:
        result = command()
    except Abort:
        error_console.print("[yellow]aborted[/]")
        return EXIT_INTERRUPTED
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except MlinfraError as exc:
        error_console.print(f"[bold red]error:[/] {escape(_one_line(str(exc)))}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        error_console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # noqa: BLE001 - the last resort that keeps tracebacks off screen
        log = _write_crash_log(exc)
        error_console.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(_one_line(str(exc)))}\n"
            f"The traceback is {'above' if log is None else f'in {log}'}; "
            "please attach it to a bug report.",
            soft_wrap=True,
        )
        return EXIT_UNEXPECTED
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C into this code before we see it
        error_console.print("[yellow]interrupted[/]")
    return result if isinstance(result, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _write_crash_log(exc: BaseException) -> Path | None:
    """The traceback in a file only its owner can read (it may hold paths and data); on stderr,
    and None, if the file cannot be written."""
    folder = Path(os.environ.get("MLINFRA_LOG_DIR", tempfile.gettempdir()))
    path = folder / f"mlinfra-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(exc))
    try:
        atomic_write_text(path, f"mlinfra {' '.join(sys.argv[1:])}\n\n{text}", mode=0o600)
    except OSError:
        sys.stderr.write(text)
        return None
    return path
