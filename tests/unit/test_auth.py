"""Token checks, with an in-memory TokenStore handed in through the Protocol."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from registry.auth import (
    AdminBootstrap,
    TokenAuthority,
    hash_token,
    require_role,
    revoked_admin_warning,
)
from registry.catalog.domain import Principal, Role, Token
from registry.errors import NotFound, PermissionDenied, Unauthenticated

NOW = datetime(2026, 11, 26, tzinfo=UTC)


class MemoryTokens:
    def __init__(self) -> None:
        self.rows: dict[str, Token] = {}

    async def create_token(
        self, name: str, role: str, token_hash: str, prefix: str, created_by: str, now: datetime
    ) -> Token:
        token = Token(len(self.rows) + 1, name, Role(role), prefix, created_by, now)
        self.rows[token_hash] = token
        return token

    async def find_token(self, token_hash: str) -> Token | None:
        return self.rows.get(token_hash)

    async def list_tokens(self) -> list[Token]:
        return list(self.rows.values())

    async def revoke_token(self, token_id: int, by: str, now: datetime) -> Token:
        for key, token in self.rows.items():
            if token.id == token_id:
                self.rows[key] = Token(**{**_fields(token), "revoked_at": now})
                return self.rows[key]
        raise NotFound("no such token")


def _fields(token: Token) -> dict[str, object]:
    return {f: getattr(token, f) for f in token.__struct_fields__}


@pytest.fixture
def tokens() -> MemoryTokens:
    return MemoryTokens()


async def test_issued_token_authenticates_and_only_its_hash_is_stored(tokens: MemoryTokens) -> None:
    authority = TokenAuthority(tokens, lambda: NOW)
    issued = await authority.issue("ci", Role.DEPLOYER, "admin")
    assert list(tokens.rows) == [hash_token(issued.token)]
    assert issued.token not in repr(tokens.rows)
    principal = await authority.authenticate(f"Bearer {issued.token}")
    assert principal == Principal(issued.info.id, "ci", Role.DEPLOYER)


@pytest.mark.parametrize(
    "header", [None, "", "Basic abc", "Bearer ", "Bearer myd_not-a-real-token-at-all"]
)
async def test_missing_or_unknown_tokens_are_refused(
    tokens: MemoryTokens, header: str | None
) -> None:
    with pytest.raises(Unauthenticated):
        await TokenAuthority(tokens, lambda: NOW).authenticate(header)


async def test_revoked_token_is_refused_at_once(tokens: MemoryTokens) -> None:
    authority = TokenAuthority(tokens, lambda: NOW)
    issued = await authority.issue("ci", Role.READER, "admin")
    await authority.authenticate(f"Bearer {issued.token}")  # now cached
    await authority.revoke(issued.info.id, "admin")
    with pytest.raises(Unauthenticated):
        await authority.authenticate(f"Bearer {issued.token}")


def test_roles_are_ordered() -> None:
    reader = Principal(1, "r", Role.READER)
    require_role(reader, Role.READER)
    with pytest.raises(PermissionDenied, match="deployer"):
        require_role(reader, Role.DEPLOYER)
    require_role(Principal(2, "a", Role.ADMIN), Role.DEPLOYER)


async def test_bootstrap_prints_a_new_admin_once(tokens: MemoryTokens) -> None:
    authority = TokenAuthority(tokens, lambda: NOW)
    secret = (await authority.bootstrap_admin(None)).created
    assert secret is not None
    assert (await authority.authenticate(f"Bearer {secret}")).role is Role.ADMIN
    assert await authority.bootstrap_admin(None) == AdminBootstrap()


async def test_bootstrap_registers_the_configured_token_once(tokens: MemoryTokens) -> None:
    authority = TokenAuthority(tokens, lambda: NOW)
    configured = "configured-admin-token-0123456789"
    assert await authority.bootstrap_admin(configured) == AdminBootstrap()
    assert await authority.bootstrap_admin(configured) == AdminBootstrap()
    assert len(tokens.rows) == 1
    assert (await authority.authenticate(f"Bearer {configured}")).role is Role.ADMIN


async def test_bootstrap_reports_a_configured_admin_token_that_was_revoked(
    tokens: MemoryTokens,
) -> None:
    authority = TokenAuthority(tokens, lambda: NOW)
    configured = "configured-admin-token-0123456789"
    await authority.bootstrap_admin(configured)
    made = (await authority.list())[0]
    await authority.revoke(made.id, "admin")
    outcome = await authority.bootstrap_admin(configured)
    assert outcome.created is None and outcome.revoked is not None
    assert outcome.revoked.id == made.id and outcome.revoked.revoked_at == NOW
    assert len(tokens.rows) == 1  # not registered again: a revocation stays
    with pytest.raises(Unauthenticated):
        await authority.authenticate(f"Bearer {configured}")
    warning = revoked_admin_warning(outcome.revoked)
    assert f"token {made.id} ('bootstrap-admin', {made.prefix}...)" in warning
    assert "MODELYARD_ADMIN_TOKEN" in warning and configured not in warning
