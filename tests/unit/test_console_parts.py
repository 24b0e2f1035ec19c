"""The console's pure parts: chart geometry and weight-change markers, and sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry.ports import StoredSession
from registry.rollouts.judge import ArmSummary, JudgeMemory, Outcome, Verdict
from registry.rollouts.state import Look, Phase, Rollout, RolloutSpec
from registry.web.console.charts import (
    HEIGHT,
    LEFT,
    error_chart,
    latency_chart,
    nice_max,
    weight_changes,
)
from registry.web.console.sessions import Sessions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def arm(p50: float, errors: int = 0) -> ArmSummary:
    return ArmSummary(100, errors, errors / 100, 100 - errors, p50, p50 * 1.5, p50 * 2)


def look(seq: int, weight: float, outcome: Outcome, p50: float = 10.0) -> Look:
    verdict = Verdict(outcome, "why", seq, arm(p50), arm(p50 * 1.1, errors=seq))
    return Look(seq, T0 + timedelta(seconds=10 * seq), Phase.PROGRESSING, 0, weight, verdict)


def rollout(weight: float, phase: Phase = Phase.PROGRESSING, at_s: float = 40) -> Rollout:
    return Rollout(
        id="ro-1",
        model="iris",
        baseline=1,
        spec=RolloutSpec(candidate=2, steps=[10, 50, 100]),
        phase=phase,
        step=0,
        weight=weight,
        step_started_at=T0,
        next_look_at=T0,
        looks_in_step=0,
        looks=0,
        memory=JudgeMemory(),
        created_by="me",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=at_s),
    )


def test_nice_max_rounds_up_to_1_2_5() -> None:
    assert [nice_max(v) for v in (0, 0.7, 1, 1.2, 3, 7.5, 42, 0.013)] == [
        1.0,
        1.0,
        1.0,
        2.0,
        5.0,
        10.0,
        50.0,
        0.02,
    ]


def test_weight_changes_sit_at_the_look_that_moved_them() -> None:
    looks = [
        look(1, 10, Outcome.INCONCLUSIVE),
        look(2, 10, Outcome.PASS),
        look(3, 50, Outcome.FAIL),
    ]
    changes = weight_changes(rollout(0.0, Phase.ROLLED_BACK), looks)
    assert changes == [(T0, 10), (looks[1].at, 50), (looks[2].at, 0.0)]
    # an abort with no deciding look behind it: at the rollout's update
    aborted = weight_changes(rollout(0.0, Phase.ABORTED, at_s=99), looks[:1])
    assert aborted == [(T0, 10), (T0 + timedelta(seconds=99), 0.0)]


def test_charts_plot_each_arm_at_each_look() -> None:
    looks = [look(1, 10, Outcome.PASS, 10), look(2, 50, Outcome.PASS, 20)]
    latency = latency_chart(rollout(100), looks)
    assert latency.points == 8 and [s.name for s in latency.series] == [
        "baseline p50",
        "baseline p99",
        "candidate p50",
        "candidate p99",
    ]
    assert [m.label for m in latency.markers] == ["10 %", "50 %", "100 %"]
    assert latency.markers[0].x == LEFT
    top = latency.series[3].points[1]  # candidate p99 at the second look: 44 ms of 50
    assert top.label.startswith("44 ms") and 0 < top.y < HEIGHT
    assert latency.series[0].path.startswith("M") and " L" in latency.series[0].path
    errors = error_chart(rollout(100), looks)
    assert errors.points == 4 and errors.y_ticks[-1].label == "2 %"
    assert error_chart(rollout(10), []).points == 0


class MemorySessions:
    """The SessionStore Protocol over a dict (the SQL one is tested on both stores)."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredSession] = {}

    async def put_session(self, session: StoredSession) -> None:
        self.rows[session.id_hash] = session

    async def get_session(self, id_hash: str) -> StoredSession | None:
        return self.rows.get(id_hash)

    async def drop_session(self, id_hash: str) -> None:
        self.rows.pop(id_hash, None)

    async def drop_expired_sessions(self, now: float) -> int:
        gone = [k for k, s in self.rows.items() if now >= min(s.expires_at, s.idle_until)]
        for key in gone:
            del self.rows[key]
        return len(gone)


async def test_sessions_expire_when_idle_or_old() -> None:
    now = [0.0]
    store = MemorySessions()
    sessions = Sessions(store, ttl_s=1000, idle_s=100, clock=lambda: now[0])
    session = await sessions.create("hash")
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("x") and not session.csrf_ok(None)
    assert session.id not in str(store.rows)  # only its hash is stored
    now[0] = 90
    seen = await sessions.get(session.id)
    assert seen is not None and (seen.token_hash, seen.csrf) == ("hash", session.csrf)
    assert seen.idle_until == 190  # a request keeps it alive...
    now[0] = 180
    assert (await sessions.get(session.id)) is not None
    now[0] = 290
    assert await sessions.get(session.id) is None and store.rows == {}  # ...idle: gone
    old = await sessions.create("hash")
    for t in range(300, 1400, 60):  # a request a minute: only the absolute limit ends it
        now[0] = t
        assert (await sessions.get(old.id) is not None) is (t < 1300)
    assert await sessions.get(None) is None and await sessions.get("nope") is None
    fresh = await sessions.create("hash")
    await sessions.flash(fresh, "done")
    again = await sessions.get(fresh.id)  # as the next request (maybe on another replica) sees it
    assert again is not None
    assert await sessions.take_flash(again) == "done" and await sessions.take_flash(again) is None
    reread = await sessions.get(fresh.id)
    assert reread is not None and reread.flash is None
    await sessions.drop(fresh.id)
    assert await sessions.get(fresh.id) is None
