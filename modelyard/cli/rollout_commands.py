"""Client subcommands for rollouts: start, show (with every verdict and its evidence), list,
watch, pause, resume, abort, promote."""

from __future__ import annotations

import argparse
import time
from typing import Any, Final

from modelyard.cli.client_commands import Reply, Sub, UsageError, command_group, leaf
from modelyard.cli.http import RegistryClient, path
from modelyard.cli.output import Json, table

TERMINAL: Final = ("Succeeded", "RolledBack", "Aborted")
ROLLOUT_COLUMNS: Final = ("id", "phase", "baseline", "candidate", "weight", "looks", "reason")
LOOK_COLUMNS: Final = ("seq", "at", "phase", "weight", "outcome", "baseline", "candidate", "why")


def _row(r: Json) -> Json:
    return {**r, "candidate": r["spec"]["candidate"]}


def _arm(summary: Json) -> str:
    p99 = summary.get("p99_ms")
    tail = f" p99 {p99:.1f}ms" if p99 is not None else ""
    return f"{summary['requests']} req {summary['errors']} err{tail}"


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


def render(view: Json) -> str:
    r = view["rollout"]
    head = (
        f"rollout {r['id']} of {r['model']}: {r['phase']} at {r['weight']:g}%"
        f" (baseline v{r['baseline']}, candidate v{r['spec']['candidate']},"
        f" steps {r['spec']['steps']})"
    )
    lines = [head] + ([f"reason: {r['reason']}"] if r.get("reason") else [])
    looks = view["looks"]
    if looks:
        lines += ["", table(LOOK_COLUMNS, [look_line(x) for x in looks])]
        lines += ["", f"evidence of look {looks[-1]['seq']}:", evidence(looks[-1])]
    return "\n".join(lines)


def _spec(args: argparse.Namespace) -> Json:
    spec: dict[str, Any] = {"candidate": args.candidate, "interval_s": args.interval}
    optional = {
        "steps": args.steps,
        "min_sample_per_arm": args.min_sample,
        "max_error_rate": args.max_error_rate,
        "max_p99_ms": args.max_p99_ms,
        "max_inconclusive": args.max_inconclusive,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    if args.sticky_header:
        spec["sticky"] = {"header": args.sticky_header}
    if args.shadow:
        spec["mode"] = "shadow"
    return spec


def _start(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = client.post(path("models", args.name, "rollouts"), _spec(args))
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
            print(f"{head} | {arms}", flush=True)
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
    start.add_argument("--candidate", type=int, required=True, help="version to roll out")
    start.add_argument(
        "--steps", type=float, nargs="+", help="weights in %% (default 1 5 25 50 100)"
    )
    start.add_argument("--interval", type=float, default=60.0, help="seconds between looks")
    start.add_argument("--min-sample", type=int, help="requests per arm before judging")
    start.add_argument("--max-error-rate", type=float, help="SLO gate, a fraction (0.01 = 1%%)")
    start.add_argument("--max-p99-ms", type=float, help="SLO gate on the candidate's p99")
    start.add_argument("--max-inconclusive", type=int, help="looks per step before pausing")
    start.add_argument("--sticky-header", help="keep users on one arm by this header")
    start.add_argument("--shadow", action="store_true", help="copies only; never seen by users")
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
