"""What traffic windows retention may delete (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry.rollouts.windows import prune_cutoff

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_without_rollouts_the_retention_period_decides() -> None:
    assert prune_cutoff(NOW, WEEK, []) == NOW - WEEK


def test_an_active_rollouts_step_keeps_its_windows() -> None:
    old_step = NOW - timedelta(days=9)
    assert prune_cutoff(NOW, WEEK, [NOW - timedelta(hours=1), old_step]) == old_step


def test_a_recent_step_does_not_extend_what_is_deleted() -> None:
    assert prune_cutoff(NOW, WEEK, [NOW - timedelta(minutes=5)]) == NOW - WEEK
