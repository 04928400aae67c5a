"""Reading profile files (CSV, Parquet, JSON Lines): format detection, checks and clear errors."""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Literal, get_args

import duckdb
import numpy as np

from segment_export.errors import DataError
from segment_export.languages import N_, Text

FileFormat = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = get_args(FileFormat)

_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_COMPRESSED = (".gz", ".zst")
_HEAD_BYTES = 64 * 1024
# An error message must stay readable even when the offending line is 10 million characters.
_MAX_SNIPPET = 120
# DuckDB's default max_line_size. Checked up front: DuckDB needs seconds to reject a
# 10-million-character line and then names the wrong line.
MAX_LINE_BYTES = 2_000_000


def detect_format(path: Path, format: str | None = None) -> FileFormat:
    """The file's format: ``format`` when given, else from the extension (``.csv.gz`` counts)."""
    if format is not None:
        fmt = format.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet", "tsv": "csv"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise DataError(
                N_("Unknown profile file format %(format)s; use one of %(choices)s"),
                values={"format": repr(format), "choices": ", ".join(FORMATS)},
                field="format",
            )
        return fmt  # type: ignore[return-value]
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(
        N_("Cannot tell the format of %(file)s from its extension; "
           "name it .csv, .parquet or .jsonl, or pass --format %(choices)s"),
        values={"file": path.name, "choices": "|".join(FORMATS)},
        path=str(path),
    )


def check_file(path: Path, fmt: FileFormat) -> None:
    """Refuse files that are missing, empty, binary or in another text encoding, cheaply.

    Only the first 64 KiB are read here; a bad byte further on is located by
    :func:`locate_invalid_utf8` when DuckDB reports it.
    """
    if not path.exists():
        raise DataError(N_("The profile file %(file)s does not exist"), values={"file": str(path)},
                        path=str(path))
    if not path.is_file():
        raise DataError(N_("%(file)s is not a file"), values={"file": str(path)}, path=str(path))
    if path.stat().st_size == 0:
        raise DataError(N_("%(file)s is empty (0 bytes)"), values={"file": path.name},
                        path=str(path))
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            raise DataError(
                N_("%(file)s is not a Parquet file (it does not start with the PAR1 marker)"),
                values={"file": path.name},
                path=str(path),
            )
        return
    if any(path.name.lower().endswith(ext) for ext in _COMPRESSED):
        return  # DuckDB decompresses; the checks below would read compressed bytes
    if not head.strip():
        raise DataError(N_("%(file)s holds only blank space, no header or rows"),
                        values={"file": path.name}, path=str(path))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(head):
        raise DataError(
            N_("%(file)s is UTF-16 encoded; save it as UTF-8 (e.g. Excel: 'CSV UTF-8')"),
            values={"file": path.name},
            path=str(path),
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise DataError(
            N_("%(name)s is a binary file, not %(fmt)s text (NUL byte at byte offset %(nul)s, "
               "line %(line)s)"),
            values={"name": path.name, "fmt": fmt.upper(), "nul": nul, "line": line},
            path=str(path),
            offset=nul,
        )
    bad = _first_invalid_utf8(head, final=len(head) < _HEAD_BYTES)
    if bad is not None:
        raise _encoding_error(path, head, bad)
    if fmt == "csv" and (long_line := locate_long_line(path)) is not None:
        raise DataError(
            N_("%(name)s, line %(long_line)s: the line is longer than %(max_line_bytes)s bytes "
               "(a field holds far more text than a profile needs); shorten or remove it"),
            values={"name": path.name, "long_line": long_line,
                    "max_line_bytes": f"{MAX_LINE_BYTES:,}"},
            path=str(path),
            line=long_line,
        )


def _looks_utf16(head: bytes) -> bool:
    # ASCII text in UTF-16 without a BOM: every other byte is NUL.
    sample = head[:512]
    return len(sample) >= 8 and sample[1::2].count(0) > len(sample) // 4


def _first_invalid_utf8(data: bytes, *, final: bool) -> int | None:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _encoding_error(path: Path, data: bytes, offset: int) -> DataError:
    line = data.count(b"\n", 0, offset) + 1
    return DataError(
        N_("%(name)s is not UTF-8: byte 0x%(data)s at byte offset %(offset)s (line %(line)s) "
           "cannot be decoded; save the file as UTF-8 (it may be Latin-1 / Windows-1252)"),
        values={"name": path.name, "data": f"{data[offset]:02x}", "offset": offset, "line": line},
        path=str(path),
        offset=offset,
        line=line,
    )


def locate_invalid_utf8(path: Path) -> DataError | None:
    """Scan the whole file for the first byte that is not UTF-8 (only on the error path)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    lines = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # The decoder may hold up to 3 bytes of an unfinished sequence from the last chunk.
                pending = len(decoder.getstate()[0])
                start = max(exc.start - pending, 0)
                line = lines + chunk.count(b"\n", 0, start) + 1
                return DataError(
                    N_("%(name)s is not UTF-8: byte 0x%(chunk)s at byte offset %(offset)s (line "
                       "%(line)s) cannot be decoded; save the file as UTF-8"),
                    values={"name": path.name, "chunk": f"{chunk[start]:02x}",
                            "offset": offset + start, "line": line},
                    path=str(path),
                    offset=offset + start,
                    line=line,
                )
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return None


def locate_long_line(path: Path, limit: int = MAX_LINE_BYTES) -> int | None:
    """The number of the first line longer than ``limit`` bytes, found with numpy."""
    line, carried = 1, 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            starts = np.concatenate(([0], ends + 1))
            lengths = np.append(ends, len(chunk)) - starts
            lengths[0] += carried
            over = np.flatnonzero(lengths[:-1] > limit)
            if over.size:
                return line + int(over[0])
            if lengths[-1] > limit:
                return line + len(ends)
            line += len(ends)
            carried = int(lengths[-1])
    return None


def reader_sql(fmt: FileFormat) -> str:
    """The DuckDB table function reading a file of this format; the path is parameter ``?``."""
    if fmt == "csv":
        # A profile file always has a header; the sniffer's guess fails on all-text files.
        return "read_csv(?, header = true)"
    if fmt == "parquet":
        return "read_parquet(?)"
    return "read_json(?, format = 'newline_delimited')"


def csv_header(path: Path) -> tuple[str, list[str]] | None:
    """The delimiter and column names of a CSV file's first line, read without DuckDB."""
    import csv

    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline(1 << 20)
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    delim = max(counts, key=lambda d: counts[d])
    if counts[delim] == 0:
        return None
    names = next(csv.reader([first.rstrip("\r\n")], delimiter=delim))
    return delim, names


def strict_csv_sql(delim: str, names: list[str]) -> tuple[str, list[object]]:
    """A read_csv call with nothing left to guess, so DuckDB names the first ragged line."""
    columns = {name or f"column{i}": "VARCHAR" for i, name in enumerate(names)}
    return (
        "read_csv(?, auto_detect = false, header = true, delim = ?, quote = '\"', "
        "escape = '\"', columns = ?)",
        [delim, columns],
    )


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_JSON_AT = re.compile(r"Malformed JSON in file \"[^\"]*\", at byte (\d+) in line (\d+): ([^\n]*)")
_COLUMNS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CONVERT = re.compile(r'Error when converting column "([^"]*)"\. (Could not convert [^\n]*)')
_MAX_LINE = re.compile(r"Maximum line size of (\d+) bytes exceeded")


def _at_line(name: str, line: int) -> Text:
    """``customers.csv, line 12`` in the reader's language (the line number as written)."""
    return Text(((N_("%(name)s, line %(line)s"), {"name": name, "line": str(line)}),))


def translate_error(exc: duckdb.Error, path: Path, fmt: FileFormat) -> DataError:
    """Turn DuckDB's reader error into a short message naming the file, line and column."""
    text = str(exc)
    name = path.name
    if "Invalid unicode" in text or "not utf-8" in text.lower():
        located = locate_invalid_utf8(path)
        if located is not None:
            return located
    line_match = _LINE.search(text)
    line = int(line_match.group(1)) if line_match else None
    where = _at_line(name, line) if line is not None else Text(((name, {}),))
    if match := _COLUMNS.search(text):
        return DataError(
            N_("%(where)s: expected %(expected)s fields but found %(found)s (every row needs as "
               "many fields as the header; check for a stray delimiter or quote)"),
            values={"where": where, "expected": match.group(1), "found": match.group(2)},
            path=str(path),
            line=line,
        )
    if match := _CONVERT.search(text):
        column, detail = match.group(1), _snippet(match.group(2))
        return DataError(
            N_("%(where)s, column %(column)s: %(detail)s. The column's type was inferred from "
               "the first rows; make the values consistent"),
            values={"where": where, "column": repr(column), "detail": detail},
            path=str(path),
            line=line,
            column=column,
        )
    if match := _MAX_LINE.search(text):
        limit = int(match.group(1))
        # DuckDB counts this line from where its sniffer stopped; find the real one.
        long_line = locate_long_line(path, limit)
        if long_line is not None:
            line = long_line
            where = _at_line(name, line)
        return DataError(
            N_("%(where)s: the line is longer than %(limit)s bytes (a field holds far more text "
               "than a profile needs); shorten or remove it"),
            values={"where": where, "limit": f"{limit:,}"},
            path=str(path),
            line=line,
        )
    if match := _JSON_AT.search(text):
        return DataError(
            N_("%(name)s, line %(line)s: malformed JSON (%(problem)s) at byte %(byte)s; each "
               "line must hold one JSON object"),
            values={"name": name, "line": match.group(2),
                    "problem": match.group(3).strip() or 'syntax', "byte": match.group(1)},
            path=str(path),
            line=int(match.group(2)),
        )
    if "too small to be a Parquet file" in text or "No magic bytes" in text:
        return DataError(N_("%(file)s is not a valid Parquet file"), values={"file": name},
                         path=str(path))
    first = _snippet(text.split("\n", 1)[0])
    return DataError(N_("%(where)s: cannot be read as %(fmt)s: %(first)s"),
                     values={"where": where, "fmt": fmt.upper(), "first": first}, path=str(path))


def _snippet(text: str) -> str:
    return text if len(text) <= _MAX_SNIPPET else text[:_MAX_SNIPPET] + "…"
