"""How well a listing fits a demand: plain functions, no I/O.

score = 0.55 × text relevance (Meilisearch's ranking score, 0-1)
      + 0.15 × budget fit + 0.10 × region fit + 0.10 × kind fit + 0.10 × transaction-type fit

A factor the buyer left open counts as a fit. Each factor is kept as a reason, with the terms
that matched, so the buyer sees why a listing was proposed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WEIGHTS = {"text": 0.55, "budget": 0.15, "region": 0.10, "kind": 0.10, "transaction_type": 0.10}
# Below this text relevance a listing is not proposed, whatever else fits.
MIN_RELEVANCE = 0.35
MAX_MATCHES_PER_DEMAND = 50
PROVINCES = {"11": "北京", "12": "天津", "13": "河北"}


@dataclass(frozen=True)
class DemandTerms:
    kinds: tuple[str, ...]
    transaction_types: tuple[str, ...]
    regions: tuple[str, ...]
    budget_max: Decimal | None


def _region_fits(regions: tuple[str, ...], region: str | None) -> bool:
    return region is not None and any(region.startswith(r) for r in regions)


def matched_terms(doc: dict[str, Any]) -> list[str]:
    """The words Meilisearch matched, read from `_matchesPosition` (UTF-8 byte offsets)."""
    terms: list[str] = []
    for attribute, positions in (doc.get("_matchesPosition") or {}).items():
        value = doc.get(attribute)
        if not isinstance(value, str):
            continue
        raw = value.encode()
        for position in positions:
            term = (
                raw[position["start"] : position["start"] + position["length"]]
                .decode(errors="ignore")
                .strip()
            )
            if term and term not in terms:
                terms.append(term)
    return terms[:10]


CJK_RUN = re.compile(r"[\u3400-\u9fff]+")


def shared_terms(query: str, texts: Sequence[str]) -> list[str]:
    """The words of `query` that occur in `texts`, in query order, at most 10: a Latin word when
    it occurs (case-insensitive), a CJK run whole when it occurs, else its longest pieces of two
    characters or more that do. Meilisearch's own match positions would say the same in most
    cases, but asking for them costs its segmenter a pass over every hit's whole text (~1.5 ms
    per hit of a long demand), several times the search itself."""
    return terms_in(query, haystack(texts))


def haystack(texts: Sequence[str]) -> str:
    """`texts` as `terms_in` searches them (built once per demand, not once per listing)."""
    return "\n".join(texts).lower()


def terms_in(query: str, haystack: str) -> list[str]:
    """`shared_terms` of a prepared haystack."""
    terms: list[str] = []
    for word in query.lower().split():
        pieces: list[str] = []
        for run in CJK_RUN.findall(word):
            start = 0
            while start < len(run) - 1:
                # No piece starts here unless its first two characters occur (most do not).
                end = (
                    next((e for e in range(len(run), start + 1, -1) if run[start:e] in haystack), 0)
                    if run[start : start + 2] in haystack
                    else 0
                )
                if end:
                    pieces.append(run[start:end])
                    start = end
                else:
                    start += 1
        latin = re.findall(r"[^\W_]+", CJK_RUN.sub(" ", word))
        pieces += [w for w in latin if re.search(rf"\b{re.escape(w)}\b", haystack)]
        for piece in pieces:
            if piece not in terms:
                terms.append(piece)
    return terms[:10]


def score(
    demand: DemandTerms, listing: dict[str, Any], relevance: float, terms: list[str]
) -> tuple[float, list[dict[str, Any]]]:
    """(score 0-1, reasons) of a listing (a search document) for a demand."""
    reasons: list[dict[str, Any]] = [
        {
            "factor": "text",
            "fit": round(relevance, 4),
            "detail": ("matched: " + ", ".join(terms)) if terms else "related text",
        }
    ]
    fits = {"text": relevance}

    amount = listing.get("amount")
    if demand.budget_max is None:
        fits["budget"] = 1.0
    elif amount is None:
        fits["budget"] = 0.5
        reasons.append(
            {
                "factor": "budget",
                "fit": 0.5,
                "detail": f"price {listing.get('price_mode')}: ask the seller",
            }
        )
    else:
        within = Decimal(str(amount)) <= demand.budget_max
        fits["budget"] = 1.0 if within else 0.0
        reasons.append(
            {
                "factor": "budget",
                "fit": fits["budget"],
                "detail": f"{amount:,.2f} CNY {'within' if within else 'over'} the "
                f"budget of {demand.budget_max:,.2f}",
            }
        )

    region = listing.get("region")
    if not demand.regions:
        fits["region"] = 1.0
    else:
        fits["region"] = 1.0 if _region_fits(demand.regions, region) else 0.0
        place = PROVINCES.get((region or "")[:2], region or "unknown")
        reasons.append(
            {
                "factor": "region",
                "fit": fits["region"],
                "detail": f"{'in' if fits['region'] else 'outside'} the preferred "
                f"regions ({place})",
            }
        )

    for factor, wanted, value in (
        ("kind", demand.kinds, listing.get("kind")),
        ("transaction_type", demand.transaction_types, listing.get("transaction_type")),
    ):
        fits[factor] = 1.0 if not wanted or value in wanted else 0.0
        if wanted:
            reasons.append(
                {
                    "factor": factor,
                    "fit": fits[factor],
                    "detail": f"{value} {'is' if fits[factor] else 'is not'} "
                    f"among {', '.join(wanted)}",
                }
            )
    total = sum(WEIGHTS[name] * fit for name, fit in fits.items())
    return round(total, 4), reasons
