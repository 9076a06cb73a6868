"""The demands index: buyers' active demands, searched by each newly published listing (one
multi-search per batch of new listings instead of every demand against every listing)."""

from __future__ import annotations

from typing import Any

from services.matching.demands.reading import stored_reading
from services.matching.models import Demand
from services.matching.synonyms import SYNONYMS

SETTINGS: dict[str, Any] = {
    # The terms read from the demand first: a new listing's title is looked for there before
    # the prose around them.
    "searchableAttributes": ["terms", "title", "text"],
    "filterableAttributes": [
        "status",
        "kinds",
        "transaction_types",
        "ipc_prefixes",
        "organization_id",
    ],
    "synonyms": SYNONYMS,
    "typoTolerance": {"disableOnNumbers": True},
    "pagination": {"maxTotalHits": 10000},
}


def demands_index(catalogue_uid: str) -> str:
    return f"{catalogue_uid}_demands"


def demand_document(demand: Demand) -> dict[str, Any]:
    reading = stored_reading(demand.title, demand.text, demand.reading)
    return {
        "id": str(demand.id),
        "terms": [name for term in reading.terms for name in (term.text, *term.alternatives)],
        "organization_id": str(demand.organization_id),
        "title": demand.title,
        "text": demand.text,
        "kinds": demand.kinds,
        "transaction_types": demand.transaction_types,
        "ipc_prefixes": demand.ipc_prefixes,
        "status": demand.status,
    }
