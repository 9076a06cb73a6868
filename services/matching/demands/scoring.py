"""How well a listing fits a demand: plain functions, no I/O.

score = text fit × (0.7 + 0.3 × constraint fit)
text fit: the demand's terms found in the listing, weighed by rarity (text_fit)
constraint fit: (0.15 budget + 0.10 region + 0.10 kind + 0.10 transaction type) / 0.45

The constraints are the buyer's fields, else what the demand's prose states (reading.py). A
factor the buyer left open counts as a fit. Each factor is kept as a reason, with the terms
that matched and where, so the buyer sees why a listing was proposed. The score is a function
of the demand and the listing alone, the same whichever side was posted first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.matching.demands.reading import ENGLISH_STOPWORDS, Reading
from services.matching.vocabulary import Vocabulary, units

# The constraints, weighed among themselves; together they scale the text fit by at most
# CONSTRAINT_SHARE, so they order listings that answer the demand alike and never lift one
# that answers it less (a buyer's 独占许可 does not make an unrelated patent relevant).
WEIGHTS = {"budget": 0.15, "region": 0.10, "kind": 0.10, "transaction_type": 0.10}
CONSTRAINT_SHARE = 0.3
# Below this text fit a listing is not proposed, whatever else fits.
MIN_RELEVANCE = 0.25
MAX_MATCHES_PER_DEMAND = 50
PROVINCES = {"11": "北京", "12": "天津", "13": "河北"}
# Patent-title boilerplate: what a title says of every invention, not of this one (and the
# claim formula of software patents: 电子设备和存储介质).
TITLE_BOILERPLATE = re.compile(
    r"一种|一类|基于|用于|应用于|以及|及其|及|和|与|或|的|方法|装置|系统|设备|结构|组件|"
    r"模块|单元|其|中|该|所述|实现|进行|通过|存储介质|计算机可读|计算机程序产品|程序产品|"
    r"相关产品|可读|具有|相关|[，、,.;；:：()（）]"
)


def salient_query(title: str) -> str:
    """The words of a listing title that say what it is about, in order."""
    words = [
        w for w in TITLE_BOILERPLATE.sub(" ", title).split() if w.lower() not in ENGLISH_STOPWORDS
    ]
    return " ".join(words[:10])


@dataclass(frozen=True)
class DemandTerms:
    """The constraints a listing is scored against: the buyer's fields, else the prose's."""

    kinds: tuple[str, ...]
    transaction_types: tuple[str, ...]
    regions: tuple[str, ...]
    budget_max: Decimal | None

    @classmethod
    def of(
        cls,
        reading: Reading,
        kinds: list[str],
        transaction_types: list[str],
        regions: list[str],
        budget_max: Decimal | None,
    ) -> DemandTerms:
        stated = reading.constraints
        return cls(
            kinds=tuple(kinds) or stated.kinds,
            transaction_types=tuple(transaction_types) or stated.transaction_types,
            regions=tuple(regions) or stated.regions,
            budget_max=budget_max if budget_max is not None else stated.budget_max,
        )


def _region_fits(regions: tuple[str, ...], region: str | None) -> bool:
    return region is not None and any(region.startswith(r) for r in regions)


# A piece found only in the abstract counts for this share of one found in the title.
ABSTRACT_SHARE = 0.8
# How much the listing's title being covered by the demand adds (see text_fit), and the weight
# of title pieces under which a title is too generic (智能装置) for its cover to count in full.
TITLE_SHARE = 0.3
SPECIFIC_TITLE = 15.0


def term_weights(reading: Reading, vocabulary: Vocabulary) -> list[float]:
    """How much each term of a reading counts: title terms twice, rare pieces more."""
    return [
        term.weight * sum(vocabulary.weight(u) for u in units(term.text)) for term in reading.terms
    ]


@dataclass(frozen=True, slots=True)
class Name:
    """One way to write a piece of a term: its comparison units with their weights (a unit the
    name holds twice, twice its weight)."""

    text: str
    weights: dict[str, float]
    mass: float


@dataclass(frozen=True, slots=True)
class CompiledTerm:
    text: str
    weight: float  # the term's (title twice) times the weight of its written pieces
    pieces: tuple[tuple[Name, ...], ...]  # per piece, its names (as written first)


@dataclass(frozen=True, slots=True)
class CompiledDemand:
    """A demand's reading prepared for scoring many listings (once per demand and vocabulary)."""

    terms: tuple[CompiledTerm, ...]
    units: frozenset[str]  # every unit of every name: what the listing's title is looked up in
    mass: float


def compile_reading(reading: Reading, vocabulary: Vocabulary) -> CompiledDemand:
    compiled = []
    everything: set[str] = set()
    for term in reading.terms:
        pieces = []
        for names in term.pieces:
            written = []
            for name in names:
                weights: dict[str, float] = {}
                for unit in units(name):
                    weights[unit] = weights.get(unit, 0.0) + vocabulary.weight(unit)
                written.append(Name(name, weights, sum(weights.values())))
                everything.update(weights)
            pieces.append(tuple(written))
        mass = sum(p[0].mass for p in pieces)
        compiled.append(CompiledTerm(term.text, term.weight * mass, tuple(pieces)))
    return CompiledDemand(
        tuple(t for t in compiled if t.weight > 0),
        frozenset(everything),
        sum(t.weight for t in compiled),
    )


@dataclass(frozen=True, slots=True)
class ListingText:
    """A listing's text as units (once per listing and vocabulary)."""

    title: frozenset[str]
    everything: frozenset[str]  # title and abstract
    title_units: dict[str, float]  # the salient title's units and weights
    title_mass: float


def listing_text(doc: dict[str, Any], vocabulary: Vocabulary) -> ListingText:
    title = " ".join(str(doc.get(f) or "") for f in ("title_zh", "title_en")).lower()
    abstract = " ".join(str(doc.get(f) or "") for f in ("abstract_zh", "abstract_en")).lower()
    salient = {
        u: vocabulary.weight(u)
        for u in units(TITLE_BOILERPLATE.sub(" ", title))
        if u not in ENGLISH_STOPWORDS
    }
    in_title = frozenset(units(title))
    return ListingText(
        in_title,
        in_title | frozenset(units(abstract)),
        salient,
        sum(salient.values()),
    )


@dataclass(frozen=True, slots=True)
class TermMatch:
    term: str
    written_as: str
    field: str  # "title" or "abstract"
    share: float  # of the term's weight found


@dataclass(frozen=True, slots=True)
class TextFit:
    fit: float
    demand_cover: float
    title_cover: float
    matched: tuple[TermMatch, ...]


def text_fit(demand: CompiledDemand, listing: ListingText) -> TextFit:
    """How well a listing's text answers a demand's terms, 0-1.

    demand cover: the weighted share of the demand's pieces found in the listing (each piece
    in whichever of its names is found best; rare pieces weigh more, title terms twice, a piece
    found only in the abstract at ABSTRACT_SHARE). title cover: the share of the listing's
    title found in the demand. fit = sqrt(demand cover) x (1 - TITLE_SHARE + TITLE_SHARE x
    title cover x min(1, title weight / SPECIFIC_TITLE)): the title cover ranks the listing a
    demand describes whole above one that merely shares its words, but never makes a match by
    itself (a generic title like 智能装置 is covered by any demand that says 智能). Measured in
    docs/DECISIONS.md (Matching)."""
    title, everything = listing.title, listing.everything
    found = 0.0
    matched: list[TermMatch] = []
    for term in demand.terms:
        term_found = term_seen = 0.0
        written: list[str] = []
        field = ""
        for names in term.pieces:
            best = seen = 0.0
            best_name = names[0].text
            for name in names:
                # Most names share nothing with a listing: one set intersection says so.
                shared = everything.intersection(name.weights)
                if not shared:
                    continue
                in_title = in_abstract = 0.0
                for unit in shared:
                    if unit in title:
                        in_title += name.weights[unit]
                    else:
                        in_abstract += name.weights[unit]
                share = (in_title + ABSTRACT_SHARE * in_abstract) / name.mass
                if share > best:
                    best, seen = share, (in_title + in_abstract) / name.mass
                    best_name = name.text
                    field = "title" if in_title >= in_abstract else "abstract"
            written.append(best_name)
            term_found += names[0].mass * best
            term_seen += names[0].mass * seen
        mass = sum(names[0].mass for names in term.pieces)
        found += term.weight * term_found / mass
        # A term counts as found where half its weight or more is (in either field).
        if term_seen >= 0.5 * mass:
            matched.append(
                TermMatch(term.text, "".join(written), field, round(term_found / mass, 4))
            )
    demand_cover = found / demand.mass if demand.mass else 0.0
    title_cover = (
        sum(listing.title_units[u] for u in demand.units.intersection(listing.title_units))
        / listing.title_mass
        if listing.title_mass
        else 0.0
    )
    specific = min(1.0, listing.title_mass / SPECIFIC_TITLE)
    fit = math.sqrt(demand_cover) * (1 - TITLE_SHARE + TITLE_SHARE * title_cover * specific)
    return TextFit(round(fit, 4), demand_cover, title_cover, tuple(matched))


def score(
    demand: DemandTerms, listing: dict[str, Any], text: TextFit
) -> tuple[float, list[dict[str, Any]]]:
    """(score 0-1, reasons) of a listing (a search document) for a demand."""
    words = [
        m.term if m.written_as == m.term else f"{m.term} ({m.written_as})" for m in text.matched
    ]
    reasons: list[dict[str, Any]] = [
        {
            "factor": "text",
            "fit": text.fit,
            "detail": ("matched: " + ", ".join(words)) if words else "related text",
            "terms": [
                {"term": m.term, "written_as": m.written_as, "field": m.field, "share": m.share}
                for m in text.matched
            ],
        }
    ]
    fits: dict[str, float] = {}

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
    constraints = sum(WEIGHTS[name] * fit for name, fit in fits.items()) / sum(WEIGHTS.values())
    total = text.fit * (1 - CONSTRAINT_SHARE + CONSTRAINT_SHARE * constraints)
    return round(total, 4), reasons
