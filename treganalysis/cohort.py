"""The cohort table: every sample x population with the sample sheet's columns."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import TregAnalysisError

__all__ = ["cohort_table", "provenance_table"]


def cohort_table(sheet: pd.DataFrame, results: str | os.PathLike) -> pd.DataFrame:
    """Join each sample's ``populations.tsv`` with its row of the sample sheet.

    Parameters
    ----------
    sheet : DataFrame
        From :func:`treganalysis.sheet.load_sample_sheet`.
    results : path
        Folder holding ``{sample_id}/populations.tsv``.

    Returns
    -------
    pandas.DataFrame
        ``sample_id``, the sheet's columns (``subject, timepoint, day`` first, ``fcs`` last), then
        the population table's columns; one row per sample and population.
    """
    results = Path(results)
    frames = []
    for sample_id, row in sheet.iterrows():
        path = results / str(sample_id) / "populations.tsv"
        if not path.is_file():
            raise TregAnalysisError(f"{path}: population table of sample {sample_id} not found")
        table = pd.read_csv(path, sep="\t")
        for column in reversed([c for c in sheet.columns if c != "fcs"]):
            table.insert(0, column, row[column])
        table["fcs"] = row["fcs"]
        frames.append(table)
    order = ["sample_id", "subject", "timepoint", "day"]
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=order)
    return combined[[*order, *[c for c in combined.columns if c not in order]]]


def provenance_table(sheet: pd.DataFrame, results: str | os.PathLike, verify: bool = True) -> pd.DataFrame:
    """Per sample: the input file's SHA-256 at gating time (and now), package versions, config hash.

    Parameters
    ----------
    sheet : DataFrame
        From :func:`treganalysis.sheet.load_sample_sheet`.
    results : path
        Folder holding ``{sample_id}/gates.json``.
    verify : bool
        Hash each FCS file again and compare with the hash recorded when it was gated.

    Returns
    -------
    pandas.DataFrame
        ``sample_id, fcs, input_sha256, input_bytes, input_sha256_now, input_changed, status,
        qc_status, treganalysis, config_sha256`` and one column per recorded package version
        (numpy, scipy, pandas, scikit-learn, flowio, flowkit, python). ``input_changed`` is True
        when the file no longer has the content that was gated: its results are stale.
    """
    import json

    from .gating.strategy import _sha256

    rows = []
    for sample_id, row in sheet.iterrows():
        record: dict = {}
        path = Path(results) / str(sample_id) / "gates.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        prov = record.get("provenance") or {}
        fcs = Path(str(row["fcs"]))
        entry = {"sample_id": sample_id, "fcs": str(fcs), "input_sha256": prov.get("sha256"),
                 "input_bytes": prov.get("bytes"), "status": "failed" if record.get("error") else (
                     "gated" if record else "missing"),
                 "qc_status": (record.get("qc") or {}).get("status"), "treganalysis": prov.get("package_version"),
                 "config_sha256": prov.get("config_sha256"), **(prov.get("versions") or {})}
        if verify:
            now = _sha256(fcs) if fcs.is_file() else None
            entry["input_sha256_now"] = now
            entry["input_changed"] = bool(entry["input_sha256"] and now != entry["input_sha256"])
        rows.append(entry)
    return pd.DataFrame(rows)
