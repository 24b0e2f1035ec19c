"""The chart as the tests see it: rendered by the real helm (tests/helm.py) and read as objects.

`render(name)` takes a values file of helm/modelyard/ci/ by its short name, or "default" for
no values at all (the install that must work as it is).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.helm import HelmUnavailable, ensure_helm

ROOT: Final = Path(__file__).resolve().parents[1]
CHART: Final = ROOT / "helm" / "modelyard"
DEFAULT: Final = "default"
SCALED: Final = ("minimal", "production", "external")
VALUES: Final = (DEFAULT, *SCALED)
RENDER_KUBE: Final = "1.35.0"
RELEASE: Final = "ml"
NAMESPACE: Final = "models"
HELM_TIMEOUT_S: Final = 60

Doc = dict[str, Any]


@functools.cache
def helm_binary() -> Path:
    """The verified helm binary; the test fails (never skips) when it cannot be had."""
    try:
        return ensure_helm()
    except HelmUnavailable as exc:
        pytest.fail(f"the real helm binary is needed and could not be had: {exc}")


def run_helm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=False,
        env=env,
    )


def values_args(name: str) -> list[str]:
    return [] if name == DEFAULT else ["-f", str(CHART / "ci" / f"{name}-values.yaml")]


def render(name: str, kube: str = RENDER_KUBE, *sets: str) -> list[Doc]:
    args = ["template", RELEASE, str(CHART), "-n", NAMESPACE, *values_args(name)]
    for s in sets:
        args += ["--set", s]
    done = run_helm(*args, "--kube-version", kube)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


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


def is_hook(doc: Doc) -> bool:
    return "helm.sh/hook" in doc["metadata"].get("annotations", {})
