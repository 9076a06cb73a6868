"""Meilisearch runs with the same indexing memory wherever we start it (docs/DECISIONS.md: at
its default every indexing batch costs 0.2-4 s, which a partner's single push waits for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.meili import MAX_INDEXING_MEMORY

INFRA = Path(__file__).resolve().parents[2] / "infra"


def test_compose_sets_the_launchers_indexing_memory() -> None:
    compose = yaml.safe_load((INFRA / "docker" / "docker-compose.yml").read_text())
    environment = compose["services"]["meilisearch"]["environment"]
    assert environment["MEILI_MAX_INDEXING_MEMORY"] == MAX_INDEXING_MEMORY


def test_kubernetes_sets_the_launchers_indexing_memory() -> None:
    documents: list[dict[str, Any]] = list(
        yaml.safe_load_all((INFRA / "k8s" / "meilisearch.yaml").read_text())
    )
    statefulset = next(d for d in documents if d and d["kind"] == "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MEILI_MAX_INDEXING_MEMORY"] == MAX_INDEXING_MEMORY
