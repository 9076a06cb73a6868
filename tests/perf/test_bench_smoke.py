"""The benchmark suite at a tiny size, so that it cannot rot: the runner (tests/perf/run.py)
starts its own stack, runs every scenario and writes JSON with numbers for each of them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

RUNNER = Path(__file__).resolve().parent / "run.py"
SCENARIOS = (
    "search",
    "create",
    "import",
    "index",
    "freshness",
    "matches",
    "rss",
    "growth",
    "incentives",
    "deliveries",
    "rebuild",
)
WITH_BASELINE = ("search", "create", "import", "index", "deliveries")


def test_every_scenario_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert set(report["scenarios"]) >= set(SCENARIOS)
    rows = report["rows"]
    for scenario in SCENARIOS:
        mine = [row for row in rows if row["scenario"] == scenario]
        assert mine, f"no figure for {scenario}"
        for row in mine:
            assert isinstance(row["measured"], int | float) and math.isfinite(row["measured"])
            assert row["measured"] > 0, row
        if scenario in WITH_BASELINE:  # measured next to its raw baseline, with the ratio
            assert any(r["baseline"] and r["ratio"] and r["ratio"] > 0 for r in mine), mine
    # The table is printed with a met? column for every target.
    assert "| met?" in done.stdout
    assert all(row["met"] in (True, False) for row in rows if row["scenario"] != "growth")
    assert len(report["scenarios"]["growth"]) == 2
