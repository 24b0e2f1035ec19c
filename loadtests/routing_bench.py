"""How long one routing decision takes (pure function, no IO): `python -m loadtests.routing_bench`.

Measures `choose()` for the common policies with timeit and prints microseconds per decision.
"""

from __future__ import annotations

import timeit

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import HeaderRule, Split, StickyKey, TrafficPolicy
from gateway.draws import Draws
from gateway.routing import choose

VERSIONS = {v: VersionRoute(v, f"http://127.0.0.1:{9000 + v}", "bentoml") for v in (1, 2, 3)}
CASES = {
    "production only": TrafficPolicy(),
    "unkeyed 10% canary": TrafficPolicy(splits=[Split(version=2, weight=10)]),
    "sticky 10% canary": TrafficPolicy(
        splits=[Split(version=2, weight=10)], sticky=StickyKey(header="x-user"), salt="s"
    ),
    "rules + sticky split": TrafficPolicy(
        splits=[Split(version=2, weight=10), Split(version=3, weight=5)],
        sticky=StickyKey(header="x-user"),
        rules=[HeaderRule(header="x-tester", value="yes", version=3)],
    ),
}


def main() -> None:
    headers = {"x-user": "user-12345", "content-type": "application/json"}
    print(f"{'policy':24} {'us/decision':>12}")
    for name, policy in CASES.items():
        route = ModelRoute("iris", 1, VERSIONS, {}, policy)
        key = "user-12345" if policy.sticky else None  # as the gateway: a key only when sticky
        draws = Draws()
        n = 200_000
        seconds = min(
            timeit.repeat(
                lambda route=route, key=key, draws=draws: choose(
                    route, key=key, headers=headers, draw=draws
                ),
                number=n,
                repeat=5,
            )
        )
        print(f"{name:24} {seconds / n * 1e6:12.2f}")


if __name__ == "__main__":
    main()
