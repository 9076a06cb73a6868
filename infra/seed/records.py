"""Real public Chinese patent records as catalogue assets (:class:`AssetDocument`).

Three exports from commercial patent databases ship in ``infra/seed/data/`` (see the README
there for their provenance): Patentics' virtual-reality set (``cn_vr_patentics.csv.gz``),
Patentics' Cambricon portfolio (``cn_cambricon_patentics.jsonl.gz``) and incoPat's iFlytek
portfolio (``cn_iflytek_incopat.jsonl.gz``). :func:`iter_records` reads them in that order and
turns each usable row into a :class:`SeedRecord` whose ``asset`` is a validated contract object.

Mapping, in short:

- kind from 专利类型 / 公开类型 (发明申请, 发明公布, 发明授权, 实用新型, 外观设计), else from the
  publication number's kind code (A/B/C invention, U/Y utility model, S/D design); the
  application number's kind digit must agree (:func:`normalize_identifier` checks it).
- identifier: the normalised application number; publication_number when it is a valid CNIPA
  number.
- dates: 申请日 and 授权公告日 (``YYYYMMDD``, ``YYYY/MM/DD``, or Excel serial numbers as text:
  1899-12-30 + N days). Files without a grant-date column (Cambricon, iFlytek) take the
  publication date of a grant document (kind code B, C, U, Y, S or D) as the grant date: CNIPA
  publishes utility models and designs only on grant, and B documents on grant. expires_on is
  :func:`expiry_date` of kind and dates.
- legal_status from 法律状态 / 专利有效性: 有效 → granted, also for a record listed under its
  application publication (an A document) with no grant date: 有效 means "in force" and only a
  granted right is in force (the Cambricon file lists 29 such applications again under their B
  grant documents); 公开 / 实质审查 / 审中 → pending; 驳回 → rejected; 无效 and incoPat's 失效
  (ceased, reason not given) → lapsed; 撤回 → withdrawn; anything else → pending. A right that
  is not rejected or withdrawn and whose term has ended (expires_on before today) is expired.
- holders: one per applicant, in source order, region from :func:`infra.seed.regions.infer_region`.
- IPC: every code of 国际分类 / IPC主分类 normalised, invalid ones (e.g. the CPC-only ``Y02P``)
  dropped, duplicates removed, the main code first.

Skipped: WO (PCT international) records, application numbers that fail validation, rows without
a title or an applicant, malformed rows, and duplicates of (kind, identifier): the first wins,
except that within one file a grant document (B) wins over the same application's publication
(A), wherever each comes, so that the record carries the grant number and date (Cambricon lists
29 applications under both). Pass a :class:`SeedStats` to count what was read, yielded and
skipped.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from infra.seed.regions import JJJ_PROVINCES, infer_region
from services.listing.assets.rules import check_filing_year
from shared.contracts.catalogue import (
    AssetDocument,
    AssetKind,
    Classifications,
    Holder,
    LegalStatus,
    LocalizedText,
)
from shared.identifiers import (
    KIND_BY_CODE_LETTER,
    IdentifierError,
    expiry_date,
    normalize_cn_publication_number,
    normalize_identifier,
    normalize_ipc,
)

__all__ = [
    "CAMBRICON_FILE",
    "DATA_DIR",
    "IFLYTEK_FILE",
    "SOURCE_FILES",
    "VR_FILE",
    "SeedRecord",
    "SeedStats",
    "excel_serial_date",
    "iter_records",
    "legal_status",
    "load_records",
    "parse_source_date",
]

DATA_DIR: Final[Path] = Path(__file__).resolve().parent / "data"
VR_FILE: Final = "cn_vr_patentics.csv.gz"
CAMBRICON_FILE: Final = "cn_cambricon_patentics.jsonl.gz"
IFLYTEK_FILE: Final = "cn_iflytek_incopat.jsonl.gz"
SOURCE_FILES: Final[tuple[str, ...]] = (VR_FILE, CAMBRICON_FILE, IFLYTEK_FILE)
"""The shipped files, in the order :func:`iter_records` reads them."""

_MAX_HOLDERS: Final = 50  # AssetDocument.holders max_length


@dataclass(frozen=True)
class SeedRecord:
    """One source row as a catalogue asset, with what the contract does not keep."""

    asset: AssetDocument
    source_file: str
    applicants: list[str]
    legal_status_raw: str | None


@dataclass
class SeedStats:
    """What :func:`iter_records` read, yielded and skipped (reasons as keys)."""

    read: Counter[str] = field(default_factory=Counter)
    """Rows read, per file."""
    yielded: Counter[str] = field(default_factory=Counter)
    """Records yielded, per file."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Rows skipped, per reason: ``wo_record``, ``application_number:<rule>``, ``duplicate``,
    ``no_kind``, ``no_title``, ``no_applicant``, ``malformed_row``, ``invalid_document``,
    ``filed_after_number``."""
    ipc_dropped: Counter[str] = field(default_factory=Counter)
    """Invalid IPC codes dropped from otherwise usable records, per code."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

_EXCEL_EPOCH: Final = date(1899, 12, 30)
_EXCEL_SERIAL = re.compile(r"([0-9]{1,6})(?:\.0*)?")
_YMD_COMPACT = re.compile(r"[0-9]{8}")
_YMD_SEPARATED = re.compile(r"([0-9]{4})[/.-]([0-9]{1,2})[/.-]([0-9]{1,2})")


def excel_serial_date(text: str) -> date:
    """An Excel serial day number written as text (``"45072.0"``) as a date: 1899-12-30 + N."""
    match = _EXCEL_SERIAL.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an Excel serial day number")
    return _EXCEL_EPOCH + timedelta(days=int(match.group(1)))


def parse_source_date(text: str | None) -> date | None:
    """A date as the sources write it: ``20220107``, ``2018/05/25`` or ``"45072.0"``; else None."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    try:
        if _YMD_COMPACT.fullmatch(value):
            return datetime.strptime(value, "%Y%m%d").date()
        separated = _YMD_SEPARATED.fullmatch(value)
        if separated is not None:
            year, month, day = (int(part) for part in separated.groups())
            return date(year, month, day)
        if _EXCEL_SERIAL.fullmatch(value):
            return excel_serial_date(value)
    except ValueError:
        return None
    return None


_KIND_BY_TYPE: Final[dict[str, AssetKind]] = {
    "发明": "invention_patent",
    "发明申请": "invention_patent",
    "发明公布": "invention_patent",
    "发明公开": "invention_patent",
    "发明授权": "invention_patent",
    "实用新型": "utility_model",
    "外观设计": "design_patent",
}
_GRANT_CODES: Final[frozenset[str]] = frozenset({"B", "C", "U", "Y", "S", "D"})
_KIND_CODE = re.compile(r"([A-Z])[0-9]?$")

_LEGAL_STATUS: Final[dict[str, LegalStatus]] = {
    "有效": "granted",
    "授权": "granted",
    "公开": "pending",
    "实质审查": "pending",
    "审中": "pending",
    "驳回": "rejected",
    "无效": "lapsed",
    "失效": "lapsed",
    "撤回": "withdrawn",
}
_TERM_NEVER_RAN: Final[frozenset[str]] = frozenset({"rejected", "withdrawn"})


def legal_status(raw: str | None, expires_on: date | None, today: date) -> LegalStatus:
    """The contract's legal status from the source's (see the module docstring)."""
    status = _LEGAL_STATUS.get((raw or "").strip(), "pending")
    if status not in _TERM_NEVER_RAN and expires_on is not None and expires_on < today:
        return "expired"
    return status


def _kind_code(publication: str) -> str | None:
    match = _KIND_CODE.search(publication.strip().upper())
    return None if match is None else match.group(1)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def _split(value: str | None, separator: re.Pattern[str]) -> list[str]:
    if not value:
        return []
    out: list[str] = []
    for part in separator.split(value):
        name = part.strip()
        if name and name not in out:
            out.append(name)
    return out


# --------------------------------------------------------------------------------------------
# Source rows, file by file
# --------------------------------------------------------------------------------------------

_PIPE = re.compile(r"\|")
_SEMICOLON = re.compile(r"[;；]")


@dataclass
class _Row:
    """One source row in the sources' common terms, before validation."""

    application: str
    publication: str
    kind_text: str | None
    title_zh: str | None
    title_en: str | None
    abstract_zh: str | None
    abstract_en: str | None
    ipc: list[str]
    main_ipc: str | None
    applicants: list[str]
    filed_on: date | None
    granted_on: date | None
    published_on: date | None
    status_raw: str | None
    country: str | None = None


def _clean_keys(row: dict[str, object]) -> dict[str, object]:
    return {key.lstrip("\ufeff").strip(): value for key, value in row.items()}


def _read_jsonl(path: Path, stats: SeedStats) -> Iterator[dict[str, object]]:
    # newline="\n": only LF ends a record (a CR inside a value must not split one).
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="\n") as handle:
        for line in handle:
            if not line.strip():
                continue
            stats.read[path.name] += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                stats.skipped["malformed_row"] += 1
                continue
            if not isinstance(row, dict):
                stats.skipped["malformed_row"] += 1
                continue
            yield _clean_keys(row)


def _vr_rows(path: Path, stats: SeedStats) -> Iterator[_Row]:
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.lstrip("\ufeff").strip() for name in next(reader, [])]
        for fields in reader:
            if not fields:
                continue
            stats.read[path.name] += 1
            # Every row ends with a comma: one empty field more than the header has names.
            if len(fields) == len(header) + 1 and fields[-1] == "":
                fields = fields[:-1]
            if len(fields) != len(header):
                stats.skipped["malformed_row"] += 1
                continue
            row = dict(zip(header, fields, strict=True))
            yield _Row(
                application=row["申请号"],
                publication=row["公开号"],
                kind_text=_text(row.get("专利类型")),
                title_zh=_text(row["标题"]),
                title_en=None,
                abstract_zh=_text(row.get("摘要")),
                abstract_en=None,
                ipc=_split(row["国际分类"], _PIPE),
                main_ipc=_text(row["国际主分类"]),  # only the subclass here, e.g. G06F
                applicants=_split(row["申请人"], _PIPE),
                filed_on=parse_source_date(row["申请日"]),
                granted_on=parse_source_date(row["授权公告日"]),
                published_on=parse_source_date(row["公开日"]),
                status_raw=_text(row["法律状态"]),
            )


def _cambricon_rows(path: Path, stats: SeedStats) -> Iterator[_Row]:
    for row in _read_jsonl(path, stats):
        yield _Row(
            application=_text(row.get("申请号")) or "",
            publication=_text(row.get("公开号")) or "",
            kind_text=_text(row.get("专利类型")),
            title_zh=_text(row.get("标题")),
            title_en=None,
            abstract_zh=_text(row.get("摘要")),
            abstract_en=None,
            ipc=_split(_text(row.get("国际分类")), _PIPE),
            main_ipc=_text(row.get("国际主分类")),
            applicants=_split(_text(row.get("申请人")), _PIPE),  # "A |\nB"
            filed_on=parse_source_date(_text(row.get("申请日"))),
            granted_on=parse_source_date(_text(row.get("授权公告日"))),
            published_on=parse_source_date(_text(row.get("公开日"))),
            status_raw=_text(row.get("法律状态")),
        )


def _iflytek_rows(path: Path, stats: SeedStats) -> Iterator[_Row]:
    for row in _read_jsonl(path, stats):
        main_ipc = _text(row.get("IPC主分类"))
        yield _Row(
            application=_text(row.get("申请号")) or "",
            publication=_text(row.get("公开（公告）号")) or "",
            kind_text=_text(row.get("专利类型")) or _text(row.get("公开类型")),
            title_zh=_text(row.get("标题 (中文)")),
            title_en=_text(row.get("标题 (英文)")),
            abstract_zh=_text(row.get("摘要 (中文)")),
            abstract_en=_text(row.get("摘要 (英文)")),
            ipc=_split(main_ipc, _SEMICOLON),
            main_ipc=None,
            applicants=_split(_text(row.get("申请人")), _SEMICOLON),
            filed_on=parse_source_date(_text(row.get("申请日"))),
            granted_on=None,
            published_on=parse_source_date(_text(row.get("公开（公告）日"))),
            status_raw=_text(row.get("专利有效性")),
            country=_text(row.get("公开国别")),
        )


_READERS: Final = {VR_FILE: _vr_rows, CAMBRICON_FILE: _cambricon_rows, IFLYTEK_FILE: _iflytek_rows}


# --------------------------------------------------------------------------------------------
# Rows to assets
# --------------------------------------------------------------------------------------------


def _is_foreign(row: _Row) -> bool:
    return (
        row.application.upper().startswith("WO")
        or row.publication.upper().startswith("WO")
        or (row.country is not None and row.country not in ("中国", "CN"))
    )


def _ipc_codes(row: _Row, stats: SeedStats) -> list[str]:
    codes: list[str] = []
    if row.main_ipc is not None:
        # The VR file gives only the main subclass (G06F); its first code is the main one.
        with suppress(IdentifierError):
            codes.append(normalize_ipc(row.main_ipc))
    for raw in row.ipc:
        try:
            code = normalize_ipc(raw)
        except IdentifierError:
            stats.ipc_dropped[raw.strip()] += 1
            continue
        if code not in codes:
            codes.append(code)
    return codes


def _to_record(row: _Row, source: str, stats: SeedStats, today: date) -> SeedRecord | None:
    if _is_foreign(row):
        stats.skipped["wo_record"] += 1
        return None
    code = _kind_code(row.publication)
    kind = _KIND_BY_TYPE.get(row.kind_text or "") or (
        KIND_BY_CODE_LETTER.get(code) if code is not None else None
    )
    if kind is None:
        stats.skipped["no_kind"] += 1
        return None
    try:
        identifier = normalize_identifier(kind, row.application)
    except IdentifierError as exc:
        stats.skipped[f"application_number:{exc.rule}"] += 1
        return None
    if row.title_zh is None and row.title_en is None:
        stats.skipped["no_title"] += 1
        return None
    if not row.applicants:
        stats.skipped["no_applicant"] += 1
        return None
    try:
        publication: str | None = normalize_cn_publication_number(row.publication)
    except IdentifierError:
        publication = None
    granted_on = row.granted_on
    if granted_on is None and code in _GRANT_CODES:
        granted_on = row.published_on
    if row.filed_on is not None and check_filing_year(kind, identifier, row.filed_on) is not None:
        # Dated after its number's year (a number is given on receipt): an error of the source,
        # and without a lawful filing date the right cannot be listed.
        stats.skipped["filed_after_number"] += 1
        return None
    expires_on = expiry_date(kind, row.filed_on, granted_on)
    try:
        asset = AssetDocument(
            kind=kind,
            identifier=identifier,
            publication_number=publication,
            title=LocalizedText(zh=row.title_zh, en=row.title_en),
            abstract=LocalizedText(zh=row.abstract_zh, en=row.abstract_en),
            classifications=Classifications(ipc=_ipc_codes(row, stats)),
            holders=[
                Holder(name=name, region=infer_region(name))
                for name in row.applicants[:_MAX_HOLDERS]
            ],
            filed_on=row.filed_on,
            granted_on=granted_on,
            expires_on=expires_on,
            legal_status=legal_status(row.status_raw, expires_on, today),
        )
    except ValidationError:
        stats.skipped["invalid_document"] += 1
        return None
    return SeedRecord(
        asset=asset,
        source_file=source,
        applicants=list(row.applicants),
        legal_status_raw=row.status_raw,
    )


def _application_key(row: _Row) -> str:
    return re.sub(r"\s+", "", row.application).upper()


def _file_records(path: Path, stats: SeedStats, today: date) -> Iterator[SeedRecord]:
    """One file's records, streamed; an application's grant document beats its A publication.

    The rows are read first (cheap) to learn which applications the file also lists under a
    grant document (kind code B, C…): their other rows are skipped as duplicates wherever they
    come, so the record carries the grant number and date.
    """
    rows = list(_READERS[path.name](path, stats))
    with_grant = {
        _application_key(row) for row in rows if _kind_code(row.publication) in _GRANT_CODES
    }
    for row in rows:
        if _kind_code(row.publication) not in _GRANT_CODES and _application_key(row) in with_grant:
            stats.skipped["duplicate"] += 1
            continue
        record = _to_record(row, path.name, stats, today)
        if record is not None:
            yield record


def iter_records(
    data_dir: Path | None = None, *, stats: SeedStats | None = None, today: date | None = None
) -> Iterator[SeedRecord]:
    """Every usable record of the three shipped files, file by file, each (kind, identifier) once.

    ``data_dir`` defaults to ``infra/seed/data`` next to this module. ``today`` (default: the
    current date) decides which rights count as expired. ``stats``, if given, is filled in as
    the records are read.
    """
    directory = DATA_DIR if data_dir is None else data_dir
    counts = SeedStats() if stats is None else stats
    when = date.today() if today is None else today
    seen: set[tuple[str, str]] = set()
    for name in SOURCE_FILES:
        for record in _file_records(directory / name, counts, when):
            key = (record.asset.kind, record.asset.identifier)
            if key in seen:
                counts.skipped["duplicate"] += 1
                continue
            seen.add(key)
            counts.yielded[name] += 1
            yield record


def _in_region(record: SeedRecord) -> bool:
    region = record.asset.holders[0].region
    return region is not None and region[:2] in JJJ_PROVINCES


def load_records(
    limit: int | None = None, *, region_only: bool = False, today: date | None = None
) -> list[SeedRecord]:
    """The first ``limit`` records (all if None) of :func:`iter_records`.

    ``region_only`` keeps only records whose first holder is in Beijing, Tianjin or Hebei (as
    inferred from the name by :func:`infra.seed.regions.infer_region`).
    """
    out: list[SeedRecord] = []
    if limit is not None and limit <= 0:
        return out
    for record in iter_records(today=today):
        if region_only and not _in_region(record):
            continue
        out.append(record)
        if limit is not None and len(out) >= limit:
            break
    return out
