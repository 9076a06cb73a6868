"""Unit tests for shared.identifiers: real numbers pass, near-misses fail with the right rule.

Real data lives in tests/data/identifiers/ (see the README there for where each file came from).
"""

from __future__ import annotations

import csv
import pickle
import re
from collections.abc import Callable
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any, get_args

import pytest

import shared.identifiers as identifiers
from shared.identifiers import (
    ASSET_KINDS,
    RULES,
    AssetKind,
    IdentifierError,
    cn_application_check_char,
    cn_application_kind_digit,
    expiry_date,
    ipc_prefixes,
    looks_like_identifier,
    normalize_cn_application_number,
    normalize_cn_publication_number,
    normalize_full_width,
    normalize_identifier,
    normalize_ipc,
    normalize_locarno,
    region_province,
    validate_nice_class,
    validate_region_code,
    validate_uscc,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "identifiers"
SOURCES = {"cn_vr_patentics.csv", "cn_cambricon_patentics.jsonl", "cn_iflytek_incopat.jsonl.gz"}
PATENT_KINDS = ("invention_patent", "utility_model", "design_patent")


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


APPLICATIONS = _rows("cn_applications.csv")
IPC_ROWS = _rows("ipc_codes.csv")


def _rejects(func: Callable[..., Any], *args: Any, rule: str, **kwargs: Any) -> IdentifierError:
    """Call ``func`` and assert it raises IdentifierError with ``rule`` (a declared rule)."""
    assert rule in RULES
    with pytest.raises(IdentifierError) as info:
        func(*args, **kwargs)
    assert info.value.rule == rule, info.value
    assert info.value.rule in RULES
    assert info.value.message
    return info.value


def _body(number: str) -> tuple[str, str]:
    """Split a CN application number as in the data ("CN201710601862.3") into body, check."""
    body, check = number.removeprefix("CN").split(".")
    return body, check


def _kind_position(body: str) -> int:
    return 4 if len(body) == 12 else 2


# --------------------------------------------------------------------------------------------
# Module surface, error type
# --------------------------------------------------------------------------------------------


def test_public_api_is_declared() -> None:
    for name in identifiers.__all__:
        assert hasattr(identifiers, name), name
    assert get_args(AssetKind) == ASSET_KINDS
    assert len(ASSET_KINDS) == 9


def test_identifier_error_carries_field_rule_message() -> None:
    error = IdentifierError("uscc", "uscc_length", "a unified social credit code has 18 ...")
    assert isinstance(error, ValueError)
    assert (error.field, error.rule, error.message) == (
        "uscc",
        "uscc_length",
        "a unified social credit code has 18 ...",
    )
    assert "uscc_length" in str(error) and "uscc" in str(error)
    moved = error.at("seller.uscc")
    assert (moved.field, moved.rule, moved.message) == ("seller.uscc", error.rule, error.message)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.rule, copy.message) == (error.field, error.rule, error.message)


# --------------------------------------------------------------------------------------------
# Full-width clean-up
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("２０１７１０６０１８６２．３", "201710601862.3"),
        ("ＣＮ２０１７", "CN2017"),
        ("ｚｌ", "zl"),
        ("  H01M\u300010/0525 ", "H01M 10/0525"),
        ("１４－０２", "14-02"),
        ("201710601862。3", "201710601862.3"),
        ("ascii stays", "ascii stays"),
        ("中文不变", "中文不变"),
    ],
)
def test_normalize_full_width(raw: str, expected: str) -> None:
    assert normalize_full_width(raw) == expected


# --------------------------------------------------------------------------------------------
# CN application numbers: worked examples and typed forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "check"),
    [
        ("201710601862.3", "3"),
        ("200710308494.X", "X"),
        ("95115608.X", "X"),
        ("97101765.4", "4"),
    ],
)
def test_worked_examples_pass(number: str, check: str) -> None:
    body = number.split(".")[0]
    assert cn_application_check_char(body) == check
    assert normalize_cn_application_number(number) == number


def test_check_char_is_remainder_not_eleven_minus_remainder() -> None:
    # 2*2+0*3+1*4+7*5+1*6+0*7+6*8+0*9+1*2+8*3+6*4+2*5 = 157; 157 mod 11 = 3 (11-3 would be 8).
    assert cn_application_check_char("201710601862") == "3"
    _rejects(normalize_cn_application_number, "201710601862.8", rule="cn_patent_check_digit")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("CN201710601862.3", "201710601862.3"),
        ("ZL201710601862.3", "201710601862.3"),
        ("ZL 2017 1 0601862.3", "201710601862.3"),
        ("2017106018623", "201710601862.3"),
        ("２０１７１０６０１８６２.３", "201710601862.3"),
        ("２０１７１０６０１８６２．３", "201710601862.3"),
        ("200710308494.x", "200710308494.X"),
        ("cn200710308494x", "200710308494.X"),
        (" CN 95115608.X ", "95115608.X"),
        ("ZL97101765.4", "97101765.4"),
        ("971017654", "97101765.4"),
    ],
)
def test_typed_forms_normalise(typed: str, expected: str) -> None:
    assert normalize_cn_application_number(typed) == expected
    # idempotent
    assert normalize_cn_application_number(expected) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("201710601862.4", "cn_patent_check_digit"),  # wrong check digit
        ("201710601863.3", "cn_patent_check_digit"),  # one digit off
        ("201710601682.3", "cn_patent_check_digit"),  # adjacent digits swapped
        ("200710308494.0", "cn_patent_check_digit"),  # X expected
        ("95115608.0", "cn_patent_check_digit"),
        ("97101765.X", "cn_patent_check_digit"),
        ("20171060186.3", "cn_patent_format"),  # 11 digits
        ("2017106018622.3", "cn_patent_format"),  # 13 digits
        ("9710176.4", "cn_patent_format"),  # 7 digits
        ("201710601862", "cn_patent_format"),  # check character missing
        ("97101765", "cn_patent_format"),
        ("2017106O1862.3", "cn_patent_format"),  # letter O for zero
        ("201710601862.Y", "cn_patent_format"),  # check must be 0-9 or X
        ("201710601862..3", "cn_patent_format"),
        ("US201710601862.3", "cn_patent_format"),
        ("WOCN19082039", "cn_patent_format"),  # PCT number from the iFlytek data
        ("", "cn_patent_format"),
        ("二〇一七", "cn_patent_format"),
    ],
)
def test_application_number_near_misses(raw: str, rule: str) -> None:
    _rejects(normalize_cn_application_number, raw, rule=rule)


def test_application_year_and_kind_digit_rules() -> None:
    # Bodies with a correct check character, so only the year / kind rule can fail.
    for body, rule in [
        ("199810601862", "cn_patent_year"),  # 12-digit form began in 2003
        ("200210601862", "cn_patent_year"),
        ("21101765", "cn_patent_year"),  # 8-digit form: 1985-2003 only
        ("84101765", "cn_patent_year"),
        ("201740601862", "cn_patent_kind_digit"),  # kind digit 4 does not exist
        ("201700601862", "cn_patent_kind_digit"),
        ("97501765", "cn_patent_kind_digit"),
    ]:
        number = f"{body}.{cn_application_check_char(body)}"
        error = _rejects(normalize_cn_application_number, number, rule=rule)
        assert error.field == "identifier"
    # the year boundaries themselves are fine
    for body in ("200310117077", "85100001", "03153203"):
        number = f"{body}.{cn_application_check_char(body)}"
        assert normalize_cn_application_number(number) == number


def test_check_digit_message_names_the_rule() -> None:
    error = _rejects(
        normalize_cn_application_number, "200710308494.3", rule="cn_patent_check_digit"
    )
    assert error.message == "check digit is 3, expected X (CNIPA mod-11 rule)"
    assert error.field == "identifier"


@pytest.mark.parametrize(
    "digits", ["", "1234567", "1234567890123", "20171060186a", "２０１７１０６０"]
)
def test_check_char_needs_8_or_12_ascii_digits(digits: str) -> None:
    _rejects(cn_application_check_char, digits, rule="cn_patent_format")


@pytest.mark.parametrize(
    ("number", "digit"),
    [
        ("201710601862.3", "1"),
        ("CN202123402459.9", "2"),
        ("CN02300872.5", "3"),
        ("CN03826012.3", "8"),
        ("97101765.4", "1"),
    ],
)
def test_kind_digit(number: str, digit: str) -> None:
    assert cn_application_kind_digit(number) == digit


# --------------------------------------------------------------------------------------------
# CN application numbers: real data
# --------------------------------------------------------------------------------------------


def test_sample_is_real_and_covers_every_form() -> None:
    assert len(APPLICATIONS) == 300
    assert {row["source"] for row in APPLICATIONS} == SOURCES
    assert len({row["application_number"] for row in APPLICATIONS}) == 300
    bodies = [_body(row["application_number"])[0] for row in APPLICATIONS]
    assert {len(b) for b in bodies} == {8, 12}
    assert {b[_kind_position(b)] for b in bodies} == {"1", "2", "3", "8", "9"}
    assert {row["kind"] for row in APPLICATIONS} == set(PATENT_KINDS)
    assert any(row["application_number"].endswith("X") for row in APPLICATIONS)
    kind_codes = {re.sub(r"^CN\d+", "", row["publication_number"]) for row in APPLICATIONS}
    assert kind_codes == {"A", "B", "U", "Y", "S", "D"}


def test_every_real_application_number_passes() -> None:
    failures = []
    for row in APPLICATIONS:
        number, kind = row["application_number"], row["kind"]
        expected = number.removeprefix("CN")
        try:
            assert normalize_cn_application_number(number) == expected
            assert normalize_identifier(kind, number) == expected
            assert normalize_identifier(kind, f"ZL{expected}") == expected
        except (IdentifierError, AssertionError) as exc:
            failures.append((number, kind, exc))
    assert failures == []


def test_every_real_application_number_fails_for_the_other_patent_kinds() -> None:
    for row in APPLICATIONS:
        for other in PATENT_KINDS:
            if other != row["kind"]:
                _rejects(
                    normalize_identifier,
                    other,
                    row["application_number"],
                    rule="cn_patent_kind_mismatch",
                )


def test_flipping_any_digit_of_a_real_number_is_rejected() -> None:
    """Every single-digit change of every sample number is caught, and not vacuously.

    The weights (2..9, 2..5) and a digit change (1..9) are all non-zero mod the prime 11, so the
    check sum always moves: the recomputed check differs for every mutation, and each mutated
    number is rejected. Recomputing the check for the mutated body makes it pass again, which
    shows the rejection comes from the check rule and not from some other accident.
    """
    mutations = detected = 0
    for row in APPLICATIONS:
        body, check = _body(row["application_number"])
        kind_position = _kind_position(body)
        year_positions = range(kind_position)
        for position, original in enumerate(body):
            for digit in "0123456789":
                if digit == original:
                    continue
                mutated = body[:position] + digit + body[position + 1 :]
                mutations += 1
                if cn_application_check_char(mutated) == check:
                    continue  # never happens with mod 11; counted below
                detected += 1
                with pytest.raises(IdentifierError) as info:
                    normalize_cn_application_number(f"CN{mutated}.{check}")
                if position in year_positions or position == kind_position:
                    assert info.value.rule in {
                        "cn_patent_check_digit",
                        "cn_patent_year",
                        "cn_patent_kind_digit",
                    }
                else:
                    assert info.value.rule == "cn_patent_check_digit"
                    assert info.value.message.startswith(f"check digit is {check}, expected ")
                    fixed = f"{mutated}.{cn_application_check_char(mutated)}"
                    assert normalize_cn_application_number(fixed) == fixed
    assert mutations > 30_000
    assert detected == mutations


def test_changing_the_check_character_of_a_real_number_is_rejected() -> None:
    for row in APPLICATIONS:
        body, check = _body(row["application_number"])
        for other in "0123456789X":
            if other != check:
                _rejects(
                    normalize_cn_application_number,
                    f"{body}.{other}",
                    rule="cn_patent_check_digit",
                )


def test_swapping_adjacent_digits_of_a_real_number_is_rejected() -> None:
    swaps = 0
    for row in APPLICATIONS:
        body, check = _body(row["application_number"])
        kind_position = _kind_position(body)
        for i in range(kind_position + 1, len(body) - 1):
            if body[i] == body[i + 1]:
                continue
            swapped = body[:i] + body[i + 1] + body[i] + body[i + 2 :]
            swaps += 1
            _rejects(
                normalize_cn_application_number, f"{swapped}.{check}", rule="cn_patent_check_digit"
            )
    assert swaps > 1000


def test_real_publication_numbers_normalise() -> None:
    for row in APPLICATIONS:
        publication = row["publication_number"]
        assert normalize_cn_publication_number(publication) == publication
        spaced = f"{publication[:2]} {publication[2:-1].lower()} {publication[-1].lower()}"
        assert normalize_cn_publication_number(spaced) == publication


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CN112597341A", "CN112597341A"),
        ("cn 216391212 u", "CN216391212U"),
        ("ＣＮ１７４５３６０Ａ", "CN1745360A"),
        ("112597341A", "CN112597341A"),
        ("CN112597341A8", "CN112597341A8"),
        ("CN107295441B9", "CN107295441B9"),
        ("CN1011234567C3", None),
        ("CN100123456C", "CN100123456C"),
        ("CN201234567Y", "CN201234567Y"),
        ("CN301234567S9", "CN301234567S9"),
        ("CN3247966D", "CN3247966D"),
    ],
)
def test_publication_numbers(raw: str, expected: str | None) -> None:
    if expected is None:
        _rejects(normalize_cn_publication_number, raw, rule="cn_publication_format")
    else:
        assert normalize_cn_publication_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("CN11259734A", "cn_publication_format"),  # 8 digits
        ("CN1125973411A", "cn_publication_format"),  # 10 digits
        ("CN112597341", "cn_publication_format"),  # kind code missing
        ("CN112597341A10", "cn_publication_format"),
        ("CN112597341.A", "cn_publication_format"),
        ("WO2019218809A1", "cn_publication_format"),  # real WO number from the iFlytek data
        ("CN201710601862.3", "cn_publication_format"),  # an application number
        ("CN112597341E", "cn_publication_kind_code"),
        ("CN112597341C8", "cn_publication_kind_code"),
        ("CN216391212Y8", "cn_publication_kind_code"),
        ("CN216391212U1", "cn_publication_kind_code"),
    ],
)
def test_publication_number_near_misses(raw: str, rule: str) -> None:
    _rejects(normalize_cn_publication_number, raw, rule=rule)


# --------------------------------------------------------------------------------------------
# Search: does a query look like an identifier?
# --------------------------------------------------------------------------------------------


def test_real_numbers_look_like_identifiers_with_the_right_kind() -> None:
    for row in APPLICATIONS:
        number, kind = row["application_number"], row["kind"]
        assert looks_like_identifier(number) == (kind, number.removeprefix("CN"))
        assert looks_like_identifier(row["publication_number"]) == (
            kind,
            row["publication_number"],
        )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ZL 2017 1 0601862.3", ("invention_patent", "201710601862.3")),
        ("２０１７１０６０１８６２.３", ("invention_patent", "201710601862.3")),
        ("2017106018623", ("invention_patent", "201710601862.3")),
        ("200710308494.x", ("invention_patent", "200710308494.X")),
        ("97101765.4", ("invention_patent", "97101765.4")),
        ("CN971017654", ("invention_patent", "97101765.4")),
        ("cn216391212u", ("utility_model", "CN216391212U")),
        ("CN112597341", ("patent", "CN112597341")),
        ("CN1745360", ("patent", "CN1745360")),
        ("CN112597341A9", ("invention_patent", "CN112597341A9")),
    ],
)
def test_looks_like_identifier(query: str, expected: tuple[str, str]) -> None:
    assert looks_like_identifier(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "虚拟现实 头戴显示",
        "201710601862.4",  # wrong check: not an identifier, search it as text
        "CN201710601863.3",
        "12345678",  # could be a trademark number
        "971017654",  # bare 9 digits: too easily an ordinary number
        "20171060186",
        "G06F 3/01",
        "9144030071526726XG",
        "CN112597341E",
        "2017 annual report",
    ],
)
def test_looks_like_identifier_rejects(query: str) -> None:
    assert looks_like_identifier(query) is None


# --------------------------------------------------------------------------------------------
# normalize_identifier: the other kinds
# --------------------------------------------------------------------------------------------


def test_unknown_kind_is_rejected() -> None:
    error = _rejects(normalize_identifier, "patent", "201710601862.3", rule="asset_kind")
    assert error.field == "kind"


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("invention_patent", "ZL 2017 1 0601862.3", "201710601862.3"),
        ("invention_patent", "CN03826012.3", "03826012.3"),  # 8 = PCT invention
        ("utility_model", "CN202123402459.9", "202123402459.9"),
        ("utility_model", "CN02248530.9", "02248530.9"),
        ("design_patent", "CN02300872.5", "02300872.5"),
        # Trademarks: no public record set was found; numbers built by hand from the rules.
        ("trademark", "1234567", "1234567"),
        ("trademark", "12345678", "12345678"),
        ("trademark", "第12345678号", "12345678"),
        ("trademark", "１２３４５６７８", "12345678"),
        ("trademark", "1234567890", "1234567890"),  # 10 digits: room to grow
        ("trademark", "0012345", "12345"),
        ("software_copyright", "2019SR0123456", "2019SR0123456"),
        ("software_copyright", "2019sr 0123456", "2019SR0123456"),
        # Works copyright numbers as they appear in public source code comments.
        ("copyright_work", "国作登字-2021-L-00268255", "国作登字-2021-L-00268255"),
        ("copyright_work", "国作登字 — 2021 — l — 00268255", "国作登字-2021-L-00268255"),
        ("copyright_work", "国作登字－２０２１－Ｌ－００２６８２５５", "国作登字-2021-L-00268255"),
        ("copyright_work", "黔作登字-2023-A-00854088", "黔作登字-2023-A-00854088"),
        ("copyright_work", "冀作登字-2020-F-00012345", "冀作登字-2020-F-00012345"),
        # IC layout: BS.185559220 as quoted in public code; shape only.
        ("ic_layout", "BS.185559220", "BS.185559220"),
        ("ic_layout", "bs. 18555922.0", "BS.185559220"),
        ("ic_layout", "BS.18555922X", "BS.18555922X"),
        # Plant varieties: the forms quoted in IDENTIFIERS.md (no public record set found).
        ("plant_variety", "CNA20191006012", "CNA20191006012"),
        ("plant_variety", "cna 20191006012", "CNA20191006012"),
        ("plant_variety", "CNA20080376.X", "CNA20080376.X"),
        ("plant_variety", "CNA20080376x", "CNA20080376.X"),
        ("geographical_indication", "  库尔勒香梨 ", "库尔勒香梨"),
        ("geographical_indication", "Gaoyou \n  duck\u3000egg", "Gaoyou duck egg"),
        ("geographical_indication", "赵州雪花梨（河北）", "赵州雪花梨（河北）"),
    ],
)
def test_normalize_identifier(kind: str, raw: str, expected: str) -> None:
    assert normalize_identifier(kind, raw) == expected
    assert normalize_identifier(kind, expected) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "rule"),
    [
        ("invention_patent", "201720601862.9", "cn_patent_kind_mismatch"),
        ("invention_patent", "201710601862.4", "cn_patent_check_digit"),
        ("invention_patent", "WOCN19082039", "cn_patent_format"),
        ("utility_model", "201710601862.3", "cn_patent_kind_mismatch"),
        ("utility_model", "CN03826012.3", "cn_patent_kind_mismatch"),  # 8 is invention
        ("design_patent", "CN202123402459.9", "cn_patent_kind_mismatch"),
        ("design_patent", "CN112597341A", "cn_patent_format"),  # a publication number
        ("trademark", "", "trademark_format"),
        ("trademark", "12345678901", "trademark_format"),  # 11 digits
        ("trademark", "1234567A", "trademark_format"),
        ("trademark", "0", "trademark_format"),
        ("trademark", "第号", "trademark_format"),
        ("software_copyright", "2019SR", "software_copyright_format"),
        ("software_copyright", "19SR0123456", "software_copyright_format"),
        ("software_copyright", "2019RS0123456", "software_copyright_format"),
        ("software_copyright", "软著登字第1234567号", "software_copyright_format"),
        ("copyright_work", "国作登字-21-L-00268255", "copyright_work_format"),
        ("copyright_work", "国作登字-2021-L-0026825", "copyright_work_format"),  # 7 digits
        ("copyright_work", "国作登字-2021-12-00268255", "copyright_work_format"),
        ("copyright_work", "美作登字-2021-L-00268255", "copyright_work_format"),
        ("copyright_work", "2021-L-00268255", "copyright_work_format"),
        ("ic_layout", "185559220", "ic_layout_format"),
        ("ic_layout", "BS.1855", "ic_layout_format"),
        ("ic_layout", "BS.18555922Y", "ic_layout_format"),
        ("plant_variety", "CNA2019100601", "plant_variety_format"),  # 6 digits after year
        ("plant_variety", "CN20191006012", "plant_variety_format"),
        ("plant_variety", "CNA2008037.X", "plant_variety_format"),
        ("plant_variety", "CNA20080376.4", "plant_variety_check_digit"),
        ("plant_variety", "CNA20080377.X", "plant_variety_check_digit"),
        ("geographical_indication", "   ", "geographical_indication_empty"),
        ("geographical_indication", "", "geographical_indication_empty"),
    ],
)
def test_normalize_identifier_near_misses(kind: str, raw: str, rule: str) -> None:
    error = _rejects(normalize_identifier, kind, raw, rule=rule)
    assert error.field == "identifier"


def test_plant_variety_old_form_uses_the_patent_rule() -> None:
    assert cn_application_check_char("20080376") == "X"
    for position in range(8):
        for digit in "0123456789":
            body = "20080376"
            if digit == body[position]:
                continue
            mutated = body[:position] + digit + body[position + 1 :]
            _rejects(
                normalize_identifier,
                "plant_variety",
                f"CNA{mutated}.X",
                rule="plant_variety_check_digit",
            )


# --------------------------------------------------------------------------------------------
# Unified social credit code
# --------------------------------------------------------------------------------------------

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)  # IDENTIFIERS.md
USCC_EXAMPLES = ("9144030071526726XG", "914403001922038216", "91330100716105852F")


def _ref_uscc_check(first17: str) -> str:
    """Reference implementation written from the document, independent of the module."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    value = 31 - total % 31
    return USCC_CHARSET[value % 31]


def _ref_org_check(body8: str) -> str:
    values = [int(c) if c.isdigit() else ord(c) - 55 for c in body8]
    value = 11 - sum(v * w for v, w in zip(values, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


@pytest.mark.parametrize("code", USCC_EXAMPLES)
def test_uscc_examples_pass(code: str) -> None:
    assert _ref_uscc_check(code[:17]) == code[17]
    assert _ref_org_check(code[8:16]) == code[16]
    assert validate_uscc(code) == code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9144030071526726xg", "9144030071526726XG"),
        ("91 4403 0071526726 XG", "9144030071526726XG"),
        ("９１４４０３００７１５２６７２６ＸＧ", "9144030071526726XG"),
        (" 91330100716105852f\n", "91330100716105852F"),
    ],
)
def test_uscc_normalises(raw: str, expected: str) -> None:
    assert validate_uscc(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("9144030071526726X", "uscc_length"),
        ("9144030071526726XGG", "uscc_length"),
        ("", "uscc_length"),
        ("91440300715267 26X", "uscc_length"),
        ("914403007152672-XG", "uscc_charset"),
        ("9144030071526726XG".replace("0", "O", 1), "uscc_charset"),
        ("9144030071526726XZ", "uscc_charset"),
        ("9144030071526726XV", "uscc_charset"),
        ("9144030071526726XS", "uscc_charset"),
        ("9144030071526726XI", "uscc_charset"),
        ("9144030071526726XH", "uscc_check_character"),
        ("914403001922038217", "uscc_check_character"),
        ("91330100716105852E", "uscc_check_character"),
        ("91440300715267262G", "uscc_check_character"),  # one character off
    ],
)
def test_uscc_near_misses(raw: str, rule: str) -> None:
    error = _rejects(validate_uscc, raw, rule=rule)
    assert error.field == "uscc"


def test_uscc_charset_message_names_position() -> None:
    error = _rejects(validate_uscc, "9144O30071526726XG", rule="uscc_charset")
    assert "'O'" in error.message and "position 5" in error.message


def test_uscc_org_code_check() -> None:
    # Break the organisation-code check (position 17) but keep the overall check right.
    code = USCC_EXAMPLES[0]
    first16 = code[:16]
    wrong17 = "0" if code[16] != "0" else "1"
    first17 = first16 + wrong17
    broken = first17 + _ref_uscc_check(first17)
    _rejects(validate_uscc, broken, rule="uscc_org_code_check")
    # The operator override accepts it (and a code failing the overall check too)...
    assert validate_uscc(broken, allow_bad_check=True) == broken
    assert validate_uscc("9144030071526726XH", allow_bad_check=True) == "9144030071526726XH"
    # ...but never a wrong length or a forbidden character.
    _rejects(validate_uscc, "9144030071526726X", rule="uscc_length", allow_bad_check=True)
    _rejects(validate_uscc, "9144030071526726XO", rule="uscc_charset", allow_bad_check=True)


def test_every_single_character_change_of_a_uscc_is_rejected() -> None:
    # Weights 3^k mod 31 and a value change of 1..30 are non-zero mod the prime 31.
    changes = 0
    for code in USCC_EXAMPLES:
        for position in range(17):
            for char in USCC_CHARSET:
                if char == code[position]:
                    continue
                mutated = code[:position] + char + code[position + 1 :]
                changes += 1
                assert _ref_uscc_check(mutated[:17]) != mutated[17]
                _rejects(validate_uscc, mutated, rule="uscc_check_character")
    assert changes == 3 * 17 * 30


def test_a_wrong_check_character_names_the_valid_code_once() -> None:
    error = _rejects(validate_uscc, "91330100716105852E", rule="uscc_check_character")
    assert error.field == "uscc"
    assert error.message == (
        "uscc 91330100716105852E: check character (position 18) is E, expected F "
        "(91330100716105852F would be valid; GB 32100-2015 mod-31 rule, which an operator may "
        "override for a lawful early pilot-region code)"
    )
    # Normalised first: the message speaks of the code as it is stored.
    typed = _rejects(validate_uscc, "9133 0100 7161 0585 2e", rule="uscc_check_character")
    assert typed.message == error.message


def test_a_wrong_organisation_code_check_names_the_valid_code() -> None:
    # Position 17 wrong, position 18 right for the 17 characters as given.
    code = USCC_EXAMPLES[0]
    first17 = code[:16] + ("0" if code[16] != "0" else "1")
    broken = first17 + _ref_uscc_check(first17)
    error = _rejects(validate_uscc, broken, rule="uscc_org_code_check")
    assert f"organisation code check (position 17) is {broken[16]}, expected {code[16]}" in (
        error.message
    )
    assert f"({code} would be valid;" in error.message
    # Both wrong: both named, and the code with both corrected.
    error = _rejects(validate_uscc, "91110108MA01ABCDE3", rule="uscc_check_character")
    assert error.message.startswith(
        "uscc 91110108MA01ABCDE3: organisation code check (position 17) is E, expected 5; "
        "check character (position 18) is 3, expected T (91110108MA01ABCD5T would be valid;"
    )
    assert validate_uscc("91110108MA01ABCD5T") == "91110108MA01ABCD5T"


def test_every_proposed_uscc_is_valid_and_said_once() -> None:
    for code in USCC_EXAMPLES:
        for position in range(18):
            for char in USCC_CHARSET:
                if char == code[position]:
                    continue
                mutated = code[:position] + char + code[position + 1 :]
                with pytest.raises(IdentifierError) as info:
                    validate_uscc(mutated)
                error = info.value
                proposed = re.findall(r"([0-9A-Z]{18}) would be valid", error.message)
                assert len(proposed) == 1, error.message
                assert validate_uscc(proposed[0]) == proposed[0]
                assert proposed[0][:16] == mutated[:16]  # only check characters change
                assert error.message.count(proposed[0]) == 1
                assert error.message.count("would be valid") == 1
                assert error.message.startswith(f"uscc {mutated}: ")


# --------------------------------------------------------------------------------------------
# IPC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("H01M10/0525", "H01M 10/0525"),
        ("H01M  10/0525", "H01M 10/0525"),
        ("G06F  3/01", "G06F 3/01"),
        ("H01M 10/0525 (2006.01)", "H01M 10/0525"),
        ("H01M10/0525(2006.01)", "H01M 10/0525"),
        ("H04L29/06(2006.01)I", "H04L 29/06"),
        ("h01m 10/0525", "H01M 10/0525"),
        ("Ｇ０６Ｆ　３／０１", "G06F 3/01"),
        ("G06F 0003/01", "G06F 3/01"),
        ("C07D 401/04", "C07D 401/04"),
        ("A01B 1/00", "A01B 1/00"),
        ("G06F 16/783", "G06F 16/783"),
        ("G06T 19/006", "G06T 19/006"),
        ("B01D 1234/123456", "B01D 1234/123456"),
    ],
)
def test_normalize_ipc(raw: str, expected: str) -> None:
    assert normalize_ipc(raw) == expected
    assert normalize_ipc(expected) == expected


def test_real_ipc_strings_normalise() -> None:
    assert len(IPC_ROWS) > 100
    raws = [row["raw"] for row in IPC_ROWS]
    assert any("  " in raw for raw in raws)  # padded Patentics form: "G06F  3/01"
    assert any(" " not in raw for raw in raws)  # incoPat form: "H04R1/28"
    for raw in raws:
        compact = re.sub(r"\s+", "", raw)
        assert normalize_ipc(raw) == f"{compact[:4]} {compact[4:]}", raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "I01M 10/0525",  # section I does not exist
        "H1M 10/0525",  # one-digit class
        "H01 10/0525",  # no subclass letter
        "H01M 10/5",  # one-digit subgroup
        "H01M 10/0525678",  # seven-digit subgroup
        "H01M 12345/00",  # five-digit main group
        "H01M 0/00",
        "H01M 10",
        "H01M 10/",
        "H01M",
        "H01M-10/0525",
        "H01M 10/0525 (2006)",
        "G06F 3/01 | G06F 3/048",
    ],
)
def test_ipc_near_misses(raw: str) -> None:
    error = _rejects(normalize_ipc, raw, rule="ipc_format")
    assert error.field == "ipc"


def test_ipc_error_can_be_rehomed() -> None:
    with pytest.raises(IdentifierError) as info:
        normalize_ipc("X99")
    moved = info.value.at("classifications.ipc[0]")
    assert (moved.field, moved.rule) == ("classifications.ipc[0]", "ipc_format")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("H01M 10/0525", ["H", "H01", "H01M", "H01M 10/00", "H01M 10/0525"]),
        ("G06F  3/01", ["G", "G06", "G06F", "G06F 3/00", "G06F 3/01"]),
        ("G06F 3/00", ["G", "G06", "G06F", "G06F 3/00"]),
        ("C07D 401/04 (2006.01)", ["C", "C07", "C07D", "C07D 401/00", "C07D 401/04"]),
    ],
)
def test_ipc_prefixes(code: str, expected: list[str]) -> None:
    assert ipc_prefixes(code) == expected


def test_ipc_prefixes_of_real_codes_are_nested() -> None:
    for row in IPC_ROWS:
        prefixes = ipc_prefixes(row["raw"])
        assert prefixes[-1] == normalize_ipc(row["raw"])
        assert len(prefixes) == len(set(prefixes))
        for broader, narrower in pairwise(prefixes[:4]):
            assert narrower.startswith(broader)


# --------------------------------------------------------------------------------------------
# Nice and Locarno
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (9, 9), (34, 34), (35, 35), (45, 45), ("09", 9), ("９", 9), (" 42 ", 42)],
)
def test_nice_class(value: int | str, expected: int) -> None:
    assert validate_nice_class(value) == expected


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "nice_class_range"),
        (46, "nice_class_range"),
        (-1, "nice_class_range"),
        ("46", "nice_class_range"),
        ("00", "nice_class_range"),
        ("", "nice_class_format"),
        ("4.5", "nice_class_format"),
        ("-3", "nice_class_format"),
        ("nine", "nice_class_format"),
        (True, "nice_class_format"),
    ],
)
def test_nice_class_near_misses(value: int | str, rule: str) -> None:
    _rejects(validate_nice_class, value, rule=rule)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8-05", "8-05"),
        ("08-05", "8-05"),
        ("8.5", "8-05"),
        ("8-5", "8-05"),
        ("08.05", "8-05"),
        ("1-04", "1-04"),
        ("14-02", "14-02"),
        ("１４－０２", "14-02"),
        ("LOC(12) Cl. 08-05", "8-05"),
        ("LOC (13) Cl.14-02", "14-02"),
        ("Cl. 1-04", "1-04"),
        ("32-00", "32-00"),
        ("12-99", "12-99"),
    ],
)
def test_normalize_locarno(raw: str, expected: str) -> None:
    assert normalize_locarno(raw) == expected
    assert normalize_locarno(expected) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("33-01", "locarno_class_range"),
        ("0-05", "locarno_class_range"),
        ("99-00", "locarno_class_range"),
        ("8", "locarno_format"),
        ("8-123", "locarno_format"),
        ("8/05", "locarno_format"),
        ("", "locarno_format"),
        ("H01M 10/0525", "locarno_format"),
    ],
)
def test_locarno_near_misses(raw: str, rule: str) -> None:
    _rejects(normalize_locarno, raw, rule=rule)


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "province"),
    [
        ("110000", "110000"),
        ("110101", "110000"),
        ("110119", "110000"),
        ("120116", "120000"),  # Binhai New Area
        ("130600", "130000"),  # Baoding
        ("131100", "130000"),  # Hengshui
        ("139001", "130000"),  # Dingzhou, old coding
        ("139002", "130000"),  # Xinji, old coding
        ("130682", "130000"),  # Dingzhou
        ("130181", "130000"),  # Xinji
        ("130629", "130000"),  # Rongcheng (Xiong'an)
        ("130632", "130000"),  # Anxin (Xiong'an)
        ("130638", "130000"),  # Xiongxian (Xiong'an)
        ("440300", "440000"),  # Shenzhen: other provinces are valid too
        ("650000", "650000"),
        ("710000", "710000"),
        ("810000", "810000"),
        ("820000", "820000"),
        ("１３０６００", "130000"),
    ],
)
def test_region_codes(code: str, province: str) -> None:
    assert validate_region_code(code) == normalize_full_width(code)
    assert region_province(code) == province


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("13060", "region_code"),
        ("1306000", "region_code"),
        ("13060a", "region_code"),
        ("", "region_code"),
        ("000000", "region_code_province"),
        ("100000", "region_code_province"),
        ("160000", "region_code_province"),
        ("660000", "region_code_province"),
        ("720000", "region_code_province"),
        ("830000", "region_code_province"),
        ("990000", "region_code_province"),
    ],
)
def test_region_near_misses(code: str, rule: str) -> None:
    error = _rejects(validate_region_code, code, rule=rule)
    assert error.field == "region_code"
    _rejects(region_province, code, rule=rule)


def test_province_list_is_the_real_one() -> None:
    assert len(identifiers.PROVINCE_CODES) == 34
    assert {"11", "12", "13", "65", "71", "81", "82"} <= set(identifiers.PROVINCE_CODES)


# --------------------------------------------------------------------------------------------
# Terms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "filed", "granted", "woody", "expected"),
    [
        ("invention_patent", date(2017, 8, 1), date(2020, 5, 5), False, date(2037, 8, 1)),
        ("utility_model", date(2021, 12, 30), date(2022, 4, 26), False, date(2031, 12, 30)),
        # designs: 10 years before 2021-06-01, 15 from that day on
        ("design_patent", date(2021, 5, 31), None, False, date(2031, 5, 31)),
        ("design_patent", date(2021, 6, 1), None, False, date(2036, 6, 1)),
        ("design_patent", date(2001, 9, 12), date(2002, 3, 6), False, date(2011, 9, 12)),
        ("trademark", date(2010, 1, 1), date(2011, 3, 7), False, date(2021, 3, 7)),
        ("plant_variety", date(2015, 1, 1), date(2019, 6, 1), True, date(2039, 6, 1)),
        ("plant_variety", date(2015, 1, 1), date(2019, 6, 1), False, date(2034, 6, 1)),
        # 29 February: kept in a leap year, the month's last day otherwise
        ("invention_patent", date(2020, 2, 29), None, False, date(2040, 2, 29)),
        ("utility_model", date(2020, 2, 29), None, False, date(2030, 2, 28)),
        ("design_patent", date(2024, 2, 29), None, False, date(2039, 2, 28)),
        ("trademark", None, date(2016, 2, 29), False, date(2026, 2, 28)),
        ("plant_variety", None, date(2000, 2, 29), True, date(2020, 2, 29)),
        ("plant_variety", None, date(2000, 2, 29), False, date(2015, 2, 28)),
    ],
)
def test_expiry_date(
    kind: str, filed: date | None, granted: date | None, woody: bool, expected: date
) -> None:
    assert expiry_date(kind, filed, granted, woody=woody) == expected


@pytest.mark.parametrize(
    ("kind", "filed", "granted"),
    [
        ("invention_patent", None, date(2020, 1, 1)),  # counts from filing only
        ("utility_model", None, date(2020, 1, 1)),
        ("design_patent", None, date(2020, 1, 1)),
        ("trademark", date(2020, 1, 1), None),  # counts from registration only
        ("plant_variety", date(2020, 1, 1), None),
        ("software_copyright", date(2020, 1, 1), date(2020, 2, 1)),
        ("copyright_work", date(2020, 1, 1), date(2020, 2, 1)),
        ("ic_layout", date(2020, 1, 1), date(2020, 2, 1)),
        ("geographical_indication", date(2020, 1, 1), date(2020, 2, 1)),
    ],
)
def test_expiry_date_none(kind: str, filed: date | None, granted: date | None) -> None:
    assert expiry_date(kind, filed, granted) is None


def test_expiry_date_woody_only_matters_for_plant_varieties() -> None:
    filed = date(2019, 3, 1)
    assert expiry_date("invention_patent", filed, None, woody=True) == date(2039, 3, 1)


def test_expiry_date_unknown_kind() -> None:
    _rejects(expiry_date, "patent", date(2020, 1, 1), None, rule="asset_kind")
