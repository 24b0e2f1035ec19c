"""How `modelyard experiments` prints an experiment: a row of `list`, and the results of
`show`: each arm's figures (always-valid: p-values and 95 % confidence sequences that hold at
every read), the CUPED adjustment and the bandit's state when there are any, the fixed-horizon
view (labelled: for comparison only), then the verdict. Pure: JSON in, text out. Fields a
registry of before did not send are left out, never shown as errors."""

from __future__ import annotations

from typing import Final

from modelyard.cli.output import Json, table

EXPERIMENT_COLUMNS: Final = ("id", "phase", "arms", "metric", "sticky", "winner", "created_at")
ARM_COLUMNS: Final = (
    "version",
    "role",
    "weight",
    "n",
    "mean",
    "ci95",
    "diff",
    "diff_ci95",
    "p_value",
)
FIXED_COLUMNS: Final = ("version", "ci95", "diff", "diff_ci95", "p_value")
BANDIT_COLUMNS: Final = ("version", "enrolled", "served", "p_best")


def arms(experiment: Json) -> str:
    control = experiment["control"]
    return ", ".join(
        f"v{a['version']} {a['weight']:g}%" + (" (control)" if a["version"] == control else "")
        for a in experiment["spec"]["arms"]
    )


def sticky(spec: Json) -> str:
    return ", ".join(f"{k} {v}" for k, v in spec["sticky"].items() if v is not None)


def row(experiment: Json) -> Json:
    spec = experiment["spec"]
    winner = experiment.get("winner")
    return {
        **experiment,
        "arms": arms(experiment),
        "metric": spec["metric"],
        "sticky": sticky(spec),
        "winner": None if winner is None else f"v{winner}",
    }


def _num(value: float | None, signed: bool = False) -> str | None:
    return None if value is None else format(value, "+.4g" if signed else ".4g")


def _interval(low: float | None, high: float | None, signed: bool = False) -> str | None:
    if low is None or high is None:
        return None
    return f"[{_num(low, signed)}, {_num(high, signed)}]"


def _p(p: float | None, alpha: float) -> str | None:
    mark = "" if p is None or p >= alpha else " *"
    return None if p is None else f"{p:.3g}{mark}"


def arm_line(arm: Json, weight: float, alpha: float) -> Json:
    return {
        "version": arm["version"],
        "role": "control" if arm["control"] else "variant",
        "weight": f"{weight:g}%",
        "n": arm["n"],
        "mean": _num(arm["mean"]),
        "ci95": _interval(arm["ci_low"], arm["ci_high"]),
        "diff": _num(arm.get("diff"), signed=True),
        "diff_ci95": _interval(arm.get("diff_ci_low"), arm.get("diff_ci_high"), signed=True),
        "p_value": _p(arm.get("p_value"), alpha),
    }


def fixed_line(arm: Json, alpha: float) -> Json:
    return {
        "version": arm["version"],
        "ci95": _interval(arm["ci_low"], arm["ci_high"]),
        "diff": _num(arm.get("diff"), signed=True),
        "diff_ci95": _interval(arm.get("diff_ci_low"), arm.get("diff_ci_high"), signed=True),
        "p_value": _p(arm.get("p_value"), alpha),
    }


def _inference(res: Json, spec: Json) -> list[str]:
    if "inference" not in res:
        return []
    mde = res.get("mde", spec.get("mde"))
    tuned = "" if mde is None else f", MDE {mde:+.0%}"
    return [f"inference: {res['inference']}{tuned} - the p-values and intervals hold at every read"]


def _cuped(res: Json) -> list[str]:
    how = res.get("cuped")
    if not how:
        return []
    return [
        f"CUPED: the differences are adjusted with the covariate (theta {how['theta']:.4g},"
        f" its mean {how['covariate_mean']:.4g}): variance {-how['variance_reduction']:+.0%}"
    ]


def _bandit(ex: Json, res: Json) -> list[str]:
    allocation = ex.get("allocation")
    if not allocation:
        return []
    rows = [
        {
            "version": s["version"],
            "enrolled": f"{(s['end'] - s['start']) / 100:g}%",
            "served": f"{s['served'] / 100:g}%",
            "p_best": _num(s.get("p_best")),
        }
        for s in sorted(allocation["arms"], key=lambda s: int(s["version"]))
    ]
    updates = allocation.get("updates", 0)
    last = f", the last at {allocation['updated_at']}" if updates else " (the arms as started)"
    regret = res.get("regret")
    lost = "" if regret is None else f"; regret against the best arm so far {regret:.4g}"
    return [
        "",
        f"bandit (Thompson sampling): {updates} updates{last}{lost}",
        table(BANDIT_COLUMNS, rows),
    ]


def _fixed(res: Json) -> list[str]:
    view = res.get("fixed_horizon")
    if not view:
        return []
    each = view["alpha_per_comparison"]
    return [
        "",
        f"fixed-horizon view - {view['note']}:",
        table(FIXED_COLUMNS, [fixed_line(a, each) for a in view["arms"]]),
        f"fixed-horizon verdict: {view['verdict']} - {view['reason']}",
    ]


def render(view: Json) -> str:
    """An experiment's results: per-arm counts, means with 95 % intervals, differences from
    the control with their intervals and p-values; the CUPED adjustment, the bandit's state and
    the fixed-horizon view when the results have them; then the verdict."""
    ex, res = view["experiment"], view["results"]
    spec = ex["spec"]
    weights = {a["version"]: a["weight"] for a in spec["arms"]}
    now = {a["version"]: a.get("weight") for a in res["arms"]}  # a bandit's shares now
    each = res["alpha_per_comparison"]
    mde = "" if spec.get("mde") is None else f"; minimum detectable effect {spec['mde']:+.0%}"
    lines = [
        f"experiment {ex['id']} of {ex['model']}: {ex['phase']} (started {ex['created_at']}"
        f" by {ex['created_by']})",
        f"arms {arms(ex)}; metric {res['metric']}; sticky {sticky(spec)}",
        f"alpha {spec['alpha']:g} ({each:.3g} per comparison);"
        f" at least {spec['min_sample_per_arm']} outcomes per arm{mde}",
        "",
        table(
            ARM_COLUMNS,
            [arm_line(a, now[a["version"]] or weights[a["version"]], each) for a in res["arms"]],
        ),
        f"(* p below {each:.3g})",
        *_inference(res, spec),
        *_cuped(res),
        *_bandit(ex, res),
        *_fixed(res),
        "",
        f"verdict: {res['verdict']} - {res['reason']}",
        "winner: " + ("-" if res["winner"] is None else f"version {res['winner']}"),
    ]
    if ex["phase"] != "Running":
        promoted = "" if ex.get("winner") is None else f"; version {ex['winner']} promoted"
        lines.append(f"stopped: {ex.get('reason') or '-'}{promoted}")
    return "\n".join(lines)
