"""read_fcs: the same numbers as FlowKit on every real file, and clean refusals of bad ones."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import flowio
import flowkit as fk
import flowutils
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treganalysis as ta
from treganalysis.fcs import assemble_fcs, count_datasets, read_text, write_fcs

from conftest import DATA, SHARED, fcsparser_files, shared

FCSPARSER = fcsparser_files()
# Files FlowKit cannot read, each checked below against an independent reference instead.
NOT_FOR_FLOWKIT = {"Cytek_xP5.fcs": "24-bit integers", "fake_large_fcs.fcs": "blank HEADER offsets"}
REFUSED = {"corrupted.fcs": "too short", "sample_header.fcs": "truncated"}
# FlowIO mislabels these: a doubled delimiter written for empty $P3S/$P4S swallows $P6N.
CELLQUEST_NAMES = ["FSC-H", "SSC-H", "FL1-H", "FL2-H", "FL3-H", "FL1-A", "FL4-H", "Time"]


def _real_files() -> list:
    files = []
    if FCSPARSER is not None:
        files += sorted(FCSPARSER.rglob("*.fcs"))
    if SHARED.exists():
        files += sorted(SHARED.rglob("*.fcs"))
        files += sorted((SHARED / "flowcore").glob("0877408774.*"))
        files += sorted((SHARED / "flowcore" / "compdata" / "data").glob("060909.*"))
    files += sorted(DATA.glob("*.fcs"))
    readable = [f for f in files if f.name not in NOT_FOR_FLOWKIT and f.name not in REFUSED
                and "noncompliant" not in f.parts and "discrepancy" not in f.name]
    return [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in readable]


def _flowkit(path: Path, **kwargs) -> fk.Sample:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.Sample(path, ignore_offset_error=True, **kwargs)


def test_real_files_are_found():
    # guards the cross-check below against silently testing nothing
    assert FCSPARSER is not None, "fcsparser (a test dependency) carries the real instrument files"
    assert len(list(FCSPARSER.rglob("*.fcs"))) >= 14
    if SHARED.exists():
        assert len(_real_files()) > 50


@pytest.mark.parametrize("path", _real_files())
def test_same_events_and_names_as_flowkit(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = ta.read_fcs(path)
    ref = _flowkit(path)
    expected = ref.get_events(source="raw")
    assert ours.events.dtype == np.float32 and ours.events.flags.c_contiguous
    assert ours.events.shape == expected.shape == (ref.event_count, len(ours.channels))
    np.testing.assert_allclose(ours.events, expected, rtol=2e-7, atol=0)
    if path.name.startswith("0877408774"):
        assert ours.channels == CELLQUEST_NAMES
    else:
        assert ours.channels == ref.pnn_labels
        assert ours.markers == [m.strip() for m in ref.pns_labels]
    assert ours.n_events == ref.event_count
    assert ours.path == path


@pytest.mark.parametrize("path", _real_files())
def test_spillover_keyword_matches_flowkit(path: Path):
    ours = ta.read_fcs(path)
    ref = _flowkit(path)
    text = ref.metadata.get("spillover") or ref.metadata.get("spill")
    try:
        matrix, channels = flowutils.compensate.get_spill(text or "")
    except ValueError:
        # no keyword, or one without values (Miltenyi writes only the names): nothing to use
        assert ours.spillover is None
        return
    assert ours.spillover.channels == tuple(channels)
    np.testing.assert_array_equal(ours.spillover.matrix, matrix)
    assert ours.spillover.source.startswith("keyword ")


def _fcsparser_file(*parts: str) -> Path:
    if FCSPARSER is None:
        pytest.skip("fcsparser is not installed")
    return FCSPARSER.joinpath(*parts)


def test_big_endian_24_bit_integers_cytek():
    path = _fcsparser_file("Cytek_xP5", "Cytek_xP5.fcs")
    sample = ta.read_fcs(path)
    text = sample.metadata
    n, p = int(text["$TOT"]), int(text["$PAR"])
    # independent decoding: Python ints from 3 big-endian bytes each
    raw = path.read_bytes()[int(text["$BEGINDATA"]) : int(text["$BEGINDATA"]) + n * p * 3]
    ints = np.array([int.from_bytes(raw[i : i + 3], "big") for i in range(0, 3 * p * 50, 3)], dtype=np.float64)
    ints = ints.reshape(50, p)
    # the first two rows as fcsparser's own tests state them
    np.testing.assert_array_equal(ints[:2], [[0, 286, 164, 154, 54, 470, 1023, 770], [0, 171, 128, 153, 199, 91, 211, 12]])
    expected = ints.copy()
    for j in range(p):
        decades, offset = (float(v) for v in text[f"$P{j + 1}E"].split(","))
        if decades > 0:
            expected[:, j] = 10 ** (decades * ints[:, j] / float(text[f"$P{j + 1}R"])) * offset
    expected[:, 0] *= float(text["$TIMESTEP"])  # TIME
    assert sample.channels[0] == "TIME" and sample.n_events == 23126
    np.testing.assert_allclose(sample.events[:50], expected, rtol=2e-7)


def test_blank_header_offsets_use_text_offsets():
    path = _fcsparser_file("fake_large_fcs", "fake_large_fcs.fcs")
    sample = ta.read_fcs(path)
    # the same events as the Fortessa file it was made from, which FlowKit reads
    twin = _flowkit(_fcsparser_file("Fortessa", "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"))
    np.testing.assert_allclose(sample.events, twin.get_events(source="raw"), rtol=2e-7)
    np.testing.assert_allclose(sample.events[0, :3], [1312.85, 560.0, 153640.969], rtol=1e-6)


@pytest.mark.parametrize(
    "parts, problem",
    [(("corrupted", "corrupted.fcs"), "too short"), (("cytek-nl-2000", "sample_header.fcs"), "truncated")],
)
def test_corrupted_fcsparser_files_are_refused(parts, problem):
    path = _fcsparser_file(*parts)
    with pytest.raises(ta.FCSError, match=problem) as info:
        ta.read_fcs(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["data_start_offset_discrepancy_example.fcs", "data_stop_offset_discrepancy_example.fcs"])
def test_offset_discrepancy_refused_unless_told(name):
    path = DATA / "damaged" / name
    with pytest.raises(ta.FCSError, match="HEADER and TEXT disagree") as info:
        ta.read_fcs(path)
    assert name in str(info.value) and "offsets=" in str(info.value)
    with pytest.warns(UserWarning, match="TIMESTEP"):
        sample = ta.read_fcs(path, offsets="text")
    # mixed $PnB widths: compare with FlowIO's own decoding of the same bytes
    ref = flowio.FlowData(str(path), ignore_offset_discrepancy=True).as_array(preprocess=False)
    assert sample.events.shape == ref.shape == (2, 26)
    meta = sample.metadata
    linear = [j for j in range(26) if float(meta.get(f"$P{j + 1}E", "0,0").split(",")[0]) == 0
              and sample.channels[j] != "Time"]
    gains = np.array([float(meta.get(f"$P{j + 1}G", "1") or 1) for j in linear])
    np.testing.assert_allclose(sample.events[:, linear], ref[:, linear] / gains, rtol=1e-7)


def test_multi_dataset_file():
    path = shared("flowkit", "multi_dataset_fcs", "coulter.lmd")
    assert count_datasets(path) == 2
    with pytest.warns(UserWarning, match="2 data sets"):
        first = ta.read_fcs(path)
    second = ta.read_fcs(path, dataset=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = flowio.read_multiple_data_sets(str(path), ignore_offset_error=True)
    for ours, ref in zip((first, second), refs):
        np.testing.assert_allclose(ours.events, ref.as_array(), rtol=2e-7)
        assert ours.channels == ref.pnn_labels
    assert (first.version, second.version, second.dataset) == ("2.0", "3.0", 1)
    with pytest.raises(ta.FCSError, match="no data set 2; it holds 2"):
        ta.read_fcs(path, dataset=2)


# -- synthetic files: every layout, cross-checked with FlowKit ---------------------------------


def _layout_text(n: int, p: int, datatype: str, order: str, width: int, **extra: str) -> dict:
    text = {"$BYTEORD": "1,2,3,4" if order == "<" else "4,3,2,1", "$DATATYPE": datatype, "$MODE": "L",
            "$NEXTDATA": "0", "$PAR": str(p), "$TOT": str(n)}
    for i in range(1, p + 1):
        text.update({f"$P{i}N": f"FL{i}-A", f"$P{i}B": str(width), f"$P{i}E": "0,0", f"$P{i}R": "1024"})
    text.update(extra)
    return text


_KINDS = {"I8": ("I", "u1", 8), "I16": ("I", "u2", 16), "I32": ("I", "u4", 32), "F": ("F", "f4", 32), "D": ("D", "f8", 64)}


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(_KINDS)),
    order=st.sampled_from("<>"),
    n=st.integers(1, 300),
    p=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    log=st.booleans(),
    gain=st.sampled_from([1.0, 2.0, 0.5]),
    version=st.sampled_from(["2.0", "3.0", "3.1"]),
)
def test_synthetic_layouts_match_flowkit(tmp_path_factory, kind, order, n, p, seed, log, gain, version):
    datatype, code, width = _KINDS[kind]
    rng = np.random.default_rng(seed)
    top = min(2 ** width, 1024) if datatype == "I" else 1024
    values = (rng.integers(0, 2**width, (n, p), dtype=np.uint64) if datatype == "I"
              else rng.normal(300, 200, (n, p))).astype(order + code)
    extra = {"$P1E": "4,1"} if log else {}
    extra.update({"$P2G": f"{gain}"} if p > 1 else {})
    if p > 2:
        extra.update({"$P3N": "Time", "$TIMESTEP": "0.01", "$P3G": "3"})
    text = _layout_text(n, p, datatype, order, width, **extra)
    for i in range(1, p + 1):
        text[f"$P{i}R"] = str(top)
    path = tmp_path_factory.mktemp("fcs") / "s.fcs"
    path.write_bytes(assemble_fcs(text, values.tobytes(), version=version))
    ours = ta.read_fcs(path)
    ref = _flowkit(path)
    expected = ref.get_events(source="raw")
    assert ours.events.shape == expected.shape == (n, p)
    np.testing.assert_allclose(ours.events, expected, rtol=2e-7, atol=1e-30)
    columns = ta.read_fcs(path, order="F").events  # column-major: the same values
    assert columns.flags.f_contiguous and columns.dtype == np.float32
    np.testing.assert_array_equal(columns, ours.events)


@pytest.mark.parametrize("order", "<>")
def test_mixed_integer_widths_and_bit_masks(tmp_path, order):
    rng = np.random.default_rng(1)
    n = 500
    dtype = np.dtype([("a", order + "u2"), ("b", order + "u1"), ("c", order + "u4"), ("d", order + "u2")])
    rows = np.zeros(n, dtype=dtype)
    for name, bits in zip("abcd", (16, 8, 32, 16)):
        rows[name] = rng.integers(0, 2**bits, n, dtype=np.uint64)
    text = _layout_text(n, 4, "I", order, 16)
    text.update({"$P2B": "8", "$P3B": "32", "$P1R": "1024", "$P2R": "256", "$P3R": "262144", "$P4R": "1000"})
    path = tmp_path / "mixed.fcs"
    path.write_bytes(assemble_fcs(text, rows.tobytes()))
    ours = ta.read_fcs(path)
    expected = np.column_stack([rows["a"] & 1023, rows["b"], rows["c"] & 262143, rows["d"] & 1023])
    np.testing.assert_array_equal(ours.events, expected.astype(np.float32))
    np.testing.assert_allclose(ours.events, _flowkit(path).get_events(source="raw"), rtol=2e-7)


def test_24_bit_little_endian(tmp_path):
    values = np.array([[1, 2**23 + 5], [2**24 - 1, 70000]], dtype=np.uint32)
    data = b"".join(int(v).to_bytes(3, "little") for v in values.ravel())
    text = _layout_text(2, 2, "I", "<", 24, **{"$P1R": str(2**24), "$P2R": str(2**24)})
    path = tmp_path / "w24.fcs"
    path.write_bytes(assemble_fcs(text, data))
    np.testing.assert_array_equal(ta.read_fcs(path).events, values.astype(np.float32))


def test_write_fcs_round_trip_and_flowkit(tmp_path):
    rng = np.random.default_rng(2)
    events = rng.normal(500, 300, (1000, 3)).astype(np.float32)
    spill = ta.Spillover(np.array([[1.0, 0.12], [0.03, 1.0]]), ("B/1", "C"), "test")
    path = write_fcs(tmp_path / "out.fcs", events, ["A", "B/1", "C"], ["", "CD4 PE/Cy7", "CD25"],
                     spillover=spill, keywords={"$CYT": "a // b", "$TIMESTEP": "0.01"})
    sample = ta.read_fcs(path)
    np.testing.assert_array_equal(sample.events, events)
    assert sample.markers == ["", "CD4 PE/Cy7", "CD25"] and sample.channels == ["A", "B/1", "C"]
    assert sample.metadata["$CYT"] == "a // b"
    np.testing.assert_array_equal(sample.spillover.matrix, spill.matrix)
    assert sample.spillover.channels == ("B/1", "C")
    np.testing.assert_array_equal(_flowkit(path).get_events(source="raw"), events)
    assert [p.name for p in tmp_path.iterdir()] == ["out.fcs"]  # no temporary left behind


def test_text_keywords_upper_case_and_escaped_delimiters(tmp_path):
    text = _layout_text(1, 1, "F", "<", 32, **{"$p1s": "CD4 a/b", "Custom/Key": "x"})
    path = tmp_path / "t.fcs"
    path.write_bytes(assemble_fcs(text, np.zeros(1, "<f4").tobytes(), delimiter="/"))
    assert b"CD4 a//b" in path.read_bytes()  # escaped by doubling
    meta = read_text(path)
    assert meta["$P1S"] == "CD4 a/b" and meta["CUSTOM/KEY"] == "x"
    assert ta.read_fcs(path).markers == ["CD4 a/b"]


def test_off_by_one_enddata_is_accepted():
    sample = ta.read_fcs(DATA / "test_comp_example.fcs")  # $ENDDATA one past the data
    assert sample.n_events == 10703 and sample.version == "3.0"


# -- refusals: the message names the file and the problem ----------------------------------------


def _lying_file(tmp_path: Path, header: dict | None = None, cut: int = 0, version: str = "3.1", **text_changes) -> Path:
    n, p = 100, 3
    text = _layout_text(n, p, "F", "<", 32)
    text.update({k.replace("_", "$", 1) if k.startswith("_") else k: v for k, v in text_changes.items()})
    raw = assemble_fcs({k: v for k, v in text.items() if v is not None}, np.ones((n, p), "<f4").tobytes(),
                       version=version, header=header)
    path = tmp_path / "lying.fcs"
    path.write_bytes(raw[: len(raw) - cut] if cut else raw)
    return path


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"_TOT": "101"}, r"\$TOT=101 .* disagree"),
        ({"_TOT": "99"}, r"\$TOT=99 .* disagree"),
        ({"_TOT": "1000000000000000"}, r"disagree"),
        ({"_TOT": "-5"}, r"disagree"),
        ({"_TOT": "abc"}, r"\$TOT is not a whole number"),
        ({"_PAR": "4"}, r"\$P4B is missing"),
        ({"_PAR": "2"}, r"disagree"),
        ({"_PAR": "0"}, r"no channels"),
        ({"_DATATYPE": "A"}, r"ASCII data is not supported"),
        ({"_DATATYPE": "X"}, r"unknown \$DATATYPE 'X'"),
        ({"_BYTEORD": "3,4,1,2"}, r"unsupported \$BYTEORD"),
        ({"_P2B": "abc"}, r"invalid \$P2B"),
        ({"_P2B": "64"}, r"invalid \$P2B=64 for \$DATATYPE=F"),
        ({"_MODE": "C"}, r"histogram"),
        ({"_P1E": "x,y"}, r"invalid \$P1E"),
        ({"_ENDDATA": "99999999"}, r"truncated"),
        ({"_BEGINDATA": "99999990", "_ENDDATA": "99999999"}, r"truncated"),
        ({"_PAR": None}, r"\$PAR is missing"),
    ],
)
def test_lying_keywords_are_refused(tmp_path, changes, problem):
    path = _lying_file(tmp_path, header={"data_start": 0, "data_stop": 0}, **changes)
    started = time.perf_counter()
    with pytest.raises(ta.FCSError, match=problem) as info:
        ta.read_fcs(path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - started < 5  # a lying size must not lead to a huge allocation or a hang


@pytest.mark.parametrize(
    "header, cut, version, problem",
    [
        ({"text_start": 900000}, 0, "3.1", "TEXT segment offsets"),
        ({"text_stop": 10}, 0, "3.1", "TEXT segment offsets"),
        ({}, 50, "3.1", "truncated"),
        ({}, 0, "4.0", "unsupported FCS version '4.0'"),
        ({"data_start": 300, "data_stop": 1499}, 0, "3.1", "HEADER and TEXT disagree"),
    ],
)
def test_lying_header_is_refused(tmp_path, header, cut, version, problem):
    path = _lying_file(tmp_path, header=header, cut=cut, version=version)
    with pytest.raises(ta.FCSError, match=problem):
        ta.read_fcs(path)


def test_not_an_fcs_file(tmp_path):
    path = tmp_path / "notes.fcs"
    path.write_text("sample_id\tsubject\n" * 10)
    with pytest.raises(ta.FCSError, match="not an FCS file"):
        ta.read_fcs(path)
    with pytest.raises(ta.FCSError, match="file not found"):
        ta.read_fcs(tmp_path / "missing.fcs")
    with pytest.raises(ta.FCSError, match="folder"):
        ta.read_fcs(tmp_path)


def test_nextdata_loop_is_refused(tmp_path):
    text = _layout_text(10, 2, "F", "<", 32, **{"$NEXTDATA": "0" * 10})
    first = assemble_fcs(text, np.zeros((10, 2), "<f4").tobytes())
    # a second data set that points back to the first one
    text2 = dict(text, **{"$NEXTDATA": str(-len(first)).rjust(10)})
    second = assemble_fcs(text2, np.ones((10, 2), "<f4").tobytes())
    text["$NEXTDATA"] = str(len(first)).zfill(10)
    first = assemble_fcs(text, np.zeros((10, 2), "<f4").tobytes())
    path = tmp_path / "loop.fcs"
    path.write_bytes(first + second)
    assert count_datasets(path) == 2
    np.testing.assert_array_equal(ta.read_fcs(path, dataset=1).events, np.ones((10, 2)))
    with pytest.raises(ta.FCSError, match="NEXTDATA=-682 in data set 1 points back to an earlier data set"):
        ta.read_fcs(path, dataset=2)


def test_zero_events(tmp_path):
    path = write_fcs(tmp_path / "empty.fcs", np.zeros((0, 3)), ["A", "B", "C"])
    sample = ta.read_fcs(path)
    assert sample.events.shape == (0, 3) and sample.events.dtype == np.float32


@pytest.mark.parametrize("layout", "CF")
@pytest.mark.parametrize("order", "<>")
def test_float_events_are_read_into_one_copy(tmp_path, order, layout):
    import tracemalloc

    n, p = 200_000, 6
    events = np.random.default_rng(0).normal(0, 1000, (n, p)).astype(order + "f4")
    path = tmp_path / "big.fcs"
    path.write_bytes(assemble_fcs(_layout_text(n, p, "F", order, 32), events.tobytes()))
    tracemalloc.start()
    sample = ta.read_fcs(path, order=layout)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sample.events.dtype == np.float32
    assert sample.events.flags.c_contiguous if layout == "C" else sample.events.flags.f_contiguous
    np.testing.assert_array_equal(sample.events, events)
    assert peak < 1.1 * sample.events.nbytes  # no second copy of the events, even byte-swapped
    # a DATA segment cut short is refused in either layout
    cut = tmp_path / "cut.fcs"
    whole = path.read_bytes()
    cut.write_bytes(whole[: len(whole) - 4 * p * 1000])
    with pytest.raises(ta.FCSError):
        ta.read_fcs(cut, order=layout, offsets="text")
    with pytest.raises(ValueError, match="order"):
        ta.read_fcs(path, order="K")


@pytest.mark.parametrize("n", [0, 1, 8191, 8192, 8193, 20_000])
@pytest.mark.parametrize("code", ["<f4", ">f4", ">f8", "<u2"])
def test_column_major_read_across_blocks_is_the_row_major_read(tmp_path, n, code):
    """Whole and partial read blocks (8,192 events), both byte orders, other data types
    (read row-major and copied): the same values, column-major."""
    datatype = {"f": "F" if code[2] == "4" else "D", "u": "I"}[code[1]]
    width = int(code[2]) * 8
    values = np.random.default_rng(n).normal(300, 200, (n, 3))
    if datatype == "I":
        values = np.abs(values)
    else:
        values[n // 2 :: 997] = np.nan
    values = values.astype(code)
    path = tmp_path / "s.fcs"
    path.write_bytes(assemble_fcs(_layout_text(n, 3, datatype, code[0], width), values.tobytes()))
    rows, columns = ta.read_fcs(path), ta.read_fcs(path, order="F")
    assert columns.events.flags.f_contiguous and columns.events.shape == (n, 3)
    np.testing.assert_array_equal(columns.events, rows.events)


def test_write_fcs_edge_cases(tmp_path):
    events = np.ones((3, 2), np.float32)
    path = write_fcs(tmp_path / "r.fcs", events, ["A", "B"], ["/CD4/", ""], ranges=[4194304, 1023.5],
                     keywords={"$CYT": "x|y/z\\w"})
    sample = ta.read_fcs(path)
    assert sample.ranges == [4194304.0, 1023.5] and sample.markers == ["/CD4/", ""]
    assert sample.metadata["$CYT"] == "x|y/z\\w"
    with pytest.raises(ValueError, match="empty value"):
        write_fcs(tmp_path / "e.fcs", events, ["A", "B"], keywords={"$CYT": ""})
    with pytest.raises(ValueError, match="do not match"):
        write_fcs(tmp_path / "m.fcs", events, ["A", "B"], ["CD4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.fcs"]


def test_hdr_t_and_padded_time_follow_flowkit(tmp_path):
    # FlowIO scales only a $PnN equal to "time" by $TIMESTEP (and then ignores its gain)
    for name in ("HDR-T", "TIME ", "time"):
        text = _layout_text(3, 2, "F", "<", 32, **{"$P2N": name, "$TIMESTEP": "0.01", "$P2G": "4"})
        path = tmp_path / "t.fcs"
        path.write_bytes(assemble_fcs(text, np.array([[1, 100], [2, 200], [3, 300]], "<f4").tobytes()))
        np.testing.assert_allclose(ta.read_fcs(path).events, _flowkit(path).get_events(source="raw"), rtol=2e-7)


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"_P1R": "nan"}, r"\$P1R is 'nan'"),
        ({"_P1R": "inf"}, r"\$P1R is 'inf'"),
        ({"_P2G": "nan"}, r"\$P2G is 'nan'"),
        ({"_P1E": "inf,1"}, r"invalid \$P1E"),
        ({"_P1B": "\u00b2"}, r"invalid \$P1B"),
        ({"_P2DATATYPE": "D"}, r"mixed data types"),
    ],
)
def test_non_finite_and_exotic_keywords_are_refused(tmp_path, changes, problem):
    path = _lying_file(tmp_path, **changes)
    with pytest.raises(ta.FCSError, match=problem):
        ta.read_fcs(path)


def test_one_byte_events_get_no_off_by_one_slack(tmp_path):
    text = _layout_text(99, 1, "I", "<", 8, **{"$P1R": "256"})
    path = tmp_path / "b.fcs"
    path.write_bytes(assemble_fcs(text, bytes(range(100))))  # 100 one-byte events, $TOT says 99
    with pytest.raises(ta.FCSError, match="disagree"):
        ta.read_fcs(path)
