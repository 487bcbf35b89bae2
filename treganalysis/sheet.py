"""The sample sheet: which FCS file is which subject's visit.

Columns (TSV): ``sample_id, subject, timepoint, day, fcs`` required; ``batch, arm,
lymphocytes_per_ul, role`` optional; others are kept and carried into the cohort table. A
relative ``fcs`` path is read from the sheet's folder. Every problem of a sheet is reported at
once, with its row, before anything runs.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import TregAnalysisError

if TYPE_CHECKING:  # imported where a table is built: the workflow imports SAFE_ID without it
    import pandas as pd

__all__ = ["SheetError", "load_sample_sheet", "REQUIRED_COLUMNS", "ROLES"]

REQUIRED_COLUMNS = ("sample_id", "subject", "timepoint", "day", "fcs")
ROLES = ("patient", "healthy")


class SheetError(TregAnalysisError):
    """A sample sheet with problems; the message lists every one with its row."""


SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # sample ids (and pooling groups) name files and folders


def load_sample_sheet(path: str | os.PathLike, check_files: bool = True) -> pd.DataFrame:
    """Read and check a sample sheet.

    Parameters
    ----------
    path : path
        Tab-separated sample sheet.
    check_files : bool
        Also check that every FCS file exists.

    Returns
    -------
    pandas.DataFrame
        One row per sample, indexed by ``sample_id``; ``fcs`` made absolute; ``day`` numeric.

    Raises
    ------
    SheetError
        Listing every problem: a line that is not one row, a field past the header's columns, a
        column named twice, missing columns, duplicate or empty ``sample_id``, a ``day`` that is
        not a number, an unknown ``role``, FCS files that do not exist. Rows are numbered as in
        the file (the header is line 1).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SheetError(f"{path}: sample sheet not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise SheetError(f"{path}: not a UTF-8 text file: {exc}") from None
    # comment lines (starting with #) and blank lines are skipped; the others keep their file line
    kept = [(n, text) for n, text in enumerate(lines, start=1) if text.strip() and not text.lstrip().startswith("#")]
    if len(kept) < 2:
        raise SheetError(f"{path}: the sample sheet has no samples (a header line and one line per FCS file are "
                         f"needed: {', '.join(REQUIRED_COLUMNS)})")
    problems: list[str] = []
    sheet = _text_table(kept, problems)
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        separator = next((c for c in (",", ";") if len(sheet.columns) == 1 and c in sheet.columns[0]), None)
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(found: {', '.join(sheet.columns)}; needed: {', '.join(REQUIRED_COLUMNS)})"
                        + (f"; the sheet is tab-separated, and this header is separated by {separator!r}"
                           if separator else ""))
    line = {i: kept[i + 1][0] for i in range(len(sheet))}  # file line of each row
    if "sample_id" in sheet:
        for i, sample in sheet["sample_id"].items():
            if not sample:
                problems.append(f"line {line[i]}: empty sample_id")
            elif not SAFE_ID.fullmatch(sample):
                problems.append(f"line {line[i]}: sample_id {sample!r} is used in file names: use letters, digits, "
                                "'.', '_' and '-', starting with a letter or digit")
        duplicated = sheet["sample_id"][sheet["sample_id"].duplicated(keep=False) & (sheet["sample_id"] != "")]
        for sample, rows in duplicated.groupby(duplicated).groups.items():
            problems.append(f"lines {', '.join(str(line[i]) for i in rows)}: duplicate sample_id {sample!r}")
    if "day" in sheet:
        days = pd.to_numeric(sheet["day"], errors="coerce")
        for i in sheet.index[days.isna() | ~np.isfinite(days.fillna(0.0))]:
            problems.append(f"line {line[i]}: day {sheet.at[i, 'day']!r} is not a number (days from the first IL-2 dose)")
        sheet["day"] = days
    if "lymphocytes_per_ul" in sheet:
        counts = pd.to_numeric(sheet["lymphocytes_per_ul"].replace("", None), errors="coerce")
        bad = (counts.isna() & (sheet["lymphocytes_per_ul"] != "")) | np.isinf(counts)
        for i in sheet.index[bad]:
            problems.append(f"line {line[i]}: lymphocytes_per_ul {sheet.at[i, 'lymphocytes_per_ul']!r} is not a number")
        for i in sheet.index[counts < 0]:
            problems.append(f"line {line[i]}: lymphocytes_per_ul {sheet.at[i, 'lymphocytes_per_ul']!r} is negative "
                            "(lymphocytes per microlitre of blood)")
        sheet["lymphocytes_per_ul"] = counts
    if "role" in sheet:
        for i in sheet.index[~sheet["role"].isin([*ROLES, ""])]:
            problems.append(f"line {line[i]}: unknown role {sheet.at[i, 'role']!r} (use {' or '.join(ROLES)})")
    if "fcs" in sheet:
        absolute = [str((path.parent / f).resolve()) if f else "" for f in sheet["fcs"]]
        for i, f in zip(sheet.index, absolute):
            if not f:
                problems.append(f"line {line[i]}: empty fcs")
            elif check_files and not Path(f).is_file():
                problems.append(f"line {line[i]}: FCS file not found: {sheet.at[i, 'fcs']} (looked for {f})")
        sheet["fcs"] = absolute
    if problems:
        raise SheetError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the sample sheet:\n  - "
                         + "\n  - ".join(problems))
    return sheet.set_index("sample_id", drop=False)


def _text_table(kept: list[tuple[int, str]], problems: list[str]) -> pd.DataFrame:
    """The header and rows (``kept``: file line and text) as a table of stripped text.

    Each line is one row (csv quoting, tab-separated). A short row is filled with empty fields;
    empty fields past the header's columns (trailing tabs of a spreadsheet export) and columns
    without a name or values are dropped. Problems (a line that is not one row, a field past the
    header's columns, a column named twice or holding values without a name) are added to
    ``problems``, keeping the first column of a name, so that the other checks still run.
    """
    import pandas as pd

    rows = [_fields(n, text, problems) for n, text in kept]
    header, body = rows[0], rows[1:]
    width = len(header)
    for (n, _), fields in zip(kept[1:], body):
        extra = [f for f in fields[width:] if f]
        if extra:
            problems.append(f"line {n}: {len(fields)} fields where the header (line {kept[0][0]}) names {width} "
                            f"columns: {', '.join(repr(f) for f in extra)} past the last column")
    keep = []
    for j, name in enumerate(header):
        if not name:
            if any(j < len(fields) and fields[j] for fields in body):
                problems.append(f"line {kept[0][0]}: column {j + 1} holds values but has no name in the header")
        elif name in header[:j]:
            problems.append(f"line {kept[0][0]}: column {name!r} is named twice in the header (columns "
                            f"{header.index(name) + 1} and {j + 1})")
        else:
            keep.append(j)
    return pd.DataFrame([[fields[j] if j < len(fields) else "" for j in keep] for fields in body],
                        columns=[header[j] for j in keep], dtype=object)


def _fields(n: int, text: str, problems: list[str]) -> list[str]:
    """The stripped fields of file line ``n``; a line that is not one row of tab-separated
    fields (a quoted cell that does not end on its line, a NUL character, a field over the csv
    module's size limit) is a problem, and its fields are then split at every tab."""
    if "\x00" in text:
        problems.append(f"line {n}: a NUL character: is this a text file?")
        text = text.replace("\x00", "")
    try:
        fields = next(csv.reader([text], delimiter="\t", strict=True), [])
    except csv.Error as exc:
        problems.append(f"line {n}: not one row of tab-separated fields ({exc}); the sheet has one line per sample, "
                        "so a quoted cell must end on its line")
        fields = text.split("\t")
    return [field.strip() for field in fields]
