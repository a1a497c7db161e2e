"""Nothing outside tests/ imports `tests` or `pytest`: the product and the benchmarks (users' tools) run after `pip
install -e .` alone. Read from every module's source, and checked for real: the benchmarks imported and their --help
run in a Python where importing either fails."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.services import REPO

FORBIDDEN = ("tests", "pytest", "_pytest")
SKIPPED = {"tests", "build", "dist", "data", "node_modules", "__pycache__"}  # besides hidden folders (.venv, .git)


def modules_outside_tests() -> list[Path]:
    found = []
    for path in sorted(REPO.rglob("*.py")):
        parts = path.relative_to(REPO).parts[:-1]
        if not any(part in SKIPPED or part.startswith(".") or part.endswith(".egg-info") for part in parts):
            found.append(path)
    return found


def forbidden_imports(path: Path) -> list[str]:
    """`file:line module` for each import of a forbidden package, at any depth (in functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names
                  if name.split(".")[0] in FORBIDDEN]
    return found


def test_no_module_outside_tests_imports_tests_or_pytest():
    modules = modules_outside_tests()
    assert REPO / "benchmarks" / "scale.py" in modules and REPO / "db" / "models.py" in modules
    assert [hit for path in modules for hit in forbidden_imports(path)] == []


def test_the_benchmarks_import_and_answer_help_without_tests_or_pytest():
    script = textwrap.dedent(f"""
        import importlib, pkgutil, runpy, sys
        for name in {FORBIDDEN!r}:
            sys.modules[name] = None  # any import of it raises ImportError
        import benchmarks
        for module in pkgutil.iter_modules(benchmarks.__path__):
            importlib.import_module(f"benchmarks.{{module.name}}")
        for name in ("benchmarks.scale", "benchmarks.pipeline"):
            sys.argv = [name, "--help"]
            try:
                runpy.run_module(name, run_name="__main__")
            except SystemExit as done:
                assert done.code in (0, None), (name, done.code)
            else:
                raise AssertionError(f"{{name}} --help did not exit")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout
