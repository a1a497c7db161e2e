"""What every command line of the project shares: one-line errors with a non-zero exit."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

import typer

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print `error: message` on one line to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given (expected, user-facing) errors into a one-line `error: ...` and a non-zero exit."""
    try:
        yield
    except errors as error:
        fail(str(error))
