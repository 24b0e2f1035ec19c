"""`modelyard stage ... --wait`: after a move to Production or Staging, wait until the version's
model server answers, as `kubectl rollout status` waits for pods. Polls the registry's
deployment view; the decision on each answer is the pure `verdict`."""

from __future__ import annotations

import time
from typing import Any, Final

from modelyard.cli.http import ApiError, RegistryClient, path

SERVED_STAGES: Final = ("Production", "Staging")
POLL_S: Final = 0.5
DONE: Final = "ready"
BROKEN: Final = ("failed",)


def verdict(state: dict[str, Any] | None, deployer: str, endpoint: str | None) -> str | None:
    """'ready', 'failed: …', 'outside: …' when waiting is over; None to keep waiting."""
    if endpoint:
        return f"outside: served by its endpoint {endpoint}"
    if deployer != "local":
        return "outside: this modelyard runs no model servers (deployer none)"
    if state is None:
        return None  # the deployer has not picked it up yet
    status = str(state.get("status"))
    if status == DONE:
        return DONE
    if status in BROKEN:
        return f"failed: {state.get('detail') or status}"
    return None


def wait_served(
    client: RegistryClient, version: dict[str, Any], timeout_s: float
) -> tuple[dict[str, Any] | None, str, int]:
    """(last deployment state, a line to print, exit code: 0 served, 1 failed, 4 timed out)."""
    name, number = version["model"], version["version"]
    if version.get("stage") not in SERVED_STAGES:
        return None, f"version {number} is {version.get('stage')}: nothing to wait for", 0
    deployer = str(client.get(path("deployments")).get("deployer", "none"))
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] | None = None
    while True:
        try:
            state = client.get(path("models", name, "versions", number, "deployment"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            state = None
        found = verdict(state, deployer, version.get("endpoint"))
        if found == DONE and state is not None:
            return state, f"{name} v{number} is served at {state.get('endpoint')}", 0
        if found is not None and found.startswith("failed"):
            return state, f"{name} v{number} {found}", 1
        if found is not None:
            return state, f"{name} v{number}: {found.removeprefix('outside: ')}", 0
        if time.monotonic() > deadline:
            status = state.get("status") if state else "not started"
            return state, f"{name} v{number} still {status} after {timeout_s:g} s", 4
        time.sleep(POLL_S)
