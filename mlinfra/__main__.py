"""`python -m mlinfra` runs the CLI."""

from .cli import main

main()
