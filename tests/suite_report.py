"""What the test session says at its end, from the reports every test sent (so it works the same with pytest-xdist,
whose workers send only reports): the table of faults injected, and, with `--record-timings FILE`, the run's wall
time, outcome and slowest tests kept as JSON (docs/figures/suite.json is rendered into docs/development.md)."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.figures import commit
from core.settings import cpu_count

FAULT_COLUMNS = ["faults", "images", "rows", "ok", "failed", "retried", "lost", "duplicated", "seconds"]
_started = time.monotonic()


def pytest_addoption(parser):
    group = parser.getgroup("suite timings")
    group.addoption("--record-timings", metavar="FILE", help="Add this run's wall time, outcome and slowest ten tests "
                    "to FILE (JSON; a run with the same --record-label is replaced).")
    group.addoption("--record-label", default="", help="The run's name in --record-timings' FILE.")
    group.addoption("--record-neighbour", default="", help="What else ran on the machine meanwhile, if anything.")


def pytest_sessionstart(session):
    global _started
    _started = time.monotonic()


def _reports(terminalreporter):
    return [report for reports in terminalreporter.stats.values() for report in reports if hasattr(report, "when")]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reports = _reports(terminalreporter)
    faults = [value for report in reports if report.when == "teardown"
              for name, value in report.user_properties if name == "fault"]
    if faults:
        width = max(len(row["fault"]) for row in faults)
        terminalreporter.section("faults injected")
        terminalreporter.write_line(f"{'fault':<{width}}  " + "  ".join(f"{c:>10}" for c in FAULT_COLUMNS))
        for row in faults:
            terminalreporter.write_line(f"{row['fault']:<{width}}  " + "  ".join(f"{row[c]!s:>10}" for c in FAULT_COLUMNS))
    if path := config.getoption("record_timings"):
        record(Path(path), config, reports, time.monotonic() - _started, faults)
        terminalreporter.write_line(f"timings recorded in {path}")


def record(path: Path, config, reports, wall_s: float, faults: list[dict]) -> None:
    per_test: dict[str, float] = defaultdict(float)
    outcome: dict[str, str] = {}
    for report in reports:
        per_test[report.nodeid] += report.duration
        # a test's outcome is its call's, unless a setup or teardown failed or skipped it
        if (report.when == "call" or report.outcome != "passed") and outcome.get(report.nodeid, "passed") == "passed":
            outcome[report.nodeid] = report.outcome
    counts = {state: sum(1 for o in outcome.values() if o == state) for state in ("passed", "failed", "skipped")}
    slowest = sorted(per_test.items(), key=lambda item: -item[1])[:10]
    run = {
        "label": config.getoption("record_label"),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "cores": cpu_count(),
        "arguments": " ".join(config.invocation_params.args),
        "processes": config.getoption("numprocesses", None) or 0,
        "neighbour": config.getoption("record_neighbour"),
        "wall_s": round(wall_s, 1),
        **counts,
        "lost": sum(row["lost"] for row in faults),
        "duplicated": sum(row["duplicated"] for row in faults),
        "fault_rows": len(faults),
        "slowest": [[nodeid, round(seconds, 1)] for nodeid, seconds in slowest],
        "python": sys.version.split()[0],
    }
    saved = json.loads(path.read_text()) if path.exists() else {"benchmark": "suite", "runs": []}
    saved["runs"] = [r for r in saved["runs"] if r["label"] != run["label"]] + [run]
    path.write_text(json.dumps(saved, indent=1) + "\n")
