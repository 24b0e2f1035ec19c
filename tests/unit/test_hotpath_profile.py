"""The hot-path harness (loadtests/hotpath_profile.py) drives the real gateway with fake
sockets: its answers must be the gateway's real answers, and its routed leg must really split.
The routed leg's parser of /metrics (loadtests/canary_leg.py) reads any label order."""

from __future__ import annotations

import pytest

from gateway.metrics import GatewayMetrics
from gateway.routing import choose
from loadtests import canary_leg, hotpath_profile


@pytest.mark.parametrize("leg", hotpath_profile.LEGS)
def test_the_harness_answers_through_the_whole_gateway(leg: str) -> None:
    last = hotpath_profile.run(leg, requests=40, warmup=5)
    head, _, body = last.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nx-modelyard-model: bench\r\n" in head
    assert body == b'{"predictions":[0]}'


def test_the_routed_leg_cycles_the_benchs_users_and_a_tenth_reach_the_canary() -> None:
    route = hotpath_profile.route_table("routed").models["bench"]
    canary = 0
    for n in range(2000):
        user = b"\r\nx-user: user-%d\r\n" % (n % canary_leg.KEYS)
        assert user in hotpath_profile.request_bytes("routed", n)
        canary += choose(route, key=f"user-{n % canary_leg.KEYS}").version == 2
    assert 100 < canary < 300, canary  # 10 % of the buckets
    assert hotpath_profile.request_bytes("routed", 7) == hotpath_profile.request_bytes(
        "routed", 7 + canary_leg.KEYS
    )


def test_the_fresh_leg_never_repeats_a_key() -> None:
    sent = {hotpath_profile.request_bytes("routed-fresh", n) for n in range(5000)}
    assert len(sent) == 5000
    assert b"\r\nx-user: fresh-4999\r\n" in hotpath_profile.request_bytes("routed-fresh", 4999)


def test_the_split_is_read_from_metrics_whatever_the_label_order() -> None:
    metrics = GatewayMetrics()
    for version, variant, count in (("1", "stable", 9), ("2", "canary", 1)):
        for _ in range(count):
            metrics.observe(canary_leg.MODEL, version, variant, 0.001, False)
    metrics.observe("bench", "1", "stable", 0.001, False)
    assert canary_leg.parse_split(metrics.render().decode()) == {"1": 9, "2": 1}


@pytest.mark.parametrize(("leg", "flags"), [("traced0", b"00"), ("traced100", b"01")])
def test_the_tracing_legs_forward_a_traceparent_and_record_what_they_sample(
    leg: str, flags: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    write = hotpath_profile._UpstreamSocket.write

    def kept(self: hotpath_profile._UpstreamSocket, data: bytes) -> None:
        sent.append(data)
        write(self, data)

    monkeypatch.setattr(hotpath_profile._UpstreamSocket, "write", kept)
    records: list[object] = []
    hotpath_profile.run(leg, requests=30, warmup=2, emit=records.append)
    assert len(sent) == 32
    for data in sent:
        head = data.partition(b"\r\n\r\n")[0]
        assert head.count(b"\r\ntraceparent: 00-") == 1
        assert head.endswith(b"-" + flags)
    assert len(records) == (64 if flags == b"01" else 0)  # a SERVER and a CLIENT span each


def test_the_one_percent_leg_samples_the_same_requests_every_run() -> None:
    runs = []
    for _ in range(2):
        records: list[tuple[object, ...]] = []
        hotpath_profile.run("traced1", requests=1000, warmup=0, emit=records.append)
        runs.append([record[2] for record in records])  # the trace ids
    assert runs[0] == runs[1] and 0 < len(runs[0]) < 60
