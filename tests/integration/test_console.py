"""The web console's routes in-process, without a browser, on both real stores: the login
redirect, sessions and logout, CSRF and origin refusals, role checks, errors shown as
messages next to the form (never a stack trace), and the live fragments."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings
from registry.catalog.domain import MAX_NAME
from registry.web.console.views import MODELS_PER_PAGE
from registry.web.state import install, web_state
from tests.integration.test_api import ADMIN, Client, bearer, model_with_versions, token

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ERROR = re.compile(r'class="error"[^>]*>([^<]*)<')


@pytest.fixture
async def app_client(store_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Client]]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), database_url=store_url, admin_token=ADMIN, rollout_tick_s=0.05
    )
    app = create_app(settings, "registry")
    async with AsyncTestClient(app=app) as c:
        yield app, c


@pytest.fixture
async def client(app_client: tuple[Any, Client]) -> Client:
    return app_client[1]


async def api_setup(client: Client, versions: int = 2) -> None:
    client.headers.update(bearer(ADMIN))
    await model_with_versions(client, versions)
    client.headers.pop("Authorization")


async def login_csrf(client: Client) -> str:
    """The login form's CSRF token (its cookie is now in the client)."""
    form = await client.get("/ui/login")
    found = CSRF.search(form.text)
    assert form.status_code == 200 and found is not None, form.text
    return found.group(1)


async def log_in(client: Client, secret: str = ADMIN) -> str:
    """Log in; returns the session's CSRF token."""
    data = {"token": secret, "next": "/ui", "csrf_token": await login_csrf(client)}
    r = await client.post("/ui/login", data=data)
    assert r.status_code == 200 and "<h1>Models</h1>" in r.text, r.text
    found = CSRF.search(r.text)
    assert found is not None
    return found.group(1)


def errors(html: str) -> list[str]:
    return [unescape(m) for m in ERROR.findall(html)]


async def test_pages_need_a_session_and_the_token_never_leaves_the_login(client: Client) -> None:
    r = await client.get("/ui/models/iris?fragment=live", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fmodels%2Firis%3Ffragment%3Dlive"
    poll = await client.get("/ui/models/iris", headers={"x-console-poll": "1"})
    assert poll.status_code == 401  # console.js sends the browser to the login page
    # a bearer token is not a console session
    assert (
        await client.get("/ui", headers=bearer(ADMIN), follow_redirects=False)
    ).status_code == 303

    csrf = await login_csrf(client)
    bad = await client.post("/ui/login", data={"token": "not-a-token-at-all", "csrf_token": csrf})
    assert bad.status_code == 401 and errors(bad.text) == ["unknown or revoked token"]
    assert "set-cookie" not in bad.headers
    r = await client.post(
        "/ui/login",
        data={"token": ADMIN, "next": "https://evil.example/ui", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert ADMIN not in cookie and ADMIN not in r.text
    page = await client.get("/ui")
    assert page.status_code == 200 and ADMIN not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"


async def test_logout_and_revocation_end_the_session(client: Client) -> None:
    client.headers.update(bearer(ADMIN))
    reader = await token(client, "reader")
    tokens = (await client.get("/api/v1/tokens")).json()["items"]
    client.headers.pop("Authorization")
    csrf = await log_in(client, reader)
    assert (await client.get("/ui")).status_code == 200
    reader_id = next(t["id"] for t in tokens if t["name"] == "reader-bot")
    revoked = await client.delete(f"/api/v1/tokens/{reader_id}", headers=bearer(ADMIN))
    assert revoked.status_code == 200, revoked.text
    r = await client.get("/ui", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")

    csrf = await log_in(client)
    old_cookie = client.cookies.get("modelyard_console")
    out = await client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    client.cookies.set("modelyard_console", old_cookie or "", path="/ui")
    assert (await client.get("/ui", follow_redirects=False)).status_code == 303


async def test_posts_need_the_session_csrf_token_and_this_origin(client: Client) -> None:
    await api_setup(client)
    csrf = await log_in(client)
    form = {"version": "1", "stage": "Production"}
    missing = await client.post("/ui/models/iris/stage", data=form)
    assert missing.status_code == 403 and "out of date" in errors(missing.text)[0]
    wrong = await client.post("/ui/models/iris/stage", data={**form, "csrf_token": csrf[:-2]})
    assert wrong.status_code == 403
    cross = await client.post(
        "/ui/models/iris/stage",
        data={**form, "csrf_token": csrf},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "evil.example" in errors(cross.text)[0]
    versions = (await client.get("/api/v1/models/iris/versions", headers=bearer(ADMIN))).json()
    assert {v["stage"] for v in versions["items"]} == {"None"}
    # the header form of the token (for scripts) works too
    ok = await client.post(
        "/ui/models/iris/stage", data=form, headers={"x-csrf-token": csrf}, follow_redirects=False
    )
    assert ok.status_code == 303


async def test_a_reader_sees_no_forms_and_is_refused(client: Client) -> None:
    await api_setup(client)
    client.headers.update(bearer(ADMIN))
    reader = await token(client, "reader")
    client.headers.pop("Authorization")
    csrf = await log_in(client, reader)
    page = await client.get("/ui/models/iris")
    assert page.status_code == 200
    assert 'method="post"' not in page.text.split("</header>", 1)[1]
    r = await client.post(
        "/ui/models/iris/stage", data={"csrf_token": csrf, "version": "1", "stage": "Production"}
    )
    assert r.status_code == 403
    assert errors(r.text) == ["this needs the deployer role; token 'reader-bot' has reader"]
    audit = (await client.get("/api/v1/models/iris/audit", headers=bearer(ADMIN))).json()
    assert [e["action"] for e in audit["items"]] == [
        "model.create",
        "version.create",
        "version.create",
    ]


async def test_actions_use_the_api_rules_and_show_their_errors(client: Client) -> None:
    await api_setup(client)
    csrf = await log_in(client)
    done = await client.post(
        "/ui/models/iris/stage",
        data={"csrf_token": csrf, "version": "1", "stage": "Production", "reason": "good"},
    )
    assert done.status_code == 200 and "Version 1 of iris is now in Production." in done.text
    audit = (await client.get("/api/v1/models/iris/audit", headers=bearer(ADMIN))).json()
    last = audit["items"][-1]
    assert last["actor"] == "bootstrap-admin" and last["reason"] == "good" and last["version"] == 1

    # the same refusals as the REST API, as a message next to the form, the form kept
    occupied = await client.post(
        "/ui/models/iris/stage",
        data={"csrf_token": csrf, "version": "2", "stage": "Production", "reason": "again"},
    )
    assert occupied.status_code == 409 and 'id="stage-error"' in occupied.text
    assert "Production" in errors(occupied.text)[0] and 'value="again"' in occupied.text
    alias = await client.post(
        "/ui/models/iris/alias", data={"csrf_token": csrf, "alias": "latest", "version": "1"}
    )
    assert alias.status_code == 400 and "latest" in errors(alias.text)[0]
    steps = await client.post(
        "/ui/models/iris/rollouts", data={"csrf_token": csrf, "candidate": "2", "steps": "50 10"}
    )
    assert steps.status_code == 400 and "(field `steps`)" in errors(steps.text)[0]
    typo = await client.post(
        "/ui/models/iris/rollouts",
        data={"csrf_token": csrf, "candidate": "2", "interval_s": "soon"},
    )
    assert typo.status_code == 400 and "(field `interval_s`)" in errors(typo.text)[0]
    for r in (occupied, alias, steps, typo):
        assert "Traceback" not in r.text

    started = await client.post(
        "/ui/models/iris/rollouts",
        data={"csrf_token": csrf, "candidate": "2", "steps": "10, 50", "interval_s": "60"},
        follow_redirects=False,
    )
    assert started.status_code == 303
    rollout = started.headers["location"].rsplit("/", 1)[1]
    view = (await client.get(f"/api/v1/rollouts/{rollout}", headers=bearer(ADMIN))).json()
    assert view["rollout"]["spec"]["steps"] == [10, 50]
    again = await client.post(
        "/ui/models/iris/rollouts", data={"csrf_token": csrf, "candidate": "2"}
    )
    assert again.status_code == 409 and 'id="rollout-error"' in again.text

    aborted = await client.post(f"/ui/rollouts/{rollout}/abort", data={"csrf_token": csrf})
    assert aborted.status_code == 200 and "abort done, now Aborted" in aborted.text
    over = await client.post(f"/ui/rollouts/{rollout}/resume", data={"csrf_token": csrf})
    assert over.status_code == 409 and "it is over" in errors(over.text)[0]
    unknown = await client.post(f"/ui/rollouts/{rollout}/explode", data={"csrf_token": csrf})
    assert unknown.status_code == 404


async def test_fragments_and_missing_things(client: Client) -> None:
    await api_setup(client)
    await log_in(client)
    live = await client.get("/ui/models/iris?fragment=live", headers={"x-console-poll": "1"})
    assert live.status_code == 200 and "<html" not in live.text and 'id="versions"' in live.text
    models = await client.get("/ui?q=ir&fragment=live")
    assert "iris" in models.text and "<html" not in models.text
    assert "iris" not in (await client.get("/ui?q=zz&fragment=live")).text
    missing = await client.get("/ui/models/nope")
    assert missing.status_code == 404 and "does not exist" in errors(missing.text)[0]
    gone = await client.get("/ui/rollouts/ro-000000000000")
    assert gone.status_code == 404
    gateway = await client.get("/ui/gateway")
    assert gateway.status_code == 200 and "No gateway runs in this process" in gateway.text
    js = await client.get("/ui/static/console.js")
    assert js.status_code == 200 and "data-poll" in js.text


class Broken:
    async def get(self, rollout_id: str) -> Any:
        raise RuntimeError("secret internals")


async def test_an_unexpected_failure_shows_a_generic_page(
    app_client: tuple[Any, Client], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = app_client
    await log_in(client)
    install(app.state, replace(web_state(app.state), rollouts=Broken()))
    r = await client.get("/ui/rollouts/ro-1", headers={"x-request-id": "req-42"})
    assert r.status_code == 500
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert "request id req-42" in r.text
    assert "secret internals" in caplog.text


async def test_a_login_without_the_forms_csrf_token_is_refused(client: Client) -> None:
    """Login CSRF: another site cannot log the browser in (with its own token): the POST must
    carry the token of a login form this server gave, matching that form's cookie."""
    for data in ({"token": ADMIN}, {"token": ADMIN, "csrf_token": "forged"}):
        r = await client.post("/ui/login", data=data, follow_redirects=False)
        assert r.status_code == 403 and "out of date" in r.text
        assert "modelyard_console" not in r.headers.get("set-cookie", "")
    csrf = await login_csrf(client)
    client.cookies.delete("modelyard_login")  # the form's token without its cookie
    r = await client.post(
        "/ui/login", data={"token": ADMIN, "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 403
    assert (await client.get("/ui", follow_redirects=False)).status_code == 303  # no session


async def test_model_pages_take_names_up_to_the_name_limit(client: Client) -> None:
    """The console's search prefix and page cursor (the last name shown) hold any model name
    (MAX_NAME characters): a page ending on a long name has a next page."""
    names = ["m" * (MAX_NAME - 2) + f"{i:02d}" for i in range(MODELS_PER_PAGE + 1)]
    client.headers.update(bearer(ADMIN))
    for name in names:
        assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    client.headers.pop("Authorization")
    await log_in(client)
    last_shown = names[MODELS_PER_PAGE - 1]
    r = await client.get("/ui", params={"after": last_shown})
    assert r.status_code == 200, r.text
    assert names[-1] in r.text and last_shown not in r.text
    r = await client.get("/ui", params={"q": names[-1]})
    assert r.status_code == 200 and names[-1] in r.text, r.text
    too_long = await client.get("/ui", params={"q": "m" * (MAX_NAME + 1)})
    assert too_long.status_code == 400


async def test_nul_characters_and_huge_versions_are_400_not_500(client: Client) -> None:
    """As on the API (issue 18): PostgreSQL's text cannot hold U+0000, and versions are
    BIGINTs; each is a message next to the form, nothing written."""
    await api_setup(client)
    csrf = await log_in(client)
    stage = {"csrf_token": csrf, "version": "1", "stage": "Staging"}
    nul = await client.post("/ui/models/iris/stage", data={**stage, "reason": "a\x00b"})
    assert nul.status_code == 400 and "(field `reason`)" in errors(nul.text)[0], nul.text
    huge = await client.post("/ui/models/iris/stage", data={**stage, "version": str(2**63)})
    assert huge.status_code == 400 and "(field `version`)" in errors(huge.text)[0], huge.text
    alias = {"csrf_token": csrf, "alias": "champion", "version": str(2**63)}
    huge = await client.post("/ui/models/iris/alias", data=alias)
    assert huge.status_code == 400 and "(field `version`)" in errors(huge.text)[0], huge.text
    in_path = await client.get("/ui/models/a%00b")
    assert in_path.status_code == 400 and "NUL character" in in_path.text, in_path.text
    for r in (nul, huge, in_path):
        assert "Traceback" not in r.text
    audit = (await client.get("/api/v1/models/iris/audit", headers=bearer(ADMIN))).json()
    assert [e["action"] for e in audit["items"] if e["version"] == 1] == ["version.create"]
