"""The model versions of the scaled shape (`models`): a `bentoml containerize` image, or a
registered version served by the modelyard image itself (`modelyard serve-version`)."""

from __future__ import annotations

import pytest

from modelyard.cli.main import build_parser
from tests.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCALED,
    Doc,
    container,
    env_of,
    helm_binary,
    kinds,
    one,
    part,
    pod_spec,
    render,
    run_helm,
    values_args,
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    helm_binary()
    return {name: render(name) for name in SCALED}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("production", {"iris-v1": ("iris", "1", 3000, 1), "iris-v2": ("iris", "2", 3000, 3)}),
        ("external", {"fraud-7": ("fraud", "7", 3001, 1)}),
        ("minimal", {}),
    ],
)
def test_model_versions_run_as_their_own_bentoml_deployments(
    rendered: dict[str, list[Doc]], name: str, expected: dict[str, tuple[str, str, int, int]]
) -> None:
    docs = rendered[name]
    models = [
        d
        for d in kinds(docs, "Deployment")
        if "modelyard.io/model-server" in d["metadata"]["labels"]
    ]
    own = {"iris-v3"} if name == "production" else set()  # served by the modelyard image
    servers = {d["metadata"]["labels"]["modelyard.io/model-server"] for d in models}
    assert servers == set(expected) | own
    for server, (model, version, port, replicas) in expected.items():
        full = part(f"model-{server}", name)
        d = one(docs, "Deployment", full)
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert (labels["modelyard.io/model"], labels["modelyard.io/version"]) == (model, version)
        assert d["spec"]["replicas"] == replicas
        c = container(d)
        assert c["image"].split("/")[-1].startswith(f"{model}")
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert c["startupProbe"]["httpGet"]["path"] == "/livez"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["BENTOML_PORT"] == str(port)
        home = env["BENTOML_HOME"]
        assert home in {m["mountPath"] for m in c["volumeMounts"]}  # writable, root stays r/o
        service = one(docs, "Service", full)
        endpoint = f"http://{full}.{NAMESPACE}.svc:{port}"
        assert service["metadata"]["annotations"]["modelyard.io/endpoint"] == endpoint
        assert service["spec"]["ports"][0]["port"] == port


def test_a_version_without_image_runs_serve_version_in_the_modelyard_image(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    full = part("model-iris-v3")
    d = one(docs, "Deployment", full)
    c = container(d)
    registry = one(docs, "Deployment", part("registry"))
    assert c["image"] == container(registry)["image"]  # the modelyard image, no per-version one
    endpoint = f"http://{full}.{NAMESPACE}.svc:3000"
    assert c["args"] == [
        "serve-version",
        "--model",
        "iris",
        "--version",
        "3",
        "--port",
        "3000",
        "--endpoint",
        endpoint,
    ]
    args = build_parser().parse_args(c["args"])
    assert (args.model, args.version, args.port, args.endpoint) == ("iris", 3, 3000, endpoint)
    assert (
        one(docs, "Service", full)["metadata"]["annotations"]["modelyard.io/endpoint"] == endpoint
    )
    env = env_of(docs, d)
    assert env["MODELYARD_REGISTRY_URL"] == f"http://{part('registry')}.{NAMESPACE}.svc:8000"
    gateway_env = env_of(docs, one(docs, "Deployment", part("gateway")))
    assert env["MODELYARD_REGISTRY_TOKEN"] == gateway_env["MODELYARD_REGISTRY_TOKEN"]
    assert env["MODELYARD_DATA_DIR"] in {m["mountPath"] for m in c["volumeMounts"]}
    spec = pod_spec(d)
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's user, not BentoML's
    assert spec["shareProcessNamespace"] is True  # the pause container reaps the server's children
    # the registry's NetworkPolicy admits it: it reads the version and sets its endpoint
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["modelyard.io/registry-client"] == "true"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    notes = run_helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--dry-run=client",
        *values_args("production"),
    ).stdout
    assert f"iris version 3 at {endpoint}" in notes
    assert "versions create iris --endpoint " + endpoint not in notes  # nothing to do by hand
