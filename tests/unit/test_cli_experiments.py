"""`modelyard experiments start` has a flag for every field of the experiment spec (the fields
are read from the Struct, so a new field without a flag fails here); the arms; `show`'s text."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import msgspec
import pytest

from contract.traffic import StickyKey
from modelyard.cli.commands import UsageError
from modelyard.cli.experiment_commands import SPEC_FLAGS, arms_of, spec_of
from modelyard.cli.experiment_output import render
from modelyard.cli.main import build_parser, main
from registry.experiments.service import ExperimentView
from registry.experiments.stats import (
    Arm,
    ExperimentMode,
    ExperimentSpec,
    Metric,
    Tally,
    results,
    start,
)


def field_paths(kind: msgspec.inspect.Type, prefix: str = "") -> set[str]:
    """Every leaf field of a Struct: a nested Struct's fields dotted, a list of Structs' as
    `name[].field`."""
    if isinstance(kind, msgspec.inspect.UnionType):  # X | None: the X
        (kind,) = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
    if isinstance(kind, msgspec.inspect.ListType):
        return field_paths(kind.item_type, prefix + "[]")
    if not isinstance(kind, msgspec.inspect.StructType):
        return {prefix}
    dot = "." if prefix else ""
    return {p for f in kind.fields for p in field_paths(f.type, f"{prefix}{dot}{f.name}")}


def parse(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["experiments", "start", "iris", *flags])


def test_every_spec_field_has_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    paths = field_paths(msgspec.inspect.type_info(ExperimentSpec))
    assert {"arms[].weight", "sticky.json_field", "min_sample_per_arm"} <= paths  # it looks deep
    assert not paths - set(SPEC_FLAGS), "spec fields without a flag in SPEC_FLAGS"
    assert not set(SPEC_FLAGS) - paths, "SPEC_FLAGS names fields the spec does not have"
    with pytest.raises(SystemExit):
        main(["experiments", "start", "--help"])
    usage = capsys.readouterr().out
    for flag in SPEC_FLAGS.values():
        assert f"{flag} " in usage


def test_the_flags_set_every_field() -> None:
    args = parse(
        "--arm",
        "3=30",
        "--arm",
        "4=70",
        "--sticky-json-field",
        "user",
        "--metric",
        "reward",
        "--alpha",
        "0.01",
        "--min-sample",
        "500",
        "--mode",
        "bandit",
        "--mde",
        "0.2",
    )
    spec = msgspec.convert(spec_of(args), ExperimentSpec)
    assert spec == ExperimentSpec(
        arms=[Arm(3, 30.0), Arm(4, 70.0)],
        sticky=StickyKey(json_field="user"),
        metric=Metric.REWARD,
        alpha=0.01,
        min_sample_per_arm=500,
        mode=ExperimentMode.BANDIT,
        mde=0.2,
    )
    defaults = ExperimentSpec(arms=spec.arms, sticky=spec.sticky)
    for field in msgspec.structs.fields(ExperimentSpec):  # each one set away from its default
        if field.name not in ("arms", "sticky"):
            assert getattr(spec, field.name) != getattr(defaults, field.name), field.name
    for field in msgspec.structs.fields(StickyKey):  # each source of the key has its flag
        args = parse("--arms", "1=50", "2=50", SPEC_FLAGS[f"sticky.{field.name}"], "k")
        sticky = msgspec.convert(spec_of(args), ExperimentSpec).sticky
        assert getattr(sticky, field.name) == "k"


def test_unset_flags_leave_the_server_defaults() -> None:
    body = spec_of(parse("--arms", "1=50", "2=50", "--sticky-header", "x-user"))
    assert body == {
        "arms": [{"version": 1, "weight": 50.0}, {"version": 2, "weight": 50.0}],
        "sticky": {"header": "x-user"},
    }


def test_arms_without_a_weight_share_what_is_left() -> None:
    assert arms_of([(1, None), (2, None)]) == [
        {"version": 1, "weight": 50.0},
        {"version": 2, "weight": 50.0},
    ]
    assert [a["weight"] for a in arms_of([(1, 70.0), (2, None), (3, None)])] == [70, 15, 15]
    thirds = arms_of([(1, None), (2, None), (3, None)])
    spec = msgspec.convert({"arms": thirds, "sticky": {"header": "h"}}, ExperimentSpec)
    assert abs(sum(a.weight for a in spec.arms) - 100) < 1e-6
    with pytest.raises(UsageError, match="at least two arms"):
        arms_of([(1, 100.0)])
    with pytest.raises(UsageError, match="add up to 100%: nothing left"):
        arms_of([(1, 100.0), (2, None)])


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--arms", "1=50", "two=50", "--sticky-header", "h"], "expected VERSION=WEIGHT"),
        (["--arms", "1=0", "2=100", "--sticky-header", "h"], "expected VERSION=WEIGHT"),
        (["--arms", "1", "2", "--sticky-header", "h", "--sticky-cookie", "c"], "not allowed with"),
        (["--arms", "1", "2"], "one of the arguments --sticky-header"),
        (["--arms", "1", "2", "--sticky-header", "h", "--metric", "ctr"], "invalid choice: 'ctr'"),
        (["--arms", "1", "2", "--sticky-header", "h", "--min-sample", "1"], "an integer >= 2"),
    ],
)
def test_bad_start_flags_are_usage_errors(
    flags: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*flags)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


VIEW = {
    "experiment": {
        "id": "ex-0123456789ab",
        "model": "iris",
        "control": 1,
        "phase": "Stopped",
        "created_by": "alice",
        "created_at": "2024-05-01T12:00:00Z",
        "winner": 2,
        "reason": "v2 converts better",
        "spec": {
            "arms": [{"version": 1, "weight": 50.0}, {"version": 2, "weight": 50.0}],
            "sticky": {"header": "x-user", "cookie": None, "json_field": None},
            "metric": "conversion",
            "alpha": 0.05,
            "min_sample_per_arm": 100,
        },
    },
    "results": {
        "metric": "conversion",
        "alpha_per_comparison": 0.05,
        "verdict": "winner",
        "winner": 2,
        "reason": "version 2 beats the control by +0.2 (p < 0.05)",
        "arms": [
            {
                "version": 1,
                "control": True,
                "n": 200,
                "mean": 0.1,
                "ci_low": 0.0658,
                "ci_high": 0.1491,
                "diff": None,
                "diff_ci_low": None,
                "diff_ci_high": None,
                "p_value": None,
            },
            {
                "version": 2,
                "control": False,
                "n": 210,
                "mean": 0.3,
                "ci_low": 0.2411,
                "ci_high": 0.3665,
                "diff": 0.2,
                "diff_ci_low": 0.1263,
                "diff_ci_high": 0.2737,
                "p_value": 1.234e-7,
            },
        ],
    },
}


def test_show_prints_each_arm_in_columns_and_the_verdict() -> None:
    lines = render(VIEW).splitlines()
    assert lines[0] == (
        "experiment ex-0123456789ab of iris: Stopped (started 2024-05-01T12:00:00Z by alice)"
    )
    assert lines[1] == "arms v1 50% (control), v2 50%; metric conversion; sticky header x-user"
    assert lines[2] == "alpha 0.05 (0.05 per comparison); at least 100 outcomes per arm"
    table = lines[4:7]
    assert table[0].split() == [
        "VERSION",
        "ROLE",
        "WEIGHT",
        "N",
        "MEAN",
        "CI95",
        "DIFF",
        "DIFF_CI95",
        "P_VALUE",
    ]
    assert table[1].split() == [
        "1",
        "control",
        "50%",
        "200",
        "0.1",
        "[0.0658,",
        "0.1491]",
        "-",
        "-",
        "-",
    ]
    assert table[2].split() == [
        "2",
        "variant",
        "50%",
        "210",
        "0.3",
        "[0.2411,",
        "0.3665]",
        "+0.2",
        "[+0.1263,",
        "+0.2737]",
        "1.23e-07",
        "*",
    ]
    starts = [(table[0] + " ").index(f" {h} ") for h in ("N", "MEAN", "DIFF", "P_VALUE")]
    assert [table[2].index(f" {v} ") for v in ("210", "0.3", "+0.2", "1.23e-07")] == starts
    assert lines[-3:] == [
        "verdict: winner - version 2 beats the control by +0.2 (p < 0.05)",
        "winner: version 2",
        "stopped: v2 converts better; version 2 promoted",
    ]


def real_view(mode: str, tallies: dict[int, Tally]) -> dict[str, object]:
    """A `show` answer as the registry builds it (its own Structs, encoded as on the wire)."""
    body = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": {"header": "x-user"},
        "metric": "reward",
        "mode": mode,
        "mde": 0.05,
    }
    spec = msgspec.convert(body, ExperimentSpec)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    ex = start(spec, id="ex-1", model="iris", production=1, actor="bob", now=now, known={1, 2})
    view = ExperimentView(ex, results(ex, tallies))
    return dict(msgspec.json.decode(msgspec.json.encode(view)))


def test_show_prints_the_always_valid_cuped_bandit_and_fixed_horizon_figures() -> None:
    tallies = {  # rewards with a covariate on every outcome: CUPED applies
        1: Tally(1, 4000, 8000.0, 26000.0, 4000, 8000.0, 24000.0, 24000.0),
        2: Tally(2, 4000, 8400.0, 27600.0, 4000, 8000.0, 24000.0, 24000.0 + 400 * 2.0),
    }
    text = render(real_view("bandit", tallies))
    lines = text.splitlines()
    assert lines[2].endswith("; minimum detectable effect +5%")
    assert any(
        line.startswith("inference: always-valid (mixture SPRT tuned to the minimum detectable")
        and "MDE +5%" in line
        and line.endswith("hold at every read")
        for line in lines
    )
    cuped = next(line for line in lines if line.startswith("CUPED:"))
    assert "theta" in cuped and "variance -" in cuped
    bandit = lines.index(next(line for line in lines if line.startswith("bandit (Thompson")))
    assert "0 updates (the arms as started)" in lines[bandit]
    assert lines[bandit + 1].split() == ["VERSION", "ENROLLED", "SERVED", "P_BEST"]
    assert [line.split()[:3] for line in lines[bandit + 2 : bandit + 4]] == [
        ["1", "10%", "50%"],
        ["2", "10%", "50%"],
    ]
    fixed = lines.index(next(line for line in lines if line.startswith("fixed-horizon view")))
    assert "for comparison only" in lines[fixed] and "read once" in lines[fixed]
    assert lines[fixed + 1].split() == ["VERSION", "CI95", "DIFF", "DIFF_CI95", "P_VALUE"]
    assert lines[fixed + 4].startswith("fixed-horizon verdict: ")
    assert lines[-2].startswith("verdict: ") and lines[-1].startswith("winner: ")


def test_show_of_a_fixed_experiment_has_no_bandit_or_cuped_lines() -> None:
    tallies = {1: Tally(1, 300, 600.0, 1500.0), 2: Tally(2, 300, 660.0, 1700.0)}
    text = render(real_view("fixed", tallies))
    assert "CUPED" not in text and "bandit" not in text
    assert "fixed-horizon verdict:" in text and "hold at every read" in text
