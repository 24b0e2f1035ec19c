"""What the objects of the scaled shape say (helm/modelyard/ci/*-values.yaml: PostgreSQL and S3
set): registry and gateway Deployments, model versions, policies, probes, security."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.cli.main import build_parser
from modelyard.settings import Settings, load_settings
from tests.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    RENDER_KUBE,
    SCALED,
    Doc,
    container,
    env_of,
    helm_binary,
    kinds,
    matches,
    one,
    part,
    pod_spec,
    render,
    run_helm,
    secret_ref,
    values_args,
)


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Doc]]:
    return {name: render(name) for name in SCALED}


# --- what the objects say ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCALED)
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


@pytest.mark.parametrize("name", SCALED)
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


@pytest.mark.parametrize("name", SCALED)
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


@pytest.mark.parametrize("name", SCALED)
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
    models = [part(f"model-iris-v{v}") for v in (1, 2, 3)]
    assert scraped == [part("gateway"), *models]


def test_ingress_sends_each_host_to_its_service(rendered: dict[str, list[Doc]]) -> None:
    assert len(kinds(rendered["production"], "Ingress")) == 2  # HTTP, and gRPC
    ingress = one(rendered["production"], "Ingress", f"{RELEASE}-modelyard")
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


def test_the_gateway_answers_grpc_on_a_port_of_its_own(rendered: dict[str, list[Doc]]) -> None:
    """The gateway's gRPC port: in its pod, on its Service (HTTP/2 without TLS), behind an
    Ingress of its own that tells ingress-nginx the backend speaks gRPC; never the registry's."""
    docs = rendered["production"]
    deployment = one(docs, "Deployment", part("gateway"))
    gateway = container(deployment)
    assert {"name": "grpc", "containerPort": 8001, "protocol": "TCP"} in gateway["ports"]
    assert env_of(docs, deployment)["MODELYARD_GRPC_PORT"] == "8001"
    service = one(docs, "Service", part("gateway"))
    assert {
        "name": "grpc",
        "port": 8001,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    } in service["spec"]["ports"]
    registry = one(docs, "Service", part("registry"))
    assert [p["name"] for p in registry["spec"]["ports"]] == ["http"]
    registry_pod = container(one(docs, "Deployment", part("registry")))
    assert "grpc" not in {p["name"] for p in registry_pod["ports"]}
    ingress = one(docs, "Ingress", part("grpc"))
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "grpc.ml.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": part("gateway"),
        "port": {"name": "grpc"},
    }
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
        "nginx.ingress.kubernetes.io/proxy-body-size": "16m",  # the common annotations too
    }
    assert "grpc.ml.example.com" in ingress["spec"]["tls"][0]["hosts"]


def test_grpc_can_be_turned_off(helm: Path) -> None:
    docs = render("minimal", RENDER_KUBE, "gateway.grpcPort=0")
    deployment = one(docs, "Deployment", part("gateway"))
    assert [p["name"] for p in container(deployment)["ports"]] == ["http"]
    assert env_of(docs, deployment)["MODELYARD_GRPC_PORT"] == "0"
    service = one(docs, "Service", part("gateway"))
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def test_config_changes_roll_the_pods(helm: Path) -> None:
    def checksums(*sets: str) -> dict[str, str]:
        docs = render("minimal", RENDER_KUBE, *sets)
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
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--dry-run=client",
        *values_args("production"),
    )
    assert done.returncode == 0, done.stderr
    for server in ("iris-v1", "iris-v2"):
        url = f"http://{part('model-' + server)}.{NAMESPACE}.svc:3000"
        assert f"modelyard versions create iris --endpoint {url}" in done.stdout
