"""Registry traffic over `/api/v1`: reads (the model, its versions, an alias), promotions
(a random version to Production, archiving the one there) and alias moves (`champion` to a
random version), about 8 : 1 : 1. loadrun.py makes the model and its versions beforehand
(LOADRUN_REGISTRY_MODEL with LOADRUN_REGISTRY_VERSIONS endpoint versions).

    python -m loadtests.loadrun registry
"""

from __future__ import annotations

import random

from locust import FastHttpUser, constant_throughput, task

from loadtests.locustfiles import common

BASE = f"/api/v1/models/{common.REGISTRY_MODEL}"


class RegistryUser(FastHttpUser):
    weight = 1
    wait_time = constant_throughput(common.RATE_PER_USER)

    def _version(self) -> int:
        return random.randint(1, common.REGISTRY_VERSIONS)

    @task(8)
    def read(self) -> None:
        path = random.choice((BASE, f"{BASE}/versions?limit=20", f"{BASE}/aliases/champion"))
        self.client.get(path, headers=common.AUTH_HEADERS, name="registry read")

    @task(1)
    def promote(self) -> None:
        self.client.post(
            f"{BASE}/versions/{self._version()}/stage",
            json={"stage": "Production", "archive_existing": True, "reason": "load test"},
            headers=common.AUTH_HEADERS,
            name="registry promote",
        )

    @task(1)
    def move_alias(self) -> None:
        self.client.put(
            f"{BASE}/aliases/champion",
            json={"version": self._version()},
            headers=common.AUTH_HEADERS,
            name="registry alias move",
        )
