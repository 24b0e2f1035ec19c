"""The one error mapping (registry/web/errors.py): every class of the registry's error tree,
as /api/v1 (and the console) and the MLflow dialect answer it."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from mlflow.protos.databricks_pb2 import ErrorCode

from registry import errors
from registry.web.errors import (
    ERRORS,
    MLFLOW_HANDLERS,
    REST_HANDLERS,
    ErrorBody,
    status_of,
)
from registry.web.mlflow.messages import ErrorBody as MlflowErrorBody

MLFLOW_CODES = set(ErrorCode.keys())

#: class -> (REST status, REST error_code, MLflow status, MLflow error_code)
EXPECTED: dict[type[errors.RegistryError], tuple[int, str, int, str]] = {
    errors.AliasInUse: (409, "ALIAS_IN_USE", 409, "RESOURCE_CONFLICT"),
    errors.AlreadyExists: (409, "RESOURCE_ALREADY_EXISTS", 400, "RESOURCE_ALREADY_EXISTS"),
    errors.ArtifactCorrupt: (502, "ARTIFACT_CORRUPT", 502, "DATA_LOSS"),
    errors.ArtifactNotFound: (404, "ARTIFACT_NOT_FOUND", 404, "RESOURCE_DOES_NOT_EXIST"),
    errors.BadArtifact: (422, "INVALID_ARTIFACT", 400, "INVALID_PARAMETER_VALUE"),
    errors.Conflict: (409, "CONFLICT", 409, "RESOURCE_CONFLICT"),
    errors.DeployError: (502, "DEPLOY_FAILED", 502, "INVALID_STATE"),
    errors.IdempotencyKeyReused: (422, "IDEMPOTENCY_KEY_REUSED", 409, "RESOURCE_CONFLICT"),
    errors.InsufficientStorage: (507, "INSUFFICIENT_STORAGE", 507, "RESOURCE_EXHAUSTED"),
    errors.InvalidInput: (400, "INVALID_PARAMETER_VALUE", 400, "INVALID_PARAMETER_VALUE"),
    errors.InvalidState: (409, "INVALID_STATE", 409, "RESOURCE_CONFLICT"),
    errors.NotFound: (404, "RESOURCE_DOES_NOT_EXIST", 404, "RESOURCE_DOES_NOT_EXIST"),
    errors.PayloadTooLarge: (413, "REQUEST_TOO_LARGE", 413, "INVALID_PARAMETER_VALUE"),
    errors.PermissionDenied: (403, "PERMISSION_DENIED", 403, "PERMISSION_DENIED"),
    errors.PreconditionFailed: (412, "PRECONDITION_FAILED", 409, "RESOURCE_CONFLICT"),
    errors.RegistryError: (500, "INTERNAL_ERROR", 500, "INTERNAL_ERROR"),
    errors.RolloutInProgress: (409, "ROLLOUT_IN_PROGRESS", 409, "RESOURCE_CONFLICT"),
    errors.StageOccupied: (409, "STAGE_OCCUPIED", 409, "RESOURCE_CONFLICT"),
    errors.StoreUnavailable: (503, "STORE_UNAVAILABLE", 503, "TEMPORARILY_UNAVAILABLE"),
    errors.Unauthenticated: (401, "UNAUTHENTICATED", 401, "UNAUTHENTICATED"),
    errors.VersionNotServed: (409, "VERSION_NOT_SERVED", 409, "RESOURCE_CONFLICT"),
}


def answer(handlers: Any, exc: Exception) -> tuple[int, Any, dict[str, str]]:
    handler = next(h for cls, h in handlers.items() if isinstance(exc, cls))
    response = handler(None, exc)  # none of these reads the request
    headers = {k.lower(): v for k, v in response.headers.items()}
    return response.status_code, response.content, headers


def test_every_error_class_is_expected_here() -> None:
    tree = {
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.RegistryError)
    }
    assert tree == set(EXPECTED)
    assert set(ERRORS) <= tree


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_each_surface_answers_its_own_way(cls: type[errors.RegistryError]) -> None:
    rest_status, rest_code, mlflow_status, mlflow_code = EXPECTED[cls]
    exc = cls("what went wrong", field="name")
    assert status_of(exc) == rest_status  # the console's status too
    status, body, headers = answer(REST_HANDLERS, exc)
    assert (status, body) == (rest_status, ErrorBody(rest_code, "what went wrong", "name"))
    assert headers.get("www-authenticate") == ("Bearer" if status == 401 else None)
    status, body, headers = answer(MLFLOW_HANDLERS, exc)
    assert (status, body) == (mlflow_status, MlflowErrorBody(mlflow_code, "what went wrong"))
    basic = 'Bearer, Basic realm="modelyard"' if status == 401 else None
    assert headers.get("www-authenticate") == basic


def test_framework_errors() -> None:
    malformed = ValidationException(
        "bad", extra=[{"message": "unknown field `x`", "key": "x", "source": "body"}]
    )
    assert answer(REST_HANDLERS, malformed)[:2] == (
        400,
        ErrorBody("INVALID_PARAMETER_VALUE", "unknown field `x` (in body `x`)", "x"),
    )
    assert answer(MLFLOW_HANDLERS, malformed)[:2] == (
        400,
        MlflowErrorBody("INVALID_PARAMETER_VALUE", "invalid request: unknown field `x` (`x`)"),
    )
    missing = NotFoundException("no such route")
    assert answer(REST_HANDLERS, missing)[:2] == (
        404,
        ErrorBody("ENDPOINT_NOT_FOUND", "no such route"),
    )
    teapot = HTTPException(status_code=418, detail="short and stout")
    assert answer(REST_HANDLERS, teapot)[1].error_code == "HTTP_ERROR"
    assert answer(MLFLOW_HANDLERS, teapot)[1].error_code == "BAD_REQUEST"


def test_the_mlflow_dialect_answers_codes_mlflow_knows() -> None:
    """An MLflow client turns an `error_code` it does not know into INTERNAL_ERROR; only the
    server's own faults (store, artifact bytes, model servers, disk) are 5xx, and none is
    INTERNAL_ERROR (issue 18: these four were 500 INTERNAL_ERROR)."""
    for cls in EXPECTED:
        assert answer(MLFLOW_HANDLERS, cls("x"))[1].error_code in MLFLOW_CODES, cls
    fixed = (errors.PayloadTooLarge, errors.ArtifactCorrupt, errors.DeployError)
    for cls in (*fixed, errors.InsufficientStorage):
        status, body, _ = answer(MLFLOW_HANDLERS, cls("x"))
        assert status != 500 and body.error_code != "INTERNAL_ERROR", cls
    too_large = HTTPException(status_code=413, detail="Request Entity Too Large")
    status, body, _ = answer(MLFLOW_HANDLERS, too_large)
    assert (status, body.error_code) == (413, "INVALID_PARAMETER_VALUE")
    assert answer(REST_HANDLERS, too_large)[1].error_code == "REQUEST_TOO_LARGE"
