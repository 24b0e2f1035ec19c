"""The chart with no values at all: one pod running `modelyard serve` on SQLite and local
artifacts on a PersistentVolumeClaim, an admin token generated once and kept on upgrades,
NOTES that say how to start, and a `helm test` hook.

The kept token: `helm template --dry-run=server` against a fake API server (tests/fake_kube.py)
runs the chart's real `lookup` with the real helm, as `helm upgrade` does; the first render
(nothing in the cluster) generates a token, the next (the cluster holds the Secret that render
made) must give the same token back.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.settings import load_settings
from tests.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    Doc,
    container,
    env_of,
    helm_binary,
    is_hook,
    kinds,
    one,
    pod_spec,
    render,
    run_helm,
    secret_ref,
)
from tests.fake_kube import cluster

NAME = f"{RELEASE}-modelyard"  # every object of the single-pod shape
DATA_DIR = "/var/lib/modelyard"
TOKEN = re.compile(r"^myd_[A-Za-z0-9]{43}$")


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    helm_binary()
    return render("default")


def serve_deployment(docs: list[Doc]) -> Doc:
    (deployment,) = kinds(docs, "Deployment")
    assert deployment["metadata"]["name"] == NAME
    return deployment


def test_one_pod_runs_modelyard_serve_with_the_local_deployer(docs: list[Doc]) -> None:
    deployment = serve_deployment(docs)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # one SQLite, one RWO volume
    c = container(deployment)
    assert c["args"] == ["serve"]
    env = env_of(docs, deployment)
    assert env["MODELYARD_DEPLOYER"] == "local"  # `bentoml serve` per promoted version
    assert "MODELYARD_DATABASE_URL" not in env and "MODELYARD_ARTIFACT_URL" not in env
    assert secret_ref(env, "MODELYARD_ADMIN_TOKEN") == (NAME, "admin-token")
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = load_settings(plain)
    assert settings.metadata_url == f"sqlite:///{DATA_DIR}/modelyard.db"
    assert (settings.host, settings.port, settings.deployer) == ("0.0.0.0", 8000, "local")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    spec = pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["shareProcessNamespace"] is True  # the pause container reaps model servers
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (service,) = kinds(docs, "Service")
    assert service["metadata"]["name"] == NAME
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["port"] == 8000
    # nothing of the scaled shape
    assert {d["kind"] for d in docs}.isdisjoint(
        {"PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"}
    )


def test_the_data_folder_is_a_persistent_volume_claim(docs: list[Doc]) -> None:
    deployment = serve_deployment(docs)
    (claim,) = kinds(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == NAME
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    assert volumes[mounts[DATA_DIR]]["persistentVolumeClaim"] == {"claimName": NAME}
    assert env_of(docs, deployment)["MODELYARD_DATA_DIR"] == DATA_DIR
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # an existing claim is used as it is, and none is made
    other = render("default", "1.35.0", "serve.persistence.existingClaim=models-data")
    assert kinds(other, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(serve_deployment(other))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "models-data"}


def _token(docs: list[Doc]) -> str:
    secret = one(docs, "Secret", NAME)
    token: str = secret["stringData"]["admin-token"]
    return token


def _render_against(cluster_objects: dict[Any, Any]) -> tuple[list[Doc], list[str]]:
    with cluster(cluster_objects) as (kubeconfig, seen):
        done = run_helm(
            "template",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--dry-run=server",
            "--disable-openapi-validation",
            env={
                **os.environ,
                "KUBECONFIG": kubeconfig,
                "HELM_CACHE_HOME": str(Path(kubeconfig).parent),
            },
        )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d], seen


def _stored(token: str) -> dict[Any, Any]:
    """The cluster after an install that rendered `token`: its Secret, as the API returns it."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {
                "meta.helm.sh/release-name": RELEASE,
                "meta.helm.sh/release-namespace": NAMESPACE,
                "helm.sh/resource-policy": "keep",
            },
        },
        "data": {"admin-token": base64.b64encode(token.encode()).decode()},
    }
    return {("v1", "secrets", NAMESPACE, NAME): secret}


def test_the_generated_token_is_kept_on_upgrade(docs: list[Doc]) -> None:
    secret = one(docs, "Secret", NAME)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    installed, seen = _render_against({})
    first = _token(installed)
    assert TOKEN.match(first), first
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}" in seen  # the lookup was made
    assert _token(render("default")) != first  # with nothing to look up: a new one each time
    upgraded, _ = _render_against(_stored(first))
    assert _token(upgraded) == first
    again, _ = _render_against(_stored(first))
    assert _token(again) == first
    # what is kept is what the cluster holds, not something the chart knows by itself
    other = "myd_" + "z" * 43
    assert _token(_render_against(_stored(other))[0]) == other
    # the pod is not rolled by a kept token: its checksum is over the values
    annotations = [
        serve_deployment(d)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        for d in (installed, upgraded, docs)
    ]
    assert len(set(annotations)) == 1


def test_a_token_given_in_values_is_used_and_not_kept(docs: list[Doc]) -> None:
    given = render("default", "1.35.0", "adminToken.value=myd_given-token-0123456789")
    secret = one(given, "Secret", NAME)
    assert secret["stringData"] == {"admin-token": "myd_given-token-0123456789"}
    assert "annotations" not in secret["metadata"]
    named = render("default", "1.35.0", "adminToken.existingSecret=my-admin")
    assert kinds(named, "Secret") == []
    env = env_of(named, serve_deployment(named))
    assert secret_ref(env, "MODELYARD_ADMIN_TOKEN") == ("my-admin", "admin-token")


def test_notes_say_how_to_read_the_token_port_forward_and_serve_a_bento() -> None:
    done = run_helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    for line in (
        f"kubectl -n {NAMESPACE} get secret {NAME} -o jsonpath='{{.data.admin-token}}' | base64 -d",
        f"kubectl -n {NAMESPACE} port-forward svc/{NAME} 8000:8000",
        "export MODELYARD_URL=http://127.0.0.1:8000",
        "modelyard models create iris\n",
        "modelyard versions create iris --bento iris.bento",
        "modelyard stage iris 1 Production --wait",
        "curl -s -X POST http://127.0.0.1:8000/models/iris/classify",
        f"helm test {RELEASE} -n {NAMESPACE}",
    ):
        assert line in notes, line


def test_helm_test_hook_runs_the_routing_check_in_the_modelyard_image(docs: list[Doc]) -> None:
    hooks = [d for d in docs if is_hook(d)]
    assert sorted(d["kind"] for d in hooks) == ["ConfigMap", "Pod"]
    pod = one(hooks, "Pod", f"{NAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == container(serve_deployment(docs))["image"]
    assert c["command"] == ["python", "/helm-test/helm_test.py"]
    script = one(hooks, "ConfigMap", f"{NAME}-test")["data"]["helm_test.py"]
    assert script == (CHART / "files" / "helm_test.py").read_text()
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    url = f"http://{NAME}.{NAMESPACE}.svc:8000"
    assert env["MODELYARD_URL"] == env["GATEWAY_URL"] == url  # one pod answers both
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MODELYARD_TOKEN"]["secretKeyRef"] == {"name": NAME, "key": "admin-token"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["modelyard.io/registry-client"] == "true"
    # in the scaled shape it talks to the registry and the gateway Services
    scaled = [d for d in render("minimal") if is_hook(d) and d["kind"] == "Pod"]
    scaled_env = {e["name"]: e.get("value") for e in scaled[0]["spec"]["containers"][0]["env"]}
    assert scaled_env["MODELYARD_URL"] == f"http://{NAME}-registry.{NAMESPACE}.svc:8000"
    assert scaled_env["GATEWAY_URL"] == f"http://{NAME}-gateway.{NAMESPACE}.svc:8000"


def test_an_ingress_sends_both_hosts_to_the_one_pod() -> None:
    docs = render(
        "default",
        "1.35.0",
        "ingress.enabled=true",
        "ingress.gatewayHost=infer.example.com",
        "ingress.registryHost=registry.example.com",
    )
    (ingress,) = kinds(docs, "Ingress")
    backends = {
        r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
    }
    assert backends == {NAME}


def test_the_pod_answers_grpc_on_a_port_of_its_own(docs: list[Doc]) -> None:
    deployment = serve_deployment(docs)
    assert {"name": "grpc", "containerPort": 8001, "protocol": "TCP"} in container(deployment)[
        "ports"
    ]
    assert env_of(docs, deployment)["MODELYARD_GRPC_PORT"] == "8001"
    (service,) = kinds(docs, "Service")
    grpc = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc == [
        {
            "name": "grpc",
            "port": 8001,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        }
    ]
    off = render("default", "1.35.0", "serve.grpcPort=0")
    assert env_of(off, serve_deployment(off))["MODELYARD_GRPC_PORT"] == "0"
    assert [p["name"] for p in kinds(off, "Service")[0]["spec"]["ports"]] == ["http"]


def test_a_grpc_host_gets_an_ingress_of_its_own_to_the_pods_grpc_port() -> None:
    docs = render("default", "1.35.0", "ingress.enabled=true", "ingress.grpcHost=grpc.example.com")
    (ingress,) = kinds(docs, "Ingress")  # no HTTP host given: no HTTP Ingress
    assert ingress["metadata"]["name"] == f"{NAME}-grpc"
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC"
    }
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "grpc.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": NAME,
        "port": {"name": "grpc"},
    }
