"""Shared fixtures: the real demo models, trained once per test run (whatever the number of pytest-xdist workers)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.services import REPO
from tests.trained_cache import from_cache, training_key

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ["tests.suite_report"]  # the fault table and --record-timings

# Whole stacks (celery workers, services stopped and started, `producer local`, trained models): minutes in all.
# `-m "not slow"` leaves them out for a contributor's edit-test loop; CI runs everything.
SLOW_FOLDERS = {"pipeline", "faults", "deploy"}
SLOW_FILES = {"test_local.py", "test_own_model.py", "test_readme_own_model.py", "test_benchmarks.py", "test_cnn.py",
              "test_runtimes.py"}


# pytest-xdist (scripts/test.sh: --dist loadgroup) keeps a group on one process: a file's tests by default, so that
# its module fixtures are made once; the pipeline tests of one backend, so that its shared stack starts once (the two
# backends' groups run side by side); and each fault test, benchmark and `producer local` test alone (each makes its
# own stack or workers), so that the long ones spread over the processes.
ONE_GROUP_FOLDERS = {"pipeline"}
BACKENDS = ("sqlite", "postgresql")  # the pipeline stacks' parameter, the last of a test's id
EACH_ALONE = {"faults", "test_benchmarks.py", "test_local.py"}


def is_slow(item) -> bool:
    return item.path.parent.name in SLOW_FOLDERS or item.path.name in SLOW_FILES


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)
    # the long groups first (the pipeline's, then the other stacks, faults, `producer local`, benchmarks), so that no
    # process starts one near the end
    items.sort(key=lambda item: (item.path.parent.name not in ONE_GROUP_FOLDERS, not is_slow(item)))


def suite_group(nodeid: str) -> str:
    """The group a test belongs to, from its id (tests/pipeline/test_x.py::test_y[sqlite])."""
    path = nodeid.split("::")[0]
    folder, name = path.rpartition("/")[::2]
    parent = folder.rpartition("/")[2]
    if parent in EACH_ALONE or name in EACH_ALONE:
        return nodeid
    backend = nodeid.rpartition("[")[2].rstrip("]")
    if parent in ONE_GROUP_FOLDERS and backend in BACKENDS:
        return f"{folder}[{backend}]"
    return path


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup with the suite's groups, read from the tests' ids: pytest-xdist's own xdist_group marks no
    longer group anything under pytest 9.2, silently (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return suite_group(nodeid)

    return SuiteGroups(config, log)


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object], *, trained: object = None) -> Path:
    """A folder made once per test run and shared by every pytest-xdist worker: the first worker to ask calls
    make(folder) under a lock, the others wait for it and reuse the folder. A trained model's folder names its
    training settings (`trained`): it is then copied from the runs before when the code that trains it is unchanged
    (tests.trained_cache)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base folder, above the workers' own
    folder = root / "made-once" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder.parent / f"{name}.done").exists():
            folder.mkdir(exist_ok=True)
            if trained is None:
                make(folder)
            else:
                from_cache(name, training_key(trained), make, folder)
            (folder.parent / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def rectangles_model(tmp_path_factory) -> Path:
    """The demo rectangles CNN (default preset), trained through the real CLI."""
    folder = made_once(tmp_path_factory, "rectangles", lambda folder: run_cli(
        "models", "train", "--dataset", "rectangles", "--out", str(folder / "rectangles.keras")),
        trained=["rectangles", "default"])
    return folder / "rectangles.keras"


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory) -> Path:
    from models.cnn import train

    folder = made_once(tmp_path_factory, "digits", lambda folder: train("digits", folder / "digits.keras"),
                       trained=["digits", "default"])
    return folder / "digits.keras"


def seed_model(tmp_path_factory, dataset: str) -> Path:
    """The demo model of `dataset` trained with the real CLI on the article's 200 images (`--preset seed`: a quarter of
    a minute instead of a minute), once per run and kept across runs."""
    folder = made_once(tmp_path_factory, f"{dataset}-seed", lambda folder: run_cli(
        "models", "train", "--dataset", dataset, "--preset", "seed", "--out", str(folder / f"{dataset}.keras")),
        trained=[dataset, "seed"])
    return folder / f"{dataset}.keras"


@pytest.fixture(scope="session")
def tutorial(tmp_path_factory) -> tuple[Path, Path]:
    """A user's tutorial-style model (Rescaling(1/255) inside, logits out, no metadata) and its folder of PNGs."""
    from tests.tutorial import make_tutorial_model

    folder = made_once(tmp_path_factory, "tutorial", make_tutorial_model, trained=["tutorial"])
    return folder / "mine.keras", folder / "val"


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
