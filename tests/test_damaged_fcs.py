"""Damaged FCS files: a systematic corpus made from one valid simulated file, and byte mutations.

The contract for every damaged file: ``read_fcs`` either returns a Sample whose event count agrees
with the data, or raises the project's own error (a ``TregAnalysisError``) naming the file and the
problem. Never a hang, never a huge allocation, never an exception from inside numpy. On the
command line each refusal is one ``treganalysis: error: ...`` line and exit status 1.

Each corpus kind differs from the valid file by one damage only: the file is rebuilt from the
valid file's TEXT keywords and DATA bytes with ``assemble_fcs`` (which reproduces it byte for
byte), or cut and patched in place. ``python tests/test_damaged_fcs.py`` prints the table of
docs/robustness.md from what the code does now.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import treganalysis as ta
from treganalysis.cli import main
from treganalysis.compensation import compensate
from treganalysis.errors import FCSError, SpilloverError, TregAnalysisError
from treganalysis.fcs import assemble_fcs, read_text
from treganalysis.simulate import simulate_cohort

TIME_LIMIT = 5.0  # seconds per file; the valid file reads in a few milliseconds
MEMORY_LIMIT = 4_000_000  # bytes traced while reading; the valid file's events take 168 kB
# the keywords assemble_fcs fills in itself
_OFFSET_KEYWORDS = ("$BEGINDATA", "$ENDDATA", "$BEGINANALYSIS", "$ENDANALYSIS", "$BEGINSTEXT", "$ENDSTEXT")
_HEADER_FIELDS = ("text_start", "text_stop", "data_start", "data_stop", "analysis_start", "analysis_stop")


# -- the valid file ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Base:
    """The valid file every damaged file is made from: 3000 events x 14 float32 channels."""

    raw: bytes
    text: dict[str, str]  # TEXT keywords without the offsets assemble_fcs fills in
    data: bytes
    read: np.ndarray  # its events as read_fcs gives them ($TIMESTEP applied)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def n(self) -> int:
        return int(self.text["$TOT"])

    @property
    def p(self) -> int:
        return int(self.text["$PAR"])

    @property
    def text_start(self) -> int:
        return int(self.raw[10:18])

    @property
    def text_stop(self) -> int:
        return int(self.raw[18:26])

    @property
    def data_start(self) -> int:
        return int(self.raw[26:34])

    def events(self) -> np.ndarray:
        """The stored values (Time in ticks), to be damaged."""
        return np.frombuffer(self.data, "<f4").reshape(self.n, self.p).copy()

    def col(self, name: str) -> int:
        return next(i - 1 for i in range(1, self.p + 1) if self.text[f"$P{i}N"] == name)

    def build(self, changes: dict | None = None, data: bytes | None = None, header: dict | None = None,
              version: str = "3.1") -> bytes:
        """The valid file with some TEXT keywords changed (None removes one) or other DATA."""
        text = dict(self.text)
        for key, value in (changes or {}).items():
            if value is None:
                text.pop(key, None)
            else:
                text[key] = value
        return assemble_fcs(text, self.data if data is None else data, version=version, header=header)


def make_base(folder: Path) -> Base:
    simulate_cohort(folder, subjects=1, events=3000, seed=1)
    path = sorted((folder / "fcs").glob("*.fcs"))[0]
    raw = path.read_bytes()
    text = read_text(path)
    data = raw[int(text["$BEGINDATA"]) : int(text["$ENDDATA"]) + 1]
    return Base(raw, {k: v for k, v in text.items() if k not in _OFFSET_KEYWORDS}, data, ta.read_fcs(path).events)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return make_base(tmp_path_factory.mktemp("valid"))


# -- byte surgery --------------------------------------------------------------------------------


def _set_header(raw: bytes, name: str, value: str | bytes) -> bytes:
    i = _HEADER_FIELDS.index(name)
    value = value if isinstance(value, bytes) else value.encode("ascii")
    return raw[: 10 + 8 * i] + value.rjust(8)[:8] + raw[18 + 8 * i :]


def _swap(raw: bytes, old: bytes, new: bytes) -> bytes:
    """Same-length replacement, so that no offset moves."""
    assert len(old) == len(new) and raw.count(old) == 1, old
    return raw.replace(old, new)


def _text_segment(b: Base, make: Callable[[bytes], bytes]) -> bytes:
    """The valid file with its TEXT segment's bytes replaced (same length)."""
    old = b.raw[b.text_start : b.text_stop + 1]
    new = make(old)
    assert len(new) == len(old)
    return b.raw[: b.text_start] + new + b.raw[b.text_stop + 1 :]


def _spill(b: Base, edit: Callable[[int, list[str], np.ndarray], tuple[list[str], np.ndarray] | str]) -> bytes:
    """The valid file with its $SPILLOVER rewritten by ``edit(n, names, matrix)``."""
    tokens = b.text["$SPILLOVER"].split(",")
    n = int(tokens[0])
    edited = edit(n, tokens[1 : n + 1], np.array(tokens[n + 1 :], dtype=np.float64).reshape(n, n))
    if not isinstance(edited, str):
        names, matrix = edited
        edited = ",".join([str(len(names)), *names, *(repr(float(v)) for v in np.ravel(matrix))])
    return b.build({"$SPILLOVER": edited})


def _spill_tokens(b: Base, edit: Callable[[list[str]], list[str]]) -> bytes:
    return b.build({"$SPILLOVER": ",".join(edit(b.text["$SPILLOVER"].split(",")))})


def _events(b: Base, edit: Callable[[np.ndarray, Base], None]) -> bytes:
    events = b.events()
    edit(events, b)
    return b.build(data=events.astype("<f4").tobytes())


def _singular(n, names, m):
    m = m.copy()
    m[0, 1] = 1.0
    m[1] = m[0]  # two equal rows, unit diagonal kept
    return names, m


def _latin1(b: Base, key: str, placeholder: str, value: str, extra: dict | None = None) -> bytes:
    """A keyword value written in latin-1 bytes (not UTF-8) without moving any offset."""
    encoded = value.encode("latin-1")
    assert len(encoded) == len(placeholder)
    return _swap(b.build({key: placeholder, **(extra or {})}), placeholder.encode("ascii"), encoded)


# -- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One kind of damage and what the reader must make of it.

    expect: ``read`` (a Sample of ``events`` events), ``refused`` (an FCSError matching
    ``problem``), ``spill`` (read; ``compensate`` raises a SpilloverError matching ``problem``) or
    ``spill-ignored`` (read with a warning matching ``problem``; the sample carries no matrix, so
    ``compensate(required=True)`` refuses it and plain ``compensate`` passes it on uncompensated).
    """

    kind: str
    group: str
    what: str
    make: Callable[[Base], bytes]
    expect: str
    problem: str = ""
    events: int = 3000
    check: Callable[[ta.Sample], bool] | None = None
    gate: bool = False  # also run `treganalysis gate` on it (accepted kinds)
    gate_bug: str = ""  # a known crash of `gate` on this kind

    def __post_init__(self) -> None:
        assert self.expect in ("read", "refused", "spill", "spill-ignored"), self.expect
        assert self.expect == "read" or self.problem, self.kind


CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


# Truncations at 30 offsets spread over the HEADER, the TEXT and the DATA segment.
_TRUNCATIONS = [
    *((f"header+{k}", lambda b, k=k: k) for k in (0, 1, 2, 3, 6, 10, 18, 34, 57)),
    *((f"text+{k}", lambda b, k=k: 58 + k) for k in (0, 42)),
    ("text_start-1", lambda b: b.text_start - 1),
    ("text_start", lambda b: b.text_start),
    ("text_start+1", lambda b: b.text_start + 1),
    ("text_middle", lambda b: (b.text_start + b.text_stop) // 2),
    ("text_stop-1", lambda b: b.text_stop - 1),
    ("text_stop", lambda b: b.text_stop),
    ("data_start", lambda b: b.data_start),
    ("data_start+1", lambda b: b.data_start + 1),
    ("data_start+55", lambda b: b.data_start + 55),  # less than one event
    ("data_start+56", lambda b: b.data_start + 56),  # exactly one event
    ("data_start+560", lambda b: b.data_start + 560),
    ("data_25%", lambda b: b.data_start + len(b.data) // 4),
    ("data_50%", lambda b: b.data_start + len(b.data) // 2),
    ("data_75%", lambda b: b.data_start + 3 * len(b.data) // 4),
    ("end-57", lambda b: b.size - 57),
    ("end-56", lambda b: b.size - 56),  # exactly one event missing
    ("end-55", lambda b: b.size - 55),
    ("end-2", lambda b: b.size - 2),
]
for _label, _offset in _TRUNCATIONS:
    _where = _label.split("+")[0].split("-")[0].split("_")[0]
    _problem = {"header": "too short to be an FCS file", "text": r"TEXT segment offsets \d+-\d+ lie outside the file"}
    case(f"cut-{_label}", "truncated file", f"file cut at byte {_label}", lambda b, f=_offset: b.raw[: f(b)],
         "refused", _problem.get(_where, r"DATA segment ends at byte \d+ but the file has only \d+ bytes: the file "
                                          r"is truncated"))
case("cut-end-1", "truncated file", "last byte missing", lambda b: b.raw[:-1], "refused",
     r"\$TOT=3000 events of 56 bytes .* holds 167999 bytes .* disagree with the DATA segment")
assert sum(c.group == "truncated file" for c in CASES) == 30

# HEADER
case("header-magic", "HEADER", "does not start with 'FCS'", lambda b: b"XYZ" + b.raw[3:], "refused",
     "is not an FCS file: it does not start with 'FCS'")
case("header-version", "HEADER", "version 9.9", lambda b: b.raw[:3] + b"9.9" + b.raw[6:], "refused",
     "unsupported FCS version '9.9'")
case("header-version-binary", "HEADER", "version field of bytes ff fe 00", lambda b: b.raw[:3] + b"\xff\xfe\x00" + b.raw[6:],
     "refused", "unsupported FCS version")
case("header-text-start-letters", "HEADER", "text_start 'ab#d'", lambda b: _set_header(b.raw, "text_start", "ab#d"),
     "refused", "HEADER offset text_start is not a number: b'ab#d'")
case("header-text-start-negative", "HEADER", "text_start -256", lambda b: _set_header(b.raw, "text_start", "-256"),
     "refused", "HEADER offset text_start is not a number")
case("header-text-start-zero", "HEADER", "text_start 0", lambda b: _set_header(b.raw, "text_start", "0"),
     "refused", r"TEXT segment offsets 0-\d+ lie outside the file")
case("header-offsets-blank", "HEADER", "all six offsets blank", lambda b: b.raw[:10] + b" " * 48 + b.raw[58:],
     "refused", "TEXT segment offsets 0-0 lie outside the file")
case("header-text-start-huge", "HEADER", "text_start 99999999", lambda b: _set_header(b.raw, "text_start", "99999999"),
     "refused", r"TEXT segment offsets 99999999-\d+ lie outside the file \(169923 bytes\)")
case("header-text-stop-before-start", "HEADER", "text_stop 100 < text_start",
     lambda b: _set_header(b.raw, "text_stop", "100"), "refused", "TEXT segment offsets 256-100 lie outside the file")
case("header-text-stop-huge", "HEADER", "text_stop 99999999", lambda b: _set_header(b.raw, "text_stop", "99999999"),
     "refused", "TEXT segment offsets 256-99999999 lie outside the file")
case("header-text-stop-short", "HEADER", "text_stop 300 (TEXT cut after 45 bytes)",
     lambda b: _set_header(b.raw, "text_stop", "300"), "refused", r"required keyword \$PAR is missing")
case("header-text-stop-into-data", "HEADER", "text_stop 3000 bytes into DATA",
     lambda b: _set_header(b.raw, "text_stop", str(b.text_stop + 3000)), "read")
case("header-data-start-letters", "HEADER", "data_start 'x1923'", lambda b: _set_header(b.raw, "data_start", "x1923"),
     "refused", "HEADER offset data_start is not a number")
case("header-data-start-off", "HEADER", "data_start one byte late (TEXT right)",
     lambda b: _set_header(b.raw, "data_start", str(b.data_start + 1)), "refused",
     r"HEADER and TEXT disagree on where DATA lies .* offsets='header' or offsets='text'")
case("header-data-stop-huge", "HEADER", "data_stop 99999999 (TEXT right)",
     lambda b: _set_header(b.raw, "data_stop", "99999999"), "refused", "HEADER and TEXT disagree on where DATA lies")
case("header-data-blank", "HEADER", "DATA offsets blank (as in files > 99,999,999 bytes)",
     lambda b: _set_header(_set_header(b.raw, "data_start", ""), "data_stop", ""), "read")
case("header-analysis-garbage", "HEADER", "ANALYSIS offset 'zzzz'", lambda b: _set_header(b.raw, "analysis_start", "zzzz"),
     "read")
case("header-nul-padding", "HEADER", "NUL bytes instead of the spaces after the version",
     lambda b: b.raw[:6] + b"\0" * 4 + b.raw[10:], "read")
case("header-v2-data-wrong", "HEADER", "FCS 2.0 (HEADER offsets rule) with data_start 1000",
     lambda b: _set_header(b.build(version="2.0"), "data_start", "1000"), "refused",
     r"\$TOT=3000 events .* holds 168923 bytes .* disagree")
case("header-v2-data-blank", "HEADER", "FCS 2.0 with DATA offsets 0 (TEXT's used)",
     lambda b: _set_header(_set_header(b.build(version="2.0"), "data_start", "0"), "data_stop", "0"), "read")

# $TOT and $PAR
_DISAGREE = r"\$TOT/\$PAR disagree with the DATA segment"
case("tot-plus-1", "$TOT / $PAR", "$TOT 3001", lambda b: b.build({"$TOT": "3001"}), "refused",
     r"\$TOT=3001 events of 56 bytes \(\$PAR=14\) need 168056 bytes but the DATA segment holds 168000 bytes "
     r"\(3000 events\)")
case("tot-minus-1", "$TOT / $PAR", "$TOT 2999", lambda b: b.build({"$TOT": "2999"}), "refused", _DISAGREE)
case("tot-zero", "$TOT / $PAR", "$TOT 0 with 3000 events of DATA", lambda b: b.build({"$TOT": "0"}), "refused", _DISAGREE)
case("tot-negative", "$TOT / $PAR", "$TOT -1", lambda b: b.build({"$TOT": "-1"}), "refused", _DISAGREE)
case("tot-1e15", "$TOT / $PAR", "$TOT 10**15", lambda b: b.build({"$TOT": str(10**15)}), "refused",
     r"\$TOT=1000000000000000 events .* need 56000000000000000 bytes .* disagree")
case("tot-1e30", "$TOT / $PAR", "$TOT 10**30", lambda b: b.build({"$TOT": str(10**30)}), "refused", _DISAGREE)
case("tot-1e15-enddata", "$TOT / $PAR", "$TOT 10**15 and $ENDDATA to match, HEADER DATA offsets 0",
     lambda b: b.build({"$TOT": str(10**15), "$ENDDATA": str(b.data_start + 56 * 10**15 - 1)},
                       header={"data_start": 0, "data_stop": 0}),
     "refused", r"DATA segment ends at byte 56000000000001922 but the file has only \d+ bytes: the file is truncated")
case("tot-words", "$TOT / $PAR", "$TOT 'lots'", lambda b: b.build({"$TOT": "lots"}), "refused",
     r"keyword \$TOT is not a whole number: 'lots'")
case("tot-nan", "$TOT / $PAR", "$TOT 'nan'", lambda b: b.build({"$TOT": "nan"}), "refused",
     r"keyword \$TOT is not a whole number: 'nan'")
case("tot-1e400", "$TOT / $PAR", "$TOT '1e400' (overflows a float)", lambda b: b.build({"$TOT": "1e400"}), "refused",
     r"keyword \$TOT is not a whole number")
case("tot-exponent", "$TOT / $PAR", "$TOT '3e3'", lambda b: b.build({"$TOT": "3e3"}), "read")
case("tot-missing", "$TOT / $PAR", "no $TOT (count from the DATA length)", lambda b: b.build({"$TOT": None}), "read")
case("par-plus-1", "$TOT / $PAR", "$PAR 15", lambda b: b.build({"$PAR": "15"}), "refused",
     r"\$PAR=15 but keyword \$P15B is missing: \$PAR disagrees with the channels")
case("par-minus-1", "$TOT / $PAR", "$PAR 13", lambda b: b.build({"$PAR": "13"}), "refused",
     r"\$TOT=3000 events of 52 bytes \(\$PAR=13\) .* disagree")
case("par-zero", "$TOT / $PAR", "$PAR 0", lambda b: b.build({"$PAR": "0"}), "refused", r"\$PAR=0: the file has no channels")
case("par-negative", "$TOT / $PAR", "$PAR -3", lambda b: b.build({"$PAR": "-3"}), "refused", "no channels")
case("par-1e15", "$TOT / $PAR", "$PAR 10**15", lambda b: b.build({"$PAR": str(10**15)}), "refused",
     r"\$PAR=1000000000000000 but keyword \$P15B is missing")
case("par-words", "$TOT / $PAR", "$PAR 'x'", lambda b: b.build({"$PAR": "x"}), "refused",
     r"keyword \$PAR is not a whole number")
case("par-missing", "$TOT / $PAR", "no $PAR", lambda b: b.build({"$PAR": None}), "refused",
     r"required keyword \$PAR is missing")

# Layout of the DATA segment
case("datatype-unknown", "$DATATYPE / $BYTEORD / $PnB", "$DATATYPE 'X'", lambda b: b.build({"$DATATYPE": "X"}),
     "refused", r"unknown \$DATATYPE 'X' data is not supported")
case("datatype-ascii", "$DATATYPE / $BYTEORD / $PnB", "$DATATYPE 'A'", lambda b: b.build({"$DATATYPE": "A"}),
     "refused", "ASCII data is not supported")
case("datatype-missing", "$DATATYPE / $BYTEORD / $PnB", "no $DATATYPE", lambda b: b.build({"$DATATYPE": None}),
     "refused", r"unknown \$DATATYPE '' data is not supported")
case("datatype-double", "$DATATYPE / $BYTEORD / $PnB", "$DATATYPE 'D' with 32-bit $PnB",
     lambda b: b.build({"$DATATYPE": "D"}), "refused", r"invalid \$P1B=32 for \$DATATYPE=D \(must be 64\)")
case("datatype-integer", "$DATATYPE / $BYTEORD / $PnB", "$DATATYPE 'I' (floats read as 32-bit integers)",
     lambda b: b.build({"$DATATYPE": "I"}), "read", gate=True)
case("byteord-mixed", "$DATATYPE / $BYTEORD / $PnB", "$BYTEORD '3,4,1,2'", lambda b: b.build({"$BYTEORD": "3,4,1,2"}),
     "refused", r"unsupported \$BYTEORD '3,4,1,2'")
case("byteord-words", "$DATATYPE / $BYTEORD / $PnB", "$BYTEORD 'big'", lambda b: b.build({"$BYTEORD": "big"}),
     "refused", r"unsupported \$BYTEORD 'big'")
case("byteord-missing", "$DATATYPE / $BYTEORD / $PnB", "no $BYTEORD", lambda b: b.build({"$BYTEORD": None}),
     "refused", r"unsupported \$BYTEORD ''")
case("byteord-swapped", "$DATATYPE / $BYTEORD / $PnB", "$BYTEORD '4,3,2,1' on little-endian data",
     lambda b: b.build({"$BYTEORD": "4,3,2,1"}), "read", gate=True)
case("pnb-words", "$DATATYPE / $BYTEORD / $PnB", "$P3B 'abc'", lambda b: b.build({"$P3B": "abc"}), "refused",
     r"invalid \$P3B 'abc': the bit width must be a whole number")
case("pnb-zero", "$DATATYPE / $BYTEORD / $PnB", "$P3B '0'", lambda b: b.build({"$P3B": "0"}), "refused",
     r"invalid \$P3B '0'")
case("pnb-negative", "$DATATYPE / $BYTEORD / $PnB", "$P3B '-32'", lambda b: b.build({"$P3B": "-32"}), "refused",
     r"invalid \$P3B '-32'")
case("pnb-31", "$DATATYPE / $BYTEORD / $PnB", "$P3B '31'", lambda b: b.build({"$P3B": "31"}), "refused",
     r"invalid \$P3B=31 for \$DATATYPE=F \(must be 32\)")
case("pnb-huge", "$DATATYPE / $BYTEORD / $PnB", "$P3B of 30 nines", lambda b: b.build({"$P3B": "9" * 30}), "refused",
     r"invalid \$P3B=9+ for \$DATATYPE=F")
case("pnb-decimal", "$DATATYPE / $BYTEORD / $PnB", "$P3B '32.0'", lambda b: b.build({"$P3B": "32.0"}), "refused",
     r"invalid \$P3B '32.0'")
case("pnb-missing", "$DATATYPE / $BYTEORD / $PnB", "no $P3B", lambda b: b.build({"$P3B": None}), "refused",
     r"\$PAR=14 but keyword \$P3B is missing")
case("pnb-integer-12", "$DATATYPE / $BYTEORD / $PnB", "$DATATYPE 'I' with $P3B '12'",
     lambda b: b.build({"$DATATYPE": "I", "$P3B": "12"}), "refused",
     r"invalid \$P3B=12: integer widths of 8, 16, 24, 32 or 64 bits are supported")
case("mode-histogram", "$DATATYPE / $BYTEORD / $PnB", "$MODE 'H'", lambda b: b.build({"$MODE": "H"}), "refused",
     r"\$MODE=H \(histogram data\) is not supported")

# DATA and data-set offsets in TEXT (HEADER DATA offsets 0, as large files have them)
_NO_HEADER = {"data_start": 0, "data_stop": 0}
case("begindata-words", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$BEGINDATA 'abc'",
     lambda b: b.build({"$BEGINDATA": "abc"}, header=_NO_HEADER), "refused", r"keyword \$BEGINDATA is not a whole number")
case("begindata-zero", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$BEGINDATA 0",
     lambda b: b.build({"$BEGINDATA": "0"}, header=_NO_HEADER), "refused", r"DATA segment offsets 0-\d+ are invalid")
case("enddata-before-begin", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$ENDDATA before $BEGINDATA",
     lambda b: b.build({"$BEGINDATA": str(b.data_start), "$ENDDATA": "1000"}, header=_NO_HEADER), "refused",
     r"DATA segment offsets 1923-1000 are invalid")
case("enddata-negative", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$ENDDATA -1",
     lambda b: b.build({"$BEGINDATA": str(b.data_start), "$ENDDATA": "-1"}, header=_NO_HEADER), "refused",
     r"DATA segment offsets 1923--1 are invalid")
case("enddata-huge", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$ENDDATA 10**12",
     lambda b: b.build({"$ENDDATA": str(10**12)}, header=_NO_HEADER), "refused",
     r"DATA segment ends at byte 1000000000000 but the file has only \d+ bytes: the file is truncated")
case("begindata-in-text", "$BEGINDATA / $ENDDATA / $NEXTDATA", "DATA offsets pointing into the TEXT segment",
     lambda b: b.build({"$BEGINDATA": "300", "$ENDDATA": str(300 + len(b.data) - 1)}, header=_NO_HEADER), "read")
case("nextdata-outside", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$NEXTDATA beyond the end of the file",
     lambda b: b.build({"$NEXTDATA": "99999999"}), "read")
case("nextdata-negative", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$NEXTDATA -5",
     lambda b: b.build({"$NEXTDATA": "-5"}), "read")
case("nextdata-words", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$NEXTDATA 'next'",
     lambda b: b.build({"$NEXTDATA": "next"}), "refused", r"keyword \$NEXTDATA is not a whole number")
case("stext-words", "$BEGINDATA / $ENDDATA / $NEXTDATA", "$BEGINSTEXT 'abc'",
     lambda b: b.build({"$BEGINSTEXT": "abc", "$ENDSTEXT": "0"}), "refused", r"keyword \$BEGINSTEXT is not a whole number")
case("stext-over-data", "$BEGINDATA / $ENDDATA / $NEXTDATA", "supplemental TEXT pointing at the DATA bytes",
     lambda b: b.build({"$BEGINSTEXT": str(b.data_start), "$ENDSTEXT": str(b.size - 1)}), "read")

# TEXT segment structure (same length, so every offset stays right)
case("text-no-final-delimiter", "TEXT segment", "closing delimiter replaced by a space",
     lambda b: _text_segment(b, lambda t: t[:-1] + b" "), "read")
case("text-dangling-keyword", "TEXT segment", "last value cut off (a keyword without value)",
     lambda b: _text_segment(b, lambda t: t[:-30] + b"/" + b" " * 29), "read")
case("text-empty-value", "TEXT segment", "a doubled delimiter ('$MODE//L')",
     lambda b: _swap(b.raw, b"/$MODE/L/", b"/$MODE//L"), "read")
case("text-lower-case-keyword", "TEXT segment", "'$tot' in lower case", lambda b: _swap(b.raw, b"/$TOT/", b"/$tot/"),
     "read")
case("text-duplicate-keyword", "TEXT segment", "$TOT written twice (3000, then 9)",
     lambda b: _swap(b.build({"$CYT": "x"}), b"/$CYT/x/", b"/$TOT/9/"), "refused", r"\$TOT=9 events .* disagree")
case("text-letter-delimiter", "TEXT segment", "first TEXT byte a letter", lambda b: _text_segment(b, lambda t: b"A" + t[1:]),
     "refused", r"required keyword \$PAR is missing")
case("text-space-delimiter", "TEXT segment", "every delimiter a space (values hold spaces)",
     lambda b: _text_segment(b, lambda t: t.replace(b"/", b" ")), "refused",
     r"\$PAR=14 but keyword \$P\d+B is missing")
case("text-only-delimiters", "TEXT segment", "TEXT all '/'", lambda b: _text_segment(b, lambda t: b"/" * len(t)),
     "refused", r"required keyword \$PAR is missing")
case("text-spaces", "TEXT segment", "TEXT all spaces", lambda b: _text_segment(b, lambda t: b" " * len(t)),
     "refused", r"required keyword \$PAR is missing")
case("text-nul", "TEXT segment", "TEXT all NUL bytes", lambda b: _text_segment(b, lambda t: b"\0" * len(t)),
     "refused", r"required keyword \$PAR is missing")
case("text-random", "TEXT segment", "TEXT random bytes",
     lambda b: _text_segment(b, lambda t: np.random.default_rng(0).integers(0, 256, len(t), dtype=np.uint8).tobytes()),
     "refused", r"required keyword \$PAR is missing")

# Channel keywords
case("channel-duplicate-name", "channel keywords", "$P2N equal to $P1N ('FSC-A' twice)",
     lambda b: b.build({"$P2N": "FSC-A"}), "read", gate=True,
     check=lambda s: s.channels[:2] == ["FSC-A", "FSC-A"])
case("channel-name-missing", "channel keywords", "no $P2N", lambda b: b.build({"$P2N": None}), "read",
     check=lambda s: s.channels[1] == "P2")
case("channel-range-words", "channel keywords", "$P2R 'big'", lambda b: b.build({"$P2R": "big"}), "refused",
     r"keyword \$P2R is not a number: 'big'")
case("channel-log-no-range", "channel keywords", "$P2E '4,1' (log) with $P2R 0",
     lambda b: b.build({"$P2E": "4,1", "$P2R": "0"}), "refused", r"\$P2E is logarithmic but \$P2R=0.0 gives no scale")
case("channel-log-garbage", "channel keywords", "$P2E 'x,y'", lambda b: b.build({"$P2E": "x,y"}), "refused",
     r"invalid \$P2E 'x,y'")
case("channel-timestep-words", "channel keywords", "$TIMESTEP 'fast'", lambda b: b.build({"$TIMESTEP": "fast"}),
     "read")

# Events
case("events-nan-fsc", "events", "NaN in FSC-A of every 100th event",
     lambda b: _events(b, lambda e, b: e.__setitem__((slice(None, None, 100), b.col("FSC-A")), np.nan)), "read",
     check=lambda s: np.isnan(s.events).sum() == 30, gate=True)
case("events-nan-ssc", "events", "NaN in SSC-A of every 100th event",
     lambda b: _events(b, lambda e, b: e.__setitem__((slice(None, None, 100), b.col("SSC-A")), np.nan)), "read",
     gate=True)
case("events-inf", "events", "+Inf and -Inf in two fluorescence channels",
     lambda b: _events(b, lambda e, b: (e.__setitem__((slice(None, None, 50), b.col("R710-A")), np.inf),
                                       e.__setitem__((slice(1, None, 50), b.col("B695-A")), -np.inf))),
     "read", check=lambda s: np.isinf(s.events).sum() == 120, gate=True)
case("events-nan-time", "events", "NaN in Time of every 7th event",
     lambda b: _events(b, lambda e, b: e.__setitem__((slice(None, None, 7), b.col("Time")), np.nan)), "read",
     gate=True)
case("events-all-nan", "events", "every value NaN", lambda b: _events(b, lambda e, b: e.fill(np.nan)), "read",
     gate=True)
case("events-huge", "events", "one event of 3.4e38 in every channel",
     lambda b: _events(b, lambda e, b: e.__setitem__(5, 3.4e38)), "read")
case("events-zero", "events", "$TOT 0 and an empty DATA segment", lambda b: b.build({"$TOT": "0"}, data=b""), "read",
     events=0, gate=True)
case("events-zero-no-tot", "events", "no $TOT and an empty DATA segment", lambda b: b.build({"$TOT": None}, data=b""),
     "read", events=0)
case("events-one", "events", "one event", lambda b: b.build({"$TOT": "1"}, data=b.data[:56]), "read", events=1, gate=True)

# Keyword encoding
case("latin1-pns", "keyword encoding", "latin-1 byte (µ) in $P5S",
     lambda b: _latin1(b, "$P5S", "CD4 PerCP-Cy5.5 XX", "CD4 PerCP-Cy5.5 µm"), "read", gate=True,
     check=lambda s: s.markers[4] == "CD4 PerCP-Cy5.5 µm")
case("latin1-cyt", "keyword encoding", "latin-1 byte (è) in $CYT", lambda b: _latin1(b, "$CYT", "Cytometre XX", "Cytomètre  X"),
     "read", check=lambda s: s.metadata["$CYT"] == "Cytomètre  X")
case("latin1-and-utf8", "keyword encoding", "latin-1 $CYT beside a UTF-8 $P5S (the whole TEXT is read as latin-1)",
     lambda b: _latin1(b, "$CYT", "Cytometre XX", "Cytomètre  X", {"$P5S": "CD4 µ"}), "read",
     check=lambda s: s.metadata["$CYT"] == "Cytomètre  X" and s.markers[4].startswith("CD4 "))
case("invalid-utf8-pnn", "keyword encoding", "bytes ff fe at the end of $P4N (a $SPILLOVER channel)",
     lambda b: _swap(b.build({"$P4N": "R780-AXX"}), b"R780-AXX", b"R780-A\xff\xfe"), "spill",
     r"names channels the file lacks: R780-A; the file's channels are .*R780-Aÿþ")
case("nul-in-value", "keyword encoding", "NUL bytes inside $CYT",
     lambda b: _swap(b.build({"$CYT": "aaaa"}), b"aaaa", b"a\0\0a"), "read", check=lambda s: s.metadata["$CYT"] == "a\0\0a")

# Spillover keyword
case("spill-absent-channel", "spillover", "$SPILLOVER names FL99-A, which the file lacks",
     lambda b: _spill(b, lambda n, names, m: (["FL99-A", *names[1:]], m)), "spill",
     "the spillover matrix \\(keyword \\$SPILLOVER\\) names channels the file lacks: FL99-A")
case("spill-singular", "spillover", "two equal rows (unit diagonal)", lambda b: _spill(b, _singular), "spill",
     r"is singular \(condition number")
case("spill-percent", "spillover", "matrix in percent (diagonal 100)", lambda b: _spill(b, lambda n, names, m: (names, m * 100)),
     "spill", "looks like percentages: divide it by 100")
case("spill-nan", "spillover", "a NaN value", lambda b: _spill_tokens(b, lambda t: [*t[:12], "nan", *t[13:]]),
     "spill", "holds non-finite values")
case("spill-duplicate-channel", "spillover", "one channel named twice",
     lambda b: _spill(b, lambda n, names, m: ([names[0], names[0], *names[2:]], m)), "spill",
     "names the same channel twice")
case("spill-not-numeric", "spillover", "a value 'abc'", lambda b: _spill_tokens(b, lambda t: [*t[:12], "abc", *t[13:]]),
     "spill-ignored", r"ignoring unreadable \$SPILLOVER: .*could not convert string to float: 'abc'", gate=True)
case("spill-short", "spillover", "one value missing", lambda b: _spill_tokens(b, lambda t: t[:-1]), "spill-ignored",
     r"states 10 channels, which needs 111 fields, but has 110")
case("spill-count-words", "spillover", "count 'ten'", lambda b: _spill_tokens(b, lambda t: ["ten", *t[1:]]),
     "spill-ignored", "starts with 'ten', not the channel count")
case("spill-count-huge", "spillover", "count 10**11", lambda b: _spill_tokens(b, lambda t: [str(10**11), *t[1:]]),
     "spill-ignored", "states 100000000000 channels")

KINDS = {c.kind: c for c in CASES}
# read kinds whose events differ from the valid file's: other bytes, another decoding or time scale
_OTHER_EVENTS = {k for k in KINDS if k.startswith("events-")} | {
    "byteord-swapped", "datatype-integer", "begindata-in-text", "channel-timestep-words"}
assert len(KINDS) == len(CASES), "kinds must be unique"


# -- the contract ---------------------------------------------------------------------------------


def _within(seconds: float, fn: Callable, *args):
    """fn(*args) in a worker thread; fails when it has not returned after ``seconds`` (a hang)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{fn.__name__}{args} still running after {seconds} s"
    box["seconds"] = time.perf_counter() - started
    return box


def test_the_time_limit_catches_a_hang():
    with pytest.raises(AssertionError, match="still running after 0.2 s"):
        _within(0.2, time.sleep, 1.0)


def _read(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = ta.read_fcs(path)
    return sample, [str(w.message) for w in caught]


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return int(float(value))


def assert_contract(path: Path) -> tuple[ta.Sample | None, TregAnalysisError | None, list[str], float]:
    """Read ``path`` within the time limit: a consistent Sample, or the project's error naming the file."""
    box = _within(TIME_LIMIT, _read, path)
    error = box.get("error")
    if error is not None:
        assert isinstance(error, TregAnalysisError), f"{type(error).__name__} from inside reached the caller: {error!r}"
        assert isinstance(error, FCSError) and error.path == str(path)
        assert str(error).startswith(f"{path}: ") and len(str(error)) > len(str(path)) + 10
        return None, error, [], box["seconds"]
    sample, caught = box["value"]
    meta = sample.metadata
    assert sample.events.dtype == np.float32 and sample.events.ndim == 2
    assert sample.events.shape == (sample.n_events, len(sample.channels)) == (sample.n_events, len(sample.markers))
    assert sample.n_channels == _whole(meta["$PAR"])
    if meta.get("$TOT", "").strip():
        assert sample.n_events == _whole(meta["$TOT"])
    bytes_per_event = sum(_whole(meta[f"$P{i}B"]) for i in range(1, sample.n_channels + 1)) // 8
    assert sample.n_events * bytes_per_event <= path.stat().st_size  # events the file really holds
    return sample, None, caught, box["seconds"]


def _write(c: Case, b: Base, folder: Path) -> Path:
    path = folder / f"{c.kind}.fcs"
    path.write_bytes(c.make(b))
    return path


def test_base_file_is_rebuilt_byte_for_byte(base):
    # so each damaged file differs from a valid one by its damage alone
    assert base.build() == base.raw
    assert (base.n, base.p, base.size, base.text_start, base.text_stop, base.data_start) == (3000, 14, 169923, 256, 1922, 1923)
    assert base.text["$SPILLOVER"].startswith("10,R780-A,")
    assert base.raw[base.text_start : base.text_start + 1] == b"/"


@pytest.mark.parametrize("c", CASES, ids=[c.kind for c in CASES])
def test_damaged_file(c: Case, base: Base, tmp_path: Path):
    path = _write(c, base, tmp_path)
    tracemalloc.start()
    try:
        sample, error, caught, seconds = assert_contract(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < TIME_LIMIT
    # a lying $TOT/$PAR/$ENDDATA must not lead to an allocation of what it claims
    assert peak < MEMORY_LIMIT, f"{peak:,} bytes allocated reading {c.kind}"
    if c.expect == "refused":
        assert error is not None, f"{c.kind} was read as {sample}"
        assert re.search(c.problem, error.problem), error.problem
        assert peak < 1_000_000  # refused before the events are read
        return
    assert error is None, f"{c.kind} was refused: {error}"
    assert sample.n_events == c.events
    if c.check is not None:
        assert c.check(sample), sample
    if c.expect == "spill":
        with pytest.raises(SpilloverError) as info:
            compensate(sample)
        assert path.name in str(info.value)
        assert re.search(c.problem, str(info.value)), str(info.value)
    elif c.expect == "spill-ignored":
        assert sample.spillover is None
        assert any(str(path) in w and re.search(c.problem, w) for w in caught), caught
        with pytest.raises(SpilloverError, match=rf"{re.escape(path.name)}: cannot compensate: the file's \$SPILLOVER "
                                                 "keyword is unreadable"):
            compensate(sample, required=True)
        with pytest.warns(UserWarning, match="not compensated"):
            passed_on = compensate(sample)
        assert passed_on.compensation == {"applied": False, "reason": passed_on.compensation["reason"]}
    else:
        assert sample.spillover is not None or "$SPILLOVER" not in sample.metadata
        if c.kind not in _OTHER_EVENTS:
            # damage outside the events leaves the events as they were
            np.testing.assert_array_equal(sample.events, base.read[: c.events])


# -- the command line -------------------------------------------------------------------------------


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, name: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("treganalysis: error: ") and name in lines[0], err
    assert "Traceback" not in err and "please report" not in err and "internal error" not in err
    return lines[0]


_REFUSED = [c for c in CASES if c.expect in ("refused", "spill")]


@pytest.mark.parametrize("c", _REFUSED, ids=[c.kind for c in _REFUSED])
def test_refused_file_on_the_command_line(c: Case, base: Base, tmp_path: Path, capsys):
    path = _write(c, base, tmp_path)
    code, out, err = _run(capsys, "inspect", str(path))
    if c.expect == "refused":
        assert code == 1 and out == ""
        line = _one_error_line(err, str(path))
        assert re.search(c.problem, line)
    else:  # inspect shows a file whose matrix does not fit; only compensation refuses it
        assert code == 0 and str(path) in out and err == ""
    code, out, err = _run(capsys, "gate", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and out == ""
    line = _one_error_line(err, str(path) if c.expect == "refused" else path.name)
    assert re.search(c.problem, line)
    assert not (tmp_path / "out" / "populations.tsv").exists()


_GATED = [c for c in CASES if c.gate]
_GATED_PARAMS = [pytest.param(c, id=c.kind) for c in _GATED]


@pytest.mark.parametrize("c", _GATED_PARAMS)
def test_accepted_file_is_gated_or_refused_in_one_line(c: Case, base: Base, tmp_path: Path, capsys):
    """A file read with its damage is gated (exit 0, results written) or refused in one line (exit 1)."""
    path = _write(c, base, tmp_path)
    code, out, err = _run(capsys, "inspect", str(path))
    assert code == 0 and str(path) in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the damage may warn; what matters is the outcome
        code, out, err = _run(capsys, "gate", str(path), "--out", str(tmp_path / "out"))
    if code == 0:
        assert out.startswith(f"{path}: ") and (tmp_path / "out" / "populations.tsv").exists()
        assert "Traceback" not in err
    else:
        assert code == 1 and out == ""
        _one_error_line(err, path.name)


def test_gate_outcomes_of_accepted_files(base: Base, tmp_path: Path, capsys):
    """`gate` on three accepted kinds: refused (a name twice), QC fail (no events), refused when required."""
    dup = _write(KINDS["channel-duplicate-name"], base, tmp_path)
    code, _, err = _run(capsys, "gate", str(dup), "--out", str(tmp_path / "dup"))
    assert code == 1 and "'FSC-A' names several channels" in _one_error_line(err, dup.name)
    empty = _write(KINDS["events-zero"], base, tmp_path)
    code, out, _ = _run(capsys, "gate", str(empty), "--out", str(tmp_path / "empty"))
    assert code == 0 and "Treg not gated, QC fail" in out
    # an unreadable $SPILLOVER is gated uncompensated, unless compensation is required
    spill = _write(KINDS["spill-not-numeric"], base, tmp_path)
    with pytest.warns(UserWarning, match=r"ignoring unreadable \$SPILLOVER"):
        code, _, err = _run(capsys, "gate", str(spill), "--out", str(tmp_path / "spill"),
                            "--config-json", '{"compensation": {"required": true}}')
    assert code == 1 and "cannot compensate: the file's $SPILLOVER keyword is unreadable" in _one_error_line(err, spill.name)


# -- mutations ---------------------------------------------------------------------------------------

_NASTY = [b"", b"0", b"-1", b"1e400", b"nan", b"inf", b"-inf", b"9" * 20, b"abc", b"3.5", b"\xff\xfe", b" ", b"1,2",
          b"4,3,2,1", b"3000", b"14", b"1" * 200, "\u0663".encode(), "\uff13".encode(), b"0x10", b"+5", b"//", b"\0"]
# positions in the HEADER, in or near the TEXT, or anywhere (taken modulo the current length)
_POSITION = st.one_of(st.integers(0, 57), st.integers(58, 2200), st.integers(0, 170_000))
_MUTATION = st.one_of(
    st.tuples(st.just("flip"), _POSITION, st.integers(0, 7)),
    st.tuples(st.just("insert"), _POSITION, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _POSITION, st.integers(1, 16)),
    st.tuples(st.just("overwrite"), _POSITION, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("header"), st.integers(0, 5),
              st.one_of(st.integers(0, 99_999_999).map(str), st.text("0123456789 -x", max_size=8))),
    st.tuples(st.just("keyword"), st.integers(0, 10_000), st.one_of(st.sampled_from(_NASTY), st.binary(max_size=10))),
    st.tuples(st.just("truncate"), st.integers(58, 170_000), st.just(0)),  # the corpus cuts the HEADER
)
_KEYWORD_VALUE = re.compile(rb"/\$?[A-Z][A-Z0-9]*/([^/]*)(?=/)")


def mutate(raw: bytes, mutations) -> bytes:
    blob = bytearray(raw)
    for op, where, what in mutations:
        pos = where % max(len(blob), 1)
        if op == "flip" and blob:
            blob[pos] ^= 1 << what
        elif op == "insert":
            blob[pos:pos] = what
        elif op == "overwrite":
            blob[pos : pos + len(what)] = what[: len(blob) - pos]
        elif op == "delete":
            del blob[pos : pos + what]
        elif op == "header":
            blob[10 + 8 * where : 18 + 8 * where] = what.encode("ascii").rjust(8)[:8]
        elif op == "keyword":
            values = list(_KEYWORD_VALUE.finditer(bytes(blob[:4000])))
            if values:
                value = values[where % len(values)]
                blob[value.start(1) : value.end(1)] = what
        elif op == "truncate":
            del blob[pos:]
    return bytes(blob)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutated")


@settings(max_examples=400, deadline=timedelta(seconds=TIME_LIMIT))
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_bytes_keep_the_contract(base: Base, scratch: Path, mutations):
    path = scratch / "mutated.fcs"
    path.write_bytes(mutate(base.raw, mutations))
    sample, error, _, seconds = assert_contract(path)
    assert seconds < TIME_LIMIT
    event("read" if error is None else "refused: " + re.sub(r"[\d'\"].*", "", error.problem)[:40])


def test_mutations_do_what_they_say(base: Base):
    assert mutate(base.raw, [("header", 0, "abc")])[10:18] == b"     abc"
    assert b"/$PAR/nan/" in mutate(base.raw, [("keyword", 4, b"nan")])
    assert len(mutate(base.raw, [("truncate", 100, 0)])) == 100
    assert mutate(base.raw, [("overwrite", base.size - 2, b"abc")]) == base.raw[:-2] + b"ab"


# -- the table of docs/robustness.md ---------------------------------------------------------------


def _gist(text: str, path: Path, limit: int = 150) -> str:
    text = " ".join(text.replace(str(path), "FILE").replace(path.name, "FILE").replace("|", "\\|").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe(c: Case, b: Base, folder: Path) -> str:
    """One markdown row: the damage and what read_fcs / compensate / gate made of it."""
    path = _write(c, b, folder)
    sample, error, caught, _ = assert_contract(path)
    if error is not None:
        result = f"refused: `{_gist(error.problem, path)}`"
    else:
        result = f"read, {sample.n_events} event{'' if sample.n_events == 1 else 's'}"
        notes = [w for w in caught if "not compensated" not in w]
        if c.expect == "spill":
            try:
                compensate(sample)
                result += "; compensate: applied"
            except SpilloverError as exc:
                result += f"; compensate refuses: `{_gist(str(exc), path)}`"
        elif notes:
            result += f"; warns: `{_gist(notes[0], path)}`"
        if c.expect == "spill-ignored":
            result += "; compensate warns and passes it on uncompensated (refuses with `compensation: required`)"
        if c.gate:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()) as err, \
                    contextlib.redirect_stdout(io.StringIO()) as out:
                warnings.simplefilter("ignore")
                try:
                    code = main(["gate", str(path), "--out", str(folder / c.kind)])
                    result += f"; `gate` exit {code}"
                    summary = re.search(r"Treg .*?, QC \w+", out.getvalue())
                    if summary:
                        result += f" ({summary.group()})"
                    if code:
                        result += f": `{_gist(err.getvalue().strip().removeprefix('treganalysis: error: '), path, 60)}`"
                except Exception as exc:
                    result += f"; **`gate` crashes** (bug): `{type(exc).__name__}: {_gist(str(exc), path, 60)}`"
    return f"| {c.what.replace('|', chr(92) + '|')} | {result} |"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        valid = make_base(Path(tmp) / "valid")
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        group = None
        rows = []
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            for c in CASES:
                rows.append((c.group, describe(c, valid, folder)))
        for name, row in rows:
            if name != group:
                group = name
                print(f"\n### {name}\n\n| damage | result |\n|---|---|")
            print(row)
        sys.exit(0)
