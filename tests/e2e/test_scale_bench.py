"""Smoke test of the scale benchmark (`make bench-scale`), small: it runs end to end against a
real registry process and its report is whole; every simulated gateway got every change (none
missed) and a real gateway took the whole table. Timings are not judged here (a busy machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_scale_run_is_whole(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.scale_bench",
            *("--stores", "sqlite", "--models", "100", "300", "--gateways", "8"),
            *("--changes", "3", "--window-s", "2", "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report = json.loads(out.read_text())
    assert [r["models"] for r in report["runs"]] == [100, 300]
    for row in report["runs"]:
        change = row["change"]
        assert change["missed"] == 0 and change["gateways"] == 8 and change["changes"] == 3
        assert 0 < change["p50_s"] <= change["p99_s"] <= change["max_s"]
        assert row["first_table"]["models"] == row["models"]
        assert row["windows"]["reports"] >= 8 and row["gateway"]["rss_mb"] > 0
        assert set(row["verdicts"]) == set(report["targets"])
    assert len(report["growth"]) == 1 and "100 -> 300 models" in report["growth"][0]
