"""The text encoding of an uploaded file: UTF-8 (with or without a BOM) or GB18030, checked
strictly over the whole file; anything else is refused (422, field `body`, rule `encoding`).

Chinese offices save CSV from Excel in the system's code page, GBK (GB18030 is its superset and
Python reads both with the `gb18030` codec), or as "CSV UTF-8" with a BOM. Read as UTF-8 with
replacement, a GBK file became U+FFFD soup (`一种…` stored as `һ�ְ…`) and its holder names no
longer matched the importing organisation. Strict decoding tells the two apart: a GBK file of
Chinese text is almost never valid UTF-8, and UTF-8 is tried first.
"""

from __future__ import annotations

import codecs
from typing import IO, Final

from shared.errors import FieldError, UnprocessableEntity

__all__ = ["GB18030", "UTF8", "Utf8Check", "detect_encoding"]

UTF8: Final = "utf-8"
GB18030: Final = "gb18030"
# The codec each encoding is read with: utf-8-sig drops a BOM (and reads a file without one).
CODECS: Final[dict[str, str]] = {UTF8: "utf-8-sig", GB18030: GB18030}
CHUNK = 1024 * 1024
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class Utf8Check:
    """Fed an upload's chunks as they arrive: whether the whole file is strict UTF-8, with no
    second pass over it (the common case). The first bad byte's offset is kept."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._offset = 0
        self.valid = True
        self.bad_offset: int | None = None
        self.head = b""  # the first bytes (a UTF-16 BOM is named)

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 4:
            self.head = (self.head + chunk)[:4]
        if self.valid:
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                self._fail(self._offset + exc.start)
        self._offset += len(chunk)

    def finish(self) -> bool:
        """Whether the file was UTF-8 to its last byte (a sequence cut short at the end is not)."""
        if self.valid:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._fail(self._offset)
        return self.valid

    def _fail(self, offset: int) -> None:
        self.valid = False
        self.bad_offset = max(0, offset)


def _decodes(handle: IO[bytes], encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        while chunk := handle.read(CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _line_of(handle: IO[bytes], offset: int) -> int:
    """The 1-based line of a byte offset."""
    handle.seek(0)
    lines, read = 1, 0
    while read < offset and (chunk := handle.read(min(CHUNK, offset - read))):
        lines += chunk.count(b"\n")
        read += len(chunk)
    return lines


def refused(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(
        message,
        errors=[FieldError(field="body", rule="encoding", message=message)],
        extra={"encodings_accepted": ["UTF-8", "GB18030 (GBK)"]},
    )


def detect_encoding(handle: IO[bytes], utf8: Utf8Check) -> str:
    """UTF8 when the check found the file UTF-8, else GB18030 when the file (read from its
    start) decodes strictly as such; 422 naming the encoding otherwise. Leaves the handle at
    its start. Blocking (a GB18030 pass reads the file): call it in a thread."""
    try:
        if utf8.finish():
            return UTF8
        if utf8.head.startswith(_UTF16_BOMS):
            raise refused(
                "the file is UTF-16 (Excel's 'Unicode text'): save it as 'CSV UTF-8' or as CSV "
                "in GBK, and send it again"
            )
        handle.seek(0)
        if _decodes(handle, GB18030):
            return GB18030
        offset = utf8.bad_offset or 0
        handle.seek(offset)
        sample = handle.read(4).hex(" ")
        raise refused(
            f"the file is neither UTF-8 nor GB18030/GBK: the bytes at offset {offset} (line "
            f"{_line_of(handle, offset)}: {sample}) are not valid UTF-8, and the file is not "
            "valid GB18030 either; save it as 'CSV UTF-8' (or as CSV in GBK) and send it again"
        )
    finally:
        handle.seek(0)
