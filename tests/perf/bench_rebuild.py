"""`ipx index rebuild` at scale (issue 20, item 4): the time and documents/s of a rebuild of the
whole catalogue index, with the gateway's catalogue search under load throughout.

    .venv/bin/python tests/perf/bench_rebuild.py --listings 100000

On a stack of its own (real listing, matching and gateway processes): `--listings` published
and indexed (bench_search.publish), a load window on the gateway's search before, then the
rebuild as an operator runs it (`python -m infra.cli index rebuild`, a process of its own, with
the stack's environment) while 16 connections search back to back in windows of WINDOW_SECONDS;
every answer during the rebuild is counted by status. The rebuild's own report gives its time
and the documents it indexed. Afterwards the index must hold every listing and answer the same
queries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from bench_search import (  # tests/perf is this script's folder
    get_request,
    load,
    load_window,
    publish,
    queries_from_titles,
    search_as_a_client,
    summarise,
)
from stack import Infra, Stack, index_status

WINDOW_SECONDS = 5.0
CONNECTIONS = 16


def run(stack: Stack, listings: int, *, seconds: float = 8.0) -> dict[str, Any]:
    build = publish(stack, listings)
    gateway = stack.url("gateway")
    texts = queries_from_titles(60 if listings >= 1000 else 20, listings)
    requests = [get_request(gateway, "/v1/catalogue/search", {"q": q}) for q in texts]
    before = load(gateway, requests, connections=CONNECTIONS, warmup=1.0, seconds=seconds)
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "index", "rebuild"],
        env={**os.environ, **stack.env, "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    began = time.perf_counter()
    windows = []
    while rebuild.poll() is None:
        windows.append(
            load_window(
                gateway, requests, connections=CONNECTIONS, warmup=0.0, seconds=WINDOW_SECONDS
            )
        )
    output, _ = rebuild.communicate()
    wall_s = time.perf_counter() - began  # to the last window's end
    if rebuild.returncode != 0:
        raise RuntimeError(f"the rebuild failed: {output[-3000:]}")
    took = re.search(r"rebuilt and swapped in \(([0-9.]+) s\)", output)
    indexed = re.search(r"documents indexed\W+([0-9]+)", output)
    if took is None or indexed is None:
        raise RuntimeError(f"the rebuild's report was not understood: {output[-3000:]}")
    rebuild_s, documents = float(took.group(1)), int(indexed.group(1))
    status = index_status(stack)
    found = sum(
        bool(search_as_a_client(f"{gateway}/v1/catalogue/search", q)[0].json()["items"])
        for q in texts
    )
    during = summarise(windows)
    return {
        "listings": build["published"],
        "rebuild_s": round(rebuild_s, 1),
        "documents": documents,
        "docs_per_s": round(documents / rebuild_s, 1),
        "wall_s": round(wall_s, 1),
        "documents_after": status["documents"],
        "queries_found_after": f"{found}/{len(texts)}",
        "search_before": _brief(before),
        "search_during": _brief(during),
        "report": output.strip().splitlines()[-12:],
    }


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": summary["requests"],
        "per_s": round(summary["throughput"], 1),
        "p50_ms": round(summary["p50_ms"], 1),
        "p99_ms": round(summary["p99_ms"], 1),
        "statuses": summary["statuses"],
        "errors": summary["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=10_000)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack() as stack:
        result = run(stack, args.listings)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
