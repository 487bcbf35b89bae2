"""The population table: counts, percentages with Wilson intervals, and exact marker medians.

Medians are the costly part of a sample's summary: ten markers over a dozen nested populations
of up to a million events each. :func:`population_medians` gets them all exactly with a few
passes per channel instead of a gather and a partial sort per population and channel (see its
Notes).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sample import Sample

if TYPE_CHECKING:  # pandas is imported when a table is built, not by every gating job
    import pandas as pd

__all__ = ["population_medians", "population_rows", "population_table", "wilson_interval", "Z95"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile (two-sided 95% intervals)
_N_CODES = 1 << 16  # a float32's top 16 bits: sign, exponent, 7 mantissa bits (a bucket 0.8% wide)
_MAX_SIGNATURE_BITS = 20  # more populations than this: medians one population at a time
_MAX_SIGNATURES = 256  # ... and more distinct sets of them (each is a 65,536-bucket histogram)
_EXPONENT = 0x7F80  # a code's exponent bits: all set for infinities and NaN (codes 0x7F80-0x7FFF, 0xFF80-0xFFFF)


def population_table(sample: Sample, masks: Mapping[str, np.ndarray], parents: Mapping[str, str],
                     panel: Mapping[str, str | None], status: Mapping[str, str] | None = None,
                     root: np.ndarray | None = None) -> "pd.DataFrame":
    """Count, % of parent, % of CD4 with Wilson 95% intervals, and marker medians per population.

    ``root`` is the events the hierarchy started from (acquisition QC's keep-mask; default all
    events): the parent of the first gate.

    Medians are of compensated, untransformed values (domain.md: MFIs in linear units). A
    population whose gate is NA (too few events) keeps its count but has no percentages.
    """
    return _frame(population_rows(sample, masks, parents, panel, status, root))


def population_rows(sample: Sample, masks: Mapping[str, np.ndarray], parents: Mapping[str, str],
                    panel: Mapping[str, str | None], status: Mapping[str, str] | None = None,
                    root: np.ndarray | None = None, qc_status: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`population_table` as records (no pandas), with a ``qc_status``
    column after ``status`` when given."""
    rows = []
    counts = {name: int(np.count_nonzero(mask)) for name, mask in masks.items()}
    n_cd4 = counts.get("cd4", 0)
    descendants_of_cd4 = _descendants(parents, "cd4")
    markers = [m for m, c in panel.items() if c]
    medians = population_medians([sample.events[:, sample.index(panel[m])] for m in markers], masks)
    for name in masks:
        count = counts[name]
        parent = parents.get(name)
        n_parent = (counts[parent] if parent in counts
                    else int(np.count_nonzero(root)) if root is not None else int(sample.n_events))
        state = (status or {}).get(name, "ok")
        row: dict[str, Any] = {"population": name, "parent": parent, "status": state}
        if qc_status is not None:
            row["qc_status"] = qc_status
        row.update(count=count, parent_count=n_parent)
        usable = state == "ok"
        row.update(_percent("pct_parent", count, n_parent if usable else 0))
        if name == "cd4" or (name in descendants_of_cd4 and n_cd4):
            row.update(_percent("pct_cd4", count, n_cd4 if usable else 0))
        row.update({f"median_{m}": v for m, v in zip(markers, medians[name])})
        rows.append(row)
    return rows


def population_medians(columns: Sequence[np.ndarray], masks: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    """The median of each column over each population's events, exactly as ``np.median``.

    Parameters
    ----------
    columns : sequence of ndarray, each of shape (n,)
        Channels (float32, best contiguous: a column-major sample's ``events[:, j]``).
    masks : mapping of str to ndarray of bool, each of shape (n,)
        Population memberships (they may overlap or nest).

    Returns
    -------
    dict
        Population -> one median per column (NaN for an empty population, or where the
        population holds a NaN, as ``np.median``).

    Notes
    -----
    A float32's top 16 bits (sign, exponent, 7 mantissa bits) name a bucket 0.8% of the value
    wide, and the buckets sort as the values do once negative ones are flipped. Events are
    labelled once by their *signature*, the set of populations they belong to (a nested
    hierarchy has a few dozen at most). Per column, one ``np.bincount`` of (signature, bucket)
    gives every signature's histogram; summing signatures gives every population's, whose
    cumulative counts over the buckets in value order name the bucket holding each middle rank.
    Only the events of those few buckets are then gathered, and ``np.partition`` within the
    bucket gives the exact order statistics; for an even count the median is the float32 mean
    of the two middle values, as ``np.median`` computes it. About four passes over each column,
    however many populations, instead of a gather and a partition of every population's events.
    """
    names = list(masks)
    if not columns or not names:
        return {name: [float("nan")] * len(columns) for name in names}
    signature, membership, per_signature = (_signatures([masks[name] for name in names])
                                            if len(names) <= _MAX_SIGNATURE_BITS else (None, None, None))
    if membership is None or membership.shape[1] > _MAX_SIGNATURES:  # not a hierarchy: one at a time
        plain: dict[str, list[float]] = {name: [] for name in names}
        for column in columns:
            _medians_one_by_one(np.asarray(column), masks, plain)
        return plain
    n_signatures = membership.shape[1]
    counts = (membership.astype(np.int64) @ per_signature).tolist()
    weights = membership.astype(np.float64)
    # below about 65,536 x signatures events, a histogram over every code would outweigh the
    # events: slots are then the codes present in the column, numbered densely
    dense = n_signatures * _N_CODES > signature.size
    # each signature's histogram is a row of the 65,536 codes: the bincount index is
    # signature << 16 | code. On a little-endian machine the key is built in its 16-bit lanes:
    # the signature written once into the second, each column's codes (the high half of each
    # float32) copied into the first, with no shift, add or temporary per column
    n = signature.size
    lanes = None
    if dense:
        key = np.empty_like(signature)
    elif sys.byteorder == "little":
        key = np.zeros(n, dtype=np.intp)  # reused for every column
        lanes = key.view(np.uint16).reshape(-1, key.itemsize // 2)
        lanes[:, 1] = signature
        del signature
    else:
        offset = np.multiply(signature, _N_CODES, out=signature)
        key = np.empty_like(signature)
    out: dict[str, list[float]] = {name: [] for name in names}
    for column in columns:
        column = np.asarray(column)
        if column.dtype != np.float32:
            _medians_one_by_one(column, masks, out)
            continue
        if dense:
            # the codes as intp once (np.bincount and np.take would each convert them), then
            # renumbered in place: the key is built with no other event-sized temporary
            code = np.right_shift(column.view(np.uint32), np.uint32(16), dtype=np.intp)
            slot_code = np.flatnonzero(np.bincount(code, minlength=_N_CODES))
            lookup = np.zeros(_N_CODES, dtype=np.intp)
            lookup[slot_code] = np.arange(slot_code.size)
            width = slot_code.size
            lookup.take(code, out=code, mode="clip")
            np.multiply(signature, width, out=key)
            key += code
            del code
        else:
            slot_code, width = None, _N_CODES
            if lanes is not None and column.flags.c_contiguous:
                np.copyto(lanes[:, 0], column.view(np.uint16)[1::2])
            elif lanes is not None:  # a strided column (a row-major matrix's): shifted into the lane
                np.right_shift(column.view(np.uint32), np.uint32(16), out=lanes[:, 0], casting="unsafe")
            else:
                np.add(offset, column.view(np.uint32) >> np.uint32(16), out=key)
        histogram = np.bincount(key, minlength=n_signatures * width).reshape(n_signatures, width)
        # a NaN has an all-ones exponent: only a column with such codes is searched for one
        codes_nan_like = (bool(histogram[:, _EXPONENT:0x8000].any() or histogram[:, 0x8000 | _EXPONENT:].any())
                          if slot_code is None else bool(np.any((slot_code & _EXPONENT) == _EXPONENT)))
        if codes_nan_like and np.isnan(column).any():  # np.median's NaN rules
            _medians_one_by_one(column, masks, out)
            continue
        # the slots present, in the order of their values; a population's histogram over them
        slots = np.flatnonzero(histogram.any(axis=0))
        slots = slots[np.argsort(_rank(slots if slot_code is None else slot_code[slots]), kind="stable")]
        # float64 products are exact for counts below 2**53, and take the BLAS path
        cumulative = np.cumsum(weights @ histogram[:, slots].astype(np.float64), axis=1)
        wanted = {}  # population -> (slot, events before that slot, rank) of its middle values
        for i, k in enumerate(counts):
            if k:
                at = [int(np.searchsorted(cumulative[i], r, side="right")) for r in ((k - 1) // 2, k // 2)]
                wanted[i] = [(int(slots[j]), int(cumulative[i, j - 1]) if j else 0, r)
                             for j, r in zip(at, ((k - 1) // 2, k // 2))]
        targets = np.zeros(width, dtype=bool)
        targets[[slot for triples in wanted.values() for slot, _, _ in triples]] = True
        # events whose slot holds a middle rank (np.take: a third faster than an index here)
        near = np.flatnonzero(np.tile(targets, n_signatures).take(key))
        near_signature, near_slot = np.divmod(key[near], width)
        near_values = column[near]
        for i, name in enumerate(names):
            if i not in wanted:
                out[name].append(float("nan"))
                continue
            inside = membership[i][near_signature]
            middle = []
            for slot, before, r in wanted[i]:
                values = near_values[inside & (near_slot == slot)]
                middle.append(np.partition(values, r - before)[r - before])
            out[name].append(float(np.mean(np.asarray(middle, dtype=np.float32))))
    return out


def _medians_one_by_one(column: np.ndarray, masks: Mapping[str, np.ndarray], out: dict[str, list[float]]) -> None:
    """Append each population's median of ``column`` to ``out``, one population at a time."""
    for name in masks:
        out[name].append(_median(column[np.flatnonzero(masks[name])]))


def _rank(codes: np.ndarray) -> np.ndarray:
    """Order of the top 16 bits of float32s as the values sort: negative codes flipped (a larger
    magnitude sorts lower), positive codes above them."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes & 0x8000, codes ^ 0xFFFF, codes | 0x8000)


def _signatures(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label each event by the set of masks it is in (at most 20 masks).

    Returns the label per event (0..s-1, intp: the median keys are built from it), the
    membership matrix (masks x labels, bool) and the number of events per label.
    """
    n = masks[0].shape[0]
    bits = np.uint16 if len(masks) <= 16 else np.uint32
    code = np.zeros(n, dtype=bits)
    bit = np.empty(n, dtype=bits)
    for i, mask in enumerate(masks):  # one shift and one OR per mask, in the narrow type
        np.left_shift(np.asarray(mask, dtype=bool).view(np.uint8), bits(i), out=bit, dtype=bits)
        code |= bit
    del bit
    events = np.bincount(code, minlength=1 << len(masks))
    present = np.flatnonzero(events)
    lookup = np.zeros(1 << len(masks), dtype=np.intp)
    lookup[present] = np.arange(present.size)
    membership = ((present[None, :] >> np.arange(len(masks))[:, None]) & 1).astype(bool)
    return lookup.take(code), membership, events[present]


_FIRST_COLUMNS = ["population", "parent", "status", "count", "parent_count", "pct_parent", "pct_parent_low",
                  "pct_parent_high"]


def _frame(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=None if rows else _FIRST_COLUMNS)


def _median(values: np.ndarray) -> float:
    """The median as ``np.median`` gives it (the mean of the two middle values for an even
    count; NaN if any value is NaN), by ``np.partition``."""
    k = values.size
    if k == 0:
        return float("nan")
    half = k // 2
    if np.isnan(values).any():
        return float("nan")
    if k % 2:
        return float(np.partition(values, half)[half])
    middle = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(np.mean(middle))


def _percent(prefix: str, k: int, n: int) -> dict[str, float]:
    if n == 0:
        return {prefix: float("nan"), f"{prefix}_low": float("nan"), f"{prefix}_high": float("nan")}
    low, high = wilson_interval(k, n)
    return {prefix: 100.0 * k / n, f"{prefix}_low": 100.0 * low, f"{prefix}_high": 100.0 * high}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% by default).

    The same numbers as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``
    (without continuity correction), in closed form so that a gating job need not import
    scipy.stats: centre ``(k + z^2/2) / (n + z^2)``, half-width
    ``z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)``; 0 and 1 at the ends.
    """
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"a proportion needs 0 <= k <= n and n > 0, not k={k}, n={n}")
    p = k / n
    denominator = 2.0 * (n + z * z)
    centre = (2.0 * n * p + z * z) / denominator
    delta = z / denominator * math.sqrt(4.0 * n * p * (1.0 - p) + z * z)
    return (centre - delta if k > 0 else 0.0), (centre + delta if k < n else 1.0)


def _descendants(parents: Mapping[str, str], root: str) -> set[str]:
    out = set()
    for name in parents:
        node = name
        while node in parents:
            node = parents[node]
            if node == root:
                out.add(name)
                break
    return out


