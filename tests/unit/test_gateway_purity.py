"""The gateway's pure layers import no IO library (DESIGN.md; the same check as
test_purity.py): reading a request, routing, resilience (which reaches the network only through
the Transport it is given), the breaker, replies and errors, the hooks, and the OIP codecs (JSON
and protobuf)."""

from __future__ import annotations

import pytest

from tests.unit.test_purity import FORBIDDEN, ROOT, imported_roots

PURE = [
    "gateway/breaker.py",
    "gateway/errors.py",
    "gateway/hooks.py",
    "gateway/reply.py",
    "gateway/request.py",
    "gateway/resilience.py",
    "gateway/routing.py",
    "gateway/transport/base.py",
    "gateway/oip/wire.py",
    "gateway/oip/tensors.py",
    "gateway/oip/binary.py",
    "gateway/oip/inputs.py",
    "gateway/oip/outputs.py",
    "gateway/grpc/tensors.py",
    "gateway/grpc/answers.py",
    "gateway/grpc/h2frames.py",
    "gateway/grpc/hpack_decode.py",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_gateway_module_imports_no_io(module: str) -> None:
    bad = imported_roots(ROOT / module) & (FORBIDDEN | {"httptools", "prometheus_client"})
    assert not bad, f"{module} imports IO libraries: {sorted(bad)}"
