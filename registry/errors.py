"""The registry's error tree. Only the HTTP layer (registry/web/errors.py) maps these to status
codes; each class's `code` is the `error_code` a client reads.

RegistryError                 INTERNAL_ERROR
├── InvalidInput              INVALID_PARAMETER_VALUE  a field of the request is wrong (names it)
├── PayloadTooLarge           REQUEST_TOO_LARGE        an upload over the size limit
├── BadArtifact               INVALID_ARTIFACT         an upload that is not a usable Bento
├── NotFound                  RESOURCE_DOES_NOT_EXIST  no such model, version, alias, rollout...
│   └── ArtifactNotFound      ARTIFACT_NOT_FOUND       the artifact store has no such object
├── Conflict                  CONFLICT                 the request clashes with current state
│   ├── AlreadyExists         RESOURCE_ALREADY_EXISTS  the name is taken
│   ├── AliasInUse            ALIAS_IN_USE             a version still held by an alias
│   ├── StageOccupied         STAGE_OCCUPIED           Production taken, archive_existing not set
│   ├── VersionNotServed      VERSION_NOT_SERVED       traffic named to a version nothing serves
│   ├── IdempotencyKeyReused  IDEMPOTENCY_KEY_REUSED   same Idempotency-Key, different request
│   ├── RolloutInProgress     ROLLOUT_IN_PROGRESS      a rollout or experiment steers the traffic
│   └── InvalidState          INVALID_STATE            not in that phase (e.g. resume a running one)
├── PreconditionFailed        PRECONDITION_FAILED      If-Match does not match the current ETag
├── Unauthenticated           UNAUTHENTICATED          no token, or an unknown or revoked one
├── PermissionDenied          PERMISSION_DENIED        the token's role is too low
├── StoreUnavailable          STORE_UNAVAILABLE        the metadata store cannot be reached
├── ArtifactCorrupt           ARTIFACT_CORRUPT         stored bytes do not match their digest
├── InsufficientStorage       INSUFFICIENT_STORAGE     no space left for an upload or artifact
└── DeployError               DEPLOY_FAILED            a model server could not be started
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


class PayloadTooLarge(RegistryError):
    code = "REQUEST_TOO_LARGE"


class BadArtifact(RegistryError):
    code = "INVALID_ARTIFACT"


class NotFound(RegistryError):
    code = "RESOURCE_DOES_NOT_EXIST"


class ArtifactNotFound(NotFound):
    code = "ARTIFACT_NOT_FOUND"


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


class RolloutInProgress(Conflict):
    code = "ROLLOUT_IN_PROGRESS"


class InvalidState(Conflict):
    code = "INVALID_STATE"


class PreconditionFailed(RegistryError):
    code = "PRECONDITION_FAILED"


class Unauthenticated(RegistryError):
    code = "UNAUTHENTICATED"


class PermissionDenied(RegistryError):
    code = "PERMISSION_DENIED"


class StoreUnavailable(RegistryError):
    code = "STORE_UNAVAILABLE"


class ArtifactCorrupt(RegistryError):
    code = "ARTIFACT_CORRUPT"


class InsufficientStorage(RegistryError):
    code = "INSUFFICIENT_STORAGE"


class DeployError(RegistryError):
    code = "DEPLOY_FAILED"
