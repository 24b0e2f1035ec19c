"""Client subcommands for rollouts: start (a flag for every field of a rollout spec), show (with
every verdict and its evidence, and a shadow rollout's agreement), list, watch, pause, resume,
abort, promote."""

from __future__ import annotations

import argparse
import time
from typing import Any, Final

from modelyard.cli.commands import Reply, Sub, UsageError, command_group, leaf
from modelyard.cli.http import RegistryClient, path
from modelyard.cli.output import Json, table

TERMINAL: Final = ("Succeeded", "RolledBack", "Aborted")
ROLLOUT_COLUMNS: Final = ("id", "phase", "baseline", "candidate", "weight", "looks", "reason")
LOOK_COLUMNS: Final = ("seq", "at", "phase", "weight", "outcome", "baseline", "candidate", "why")
SHADOW_LOOK_COLUMNS: Final = (*LOOK_COLUMNS[:-1], "agreement", "why")


def _row(r: Json) -> Json:
    return {**r, "candidate": r["spec"]["candidate"]}


def _arm(summary: Json) -> str:
    p99 = summary.get("p99_ms")
    tail = f" p99 {p99:.1f}ms" if p99 is not None else ""
    return f"{summary['requests']} req {summary['errors']} err{tail}"


def agreement(look: Json) -> str | None:
    """A shadow look's agreement with its counts, `98.0% (147/150)`; None when nothing was
    compared (or the rollout is a canary)."""
    if look.get("agreement") is None:
        return None
    return f"{look['agreement']:.1%} ({look.get('agreed')}/{look.get('compared')})"


def look_line(look: Json) -> Json:
    verdict = look["verdict"]
    return {
        "seq": look["seq"],
        "at": look["at"],
        "phase": look["phase"],
        "weight": look["weight"],
        "outcome": verdict["outcome"],
        "baseline": _arm(verdict["baseline"]),
        "candidate": _arm(verdict["candidate"]),
        "agreement": agreement(look),
        "why": verdict["reason"],
    }


def evidence(look: Json) -> str:
    """Every check of a look: statistic, p or e value, threshold."""
    lines = []
    for check in look["verdict"].get("checks", []):
        parts = [f"  {check['name']}: {check['outcome']}"]
        for key in ("statistic", "p_value", "e_value", "threshold"):
            if check.get(key) is not None:
                parts.append(f"{key}={check[key]:.4g}")
        lines.append(" ".join(parts) + f" - {check['detail']}")
    return "\n".join(lines)


def _shadow_lines(spec: Json, looks: list[Json]) -> list[str]:
    """What a shadow rollout compares, and the agreement of its latest look that compared."""
    field = spec.get("compare_field")
    floor = spec.get("min_agreement")
    lines = [
        f"shadow: copies of {spec.get('shadow_percent', 100):g}% of the requests; compares"
        f" {f'the field {field!r}' if field else 'the whole answer'};"
        f" min agreement {f'{floor:.1%}' if floor is not None else 'none'}"
    ]
    compared = [x for x in looks if x.get("agreement") is not None]
    if compared:
        last = compared[-1]
        lines.append(
            f"agreement: {last['agreement']:.1%} ({last['agreed']} of {last['compared']}"
            f" compared answers agreed, look {last['seq']})"
        )
    else:
        lines.append("agreement: none yet (no shadow answer compared)")
    return lines


def render(view: Json) -> str:
    r = view["rollout"]
    spec = r["spec"]
    shadow = spec.get("mode") == "shadow"
    plan = f"shadow {spec.get('shadow_percent', 100):g}%" if shadow else f"steps {spec['steps']}"
    head = (
        f"rollout {r['id']} of {r['model']}: {r['phase']} at {r['weight']:g}%"
        f" (baseline v{r['baseline']}, candidate v{spec['candidate']}, {plan})"
    )
    lines = [head] + ([f"reason: {r['reason']}"] if r.get("reason") else [])
    looks = view["looks"]
    if shadow:
        lines += _shadow_lines(spec, looks)
    if looks:
        columns = SHADOW_LOOK_COLUMNS if shadow else LOOK_COLUMNS
        lines += ["", table(columns, [look_line(x) for x in looks])]
        lines += ["", f"evidence of look {looks[-1]['seq']}:", evidence(looks[-1])]
    return "\n".join(lines)


#: Each flag of `rollouts start` and the field of the rollout spec (registry/rollouts/state.py,
#: RolloutSpec) it sets; a flag not given leaves the field to the server's default.
#: tests/e2e/test_cli.py checks that every field of the spec has one.
SPEC_FLAGS: Final = {
    "candidate": "candidate",
    "steps": "steps",
    "interval": "interval_s",
    "min_sample": "min_sample_per_arm",
    "max_error_rate": "max_error_rate",
    "max_p99_ms": "max_p99_ms",
    "alpha": "alpha",
    "latency_effect_floor": "latency_effect_floor",
    "latency_floor_ms": "latency_floor_ms",
    "max_inconclusive": "max_inconclusive",
    "shadow_percent": "shadow_percent",
    "min_agreement": "min_agreement",
    "compare_field": "compare_field",
}
STICKY_FLAGS: Final = {
    "sticky_header": "header",
    "sticky_cookie": "cookie",
    "sticky_json_field": "json_field",
}


def spec_of(args: argparse.Namespace) -> Json:
    """The rollout spec the flags ask for: only the fields given."""
    spec: dict[str, Any] = {
        field: getattr(args, dest)
        for dest, field in SPEC_FLAGS.items()
        if getattr(args, dest) is not None
    }
    sticky = {key: getattr(args, dest) for dest, key in STICKY_FLAGS.items()}
    sticky = {key: value for key, value in sticky.items() if value is not None}
    if sticky:
        spec["sticky"] = sticky
    if args.shadow:
        spec["mode"] = "shadow"
    return spec


def _start(client: RegistryClient, args: argparse.Namespace) -> Reply:
    if args.quiet and args.json:
        raise UsageError("--quiet and --json exclude each other")
    body = client.post(path("models", args.name, "rollouts"), spec_of(args))
    if args.quiet:
        return Reply(body, body["id"])
    return Reply(body, f"started rollout {body['id']} ({body['phase']})")


def _list(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = client.get(path("models", args.name, "rollouts"))
    return Reply(body, table(ROLLOUT_COLUMNS, [_row(r) for r in body]))


def _show(client: RegistryClient, args: argparse.Namespace) -> Reply:
    view = client.get(path("rollouts", args.rollout_id))
    return Reply(view, render(view))


def _watch(client: RegistryClient, args: argparse.Namespace) -> Reply:
    """Print each look as it happens until the rollout ends (or --timeout)."""
    seen, deadline = 0, time.monotonic() + args.timeout
    while True:
        view = client.get(path("rollouts", args.rollout_id), {"after": seen})
        for look in view["looks"]:
            line = look_line(look)
            head = f"[{line['phase']} {line['weight']:g}%] {line['outcome']}: {line['why']}"
            arms = f"baseline {line['baseline']} | candidate {line['candidate']}"
            agreed = f" | agreement {line['agreement']}" if line["agreement"] else ""
            print(f"{head} | {arms}{agreed}", flush=True)
            seen = look["seq"]
        r = view["rollout"]
        if r["phase"] in TERMINAL:
            text = f"rollout {r['id']}: {r['phase']} ({r.get('reason') or ''})"
            return Reply(r, text, 0 if r["phase"] == "Succeeded" else 3)
        if time.monotonic() > deadline:
            raise UsageError(f"rollout {r['id']} still {r['phase']} after {args.timeout:g} s")
        time.sleep(args.poll)


def _command(verb: str) -> Any:
    def run(client: RegistryClient, args: argparse.Namespace) -> Reply:
        body = client.post(path("rollouts", args.rollout_id, verb), {})
        return Reply(body, f"rollout {body['id']}: {body['phase']} at {body['weight']:g}%")

    return run


def register(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(sub, "rollouts", "canary and shadow rollouts judged on live traffic")
    start = leaf(group, common, "start", "start a rollout against Production", _start, "name")
    _start_flags(start)
    leaf(group, common, "list", "a model's rollouts, newest first", _list, "name")
    for verb, help_, handler in (
        ("show", "a rollout with every verdict and its evidence", _show),
        ("watch", "print each verdict as it happens until the rollout ends", _watch),
        ("pause", "hold the rollout at its current weight", _command("pause")),
        ("resume", "go on from a pause", _command("resume")),
        ("abort", "send every request back to the baseline now", _command("abort")),
        ("promote", "make the candidate Production now", _command("promote")),
    ):
        parser = leaf(group, common, verb, help_, handler)
        parser.add_argument("rollout_id", metavar="ID", help="rollout id (ro-...)")
        if verb == "watch":
            parser.add_argument("--timeout", type=float, default=3600.0)
            parser.add_argument("--poll", type=float, default=1.0)


def _start_flags(start: argparse.ArgumentParser) -> None:
    """A flag for every field of a rollout spec; the defaults named are the server's."""
    start.add_argument(
        "--candidate", type=int, required=True, metavar="VERSION", help="version to roll out"
    )
    start.add_argument(
        "--steps", type=float, nargs="+", metavar="PERCENT", help="weights (default 1 5 25 50 100)"
    )
    start.add_argument(
        "--interval", type=float, metavar="SECONDS", help="between looks (default 60)"
    )
    start.add_argument(
        "--min-sample", type=int, metavar="N", help="requests per arm before judging (default 100)"
    )
    start.add_argument(
        "--max-error-rate", type=float, metavar="FRACTION", help="SLO gate, a fraction (0.01 = 1%%)"
    )
    start.add_argument(
        "--max-p99-ms", type=float, metavar="MS", help="SLO gate on the candidate's p99"
    )
    start.add_argument(
        "--alpha", type=float, help="false-fail rate of the whole rollout (default 0.01)"
    )
    start.add_argument(
        "--latency-effect-floor",
        type=float,
        metavar="FRACTION",
        help="a slower median fails only from this much slower, relative (default 0.1)",
    )
    start.add_argument(
        "--latency-floor-ms",
        type=float,
        metavar="MS",
        help="...and from this much slower, absolute (default 1)",
    )
    start.add_argument(
        "--max-inconclusive",
        type=int,
        metavar="N",
        help="looks in a step before pausing (default 10)",
    )
    sticky = start.add_mutually_exclusive_group()
    sticky.add_argument("--sticky-header", metavar="NAME", help="keep users on one arm by this")
    sticky.add_argument("--sticky-cookie", metavar="NAME", help="...or by this cookie")
    sticky.add_argument("--sticky-json-field", metavar="FIELD", help="...or this request field")
    start.add_argument("--shadow", action="store_true", help="copies only; never seen by users")
    start.add_argument(
        "--shadow-percent",
        type=float,
        metavar="PERCENT",
        help="shadow: share of requests copied (default 100)",
    )
    start.add_argument(
        "--min-agreement",
        type=float,
        metavar="FRACTION",
        help="shadow: fail when fewer answers agree (default none)",
    )
    start.add_argument(
        "--compare-field",
        metavar="FIELD",
        help="shadow: compare only this answer field, or a dotted path (default the whole answer)",
    )
    start.add_argument("--quiet", "-q", action="store_true", help="print only the new rollout's id")
