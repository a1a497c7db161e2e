"""What every command line of the project shares: one-line errors with a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print `error: message` on one line to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)
