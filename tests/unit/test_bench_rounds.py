"""Benchmarks measure every leg in interleaved rounds and report each leg's medians
(loadtests.benchkit.interleaved), so that a burst of a neighbour's work lands in one round of
every leg instead of all of one leg's seconds."""

from __future__ import annotations

from loadtests.benchkit import BenchError, WrkResult, in_turn, interleaved, median_summary


def test_rounds_interleave_the_legs_and_report_medians() -> None:
    calls: list[tuple[str, int, int]] = []
    rps = {"a": iter([1.0, 100.0, 300.0, 200.0]), "b": iter([1.0, 50.0, 10.0, 30.0])}

    def run(leg: str, connections: int, seconds: int) -> WrkResult:
        calls.append((leg, connections, seconds))
        value = next(rps[leg])
        return WrkResult(requests=int(value) * seconds, rps=value, p50_ms=value / 100, p99_ms=value)

    runs = interleaved(["a", "b"], run, [16], 2, 1, rounds=3)
    # the warm-up once per leg, then a, b / b, a / a, b: the order rotates each round
    a, b = ("a", 16, 2), ("b", 16, 2)
    assert calls == [("a", 16, 1), ("b", 16, 1), a, b, b, a, a, b]
    assert runs["a"]["c16"]["rps"] == 200.0  # median of 100, 300, 200
    assert runs["a"]["c16"]["rounds_rps"] == [100.0, 300.0, 200.0]
    assert runs["a"]["c16"]["p50_ms"] == 2.0
    assert runs["b"]["c16"]["rps"] == 30.0  # median of 50, 10, 30
    assert runs["b"]["c16"]["rounds_rps"] == [50.0, 10.0, 30.0]  # by round, whatever the order
    assert runs["b"]["c16"]["requests"] == (50 + 10 + 30) * 2


def test_a_leg_failing_in_a_later_round_is_an_error_and_the_others_go_on() -> None:
    seen = {"a": 0, "b": 0}

    def run(leg: str, connections: int, seconds: int) -> WrkResult:
        seen[leg] += 1
        if leg == "b" and seen[leg] == 3:  # the warm-up, round 1, then round 2 fails
            raise BenchError("wrk failed")
        return WrkResult(requests=10, rps=10.0, p50_ms=0.1, p99_ms=0.2)

    runs = interleaved(["a", "b"], run, [1, 16], 1, 1, rounds=2)
    assert runs["b"] == {"error": "wrk failed"}
    assert set(runs["a"]) == {"c1", "c16"}
    assert seen["b"] == 3  # not measured again after it failed


def test_one_round_is_the_run_itself() -> None:
    result = WrkResult(requests=5, rps=12.5, p50_ms=0.5, p99_ms=1.5)
    assert median_summary([result]) == result.summary()


def test_the_order_rotates_by_one_each_round() -> None:
    legs = ["direct", "nginx", "gateway"]
    assert [in_turn(legs, r) for r in range(4)] == [
        ["direct", "nginx", "gateway"],
        ["nginx", "gateway", "direct"],
        ["gateway", "direct", "nginx"],
        ["direct", "nginx", "gateway"],
    ]
    assert in_turn([], 3) == []
