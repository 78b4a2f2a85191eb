"""Aliases: names that point at a model, accepted wherever a model id is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import READ_UNAUTHORIZED, UNAUTHORIZED, Mutating, Reading, StoreDep
from app.model_registry import point_alias, remove_alias
from app.schemas import ErrorBody
from core.aliases import Alias, Aliases, AliasList
from core.names import NAME_PATTERN

router = APIRouter(prefix="/aliases", tags=["aliases"])

AliasName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="letters, digits, _ and -; at most 64")
]


class AliasRequest(BaseModel):
    """PUT /aliases/{alias}."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64, description="a model id, or an alias")


@router.get("", dependencies=[Reading], responses=READ_UNAUTHORIZED)
async def aliases(store: StoreDep) -> AliasList:
    """Every alias with the model it points at, by name."""
    return await run_in_threadpool(Aliases(store.engine).all)


@router.put(
    "/{alias}",
    dependencies=[Mutating],
    responses={
        **UNAUTHORIZED,
        400: {"model": ErrorBody, "description": "the body is not JSON text"},
        404: {"model": ErrorBody, "description": "unknown model"},
        409: {
            "model": ErrorBody,
            "description": "the alias is a job id, or the model is being deleted",
        },
    },
)
async def put_alias(alias: AliasName, body: AliasRequest, store: StoreDep) -> Alias:
    """Point `alias` at a model: created, or moved (the next request using it sees the
    new model). A `model` that is itself an alias is resolved to its model id."""
    return await run_in_threadpool(point_alias, store, alias, body.model)


@router.delete(
    "/{alias}",
    status_code=204,
    dependencies=[Mutating],
    responses={**UNAUTHORIZED, 404: {"model": ErrorBody}},
)
async def delete_alias(alias: str, store: StoreDep) -> Response:
    await run_in_threadpool(remove_alias, store, alias)
    return Response(status_code=204)
