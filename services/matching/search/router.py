"""GET /v1/search: the catalogue search (built and run by shared/search.py, which the gateway's
public search runs too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from services.matching.nodes import NodePool
from shared.contracts.search import SearchResult
from shared.errors import problem_responses
from shared.search import SearchParams, catalogue_search, search_params

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.get("", response_model=SearchResult, responses=problem_responses(422, 503))
async def search_listings(
    request: Request, params: Annotated[SearchParams, Depends(search_params)]
) -> Response:
    """Search the catalogue (published listings) in Chinese or English, or by patent number
    (matched exactly), with filters, facets, sorting and pages. Any node of the catalogue index
    that is caught up may answer."""
    nodes: NodePool = request.app.state.search_nodes
    content = await catalogue_search(nodes, params)
    return Response(content, media_type="application/json")
