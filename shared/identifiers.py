"""Validation and normalisation of IP identifiers, codes and classifications.

Pure functions: no I/O, no clock, no network. The rules are those of
``design/IDENTIFIERS.md`` (authoritative); where the public record is unsure the functions accept
what the rule allows and never reject a lawful identifier.

Every rejection raises :class:`IdentifierError`, a :class:`ValueError` carrying the field, a
stable machine-readable rule name (one of :data:`RULES`) and an English message that names the
rule. Callers that validate a nested field re-home the error with :meth:`IdentifierError.at`::

    try:
        code = normalize_ipc(raw)
    except IdentifierError as exc:
        raise exc.at(f"classifications.ipc[{i}]") from None

Summary of the canonical forms:

==========================  ===========================================================
Chinese application number  ``YYYYTNNNNNNN.C`` (since 2003-10) or ``YYTNNNNN.C`` (before)
Chinese publication number  ``CN`` + 7 or 9 digits + kind code, e.g. ``CN112597341A``
USCC                        18 upper-case characters, e.g. ``91330100716105852F``
IPC                         ``H01M 10/0525`` (one space, main group without leading zeros)
Nice class                  the integer 1..45
Locarno                     ``8-05`` (class without leading zero, subclass two digits; the
                            form WIPO recommends)
Region                      the six-digit GB/T 2260 code
==========================  ===========================================================
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from operator import mul
from typing import Final, Literal, get_args

__all__ = [
    "ASSET_KINDS",
    "CN_PUBLICATION_KIND_CODES",
    "KIND_BY_CODE_LETTER",
    "PROVINCE_CODES",
    "RULES",
    "AssetKind",
    "IdentifierError",
    "cn_application_check_char",
    "cn_application_kind_digit",
    "expiry_date",
    "ipc_prefixes",
    "looks_like_identifier",
    "normalize_cn_application_number",
    "normalize_cn_publication_number",
    "normalize_full_width",
    "normalize_identifier",
    "normalize_ipc",
    "normalize_locarno",
    "region_province",
    "validate_nice_class",
    "validate_region_code",
    "validate_uscc",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

RULES: Final[frozenset[str]] = frozenset(
    {
        "asset_kind",
        "cn_patent_format",
        "cn_patent_year",
        "cn_patent_kind_digit",
        "cn_patent_check_digit",
        "cn_patent_kind_mismatch",
        "cn_publication_format",
        "cn_publication_kind_code",
        "uscc_length",
        "uscc_charset",
        "uscc_check_character",
        "uscc_org_code_check",
        "ipc_format",
        "nice_class_format",
        "nice_class_range",
        "locarno_format",
        "locarno_class_range",
        "region_code",
        "region_code_province",
        "trademark_format",
        "software_copyright_format",
        "copyright_work_format",
        "ic_layout_format",
        "plant_variety_format",
        "plant_variety_check_digit",
        "geographical_indication_empty",
    }
)
"""Every rule name an :class:`IdentifierError` can carry (stable; safe to branch on)."""


class IdentifierError(ValueError):
    """A rejected identifier: which field, which rule, and a human-readable message."""

    field: str
    rule: str
    message: str

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message

    def at(self, field: str) -> IdentifierError:
        """The same error reported against another field name (e.g. ``classifications.ipc[0]``)."""
        return IdentifierError(field, self.rule, self.message)

    def __reduce__(self) -> tuple[type[IdentifierError], tuple[str, str, str]]:
        return (IdentifierError, (self.field, self.rule, self.message))

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"

    def __repr__(self) -> str:
        return (
            f"IdentifierError(field={self.field!r}, rule={self.rule!r}, message={self.message!r})"
        )


# --------------------------------------------------------------------------------------------
# Asset kinds
# --------------------------------------------------------------------------------------------

AssetKind = Literal[
    "invention_patent",
    "utility_model",
    "design_patent",
    "trademark",
    "software_copyright",
    "copyright_work",
    "ic_layout",
    "plant_variety",
    "geographical_indication",
]

ASSET_KINDS: Final[tuple[str, ...]] = get_args(AssetKind)

_PATENT_KIND_DIGITS: Final[dict[str, frozenset[str]]] = {
    "invention_patent": frozenset({"1", "8"}),
    "utility_model": frozenset({"2", "9"}),
    "design_patent": frozenset({"3"}),
}
_KIND_BY_DIGIT: Final[dict[str, str]] = {
    digit: kind for kind, digits in _PATENT_KIND_DIGITS.items() for digit in digits
}
_KIND_DIGIT_NAMES: Final[dict[str, str]] = {
    "1": "invention",
    "2": "utility model",
    "3": "design",
    "8": "PCT invention (national phase)",
    "9": "PCT utility model (national phase)",
}


def _check_kind(kind: str) -> None:
    if kind not in ASSET_KINDS:
        raise IdentifierError(
            "kind", "asset_kind", f"unknown asset kind {kind!r}; expected one of {ASSET_KINDS}"
        )


# --------------------------------------------------------------------------------------------
# Text clean-up
# --------------------------------------------------------------------------------------------

_FULL_WIDTH_FIRST: Final = 0xFF01  # "！"
_FULL_WIDTH_LAST: Final = 0xFF5E  # "～"
_FULL_WIDTH_OFFSET: Final = 0xFEE0
_EXTRA_ASCII: Final[dict[str, str]] = {
    "\u3000": " ",  # ideographic space
    "\u3002": ".",  # ideographic full stop, typed for the dot of "201710601862。3"
}


# One table for str.translate, one C-level pass instead of a Python loop per character
# (docs/DECISIONS.md, Listing, "Bulk import").
_TO_ASCII: Final[dict[int, str]] = {
    code: chr(code - _FULL_WIDTH_OFFSET) for code in range(_FULL_WIDTH_FIRST, _FULL_WIDTH_LAST + 1)
} | {ord(ch): ascii_ for ch, ascii_ in _EXTRA_ASCII.items()}


def normalize_full_width(text: str) -> str:
    """Full-width digits, letters and punctuation (U+FF01..U+FF5E) to ASCII; strip the ends.

    Also maps the ideographic space to a space and the ideographic full stop ``。`` to ``.``,
    because Chinese input methods produce them when people type identifiers. Meant for
    identifiers and codes, not for prose.
    """
    return text.translate(_TO_ASCII).strip()


_WHITESPACE = re.compile(r"\s+")


def _compact(raw: str) -> str:
    """Full-width fixed, upper-cased, every whitespace character removed."""
    return _WHITESPACE.sub("", normalize_full_width(raw)).upper()


# --------------------------------------------------------------------------------------------
# Chinese patent application numbers
# --------------------------------------------------------------------------------------------

_CN_WEIGHTS: Final[tuple[int, ...]] = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_ASCII_DIGITS = re.compile(r"[0-9]+")
_CN_APPLICATION = re.compile(r"(?:CN|ZL)?([0-9]{12}|[0-9]{8})\.?([0-9X])")
_CN_APPLICATION_NO_CHECK = re.compile(r"(?:CN|ZL)?([0-9]{12}|[0-9]{8})")
_OLD_FORM_YEARS: Final[frozenset[str]] = frozenset(
    [f"{y:02d}" for y in range(85, 100)] + ["00", "01", "02", "03"]
)


def cn_application_check_char(digits: str) -> str:
    """The CNIPA check character of an application number's 8 or 12 digits.

    Digits are weighted left to right by 2,3,4,5,6,7,8,9,2,3,4,5 (the 8-digit form uses 2..9);
    the check is the sum mod 11, and 10 is written ``X``. (Not 11 minus the remainder.)
    """
    if len(digits) not in (8, 12) or not _ASCII_DIGITS.fullmatch(digits):
        raise IdentifierError(
            "identifier",
            "cn_patent_format",
            f"{digits!r} is not 8 or 12 digits (CNIPA application number body)",
        )
    total = sum(map(mul, map(int, digits), _CN_WEIGHTS))  # C-level loop: this runs per row
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def normalize_cn_application_number(raw: str) -> str:
    """Normalise a Chinese patent application number and verify its check character.

    Accepts an optional ``CN`` or ``ZL`` prefix, spaces anywhere, a missing dot, full-width
    characters and a lower-case ``x``. Returns ``YYYYTNNNNNNN.C`` (since 2003-10-01) or the old
    ``YYTNNNNN.C``. Also checks the year is one the form was used in (old form 1985-2003, new
    form 2003 on) and that T is a kind digit (1, 2, 3, 8, 9).
    """
    text = _compact(raw)
    match = _CN_APPLICATION.fullmatch(text)
    if match is None:
        no_check = _CN_APPLICATION_NO_CHECK.fullmatch(text)
        if no_check is not None:
            raise IdentifierError(
                "identifier",
                "cn_patent_format",
                f"{raw.strip()!r} lacks the check character: a CNIPA application number is "
                "YYYYTNNNNNNN.C (or YYTNNNNN.C before 2003-10)",
            )
        raise IdentifierError(
            "identifier",
            "cn_patent_format",
            f"{raw.strip()!r} is not a CNIPA application number: expected YYYYTNNNNNNN.C "
            "(12 digits, a dot, a check character) or YYTNNNNN.C before 2003-10",
        )
    body, check = match.group(1), match.group(2)
    if len(body) == 12:
        year, kind_digit = body[:4], body[4]
        if not 2003 <= int(year) <= 2099:
            raise IdentifierError(
                "identifier",
                "cn_patent_year",
                f"year {year} is impossible in a 12-digit application number (that form "
                "began on 2003-10-01; older numbers have 8 digits)",
            )
    else:
        year, kind_digit = body[:2], body[2]
        if year not in _OLD_FORM_YEARS:
            raise IdentifierError(
                "identifier",
                "cn_patent_year",
                f"year {year} is impossible in an 8-digit application number (that form was "
                "used from 1985 to 2003-09)",
            )
    if kind_digit not in _KIND_DIGIT_NAMES:
        raise IdentifierError(
            "identifier",
            "cn_patent_kind_digit",
            f"kind digit is {kind_digit}, expected 1, 2, 3, 8 or 9 (CNIPA application type)",
        )
    expected = cn_application_check_char(body)
    if check != expected:
        raise IdentifierError(
            "identifier",
            "cn_patent_check_digit",
            f"check digit is {check}, expected {expected} (CNIPA mod-11 rule)",
        )
    return f"{body}.{check}"


def cn_application_kind_digit(normalized: str) -> str:
    """The kind digit T of an application number: ``"1"``, ``"2"``, ``"3"``, ``"8"`` or ``"9"``."""
    number = normalize_cn_application_number(normalized)
    body = number.split(".", 1)[0]
    return body[4] if len(body) == 12 else body[2]


# --------------------------------------------------------------------------------------------
# Chinese publication / grant numbers
# --------------------------------------------------------------------------------------------

CN_PUBLICATION_KIND_CODES: Final[frozenset[str]] = frozenset(
    {"A", "A8", "A9", "B", "B8", "B9", "C", "U", "U8", "U9", "Y", "S", "D"}
    | {f"C{i}" for i in range(1, 8)}
    | {f"Y{i}" for i in range(1, 8)}
    | {f"S{i}" for i in range(1, 10)}
)
"""CNIPA document kind codes: A/A8/A9 published application (and corrections), B granted
invention (B8/B9 its corrections), C1-C7 partial invalidations, U/U8/U9 and Y1-Y7 utility model,
S/S1-S9 design; older documents use C (granted invention), Y (utility model), D (design)."""

KIND_BY_CODE_LETTER: Final[dict[str, AssetKind]] = {
    "A": "invention_patent",
    "B": "invention_patent",
    "C": "invention_patent",
    "U": "utility_model",
    "Y": "utility_model",
    "S": "design_patent",
    "D": "design_patent",
}
"""The letter of a CNIPA document kind code -> the kind of right the document publishes."""

_CN_PUBLICATION = re.compile(r"(?:CN)?([0-9]{9}|[0-9]{7})([A-Z][0-9]?)")


def normalize_cn_publication_number(raw: str) -> str:
    """Normalise a Chinese publication / grant number to ``CN`` + 7 or 9 digits + kind code.

    Spaces, full-width characters and lower case are tolerated; the ``CN`` prefix is added when
    missing. There is no check digit. The kind code must be a CNIPA one
    (:data:`CN_PUBLICATION_KIND_CODES`); it is not tied to the number of digits, because 9-digit
    documents kept the old C, Y and D codes until 2010.
    """
    text = _compact(raw)
    match = _CN_PUBLICATION.fullmatch(text)
    if match is None:
        raise IdentifierError(
            "identifier",
            "cn_publication_format",
            f"{raw.strip()!r} is not a CNIPA publication number: expected CN + 9 digits (7 "
            "before August 2007) + a kind code such as A, B, U or S",
        )
    digits, kind_code = match.group(1), match.group(2)
    if kind_code not in CN_PUBLICATION_KIND_CODES:
        raise IdentifierError(
            "identifier",
            "cn_publication_kind_code",
            f"kind code {kind_code} is not a CNIPA document kind code (A, A8, A9, B, B8, B9, "
            "C, C1-C7, U, U8, U9, Y, Y1-Y7, S, S1-S9, D)",
        )
    return f"CN{digits}{kind_code}"


# --------------------------------------------------------------------------------------------
# Identifiers by asset kind
# --------------------------------------------------------------------------------------------

_TRADEMARK = re.compile(r"第?([0-9]+)号?")
_TRADEMARK_MAX_DIGITS: Final = 10
_SOFTWARE_COPYRIGHT = re.compile(r"((?:19|20)[0-9]{2})SR([0-9]{1,10})")
_DASHES = re.compile(r"[\u2010-\u2015\u2212\uFE58\uFE63]")
# 国 for the national centre; provincial offices use their abbreviation (e.g. 黔作登字-2023-A-…).
_COPYRIGHT_PREFIXES: Final = (
    "国京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川蜀黔贵滇云藏陕秦甘陇青宁新"
)
_COPYRIGHT_WORK = re.compile(
    rf"([{_COPYRIGHT_PREFIXES}])作登字-?([0-9]{{4}})-?([A-Z])-?([0-9]{{8}})"
)
_IC_LAYOUT = re.compile(r"BS\.?([0-9]{7,12})\.?([0-9X])")
_PLANT_VARIETY_NEW = re.compile(r"CNA((?:19|20)[0-9]{2})([0-9]{7})")
_PLANT_VARIETY_OLD = re.compile(r"CNA([0-9]{8})\.?([0-9X])")


def _normalize_patent(kind: str, raw: str) -> str:
    number = normalize_cn_application_number(raw)
    body = number.split(".", 1)[0]  # as cn_application_kind_digit, without normalising twice
    digit = body[4] if len(body) == 12 else body[2]
    if _KIND_BY_DIGIT[digit] != kind:
        allowed = "/".join(sorted(_PATENT_KIND_DIGITS[kind]))
        raise IdentifierError(
            "identifier",
            "cn_patent_kind_mismatch",
            f"kind digit is {digit} ({_KIND_DIGIT_NAMES[digit]}), but a {kind.replace('_', ' ')}"
            f" needs {allowed} (CNIPA application type)",
        )
    return number


def _normalize_trademark(raw: str) -> str:
    # Digits only. Up to 8 are seen in practice (CNIPA has passed 70 million applications);
    # 9 and 10 are accepted so that the next numbers to be issued are never rejected.
    match = _TRADEMARK.fullmatch(_compact(raw))
    if match is None or len(match.group(1)) > _TRADEMARK_MAX_DIGITS:
        raise IdentifierError(
            "identifier",
            "trademark_format",
            f"{raw.strip()!r} is not a Chinese trademark registration number "
            f"(1 to {_TRADEMARK_MAX_DIGITS} digits, optionally written 第…号)",
        )
    number = match.group(1).lstrip("0")
    if not number:
        raise IdentifierError(
            "identifier", "trademark_format", "a trademark registration number cannot be zero"
        )
    return number


def _normalize_software_copyright(raw: str) -> str:
    match = _SOFTWARE_COPYRIGHT.fullmatch(_compact(raw))
    if match is None:
        raise IdentifierError(
            "identifier",
            "software_copyright_format",
            f"{raw.strip()!r} is not a software copyright registration number "
            "(YYYYSR + digits, e.g. 2019SR0123456)",
        )
    return f"{match.group(1)}SR{match.group(2)}"


def _normalize_copyright_work(raw: str) -> str:
    text = _DASHES.sub("-", _compact(raw))
    match = _COPYRIGHT_WORK.fullmatch(text)
    if match is None:
        raise IdentifierError(
            "identifier",
            "copyright_work_format",
            f"{raw.strip()!r} is not a works copyright registration number "
            "(国作登字-YYYY-L-NNNNNNNN; provincial offices use their abbreviation for 国)",
        )
    office, year, category, serial = match.groups()
    return f"{office}作登字-{year}-{category}-{serial}"


def _normalize_ic_layout(raw: str) -> str:
    # Shape only: the check character's algorithm is unpublished, so none is invented.
    match = _IC_LAYOUT.fullmatch(_compact(raw))
    if match is None:
        raise IdentifierError(
            "identifier",
            "ic_layout_format",
            f"{raw.strip()!r} is not an IC layout design registration number "
            "(BS. + digits + a check character, e.g. BS.185559220)",
        )
    return f"BS.{match.group(1)}{match.group(2)}"


def _normalize_plant_variety(raw: str) -> str:
    text = _compact(raw)
    new = _PLANT_VARIETY_NEW.fullmatch(text)
    if new is not None:
        return f"CNA{new.group(1)}{new.group(2)}"
    old = _PLANT_VARIETY_OLD.fullmatch(text)
    if old is None:
        raise IdentifierError(
            "identifier",
            "plant_variety_format",
            f"{raw.strip()!r} is not a plant variety right number (CNA + year + 7 digits, e.g. "
            "CNA20191006012, or the older CNA + 8 digits + . + check, e.g. CNA20080376.X)",
        )
    body, check = old.groups()
    expected = cn_application_check_char(body)
    if check != expected:
        raise IdentifierError(
            "identifier",
            "plant_variety_check_digit",
            f"check digit is {check}, expected {expected} (mod-11 rule of the older CNA form)",
        )
    return f"CNA{body}.{check}"


def _normalize_geographical_indication(raw: str) -> str:
    # Free text: trimmed and whitespace collapsed; Chinese punctuation is left as written.
    text = " ".join(raw.split())
    if not text:
        raise IdentifierError(
            "identifier",
            "geographical_indication_empty",
            "a geographical indication needs a name (free text, not empty)",
        )
    return text


def normalize_identifier(kind: str, raw: str) -> str:
    """Normalise and validate the registry identifier of an asset of the given kind.

    - patents: the application number (:func:`normalize_cn_application_number`), whose kind
      digit must agree with the kind (1/8 invention, 2/9 utility model, 3 design);
    - trademark: the registration number, 1 to 10 digits (8 seen in practice; 9 and 10 allowed
      for growth), ``第…号`` wrapper and leading zeros removed;
    - software copyright: ``YYYYSR`` + digits;
    - copyright work: ``国作登字-YYYY-L-NNNNNNNN`` (also the provincial ``京作登字`` etc.);
    - IC layout: ``BS.`` + digits + check character, shape only, as ``BS.185559220``;
    - plant variety: ``CNA`` + year + 7 digits, or ``CNA`` + 8 digits + ``.`` + check character
      (verified with the patent mod-11 rule);
    - geographical indication: free text, trimmed, whitespace collapsed, not empty.
    """
    _check_kind(kind)
    if kind in _PATENT_KIND_DIGITS:
        return _normalize_patent(kind, raw)
    if kind == "trademark":
        return _normalize_trademark(raw)
    if kind == "software_copyright":
        return _normalize_software_copyright(raw)
    if kind == "copyright_work":
        return _normalize_copyright_work(raw)
    if kind == "ic_layout":
        return _normalize_ic_layout(raw)
    if kind == "plant_variety":
        return _normalize_plant_variety(raw)
    return _normalize_geographical_indication(raw)


_QUERY_APPLICATION = re.compile(
    r"(?:CN|ZL)[0-9]{8}(?:[0-9]{4})?\.?[0-9X]|[0-9]{8}(?:[0-9]{4})?\.[0-9X]|[0-9]{12}[0-9X]"
    r"|[0-9]{8}X"
)
_QUERY_PUBLICATION_STEM = re.compile(r"CN(?:[0-9]{9}|[0-9]{7})")


def looks_like_identifier(query: str) -> tuple[str, str] | None:
    """Whether a free-text search query is a CN application or publication number.

    Returns ``(kind_hint, normalized)``: the asset kind the kind digit or kind code implies
    (``invention_patent``, ``utility_model`` or ``design_patent``), or ``"patent"`` for a
    publication number typed without its kind code (``CN112597341``, returned as typed). Returns
    None for anything else, including a number whose check character is wrong. To avoid
    mistaking plain numbers for identifiers, a bare 8-digit-form number needs its dot (or an X
    check), and a publication number needs its ``CN``.
    """
    text = _compact(query)
    if not text:
        return None
    if _QUERY_APPLICATION.fullmatch(text):
        try:
            number = normalize_cn_application_number(text)
        except IdentifierError:
            pass  # "CN" + 9 digits may still be a publication number (CN112597341)
        else:
            return _KIND_BY_DIGIT[cn_application_kind_digit(number)], number
    if text.startswith("CN"):
        if _QUERY_PUBLICATION_STEM.fullmatch(text):
            return "patent", text
        try:
            publication = normalize_cn_publication_number(text)
        except IdentifierError:
            return None
        return KIND_BY_CODE_LETTER[publication.rstrip("0123456789")[-1]], publication
    return None


# --------------------------------------------------------------------------------------------
# Unified social credit code (GB 32100-2015)
# --------------------------------------------------------------------------------------------

_USCC_CHARSET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES: Final[dict[str, int]] = {c: i for i, c in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS: Final[tuple[int, ...]] = tuple(pow(3, i, 31) for i in range(17))
_ORG_CODE_WEIGHTS: Final[tuple[int, ...]] = (3, 7, 9, 10, 5, 8, 4, 2)


def _uscc_check_char(first17: str) -> str:
    total = sum(_USCC_VALUES[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    value = 31 - total % 31
    return _USCC_CHARSET[0 if value == 31 else value]


def _org_code_check_char(body8: str) -> str:
    total = sum(
        (int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w
        for c, w in zip(body8, _ORG_CODE_WEIGHTS, strict=True)
    )
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def _uscc_corrected(code: str) -> str:
    """The code with both check characters made right: position 17 (GB 11714) first, then
    position 18 over the corrected first 17 characters."""
    first17 = code[:16] + _org_code_check_char(code[8:16])
    return first17 + _uscc_check_char(first17)


def _uscc_check_message(code: str) -> tuple[str, str]:
    """The rule a code with a wrong check character breaks (position 18 checked first, over the
    first 17 characters as given) and one message saying which check characters are wrong, what
    they should be, and the whole code that would be valid."""
    valid = _uscc_corrected(code)
    rule = (
        "uscc_check_character" if code[17] != _uscc_check_char(code[:17]) else "uscc_org_code_check"
    )
    wrong: list[str] = []
    rules: list[str] = []
    if code[16] != valid[16]:
        wrong.append(f"organisation code check (position 17) is {code[16]}, expected {valid[16]}")
        rules.append("GB 11714 mod-11")
    if code[17] != valid[17]:
        wrong.append(f"check character (position 18) is {code[17]}, expected {valid[17]}")
        rules.append("GB 32100-2015 mod-31")
    return rule, (
        f"uscc {code}: {'; '.join(wrong)} ({valid} would be valid; {' and '.join(rules)} "
        f"rule{'s' if len(rules) > 1 else ''}, which an operator may override for a lawful early "
        "pilot-region code)"
    )


def validate_uscc(raw: str, *, allow_bad_check: bool = False) -> str:
    """Validate a unified social credit code (GB 32100-2015); return it normalised.

    Normalisation: full-width fixed, upper-cased, spaces removed. Rules, in order:
    ``uscc_length`` (18 characters), ``uscc_charset`` (``0-9`` and ``A-Y`` without I, O, Z, S,
    V), ``uscc_check_character`` (position 18) and ``uscc_org_code_check`` (the GB 11714
    organisation code at positions 9-17). A check failure's message names the code, which
    check characters are wrong, what they should be and the whole code that would be valid
    (both check characters corrected), once. ``allow_bad_check=True`` is the operator override
    for lawful codes from early pilot regions: it skips the two check-character rules only.
    """
    code = _compact(raw)
    if len(code) != 18:
        raise IdentifierError(
            "uscc",
            "uscc_length",
            f"a unified social credit code has 18 characters, got {len(code)} (GB 32100-2015)",
        )
    for position, char in enumerate(code, start=1):
        if char not in _USCC_VALUES:
            raise IdentifierError(
                "uscc",
                "uscc_charset",
                f"character {char!r} at position {position} is not allowed: GB 32100-2015 uses "
                "0-9 and A-Y without I, O, Z, S, V",
            )
    if allow_bad_check or _uscc_corrected(code) == code:
        return code
    raise IdentifierError("uscc", *_uscc_check_message(code))


# --------------------------------------------------------------------------------------------
# Classifications
# --------------------------------------------------------------------------------------------

_IPC_EDITION = re.compile(r"\(\s*[0-9]{4}\s*\.\s*[0-9]{2}\s*\)\s*[IN]?$")
_IPC = re.compile(r"([A-H])([0-9]{2})([A-Z])([0-9]{1,4})/([0-9]{2,6})")


@lru_cache(maxsize=4096, typed=True)  # pure; codes repeat across the rows of an import
def normalize_ipc(raw: str) -> str:
    """Normalise an IPC symbol to ``H01M 10/0525``.

    Accepts any spacing (``H01M10/0525``, the padded ``G06F  3/01``), lower case, full-width
    characters, leading zeros in the main group, and a trailing edition such as ``(2006.01)``
    (dropped). Section A-H, two-digit class, subclass letter, main group 1-4 digits, subgroup
    2-6 digits.
    """
    text = normalize_full_width(raw).upper()
    text = _IPC_EDITION.sub("", text)
    text = _WHITESPACE.sub("", text)
    match = _IPC.fullmatch(text)
    if match is None or int(match.group(4)) == 0:
        raise IdentifierError(
            "ipc",
            "ipc_format",
            f"{raw.strip()!r} is not an IPC symbol: expected section A-H, two-digit class, "
            "subclass letter, main group, '/', subgroup of 2-6 digits, e.g. H01M 10/0525",
        )
    section, klass, subclass, main, sub = match.groups()
    return f"{section}{klass}{subclass} {int(main)}/{sub}"


def ipc_prefixes(code: str) -> list[str]:
    """The IPC hierarchy of a symbol, broadest first, for prefix search.

    ``"H01M 10/0525"`` -> ``["H", "H01", "H01M", "H01M 10/00", "H01M 10/0525"]``; a main group
    appears once (``"H01M 10/00"`` ends the list for itself).
    """
    symbol = normalize_ipc(code)
    subclass, group = symbol.split(" ", 1)
    main = group.split("/", 1)[0]
    prefixes = [subclass[0], subclass[:3], subclass, f"{subclass} {main}/00"]
    if symbol != prefixes[-1]:
        prefixes.append(symbol)
    return prefixes


_NICE_MAX: Final = 45


@lru_cache(maxsize=4096, typed=True)  # pure; codes repeat across the rows of an import
def validate_nice_class(value: int | str) -> int:
    """A Nice class number, 1..45 (1-34 goods, 35-45 services); ``"09"`` and ``"９"`` allowed."""
    if isinstance(value, bool):
        raise IdentifierError("nice_class", "nice_class_format", "a Nice class is a number")
    if isinstance(value, int):
        number = value
    else:
        text = normalize_full_width(value)
        if not _ASCII_DIGITS.fullmatch(text):
            raise IdentifierError(
                "nice_class", "nice_class_format", f"{value.strip()!r} is not a Nice class number"
            )
        number = int(text)
    if not 1 <= number <= _NICE_MAX:
        raise IdentifierError(
            "nice_class",
            "nice_class_range",
            f"Nice class {number} does not exist: classes are 1-{_NICE_MAX}",
        )
    return number


_LOCARNO_PREFIX = re.compile(r"^(?:LOC\s*(?:\(\s*[0-9]+\s*\))?\s*)?(?:CL\s*\.?\s*)?")
_LOCARNO = re.compile(r"([0-9]{1,2})\s*[-.]\s*([0-9]{1,2})")
_LOCARNO_MAX: Final = 32


@lru_cache(maxsize=4096, typed=True)  # pure; codes repeat across the rows of an import
def normalize_locarno(raw: str) -> str:
    """Normalise a Locarno class-subclass to ``8-05``.

    The canonical form is WIPO's recommendation: class without a leading zero, a dash, the
    subclass as two digits. Accepts ``08-05``, ``8.5``, ``8-5``, full-width characters and a
    ``LOC(13) Cl.`` prefix. Class 1-32; subclass 00-99 (``32-00`` exists, ``NN-99`` is
    "miscellaneous").
    """
    text = _LOCARNO_PREFIX.sub("", normalize_full_width(raw).upper())
    match = _LOCARNO.fullmatch(text.strip())
    if match is None:
        raise IdentifierError(
            "locarno",
            "locarno_format",
            f"{raw.strip()!r} is not a Locarno class-subclass such as 8-05",
        )
    klass, subclass = int(match.group(1)), int(match.group(2))
    if not 1 <= klass <= _LOCARNO_MAX:
        raise IdentifierError(
            "locarno",
            "locarno_class_range",
            f"Locarno class {klass} does not exist: classes are 1-{_LOCARNO_MAX}",
        )
    return f"{klass}-{subclass:02d}"


# --------------------------------------------------------------------------------------------
# Regions (GB/T 2260)
# --------------------------------------------------------------------------------------------

PROVINCE_CODES: Final[dict[str, str]] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省",
    "81": "香港特别行政区",
    "82": "澳门特别行政区",
}
"""GB/T 2260 province-level codes (first two digits of a region code)."""

_REGION = re.compile(r"[0-9]{6}")


@lru_cache(maxsize=4096, typed=True)  # pure; codes repeat across the rows of an import
def validate_region_code(raw: str) -> str:
    """A six-digit GB/T 2260 code whose first two digits are a real province-level code.

    Any province is accepted (a seller may be outside Jing-Jin-Ji); so are both codings of
    Dingzhou and Xinji (139001 / 139002 and 130682 / 130181).
    """
    code = _compact(raw)
    if not _REGION.fullmatch(code):
        raise IdentifierError(
            "region_code",
            "region_code",
            f"{raw.strip()!r} is not a region code: GB/T 2260 codes have six digits",
        )
    if code[:2] not in PROVINCE_CODES:
        raise IdentifierError(
            "region_code",
            "region_code_province",
            f"{code} does not start with a GB/T 2260 province-level code (11-65, 71, 81, 82)",
        )
    return code


def region_province(code: str) -> str:
    """The province-level code of a region code: ``"130600"`` -> ``"130000"``."""
    return f"{validate_region_code(code)[:2]}0000"


# --------------------------------------------------------------------------------------------
# Terms
# --------------------------------------------------------------------------------------------

_DESIGN_15_YEARS_FROM: Final = date(2021, 6, 1)


def _add_years(start: date, years: int) -> date:
    """The anniversary; 29 February maps to 28 February in a common year (the month's end)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def expiry_date(
    kind: str, filed_on: date | None, granted_on: date | None, *, woody: bool = False
) -> date | None:
    """When the statutory term of an asset ends: the anniversary of its start date.

    Invention 20 years from filing; utility model 10 years from filing; design 10 years from
    filing, 15 for applications filed on or after 2021-06-01; trademark 10 years from
    registration (``granted_on``; renewable, so this is the current term's end); plant variety
    20 years from grant for vines and trees (``woody=True``), 15 for others. Other kinds, or a
    missing start date, give None. An anniversary on 29 February in a common year falls on 28
    February (the last day of the month, as Chinese law counts periods in years).
    """
    _check_kind(kind)
    if kind == "invention_patent":
        return None if filed_on is None else _add_years(filed_on, 20)
    if kind == "utility_model":
        return None if filed_on is None else _add_years(filed_on, 10)
    if kind == "design_patent":
        if filed_on is None:
            return None
        return _add_years(filed_on, 15 if filed_on >= _DESIGN_15_YEARS_FROM else 10)
    if kind == "trademark":
        return None if granted_on is None else _add_years(granted_on, 10)
    if kind == "plant_variety":
        return None if granted_on is None else _add_years(granted_on, 20 if woody else 15)
    return None
