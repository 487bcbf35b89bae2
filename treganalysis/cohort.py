"""The cohort table: every sample x population with the sample sheet's columns."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import TregAnalysisError

__all__ = ["cohort_table"]


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
