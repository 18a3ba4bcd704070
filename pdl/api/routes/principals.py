"""Principals: who may call the API, with which role (admin)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import NotFound
from ledger.principals import Role
from pdl.api.deps import Cursor, Limit, Principal, decode_cursor, require, state
from pdl.api.problems import ERROR_RESPONSES
from pdl.api.reads import page_of

router = APIRouter(prefix="/principals", tags=["access control"], responses=ERROR_RESPONSES)

PrincipalName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,99}$")]


class NewPrincipal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,99}$")
    role: Role
    sources: list[Annotated[str, Field(pattern=r"^\S{1,200}$")]] = Field(
        default_factory=list, max_length=100,
        description="a publisher's event sources (required for publishers only)")


class PrincipalOut(BaseModel):
    name: str
    role: str
    sources: list[str]
    created_at: str
    disabled_at: str | None
    active: bool


class PrincipalPage(BaseModel):
    items: list[PrincipalOut]
    next: str | None


@router.get("", response_model=PrincipalPage)
def list_principals(request: Request, principal: Annotated[Principal, require(Role.ADMIN)],
                    limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Principals by name (admin)."""
    key = decode_cursor(cursor, (str,))
    rows = state(request).principals.principals(after=key[0] if key else None, limit=limit + 1)
    return page_of([r.as_dict() for r in rows], limit, lambda r: [r["name"]])


@router.post("", response_model=PrincipalOut, status_code=201)
def add_principal(request: Request, body: NewPrincipal,
                  principal: Annotated[Principal, require(Role.ADMIN)]) -> Any:
    """Register a principal (admin; 409 if the name is taken)."""
    store = state(request).principals
    with contextlib.suppress(NotFound):
        store.get(body.name)
        raise HTTPException(409, "a principal by that name exists")
    return store.add(body.name, body.role, body.sources).as_dict()


@router.post("/{name}/disable", response_model=PrincipalOut)
def disable(request: Request, name: PrincipalName,
            principal: Annotated[Principal, require(Role.ADMIN)]) -> Any:
    """Disable a principal: its tokens stop working at once (admin; not oneself, so the
    last admin cannot lock everyone out by mistake: 409)."""
    if name == principal.name:
        raise HTTPException(409, "a principal cannot disable itself; ask another admin")
    return state(request).principals.disable(name).as_dict()
