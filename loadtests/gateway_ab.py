"""Two versions of the gateway side by side in one run: before and after a change.

    git worktree add /tmp/before <commit>
    python -m loadtests.gateway_ab --before /tmp/before [--rounds 7] [--seconds 5]

Both run as `modelyard serve` (no deployer) in front of the same fixed-response upstream (nginx,
one worker), the old one from its checkout (its root is the child's working directory, which
`python -m` puts first on the import path), the new one from this one. wrk then measures
direct, nginx, before and after in turn, round after round, at concurrency 1 and 16, so that
the machine's noise (other processes, a hypervisor's steal time) hits all four alike. Medians
over the rounds, and each round's after/before ratio, give the comparison and its spread.
Pinning and tools as in `loadtests.gateway_bench` (wrk on one CPU, the servers on the other).
With `--canary`, each side also gets the routed leg of loadtests/canary_leg.py (a second
model with a 10 % sticky canary split, a different key per request): `before_canary` and
`after_canary`, compared the same way.
The JSON report goes to loadtests/results/gateway-ab.json unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from loadtests import benchkit, canary_leg
from loadtests.benchkit import (
    FIXED_LOCATION,
    PROXY_LOCATION,
    PROXY_UPSTREAM,
    Pinning,
    find_tools,
    lua_script,
    nginx,
    say,
)
from loadtests.gateway_bench import (
    FIXED_RESPONSE,
    GATEWAY_PATH,
    UPSTREAM_PATH,
    gateway,
    machine,
    make_body,
    measure_rounds,
)

DEFAULT_OUT: Final = Path(__file__).parent / "results" / "gateway-ab.json"
PATHS: Final = ("direct", "nginx", "before", "after")
CANARY_PATHS: Final = ("before_canary", "after_canary")
#: (before, after) legs compared, and the name of their comparison in the summary
PAIRS: Final = (("before", "after", ""), ("before_canary", "after_canary", "canary_"))


def summarize(
    rounds: list[dict[str, dict[str, Any]]],
    concurrencies: Sequence[int],
    paths: Sequence[str] = PATHS,
) -> dict[str, Any]:
    """Per concurrency: each path's median req/s and p50 over the rounds, and the after/before
    ratios of every round (throughput, and the latency each adds over direct at c1), for the
    pinned legs and, when measured, the canary legs (keys prefixed `canary_`)."""
    out: dict[str, Any] = {}
    for c in concurrencies:
        key = f"c{c}"
        ok = [r for r in rounds if all(key in r.get(p, {}) for p in paths)]
        if not ok:
            out[key] = {"error": "no complete round"}
            continue
        med = {
            p: {
                "rps": statistics.median(r[p][key]["rps"] for r in ok),
                "p50_ms": statistics.median(r[p][key]["p50_ms"] for r in ok),
            }
            for p in paths
        }
        out[key] = {"rounds": len(ok), "median": med}
        for before, after, prefix in PAIRS:
            if before not in paths:
                continue
            ratios = [r[after][key]["rps"] / r[before][key]["rps"] for r in ok]
            added = {
                side: [r[leg][key]["p50_ms"] - r["direct"][key]["p50_ms"] for r in ok]
                for side, leg in (("before", before), ("after", after))
            }
            out[key] |= {
                f"{prefix}after_over_before_rps": {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                },
                f"{prefix}after_over_nginx_rps": med[after]["rps"] / med["nginx"]["rps"],
                f"{prefix}before_over_nginx_rps": med[before]["rps"] / med["nginx"]["rps"],
                f"{prefix}added_p50_ms": {side: statistics.median(v) for side, v in added.items()},
            }
    return out


def run(
    before: Path, rounds: int, seconds: int, concurrencies: Sequence[int], canary: bool = False
) -> dict[str, Any]:
    tools = find_tools()
    if isinstance(tools, list):
        raise SystemExit(f"missing tools: {', '.join(tools)} (make system-deps)")
    pin = Pinning.choose(tools.taskset)
    with tempfile.TemporaryDirectory(prefix="modelyard-gateway-ab-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        upstream = stack.enter_context(
            nginx(tools, pin, work / "upstream", FIXED_LOCATION.format(body=FIXED_RESPONSE))
        )
        port = upstream.url.rsplit(":", 1)[1]
        proxy = stack.enter_context(
            nginx(tools, pin, work / "proxy", PROXY_LOCATION, PROXY_UPSTREAM.format(port=port))
        )
        old = stack.enter_context(gateway(work / "before", pin, upstream, checkout=before))
        new = stack.enter_context(gateway(work / "after", pin, upstream))
        targets = {
            "direct": upstream.url + UPSTREAM_PATH,
            "nginx": proxy.url + UPSTREAM_PATH,
            "before": old.url + GATEWAY_PATH,
            "after": new.url + GATEWAY_PATH,
        }
        script = lua_script(work / "post.lua", make_body())
        scripts = dict.fromkeys(targets, script)
        paths: tuple[str, ...] = PATHS
        if canary:
            for leg, proc in zip(CANARY_PATHS, (old, new), strict=True):
                canary_leg.setup(proc, upstream.url, make_body())
                targets[leg] = proc.url + canary_leg.PATH
                scripts[leg] = canary_leg.lua_script(work / "canary.lua", make_body())
            paths = (*PATHS, *CANARY_PATHS)
        measured = []
        for n in range(rounds):
            say(f"round {n + 1}/{rounds}")
            measured.append(
                measure_rounds(tools, pin, targets, scripts, concurrencies, seconds, 1, 1)
            )
    return {
        "machine": machine(tools, pin),
        "before": str(before),
        "config": {"rounds": rounds, "seconds": seconds, "concurrencies": list(concurrencies)},
        "rounds": measured,
        "summary": summarize(measured, concurrencies, paths),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.gateway_ab", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the old checkout's root")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5, help="one wrk measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--canary", action="store_true", help="the routed legs too")
    args = parser.parse_args(argv)
    report = run(args.before.resolve(), args.rounds, args.seconds, (1, 16), args.canary)
    benchkit.write_report(args.out, report)
    for key, found in report["summary"].items():
        if "error" in found:
            say(f"{key}: {found['error']}")
            continue
        med = found["median"]
        say(f"{key}: req/s direct {med['direct']['rps']:,.0f}, nginx {med['nginx']['rps']:,.0f}")
        for before, after, prefix in PAIRS:
            if f"{prefix}after_over_before_rps" not in found:
                continue
            ratio, added = found[f"{prefix}after_over_before_rps"], found[f"{prefix}added_p50_ms"]
            say(
                f"  {before} {med[before]['rps']:,.0f}, {after} {med[after]['rps']:,.0f};"
                f" after/before {ratio['median']:.3f}"
                f" (rounds {ratio['min']:.3f}..{ratio['max']:.3f});"
                f" /nginx before {found[prefix + 'before_over_nginx_rps']:.3f},"
                f" after {found[prefix + 'after_over_nginx_rps']:.3f};"
                f" added p50 before {added['before']:.3f} ms, after {added['after']:.3f} ms"
            )
    say(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
