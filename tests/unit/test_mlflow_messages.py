"""modelyard's MLflow request bodies against MLflow's own protobuf messages, and what a client
is told about an endpoint that is not served. Pure."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from mlflow.protos import model_registry_pb2 as registry_pb2
from mlflow.protos import webhooks_pb2

from registry.web.mlflow import messages as m
from registry.web.mlflow.webhooks import CreateWebhookRequest

#: MLflow's JSON request messages and the Struct that reads each (GETs take query parameters).
BODIES: dict[str, tuple[Any, type[msgspec.Struct]]] = {
    "CreateRegisteredModel": (registry_pb2.CreateRegisteredModel, m.CreateModelRequest),
    "RenameRegisteredModel": (registry_pb2.RenameRegisteredModel, m.RenameModelRequest),
    "UpdateRegisteredModel": (registry_pb2.UpdateRegisteredModel, m.UpdateModelRequest),
    "DeleteRegisteredModel": (registry_pb2.DeleteRegisteredModel, m.NameRequest),
    "GetLatestVersions": (registry_pb2.GetLatestVersions, m.LatestVersionsRequest),
    "CreateModelVersion": (registry_pb2.CreateModelVersion, m.CreateVersionRequest),
    "UpdateModelVersion": (registry_pb2.UpdateModelVersion, m.UpdateVersionRequest),
    "TransitionModelVersionStage": (
        registry_pb2.TransitionModelVersionStage,
        m.TransitionRequest,
    ),
    "DeleteModelVersion": (registry_pb2.DeleteModelVersion, m.VersionRequest),
    "SetRegisteredModelTag": (registry_pb2.SetRegisteredModelTag, m.ModelTagRequest),
    "DeleteRegisteredModelTag": (registry_pb2.DeleteRegisteredModelTag, m.ModelTagDeleteRequest),
    "SetModelVersionTag": (registry_pb2.SetModelVersionTag, m.VersionTagRequest),
    "DeleteModelVersionTag": (registry_pb2.DeleteModelVersionTag, m.VersionTagDeleteRequest),
    "SetRegisteredModelAlias": (registry_pb2.SetRegisteredModelAlias, m.AliasRequest),
    "DeleteRegisteredModelAlias": (registry_pb2.DeleteRegisteredModelAlias, m.AliasNameRequest),
    "CreateWebhook": (webhooks_pb2.CreateWebhook, CreateWebhookRequest),
}

#: Fields read by no Struct, on purpose: Databricks' deployment jobs (nothing here runs them).
IGNORED: dict[str, set[str]] = {
    "CreateRegisteredModel": {"deployment_job_id"},
    "UpdateRegisteredModel": {"deployment_job_id"},
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_every_field_a_client_sends_is_read_or_deliberately_ignored(name: str) -> None:
    """Requests ignore unknown fields (as MLflow's server does), so a field MLflow adds would
    be dropped without a word: this fails instead when the installed client can send it."""
    proto, struct = BODIES[name]
    sent = {field.name for field in proto.DESCRIPTOR.fields}
    unread = sent - set(struct.__struct_fields__) - IGNORED.get(name, set())
    assert not unread, f"{name}: MLflow sends {sorted(unread)}, which modelyard would drop"


def test_create_model_version_reads_what_mlflow_3_sends() -> None:
    from google.protobuf.json_format import MessageToJson

    sent = MessageToJson(
        registry_pb2.CreateModelVersion(
            name="iris",
            source="models:/m-0123",
            run_id="r1",
            run_link="https://tracking/#/runs/r1",
            tags=[registry_pb2.ModelVersionTag(key="k", value="v")],
            description="d",
            model_id="m-0123",
        ),
        preserving_proto_field_name=True,
    )
    got = msgspec.json.decode(sent, type=m.CreateVersionRequest)
    assert (got.model_id, got.run_link, got.run_id) == (
        "m-0123",
        "https://tracking/#/runs/r1",
        "r1",
    )
    assert m.tag_map(got.tags) == {"k": "v"}
    newer = msgspec.json.decode(
        b'{"name": "iris", "source": "s", "field_of_mlflow_9": 1}', type=m.CreateVersionRequest
    )
    assert newer.source == "s"


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/mlflow/experiments/create",
        "/api/2.0/mlflow/runs/create",
        "/api/2.0/mlflow/logged-models",
        "/api/3.0/mlflow/traces",
        "/api/2.0/mlflow-artifacts/artifacts/0/a",
    ],
)
def test_a_tracking_call_is_told_where_to_point_the_tracking_uri(path: str) -> None:
    said = m.unserved_message("POST", path)
    assert said.startswith(f"POST {path} is MLflow tracking")
    for needed in ("MLFLOW_TRACKING_URI", "mlflow server", "sqlite:///", "MLFLOW_REGISTRY_URI"):
        assert needed in said


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/registered-models/list", "/api/2.0/mlflow/webhooks/x/test"]
)
def test_an_unknown_registry_path_is_not_called_tracking(path: str) -> None:
    said = m.unserved_message("GET", path)
    assert "not an MLflow registry endpoint that modelyard serves" in said
    assert "MLFLOW_TRACKING_URI" not in said


def test_a_long_path_is_cut_in_the_message() -> None:
    said = m.unserved_message("GET", "/api/2.0/mlflow/runs/" + "x" * 5000)
    assert len(said) < 600


def test_mlflow_telemetry_is_off_in_the_tests() -> None:
    """tests/conftest.py turns it off before `mlflow` is first imported (at collection)."""
    from mlflow.telemetry.client import get_telemetry_client

    assert get_telemetry_client() is None
