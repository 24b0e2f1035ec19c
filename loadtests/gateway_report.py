"""The gateway benchmark's figures and verdicts: the ratios of the fixed-response legs, the
targets judged PASS/MISS, whether the run failed, and the whole report as a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from loadtests.benchkit import num
from loadtests.resampled import PairedRatio, paired_line, paired_ratio

#: What the run is judged on: a named figure, compared with `op` to `limit`.
TARGETS: Final[dict[str, dict[str, Any]]] = {
    "gateway_rps_c16": {
        "what": "gateway req/s at concurrency 16",
        "op": ">=",
        "limit": 5000,
        "unit": "req/s",
    },
    "many_models_rps_c16": {
        "what": "gateway req/s with 10,000 more models / with 1, concurrency 16",
        "op": ">=",
        "limit": 0.95,
        "unit": "fraction",
    },
    "added_p50_c1": {
        "what": "gateway p50 - direct p50 at concurrency 1",
        "op": "<=",
        "limit": 0.3,
        "unit": "ms",
    },
    "added_p99_c1": {
        "what": "gateway p99 - direct p99 at concurrency 1",
        "op": "<=",
        "limit": 1.0,
        "unit": "ms",
    },
    "canary_over_nginx_rps_c16": {
        "what": "gateway with a 10 % sticky canary split / nginx, req/s at concurrency 16",
        "op": ">=",
        "limit": 0.6,
        "unit": "fraction",
    },
    "canary_added_p50_c1": {
        "what": "gateway with a 10 % sticky canary split: p50 - direct p50 at concurrency 1",
        "op": "<=",
        "limit": 0.05,
        "unit": "ms",
    },
    "grpc_over_http_json_rps_c16": {
        "what": "OIP: gRPC req/s / HTTP JSON req/s at concurrency 16",
        "op": ">=",
        "limit": 0.8,
        "unit": "fraction",
    },
    "e2e_share_p50_c1": {
        "what": "gateway share of the p50 in front of BentoML, concurrency 1",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
    "e2e_share_p50_c8": {
        "what": "gateway share of the p50 in front of BentoML, concurrency 8",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
    "e2e_share_p50_c1_apart": {
        "what": "the same with the gateway on a core of its own (as deployed), concurrency 1",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
    "e2e_share_p50_c8_apart": {
        "what": "the same with the gateway on a core of its own (as deployed), concurrency 8",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
    "e2e_share_cpu": {
        "what": "gateway share of the CPU per request in front of BentoML",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
}


def cell(runs: dict[str, Any], path: str, conc: str, key: str) -> float | None:
    found = (runs.get(path) or {}).get(conc)
    return None if found is None else float(found[key])


def cell_rounds(runs: dict[str, Any], path: str, conc: str) -> list[float]:
    """Each round's req/s of one leg at one concurrency (empty: not run, or failed)."""
    found = (runs.get(path) or {}).get(conc) or {}
    return list(found.get("rounds_rps", []))


def ratios(runs: dict[str, Any], concurrencies: Sequence[int]) -> dict[str, Any]:
    def share(over: str, leg: str = "gateway") -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in concurrencies:
            gw, base = cell(runs, leg, f"c{c}", "rps"), cell(runs, over, f"c{c}", "rps")
            out[f"c{c}"] = None if gw is None or not base else round(gw / base, 4)
        return out

    def added(key: str, leg: str = "gateway") -> float | None:
        gw, direct = cell(runs, leg, "c1", key), cell(runs, "direct", "c1", key)
        return None if gw is None or direct is None else round(gw - direct, 4)

    many: dict[str, float | None] = {}
    for c in concurrencies:
        gw, more = cell(runs, "gateway", f"c{c}", "rps"), cell(runs, "gateway_10k", f"c{c}", "rps")
        many[f"c{c}"] = None if more is None or not gw else round(more / gw, 4)

    def paired(leg: str, over: str, target: str) -> dict[str, Any] | None:
        """`leg` over `over` at c16 round by round (loadtests/resampled.paired_ratio), with
        `target`'s limit (TARGETS)."""
        these, base = cell_rounds(runs, leg, "c16"), cell_rounds(runs, over, "c16")
        if not these or len(these) != len(base):
            return None
        limit = TARGETS[target]["limit"]
        found: dict[str, Any] = msgspec.to_builtins(paired_ratio(these, base, at_least=limit))
        return found

    return {
        "canary_over_nginx_paired_c16": paired(
            "gateway_canary", "nginx", "canary_over_nginx_rps_c16"
        ),
        "throughput_gateway_over_direct": share("direct"),
        "throughput_gateway_over_nginx": share("nginx"),
        "throughput_10k_models_over_1": many,
        "added_latency_c1": {"p50_ms": added("p50_ms"), "p99_ms": added("p99_ms")},
        # the routed leg (a 10 % sticky canary split) against nginx and the pinned leg
        "throughput_canary_over_nginx": share("nginx", "gateway_canary"),
        "throughput_canary_over_gateway": share("gateway", "gateway_canary"),
        "canary_added_latency_c1": {
            "p50_ms": added("p50_ms", "gateway_canary"),
            "p99_ms": added("p99_ms", "gateway_canary"),
        },
    }


OIP_LEGS: Final = ("http_json", "http_binary", "grpc")  # loadtests/oip_legs.py


def oip_ratios(
    oip: dict[str, Any], runs: dict[str, Any], concurrencies: Sequence[int]
) -> dict[str, Any]:
    """The OIP legs against each other (throughput over HTTP JSON's) and the p50 each adds to
    a direct call at concurrency 1."""

    def over_json(leg: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in concurrencies:
            mine, json_rps = cell(oip, leg, f"c{c}", "rps"), cell(oip, "http_json", f"c{c}", "rps")
            out[f"c{c}"] = None if mine is None or not json_rps else round(mine / json_rps, 4)
        return out

    direct = cell(runs, "direct", "c1", "p50_ms")
    added: dict[str, float | None] = {}
    for leg in OIP_LEGS:
        mine = cell(oip, leg, "c1", "p50_ms")
        added[leg] = None if mine is None or direct is None else round(mine - direct, 4)
    return {
        "throughput_grpc_over_http_json": over_json("grpc"),
        "throughput_http_binary_over_http_json": over_json("http_binary"),
        "added_p50_ms_c1": added,
    }


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs, r, e2e = report["runs"], report["ratios"], report["e2e"]
    shares = e2e.get("gateway_share_p50", {})
    values: dict[str, float | None] = {
        "gateway_rps_c16": cell(runs, "gateway", "c16", "rps"),
        "many_models_rps_c16": r["throughput_10k_models_over_1"].get("c16"),
        "added_p50_c1": r["added_latency_c1"]["p50_ms"],
        "added_p99_c1": r["added_latency_c1"]["p99_ms"],
        "canary_over_nginx_rps_c16": r["throughput_canary_over_nginx"].get("c16"),
        "canary_added_p50_c1": r["canary_added_latency_c1"]["p50_ms"],
        "grpc_over_http_json_rps_c16": report.get("oip_ratios", {})
        .get("throughput_grpc_over_http_json", {})
        .get("c16"),
        "e2e_share_p50_c1": shares.get("c1"),
        "e2e_share_p50_c8": shares.get("c8"),
        "e2e_share_p50_c1_apart": e2e.get("apart_share_p50", {}).get("c1"),
        "e2e_share_p50_c8_apart": e2e.get("apart_share_p50", {}).get("c8"),
        "e2e_share_cpu": e2e.get("gateway_share_cpu", {}).get("all"),
    }
    judged: dict[str, dict[str, Any]] = {}
    for name, target in TARGETS.items():
        value = values[name]
        passed: bool | None = None
        if value is not None:
            limit = target["limit"]
            passed = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[target["op"]]
        judged[name] = {**target, "value": value, "pass": passed}
    return judged


def failed(report: dict[str, Any]) -> bool:
    e2e = report.get("e2e", {})
    return (
        "error" in report
        or any("error" in found for found in report["runs"].values())
        or any("error" in found for found in report.get("oip", {}).values())
        or "error" in e2e
        or any("error" in e2e.get(path, {}) for path in E2E_PATHS)
    )


# --- the table ------------------------------------------------------------------------------

E2E_PATHS: Final = ("direct", "gateway", "apart", "nginx")
VALUE_FORMAT: Final = {"req/s": ",.0f", "ms": ".3f", "fraction": ".1%"}


def _first_line(error: str) -> str:
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return (lines[0] if lines else "?")[:200] + " (details on stderr and in the JSON report)"


def _run_lines(
    runs: dict[str, Any], paths: Sequence[str], concurrencies: Sequence[int]
) -> list[str]:
    """One row per concurrency and path; a path that failed gets one ERROR line at the end."""
    lines = []
    for c in concurrencies:
        for path in paths:
            r = (runs.get(path) or {}).get(f"c{c}")
            if r is not None:
                lines.append(
                    f"{path:<15}{c:>5}{r['rps']:>12,.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                )
    for path in paths:
        found = runs.get(path) or {}
        if "error" in found:
            lines.append(f"{path:<15}ERROR: {_first_line(found['error'])}")
    return lines


_BUILDS: Final = {"compiled": "compiled (mypyc), as shipped", "python": "as Python"}


def table(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    pinning = (
        f"wrk on CPU {m['client_cpu']}, servers on CPU {m['server_cpu']}"
        if m["server_cpu"] is not None
        else "not pinned (one CPU)"
    )
    head = f"{'path':<15}{'conc':>5}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
    lines = [
        f"{m['cpus']} CPUs, load {m['loadavg_1m_at_start']}, {pinning};"
        f" {_rounds(cfg)}, {cfg['body_bytes']}-byte POST;"
        f" the gateway {_BUILDS.get(cfg.get('build', 'python'), '?')}",
    ]
    if "error" in report:
        return "\n".join([*lines, f"ERROR: {_first_line(report['error'])}"])
    lines += [head, "-" * len(head)]
    lines += _run_lines(report["runs"], list(report["runs"]), cfg["concurrencies"])
    r = report["ratios"]
    lines.append("")
    for over in ("direct", "nginx"):
        shares = r[f"throughput_gateway_over_{over}"]
        text = "  ".join(f"{c} {num(v, '.3f')}" for c, v in shares.items())
        lines.append(f"gateway/{over + ' req/s:':<14}{text}")
    for name, label in (
        ("throughput_canary_over_nginx", "canary/nginx req/s:"),
        ("throughput_canary_over_gateway", "canary/gateway req/s:"),
        ("throughput_10k_models_over_1", "10,000 models/1 req/s:"),
    ):
        shares = r.get(name, {})
        text = "  ".join(f"{c} {num(v, '.3f')}" for c, v in shares.items())
        lines.append(f"{label:<22}{text}")
    paired = r.get("canary_over_nginx_paired_c16")
    if paired:
        ratio = msgspec.convert(paired, PairedRatio)
        lines.append(paired_line("canary/nginx c16, the rounds' own ratios", ratio))
    split = report.get("canary_split")
    if split:
        total = sum(split.values())
        lines.append(
            "canary split (gateway /metrics): "
            + ", ".join(f"v{v} {n:,} ({n / total:.1%})" for v, n in sorted(split.items()))
        )
    rss = report.get("rss_mb", {})
    if rss:
        lines.append(
            "RSS (registry + gateway): " + ", ".join(f"{p} {v:.0f} MB" for p, v in rss.items())
        )
    for name, label in (("added_latency_c1", "gateway"), ("canary_added_latency_c1", "canary")):
        added = r[name]
        lines.append(
            f"added by the {label} leg at c1: p50 {num(added['p50_ms'], '+.3f')} ms,"
            f" p99 {num(added['p99_ms'], '+.3f')} ms"
        )
    if "oip" in report:
        lines += ["", *oip_lines(report, head)]
    e2e = report["e2e"]
    lines.append("")
    if "skipped" in e2e:
        lines.append(f"in front of BentoML: skipped ({e2e['skipped']})")
    elif "error" in e2e:
        lines.append(f"in front of BentoML: ERROR: {_first_line(e2e['error'])}")
    else:
        lines += e2e_lines(e2e)
    rules = {
        name: f"{t['what']} {t['op']} {t['limit']:g} {t['unit']}"
        for name, t in report["targets"].items()
    }
    width = max(map(len, rules.values())) + 2
    lines += ["", f"{'target':<{width}}{'value':>10}  result"]
    for name, t in report["targets"].items():
        verdict = "-" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        value = num(t["value"], VALUE_FORMAT[t["unit"]])
        lines.append(f"{rules[name]:<{width}}{value:>10}  {verdict}")
    return "\n".join(lines)


def oip_lines(report: dict[str, Any], head: str) -> list[str]:
    """The Open Inference Protocol part: `POST /v2/models/bench/infer` as JSON and binary (wrk)
    and gRPC `ModelInfer` (h2load), translated to the fixed BentoML upstream."""
    lines = [
        "Open Inference Protocol through the gateway to the same upstream (OIP -> BentoML JSON"
        " and back): http_json, http_binary (wrk), grpc (h2load, one stream a connection)",
        head,
        "-" * len(head),
    ]
    lines += _run_lines(report["oip"], OIP_LEGS, report["config"]["concurrencies"])
    r = report.get("oip_ratios", {})
    for leg in ("grpc", "http_binary"):
        shares = r.get(f"throughput_{leg}_over_http_json", {})
        text = "  ".join(f"{c} {num(v, '.3f')}" for c, v in shares.items())
        lines.append(f"{leg + '/http_json req/s:':<28}{text}")
    added = r.get("added_p50_ms_c1", {})
    text = ", ".join(f"{leg} {num(v, '+.3f')} ms" for leg, v in added.items())
    lines.append(f"added p50 at c1 (over direct): {text}")
    return lines


def e2e_lines(e2e: dict[str, Any]) -> list[str]:
    """The in-front-of-BentoML part of the benchmark's table."""
    m = e2e["method"]
    head = f"{'path':<10}{'conc':>5}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}  p50 min-max ms"
    lines = [
        f"in front of BentoML ({e2e['model']}): medians of {m['rounds']} interleaved rounds of"
        f" {m['round_s']} s a path; BentoML and gateway on CPU {m['server_cpu']},"
        f" wrk on CPU {m['client_cpu']}; apart: the gateway on CPU {m['client_cpu']};"
        f" nginx: nginx as the proxy, on CPU {m['server_cpu']}",
        head,
        "-" * len(head),
    ]
    for c in e2e["gateway_share_p50"]:
        for path in E2E_PATHS:
            r = e2e[path][c]
            spread = r["p50_spread_ms"]
            lines.append(
                f"{path:<10}{c[1:]:>5}{r['rps']:>12,.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                f"  {spread['min']:.3f}-{spread['max']:.3f}"
            )
    for c, share in e2e["gateway_share_p50"].items():
        apart = e2e["apart_share_p50"][c]
        lines.append(
            f"gateway's share of the p50 at {c}: {num(share, '.1%')}"
            f" ({num(e2e['added_p50_ms'][c], '+.3f')} ms) beside BentoML;"
            f" {num(apart, '.1%')} ({num(e2e['apart_added_p50_ms'][c], '+.3f')} ms) apart;"
            f" nginx's beside BentoML {num(e2e['nginx_share_p50'][c], '.1%')}"
            f" ({num(e2e['nginx_added_p50_ms'][c], '+.3f')} ms)"
        )
    cpu_head = (
        f"{'CPU ms/request':<16}{'gateway':>9}{'BentoML':>9}{'gw share':>10}"
        f"{'min-max':>14}{'BentoML direct':>16}{'gw idle':>9}"
    )
    lines += ["", cpu_head, "-" * len(cpu_head)]
    for c in [*e2e["gateway_share_cpu"], "nginx"]:
        f = e2e["cpu"][c]
        spread = f["gateway_share_spread"]
        between = "-" if spread is None else f"{spread['min']:.1%}-{spread['max']:.1%}"
        lines.append(
            f"{c:<16}{num(f['gateway_ms_per_request'], '.3f'):>9}"
            f"{num(f['bentoml_ms_per_request'], '.3f'):>9}"
            f"{num(f['gateway_share'], '.1%'):>10}{between:>14}"
            f"{num(f['bentoml_direct_ms_per_request'], '.3f'):>16}"
            f"{num(f['gateway_idle_cpu_fraction'], '.1%'):>9}"
        )
    idle = e2e["cpu"]["idle_cpu_fraction"]
    lines.append(
        f"with no request at all, for {idle['seconds']:.0f} s: gateway {idle['gateway']:.1%},"
        f" BentoML {idle['bentoml']:.1%} of one core"
    )
    lines += [
        "(gateway, BentoML: CPU per request over the gateway rounds (row nginx: over the nginx"
        " rounds, nginx in the gateway column); gw share: gateway / (gateway + BentoML),",
        " and its min-max over the rounds; BentoML direct: over the direct rounds;"
        " gw idle: the gateway's CPU",
        " as a share of one core while the direct rounds ran)",
    ]
    return lines


def _rounds(cfg: dict[str, Any]) -> str:
    """How each leg was measured: one run, or the median of interleaved rounds."""
    rounds = cfg.get("rounds", 1)
    if rounds == 1:
        return f"{cfg['duration_s']} s a run"
    return f"medians of {rounds} interleaved rounds of {cfg['duration_s']} s"
