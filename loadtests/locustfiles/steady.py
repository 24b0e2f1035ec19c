"""Steady inference through the gateway: every user POSTs one iris row to
`/models/<model>/classify` at a constant rate (LOADRUN_RATE_PER_USER requests/s each).

    python -m loadtests.loadrun steady      # the one command: serve, load, budgets, report
    locust -f loadtests/locustfiles/steady.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000
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
