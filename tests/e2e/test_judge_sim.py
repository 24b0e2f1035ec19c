"""The judge simulation's smoke run: 200 rollouts a scenario through the real engine."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests import judge_sim


def test_false_fails_stay_rare_and_regressions_are_caught(tmp_path: Path) -> None:
    out = tmp_path / "judge-sim.json"
    judge_sim.main(["--rollouts", "200", "--seed", "7", "--out", str(out)])
    report = json.loads(out.read_text())
    rates = {r["scenario"]: r for r in report["results"]}
    for found in rates.values():
        if found["bad"]:  # power >= 90 % at 1,000 rollouts; 85 % leaves room for 200
            assert found["rate"] >= 0.85, found
        else:  # at most 1 % over a rollout's every look; 4 of 200 would be 2 %
            assert found["caught"] <= 4, found
    assert set(report["targets"]) == {
        "a/a false fail <= 1%",
        "power +0.5pp errors >= 90%",
        "power +20% p99 >= 90%",
    }
