"""The experiment simulation's smoke run (`--quick`): it runs through the real engine, checks
a sample of its reads against `results` itself, and writes its report with every figure."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests import experiment_sim


def test_the_quick_simulation_runs_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "experiment-sim.json"
    experiment_sim.main(["--quick", "--seed", "7", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["alpha"] == 0.05
    assert [r["metric"] for r in report["a_a"]] == ["conversion", "reward"]
    for row in report["a_a"]:
        assert row["checked_against_results"] > 0  # the verdicts agree with `results`
        always, fixed = row["always_valid"], row["fixed_horizon"]
        low, high = always["ci95"]
        assert low <= always["rate"] <= high
        assert always["ever_winner"] <= fixed["ever_winner"]  # peeking inflates the fixed test
    power = report["power"]
    assert 0 < power["power"] <= 1 and power["median_outcomes_per_arm"] <= 20_000
    assert list(power["power_by_outcomes_per_arm"])[-1] == "40000"
    better, worse, same = report["bandit"]
    assert better["regret_ratio"] < 1 and worse["regret_ratio"] < 1  # beats 50/50 either way
    assert same["regret_ratio"] is None and "ever_winner" in same
    assert set(report["targets"]) == {
        "a/a ever-winner <= 5% (conversion)",
        "a/a ever-winner <= 5% (reward)",
        "power +10% within 20,000/arm >= 80%",
        "bandit regret < fixed 50/50",
    }
