"""kill -9 of the registry between commit and delivery loses no webhook event: the outbox row
committed with the change is delivered after the restart."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Factory
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.e2e
API = "/api/2.0/mlflow"
CHANGES = 20


def test_kill_9_between_commit_and_delivery_loses_no_event(
    server: Factory, admin_token: str
) -> None:
    # a 2 s receiver timeout: rows leased by the killed worker wait 5 s, not the default 25 s
    proc = server(MODELYARD_WEBHOOK_TIMEOUT_S="2")
    proc.start()
    with (
        webhook_receiver() as receiver,
        httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
        ) as c,
    ):
        events = [{"entity": "MODEL_VERSION", "action": "CREATED"}]
        body = {"name": "ci", "url": receiver.url, "events": events, "secret": "s" * 20}
        assert c.post(f"{API}/webhooks", json=body).status_code == 200
        receiver.status = 503  # deliveries fail until after the crash
        assert c.post(f"{API}/registered-models/create", json={"name": "iris"}).status_code == 200
        for i in range(CHANGES):
            r = c.post(
                f"{API}/model-versions/create", json={"name": "iris", "source": f"s3://b/{i}"}
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while not receiver.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.attempts and not receiver.accepted()
        proc.kill9()

        receiver.status = 200
        proc.start()
        got = receiver.wait_for(CHANGES, timeout=60)
        versions = sorted(int(d.json["data"]["version"]) for d in got)
        assert versions == list(range(1, CHANGES + 1))
