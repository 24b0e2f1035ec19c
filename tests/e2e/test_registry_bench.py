"""Smoke test of the registry benchmark: a `--quick` run completes and its report is whole.

Timings are not asserted against the targets (a shared machine is too noisy for that): only
that every operation was measured, on every store that was not skipped, with positive numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (
    "livez",
    "promote",
    "set_alias",
    "get_by_alias",
    "first_page",
    "mlflow_first_page",
    "mlflow_all_one_model",
    "mlflow_all_models",
)
PERCENTILES = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, with where it is (booleans are not numbers here)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, value


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "registry-bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.registry_bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a loaded shared machine starts servers slowly
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "promote" in done.stdout  # the table was printed
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def test_report_names_the_machine_and_the_targets(report: dict[str, Any]) -> None:
    assert report["machine"]["cpus"] >= 1
    assert report["machine"]["python"].count(".") == 2
    assert set(report["targets"]) == {
        "startup",
        "promote",
        "set_alias",
        "get_by_alias",
        "first_page",
        "mlflow_first_page",
        "mlflow_all_one_model",
        "mlflow_all_models",
    }
    assert all(t["limit"] > 0 for t in report["targets"].values())
    assert set(report["stores"]) == {"sqlite", "postgres"}


def test_sqlite_is_measured_whole(report: dict[str, Any]) -> None:
    check_store(report["stores"]["sqlite"], seeded=report["config"]["seed_versions"])


def test_postgres_is_measured_whole_or_skipped_with_a_reason(report: dict[str, Any]) -> None:
    found = report["stores"]["postgres"]
    if "skipped" in found:
        assert not os.environ.get("MODELYARD_REQUIRE_POSTGRES"), found["skipped"]
        assert found["skipped"]
        return
    check_store(found, seeded=report["config"]["seed_versions"])


def check_store(found: dict[str, Any], seeded: int) -> None:
    assert "error" not in found, found.get("error")
    startup = found["startup"]
    assert startup["n"] == len(startup["samples_s"]) >= 1
    assert startup["median_s"] <= startup["max_s"]
    assert set(found["operations"]) == set(OPERATIONS)
    for name, result in found["operations"].items():
        assert result["n"] >= 2, name
        values = [result[p] for p in PERCENTILES]
        assert values == sorted(values), f"{name}: percentiles out of order {values}"
        if "target" in result:
            assert isinstance(result["pass"], bool)
    assert found["operations"]["first_page"]["seeded_versions"] == seeded
    assert found["operations"]["mlflow_first_page"]["seeded_versions"] == seeded
    assert found["operations"]["mlflow_all_one_model"]["seeded_versions"] == seeded
    assert found["operations"]["mlflow_all_models"]["seeded_versions"] == seeded
    assert found["operations"]["mlflow_all_models"]["seeded_models"] >= 1
    not_positive = [(where, n) for where, n in numbers(found) if n <= 0]
    assert not not_positive, f"measured numbers must be positive: {not_positive}"
