"""The console's experiment page in-process on both real stores: linked from the model page,
arms with outcomes, the always-valid results and the fixed-horizon view (labelled), the live
fragment; a deployer stops with or without promoting (the API's rules, its refusals shown
next to the form), a reader sees no form."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.test_api import ADMIN, Client, bearer, token
from tests.integration.test_console import api_setup, app_client, client, errors, log_in

__all__ = ["app_client", "client"]  # the fixtures, used by name

SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
}


async def started(client: Client) -> str:
    await api_setup(client)
    admin = bearer(ADMIN)
    r = await client.post(
        "/api/v1/models/iris/versions/1/stage", json={"stage": "Production"}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/models/iris/experiments", json=SPEC, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def feed(client: Client, ex: str, rates: dict[int, float], n: int) -> None:
    outcomes: list[dict[str, Any]] = []
    for version, rate in rates.items():
        wins = round(n * rate)
        outcomes += [{"version": version, "value": int(i < wins)} for i in range(n)]
    r = await client.post(
        f"/api/v1/experiments/{ex}/feedback", json={"outcomes": outcomes}, headers=bearer(ADMIN)
    )
    assert r.status_code == 202, r.text


async def test_the_page_shows_arms_results_and_the_fixed_view(client: Client) -> None:
    ex = await started(client)
    await log_in(client)
    model = await client.get("/ui/models/iris")
    assert f'href="/ui/experiments/{ex}"' in model.text
    empty = await client.get(f"/ui/experiments/{ex}")
    assert empty.status_code == 200 and 'data-verdict="needs_data"' in empty.text
    assert "not enough outcomes yet" in empty.text

    await feed(client, ex, {1: 0.10, 2: 0.40}, 300)
    page = await client.get(f"/ui/experiments/{ex}")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-verdict="winner"' in html and "<strong>v2</strong>" in html
    assert re.search(r'<tr class="arm" data-version="2" data-n="300">', html)
    assert "always-valid" in html and "hold at every read" in html
    assert "Fixed-horizon view" in html and "for comparison only" in html
    assert 'data-bars="2"' in html  # the means: both arms drawn
    assert 'data-bars="1"' in html  # the differences: v2 against the control
    assert 'id="decide-form"' in html and "(the winner)" in html
    live = await client.get(f"/ui/experiments/{ex}?fragment=live")
    assert live.status_code == 200 and "<html" not in live.text and 'id="arms"' in live.text
    missing = await client.get("/ui/experiments/ex-000000000000")
    assert missing.status_code == 404


async def test_a_deployer_stops_and_promotes_a_reader_cannot(client: Client) -> None:
    ex = await started(client)
    await feed(client, ex, {1: 0.10, 2: 0.40}, 300)
    client.headers.update(bearer(ADMIN))
    reader = await token(client, "reader")
    client.headers.pop("Authorization")
    reader_csrf = await log_in(client, reader)
    view = await client.get(f"/ui/experiments/{ex}")
    assert view.status_code == 200 and 'id="decide-form"' not in view.text
    forged = await client.post(
        f"/ui/experiments/{ex}/stop", data={"csrf_token": reader_csrf, "promote": "2"}
    )
    assert forged.status_code == 403 and "deployer" in errors(forged.text)[0]
    client.cookies.clear()

    csrf = await log_in(client)
    bad = await client.post(
        f"/ui/experiments/{ex}/stop", data={"csrf_token": csrf, "promote": "two"}
    )
    assert bad.status_code == 400 and "(field `promote`)" in errors(bad.text)[0]
    not_arm = await client.post(
        f"/ui/experiments/{ex}/stop", data={"csrf_token": csrf, "promote": "7"}
    )
    assert not_arm.status_code in (400, 404, 409) and errors(not_arm.text)
    still = (await client.get(f"/api/v1/experiments/{ex}", headers=bearer(ADMIN))).json()
    assert still["experiment"]["phase"] == "Running"  # nothing half-done

    done = await client.post(
        f"/ui/experiments/{ex}/stop",
        data={"csrf_token": csrf, "promote": "2", "reason": "v2 converts better"},
    )
    assert done.status_code == 200, done.text
    assert f"Experiment {ex} stopped; version 2 is Production." in done.text
    assert 'data-phase="Stopped"' in done.text and 'id="decide-form"' not in done.text
    version = (await client.get("/api/v1/models/iris/versions/2", headers=bearer(ADMIN))).json()
    assert version["stage"] == "Production"
    again = await client.post(f"/ui/experiments/{ex}/stop", data={"csrf_token": csrf})
    assert again.status_code == 409 and errors(again.text)
