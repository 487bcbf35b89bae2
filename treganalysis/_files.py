"""Atomic file output: a reader never sees half a file, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

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


def write_tsv_atomic(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write a table as tab-separated text (no index), atomically."""
    return write_bytes_atomic(path, table.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8"))
