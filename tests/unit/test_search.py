"""Catalogue search's paging and totals (shared/search.py), without an engine."""

from __future__ import annotations

import pytest

from shared.schemas import decode_page_token
from shared.search import (
    MAX_HITS,
    SearchParams,
    count_body,
    next_page_token,
    read_total,
    search_body,
)


@pytest.mark.parametrize(
    ("offset", "page_size", "returned", "estimate", "expected"),
    [
        (0, 20, 7, 9, (7, "eq")),  # a short first page is every result
        (40, 20, 5, 80, (45, "eq")),  # a short later page ends the results
        (0, 20, 20, 1049, (1049, "about")),  # a full page: the estimate
        (0, 20, 20, 15, (20, "about")),  # never below what was seen
        (0, 20, 20, MAX_HITS, (MAX_HITS, "gte")),  # counts stop at MAX_HITS
        (60, 20, 0, 70, (70, "about")),  # an empty page past the end: the caller counts it
    ],
)
def test_totals_read_from_a_page(
    offset: int, page_size: int, returned: int, estimate: int, expected: tuple[int, str]
) -> None:
    assert read_total(offset, page_size, returned, estimate) == expected


def test_default_searches_page_by_offset_and_counts_only_when_asked() -> None:
    params = SearchParams(q="锂离子电池", page=3, page_size=20, offset=40)
    body = search_body(params)
    assert (body["offset"], body["limit"]) == (40, 20)
    assert "page" not in body and "hitsPerPage" not in body
    count = count_body(params)
    assert (count["page"], count["hitsPerPage"], count["distinct"]) == (1, 0, "asset_id")
    assert count["filter"] == body["filter"] and count["facets"] == body["facets"]


def test_page_tokens_stop_at_the_end_and_at_the_bound() -> None:
    params = SearchParams(q="显示", page_size=20, offset=40)
    token = next_page_token(params, returned=20, total=1000)
    position = decode_page_token(token, "offset", "query")
    assert position is not None and position["offset"] == 60
    assert next_page_token(params, returned=12, total=1000) == ""  # a short page
    assert next_page_token(params, returned=20, total=60) == ""  # the last one
    deepest = SearchParams(q="显示", page_size=20, offset=MAX_HITS - 20)
    assert next_page_token(deepest, returned=20, total=MAX_HITS) == ""
    other = next_page_token(SearchParams(q="显示", sort="newest", offset=40), 20, 1000)
    assert decode_page_token(other, "query") != position  # tied to the order too
