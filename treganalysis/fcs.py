"""Reading FCS 2.0, 3.0 and 3.1 files into a :class:`~treganalysis.sample.Sample`.

The HEADER and TEXT segments are parsed here; the DATA segment is read by numpy in one pass
(``np.fromfile`` into the final dtype, byte-swapped in place), which is faster than FlowIO's
list-based reader and gives the same numbers: ``$PnE`` log amplification, ``$PnG`` gain,
``$TIMESTEP`` and the integer bit masks from ``$PnR`` are applied exactly as FlowIO/FlowKit
apply them. Every size the file states is checked against the file's real size before any
memory is allocated, so a lying header gives a clear :class:`~treganalysis.errors.FCSError`,
never a huge allocation or a silently wrong event count.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from ._files import write_bytes_atomic
from .compensation import SPILLOVER_KEYWORDS, parse_spill_keyword
from .errors import FCSError, SpilloverError
from .sample import Sample, Spillover

__all__ = ["read_fcs", "read_text", "count_datasets", "write_fcs", "assemble_fcs", "SPILLOVER_KEYWORDS"]

_VERSIONS = ("2.0", "3.0", "3.1", "3.2")
_HEADER_SIZE = 58
_BYTE_ORDERS = {"1,2,3,4": "<", "1,2": "<", "1": "<", "4,3,2,1": ">", "2,1": ">"}
_FLOAT_WIDTHS = {"F": 32, "D": 64}
_LAYOUT_KEYWORDS = ("$PAR", "$TOT", "$DATATYPE", "$BYTEORD", "$BEGINDATA", "$ENDDATA")

Offsets = Literal["check", "header", "text"]


def read_fcs(path: str | os.PathLike, *, dataset: int | None = None, offsets: Offsets = "check",
             order: Literal["C", "F"] = "C") -> Sample:
    """Read one data set of an FCS file.

    Parameters
    ----------
    path : str or path-like
        The FCS file (2.0, 3.0, 3.1; 3.2 is read as 3.1).
    dataset : int, optional
        Which data set of a multi-data-set file to read (0-based). By default the first one is
        read, with a warning when the file holds more.
    offsets : {"check", "header", "text"}
        Where the DATA segment's byte offsets come from in FCS 3.x files. ``"check"`` (the
        default) uses the TEXT keywords ``$BEGINDATA``/``$ENDDATA`` and refuses a file whose
        HEADER says otherwise; ``"header"`` or ``"text"`` trusts one of them.
    order : {"C", "F"}
        Memory layout of the events: ``"C"`` (the default) row-major, event by event as in the
        file; ``"F"`` column-major, each channel contiguous (what every later stage reads
        fastest, and what ``compensate(sample, copy=False)`` compensates in place). float32
        data are read straight into that layout block by block; other data types are read,
        converted to float32 and then copied into it.

    Returns
    -------
    Sample
        float32 events in file order with ``$PnE``, ``$PnG`` and ``$TIMESTEP`` applied.

    Raises
    ------
    FCSError
        The file is missing, truncated, inconsistent or uses an unsupported layout.

    Notes
    -----
    A ``$ENDDATA`` one byte past the end of the data (a common vendor error: an exclusive
    instead of an inclusive offset) is accepted. Any other disagreement between ``$TOT``,
    ``$PAR``, ``$PnB`` and the DATA segment's size is refused.
    """
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    path = Path(path)
    with _open(path) as fh:
        size = fh.seek(0, os.SEEK_END)
        base, text, n_sets = _locate_dataset(fh, path, size, dataset)
        if dataset is None and n_sets > 1:
            warnings.warn(
                f"{path}: holds {n_sets} data sets; reading the first (pass dataset=N to choose)",
                stacklevel=2,
            )
        header = _read_header(fh, path, base, size)
        layout = _Layout.from_text(path, text)
        start, stop = _data_offsets(path, header, text, offsets)
        n_events = _event_count(path, text, layout, start, stop, size - base)
        raw = _read_data(fh, path, layout, base + start, n_events, columns=order == "F")
    events = _scale(raw, layout, text, path)
    if order == "F" and not events.flags.f_contiguous:
        events = np.asfortranarray(events)
    return Sample(
        events=events,
        channels=layout.names,
        markers=layout.markers,
        metadata=text,
        spillover=_spillover(path, text),
        path=path,
        ranges=layout.ranges,
        version=header["version"],
        dataset=dataset or 0,
    )


def read_text(path: str | os.PathLike, *, dataset: int = 0) -> dict[str, str]:
    """The TEXT keywords of one data set, without reading its events."""
    path = Path(path)
    with _open(path) as fh:
        size = fh.seek(0, os.SEEK_END)
        return _locate_dataset(fh, path, size, dataset)[1]


def count_datasets(path: str | os.PathLike) -> int:
    """Number of data sets in an FCS file (files from some Beckman Coulter instruments hold 2)."""
    path = Path(path)
    with _open(path) as fh:
        size = fh.seek(0, os.SEEK_END)
        return _locate_dataset(fh, path, size, 0)[2]


# -- HEADER and TEXT ---------------------------------------------------------------------------


def _open(path: Path) -> BinaryIO:
    if not path.exists():
        raise FCSError(path, "file not found")
    if path.is_dir():
        raise FCSError(path, "is a folder, not an FCS file")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise FCSError(path, f"cannot be opened: {exc.strerror}") from None


def _read_header(fh: BinaryIO, path: Path, base: int, size: int) -> dict:
    fh.seek(base)
    raw = fh.read(_HEADER_SIZE)
    if len(raw) < _HEADER_SIZE:
        raise FCSError(path, f"is too short to be an FCS file ({size} bytes; the HEADER alone takes 58)")
    if not raw.startswith(b"FCS"):
        where = "" if base == 0 else f" at byte {base} (data set start)"
        raise FCSError(path, f"is not an FCS file: it does not start with 'FCS'{where}")
    version = raw[3:6].decode("ascii", errors="replace")
    if version not in _VERSIONS:
        raise FCSError(path, f"has unsupported FCS version {version!r} (supported: 2.0, 3.0, 3.1; 3.2 read as 3.1)")
    names = ("text_start", "text_stop", "data_start", "data_stop", "analysis_start", "analysis_stop")
    header: dict = {"version": version}
    for i, name in enumerate(names):
        field = raw[10 + 8 * i : 18 + 8 * i].strip()
        if not field:
            header[name] = 0  # blank offsets stand for 0 (large files, absent ANALYSIS)
        elif field.isdigit():
            header[name] = int(field)
        elif name.startswith("analysis"):
            header[name] = 0  # some writers leave junk here; ANALYSIS is never used
        else:
            raise FCSError(path, f"HEADER offset {name} is not a number: {field!r}; the file is damaged")
    return header


def _locate_dataset(fh: BinaryIO, path: Path, size: int, dataset: int | None) -> tuple[int, dict, int]:
    """Byte offset and TEXT of the wanted data set, and the number of data sets in the file."""
    want = dataset or 0
    if want < 0:
        raise FCSError(path, f"dataset must be 0 or more, not {dataset}")
    base, seen, found = 0, [], None
    while True:
        header = _read_header(fh, path, base, size)
        text = _read_text_segment(fh, path, base, header, size)
        if len(seen) == want:
            found = (base, text)
        seen.append(base)
        step = _int_keyword(path, text, "$NEXTDATA", default=0)
        if step == 0:
            break
        nxt = base + step
        # $NEXTDATA is relative to the current data set; refuse loops and jumps outside the file
        if step < 0 or nxt in seen or nxt + _HEADER_SIZE > size:
            if found is not None:
                break  # the data set asked for is intact; a broken link after it does not matter
            where = "back to an earlier data set" if step < 0 or nxt in seen else "outside the file"
            raise FCSError(path, f"$NEXTDATA={step} in data set {len(seen) - 1} points {where}")
        base = nxt
    if found is None:
        raise FCSError(path, f"has no data set {want}; it holds {len(seen)} (dataset=0..{len(seen) - 1})")
    return found[0], found[1], len(seen)


def _read_text_segment(fh: BinaryIO, path: Path, base: int, header: dict, size: int) -> dict[str, str]:
    start, stop = header["text_start"], header["text_stop"]
    if not (0 < start < stop < size - base):
        raise FCSError(path, f"TEXT segment offsets {start}-{stop} lie outside the file ({size} bytes)")
    fh.seek(base + start)
    text = _parse_pairs(fh.read(stop - start + 1), path)
    # FCS 3.x may continue the TEXT in a supplemental segment; the primary TEXT wins on conflicts
    s_start = _int_keyword(path, text, "$BEGINSTEXT", default=0)
    s_stop = _int_keyword(path, text, "$ENDSTEXT", default=0)
    if 0 < s_start < s_stop < size - base and (s_start, s_stop) != (start, stop):
        fh.seek(base + s_start)
        text = {**_parse_pairs(fh.read(s_stop - s_start + 1), path), **text}
    return text


def _parse_pairs(raw: bytes, path: Path) -> dict[str, str]:
    """Keyword/value pairs of a TEXT segment; a doubled delimiter is a literal delimiter."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        body = raw.decode("latin-1")
    if len(body) < 2:
        raise FCSError(path, "TEXT segment is empty")
    delim = body[0]
    escaped = "\0" if "\0" not in body else "\x01"
    tokens = [t.replace(escaped, delim) for t in _split(body[1:].replace(delim * 2, escaped), delim)]
    pairs = _pairs(tokens)
    if any(delim in key for key in pairs):
        # The standard escapes a delimiter by doubling it, but some writers (old CellQuest
        # files) write an empty value as a doubled delimiter; then a keyword swallows its
        # neighbours and channel keywords go missing. Split plainly when that recovers them.
        plain = _pairs(_split(body[1:], delim))
        if _missing_channel_keywords(plain) < _missing_channel_keywords(pairs):
            return plain
    return pairs


def _pairs(tokens: list[str]) -> dict[str, str]:
    # a dangling last keyword without a value carries nothing usable: it is dropped
    return {k.strip().upper(): v for k, v in zip(tokens[::2], tokens[1::2])}


def _missing_channel_keywords(text: dict[str, str]) -> int:
    par = text.get("$PAR", "").strip()
    n = int(par) if par.isascii() and par.isdigit() else 0
    missing = sum(f"$P{i}{k}" not in text for i in range(1, min(n, 10_000) + 1) for k in "NB")
    return missing + sum(k not in text for k in _LAYOUT_KEYWORDS)


def _split(body: str, delim: str) -> list[str]:
    tokens = body.split(delim)
    if tokens and tokens[-1].strip(" \0\r\n") == "":
        tokens.pop()  # the closing delimiter (some writers pad after it)
    return tokens


def _int_keyword(path: Path, text: dict, key: str, default: int | None = None) -> int:
    value = text.get(key, "").strip()
    if not value:
        if default is None:
            raise FCSError(path, f"required keyword {key} is missing")
        return default
    try:
        return int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            as_float = float("nan")
        if as_float.is_integer():
            return int(as_float)
        raise FCSError(path, f"keyword {key} is not a whole number: {value!r}") from None


def _float_keyword(path: Path, text: dict, key: str, default: float) -> float:
    value = text.get(key, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise FCSError(path, f"keyword {key} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise FCSError(path, f"keyword {key} is {value!r}; it must be a finite number")
    return number


# -- layout of the DATA segment ----------------------------------------------------------------


class _Layout:
    """How the events are stored: data type, byte order and the per-channel keywords."""

    def __init__(self, datatype: str, order: str, widths: list[int], names: list[str],
                 markers: list[str], ranges: list[float], log: list[tuple[float, float]],
                 gains: list[float]) -> None:
        self.datatype, self.order, self.widths = datatype, order, widths
        self.names, self.markers, self.ranges, self.log, self.gains = names, markers, ranges, log, gains
        self.time: int | None = None

    @property
    def bytes_per_event(self) -> int:
        return sum(self.widths) // 8

    @classmethod
    def from_text(cls, path: Path, text: dict) -> "_Layout":
        n = _int_keyword(path, text, "$PAR")
        if n < 1:
            raise FCSError(path, f"$PAR={n}: the file has no channels")
        mode = text.get("$MODE", "L").strip().upper() or "L"
        if mode != "L":
            raise FCSError(path, f"$MODE={mode} (histogram data) is not supported; only list-mode (L) files are")
        datatype = text.get("$DATATYPE", "").strip().upper()
        if datatype not in ("I", "F", "D"):
            what = "ASCII" if datatype == "A" else f"unknown $DATATYPE {datatype!r}"
            raise FCSError(path, f"{what} data is not supported (I, F or D are); re-export the file as FCS 3.1")
        byteord = text.get("$BYTEORD", "").replace(" ", "")
        if byteord not in _BYTE_ORDERS:
            raise FCSError(path, f"unsupported $BYTEORD {byteord!r} (1,2,3,4 or 4,3,2,1 are)")
        names, raw_names, markers, widths, ranges, log, gains = [], [], [], [], [], [], []
        for i in range(1, n + 1):
            if f"$P{i}B" not in text:
                raise FCSError(path, f"$PAR={n} but keyword $P{i}B is missing: $PAR disagrees with the channels")
            width = text[f"$P{i}B"].strip()
            if not (width.isascii() and width.isdigit()) or int(width) == 0:
                raise FCSError(path, f"invalid $P{i}B {width!r}: the bit width must be a whole number")
            width = int(width)
            expected = _FLOAT_WIDTHS.get(datatype)
            if expected is not None and width != expected:
                raise FCSError(path, f"invalid $P{i}B={width} for $DATATYPE={datatype} (must be {expected})")
            if datatype == "I" and width not in (8, 16, 24, 32, 64):
                raise FCSError(path, f"invalid $P{i}B={width}: integer widths of 8, 16, 24, 32 or 64 bits are supported")
            own_type = text.get(f"$P{i}DATATYPE", datatype).strip().upper() or datatype
            if own_type != datatype:
                raise FCSError(path, f"$P{i}DATATYPE={own_type} differs from $DATATYPE={datatype}: "
                                     "channels of mixed data types (FCS 3.2) are not supported")
            widths.append(width)
            raw_names.append(text.get(f"$P{i}N", ""))
            names.append(text.get(f"$P{i}N", "").strip() or f"P{i}")
            markers.append(text.get(f"$P{i}S", "").strip())
            ranges.append(_float_keyword(path, text, f"$P{i}R", default=0.0))
            log.append(_log_amplification(path, text, i))
            gains.append(_float_keyword(path, text, f"$P{i}G", default=1.0))
        layout = cls(datatype, _BYTE_ORDERS[byteord], widths, names, markers, ranges, log, gains)
        # FlowIO's time channel: the last whose raw $PnN is "time" in any case (not HDR-T,
        # not "Time " with a space): $TIMESTEP applies to it and $PnG does not
        layout.time = next((j for j in reversed(range(n)) if raw_names[j].lower() == "time"), None)
        return layout


def _log_amplification(path: Path, text: dict, i: int) -> tuple[float, float]:
    value = text.get(f"$P{i}E", "").strip()
    if not value:
        return 0.0, 0.0
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        parts = [math.nan]
    if not all(math.isfinite(p) for p in parts):
        raise FCSError(path, f"invalid $P{i}E {value!r}: expected 'decades,offset' such as '0,0'")
    decades, offset = (parts + [0.0])[:2]
    if decades > 0 and offset == 0:
        offset = 1.0  # the standard's rule for a log channel written with offset 0
    return decades, offset


def _data_offsets(path: Path, header: dict, text: dict, offsets: Offsets) -> tuple[int, int]:
    h = header["data_start"], header["data_stop"]
    t = (_int_keyword(path, text, "$BEGINDATA", default=0), _int_keyword(path, text, "$ENDDATA", default=0))
    if offsets not in ("check", "header", "text"):
        raise ValueError(f"offsets must be 'check', 'header' or 'text', not {offsets!r}")
    if header["version"] == "2.0" or offsets == "header":
        return h if any(h) else t
    if not any(t):
        return h
    if offsets == "check" and any(h) and h != t:
        raise FCSError(
            path,
            f"HEADER and TEXT disagree on where DATA lies (HEADER bytes {h[0]}-{h[1]}, TEXT $BEGINDATA/"
            f"$ENDDATA {t[0]}-{t[1]}); the file may be damaged. If you know which is right, "
            "read it with offsets='header' or offsets='text'",
        )
    return t


def _event_count(path: Path, text: dict, layout: _Layout, start: int, stop: int, size: int) -> int:
    per_event = layout.bytes_per_event
    if start == 0 and stop == 0:
        length = 0
    else:
        if not (0 < start <= stop + 1):
            raise FCSError(path, f"DATA segment offsets {start}-{stop} are invalid")
        if stop >= size + 1 or start >= size:
            raise FCSError(
                path,
                f"DATA segment ends at byte {stop} but the file has only {size} bytes: "
                "the file is truncated (an incomplete copy or transfer?)",
            )
        length = min(stop - start + 1, size - start)
    if "$TOT" not in text:
        if length % per_event:
            raise FCSError(path, f"$TOT is missing and the DATA segment ({length} bytes) is not a whole number of events")
        return length // per_event
    n = _int_keyword(path, text, "$TOT")
    need = n * per_event
    # one extra byte is the common exclusive-$ENDDATA writer error (never a whole event when an
    # event has several bytes); anything else is a real mismatch
    slack = 1 if per_event > 1 else 0
    if n < 0 or not (need <= length <= need + slack):
        holds = length / per_event
        raise FCSError(
            path,
            f"$TOT={n} events of {per_event} bytes ($PAR={len(layout.widths)}) need {need} bytes but the DATA "
            f"segment holds {length} bytes ({holds:g} events): $TOT/$PAR disagree with the DATA segment",
        )
    return n


# -- DATA ----------------------------------------------------------------------------------------


def _read_data(fh: BinaryIO, path: Path, layout: _Layout, offset: int, n: int, columns: bool = False) -> np.ndarray:
    """The stored values, (n, p), native byte order, integer bit masks applied; float32 data
    column-major when ``columns`` is set (other types as read: the caller converts)."""
    p = len(layout.widths)
    fh.seek(offset)
    width = layout.widths[0]
    if columns and layout.datatype == "F" and all(w == 32 for w in layout.widths):
        return _read_float32_columns(fh, path, np.dtype(f"{layout.order}f4"), n, p)
    if all(w == width for w in layout.widths) and width != 24:
        kind = "f" if layout.datatype in ("F", "D") else "u"
        raw = np.fromfile(fh, dtype=np.dtype(f"{layout.order}{kind}{width // 8}"), count=n * p)
        if raw.size != n * p:
            raise FCSError(path, "DATA segment is shorter than stated: the file is truncated")
        if not raw.dtype.isnative:
            raw = raw.byteswap(inplace=True).view(raw.dtype.newbyteorder("="))
        raw = raw.reshape(n, p)
        if layout.datatype == "I":
            _mask_integers(raw, layout)
        return raw
    return _read_mixed_integers(fh, path, layout, n)


def _read_float32_columns(fh: BinaryIO, path: Path, stored: np.dtype, n: int, p: int) -> np.ndarray:
    """float32 events read into a column-major (n, p) array through a small row-major buffer:
    no event-sized row-major copy, and the byte order is converted on the way."""
    out = np.empty((p, n), dtype=np.float32)  # out.T is the (n, p) result
    block = np.empty((min(n, _READ_BLOCK), p), dtype=stored)
    for start in range(0, n, _READ_BLOCK):
        rows = block[: min(_READ_BLOCK, n - start)]
        if fh.readinto(memoryview(rows).cast("B")) != rows.nbytes:
            raise FCSError(path, "DATA segment is shorter than stated: the file is truncated")
        out[:, start : start + rows.shape[0]] = rows.T
    return out.T


_READ_BLOCK = 1 << 13  # events per block of a column-major read (about 0.5 MB for 14 channels)


def _int_masks(layout: _Layout) -> list[int | None]:
    """Bit mask per channel, as FlowIO applies them: ``$PnR`` rounded up to a power of 2, minus 1."""
    masks = []
    for width, top in zip(layout.widths, layout.ranges):
        top = int(top)
        limit = 1 << max(top - 1, 0).bit_length() if top > 0 else 0
        masks.append(limit - 1 if 0 < limit < (1 << width) else None)
    return masks


def _mask_integers(raw: np.ndarray, layout: _Layout) -> None:
    masks = _int_masks(layout)
    if any(m is not None for m in masks):
        full = (1 << layout.widths[0]) - 1
        np.bitwise_and(raw, np.array([full if m is None else m for m in masks], dtype=raw.dtype), out=raw)


def _read_mixed_integers(fh: BinaryIO, path: Path, layout: _Layout, n: int) -> np.ndarray:
    """Integer channels of different widths (8/16/24/32/64 bits), decoded column by column."""
    per_event = layout.bytes_per_event
    raw = np.fromfile(fh, dtype=np.uint8, count=n * per_event)
    if raw.size != n * per_event:
        raise FCSError(path, "DATA segment is shorter than stated: the file is truncated")
    raw = raw.reshape(n, per_event)
    events = np.empty((n, len(layout.widths)), dtype=np.float64)  # exact for every width
    pos = 0
    for j, (width, mask) in enumerate(zip(layout.widths, _int_masks(layout))):
        nbytes = width // 8
        block = raw[:, pos : pos + nbytes]
        pos += nbytes
        if nbytes == 3:
            # widen to 4 bytes: a zero high byte in front (big-endian) or behind (little-endian)
            wide = np.zeros((n, 4), dtype=np.uint8)
            if layout.order == ">":
                wide[:, 1:] = block
            else:
                wide[:, :3] = block
            values = wide.view(f"{layout.order}u4")[:, 0]
        else:
            values = np.ascontiguousarray(block).view(f"{layout.order}u{nbytes}")[:, 0]
        if mask is not None:
            values = values & mask
        events[:, j] = values
    return events


def _scale(raw: np.ndarray, layout: _Layout, text: dict, path: Path) -> np.ndarray:
    """float32 events: ``$TIMESTEP``, ``$PnE`` and ``$PnG`` applied with FlowIO's rules.

    float32 data are scaled in place (the read buffer is the event matrix); other types are cast
    once. Scaled columns are computed from the stored values in float64, as FlowIO does, and
    rounded once to float32.
    """
    events = raw if raw.dtype == np.float32 else raw.astype(np.float32)
    time = layout.time
    step = 1.0
    if time is not None and text.get("$TIMESTEP", "").strip():
        try:
            step = float(text["$TIMESTEP"])
        except ValueError:
            warnings.warn(f"{path}: $TIMESTEP {text['$TIMESTEP']!r} is not a number; time left in ticks", stacklevel=3)
    for j, ((decades, offset), gain, top) in enumerate(zip(layout.log, layout.gains, layout.ranges)):
        # FlowIO scales time by $TIMESTEP only and ignores a gain on it (a time gain makes no sense)
        divisor = 1.0 if j == time or gain in (0.0, 1.0) else gain
        factor = step if j == time else 1.0
        if decades <= 0 and divisor == 1.0 and factor == 1.0:
            continue
        column = raw[:, j].astype(np.float64)
        if decades > 0:
            if top <= 0:
                raise FCSError(path, f"$P{j + 1}E is logarithmic but $P{j + 1}R={top} gives no scale")
            column = np.power(10.0, decades * column / top) * offset
        column *= factor  # in place: no event-sized float64 temporaries beside the column
        column /= divisor
        events[:, j] = column
    return events


def _spillover(path: Path, text: dict):
    for key in SPILLOVER_KEYWORDS:
        value = text.get(key, "").strip()
        if value:
            try:
                return parse_spill_keyword(value, source=f"keyword {key}")
            except SpilloverError as exc:
                warnings.warn(f"{path}: ignoring unreadable {key}: {exc}", stacklevel=3)
                return None
    return None


# -- writing -------------------------------------------------------------------------------------


def write_fcs(
    path: str | os.PathLike,
    events: np.ndarray,
    channels: list[str],
    markers: list[str] | None = None,
    *,
    ranges: list[float] | None = None,
    spillover: Spillover | None = None,
    keywords: dict[str, str] | None = None,
) -> Path:
    """Write events as an FCS 3.1 file (float32, little-endian), atomically.

    Parameters
    ----------
    path : str or path-like
        Destination; written to a temporary file beside it and renamed, so a reader never sees
        half a file.
    events : array, shape (n_events, n_channels)
        Stored as float32.
    channels, markers : list of str
        ``$PnN`` and ``$PnS`` (``""`` for none; ``markers`` None for no ``$PnS`` at all).
    ranges : list of float, optional
        ``$PnR`` per channel (default 262144).
    spillover : Spillover, optional
        Written as ``$SPILLOVER``.
    keywords : dict, optional
        Further TEXT keywords (``$CYT``, ``$TIMESTEP``, ...); values may not be empty.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        Events, channels, markers and ranges do not match, or a keyword value is empty.
    """
    events = np.ascontiguousarray(events, dtype="<f4")
    p = len(channels)
    markers = [""] * p if markers is None else list(markers)
    ranges = [262144.0] * p if ranges is None else list(ranges)
    if events.ndim != 2 or events.shape[1] != p or len(markers) != p or len(ranges) != p:
        raise ValueError(f"events {events.shape}, {p} channels, {len(markers)} markers and {len(ranges)} ranges do not match")
    text = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$NEXTDATA": "0",
            "$PAR": str(p), "$TOT": str(events.shape[0])}
    for i, (name, marker, top) in enumerate(zip(channels, markers, ranges), start=1):
        text.update({f"$P{i}N": name, f"$P{i}B": "32", f"$P{i}E": "0,0", f"$P{i}R": _number_text(top)})
        if marker:
            text[f"$P{i}S"] = marker
    if spillover is not None:
        values = ",".join(_number_text(v) for v in np.asarray(spillover.matrix, dtype=np.float64).ravel())
        text["$SPILLOVER"] = f"{len(spillover.channels)},{','.join(spillover.channels)},{values}"
    for key, value in (keywords or {}).items():
        if not str(value):
            raise ValueError(f"keyword {key} has an empty value, which FCS cannot store")
        text[key] = str(value)
    return write_bytes_atomic(path, assemble_fcs(text, events.tobytes()))


def _number_text(value: float) -> str:
    """Shortest exact text of a number (an integer when whole)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def assemble_fcs(text: dict[str, str], data: bytes, version: str = "3.1",
                 header: dict[str, int] | None = None, delimiter: str | None = None) -> bytes:
    """Bytes of an FCS file from TEXT keywords and a DATA segment.

    Parameters
    ----------
    text : dict
        TEXT keywords. ``$BEGINDATA``/``$ENDDATA`` (and the HEADER offsets) are filled in unless
        ``text`` or ``header`` set them, which lets tests build deliberately inconsistent files.
    data : bytes
        The DATA segment.
    version : str
        Written into the HEADER.
    header : dict, optional
        HEADER offsets to force (``text_start``, ``data_start``, ...).
    delimiter : str, optional
        TEXT delimiter; by default the first of ``/|\\!^~*#`` found in no keyword or value, so
        nothing needs escaping. A delimiter inside a value is escaped by doubling it.

    Returns
    -------
    bytes
        The whole file.
    """
    text = {k: str(v) for k, v in text.items()}
    if delimiter is None:
        used = "".join(text) + "".join(text.values())
        delimiter = next((c for c in "/|\\!^~*#" if c not in used), "/")
    delim = delimiter
    fixed = {k: k in text for k in ("$BEGINDATA", "$ENDDATA")}
    for k in ("$BEGINDATA", "$ENDDATA", "$BEGINANALYSIS", "$ENDANALYSIS", "$BEGINSTEXT", "$ENDSTEXT"):
        text.setdefault(k, "0" * 20)  # fixed width while the offsets are worked out
    text_start = 256

    def segment() -> bytes:
        pairs = (f"{k.replace(delim, delim * 2)}{delim}{v.replace(delim, delim * 2)}" for k, v in text.items())
        return (delim + delim.join(pairs) + delim).encode("utf-8")

    body = segment()
    data_start = text_start + len(body) if data else 0
    data_stop = data_start + len(data) - 1 if data else 0
    if not fixed["$BEGINDATA"]:
        text["$BEGINDATA"] = str(data_start).zfill(20)
    if not fixed["$ENDDATA"]:
        text["$ENDDATA"] = str(data_stop).zfill(20)
    body = segment()
    offsets = {"text_start": text_start, "text_stop": text_start + len(body) - 1,
               "data_start": data_start if data_stop <= 99_999_999 else 0,
               "data_stop": data_stop if data_stop <= 99_999_999 else 0,
               "analysis_start": 0, "analysis_stop": 0}
    offsets.update(header or {})
    head = f"FCS{version}    " + "".join(
        f"{offsets[k]:>8}" for k in ("text_start", "text_stop", "data_start", "data_stop", "analysis_start", "analysis_stop")
    )
    return head.encode("ascii").ljust(text_start, b" ") + body + data
