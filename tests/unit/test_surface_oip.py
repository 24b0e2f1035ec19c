"""The paths the gateway answers are a public surface (clients and the Open Inference
Protocol's own tools call them): every method and path template is pinned here, and each is
checked to be answered as listed. After changing them on purpose, rewrite the snapshot with
`MODELYARD_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_surface_oip.py` and
review the diff of tests/snapshots/gateway-routes.txt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import GatewayError
from gateway.request import ANY, ROUTES, UNKNOWN, parse

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "gateway-routes.txt"
EXAMPLE = {"{name}": "iris", "{alias}": "champion", "{version}": "2", "{api}": "classify"}
METHODS = ("GET", "POST", "PUT", "DELETE")


def example(template: str) -> str:
    for placeholder, value in EXAMPLE.items():
        template = template.replace(placeholder, value)
    return template


def test_routes_are_as_pinned() -> None:
    found = "".join(f"{method:4} {template}  ({kind})\n" for method, template, kind in ROUTES)
    if os.environ.get("MODELYARD_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(found)
    assert SNAPSHOT.exists(), f"no snapshot {SNAPSHOT.name}: see this module's docstring"
    assert found == SNAPSHOT.read_text(), "the paths the gateway answers changed"


@pytest.mark.parametrize(("method", "template", "kind"), ROUTES, ids=lambda v: str(v))
def test_each_route_is_answered_as_listed(method: str, template: str, kind: str) -> None:
    path = example(template)
    for other in METHODS:
        listed = method in (ANY, other)
        try:
            call = parse(other, path)
        except GatewayError:
            assert not listed, f"{other} {path} is listed as {kind} but refused"
            continue
        if listed:
            assert call.kind == kind, f"{other} {path}"
            assert call.model in ("", "iris")
        else:
            assert call.kind == UNKNOWN, f"{other} {path} is answered but not listed"
