"""A Kubernetes API server just large enough for `helm template --dry-run=server`: discovery of
the kinds the chart makes, and GET of single objects, which answers 404 but for the objects the
test put in the "cluster". That is what helm's `lookup` reads during an upgrade, so the real
helm binary runs the chart's real `lookup` call against it (no cluster, no stubbed template).

    with cluster({("v1", "secrets", "models", "ml-modelyard"): secret}) as kubeconfig:
        run_helm("template", ..., "--dry-run=server", env={"KUBECONFIG": kubeconfig})
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar, Final

import yaml

from tests.http_threads import serving

Key = tuple[str, str, str, str]  # group/version, resource (plural), namespace, name

RESOURCES: Final = {
    "v1": [
        ("secrets", "Secret"),
        ("configmaps", "ConfigMap"),
        ("services", "Service"),
        ("persistentvolumeclaims", "PersistentVolumeClaim"),
        ("serviceaccounts", "ServiceAccount"),
        ("pods", "Pod"),
    ],
    "apps/v1": [("deployments", "Deployment")],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy"), ("ingresses", "Ingress")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
}
VERSION: Final = {"major": "1", "minor": "35", "gitVersion": "v1.35.0"}


def _discovery(path: str) -> Any:
    if path == "/version":
        return VERSION
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = []
        for gv in RESOURCES:
            if "/" in gv:
                group, version = gv.split("/")
                entry = {"groupVersion": gv, "version": version}
                groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
    if gv in RESOURCES:
        resources = [
            {
                "name": plural,
                "singularName": "",
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "list", "create", "update", "delete"],
            }
            for plural, kind in RESOURCES[gv]
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }
    return None


def _object_key(path: str) -> Key | None:
    """`/api/v1/namespaces/NS/RES/NAME` or `/apis/G/V/namespaces/NS/RES/NAME`."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and len(parts) == 6 and parts[2] == "namespaces":
        return ("v1", parts[4], parts[3], parts[5])
    if parts[:1] == ["apis"] and len(parts) == 7 and parts[3] == "namespaces":
        return (f"{parts[1]}/{parts[2]}", parts[5], parts[4], parts[6])
    return None


class _Handler(BaseHTTPRequestHandler):
    objects: ClassVar[Mapping[Key, Any]] = {}
    seen: ClassVar[list[str]] = []

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.seen.append(path)
        found = _discovery(path)
        key = _object_key(path)
        if found is None and key is not None:
            found = self.objects.get(key)
        if found is None:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": f"{path} not found",
            }
            self._send(404, status)
        else:
            self._send(200, found)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def cluster(objects: Mapping[Key, Any]) -> Iterator[tuple[str, list[str]]]:
    """A kubeconfig file pointing at a fake API server that holds `objects`, and the list of
    paths it was asked for."""
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"objects": dict(objects), "seen": seen})
    with serving(handler) as url, tempfile.TemporaryDirectory() as tmp:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake"}}],
            "current-context": "fake",
            "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
        }
        path = Path(tmp) / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        yield str(path), seen
