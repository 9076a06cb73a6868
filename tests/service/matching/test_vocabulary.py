"""The catalogue vocabulary, built from a real Meilisearch index and built again as it grows."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from infra.meili import MeiliHandle
from services.matching import vocabulary
from services.matching.meili import MeiliClient
from services.matching.vocabulary import CatalogueVocabulary


@pytest.fixture
async def client(meili: MeiliHandle, meili_key: str) -> AsyncIterator[MeiliClient]:
    async with httpx.AsyncClient(headers={"Accept-Encoding": "identity"}, timeout=30) as http:
        yield MeiliClient(http, meili.url, meili_key)


def documents(start: int, count: int, title: str) -> list[dict[str, object]]:
    return [
        {"id": f"d{i}", "asset_id": f"a{i}", "title_zh": f"{title}{i}", "abstract_zh": "一种方法"}
        for i in range(start, start + count)
    ]


async def test_the_vocabulary_counts_the_catalogue_and_follows_its_growth(
    client: MeiliClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = f"vocabulary_{secrets.token_hex(4)}"
    catalogue = CatalogueVocabulary(client, uid)
    empty = await catalogue.get()  # no index yet: every word alike, and no error
    assert empty.documents == 0

    await client.wait_task(await client.create_index(uid, "id"))
    await client.wait_task(await client.add_documents(uid, documents(0, 10, "光波导显示")))
    monkeypatch.setattr(vocabulary, "CHECK_SECONDS", 0.0)
    ten = await catalogue.get()
    assert ten.documents == 10
    assert ten.document_frequency("光波") == 10 and ten.document_frequency("方法") == 10
    assert ten.idf("声纹") > ten.idf("光波")

    # A few more documents: the table at hand serves; half as many again: built anew.
    await client.wait_task(await client.add_documents(uid, documents(10, 2, "声纹识别")))
    assert await catalogue.get() is ten
    await client.wait_task(await client.add_documents(uid, documents(12, 8, "声纹识别")))
    twenty = await catalogue.get()
    assert twenty.documents == 20 and twenty.document_frequency("声纹") == 10
    assert twenty.weight("声") == pytest.approx(twenty.idf("声") * vocabulary.CHARACTER_SHARE)

    # The catalogue's answer is cached for CHECK_SECONDS: no request within it.
    monkeypatch.setattr(vocabulary, "CHECK_SECONDS", 3600.0)
    await client.wait_task(await client.delete_index(uid))
    assert await catalogue.get() is twenty
