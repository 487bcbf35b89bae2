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


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception]) -> dict:
    """A YAML file that must hold a mapping; ``error(message)`` names the file and the problem."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read the {what}: {exc}") from None
    if not isinstance(loaded, dict):
        raise error(f"{path}: the {what} must be a mapping of settings")
    return loaded
