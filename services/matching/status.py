"""GET /v1/index/status: where the indexer is, how far behind, how big the index is, and how
many indexed listings still wait for their matches.
GET /v1/index/search-key: the read-only key the gateway queries the catalogue index with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.matching import repository
from services.matching.demands import repository as demands
from services.matching.meili import MeiliClient, MeiliError, MeiliUnavailable
from services.matching.nodes import NodeState, node_states
from shared.auth import Principal, require_roles
from shared.contracts.events import FeedHead
from shared.db import SessionDep
from shared.errors import ServiceUnavailable, problem_responses

router = APIRouter(prefix="/v1/index", tags=["index"])


class NodeStatus(BaseModel):
    """A read replica of the catalogue index (IPX_MEILI_REPLICA_URLS)."""

    name: str = Field(examples=["meili-1:7700"])
    cursor: str | None = Field(description="where its indexer is in the feed; null: not yet")
    last_event_at: datetime | None
    lag_seconds: float | None = Field(
        description="behind the primary node's last indexed event; null: nothing indexed yet"
    )
    in_rotation: bool = Field(description="searches may use it (within the allowed lag)")


class IndexStatus(BaseModel):
    index: str
    cursor: str
    feed_head: str
    lag_events: int
    lag_seconds: float | None
    last_event_at: datetime | None
    documents: int | None
    # Listings indexed but not yet matched against the demands (the match queue): their
    # matches are in the match feed once this is 0.
    matches_pending: int
    replicas: list[NodeStatus] = Field(default_factory=list)


@router.get("/status", response_model=IndexStatus, responses=problem_responses(401, 403, 503))
async def index_status(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_roles("operator", "service"))],
) -> IndexStatus:
    settings = request.app.state.settings
    uid: str = request.app.state.index_uid
    state = await repository.indexer_state(session, uid)
    cursor = state.cursor if state else "0.0"
    try:
        response = await request.app.state.http.get(
            f"{settings.listing_url}/v1/changes/head",
            params={"after": cursor},
            headers={"Authorization": f"Bearer {settings.service_key.get_secret_value()}"},
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable("the listing feed cannot be read right now") from exc
    head = FeedHead.model_validate_json(response.content)
    meili: MeiliClient = request.app.state.meili
    try:
        documents: int | None = await meili.document_count(uid)
    except (MeiliUnavailable, MeiliError):
        documents = None
    last = state.last_event_at if state else None
    lag = (head.occurred_at - last).total_seconds() if head.occurred_at and last else None
    if head.pending == 0:
        lag = 0.0
    return IndexStatus(
        index=uid,
        cursor=cursor,
        feed_head=head.cursor,
        lag_events=head.pending,
        lag_seconds=lag,
        last_event_at=last,
        documents=documents,
        matches_pending=await demands.queued(session),
        replicas=[
            NodeStatus(**{k: v for k, v in vars(state).items() if k != "url"})
            for state in await _replica_states(request, session)
        ],
    )


async def _replica_states(request: Request, session: AsyncSession) -> list[NodeState]:
    return await node_states(
        session,
        request.app.state.indexer,
        request.app.state.replica_nodes,
        request.app.state.settings.meili_replica_max_lag_seconds,
    )


class SearchKey(BaseModel):
    """Where and how to search the catalogue index directly (NOTES.md "Search hop"): this key
    can search this index and do nothing else; matching keeps every write."""

    url: str
    index: str
    key: str
    urls: list[str] = Field(
        default_factory=list,
        description="every node searches may use now, the primary (`url`) first: read "
        "replicas within the allowed lag that hold the key",
    )


@router.get("/search-key", response_model=SearchKey, responses=problem_responses(401, 403, 503))
async def search_key(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_roles("service"))],
) -> SearchKey:
    settings = request.app.state.settings
    uid: str = request.app.state.index_uid
    meili: MeiliClient = request.app.state.meili
    try:
        key = await meili.search_key(uid)
    except (MeiliUnavailable, MeiliError) as exc:
        raise ServiceUnavailable(
            "the search key cannot be provisioned right now", headers={"Retry-After": "2"}
        ) from exc
    urls = [settings.meili_url]
    states = {state.name: state for state in await _replica_states(request, session)}
    for node in request.app.state.replica_nodes:
        if not states[node.name].in_rotation:
            continue
        try:  # the same key on every node: Meilisearch derives it from the master key and uid
            if await node.indexer.meili.search_key(uid) == key:
                urls.append(node.url)
        except (MeiliUnavailable, MeiliError):
            continue  # down: out of the rotation until it answers
    return SearchKey(url=settings.meili_url, index=uid, key=key, urls=urls)
