"""A user's data file read into records, each with where it is in the file.

Read here rather than through ``datasets.load_dataset`` so that an error can name the line (JSON
Lines, CSV) or row (CSV, Parquet) it is on, and the text encoding is the user's to choose: a
library parse error gives a byte position at best. A record that cannot be parsed (a broken JSON
line, a CSV row with too many values) becomes a ``RowProblem`` in place of the record, so that
``on_bad_rows='skip'`` can leave it out; a file that cannot be read at all is a ``DataError``.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from lorakit.data.rows import EXPECTED_COLUMNS, FORMAT_COLUMNS, DataError, RowProblem, kind

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_JSONL_FIX = 'each line must be one JSON object, e.g. {"prompt": "...", "completion": "..."}'


@dataclass
class Table:
    """A file's columns (in order of first appearance) and its records as (where, dict or RowProblem)."""
    columns: list
    records: list


def read_file(path: Path, encoding: str = "utf-8") -> Table:
    """``path`` (one of FILE_SUFFIXES) as a Table; ``encoding`` applies to the text formats."""
    src = repr(str(path))
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"dataset: {src} has an unsupported type {suffix or '(no suffix)'}; "
                        f"use one of {', '.join(FILE_SUFFIXES)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"dataset: cannot read {src}: {exc.strerror or exc}") from None
    if not data.strip():
        raise DataError(f"dataset: {src} is empty; it needs {EXPECTED_COLUMNS}")
    if suffix == ".parquet":
        return _parquet(path, src)
    text = decode(data, src, encoding)
    if suffix == ".jsonl":
        return _jsonl(text)
    if suffix == ".json":
        return _json(text, src)
    return _csv(text, src)


def decode(data: bytes, src: str, encoding: str) -> str:
    """``data`` as text; a DataError naming the first undecodable byte and its line, with the fix."""
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except (LookupError, TypeError, ValueError):
        raise DataError(f"dataset: data_encoding {encoding!r} is not a text encoding Python knows "
                        "(e.g. 'utf-8', 'cp1252', 'latin-1')") from None
    try:
        return data.decode("utf-8-sig" if utf8 else encoding)  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        label = "UTF-8" if utf8 else repr(encoding)
        raise DataError(f"dataset: {src} is not {label} (byte 0x{data[exc.start]:02x} on line {line}): "
                        f"re-save it as UTF-8, or pass data_encoding={_guess(data)!r} (or the encoding "
                        "it was saved in)") from None
    except LookupError:  # 'rot13', 'hex': codecs that are not bytes -> text
        raise DataError(f"dataset: data_encoding {encoding!r} is not a text encoding (e.g. 'utf-8', "
                        "'cp1252', 'latin-1')") from None


def _guess(data: bytes) -> str:
    """The likeliest encoding of a file that is not UTF-8: UTF-16 by its byte-order mark, else the
    Windows code page a spreadsheet export uses when it decodes, else Latin-1 (which always does)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _jsonl(text: str, where: str = "line") -> Table:
    columns: dict = {}
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # blank lines (a trailing one, say) hold no record
        records.append((f"{where} {n}", _object(line, columns)))
    return Table(list(columns), records)


def _object(line: str, columns: dict):
    """One JSON Lines record, or the RowProblem that says why it is not one."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return RowProblem(None, f"not valid JSON ({exc.msg} at column {exc.colno})", _JSONL_FIX)
    except RecursionError:
        return RowProblem(None, "not valid JSON (nested too deeply)", _JSONL_FIX)
    if not isinstance(value, dict):
        return RowProblem(None, f"expected a JSON object {{...}}, got {kind(value)}", _JSONL_FIX)
    columns.update(dict.fromkeys(value))
    return value


def _json(text: str, src: str) -> Table:
    """A list of records, or a mapping of equal-length columns; JSON Lines under a .json name too."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one value, then more: JSON Lines in a .json file
            return _jsonl(text)
        raise DataError(f"dataset: {src} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        "expected a list of records [{\"prompt\": ..., \"completion\": ...}, ...]") from None
    except RecursionError:
        raise DataError(f"dataset: {src} is not valid JSON (nested too deeply)") from None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"dataset: {src} has columns of different lengths ({lengths}); every column "
                            "needs one value per row")
        data = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list):
        raise DataError(f"dataset: {src} holds {kind(data)}; expected a list of records "
                        "[{\"prompt\": ..., \"completion\": ...}, ...] or one JSON object a line (.jsonl)")
    columns: dict = {}
    records = []
    for n, value in enumerate(data, 1):
        if isinstance(value, dict):
            columns.update(dict.fromkeys(value))
        else:
            value = RowProblem(None, f"expected a JSON object {{...}}, got {kind(value)}")
        records.append((f"record {n}", value))
    return Table(list(columns), records)


def _csv(text: str, src: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        records, start, n = [], reader.line_num + 1, 0
        for values in reader:
            line, start = start, reader.line_num + 1  # a quoted value may span lines
            if not any(v.strip() for v in values):
                continue
            n += 1
            records.append((f"row {n} (line {line})", _csv_record(header, values)))
    except csv.Error as exc:
        raise DataError(f"dataset: {src} line {reader.line_num}: not valid CSV ({exc})") from None
    duplicated = sorted({h for h in header if header.count(h) > 1 and h})
    if duplicated:
        raise DataError(f"dataset: {src}'s header names {', '.join(map(repr, duplicated))} more than once")
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        raise DataError(f"dataset: {src} has one column {header[0]!r}: it is not comma-separated; save it "
                        "as CSV with commas, with the columns 'prompt' and 'completion'")
    return Table([h for h in header if h], records)


def _csv_record(header: list, values: list):
    extra = [v for v in values[len(header):] if v.strip()]
    if extra:
        return RowProblem(None, f"{len(values)} values but the header names {len(header)} columns",
                          "put a value that holds a comma or a line break in double quotes")
    return {h: v for h, v in zip(header, values, strict=False) if h}


def _parquet(path: Path, src: str) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's ArrowInvalid, OSError, ...: not a Parquet file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"dataset: {src} could not be read as Parquet ({first})") from None
    columns = list(table.column_names)
    used = [c for c in FORMAT_COLUMNS if c in columns]
    records = [(f"row {n}", r) for n, r in enumerate(table.select(used).to_pylist(), 1)]
    return Table(columns, records)


def from_dataset(ds) -> Table:
    """A ``datasets.Dataset`` (a hub dataset, a ``save_to_disk`` folder) as a Table."""
    return Table(list(ds.column_names), [(f"row {n}", r) for n, r in enumerate(ds, 1)])
