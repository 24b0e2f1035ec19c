"""A configured admin token (`MODELYARD_ADMIN_TOKEN`) that was revoked: a real `modelyard
registry` process restarted with it warns at start, naming the token by id, name and prefix
(never the secret) and saying what to do, and keeps refusing it (issue 18: the operator was
locked out with no message)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e


def test_a_revoked_configured_admin_token_is_named_in_a_warning_at_start(
    server: Factory, admin_token: str
) -> None:
    proc = server()
    proc.start()
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"{proc.url}/api/v1", timeout=10) as c:
        other = c.post("/tokens", json={"name": "second-admin", "role": "admin"}, headers=admin)
        assert other.status_code == 201, other.text
        listed = c.get("/tokens", headers=admin).json()["items"]
        configured = next(t for t in listed if t["name"] == "bootstrap-admin")
        second = {"Authorization": f"Bearer {other.json()['token']}"}
        revoked = c.delete(f"/tokens/{configured['id']}", headers=second)
        assert revoked.status_code == 200, revoked.text
    proc.stop()
    assert "revoked" not in proc.output()  # the first start had nothing to warn about

    proc.start()
    with httpx.Client(base_url=f"{proc.url}/api/v1", timeout=10) as c:
        assert c.get("/whoami", headers=admin).status_code == 401  # still refused
        assert c.get("/whoami", headers=second).status_code == 200
    log = proc.output()
    warnings = [line for line in log.splitlines() if "MODELYARD_ADMIN_TOKEN" in line]
    assert len(warnings) == 1, log
    warning = warnings[0]
    print(f"\n{warning}")
    assert f"token {configured['id']} ('bootstrap-admin', {configured['prefix']}...)" in warning
    assert "revoked at" in warning and "new secret" in warning
    assert admin_token not in log
