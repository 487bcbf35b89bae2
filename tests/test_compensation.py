"""compensate: FlowKit's numbers, matrix files in the field's layouts, clear refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import flowkit as fk
import numpy as np
import pytest

import treganalysis as ta
from treganalysis.compensation import parse_spill_keyword
from treganalysis.fcs import write_fcs

from conftest import DATA, shared


def _flowkit_comp(path: Path, matrix) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = fk.Sample(path, ignore_offset_error=True)
    sample.apply_compensation(matrix)
    return sample.get_events(source="comp")


def _assert_close_to_flowkit(ours: np.ndarray, theirs: np.ndarray) -> None:
    # float32 storage: each value within float32 rounding of its own size, or of the
    # events it was computed from (compensation subtracts large spill terms)
    scale = np.abs(theirs).max(axis=0)
    assert ours.shape == theirs.shape
    err = np.abs(ours.astype(np.float64) - theirs)
    assert (err <= 2e-7 * np.abs(theirs) + 1e-7 * scale).all(), err.max()


def test_100715_keyword_matches_flowkit():
    path = shared("flowkit", "100715.fcs")
    sample = ta.read_fcs(path)
    comp = ta.compensate(sample)
    _assert_close_to_flowkit(comp.events, _flowkit_comp(path, sample.metadata["SPILL"]))
    assert comp.compensation["applied"] and comp.compensation["source"] == "keyword SPILL"
    assert len(comp.compensation["channels"]) == 13 and not comp.compensation["identity"]
    # scatter untouched, input untouched (a new sample)
    np.testing.assert_array_equal(comp.column("FSC-A"), sample.column("FSC-A"))
    assert sample.compensation is None and not np.shares_memory(comp.events, sample.events)


def test_compensating_in_place_gives_the_same_events():
    """copy=False overwrites a column-major sample's own events (no second matrix) with the
    very values a copy gets; a row-major sample is copied all the same, and left as it was."""
    path = shared("flowkit", "100715.fcs")
    expected = ta.compensate(ta.read_fcs(path)).events
    columns = ta.read_fcs(path, order="F")
    comp = ta.compensate(columns, copy=False)
    assert np.shares_memory(comp.events, columns.events) and comp.events.flags.f_contiguous
    np.testing.assert_array_equal(comp.events, expected)
    # the given sample holds compensated values now, and says so: compensating it again is refused
    assert columns.compensation["applied"] and columns.compensation["in_place"]
    with pytest.raises(ta.SpilloverError, match="already compensated"):
        ta.compensate(columns)
    rows = ta.read_fcs(path)
    raw = rows.events.copy()
    comp_rows = ta.compensate(rows, copy=False)
    assert not np.shares_memory(comp_rows.events, rows.events)
    np.testing.assert_array_equal(rows.events, raw)
    np.testing.assert_array_equal(comp_rows.events, expected)


def test_matrix_file_matches_flowkit():
    path = DATA / "test_comp_example.fcs"
    matrix = DATA / "comp_complete_example.csv"
    comp = ta.compensate(ta.read_fcs(path), matrix)
    _assert_close_to_flowkit(comp.events, _flowkit_comp(path, str(matrix)))
    assert comp.compensation["source"] == f"file {matrix}"
    assert comp.compensation["condition_number"] > 1


def test_identity_keyword_is_recorded():
    comp = ta.compensate(ta.read_fcs(DATA / "test_comp_example.fcs"))
    assert comp.compensation["identity"] is True
    np.testing.assert_allclose(comp.events, ta.read_fcs(DATA / "test_comp_example.fcs").events)


def test_compensation_undoes_known_spillover(tmp_path):
    rng = np.random.default_rng(3)
    true = rng.gamma(2.0, 500.0, (20000, 3)).astype(np.float32)
    spill = np.array([[1.0, 0.25, 0.02], [0.08, 1.0, 0.3], [0.0, 0.05, 1.0]])
    observed = np.column_stack([rng.normal(5e4, 1e4, 20000), true @ spill]).astype(np.float32)
    sp = ta.Spillover(spill, ("FL1-A", "FL2-A", "FL3-A"), "simulated")
    path = write_fcs(tmp_path / "s.fcs", observed, ["FSC-A", "FL1-A", "FL2-A", "FL3-A"], spillover=sp)
    comp = ta.compensate(ta.read_fcs(path))
    np.testing.assert_allclose(comp.events[:, 1:], true, rtol=1e-4, atol=1e-2)


def test_no_spillover_warns_and_records(tmp_path):
    path = write_fcs(tmp_path / "n.fcs", np.ones((5, 2)), ["FSC-A", "FL1-A"])
    sample = ta.read_fcs(path)
    with pytest.warns(UserWarning, match="not compensated"):
        comp = ta.compensate(sample)
    assert comp.compensation["applied"] is False and "no $SPILLOVER" in comp.compensation["reason"]
    with pytest.raises(ta.SpilloverError, match="n.fcs: cannot compensate"):
        ta.compensate(sample, required=True)


def _sample(tmp_path: Path) -> ta.Sample:
    path = write_fcs(tmp_path / "x.fcs", np.ones((5, 4)), ["FSC-A", "FL1-A", "FL2-A", "Time"],
                     ["", "CD4 FITC", "CD25 PE", ""])
    return ta.read_fcs(path)


def test_matrix_naming_absent_channels_lists_them(tmp_path):
    sp = ta.Spillover(np.eye(2), ("FL1-A", "FL9-A"), "file m.csv")
    with pytest.raises(ta.SpilloverError) as info:
        ta.compensate(_sample(tmp_path), sp)
    message = str(info.value)
    assert "x.fcs" in message and "FL9-A" in message and "FL2-A (CD25 PE)" in message


def test_matrix_channels_by_pns_or_comp_prefix(tmp_path):
    sample = _sample(tmp_path)
    for names in (("CD4 FITC", "CD25 PE"), ("Comp-FL1-A", "FJComp-FL2-A")):
        comp = ta.compensate(sample, ta.Spillover(np.array([[1, 0.5], [0, 1]]), names, "test"))
        assert comp.compensation["channels"] == ["FL1-A", "FL2-A"]
        np.testing.assert_allclose(comp.column("FL2-A"), 0.5)


@pytest.mark.parametrize(
    "matrix, problem",
    [
        (np.array([[1.0, 1.0], [1.0, 1.0]]), "singular"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
        (np.eye(3), "not square 2 x 2"),
    ],
)
def test_bad_matrices_refused(tmp_path, matrix, problem):
    with pytest.raises(ta.SpilloverError, match=problem):
        ta.compensate(_sample(tmp_path), ta.Spillover(matrix, ("FL1-A", "FL2-A"), "test"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("FL1-A,FL2-A\n1,0.1\n0.2\n", "row 3 has 1 values"),
        ("FL1-A,FL2-A\n1,0.1\n0.2,abc\n", "'abc', which is not a number"),
        ("FL1-A,FL2-A\n1,0.1\n", "1 rows for 2 channels"),
        ("FL1-A,FL1-A\n1,0.1\n0,1\n", "names a channel twice"),
        ("FL1-A\n", "needs a header row"),
    ],
)
def test_bad_matrix_files_refused(tmp_path, text, problem):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ta.SpilloverError, match=problem) as info:
        ta.read_spillover_csv(path)
    assert str(path) in str(info.value)


def test_missing_matrix_file(tmp_path):
    with pytest.raises(ta.SpilloverError, match="cannot read"):
        ta.compensate(_sample(tmp_path), tmp_path / "nope.csv")


def test_matrix_file_layouts(tmp_path):
    expected = np.array([[1.0, 0.2], [0.05, 1.0]])
    layouts = {
        "flowkit.csv": "FL1-A,FL2-A\n1,0.2\n0.05,1\n",
        "flowjo.txt": "FL1-A\tFL2-A\n1\t0.2\n0.05\t1\n",
        "r.csv": '"","FL1-A","FL2-A"\n"FL2-A",0.05,1\n"FL1-A",1,0.2\n',  # rows by name, reordered
        "flowcore.txt": '"FL1-A" "FL2-A"\n"FL1-A" 1 0.2\n"FL2-A" 0.05 1\n',
        "hash.csv": "# FL1-A,FL2-A,\n1,0.2,\n0.05,1,\n",
    }
    for name, text in layouts.items():
        path = tmp_path / name
        path.write_text(text)
        spill = ta.read_spillover_csv(path)
        assert spill.channels == ("FL1-A", "FL2-A"), name
        np.testing.assert_array_equal(spill.matrix, expected, err_msg=name)


def test_reference_matrix_files_from_the_field():
    cyto = ta.read_spillover_csv(shared("cytoexplorerdata", "Compensation-Spillover-Matrix.csv"))
    assert len(cyto.channels) == 11 and np.allclose(np.diag(cyto.matrix), 1)
    assert cyto.channels[0] == "Alexa Fluor 488-A"
    ref = ta.read_spillover_csv(shared("flowcore", "compdata", "compref1"))
    assert ref.channels == ("FL1-H", "FL2-H", "FL3-H", "FL4-H")
    assert ref.matrix[0, 1] == pytest.approx(0.242022277630705)
    den = ta.read_spillover_csv(shared("flowkit", "8_color_data_set", "den_comp.csv"))
    assert den.channels[0] == "TNFa FITC FLR-A" and den.matrix.shape == (8, 8)


def test_cytoexplorer_matrix_compensates_its_controls():
    # the lab's own matrix applied to its own FITC single-stain control: the spill of the
    # bright FITC population into PE is removed (median PE of FITC-bright cells near zero)
    sample = ta.read_fcs(shared("cytoexplorerdata", "Compensation", "Compensation-FITC.fcs"))
    comp = ta.compensate(sample, shared("cytoexplorerdata", "Compensation-Spillover-Matrix.csv"))
    fitc = sample.column("Alexa Fluor 488-A")
    bright = fitc > np.quantile(fitc, 0.95)
    before = np.median(sample.column("PE-A")[bright])
    after = np.median(comp.column("PE-A")[bright])
    assert abs(after) < 0.1 * before


@pytest.mark.parametrize(
    "value, problem",
    [("x,FL1,1", "not the channel count"), ("2,FL1,FL2,1,0,0", "needs 7 fields"), ("1,FL1,abc", "abc")],
)
def test_spill_keyword_errors(value, problem):
    with pytest.raises(ta.SpilloverError, match=problem):
        parse_spill_keyword(value)


def test_spill_keyword_parses_row_major():
    spill = parse_spill_keyword("2,FL1-A,FL2-A,1,0.1,0.2,1", source="keyword $SPILLOVER")
    np.testing.assert_array_equal(spill.matrix, [[1, 0.1], [0.2, 1]])
    assert spill.channels == ("FL1-A", "FL2-A") and spill.source == "keyword $SPILLOVER"


@pytest.mark.parametrize(
    "diagonal, problem",
    [([100.0, 100.0], "looks like percentages"), ([1.0, 1e-12], "must read 1")],
)
def test_matrix_diagonal_must_be_one(tmp_path, diagonal, problem):
    matrix = np.diag(diagonal)
    matrix[0, 1] = 0.1
    with pytest.raises(ta.SpilloverError, match=problem):
        ta.compensate(_sample(tmp_path), ta.Spillover(matrix, ("FL1-A", "FL2-A"), "test"))


def test_compensating_twice_is_refused(tmp_path):
    sp = ta.Spillover(np.array([[1, 0.5], [0, 1]]), ("FL1-A", "FL2-A"), "test")
    once = ta.compensate(_sample(tmp_path), sp)
    with pytest.raises(ta.SpilloverError, match="already compensated"):
        ta.compensate(once, sp)


def test_semicolon_matrix_with_decimal_commas(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("FL1-A;FL2-A\n1;0,2\n0,05;1\n")
    np.testing.assert_array_equal(ta.read_spillover_csv(path).matrix, [[1, 0.2], [0.05, 1]])
    path.write_text('"FL1-A "FL2-A"\n1 0.2\n0.05 1\n')
    with pytest.raises(ta.SpilloverError, match="cannot split"):
        ta.read_spillover_csv(path)


def test_keyword_text_as_matrix(tmp_path):
    comp = ta.compensate(_sample(tmp_path), "2,FL1-A,FL2-A,1,0.5,0,1")
    assert comp.compensation["source"] == "keyword text"
    np.testing.assert_allclose(comp.column("FL2-A"), 0.5)


def test_unreadable_keyword_is_named_in_the_record(tmp_path):
    path = write_fcs(tmp_path / "m.fcs", np.ones((3, 2)), ["FSC-A", "FL1-A"],
                     keywords={"$SPILLOVER": "6,FL1-A,FL2-A,FL3-A,FL4-A,FL5-A,FL6-A"})
    with pytest.warns(UserWarning):
        sample = ta.read_fcs(path)
    with pytest.warns(UserWarning, match="not compensated"):
        comp = ta.compensate(sample)
    assert "$SPILLOVER keyword is unreadable" in comp.compensation["reason"]


def test_channel_named_twice_in_the_file(tmp_path):
    path = write_fcs(tmp_path / "d.fcs", np.ones((3, 2)), ["FL1-A", "FL1-A"])
    with pytest.raises(ta.SpilloverError, match="matches several channels"):
        ta.compensate(ta.read_fcs(path), ta.Spillover(np.eye(1), ("FL1-A",), "test"))
