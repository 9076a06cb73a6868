"""What each part of reading and scoring a demand buys, measured: every labelled demand of
tests/data/matching/ scored against every record of the demo catalogue (no services: the
ranking alone, without retrieval or the threshold), with one part turned off at a time.

    .venv/bin/python tests/perf/ablate_matching.py

Prints recall@5 and expected-first per variant, on the labelled and held-out sets together.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from infra.seed.demo import demo_catalogue
from services.matching import synonyms
from services.matching.demands import reading, scoring
from services.matching.vocabulary import Vocabulary, document_text

DATA = Path(__file__).resolve().parents[1] / "data" / "matching"
NOTHING = re.compile(r"(?!)")


@contextmanager
def uniform_rarity() -> Iterator[None]:
    with mock.patch.object(Vocabulary, "idf", lambda self, unit: 1.0):
        yield


VARIANTS: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "everything": nullcontext,
    "no synonyms": lambda: mock.patch.object(synonyms, "_KNOWN", NOTHING),
    "no boilerplate cut": lambda: mock.patch.object(reading, "_BOILERPLATE", NOTHING),
    "background kept": lambda: mock.patch.object(reading, "is_background", lambda c: False),
    "title not weighed": lambda: mock.patch.object(reading, "TITLE_WEIGHT", 1.0),
    "rarity not weighed": uniform_rarity,
    "no title cover": lambda: mock.patch.object(scoring, "TITLE_SHARE", 0.0),
    "abstract as title": lambda: mock.patch.object(scoring, "ABSTRACT_SHARE", 1.0),
}


def main() -> None:
    records = [r for _, rs in demo_catalogue() for r in rs]
    docs = [
        {
            "identifier": r.asset.identifier,
            "title_zh": r.asset.title.zh,
            "title_en": r.asset.title.en,
            "abstract_zh": r.asset.abstract.zh if r.asset.abstract else None,
            "abstract_en": r.asset.abstract.en if r.asset.abstract else None,
        }
        for r in records
    ]
    demands = [
        json.loads(line)
        for name in ("buyer_demands.jsonl", "buyer_demands_holdout.jsonl")
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line
    ]
    print(f"{len(demands)} labelled demands x {len(docs)} catalogue records")
    print(f"{'variant':<22}{'recall@5':>10}{'first':>8}{'seconds':>9}")
    for name, variant in VARIANTS.items():
        started = time.perf_counter()
        with variant():
            vocabulary = Vocabulary.of(document_text(d).lower() for d in docs)
            texts = [scoring.listing_text(d, vocabulary) for d in docs]
            top5 = first = 0
            for demand in demands:
                read = reading.read_demand(demand["title"], demand["text"])
                compiled = scoring.compile_reading(read, vocabulary)
                fits = sorted(
                    ((scoring.text_fit(compiled, t).fit, i) for i, t in enumerate(texts)),
                    reverse=True,
                )
                ranked = [docs[i]["identifier"] for _, i in fits[:5]]
                top5 += bool(set(demand["expected"]) & set(ranked))
                first += ranked[0] in demand["expected"]
        n = len(demands)
        seconds = time.perf_counter() - started
        print(f"{name:<22}{top5 / n:>10.3f}{first / n:>8.3f}{seconds:>9.1f}")


if __name__ == "__main__":
    main()
