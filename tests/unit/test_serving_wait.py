"""`modelyard stage --wait`: when waiting for a version's model server is over, and how."""

from __future__ import annotations

import pytest

from modelyard.cli.serving_wait import verdict


@pytest.mark.parametrize("status", ["preparing", "starting", "unhealthy", "stopped"])
def test_a_server_on_its_way_keeps_the_wait_going(status: str) -> None:
    assert verdict({"status": status}, "local", None) is None


def test_a_version_the_deployer_has_not_picked_up_yet_keeps_the_wait_going() -> None:
    assert verdict(None, "local", None) is None


def test_ready_ends_the_wait() -> None:
    assert verdict({"status": "ready", "endpoint": "http://127.0.0.1:5"}, "local", None) == "ready"


def test_failed_ends_the_wait_with_the_servers_detail() -> None:
    found = verdict({"status": "failed", "detail": "import error"}, "local", None)
    assert found == "failed: import error"


def test_nothing_to_wait_for_when_modelyard_runs_no_server_for_it() -> None:
    assert verdict(None, "local", "http://10.0.0.7:3000") == (
        "outside: served by its endpoint http://10.0.0.7:3000"
    )
    assert (verdict(None, "none", None) or "").startswith("outside: this modelyard runs no")
