"""Where a request's time goes, from three measurements of the same traffic:

- the client's end-to-end time through the gateway (locust's samples);
- the gateway's own measurement of its upstream call, gateway -> BentoML -> gateway (its
  Prometheus histogram `modelyard_gateway_request_duration_seconds`, sum and count read before
  and after the run, so its mean is exact; its p50 from the traffic windows it reported);
- the same client calling BentoML directly: with `arrivals = "poisson"` (steady) a random share
  of one open-loop arrival process (loadtests/arrivals.py), so both paths meet the same queueing
  at BentoML; with paced users (canary, mixed) one more user at the same rate.

End-to-end minus the upstream call is the time spent in the gateway itself plus the client's
hop to it; end-to-end minus direct is what putting the gateway in the path costs the client.
Means add up exactly; p50s are shown beside them but do not (a median of a sum is not the sum
of medians). CPU per request, where the processes are on this machine: /proc for the gateway
(the modelyard process: it also runs the registry, idle here) and BentoML (its server and
workers), getrusage for locust.

`compare` is the issue's fairness check beside the budgets: the gateway path's p50 at most the
direct p50 + 1 ms and its p99 at most the direct p99 x 1.2, in the same run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from loadtests import resampled
from loadtests.budget_check import Stats
from loadtests.resampled import Spread

_LINE: Final = re.compile(
    r"^modelyard_gateway_request_duration_seconds_(sum|count)\{([^}]*)\}\s+(\S+)$", re.M
)
P50_ALLOWANCE_MS: Final = 1.0
P99_FACTOR: Final = 1.2
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Totals = dict[tuple[str, str], tuple[float, float]]  # (version, variant) -> (count, sum_s)


def histogram_totals(text: str, model: str) -> Totals:
    """The gateway histogram's count and sum per version and variant of one model."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for kind, labels, value in _LINE.findall(text):
        lab = dict(_LABEL.findall(labels))
        if lab.get("model") != model:
            continue
        found.setdefault((lab.get("version", ""), lab.get("variant", "")), {})[kind] = float(value)
    return {k: (v.get("count", 0.0), v.get("sum", 0.0)) for k, v in found.items()}


def totals_delta(before: Totals, after: Totals) -> Totals:
    out: Totals = {}
    for key, (count, total) in after.items():
        c0, s0 = before.get(key, (0.0, 0.0))
        if count - c0 > 0:
            out[key] = (count - c0, total - s0)
    return out


def upstream_mean_ms(delta: Totals) -> float | None:
    count = sum(c for c, _ in delta.values())
    return round(1000 * sum(s for _, s in delta.values()) / count, 3) if count else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def split(
    e2e: Stats,
    upstream: Totals,
    upstream_p50_ms: float | None,
    direct: Stats | None,
    cpu_ms: Mapping[str, float | None],
    arrivals: str = "paced",
) -> dict[str, Any]:
    up_mean = upstream_mean_ms(upstream)
    direct_mean = direct.mean_ms if direct else None
    direct_p50 = direct.p50_ms if direct else None
    rows = [
        ("client -> gateway -> BentoML, end to end (locust)", e2e.mean_ms, e2e.p50_ms),
        ("  in the gateway's upstream call to BentoML (gateway metrics)", up_mean, upstream_p50_ms),
        (
            "  in the gateway itself + the client's hop to it (difference)",
            _minus(e2e.mean_ms, up_mean),
            _minus(e2e.p50_ms, upstream_p50_ms),
        ),
        ("client -> BentoML directly, same client, same seconds", direct_mean, direct_p50),
        (
            "added by putting the gateway in the path (difference)",
            _minus(e2e.mean_ms, direct_mean),
            _minus(e2e.p50_ms, direct_p50),
        ),
    ]
    notes: list[str] = []
    if direct is not None:
        notes.append(
            "direct calls are a random share of the same open-loop Poisson arrivals: the same"
            " queueing at BentoML and the same noise hit both paths"
            if arrivals == "poisson"
            else "direct calls come from one user beside the others, in the same seconds: the"
            " same noise hits both paths (but not the same queueing: paced users arrive in bursts)"
        )
    if up_mean is not None and e2e.mean_ms:
        notes.insert(
            0,
            f"BentoML (as the gateway sees it) is {up_mean / e2e.mean_ms:.0%} of the"
            " client's mean time; the gateway and the hop to it the rest",
        )
    return {
        "rows": [{"what": w, "mean_ms": m, "p50_ms": p} for w, m, p in rows],
        "upstream_calls": {
            f"v{v} {var}": {"count": int(c), "mean_ms": round(1000 * s / c, 3)}
            for (v, var), (c, s) in sorted(upstream.items())
        },
        "cpu_ms_per_request": dict(cpu_ms),
        "notes": notes,
    }


def compare(gateway: Stats, direct: Stats | None, over_cap: int = 0) -> dict[str, Any]:
    """The gateway path against the direct one in the same run: p50 <= direct p50 + 1 ms and
    p99 <= direct p99 x 1.2. `passed` is None when there is nothing to compare; arrivals not
    sent because the cap on requests in flight was reached make the run's comparison void."""
    checks: list[dict[str, Any]] = []
    if direct is not None:
        for metric, value, base, limit, rule in (
            ("p50_ms", gateway.p50_ms, direct.p50_ms, _plus(direct.p50_ms), "direct p50 + 1 ms"),
            ("p99_ms", gateway.p99_ms, direct.p99_ms, _times(direct.p99_ms), "direct p99 x 1.2"),
        ):
            ok = value is not None and limit is not None and value <= limit
            checks.append(
                {
                    "metric": metric,
                    "gateway": value,
                    "direct": base,
                    "limit": limit,
                    "rule": rule,
                    "passed": ok,
                }
            )
    passed = all(c["passed"] for c in checks) and over_cap == 0 if checks else None
    return {"checks": checks, "over_cap": over_cap, "passed": passed}


def _plus(x: float | None) -> float | None:
    return None if x is None else round(x + P50_ALLOWANCE_MS, 3)


def _times(x: float | None) -> float | None:
    return None if x is None else round(x * P99_FACTOR, 3)


def comparison_lines(c: dict[str, Any]) -> list[str]:
    """The comparison as printed after the run."""
    if c["passed"] is None:
        return ["gateway vs direct: not compared (no direct calls)"]
    lines = [f"gateway vs direct, same run: {'PASSED' if c['passed'] else 'FAILED'}"]
    for k in c["checks"]:
        mark = "ok    " if k["passed"] else "FAILED"
        lines.append(
            f"  {mark} {k['metric']}: gateway {k['gateway']:g} ms"
            f" {'<=' if k['passed'] else '>'} {k['limit']:g} ms ({k['rule']},"
            f" direct {k['direct']:g} ms)"
        )
    if c.get("spread"):
        lines.append("  how sure (both paths' requests resampled, loadtests/resampled.py):")
        lines += [resampled.spread_line(Spread(**s)) for s in c["spread"]]
    if c["over_cap"]:
        lines.append(f"  FAILED {c['over_cap']} arrivals not sent (cap on requests in flight)")
    return lines
