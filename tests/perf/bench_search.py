"""Catalogue search through the gateway, next to the same queries sent straight to Meilisearch.

    .venv/bin/python tests/perf/bench_search.py --listings 10000 --seconds 12

Builds N published listings from the real records (scaled copies get synthesised identifiers)
through listing's import API and waits for the index (not timed), on a stack of the three
services as real processes (stack.py). The load generator (rawload.py) runs in processes of its
own: raw HTTP/1.1 over 16 keep-alive connections, each cycling through the same distinct
Chinese and English queries cut from the real titles of the published records, from a different
starting point; warm-up requests are excluded. Measured in the same run:

- plain: `{q, limit: 20}` POSTed to Meilisearch on the same index, the engine's floor: what a
  search costs before the catalogue's features (facets, grouping, counts, highlights);
- raw: the body the catalogue search builds for each query (shared/search.py), POSTed to
  Meilisearch itself (the gateway's hop, without what the body costs);
- raw, load split over two generator processes: if it is clearly faster than one, the generator
  is the bottleneck (printed as a check, with how busy the generator was);
- gateway: GET /v1/catalogue/search?q=... (what the public calls);
- matching: GET /v1/search?q=... (the same search through matching's API, for comparison).

The targets take short windows in turn, several rounds (the other load on a shared machine
drifts; one long window each would lay that drift on the ratios). Besides latency and
throughput, the CPU time Meilisearch and each service spent per request is printed: on a busy
machine it is the steadier measure of what a search costs.

Targets: against the plain query (issue 20), gateway p99 <= 2x and throughput >= 0.5x;
against the same body (issue 6), p50 <= 1.5x, p99 <= 2x, throughput >= 0.5x.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import psutil
from datasets import import_csv  # tests/perf is this script's folder
from stack import (
    HOLDER,
    Infra,
    RssSampler,
    Stack,
    database_bytes,
    meili_used_bytes,
    publish_import,
    signup,
    wait_caught_up,
)

MB = 1e6
TARGETS = {"p50": 1.5, "p99": 2.0, "throughput": 0.5}  # gateway against the same body
PLAIN_TARGETS = {"p99": 2.0, "throughput": 0.5}  # gateway against the plain query
# Chinese titles are cut before the first joining word (一种X的Y -> X) or at 8 characters.
# Words every English title has: a query of them alone would test nothing.
GENERIC = {
    "a", "an", "the", "and", "or", "of", "for", "in", "on", "to", "with", "based", "method",
    "methods", "device", "devices", "system", "systems", "apparatus", "equipment", "medium",
    "storage", "electronic", "readable", "computer", "related", "thereof",
}  # fmt: skip
CUT = re.compile(r"[的及和与、，,（(]")


# Queries -------------------------------------------------------------------------------------


def queries_from_titles(count: int = 60, listings: int = 10_000) -> list[str]:
    """`count` distinct queries cut from the real titles of the first `listings` records (the
    ones published), spread over them: up to a third English, the rest Chinese."""
    from infra.seed.records import load_records

    records = [r for r in load_records() if r.asset.legal_status in ("granted", "pending")]
    records = records[:listings]
    english: list[str] = []
    en_titles = [r.asset.title.en for r in records if r.asset.title.en]
    for title in en_titles[:: max(1, len(en_titles) // count)]:
        if title.lower().startswith("the invention"):
            continue  # an abstract in the title column
        words = [w for w in re.split(r"[\s,]+", title.lower()) if w and w not in GENERIC]
        phrase = " ".join(words[:3])
        if len(words) >= 2 and phrase not in english and len(english) < count // 3:
            english.append(phrase)
    # The first 5,105 records have Chinese titles only: fewer listings, fewer English queries.
    chinese: list[str] = []
    zh_titles = [r.asset.title.zh for r in records if r.asset.title.zh]
    for title in zh_titles[:: max(1, len(zh_titles) // (count * 2))]:
        text = title.removeprefix("一种").removeprefix("基于")
        cut = CUT.split(text, maxsplit=1)[0][:8]
        if len(cut) >= 2 and cut not in chinese and len(chinese) < count - len(english):
            chinese.append(cut)
    found = chinese + english
    if len(found) < count:
        raise RuntimeError(f"only {len(found)} distinct queries in the records")
    return found


def get_request(base_url: str, path: str, params: dict[str, str]) -> bytes:
    host = urlsplit(base_url).netloc
    return f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def post_json_request(base_url: str, path: str, body: dict[str, Any], key: str) -> bytes:
    host = urlsplit(base_url).netloc
    payload = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def raw_requests(meili_url: str, key: str, index: str, queries: list[str]) -> list[bytes]:
    """What the catalogue search sends Meilisearch for each query (built by the same code)."""
    from shared.search import SearchParams, search_body

    return [
        post_json_request(
            meili_url, f"/indexes/{index}/search", search_body(SearchParams(q=q)), key
        )
        for q in queries
    ]


def plain_requests(meili_url: str, key: str, index: str, queries: list[str]) -> list[bytes]:
    """The engine's floor for each query: `{q, limit: 20}`, nothing else."""
    return [
        post_json_request(meili_url, f"/indexes/{index}/search", {"q": q, "limit": 20}, key)
        for q in queries
    ]


# Load --------------------------------------------------------------------------------------


def _cpu_window(pids: dict[str, int], begin: float, seconds: float) -> dict[str, float]:
    """CPU seconds (user + system) each process spent from `begin` (wall clock) on, for
    `seconds` (threads included: Meilisearch searches on several)."""
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    time.sleep(max(0.0, begin - time.time()))
    before = {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}
    time.sleep(seconds)
    return {name: sum(p.cpu_times()[:2]) - before[name] for name, p in processes.items()}


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def load_window(
    url: str,
    requests: list[bytes],
    *,
    connections: int = 16,
    processes: int = 1,
    warmup: float = 2.0,
    seconds: float = 10.0,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One measured window: `connections` keep-alive connections spread over `processes`
    generator processes; what they measured, and the CPU seconds each process in `pids` spent
    in the window."""
    start = time.time() + 1.5  # time for the children to start (they import little)
    with tempfile.TemporaryDirectory(prefix="ipx-bench-load-") as folder:
        children = []
        for p in range(processes):
            spec = Path(folder) / f"{p}.json"
            spec.write_text(
                json.dumps(
                    {
                        "url": url,
                        "requests": [r.decode("latin-1") for r in requests],
                        "connections": connections // processes + (p < connections % processes),
                        "offset": p * connections,
                        "start": start,
                        "warmup": warmup,
                        "seconds": seconds,
                    }
                )
            )
            children.append(
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("rawload.py")), str(spec)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        cpu = _cpu_window(pids or {}, start + warmup, seconds)
        loads = []
        for child in children:
            try:
                out, err = child.communicate(timeout=warmup + seconds + 60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise RuntimeError("a load generator did not finish in time") from None
            if child.returncode != 0:
                raise RuntimeError(f"the load generator failed: {err.decode()[-2000:]}")
            loads.append(json.loads(out))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "latencies": [x for one in loads for x in one["latencies"]],
        "errors": sum(one["errors"] for one in loads),
        "busy": max(one["busy"] for one in loads),
        "statuses": [one["statuses"] for one in loads],
    }


def summarise(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Latencies (ms) and throughput (requests/s) over the windows, and the CPU time each
    process spent per request (robust on a busy machine, where latencies are not)."""
    latencies = sorted(x for window in windows for x in window["latencies"])
    if not latencies:
        raise RuntimeError("no request completed")
    statuses: dict[int, int] = {}
    cpu: dict[str, float] = {}
    for window in windows:
        for one in window["statuses"]:
            for status, n in one.items():
                statuses[int(status)] = statuses.get(int(status), 0) + n
        for name, used in window["cpu"].items():
            cpu[name] = cpu.get(name, 0.0) + used
    return {
        "requests": len(latencies),
        "cpu_ms_per_request": {k: v * 1000 / len(latencies) for k, v in cpu.items()},
        "errors": sum(window["errors"] for window in windows),
        "generator_busy": max(window["busy"] for window in windows),
        "statuses": statuses,
        "throughput": len(latencies) / sum(window["seconds"] for window in windows),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def load(url: str, requests: list[bytes], **options: Any) -> dict[str, Any]:
    """One window, summarised (the options of load_window)."""
    return summarise([load_window(url, requests, **options)])


# The scenario -----------------------------------------------------------------------------


def search_as_a_client(url: str, q: str, attempts: int = 3) -> tuple[httpx.Response, int]:
    """A search as the API asks clients to: a 503 is retried after its Retry-After (at most
    `attempts` requests). Returns the answer and how many 503s came first (reported, not hidden)."""
    response, retried = httpx.get(url, params={"q": q}, timeout=10), 0
    while response.status_code == 503 and retried < attempts - 1:
        time.sleep(float(response.headers.get("Retry-After", "1")))
        response, retried = httpx.get(url, params={"q": q}, timeout=10), retried + 1
    return response, retried


def publish(stack: Stack, listings: int) -> dict[str, Any]:
    """`listings` rows of the real records published through listing's import and indexed:
    how many (the records hold a few duplicate rights), how long the import took, how long
    until every listing was searchable (from the import's start: the indexer tails the feed
    while the import runs), and the disk each store used for them."""
    seller, _ = signup(stack, HOLDER)
    meili_before = meili_used_bytes(stack)
    began = time.perf_counter()
    report, import_s = publish_import(stack, import_csv(listings, HOLDER), seller)
    created = int(report.get("created") or 0)
    if created < listings * 0.99:
        raise RuntimeError(f"the import published {created} of {listings}: {report}")
    wait_caught_up(stack, created)
    searchable_s = time.perf_counter() - began
    return {
        "published": created,
        "import_s": round(import_s, 2),
        "searchable_s": round(searchable_s, 2),
        "indexed_per_s": round(created / searchable_s, 1),
        "disk_mb": {
            "postgresql": round(database_bytes(stack) / MB, 1),
            "meilisearch": round((meili_used_bytes(stack) - meili_before) / MB, 1),
        },
    }


def run(
    stack: Stack,
    listings: int = 10_000,
    *,
    queries: int = 60,
    connections: int = 16,
    warmup: float = 1.0,
    seconds: float = 12.0,
    rounds: int = 4,
) -> dict[str, Any]:
    """On a stack running listing, matching and gateway: publish `listings`, then raw
    Meilisearch (one and two generator processes), gateway and matching, in turn; ratios of
    each to raw."""
    pids = {"meilisearch": stack.infra.meili.process.pid}
    pids |= {name: stack.pid(name) for name in stack.services}
    with RssSampler(pids, interval=0.5) as rss:
        result = _publish_and_load(stack, listings, queries, connections, warmup, seconds, rounds)
    # Meilisearch serves the whole run (every scenario's index): its peak is the run's so far.
    result["peak_rss_mb"] = {name: round(rss.peak(name) / MB, 1) for name in pids}
    return result


def _publish_and_load(
    stack: Stack,
    listings: int,
    queries: int,
    connections: int,
    warmup: float,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    build = publish(stack, listings)
    published = build["published"]
    texts = queries_from_titles(queries, listings)
    gateway_url, matching_url = stack.url("gateway"), stack.url("matching")
    raw = raw_requests(stack.meili_url, stack.master_key, stack.index, texts)
    plain = plain_requests(stack.meili_url, stack.master_key, stack.index, texts)
    gateway = [get_request(gateway_url, "/v1/catalogue/search", {"q": q}) for q in texts]
    matching = [get_request(matching_url, "/v1/search", {"q": q}) for q in texts]
    # Every query finds something, and the gateway answers what matching answers.
    unavailable = 0
    for q in texts:
        via_gateway, retried = search_as_a_client(f"{gateway_url}/v1/catalogue/search", q)
        unavailable += retried
        via_matching, retried = search_as_a_client(f"{matching_url}/v1/search", q)
        unavailable += retried
        if via_gateway.status_code != 200 or via_gateway.json() != via_matching.json():
            logs = "".join(
                f"\n--- {name} log (end)\n" + stack.log(name).read_text()[-2000:]
                for name in ("gateway", "matching")
            )
            raise RuntimeError(
                f"gateway and matching differ for {q!r}: {via_gateway.text[:300]}{logs}"
            )
        if not via_gateway.json()["total"]:
            raise RuntimeError(f"no result for {q!r}")
    pids = {
        "meilisearch": stack.infra.meili.process.pid,
        "gateway": stack.pid("gateway"),
        "matching": stack.pid("matching"),
    }
    options: dict[str, Any] = {
        "connections": connections,
        "warmup": warmup,
        "pids": pids,
    }
    targets: dict[str, tuple[str, list[bytes], int]] = {
        "plain": (stack.meili_url, plain, 1),
        "raw": (stack.meili_url, raw, 1),
        "raw_two_generators": (stack.meili_url, raw, 2),
        "gateway": (gateway_url, gateway, 1),
        "matching": (matching_url, matching, 1),
    }
    # Short windows taken in turn, `rounds` times: the other load on a shared machine drifts,
    # and one long window per target would lay that drift on the ratios. Windows of 2.5 s at
    # least (a short run takes fewer rounds).
    rounds = max(1, min(rounds, int(seconds / 2.5)))
    options["seconds"] = seconds / rounds
    windows: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, requests, processes) in targets.items():
            windows[name].append(load_window(url, requests, processes=processes, **options))
    results = {name: summarise(found) for name, found in windows.items()}
    ratios = against(results, "raw")
    plain_ratios = against(results, "plain")
    gateway_ratios, gateway_plain = ratios["gateway"], plain_ratios["gateway"]
    return {
        "scenario": "catalogue search, distinct queries",
        "listings": published,
        "build": build,
        "queries": len(texts),
        # 503s (with Retry-After) answered to the check before the load, then retried.
        "unavailable_before_load": unavailable,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "results": results,
        "ratios": ratios,  # against the same body (raw)
        "plain_ratios": plain_ratios,  # against the plain query
        "targets": TARGETS,
        "plain_targets": PLAIN_TARGETS,
        "met": {
            "p50": gateway_ratios["p50"] <= TARGETS["p50"],
            "p99": gateway_ratios["p99"] <= TARGETS["p99"],
            "throughput": gateway_ratios["throughput"] >= TARGETS["throughput"],
        },
        "met_plain": {
            "p99": gateway_plain["p99"] <= PLAIN_TARGETS["p99"],
            "throughput": gateway_plain["throughput"] >= PLAIN_TARGETS["throughput"],
        },
        # Below 0.9, two generator processes pushed raw Meilisearch harder than one: the
        # single generator was the bottleneck.
        "generator_check": results["raw"]["throughput"]
        / results["raw_two_generators"]["throughput"],
    }


def against(results: dict[str, dict[str, Any]], base_name: str) -> dict[str, dict[str, float]]:
    """Each target's p50/p95/p99 and throughput as a ratio of `base_name`'s."""
    base = results[base_name]
    return {
        name: {
            "p50": r["p50_ms"] / base["p50_ms"],
            "p95": r["p95_ms"] / base["p95_ms"],
            "p99": r["p99_ms"] / base["p99_ms"],
            "throughput": r["throughput"] / base["throughput"],
        }
        for name, r in results.items()
        if name != base_name
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"catalogue search: {result['listings']:,} listings, {result['queries']} distinct "
        f"queries, {result['connections']} connections, {result['seconds']:.0f} s each",
        f"{'target':<20}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'x p50':>8}{'x p99':>8}{'x req/s':>9}   CPU ms per request: meili, gateway, "
        "matching; generator busy  (x: against the same body, raw)",
    ]
    for name, r in result["results"].items():
        ratio = result["ratios"].get(name)
        tail = (
            f"{ratio['p50']:>8.2f}{ratio['p99']:>8.2f}{ratio['throughput']:>9.2f}"
            if ratio
            else f"{'':>25}"
        )
        cpu = r.get("cpu_ms_per_request", {})
        lines.append(
            f"{name:<20}{r['throughput']:>9.0f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['errors']:>8}{tail}   "
            + " ".join(f"{cpu.get(k, 0):6.2f}" for k in ("meilisearch", "gateway", "matching"))
            + f"  {r['generator_busy']:.0%}"
        )
    met = result["met"]
    plain = result["plain_ratios"]["gateway"]
    lines.append(
        f"gateway against the plain query: p50 {plain['p50']:.2f}x, p99 {plain['p99']:.2f}x, "
        f"req/s {plain['throughput']:.2f}x; targets: "
        + ", ".join(
            f"{k} {'met' if ok else 'MISSED'} ({'<=' if k != 'throughput' else '>='}"
            f" {result['plain_targets'][k]}x)"
            for k, ok in result["met_plain"].items()
        )
    )
    lines.append(
        "targets (gateway/raw): "
        + ", ".join(
            f"{k} {'met' if ok else 'MISSED'} ({'<=' if k != 'throughput' else '>='}"
            f" {result['targets'][k]}x)"
            for k, ok in met.items()
        )
    )
    build = result["build"]
    lines.append(
        f"built: import {build['import_s']:.1f} s, all searchable after {build['searchable_s']:.1f}"
        f" s ({build['indexed_per_s']:,.0f} listings/s); disk "
        + ", ".join(f"{k} {v:,.0f} MB" for k, v in build["disk_mb"].items())
        + "; peak RSS "
        + ", ".join(f"{k} {v:,.0f} MB" for k, v in result["peak_rss_mb"].items())
    )
    lines.append(
        f"generator check: raw with one generator process / two = "
        f"{result['generator_check']:.2f} (about 1, and the generator well below 100 % busy: "
        "it is not the bottleneck)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0, help="per window")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured, per target")
    parser.add_argument("--rounds", type=int, default=4, help="windows per target, in turn")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack(("listing", "matching", "gateway")) as stack:
        result = run(
            stack,
            args.listings,
            queries=args.queries,
            connections=args.connections,
            warmup=args.warmup,
            seconds=args.seconds,
            rounds=args.rounds,
        )
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
