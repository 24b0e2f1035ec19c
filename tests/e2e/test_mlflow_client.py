"""The stock `mlflow` client (mlflow-skinny) against a running `modelyard registry` process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from modelyard.processes import ModelyardProcess
from tests.e2e.conftest import Factory
from tests.webhook_receiver import webhook_receiver

# MLflow deprecates registry stages (since 2.9) but still sends them; these two calls warn.
STAGE_APIS_DEPRECATED = [
    pytest.mark.filterwarnings(
        f"ignore:``mlflow.tracking.client.MlflowClient.{api}`` is deprecated:FutureWarning"
    )
    for api in ("transition_model_version_stage", "get_latest_versions")
]
pytestmark = [pytest.mark.e2e, *STAGE_APIS_DEPRECATED]
PARALLEL = 16


@pytest.fixture
def registry(server: Factory, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    proc: ModelyardProcess = server()
    proc.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proc.url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", proc.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    yield proc.url


def client(url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_registry_workflow(registry: str) -> None:
    c = client(registry)
    made = c.create_registered_model("iris", tags={"team": "ml"}, description="flowers")
    assert made.name == "iris" and made.tags == {"team": "ml"}
    v1 = c.create_model_version("iris", "s3://bucket/iris/1", run_id="run-1", tags={"k": "1"})
    # the client retries a create after a 5xx: the same request again makes no second version
    again = c.create_model_version("iris", "s3://bucket/iris/1", run_id="run-1", tags={"k": "1"})
    assert again.version == "1"
    v2 = c.create_model_version("iris", "s3://bucket/iris/2", run_id="run-2", description="two")
    v3 = c.create_model_version("iris", "s3://bucket/iris/3", run_id="run-3")
    assert (v1.version, v2.version, v3.version) == ("1", "2", "3")
    assert v1.status == "READY" and v1.current_stage == "None"

    c.set_registered_model_tag("iris", "owner", "ana")
    c.set_model_version_tag("iris", "2", "validated", "yes")
    c.delete_registered_model_tag("iris", "team")
    c.delete_model_version_tag("iris", "1", "k")
    assert c.get_registered_model("iris").tags == {"owner": "ana"}
    assert c.get_model_version("iris", "2").tags == {"validated": "yes"}
    assert c.get_model_version("iris", "1").tags == {}

    c.transition_model_version_stage("iris", "1", "Production")
    moved = c.transition_model_version_stage(
        "iris", "2", "Production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    assert c.get_model_version("iris", "1").current_stage == "Archived"
    c.transition_model_version_stage("iris", "3", "Staging")
    latest = {v.current_stage: v.version for v in c.get_latest_versions("iris")}
    assert latest == {"Archived": "1", "Production": "2", "Staging": "3"}
    assert [v.version for v in c.get_latest_versions("iris", stages=["Production"])] == ["2"]

    c.set_registered_model_alias("iris", "champion", "2")
    c.set_registered_model_alias("iris", "challenger", "3")
    assert c.get_model_version_by_alias("iris", "champion").version == "2"
    assert c.get_registered_model("iris").aliases == {"champion": "2", "challenger": "3"}
    c.delete_registered_model_alias("iris", "challenger")
    with pytest.raises(MlflowException) as missing_alias:
        c.get_model_version_by_alias("iris", "challenger")
    assert missing_alias.value.error_code == "INVALID_PARAMETER_VALUE"  # as MLflow's store

    assert c.get_model_version_download_uri("iris", "2") == "s3://bucket/iris/2"
    c.update_model_version("iris", "3", description="three")
    assert c.get_model_version("iris", "3").description == "three"
    c.update_registered_model("iris", description="irises")
    assert c.get_registered_model("iris").description == "irises"


def test_searches(registry: str) -> None:
    c = client(registry)
    for name in ("alpha", "beta", "gamma"):
        c.create_registered_model(name, tags={"letter": name[0]})
        c.create_model_version(name, f"s3://b/{name}/1", run_id=f"{name}-run")
        c.create_model_version(name, f"s3://b/{name}/2", run_id=f"{name}-run-2")
    assert [m.name for m in c.search_registered_models()] == ["alpha", "beta", "gamma"]
    assert [m.name for m in c.search_registered_models("name LIKE 'ga%'")] == ["gamma"]
    assert [m.name for m in c.search_registered_models("tags.letter = 'b'")] == ["beta"]
    assert [m.name for m in c.search_registered_models(order_by=["name DESC"])] == [
        "gamma",
        "beta",
        "alpha",
    ]
    first = c.search_registered_models(max_results=2)
    assert [m.name for m in first] == ["alpha", "beta"] and first.token
    rest = c.search_registered_models(max_results=2, page_token=first.token)
    assert [m.name for m in rest] == ["gamma"] and not rest.token

    found = c.search_model_versions("name = 'beta'")
    assert [(v.name, v.version) for v in found] == [("beta", "2"), ("beta", "1")]
    found = c.search_model_versions("run_id IN ('alpha-run', 'gamma-run-2')")
    assert sorted((v.name, v.version) for v in found) == [("alpha", "1"), ("gamma", "2")]
    found = c.search_model_versions("source_path ILIKE '%/BETA/%' AND version_number > 1")
    assert [(v.name, v.version) for v in found] == [("beta", "2")]
    with pytest.raises(MlflowException) as bad:
        c.search_model_versions("name = 'a' OR name = 'b'")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_behaves_as_mlflows_own_server(registry: str) -> None:
    """Each as mlflow/server/handlers.py and its SQLAlchemy store answer."""
    c = client(registry)
    c.create_registered_model("old")
    c.create_registered_model("new")
    link = "https://tracking.example/#/experiments/1/runs/r1"
    v1 = c.create_model_version("old", "s3://b/old/1", run_id="r1", run_link=link)
    assert v1.run_link == link and c.get_model_version("old", "1").run_link == link
    c.create_model_version("old", "s3://b/old/2")

    def refused(call: object, code: str = "INVALID_PARAMETER_VALUE") -> str:
        with pytest.raises(MlflowException) as err:
            assert callable(call)
            call()
        assert err.value.error_code == code, err.value
        return str(err.value)

    # an alias that does not exist: 400, not 404
    refused(lambda: c.get_model_version_by_alias("old", "nobody"))
    # deleting a tag or an alias that does not exist is a no-op; a missing model still is not
    c.delete_registered_model_tag("old", "never-set")
    c.delete_model_version_tag("old", "1", "never-set")
    c.delete_registered_model_alias("old", "never-set")
    refused(lambda: c.delete_registered_model_tag("nope", "k"), "RESOURCE_DOES_NOT_EXIST")
    # local paths and relative references as sources
    for source in ("/etc", "file:///etc/passwd", "models/x", "s3://b/../../x", "s3://b/a/%2e%2e/x"):
        message = refused(lambda s=source: c.create_model_version("old", s))  # type: ignore[misc]
        assert "Invalid model version source" in message, message
    # order_by timestamp is the last update
    c.update_registered_model("old", description="touched after `new` was made")
    by_time = c.search_registered_models(order_by=["timestamp DESC"])
    assert [m.name for m in by_time] == ["old", "new"]
    # the refused promotion names MLflow's parameter
    c.transition_model_version_stage("old", "1", "Production")
    message = refused(
        lambda: c.transition_model_version_stage("old", "2", "Production"), "RESOURCE_CONFLICT"
    )
    assert "archive_existing_versions" in message, message
    # a page token this server did not give
    refused(lambda: c.search_model_versions(max_results=1, page_token="garbage"))


def test_delete_and_missing_model_errors(registry: str) -> None:
    c = client(registry)
    c.create_registered_model("iris")
    c.create_model_version("iris", "s3://b/1")
    c.create_model_version("iris", "s3://b/2")
    c.set_registered_model_alias("iris", "champion", "2")
    c.delete_model_version("iris", "2")
    with pytest.raises(RestException) as gone:
        c.get_model_version("iris", "2")
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    c.delete_registered_model("iris")
    with pytest.raises(RestException) as missing:
        c.get_registered_model("iris")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as exists:
        c.create_registered_model("dup")
        c.create_registered_model("dup")
    assert exists.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_basic_auth(registry: str, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ci")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_token)
    client(registry).create_registered_model("basic")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-a-token-0000000000")
    with pytest.raises(RestException) as denied:
        client(registry).get_registered_model("basic")
    assert denied.value.error_code == "UNAUTHENTICATED"


def test_parallel_promotions_leave_one_production(registry: str) -> None:
    """MLflow's own server left 13 of 16 in Production here (DESIGN.md)."""
    c = client(registry)
    c.create_registered_model("iris")
    for i in range(PARALLEL):
        c.create_model_version("iris", f"s3://b/{i}")
    barrier = threading.Barrier(PARALLEL)
    failures: list[BaseException] = []

    def promote(version: int) -> None:
        mine = client(registry)
        barrier.wait()
        try:
            mine.transition_model_version_stage(
                "iris", str(version), "Production", archive_existing_versions=True
            )
        except BaseException as exc:  # collected and reported below
            failures.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, PARALLEL + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    stages = [v.current_stage for v in c.search_model_versions("name = 'iris'")]
    assert stages.count("Production") == 1, stages
    assert stages.count("Archived") == PARALLEL - 1, stages


def test_webhooks_through_the_client(registry: str) -> None:
    c = client(registry)
    with webhook_receiver() as receiver:
        hook = c.create_webhook(
            "ci", receiver.url, events=["model_version.created"], secret="x" * 24
        )
        assert [w.webhook_id for w in c.list_webhooks()] == [hook.webhook_id]
        assert c.get_webhook(hook.webhook_id).url == receiver.url
        c.create_registered_model("iris")
        c.create_model_version("iris", "s3://b/1")
        (got,) = receiver.wait_for(1)
        assert got.json["data"]["version"] == "1"
        assert got.headers["x-mlflow-signature"].startswith("v1,")
        c.delete_webhook(hook.webhook_id)
        assert list(c.list_webhooks()) == []
