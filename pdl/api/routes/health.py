"""Liveness, status, who am I, metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from pdl.api.deps import Principal, Role, require, state, strict_query
from pdl.api.problems import ERROR_RESPONSES

router = APIRouter(tags=["service"], responses=ERROR_RESPONSES)


class Health(BaseModel):
    status: str


class Me(BaseModel):
    name: str
    role: str
    sources: list[str]


class ProjectionStatus(BaseModel):
    projection: str
    lag: int
    model_config = {"extra": "allow"}


@router.get("/health", response_model=Health, dependencies=[Depends(strict_query)])
def health() -> dict[str, str]:
    """Liveness (no token needed; not audited)."""
    return {"status": "ok"}


@router.get("/status", response_model=list[ProjectionStatus])
def status(request: Request, principal: Annotated[Principal, require()]) -> Any:
    """Each projection's position and lag behind the log (any role; not audited)."""
    api = state(request)
    return api.service.status()


@router.get("/whoami", response_model=Me)
def whoami(principal: Annotated[Principal, require()]) -> dict[str, Any]:
    """The authenticated principal (any role)."""
    return {"name": principal.name, "role": principal.role.value,
            "sources": list(principal.sources)}


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request, principal: Annotated[Principal, require(Role.ADMIN)]) -> str:
    """Counters in Prometheus text format: refused credentials, responses (admin)."""
    return state(request).metrics.render()
