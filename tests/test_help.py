"""Every command of every CLI, discovered from its typer app (not listed by hand), answers --help."""

from __future__ import annotations

import importlib

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import run_cli

PACKAGES = ("producer", "db", "models")


def commands(package: str) -> list[str]:
    app = importlib.import_module(f"{package}.cli").app
    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_command_has_help(package):
    app = importlib.import_module(f"{package}.cli").app
    names = commands(package)
    assert names, f"{package} registers no commands"
    for name in names:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output and "--help" in result.output, (name, result.output)
    listed = run_cli(package, "--help").stdout  # the real entry point, as a user runs it
    assert all(name in listed for name in names)
