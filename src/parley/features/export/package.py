"""The ZIP package an export writes: README.md, messages.csv, attachments/, metadata.json.

Written member by member into a file on disk, so a conversation of any length is streamed
through in pages and never held in memory; every member's SHA-256 goes into metadata.json.
`zipfile` is blocking: callers run these methods in a worker thread.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import IO, Any

# Cells a spreadsheet would run as a formula get a leading apostrophe (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Hashing(io.RawIOBase):
    """A write-only stream that passes bytes on and keeps their SHA-256 and count."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.digest.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)
        return len(chunk)


class Package:
    """One ZIP being written; `files` maps each member to its checksum, size and extras."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.files: dict[str, dict[str, Any]] = {}
        self._current: tuple[str, IO[bytes], _Hashing, dict[str, Any]] | None = None
        self._csv: tuple[io.TextIOWrapper, Any] | None = None

    # -- one member at a time (zipfile allows a single open member while writing) -------------

    def begin(self, name: str, **extra: Any) -> None:
        self.end()
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        raw = self._zip.open(info, "w", force_zip64=True)
        self._current = (name, raw, _Hashing(raw), dict(extra))

    def write(self, data: bytes) -> None:
        assert self._current is not None
        self._current[2].write(data)

    def end(self) -> None:
        if self._csv is not None:
            text, _ = self._csv
            text.flush()
            text.detach().detach()  # leave the member stream open: closed just below
            self._csv = None
        if self._current is None:
            return
        name, raw, hashing, extra = self._current
        raw.close()
        self.files[name] = {"sha256": hashing.digest.hexdigest(), "bytes": hashing.size, **extra}
        self._current = None

    # -- conveniences -------------------------------------------------------------------------

    def begin_csv(self, name: str, header: list[str]) -> None:
        self.begin(name)
        assert self._current is not None
        text = io.TextIOWrapper(
            io.BufferedWriter(self._current[2]),
            encoding="utf-8",
            newline="",  # type: ignore[arg-type]
        )
        text.write("\ufeff")  # spreadsheets read the file as UTF-8
        self._csv = (text, csv.writer(text))
        self._csv[1].writerow(header)

    def write_rows(self, rows: list[list[Any]]) -> None:
        assert self._csv is not None
        self._csv[1].writerows([spreadsheet_safe(cell) for cell in row] for row in rows)

    def write_text(self, name: str, text: str) -> None:
        self.begin(name)
        self.write(text.encode("utf-8"))
        self.end()

    def write_json(self, name: str, value: Any) -> None:
        self.write_text(name, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        self.end()
        self._zip.close()

    def abandon(self) -> None:
        """Close and delete a package that failed half-way (no half-written file stays)."""
        try:
            self._current = None
            self._csv = None
            self._zip.close()
        except Exception:  # noqa: S110 - the file goes anyway
            pass
        self.path.unlink(missing_ok=True)
