"""The registry's error tree. Only the HTTP layer maps these to status codes.

RegistryError
├── InvalidInput              a field of the request is wrong        (names the field)
├── NotFound                  RESOURCE_DOES_NOT_EXIST
├── Conflict                  the request clashes with current state
│   ├── AlreadyExists         RESOURCE_ALREADY_EXISTS
│   ├── AliasInUse            a version still held by an alias
│   ├── StageOccupied         Production taken and archive_existing not set
│   ├── VersionNotServed      a traffic policy names a version nothing can serve
│   └── IdempotencyKeyReused  same Idempotency-Key, different request
├── PreconditionFailed        If-Match does not match the current ETag
├── Unauthenticated           no token, or an unknown or revoked one
├── PermissionDenied          the token's role is too low
└── StoreUnavailable          the metadata store cannot be reached
"""

from __future__ import annotations


class RegistryError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(RegistryError):
    code = "INVALID_PARAMETER_VALUE"


class NotFound(RegistryError):
    code = "RESOURCE_DOES_NOT_EXIST"


class Conflict(RegistryError):
    code = "CONFLICT"


class AlreadyExists(Conflict):
    code = "RESOURCE_ALREADY_EXISTS"


class AliasInUse(Conflict):
    code = "ALIAS_IN_USE"


class StageOccupied(Conflict):
    code = "STAGE_OCCUPIED"


class VersionNotServed(Conflict):
    code = "VERSION_NOT_SERVED"


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


class PreconditionFailed(RegistryError):
    code = "PRECONDITION_FAILED"


class Unauthenticated(RegistryError):
    code = "UNAUTHENTICATED"


class PermissionDenied(RegistryError):
    code = "PERMISSION_DENIED"


class StoreUnavailable(RegistryError):
    code = "STORE_UNAVAILABLE"


class ArtifactNotFound(NotFound):
    code = "ARTIFACT_NOT_FOUND"


class BadArtifact(RegistryError):
    code = "INVALID_ARTIFACT"


class PayloadTooLarge(RegistryError):
    code = "REQUEST_TOO_LARGE"


class ArtifactCorrupt(RegistryError):
    code = "ARTIFACT_CORRUPT"


class InsufficientStorage(RegistryError):
    code = "INSUFFICIENT_STORAGE"


class DeployError(RegistryError):
    code = "DEPLOY_FAILED"


class RolloutInProgress(Conflict):
    code = "ROLLOUT_IN_PROGRESS"


class InvalidState(Conflict):
    code = "INVALID_STATE"
