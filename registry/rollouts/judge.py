"""The canary judge: is the candidate worse than the baseline, on the same live traffic? Pure.

Three comparisons, each one-sided (only "the candidate is worse" can fail a rollout), plus the
absolute SLO gates:

- errors: Fisher's exact test on the error counts of every look so far in the rollout (the
  steps before this one are carried in `JudgeMemory`; candidate and baseline were always
  measured in the same windows, so pooling the steps is fair). Exact, so a baseline with no
  errors at all is no special case;
- latency: Mann-Whitney U on this step's latency samples (steps differ in load), failing only
  when the candidate's median is also at least `latency_effect_floor` (relative) and
  `latency_floor_ms` (absolute) slower: a significant but immaterial difference (a bigger model
  a few milliseconds slower) does not fail a rollout;
- the tail: Fisher's exact test of the share of each arm above the p99 of both arms pooled,
  failing only when the candidate's share is at least double the baseline's (and the
  candidate's p99 is `latency_floor_ms` slower): a regression of the slowest requests fails
  even when the medians barely move;
- SLO gates: a one-sided binomial test of the candidate's error rate against `max_error_rate`,
  and its p99 (point estimate, from 100 samples on) against `max_p99_ms`.

Repeated looks. Each look runs the tests again on more data, and a rollout may look many
times; testing each look at `alpha` would fail good candidates far more often than `alpha`.
So the budget is spent across looks (alpha spending, a union bound that holds under any
dependence between looks): the k-th look that runs the tests gets `alpha * 6 / (pi^2 k^2)`,
which sums to `alpha` over any number of looks, and within a look the budget is split evenly
between the three comparisons (and the error-rate gate). Looks below the minimum sample run no
test and spend nothing. The false-fail rate of a whole rollout is therefore at most `alpha`,
however long it runs; loadtests/judge_sim.py measures it, and the power, by simulation.

scipy.stats is imported where a test runs, not at the top: see registry/experiments/fixed.py.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

TAIL_QUANTILE: Final = 0.99
TAIL_FACTOR: Final = 2.0  # fails when the candidate's share above the pooled p99 doubles
MIN_FOR_P99: Final = 100
_SPEND: Final = 6 / math.pi**2  # sum over k >= 1 of 1/k^2 is pi^2/6


class Outcome(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class ArmStats(msgspec.Struct, frozen=True):
    """What one arm served over the analysis period."""

    requests: int
    errors: int
    latencies_ms: Sequence[float] = ()  # latency samples (a uniform sample of the requests)


class JudgeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_sample_per_arm: Annotated[int, msgspec.Meta(ge=1)] = 100
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=0.5)] = 0.01  # for the whole rollout
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_p99_ms: Annotated[float, msgspec.Meta(gt=0)] | None = None
    latency_effect_floor: Annotated[float, msgspec.Meta(ge=0)] = 0.1  # median +10 % at least
    latency_floor_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # and this much slower, in ms


class Counts(msgspec.Struct, frozen=True):
    baseline_requests: int = 0
    baseline_errors: int = 0
    candidate_requests: int = 0
    candidate_errors: int = 0


class JudgeMemory(msgspec.Struct, frozen=True):
    """What the judge carries from look to look of one rollout."""

    tested_looks: int = 0  # looks that ran the tests (and spent some of the budget)
    spent: float = 0.0  # the alpha spent so far
    finished_steps: Counts = Counts()  # error counts of the steps before this one
    this_step: Counts = Counts()  # as of the latest look in this step

    def next_step(self) -> JudgeMemory:
        """The rollout moved to its next step: this step's counts join the carried ones."""
        done, now = self.finished_steps, self.this_step
        return msgspec.structs.replace(self, finished_steps=_add(done, now), this_step=Counts())


class Check(msgspec.Struct, frozen=True):
    name: str  # errors | latency | tail | slo_error_rate | slo_p99
    outcome: Outcome
    statistic: float | None
    p_value: float | None
    e_value: float | None
    threshold: float | None  # the alpha this look gave the test, or the SLO bound
    detail: str


class ArmSummary(msgspec.Struct, frozen=True):
    requests: int
    errors: int
    error_rate: float
    samples: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class Verdict(msgspec.Struct, frozen=True):
    outcome: Outcome
    reason: str
    look: int
    baseline: ArmSummary
    candidate: ArmSummary
    checks: tuple[Check, ...] = ()


def _add(a: Counts, b: Counts) -> Counts:
    return Counts(
        a.baseline_requests + b.baseline_requests,
        a.baseline_errors + b.baseline_errors,
        a.candidate_requests + b.candidate_requests,
        a.candidate_errors + b.candidate_errors,
    )


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile of sorted samples (nearest rank), None when there are none."""
    if not ordered:
        return None
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def summary(arm: ArmStats, ordered: Sequence[float]) -> ArmSummary:
    rate = arm.errors / arm.requests if arm.requests else 0.0
    return ArmSummary(
        arm.requests,
        arm.errors,
        rate,
        len(ordered),
        quantile(ordered, 0.5),
        quantile(ordered, 0.95),
        quantile(ordered, 0.99),
    )


def look_alpha(alpha: float, tested_look: int) -> float:
    """The budget of the `tested_look`-th look that runs the tests (1-based)."""
    return alpha * _SPEND / tested_look**2


def judge(
    baseline: ArmStats, candidate: ArmStats, config: JudgeConfig, memory: JudgeMemory
) -> tuple[Verdict, JudgeMemory]:
    """Compare the arms of this step; `memory` carries the rollout's earlier looks."""
    b_sorted = sorted(x for x in baseline.latencies_ms if math.isfinite(x))
    c_sorted = sorted(x for x in candidate.latencies_ms if math.isfinite(x))
    b_sum, c_sum = summary(baseline, b_sorted), summary(candidate, c_sorted)
    short = [
        name
        for name, arm in (("baseline", baseline), ("candidate", candidate))
        if arm.requests < config.min_sample_per_arm
    ]
    if short:
        why = (
            f"too little traffic: {' and '.join(short)} below {config.min_sample_per_arm}"
            f" requests (baseline {baseline.requests}, candidate {candidate.requests})"
        )
        look = memory.tested_looks
        return Verdict(Outcome.INCONCLUSIVE, why, look, b_sum, c_sum), memory
    look = memory.tested_looks + 1
    budget = look_alpha(config.alpha, look)
    tests = 3 + (config.max_error_rate is not None)
    each = budget / tests
    this_step = Counts(baseline.requests, baseline.errors, candidate.requests, candidate.errors)
    pooled = _add(memory.finished_steps, this_step)
    checks = [
        _errors(pooled, each),
        _latency(b_sorted, c_sorted, each, config.latency_effect_floor, config.latency_floor_ms),
        _tail(b_sorted, c_sorted, each, config.latency_floor_ms),
    ]
    if config.max_error_rate is not None:
        checks.append(_slo_errors(candidate, config.max_error_rate, each))
    if config.max_p99_ms is not None:
        checks.append(_slo_p99(c_sorted, config.max_p99_ms))
    failed = [c for c in checks if c.outcome == Outcome.FAIL]
    if failed:
        outcome, why = Outcome.FAIL, "; ".join(c.detail for c in failed)
    else:
        outcome, why = Outcome.PASS, "no test found the candidate worse than the baseline"
    remembered = JudgeMemory(look, memory.spent + budget, memory.finished_steps, this_step)
    return Verdict(outcome, why, look, b_sum, c_sum, tuple(checks)), remembered


def _errors(pooled: Counts, alpha: float) -> Check:
    b_ok = pooled.baseline_requests - pooled.baseline_errors
    c_ok = pooled.candidate_requests - pooled.candidate_errors
    c_rate = pooled.candidate_errors / max(1, pooled.candidate_requests)
    b_rate = pooled.baseline_errors / max(1, pooled.baseline_requests)
    if pooled.candidate_errors == 0:
        return Check("errors", Outcome.PASS, None, 1.0, None, alpha, "the candidate had no errors")
    table = [[pooled.candidate_errors, c_ok], [pooled.baseline_errors, b_ok]]
    from scipy.stats import fisher_exact

    odds, p = fisher_exact(table, alternative="greater")
    bad = p < alpha and c_rate > b_rate
    detail = (
        f"error rate {c_rate:.2%} against the baseline's {b_rate:.2%} over the rollout"
        f" (Fisher p={p:.2g}, alpha this look {alpha:.2g})"
    )
    odds_value = float(odds) if math.isfinite(odds) else None
    return Check(
        "errors", Outcome.FAIL if bad else Outcome.PASS, odds_value, float(p), None, alpha, detail
    )


def _latency(
    b: Sequence[float], c: Sequence[float], alpha: float, floor: float, floor_ms: float
) -> Check:
    if len(b) < 2 or len(c) < 2:
        return Check("latency", Outcome.PASS, None, None, None, alpha, "too few latency samples")
    b_med, c_med = quantile(b, 0.5) or 0.0, quantile(c, 0.5) or 0.0
    if b == c or (b[0] == b[-1] == c[0] == c[-1]):  # identical: no test needed (nor possible)
        return Check("latency", Outcome.PASS, None, 1.0, None, alpha, "identical latencies")
    from scipy.stats import mannwhitneyu

    u, p = mannwhitneyu(c, b, alternative="greater")
    ratio = c_med / b_med if b_med > 0 else math.inf
    bad = p < alpha and ratio >= 1 + floor and c_med - b_med >= floor_ms
    detail = (
        f"median {c_med:.1f} ms against {b_med:.1f} ms ({ratio:.2f}x; floors {1 + floor:.2f}x"
        f" and +{floor_ms:g} ms;"
        f" Mann-Whitney p={p:.2g}, alpha this look {alpha:.2g})"
    )
    return Check(
        "latency", Outcome.FAIL if bad else Outcome.PASS, float(u), float(p), None, alpha, detail
    )


def _tail(b: Sequence[float], c: Sequence[float], alpha: float, floor_ms: float) -> Check:
    """The slowest requests: how many of each arm lie above the p99 of both arms pooled.

    The edge is the pooled p99, not the baseline's own: when both arms come from the same
    distribution, their samples are exchangeable, so the candidate's count above a pooled edge
    is hypergeometric and Fisher's exact test is exact at any sample size. Testing against the
    baseline's p99 as if it were known (a binomial test at 1 %) ignores that a p99 estimated from
    a few hundred requests is itself off by a factor of two now and then, and failed healthy
    candidates with a few hundred requests per arm.
    """
    if len(b) < MIN_FOR_P99 or len(c) < MIN_FOR_P99:
        return Check("tail", Outcome.PASS, None, None, None, alpha, "too few samples for a p99")
    edge = quantile(sorted([*b, *c]), TAIL_QUANTILE) or 0.0
    c_above, b_above = sum(1 for x in c if x > edge), sum(1 for x in b if x > edge)
    c_share, b_share = c_above / len(c), b_above / len(b)
    table = [[c_above, len(c) - c_above], [b_above, len(b) - b_above]]
    from scipy.stats import fisher_exact

    _, p = fisher_exact(table, alternative="greater")
    c_p99, b_p99 = quantile(c, TAIL_QUANTILE) or 0.0, quantile(b, TAIL_QUANTILE) or 0.0
    bad = p < alpha and c_share >= TAIL_FACTOR * b_share and c_p99 - b_p99 >= floor_ms
    detail = (
        f"{c_share:.2%} of candidate requests slower than the p99 of both arms ({edge:.1f} ms),"
        f" against {b_share:.2%} of the baseline's (Fisher p={p:.2g}, alpha this look {alpha:.2g})"
    )
    return Check(
        "tail", Outcome.FAIL if bad else Outcome.PASS, c_share, float(p), None, alpha, detail
    )


def _slo_errors(candidate: ArmStats, bound: float, alpha: float) -> Check:
    rate = candidate.errors / candidate.requests
    if bound >= 1 or rate <= bound:
        detail = f"error rate {rate:.2%} within the {bound:.2%} gate"
        return Check("slo_error_rate", Outcome.PASS, rate, None, None, bound, detail)
    from scipy.stats import binomtest

    p = binomtest(candidate.errors, candidate.requests, bound, alternative="greater").pvalue
    bad = p < alpha
    detail = f"error rate {rate:.2%} over the {bound:.2%} gate (binomial p={p:.2g})"
    return Check(
        "slo_error_rate", Outcome.FAIL if bad else Outcome.PASS, rate, float(p), None, bound, detail
    )


def _slo_p99(c: Sequence[float], bound: float) -> Check:
    p99 = quantile(c, 0.99) if len(c) >= MIN_FOR_P99 else None
    if p99 is None:
        return Check("slo_p99", Outcome.PASS, None, None, None, bound, "too few samples for a p99")
    bad = p99 > bound
    detail = f"p99 {p99:.1f} ms {'over' if bad else 'within'} the {bound:g} ms gate"
    return Check("slo_p99", Outcome.FAIL if bad else Outcome.PASS, p99, None, None, bound, detail)
