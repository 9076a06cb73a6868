"""ETags and If-Match (shared/etags.py), as every update reads them."""

from __future__ import annotations

import pytest

from shared.errors import UnprocessableEntity
from shared.etags import etag, parse_if_match


def test_an_etag_reads_back_as_its_version() -> None:
    assert etag(3) == '"3"'
    for written in ('"3"', 'W/"3"', "3", ' "3" '):
        assert parse_if_match(written, "listing") == 3
    assert parse_if_match(None, "listing") is None


@pytest.mark.parametrize("written", ['"three"', '"1234567890"', "*", ""])
def test_anything_else_is_a_422_naming_if_match(written: str) -> None:
    with pytest.raises(UnprocessableEntity) as refused:
        parse_if_match(written, "demand")
    [error] = refused.value.errors or []
    assert (error.field, error.rule) == ("If-Match", "etag_format")
    assert "ETag of the demand" in error.message
