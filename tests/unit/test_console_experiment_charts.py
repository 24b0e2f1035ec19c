"""The experiment page's geometry: intervals on a shared axis (clipped at its edges, zero
marked), and the charts over time built from recorded reads through `results` itself. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec

from registry.experiments.stats import Experiment, ExperimentSpec, Read, Tally, results, start
from registry.web.console import experiment_charts, experiment_views
from registry.web.console.charts import HEIGHT, LEFT, RIGHT, WIDTH

T0 = datetime(2026, 11, 26, tzinfo=UTC)
SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
}


def experiment() -> Experiment:
    spec = msgspec.convert(SPEC, ExperimentSpec)
    return start(spec, id="ex-1", model="iris", production=1, actor="a", now=T0, known={1, 2})


def reads(n: int) -> list[Read]:
    """Reads a minute apart, 100 more outcomes an arm each: v1 converts 10 %, v2 30 %."""
    return [
        Read(
            T0 + timedelta(minutes=i),
            [Tally(1, 100 * i, 10.0 * i, 10.0 * i), Tally(2, 100 * i, 30.0 * i, 30.0 * i)],
            {1: 50.0, 2: 50.0},
        )
        for i in range(1, n + 1)
    ]


def xy(path: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"([\d.]+),([\d.]+)", path)]


def test_the_means_chart_draws_each_arm_with_its_band_at_every_read() -> None:
    ex = experiment()
    chart = experiment_charts.means_chart(ex, reads(5))
    assert [(line.name, line.css, line.points) for line in chart.lines] == [
        ("v1 (control)", "control", 5),
        ("v2", "variant", 5),
    ]
    for line in chart.lines:
        means, band = xy(line.path), xy(line.area)
        assert len(band) == 10  # the upper edge forward, the lower edge back
        assert [x for x, _ in means] == sorted(x for x, _ in means)
        assert means[0][0] == LEFT and means[-1][0] == WIDTH - RIGHT
        for (x, y), (ux, uy), (lx, ly) in zip(means, band[:5], band[5:][::-1], strict=True):
            assert x == ux == lx and uy <= y <= ly  # the mean inside its interval (SVG y down)
        assert all(0 <= y <= HEIGHT for _, y in means + band)
    final = results(ex, {t.version: t for t in reads(5)[-1].tallies})
    two = final.arms[1]
    assert chart.lines[1].last == f"v2: {two.mean:.4g} [{two.ci_low:.4g}, {two.ci_high:.4g}]"
    # the band narrows as outcomes come in
    upper, lower = xy(chart.lines[1].area)[:5], xy(chart.lines[1].area)[5:][::-1]
    widths = [ly - uy for (_, uy), (_, ly) in zip(upper, lower, strict=True)]
    assert widths == sorted(widths, reverse=True)


def test_the_weights_chart_and_an_empty_history() -> None:
    ex = experiment()
    moved = [*reads(2), Read(T0 + timedelta(minutes=3), [], {1: 40.0, 2: 60.0})]
    chart = experiment_charts.weights_chart(ex, moved)
    assert [line.points for line in chart.lines] == [3, 3]
    assert chart.lines[1].last == "v2: 60 %"
    assert [t.label for t in chart.y_ticks] == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    empty = experiment_charts.means_chart(ex, [])
    assert empty.lines == [] and empty.points == 0


def test_intervals_share_an_axis_clipped_at_its_edges() -> None:
    low, high = experiment_views.scale([0.1, 0.3])
    assert low < 0.1 and high > 0.3
    inside = experiment_views.bar(0.2, 0.15, 0.25, low, high)
    assert inside is not None and inside.low < inside.mid < inside.high
    assert not (inside.open_low or inside.open_high)
    past = experiment_views.bar(0.2, -5.0, 5.0, low, high)
    assert past is not None and past.open_low and past.open_high
    assert (past.low, past.high) == (experiment_views.LEFT, experiment_views.RIGHT)
    assert experiment_views.bar(None, 0.1, 0.2, low, high) is None
    signed = experiment_views.axis(-0.1, 0.3, signed=True)
    assert signed.zero is not None and any(t.label == "+0.1" for t in signed.ticks)
    assert experiment_views.axis(0.1, 0.3).zero is None
