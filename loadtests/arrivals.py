"""One open-loop arrival process for both paths of an inference load run. Pure: no clock, no IO,
the random numbers from a `random.Random` handed in (seeded in the tests).

Requests arrive as a Poisson process (exponential gaps, independent of how fast earlier ones were
answered: a slow answer does not delay the next arrival) and each one is sent, at random, through
the gateway or directly to BentoML. Both paths then see the same arrival pattern and so the same
queueing at BentoML, which a closed loop of users pacing in step does not give them (their
requests come in bursts while a lone direct user arrives between the bursts).

The gateway path keeps the scenario's rate (users x rate_per_user, what its budgets are set for);
the direct share is on top of it: with share d the process runs at rate / (1 - d), and a
fraction d of its arrivals goes direct. A p99 from n samples rests on the n/100 slowest of them:
the steady scenario's d = 1/2 at 40 req/s gives both paths 2,400 samples a minute (24 above
each p99): a ratio of two p99s is as precise as its less sampled side, so equal shares make it
the most precise for the samples taken (d = 1/3 gave the direct side 1,200).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Final, NamedTuple

GATEWAY: Final = "classify"
DIRECT: Final = "classify direct"


class Arrival(NamedTuple):
    at_s: float  # seconds since the process started
    name: str  # GATEWAY or DIRECT: the locust request name, and so the path


def total_rate(gateway_rate: float, direct_share: float) -> float:
    """The process's rate so that the gateway path gets `gateway_rate` on average."""
    if gateway_rate <= 0 or not 0 <= direct_share < 1:
        raise ValueError(f"gateway_rate {gateway_rate} > 0 and 0 <= share {direct_share} < 1")
    return gateway_rate / (1 - direct_share)


def schedule(rate: float, direct_share: float, rng: random.Random) -> Iterator[Arrival]:
    """Endless arrivals at `rate` per second, each sent direct with probability `direct_share`."""
    if rate <= 0 or not 0 <= direct_share < 1:
        raise ValueError(f"rate {rate} > 0 and 0 <= share {direct_share} < 1")
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        yield Arrival(at, DIRECT if rng.random() < direct_share else GATEWAY)


def expected_count(rate: float, seconds: float) -> tuple[float, float]:
    """Mean and standard deviation of a Poisson process's count in `seconds`."""
    mean = rate * seconds
    return mean, math.sqrt(mean)
