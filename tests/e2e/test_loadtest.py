"""The load tests' one command (`python -m loadtests.loadrun`) against a real `modelyard serve`
with the iris example: the steady smoke holds the steady scenario's budgets and writes its
report (JSON + PNG); with the example's fault switch adding 200 ms the same budgets break, the
run exits 1 and says which budget broke and by how much.

locust runs only as a subprocess of loadrun (gevent must never patch the test process); one
modelyard process serves both models, `iris` (healthy) and `iris-slow` (IRIS_FAULT_LATENCY_MS
=200), for the whole module.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.yard_setup import Target, fault_tags
from modelyard.processes import ModelyardProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMOKE_S = 12  # seconds of load; with startup and the direct phase the smoke stays under 60 s


@pytest.fixture(scope="module")
def yard(
    iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    token = "load-" + secrets.token_urlsafe(24)
    env = {"MODELYARD_GATEWAY_REPORT_S": "1"}
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), token, extra_env=env)
    proc.start(timeout=60)
    try:
        target = Target(proc.url, token)
        v1, _ = iris_bentos
        healthy = target.serve_iris("iris", v1, {})
        slow = target.serve_iris("iris-slow", v1, fault_tags(latency_ms=200))
        target.wait_served("iris", healthy)
        target.wait_served("iris-slow", slow)
        yield target
    finally:
        proc.stop()


def loadrun(
    target: Target, out: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [
        sys.executable,
        "-m",
        "loadtests.loadrun",
        "steady",
        "--host",
        target.url,
        "--token",
        target.token,
        "--out-dir",
        str(out),
        *args,
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    return done, time.monotonic() - started


def report_files(out: Path) -> tuple[dict[str, Any], Path]:
    (json_path,) = out.glob("steady-*.json")
    png = json_path.with_suffix(".png")
    return json.loads(json_path.read_text()), png


def test_the_steady_smoke_holds_its_budgets_and_writes_its_report(
    yard: Target, tmp_path: Path
) -> None:
    done, wall = loadrun(yard, tmp_path, "--model", "iris", "--duration", str(SMOKE_S))
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert "every budget held" in done.stdout, output
    assert wall < 60, f"the smoke took {wall:.0f} s"
    report, png = report_files(tmp_path)
    assert report["kind"] == "modelyard-loadtest/1" and report["passed"] is True
    summary = report["summary"]["classify"]
    assert summary["requests"] >= 20 * SMOKE_S and summary["errors"] == 0, summary
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"], summary
    direct = report["summary"]["classify direct"]  # one user calling BentoML itself
    assert direct["requests"] >= 2 * SMOKE_S and direct["errors"] == 0, direct
    budgets = report["budgets"]
    assert {b["metric"] for b in budgets} == {"p50_ms", "p95_ms", "p99_ms", "error_rate", "rps"}
    rows = {r["what"].strip(): r for r in report["breakdown"]["rows"]}
    assert all(
        r["mean_ms"] is not None and r["mean_ms"] > 0
        for w, r in rows.items()
        if not w.startswith(("in the gateway itself", "added"))
    ), rows
    timeline = report["timeline"]["series"]
    assert any(name.startswith("classify [v1 stable]") for name in timeline), timeline
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_the_fault_switch_breaks_the_latency_budget_and_says_by_how_much(
    yard: Target, tmp_path: Path
) -> None:
    done, _ = loadrun(yard, tmp_path, "--model", "iris-slow", "--duration", "4", "--no-direct")
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 1, output
    assert "budget(s) broken" in done.stdout, output
    found = re.search(
        r"BROKEN  classify p50_ms: ([\d.]+) ms > 60 ms: ([\d.]+) ms over the budget, \+\d+%",
        done.stdout,
    )
    assert found, output
    p50, over = float(found[1]), float(found[2])
    assert p50 >= 200 and over == pytest.approx(p50 - 60, abs=0.1), found[0]
    report, png = report_files(tmp_path)
    assert report["passed"] is False
    p50_verdict = next(b for b in report["budgets"] if b["metric"] == "p50_ms")
    assert p50_verdict["passed"] is False and p50_verdict["over_by"] >= 140
    assert png.read_bytes().startswith(PNG_SIGNATURE)
