"""Paced inference through the gateway (closed loop, used by the canary and mixed scenarios):
every user POSTs one iris row to `/models/<model>/classify` at a constant rate
(LOADRUN_RATE_PER_USER requests/s each). The steady scenario uses one open-loop arrival
process instead (steady.py): users pacing in step send their requests in bursts.

    locust -f loadtests/locustfiles/canary.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000

With LOADRUN_DIRECT_HOST set (loadrun.py does, to the served version's BentoML server), one
more user sends the same requests to BentoML itself, at the same rate and in the same seconds,
named `classify direct`: what the gateway adds is then measured under the same noise.
"""

from __future__ import annotations

from locust import FastHttpUser, constant_throughput, task

from loadtests.locustfiles import common


class Inference(FastHttpUser):
    weight = 4
    wait_time = constant_throughput(common.RATE_PER_USER)

    @task
    def classify(self) -> None:
        self.client.post(
            common.INFER_PATH, data=common.IRIS_BODY, headers=common.JSON_HEADERS, name="classify"
        )


class DirectToBentoML(FastHttpUser):
    fixed_count = 1
    abstract = not common.DIRECT_HOST  # without the variable locust leaves this class out
    wait_time = constant_throughput(common.RATE_PER_USER)

    @task
    def classify(self) -> None:
        # an absolute URL: locust's --host (the gateway) overrides every user's `host`
        url = f"{common.DIRECT_HOST}/classify"
        self.client.post(
            url, data=common.IRIS_BODY, headers=common.JSON_HEADERS, name="classify direct"
        )
