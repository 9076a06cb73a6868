"""Matching quality on labelled buyer demands (tests/data/matching/): the sets and their
measure (recall@5, expected first, any match, per style), shared by the quality tests."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
LABELLED = DATA / "matching" / "buyer_demands.jsonl"
HOLDOUT = DATA / "matching" / "buyer_demands_holdout.jsonl"
REAL = DATA / "tech_demands.jsonl"


def labelled(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class Quality:
    demands: int = 0
    any_match: int = 0
    in_top5: int = 0
    first: int = 0
    by_style: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    misses: list[str] = field(default_factory=list)

    def add(self, demand: dict[str, Any], found: list[str]) -> None:
        """One demand and the identifiers of its matches, best first."""
        expected = set(demand["expected"])
        top5 = bool(expected & set(found[:5]))
        first = bool(found) and found[0] in expected
        self.demands += 1
        self.any_match += bool(found)
        self.in_top5 += top5
        self.first += first
        style = self.by_style[demand["style"]]
        style[0] += 1
        style[1] += top5
        style[2] += first
        if not top5:
            rank = next((i + 1 for i, f in enumerate(found) if f in expected), None)
            self.misses.append(f"{demand['id']} ({demand['style']}) rank {rank}: {demand['title']}")

    def line(self, name: str) -> str:
        n = self.demands or 1
        styles = ", ".join(
            f"{style} {top5}/{count} ({first} first)"
            for style, (count, top5, first) in sorted(self.by_style.items())
        )
        return (
            f"{name}: {self.demands} demands, recall@5 {self.in_top5 / n:.3f}, "
            f"expected first {self.first / n:.3f}, any match {self.any_match / n:.3f} "
            f"[{styles}]"
        )
