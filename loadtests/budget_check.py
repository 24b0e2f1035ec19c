"""Latency budgets and the check at the end of a load run. Pure: no IO beyond reading the
budget file's text handed in, no clock; the unit tests drive it with made-up samples.

A scenario's file (`loadtests/budgets/<scenario>.toml`) holds the load it runs and its budgets:

    [load]
    users = 8                 # locust users
    rate_per_user = 5.0       # requests/s each (locust's constant_throughput)
    duration_s = 60
    arrivals = "poisson"      # optional: one open-loop Poisson process at users x rate_per_user
                              # through the gateway (loadtests/arrivals.py); "paced" (default):
                              # closed-loop users at constant_throughput
    direct_share = 0.333      # optional, poisson only: the share of arrivals sent to BentoML
                              # directly (on top of the gateway's rate)

    [[budget]]
    requests = "classify"     # locust request name these limits apply to
    variant = "stable"        # optional: only the answers of this variant (x-modelyard-variant)
    p50_ms = 50.0             # any of p50_ms, p95_ms, p99_ms, max_error_rate, min_rps
    p95_ms = 120.0
    p99_ms = 200.0
    max_error_rate = 0.01
    min_rps = 30.0

A budget whose requests never happened is broken (`requests`: 0 < 1), never silently passed.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from typing import Annotated, Final, Literal, NamedTuple

import msgspec

PERCENTILES: Final = (50, 95, 99)
NonNeg = Annotated[float, msgspec.Meta(ge=0)]


class Load(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    users: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    rate_per_user: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 5.0
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0
    arrivals: Literal["paced", "poisson"] = "paced"
    direct_share: Annotated[float, msgspec.Meta(ge=0, le=0.9)] = 1 / 3

    @property
    def rate(self) -> float:
        return self.users * self.rate_per_user


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    requests: Annotated[str, msgspec.Meta(min_length=1)]
    variant: str | None = None
    p50_ms: NonNeg | None = None
    p95_ms: NonNeg | None = None
    p99_ms: NonNeg | None = None
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    min_rps: NonNeg | None = None

    @property
    def label(self) -> str:
        return self.requests if self.variant is None else f"{self.requests} [{self.variant}]"


class BudgetFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    budget: Annotated[list[Budget], msgspec.Meta(min_length=1)]
    load: Load = Load()


class BudgetFileError(ValueError):
    """The budget file is not valid TOML or does not have the fields above."""


def parse_budgets(text: str, source: str = "<budgets>") -> BudgetFile:
    try:
        return msgspec.convert(tomllib.loads(text), BudgetFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise BudgetFileError(f"{source}: {exc}") from None


class Sample(NamedTuple):
    """One request as the client saw it."""

    t: float  # when it started, seconds (any epoch; only differences matter)
    name: str  # locust request name
    variant: str  # x-modelyard-variant of the answer, "" when there is none
    ms: float  # response time
    ok: bool
    version: str = ""  # x-modelyard-version of the answer


class Stats(msgspec.Struct, frozen=True):
    requests: int
    errors: int
    error_rate: float
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values, linear between closest ranks (numpy's default)."""
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def stats(samples: Sequence[Sample], seconds: float) -> Stats:
    """Counts, throughput over `seconds` and latency percentiles of all samples (errors
    included: a slow failure is slow too)."""
    ordered = sorted(s.ms for s in samples)
    errors = sum(not s.ok for s in samples)
    n = len(ordered)

    def q(p: float) -> float | None:
        return round(percentile(ordered, p), 3) if ordered else None

    return Stats(
        requests=n,
        errors=errors,
        error_rate=round(errors / n, 5) if n else 0.0,
        rps=round(n / seconds, 3) if seconds > 0 else 0.0,
        p50_ms=q(50),
        p95_ms=q(95),
        p99_ms=q(99),
        max_ms=round(ordered[-1], 3) if ordered else None,
        mean_ms=round(sum(ordered) / n, 3) if n else None,
    )


def select(samples: Iterable[Sample], budget: Budget) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == budget.requests and (budget.variant is None or s.variant == budget.variant)
    ]


class Verdict(msgspec.Struct, frozen=True):
    """One limit of one budget, against what was measured."""

    budget: str  # its label: request name [variant]
    metric: str  # p50_ms | p95_ms | p99_ms | error_rate | rps | requests
    op: str  # "<=" or ">="
    limit: float
    value: float | None
    passed: bool

    @property
    def over_by(self) -> float | None:
        """How far past the limit (positive when broken), in the metric's unit."""
        if self.value is None:
            return None
        return self.value - self.limit if self.op == "<=" else self.limit - self.value

    def describe(self) -> str:
        unit = {"p50_ms": " ms", "p95_ms": " ms", "p99_ms": " ms", "rps": " req/s"}
        u = unit.get(self.metric, "")
        value = "none" if self.value is None else f"{self.value:g}{u}"
        head = f"{self.budget} {self.metric}: {value} {self._relation()} {self.limit:g}{u}"
        if self.passed:
            return f"ok      {head}"
        by = self.over_by
        if by is None:
            return f"BROKEN  {head} (no requests measured)"
        rel = f", {self.value / self.limit - 1:+.0%}" if self.limit and self.value else ""
        side = "over" if self.op == "<=" else "under"
        return f"BROKEN  {head}: {_figure(abs(by))}{u} {side} the budget{rel}"

    def _relation(self) -> str:
        if self.passed:
            return self.op
        return ">" if self.op == "<=" else "<"


def _figure(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def check(samples: Sequence[Sample], budgets: Iterable[Budget], seconds: float) -> list[Verdict]:
    """Every limit of every budget judged on the samples of its requests, throughput over the
    measured `seconds`."""
    verdicts: list[Verdict] = []
    for budget in budgets:
        chosen = select(samples, budget)
        if not chosen:
            verdicts.append(Verdict(budget.label, "requests", ">=", 1, 0, False))
            continue
        s = stats(chosen, seconds)
        limits: list[tuple[str, str, float | None, float | None]] = [
            ("p50_ms", "<=", budget.p50_ms, s.p50_ms),
            ("p95_ms", "<=", budget.p95_ms, s.p95_ms),
            ("p99_ms", "<=", budget.p99_ms, s.p99_ms),
            ("error_rate", "<=", budget.max_error_rate, s.error_rate),
            ("rps", ">=", budget.min_rps, s.rps),
        ]
        for metric, op, limit, value in limits:
            if limit is None:
                continue
            passed = value is not None and (value <= limit if op == "<=" else value >= limit)
            verdicts.append(Verdict(budget.label, metric, op, limit, value, passed))
    return verdicts


def broken(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.passed]
