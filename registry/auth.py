"""API tokens: made random, kept only as SHA-256 hashes, checked on every /api request.

Tokens carry 256 bits of randomness, so a fast hash is safe to store (no password stretching
needed) and lets a request be authenticated with one indexed lookup. A short-lived cache of
successful lookups keeps that lookup off most requests; revoking through this process clears it,
and so does `forget()`, which the composition root calls when another replica revokes a token
(PostgreSQL NOTIFY: adapters/sql/tokens.py). The cache's life, 1 s, bounds a revocation's delay
should that signal be lost.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec

from registry.catalog.domain import Principal, Role, Token
from registry.errors import InvalidInput, PermissionDenied, Unauthenticated
from registry.ports import TokenStore

TOKEN_PREFIX: Final = "myd_"  # noqa: S105 (a prefix, not a secret)
CACHE_TTL_S: Final = 1.0
CACHE_MAX: Final = 1024


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """What may be shown of a token: enough to tell tokens apart, too little to use."""
    return token[: len(TOKEN_PREFIX) + 6]


def require_role(principal: Principal, needed: Role) -> None:
    if not principal.role.allows(needed):
        raise PermissionDenied(
            f"this needs the {needed.value} role;"
            f" token {principal.name!r} has {principal.role.value}"
        )


class IssuedToken(msgspec.Struct, frozen=True):
    """A token as created: the secret is shown this once and never stored."""

    token: str
    info: Token


class TokenAuthority:
    def __init__(self, store: TokenStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._generation = 0  # moves on every forget(): a lookup begun before is not cached

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing `Authorization: Bearer <token>` header")
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("the Authorization header must be `Bearer <token>`")
        return await self.principal_of_hash(hash_token(secret.strip()))

    async def principal_of_hash(self, digest: str) -> Principal:
        """The principal of a token known by its SHA-256 (a console session keeps only that)."""
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        token = await self._store.find_token(digest)
        if token is None or token.revoked_at is not None:
            raise Unauthenticated("unknown or revoked token")
        principal = Principal(token_id=token.id, name=token.name, role=token.role)
        if generation != self._generation:  # a revocation was heard while this one was read
            return principal
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_TTL_S, principal)
        return principal

    async def issue(self, name: str, role: Role, by: str, secret: str | None = None) -> IssuedToken:
        secret = secret or new_token()
        if len(secret) < 16:
            raise InvalidInput("a token must be at least 16 characters", field="token")
        info = await self._store.create_token(
            name, role.value, hash_token(secret), display_prefix(secret), by, self._clock()
        )
        return IssuedToken(token=secret, info=info)

    async def revoke(self, token_id: int, by: str) -> Token:
        token = await self._store.revoke_token(token_id, by, self._clock())
        self.forget()
        return token

    def forget(self) -> None:
        """Drop every cached lookup: a token was revoked (here or on another replica)."""
        self._generation += 1
        self._cache.clear()

    async def list(self) -> list[Token]:
        return await self._store.list_tokens()

    async def bootstrap_admin(self, configured: str | None) -> AdminBootstrap:
        """Make sure an admin can log in; what the operator must be told comes back.

        With MODELYARD_ADMIN_TOKEN set, that token is registered (once) as an admin token; if
        it was registered and later revoked, it stays revoked (a revocation is never undone by
        a restart) and is returned as `revoked`, for a warning. Otherwise, on a store with no
        tokens at all, a fresh admin token is made and returned as `created`, to print once.
        """
        if configured:
            found = await self._store.find_token(hash_token(configured))
            if found is None:
                await self.issue("bootstrap-admin", Role.ADMIN, "modelyard", secret=configured)
            elif found.revoked_at is not None:
                return AdminBootstrap(revoked=found)
            return AdminBootstrap()
        if await self._store.list_tokens():
            return AdminBootstrap()
        issued = await self.issue("bootstrap-admin", Role.ADMIN, "modelyard")
        return AdminBootstrap(created=issued.token)


class AdminBootstrap(msgspec.Struct, frozen=True):
    """What `bootstrap_admin` found: a new admin secret to show once, or the configured admin
    token found revoked (the operator is locked out with it and must be told)."""

    created: str | None = None
    revoked: Token | None = None


def revoked_admin_warning(token: Token) -> str:
    """The start-up warning for a configured admin token that was revoked: which token (its id,
    name and prefix, never the secret), since when, and what to do."""
    when = token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "?"
    return (
        f"MODELYARD_ADMIN_TOKEN is token {token.id} ({token.name!r}, {token.prefix}...), which"
        f" was revoked at {when}: it is refused, and this start does not bring it back. Log in"
        " with another admin token, or set MODELYARD_ADMIN_TOKEN to a new secret (at least 16"
        " characters; it is registered as an admin token at the next start)."
    )
