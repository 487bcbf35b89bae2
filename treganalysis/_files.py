"""Atomic file output: a reader never sees half a file, and a failed write leaves nothing behind."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a gating job writes its table without importing pandas
    import pandas as pd


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_tsv_atomic(path: str | os.PathLike, table: "pd.DataFrame") -> Path:
    """Write a table as tab-separated text (no index), atomically."""
    return write_bytes_atomic(path, table.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8"))


def records_tsv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Records as tab-separated text, the text ``pandas.DataFrame(rows).to_csv(sep="\\t",
    index=False)`` writes for them (columns in order of first appearance, NaN and None empty,
    floats as ``repr``, fields quoted only where needed), without importing pandas."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def read_records_tsv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows (as text) of a tab-separated table, without importing pandas: the
    reverse of :func:`records_tsv`. A byte-order mark is skipped, as pandas skips it; a row
    with more fields than columns raises ValueError naming its line (a short row's missing
    fields are None)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = []
        for row in reader:
            if None in row:
                raise ValueError(f"{Path(path).name} line {reader.line_num} has more fields than columns")
            rows.append(row)
        return list(reader.fieldnames or []), rows


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception]) -> dict:
    """A YAML file that must hold a mapping; ``error(message)`` names the file and the problem."""
    import yaml

    try:
        # libyaml's loader when PyYAML has it: the same documents, ten times faster
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read the {what}: {exc}") from None
    if not isinstance(loaded, dict):
        raise error(f"{path}: the {what} must be a mapping of settings")
    return loaded
