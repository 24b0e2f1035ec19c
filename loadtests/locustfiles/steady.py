"""Steady inference, open loop: one arrival process (loadtests/arrivals.py) for both paths.
Requests arrive as a Poisson process and each one goes, at random, through the gateway
(`/models/<model>/classify`, named `classify`) or straight to the served version's BentoML
server (LOADRUN_DIRECT_HOST, named `classify direct`; a share LOADRUN_DIRECT_SHARE of the
arrivals). The gateway path gets LOADRUN_GATEWAY_RATE requests/s on average whatever the share.

Open loop: every arrival is sent in its own greenlet at its time, whether or not earlier answers
came back, so the same queueing at BentoML hits both paths. At most LOADRUN_MAX_IN_FLIGHT
requests are in flight; an arrival beyond that is not sent and is recorded as
`<name> (over the cap)`, failed, so the report shows it.

    python -m loadtests.loadrun steady      # the one command: serve, load, budgets, report
    python -m loadtests.loadrun steady --arrivals paced   # the earlier closed-loop users instead
"""

from __future__ import annotations

import random
import time

import gevent
import gevent.pool
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from loadtests import arrivals
from loadtests.locustfiles import common

if common.ARRIVALS == "paced":  # the earlier closed-loop design, for comparison (--arrivals)
    from loadtests.locustfiles.paced import DirectToBentoML, Inference

    __all__ = ["DirectToBentoML", "Inference"]


class OpenLoopInference(FastHttpUser):
    abstract = common.ARRIVALS != "poisson"
    fixed_count = 1
    concurrency = common.MAX_IN_FLIGHT  # keep-alive connections per host in its client's pool
    wait_time = constant(0)

    def on_start(self) -> None:
        self._in_flight = gevent.pool.Pool(common.MAX_IN_FLIGHT)
        self._direct_url = f"{common.DIRECT_HOST}/classify"
        self._share = common.DIRECT_SHARE if common.DIRECT_HOST else 0.0

    def on_stop(self) -> None:
        self._in_flight.kill(block=False)

    @task
    def arrive(self) -> None:
        rate = arrivals.total_rate(common.GATEWAY_RATE, self._share)
        rng = random.Random(common.SEED)
        start = time.monotonic()
        for arrival in arrivals.schedule(rate, self._share, rng):
            if arrival.at_s >= common.DURATION_S:
                break
            delay = start + arrival.at_s - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            if self._in_flight.full():
                common.record_over_cap(arrival.name)
                continue
            self._in_flight.spawn(self._send, arrival.name)
        self._in_flight.join(timeout=10)
        raise StopUser

    def _send(self, name: str) -> None:
        # an absolute URL for the direct path: locust's --host (the gateway) is the client's base
        url = self._direct_url if name == arrivals.DIRECT else common.INFER_PATH
        self.client.post(url, data=common.IRIS_BODY, headers=common.JSON_HEADERS, name=name)
