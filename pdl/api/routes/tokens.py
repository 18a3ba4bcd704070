"""Bearer tokens: issued once, listed without secrets, revoked (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ledger.principals import Role
from pdl.api.deps import Cursor, Limit, Principal, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import page_of

router = APIRouter(prefix="/tokens", tags=["access control"], responses=ERROR_RESPONSES)


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,99}$")
    ttl_days: int = Field(default=90, ge=1, le=3650, description="days until it expires")
    label: str | None = Field(default=None, min_length=1, max_length=200)


class TokenOut(BaseModel):
    id: str
    principal: str
    label: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    state: str


class Issued(TokenOut):
    token: str = Field(description="the bearer token: shown this once, stored only hashed")


class TokenPage(BaseModel):
    items: list[TokenOut]
    next: str | None


@router.get("", response_model=TokenPage)
def list_tokens(request: Request, principal: Annotated[Principal, require(Role.ADMIN)],
                owner: Annotated[str | None, Query(alias="principal", max_length=100)] = None,
                limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Tokens by id, never their secrets (admin)."""
    key = decode_cursor(cursor, (str,))
    rows = state(request).principals.tokens(principal=owner, after=key[0] if key else None,
                                            limit=limit + 1)
    return page_of([r.as_dict() for r in rows], limit, lambda r: [r["id"]])


@router.post("", response_model=Issued, status_code=201)
def issue(request: Request, body: NewToken,
          principal: Annotated[Principal, require(Role.ADMIN)]) -> Any:
    """Issue a token for a principal; the answer is the only time it is shown (admin)."""
    store = state(request).principals
    if store.get(body.principal).disabled_at is not None:
        raise HTTPException(409, "the principal is disabled: it gets no tokens")
    issued = store.issue(body.principal, ttl=timedelta(days=body.ttl_days), label=body.label)
    return {**issued.info.as_dict(), "token": issued.token}


@router.post("/{token_id}/revoke", response_model=TokenOut)
def revoke(request: Request, token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")],
           principal: Annotated[Principal, require(Role.ADMIN)]) -> Any:
    """Revoke a token: it stops working at once (admin)."""
    return state(request).principals.revoke(token_id).as_dict()
