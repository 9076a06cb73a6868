"""The demands index: buyers' active demands, searched by each newly published listing (one
multi-search per batch of new listings instead of every demand against every listing)."""

from __future__ import annotations

from typing import Any

from services.matching.catalogue import SYNONYMS
from services.matching.models import Demand

SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["title", "text"],
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
    return {
        "id": str(demand.id),
        "organization_id": str(demand.organization_id),
        "title": demand.title,
        "text": demand.text,
        "kinds": demand.kinds,
        "transaction_types": demand.transaction_types,
        "ipc_prefixes": demand.ipc_prefixes,
        "status": demand.status,
    }
