"""Shared fixtures: the real demo models, trained once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def rectangles_model(model_dir) -> Path:
    """The demo rectangles CNN (default preset), trained through the real CLI."""
    path = model_dir / "rectangles.keras"
    run_cli("models", "train", "--dataset", "rectangles", "--out", str(path))
    return path


@pytest.fixture(scope="session")
def digits_model(model_dir) -> Path:
    from models.cnn import train

    return train("digits", model_dir / "digits.keras").path


@pytest.fixture(scope="session")
def tutorial(tmp_path_factory) -> tuple[Path, Path]:
    """A user's tutorial-style model (Rescaling(1/255) inside, logits out, no metadata) and its folder of PNGs."""
    from tests.tutorial import make_tutorial_model

    return make_tutorial_model(tmp_path_factory.mktemp("tutorial"))


def run_cli(package: str, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m package args...` in a subprocess, as a user would."""
    return run_python("-m", package, *args, check=check, env=env)


def invoke(package: str, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m package args...` in this process (typer's CliRunner): the same command line, without a
    Python start, for commands that need no worker. The result reads like run_cli's."""
    import importlib

    from typer.testing import CliRunner

    app = importlib.import_module(f"{package}.cli").app
    result = CliRunner().invoke(app, list(args), env={k: str(v) for k, v in (env or {}).items()}, catch_exceptions=False)
    if check and result.exit_code != 0:
        raise AssertionError(f"python -m {package} {' '.join(args)} failed ({result.exit_code}):\n{result.stderr}")
    return subprocess.CompletedProcess([package, *args], result.exit_code, result.stdout, result.stderr)


def run_python(*argv: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"python {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result
