"""Run a container of the rendered chart on this machine, as its pod would run it.

What the pod gets, it gets here: the image's entrypoint, command and environment (read from the
Dockerfile's final stage), the container's `command`/`args`, `envFrom` ConfigMaps, `env` values,
Secret references (from the rendered Secret, or given), the downward API's pod IP. Only what a
machine without Kubernetes cannot have is translated, each rule in `Translation`:

- every volume mount becomes a directory of its own (a ConfigMap volume holds its files), and a
  mount path inside a value or an argument becomes that directory;
- an in-cluster URL (a Service's DNS name) becomes the loopback URL its process listens on;
- a container port becomes a free loopback port, in the values and arguments that name it;
- binding every interface (0.0.0.0) becomes binding loopback;
- the pod IP is 127.0.0.1; `modelyard` and `python` are this virtualenv's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from adapters.net import free_port
from modelyard.processes import terminate
from tests.chart import ROOT, Doc, kinds, one

VENV_BIN: Final = Path(sys.executable).parent
ALL_INTERFACES: Final = "0.0.0.0"
PASSED_THROUGH: Final = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # this machine's, see env docs


def image_config(dockerfile: Path = ROOT / "Dockerfile") -> dict[str, Any]:
    """ENTRYPOINT, CMD, ENV and WORKDIR of the Dockerfile's final stage."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stage = text.rsplit("\nFROM ", 1)[1]
    config: dict[str, Any] = {"env": {}, "entrypoint": [], "cmd": [], "workdir": "/"}
    for line in stage.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                config["env"][key] = value
        elif word in ("ENTRYPOINT", "CMD"):
            config[word.lower()] = [str(x) for x in json.loads(rest)]
        elif word == "WORKDIR":
            config["workdir"] = rest.strip()
    return config


@dataclass
class Translation:
    """How the pod's world maps onto this machine (see the module docstring)."""

    root: Path
    urls: dict[str, str] = field(default_factory=dict)  # in-cluster URL -> loopback URL
    ports: dict[int, int] = field(default_factory=dict)  # container port -> loopback port
    mounts: dict[str, Path] = field(default_factory=dict)  # mount path -> directory here

    def text(self, value: str) -> str:
        for inside, here in sorted(self.urls.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(inside, here)
        for path, directory in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if value == path or value.startswith(path + "/"):
                value = str(directory) + value[len(path) :]
        return value

    def port(self, value: str) -> str:
        return (
            str(self.ports[int(value)]) if value.isdigit() and int(value) in self.ports else value
        )


@dataclass
class LocalPod:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self.proc

    def run(self, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        code = terminate(self.proc) if self.proc is not None else None
        if self.log is not None:
            self.log.close()
        return code


def _secret_value(docs: list[Doc], ref: dict[str, str], given: dict[str, dict[str, str]]) -> str:
    if ref["name"] in given:
        return given[ref["name"]][ref["key"]]
    secret = one(docs, "Secret", ref["name"])
    value: str = secret["stringData"][ref["key"]]
    return value


def local_pod(
    docs: list[Doc],
    workload: Doc,
    how: Translation,
    secrets: dict[str, dict[str, str]] | None = None,
) -> LocalPod:
    """The first container of `workload` (a Deployment or a Pod) as a process of this machine."""
    spec = (
        workload["spec"]["template"]["spec"]
        if workload["kind"] == "Deployment"
        else workload["spec"]
    )
    (c,) = spec["containers"]
    image = image_config()
    name = workload["metadata"]["name"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        directory = how.root / name / "volumes" / mount["name"]
        directory.mkdir(parents=True, exist_ok=True)
        source = volumes[mount["name"]]
        if "configMap" in source:
            data = one(docs, "ConfigMap", source["configMap"]["name"])["data"]
            for key, text in data.items():
                (directory / key).write_text(text)
        how.mounts[mount["mountPath"]] = directory
    for port in c.get("ports", []):
        how.ports.setdefault(port["containerPort"], free_port())
    env: dict[str, str] = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env |= {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    env |= {k: v for k, v in image["env"].items() if k != "PATH"}
    env["HOME"] = image["workdir"]  # the image's user has its home there
    for source in c.get("envFrom", []):
        env |= one(kinds(docs, "ConfigMap"), "ConfigMap", source["configMapRef"]["name"])["data"]
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            env[var["name"]] = _secret_value(docs, var["valueFrom"]["secretKeyRef"], secrets or {})
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[var["name"]] = "127.0.0.1"
    for key, value in env.items():
        value = how.text(value)
        if key.endswith("_PORT"):
            value = how.port(value)
        if value == ALL_INTERFACES:
            value = "127.0.0.1"
        env[key] = value
    command = c.get("command") or image["entrypoint"]
    args = c.get("args") if "args" in c else ([] if "command" in c else image["cmd"])
    argv = [how.text(a) for a in [*command, *args]]
    argv = [how.port(a) if i and argv[i - 1] == "--port" else a for i, a in enumerate(argv)]
    program = {"modelyard": str(VENV_BIN / "modelyard"), "python": sys.executable}
    argv[0] = program.get(argv[0], argv[0])
    cwd = Path(how.text(image["workdir"]))
    if not cwd.is_dir():
        cwd = how.root
    log_path = how.root / name / "output.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return LocalPod(argv, env, cwd, log_path)
