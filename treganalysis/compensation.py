"""Spillover matrices and compensation.

Compensated events are ``observed @ inv(S)`` on the channels the matrix names (rows: the dye's
own detector; columns: the detectors it spills into), the flowCore/FlowKit convention. The
matrix comes from the file's keyword (``$SPILLOVER``, ``SPILL``, ``$SPILL``) or from a CSV file
in FlowJo/FlowKit layout, and where it came from is recorded on the result.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpilloverError
from .sample import Sample, Spillover

__all__ = ["compensate", "read_spillover_csv", "parse_spill_keyword", "load_spillover", "SPILLOVER_KEYWORDS"]

# Keywords that carry the acquisition matrix: FCS 3.1's, then the FCS 3.0 vendors' forms.
SPILLOVER_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL", "SPILLOVER")

# A matrix whose condition number exceeds this cannot be inverted without amplifying float noise
# into the compensated events; such a matrix is a broken export, not a real instrument.
_MAX_CONDITION = 1e10
# Rows per block when applying the inverse: the block's transpose and float64 product stay in cache.
_BLOCK = 1 << 13
_COMP_PREFIXES = ("FJComp-", "Comp-")


def parse_spill_keyword(value: str, source: str = "keyword") -> Spillover:
    """Parse a ``$SPILLOVER``/``SPILL`` keyword value: ``n,name_1..name_n,f_11..f_nn`` (row-major).

    Raises
    ------
    SpilloverError
        If the count is not a whole number, the value count is not n + n*n, or a value is not numeric.
    """
    tokens = [t.strip() for t in value.strip().strip(",").split(",")]
    try:
        count = float(tokens[0])
    except ValueError:
        count = math.nan
    if not (math.isfinite(count) and count.is_integer()):
        raise SpilloverError(f"{source}: starts with {tokens[0]!r}, not the channel count")
    n = int(count)
    if n < 1 or len(tokens) != 1 + n + n * n:
        raise SpilloverError(f"{source}: states {n} channels, which needs {1 + n + n * n} fields, but has {len(tokens)}")
    names = tokens[1 : n + 1]
    try:
        matrix = np.array([float(t) for t in tokens[n + 1 :]], dtype=np.float64).reshape(n, n)
    except (ValueError, OverflowError) as exc:
        raise SpilloverError(f"{source}: {exc}") from None
    return Spillover(matrix, tuple(names), source)


def read_spillover_csv(path: str | os.PathLike) -> Spillover:
    """Read a spillover matrix file: a header row of channel names, then one row per channel.

    Accepted layouts: FlowKit/FlowJo CSV or tab-separated exports (header of ``$PnN`` names,
    rows in the same order), R-style tables whose rows start with the channel name (rows are
    then matched to the header by name), and whitespace-separated quoted tables (flowCore).

    Raises
    ------
    SpilloverError
        The file is missing, not square, names a channel twice, or holds a non-numeric value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpilloverError(f"{path}: cannot read the spillover matrix file: {exc}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    delimiter = _delimiter(lines[0]) if lines else ","
    try:
        rows = [_split_row(line, delimiter) for line in lines]
    except ValueError as exc:  # an unbalanced quote
        raise SpilloverError(f"{path}: cannot split the matrix file into cells: {exc}") from None
    if delimiter == ";":
        rows = [rows[0]] + [[c.replace(",", ".") for c in row] for row in rows[1:]]  # decimal commas
    if len(rows) < 2:
        raise SpilloverError(f"{path}: a spillover matrix file needs a header row of channel names and one row per channel")
    header = [c for c in rows[0] if c]
    if header and header[0].startswith("#"):
        header[0] = header[0].lstrip("#").strip()
    body = rows[1:]
    labels = [r[0] for r in body] if all(r and not _is_number(r[0]) for r in body) else None
    if labels is not None:
        body = [r[1:] for r in body]
    n = len(header)
    if len(set(header)) != n:
        raise SpilloverError(f"{path}: the header names a channel twice: {header}")
    values = []
    for i, row in enumerate(body, start=2):
        while row and row[-1] == "":
            row = row[:-1]  # trailing delimiters
        if len(row) != n:
            raise SpilloverError(f"{path}: row {i} has {len(row)} values but the header names {n} channels; the matrix must be square")
        try:
            values.append([float(v) for v in row])
        except ValueError:
            bad = next(v for v in row if not _is_number(v))
            raise SpilloverError(f"{path}: row {i} holds {bad!r}, which is not a number") from None
    if len(values) != n:
        raise SpilloverError(f"{path}: {len(values)} rows for {n} channels; the matrix must be square")
    matrix = np.array(values, dtype=np.float64)
    if labels is not None:
        if sorted(labels) != sorted(header):
            raise SpilloverError(f"{path}: row names {labels} differ from the header's channels {header}")
        matrix = matrix[[labels.index(h) for h in header]]
    return Spillover(matrix, tuple(header), f"file {path}")


_KEYWORD_TEXT = re.compile(r"^\s*\d+\s*,[^\n]*,")


def load_spillover(spillover: "Spillover | str | os.PathLike") -> Spillover:
    """A :class:`Spillover` as given, read from a matrix file path, or parsed from keyword text.

    Parameters
    ----------
    spillover : Spillover, path, or str
        A matrix file (CSV/TSV, see :func:`read_spillover_csv`) or the text of a ``$SPILLOVER``
        keyword (``"2,FL1-A,FL2-A,1,0.1,0.05,1"``).
    """
    if isinstance(spillover, Spillover):
        return spillover
    if isinstance(spillover, str) and _KEYWORD_TEXT.match(spillover) and not Path(spillover).exists():
        return parse_spill_keyword(spillover, source="keyword text")
    if isinstance(spillover, (str, os.PathLike)):
        return read_spillover_csv(spillover)
    raise TypeError(f"spillover must be a Spillover or a path to a matrix file, not {type(spillover).__name__}")


def compensate(sample: Sample, spillover: "Spillover | str | os.PathLike | None" = None, *,
               required: bool = False, copy: bool = True) -> Sample:
    """Compensate the channels a spillover matrix names.

    Parameters
    ----------
    sample : Sample
        Events as read (uncompensated).
    spillover : Spillover, path or None
        The matrix to use: a :class:`Spillover`, a path to a CSV/TSV matrix file, or None for
        the matrix in the file's own keyword (``sample.spillover``).
    required : bool
        Refuse a sample without any matrix instead of passing it on uncompensated.
    copy : bool
        False lets the sample's own events be overwritten with the compensated values when
        they are column-major float32 (``read_fcs(path, order="F")``): no second event matrix.
        Only for a sample read for this call: the returned sample shares its events, and the
        given one is marked compensated (compensating it again is refused).

    Returns
    -------
    Sample
        A new sample whose compensated columns replace the originals (in the given sample's
        own events with ``copy=False``, see above). ``result.compensation``
        records the matrix source, the channels, and the condition number, or why compensation
        was skipped.

    Raises
    ------
    SpilloverError
        The matrix names channels the file lacks, is not square, not finite or singular; or no
        matrix exists and ``required`` is set.

    Notes
    -----
    ``observed = true @ S`` for each event, so ``true = observed @ inv(S)``. The inverse is
    computed once per matrix and applied block by block in float64 (as FlowKit's
    ``solve(S.T, X.T).T``) and stored back as float32.

    The result's events are column-major (``events.T`` is C-contiguous): every later stage reads
    whole channels (transforms, gates, medians), which is several times faster on contiguous
    columns than on a row-major matrix's strided ones. The transpose is done in the same pass.
    """
    where = sample.name
    if sample.compensation is not None and sample.compensation.get("applied"):
        raise SpilloverError(f"{where}: already compensated ({sample.compensation.get('source')}); compensate the raw sample")
    if spillover is None:
        if sample.spillover is None:
            present = [k for k in SPILLOVER_KEYWORDS if sample.metadata.get(k, "").strip()]
            reason = (f"the file's {present[0]} keyword is unreadable" if present else
                      "the file has no $SPILLOVER/SPILL keyword") + " and no matrix file was given"
            if required:
                raise SpilloverError(f"{where}: cannot compensate: {reason}; give a matrix file (compensation: matrix: in the config)")
            warnings.warn(f"{where}: not compensated: {reason}", stacklevel=2)
            return sample.with_events(sample.events, compensation={"applied": False, "reason": reason})
        spill = sample.spillover
    else:
        spill = load_spillover(spillover)
    columns = _match_channels(sample, spill)
    inverse, condition = _checked_inverse(spill, where)
    raw = sample.events
    in_place = not copy and raw.dtype == np.float32 and raw.flags.f_contiguous and raw.flags.writeable
    events = (_compensate_columns_in_place if in_place else _compensated_columns)(raw, columns, inverse)
    record: dict[str, Any] = {
        "applied": True,
        "source": spill.source,
        "channels": [sample.channels[j] for j in columns],
        "matrix_channels": list(spill.channels),
        "matrix": np.asarray(spill.matrix, dtype=np.float64).tolist(),
        "identity": spill.is_identity,
        "condition_number": condition,
    }
    if in_place:
        # the sample given holds compensated values now: say so, so that compensating or gating
        # it again is refused instead of compensating twice (the dataclass is frozen)
        object.__setattr__(sample, "compensation", {**record, "in_place": True})
    return sample.with_events(events, compensation=record)


def _compensated_columns(raw: np.ndarray, columns: list[int], inverse: np.ndarray) -> np.ndarray:
    """``raw`` with ``raw[:, columns] @ inverse`` in place of those columns, column-major.

    One pass over the row-major input in blocks of rows: each block is transposed into the
    channel-by-event output (cache-sized pieces, unlike a whole-matrix ``asfortranarray``) and
    its compensated rows are replaced by a float64 product there.
    """
    n, p = raw.shape
    out = np.empty((p, n), dtype=np.float32)  # out.T is the (n, p) result, column-major
    cols = _columns_index(columns)
    transposed_inverse = np.ascontiguousarray(inverse.T)
    for start in range(0, n, _BLOCK):
        rows = slice(start, start + _BLOCK)
        out[:, rows] = raw[rows].T
        out[cols, rows] = transposed_inverse @ out[cols, rows].astype(np.float64)
    return out.T


def _compensate_columns_in_place(events: np.ndarray, columns: list[int], inverse: np.ndarray) -> np.ndarray:
    """``events[:, columns] @ inverse`` written back into a column-major ``events``, block by
    block of events (each channel's block is contiguous), in float64 as :func:`_compensated_columns`."""
    by_channel = events.T  # (p, n), C-contiguous
    cols = _columns_index(columns)
    transposed_inverse = np.ascontiguousarray(inverse.T)
    for start in range(0, events.shape[0], _BLOCK):
        rows = slice(start, start + _BLOCK)
        by_channel[cols, rows] = transposed_inverse @ by_channel[cols, rows].astype(np.float64)
    return events


def _columns_index(columns: list[int]) -> slice | list[int]:
    """Adjacent columns in file order as a slice (a view, not a gather)."""
    return slice(columns[0], columns[-1] + 1) if columns == list(range(columns[0], columns[-1] + 1)) else columns


def _match_channels(sample: Sample, spill: Spillover) -> list[int]:
    """Column of each matrix channel: by ``$PnN``, then ``$PnS``, then without a Comp- prefix."""
    columns, missing = [], []
    for name in spill.channels:
        bare = next((name[len(p):] for p in _COMP_PREFIXES if name.startswith(p)), name)
        for candidates in (sample.channels, sample.markers):
            hits = [j for j, c in enumerate(candidates) if c and c in (name, bare)]
            if len(hits) > 1:
                raise SpilloverError(
                    f"{sample.name}: spillover channel {name!r} ({spill.source}) matches several channels of the "
                    f"file: {', '.join(sample.channels[j] for j in hits)}"
                )
            if hits:
                columns.append(hits[0])
                break
        else:
            missing.append(name)
    if missing:
        raise SpilloverError(
            f"{sample.name}: the spillover matrix ({spill.source}) names channels the file lacks: "
            f"{', '.join(missing)}; the file's channels are {sample.describe_channels()}"
        )
    if len(set(columns)) != len(columns):
        raise SpilloverError(f"{sample.name}: the spillover matrix ({spill.source}) names the same channel twice")
    return columns


def _checked_inverse(spill: Spillover, where: str) -> tuple[np.ndarray, float]:
    try:
        matrix = np.asarray(spill.matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpilloverError(f"{where}: the spillover matrix ({spill.source}) is not numeric") from None
    k = len(spill.channels)
    if matrix.ndim != 2 or matrix.shape != (k, k):
        raise SpilloverError(f"{where}: the spillover matrix ({spill.source}) is {matrix.shape}, not square {k} x {k}")
    if not np.isfinite(matrix).all():
        raise SpilloverError(f"{where}: the spillover matrix ({spill.source}) holds non-finite values")
    diagonal = np.diag(matrix)
    if not np.allclose(diagonal, 1.0, rtol=0, atol=1e-3):
        hint = ("it looks like percentages: divide it by 100" if np.allclose(diagonal, 100.0, rtol=0, atol=0.1)
                else "each dye's own detector must read 1; normalise each row by its diagonal")
        raise SpilloverError(f"{where}: the spillover matrix ({spill.source}) has diagonal {diagonal.round(4).tolist()}; {hint}")
    condition = float(np.linalg.cond(matrix))
    if not np.isfinite(condition) or condition > _MAX_CONDITION:
        raise SpilloverError(
            f"{where}: the spillover matrix ({spill.source}) is singular (condition number {condition:.3g}); "
            "check it for duplicated or empty rows"
        )
    return np.linalg.inv(matrix), condition


def _delimiter(header: str) -> str | None:
    """The header line decides: tab, semicolon (European CSV), comma, else white space."""
    return next((d for d in ("\t", ";", ",") if d in header), None)


def _split_row(line: str, delimiter: str | None) -> list[str]:
    if delimiter == "\t":
        cells = line.split("\t")
    elif delimiter is not None:
        cells = next(csv.reader(io.StringIO(line), delimiter=delimiter))
    else:
        cells = shlex.split(line)
    return [c.strip().strip('"').strip() for c in cells]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
