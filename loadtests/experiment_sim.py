"""Simulated A/B experiments through the real engine: false winners when results are read
after every batch, power, and the bandit's regret.

    python -m loadtests.experiment_sim            # the full run (a few minutes)
    python -m loadtests.experiment_sim --quick    # a smoke run (seconds)
    python -m loadtests.experiment_sim --out loadtests/results/experiment-sim.json

A/A: 1,000 experiments per metric, two identical arms, read after every 100 outcomes per arm up
to 10,000 (100 reads). Conversions at 10 %; rewards lognormal(0, 1) (skewed like revenue per
user: mean 1.65, sd 2.16). An experiment "shows a winner" when a read's verdict is `winner`
(each arm has its `min_sample_per_arm` of 100 and the p-value is below alpha = 5 %). Reported
for the always-valid results and, in the same run, for the fixed-horizon test (z test, Welch
t test) read the same way; with exact (Clopper-Pearson) 95 % intervals.

Power: 1,000 experiments, 10 % against 11 % conversions (+10 % relative), read every 100
outcomes per arm up to 40,000: the share that find the lift (v2 the winner) within 20,000 per
arm, the median outcomes per arm at the first winning read, and the share by each 5,000.

Bandit: two arms (the control is the Production version), 10 % against 12 % conversions and
the reverse, and an A/A pair; 200 experiments each, 30 updates of 10,000 requests. Each update
runs `registry.experiments.bandit.update` on the counted (enrolled) outcomes so far; the
requests follow the served shares, the counted outcomes the enrolled ones. Regret: expected
conversions lost against always serving the best arm, over all requests, against a fixed
50/50 split of the same requests. The A/A pair also reads its results after every update.

The reads go through the vectorised core of the results (`readout.compare`, `fixed.compare`,
the functions `readout.results` calls); a sample of reads also goes through `results` itself
and must give the same verdicts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
from scipy.stats import binomtest

from registry.experiments import bandit, fixed, readout, sequential
from registry.experiments.fixed import Sums
from registry.experiments.stats import Experiment, ExperimentSpec, Tally, results, start

LOOK: Final = 100  # outcomes per arm between reads
AA_READS: Final = 100  # up to 10,000 per arm
POWER_READS: Final = 400  # up to 40,000 per arm
POWER_WITHIN: Final = 20_000
BASE: Final = 0.10
LIFT: Final = 0.10  # relative
ALPHA: Final = 0.05
BANDIT_REQUESTS: Final = 10_000  # per update
BANDIT_UPDATES: Final = 30
DEFAULT_OUT: Final = Path(__file__).parent / "results" / "experiment-sim.json"
T0: Final = datetime(2026, 1, 1, tzinfo=UTC)


def experiment(metric: str, mode: str = "fixed") -> Experiment:
    body = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": {"header": "x-user"},
        "metric": metric,
        "alpha": ALPHA,
        "mode": mode,
    }
    spec = msgspec.convert(body, ExperimentSpec)
    return start(spec, id="ex-sim", model="sim", production=1, actor="sim", now=T0, known={1, 2})


def interval(k: int, n: int) -> list[float]:
    found = binomtest(k, n).proportion_ci(0.95)
    return [round(found.low, 4), round(found.high, 4)]


def draws(metric: str, rng: np.random.Generator, shape: tuple[int, int], rate: float) -> Sums:
    """Cumulative tallies of `shape` = (experiments, reads), LOOK outcomes per read."""
    if metric == "conversion":
        total = rng.binomial(LOOK, rate, shape).cumsum(1).astype(float)
        return Sums(counts(shape), total, total)
    total, total_sq = np.zeros(shape), np.zeros(shape)
    for j in range(shape[1]):  # LOOK lognormal outcomes per experiment and read
        x = rng.lognormal(0.0, 1.0, (shape[0], LOOK))
        total[:, j], total_sq[:, j] = x.sum(1), (x * x).sum(1)
    return Sums(counts(shape), total.cumsum(1), total_sq.cumsum(1))


def counts(shape: tuple[int, int]) -> np.ndarray:
    return np.broadcast_to(np.arange(1, shape[1] + 1) * float(LOOK), shape)


def winners(ex: Experiment, arm: Sums, control: Sums) -> tuple[np.ndarray, np.ndarray]:
    """Which reads say `winner`: always valid, and fixed-horizon (two arms: p below alpha and
    both arms at their minimum sample)."""
    ready = np.asarray(arm.n) >= ex.spec.min_sample_per_arm
    always = readout.compare(arm, control, ALPHA, ex.spec.mde)[3] < ALPHA
    classic = fixed.compare(ex.spec.metric, arm, control)[3] < ALPHA
    return ready & always, ready & classic


def check_against_results(
    ex: Experiment, arm: Sums, control: Sums, flags: tuple[np.ndarray, np.ndarray], picks: int
) -> int:
    """The verdicts of `results` itself at `picks` reads (and every first winning read)."""
    rng = np.random.default_rng(0)
    rows, cols = flags[0].shape
    first = [(i, int(np.argmax(flags[0][i]))) for i in range(rows) if flags[0][i].any()]
    sample = [(int(rng.integers(rows)), int(rng.integers(cols))) for _ in range(picks)]
    for i, j in sample + first:
        tallies = {}
        for version, sums in ((2, arm), (1, control)):
            n, total, total_sq = sums.arrays()
            tallies[version] = Tally(
                version, int(n[i, j]), float(total[i, j]), float(total_sq[i, j])
            )
        found = results(ex, tallies)
        assert (found.verdict == "winner") == bool(flags[0][i, j]), (i, j, found)
        assert found.fixed_horizon is not None
        assert (found.fixed_horizon.verdict == "winner") == bool(flags[1][i, j]), (i, j)
    return len(sample) + len(first)


def a_a(metric: str, sims: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    ex = experiment(metric)
    arm, control = (draws(metric, rng, (sims, AA_READS), BASE) for _ in range(2))
    flags = winners(ex, arm, control)
    checked = check_against_results(ex, arm, control, flags, picks=200)
    always, classic = (int(f.any(1).sum()) for f in flags)
    return {
        "metric": metric,
        "experiments": sims,
        "reads": AA_READS,
        "always_valid": {
            "ever_winner": always,
            "rate": always / sims,
            "ci95": interval(always, sims),
        },
        "fixed_horizon": {
            "ever_winner": classic,
            "rate": classic / sims,
            "ci95": interval(classic, sims),
        },
        "checked_against_results": checked,
        "seconds": round(time.perf_counter() - started, 1),
    }


def power(sims: int, reads: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    ex = experiment("conversion")
    arm = draws("conversion", rng, (sims, reads), BASE * (1 + LIFT))
    control = draws("conversion", rng, (sims, reads), BASE)
    flags = winners(ex, arm, control)
    check_against_results(ex, arm, control, flags, picks=100)
    diff = np.asarray(arm.total) - np.asarray(control.total)
    right = flags[0] & (diff > 0)  # v2 the winner
    first = np.where(right.any(1), np.argmax(right, 1) + 1, reads + 1) * LOOK
    within = POWER_WITHIN // LOOK
    found = first <= POWER_WITHIN
    by = {str(n): float((first <= n).mean()) for n in range(5000, reads * LOOK + 1, 5000)}
    once = flags[1][:, min(within, reads) - 1] & (diff[:, min(within, reads) - 1] > 0)
    return {
        "rates": [BASE, BASE * (1 + LIFT)],
        "experiments": sims,
        "within_per_arm": POWER_WITHIN,
        "power": float(found.mean()),
        "ci95": interval(int(found.sum()), sims),
        "median_outcomes_per_arm": float(np.median(first[found])) if found.any() else None,
        "median_outcomes_per_arm_all": float(np.median(first)),  # not found: past the horizon
        "power_by_outcomes_per_arm": by,
        "fixed_horizon_read_once_at_20000": float(once.mean()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def one_bandit(
    rates: tuple[float, float], rng: np.random.Generator, updates: int, read: bool
) -> tuple[float, float, float, float, bool]:
    """(regret, regret of 50/50, counted share, v2's final share, ever a winner)."""
    ex = experiment("conversion", mode="bandit")
    p = {1: rates[0], 2: rates[1]}
    tallies = {v: Tally(v) for v in p}
    best = max(rates)
    regret = 0.0
    counted = 0.0
    ever = False
    for u in range(updates):
        assert ex.allocation is not None
        for span in ex.allocation.arms:
            regret += BANDIT_REQUESTS * span.served / 10_000 * (best - p[span.version])
            n = int(rng.binomial(BANDIT_REQUESTS, (span.end - span.start) / 10_000))
            k = float(rng.binomial(n, p[span.version]))
            old = tallies[span.version]
            tallies[span.version] = Tally(span.version, old.n + n, old.total + k, old.total_sq + k)
            counted += n
        if read:
            ever = ever or results(ex, tallies).verdict == "winner"
        now = T0 + timedelta(hours=u + 1)
        ex = msgspec.structs.replace(ex, allocation=bandit.update(ex, tallies, rng, now))
    assert ex.allocation is not None
    even = BANDIT_REQUESTS * updates * 0.5 * (best - min(rates))
    share = {s.version: s.served / 100 for s in ex.allocation.arms}
    return regret, even, counted / (BANDIT_REQUESTS * updates), share[2], ever


def bandits(sims: int, updates: int, seed: int) -> list[dict[str, Any]]:
    found = []
    for i, rates in enumerate(((0.10, 0.12), (0.12, 0.10), (0.10, 0.10))):
        started = time.perf_counter()
        rng = np.random.default_rng(seed + i)
        aa = rates[0] == rates[1]
        runs = np.array([one_bandit(rates, rng, updates, read=aa) for _ in range(sims)])
        row: dict[str, Any] = {
            "rates": {"v1 (control)": rates[0], "v2": rates[1]},
            "experiments": sims,
            "updates": updates,
            "requests_per_update": BANDIT_REQUESTS,
            "regret_mean": float(runs[:, 0].mean()),
            "regret_fixed_50_50": float(runs[:, 1].mean()),
            "regret_ratio": float(runs[:, 0].mean() / runs[:, 1].mean()) if not aa else None,
            "counted_share_mean": float(runs[:, 2].mean()),
            "v2_final_share_median": float(np.median(runs[:, 3])),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if aa:
            ever = int(runs[:, 4].sum())
            row["ever_winner"] = {"count": ever, "rate": ever / sims, "ci95": interval(ever, sims)}
        found.append(row)
    return found


def targets(report: dict[str, Any]) -> dict[str, bool]:
    aa = {r["metric"]: r["always_valid"]["rate"] for r in report["a_a"]}
    bandit_rows = [r for r in report["bandit"] if r["regret_ratio"] is not None]
    return {
        "a/a ever-winner <= 5% (conversion)": aa["conversion"] <= ALPHA,
        "a/a ever-winner <= 5% (reward)": aa["reward"] <= ALPHA,
        "power +10% within 20,000/arm >= 80%": report["power"]["power"] >= 0.80,
        "bandit regret < fixed 50/50": all(r["regret_ratio"] < 1 for r in bandit_rows),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.experiment_sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few experiments")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sims, power_sims, bandit_sims = (60, 60, 8) if args.quick else (1000, 1000, 200)
    updates = 10 if args.quick else BANDIT_UPDATES
    started = time.perf_counter()
    report: dict[str, Any] = {
        "quick": args.quick,
        "alpha": ALPHA,
        "mixture": {
            "mde": readout.MDE,
            "point_share": sequential.POINT_SHARE,
            "improvement_share": sequential.IMPROVEMENT_SHARE,
            "normal_sd": sequential.TAU_SD,
        },
        "look_every_per_arm": LOOK,
        "a_a": [a_a(m, sims, args.seed + i) for i, m in enumerate(("conversion", "reward"))],
        "power": power(power_sims, POWER_READS, args.seed + 2),
        "bandit": bandits(bandit_sims, updates, args.seed + 3),
    }
    report["targets"] = verdicts = targets(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(verdicts.values()) else 1


def print_table(report: dict[str, Any]) -> None:
    for r in report["a_a"]:
        av, fh = r["always_valid"], r["fixed_horizon"]
        print(
            f"A/A {r['metric']:<10} ever a winner in {r['reads']} reads:"
            f" always-valid {av['rate']:6.1%} {av['ci95']},"
            f" fixed-horizon {fh['rate']:6.1%} {fh['ci95']}  ({r['experiments']} experiments)"
        )
    p = report["power"]
    print(
        f"power +10% on 10% within {p['within_per_arm']:,}/arm: {p['power']:.1%} {p['ci95']},"
        f" median {p['median_outcomes_per_arm']} outcomes/arm when found;"
        f" by outcomes/arm {p['power_by_outcomes_per_arm']}"
    )
    for b in report["bandit"]:
        ratio = "" if b["regret_ratio"] is None else f" ({b['regret_ratio']:.2f}x)"
        extra = f", ever a winner {b['ever_winner']['rate']:.1%}" if "ever_winner" in b else ""
        print(
            f"bandit {b['rates']}: regret {b['regret_mean']:.0f} vs 50/50"
            f" {b['regret_fixed_50_50']:.0f}{ratio}, counted {b['counted_share_mean']:.0%},"
            f" v2 ends at {b['v2_final_share_median']:.0f}%{extra}"
        )
    m = report["mixture"]
    print(
        f"always-valid test: mixture tuned to the MDE ({m['mde']:.0%} of the control's mean):"
        f" point masses {m['point_share']:.0%} ({m['improvement_share']:.0%} of them on"
        f" improvements), normal {1 - m['point_share']:.0%} (tau {m['normal_sd']} sd)"
    )
    for name, ok in report["targets"].items():
        print(f"{name:<40} {'PASS' if ok else 'MISS'}")
    print(f"{report['seconds']} s")


if __name__ == "__main__":
    raise SystemExit(main())
