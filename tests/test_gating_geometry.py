"""Tests of treganalysis.gating.geometry: the gate primitives, and the Gating-ML 2.0
compliance suite (per-event truth of 51 gates on data1.fcs) evaluated with our own code.

FlowKit is used only to *parse* the Gating-ML documents (gate geometry, dimensions,
compensation and transformation references). Events come from our ``read_fcs``, are
compensated by our ``compensate``, transformed by our ``logicle``/``arcsinh`` (plus the
closed-form Gating-ML scales written below), and gated by ``treganalysis.gating.geometry``.
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, shared
from hypothesis import given, settings
from hypothesis import strategies as st

from treganalysis import Spillover, arcsinh, compensate, logicle, read_fcs
from treganalysis.gating.geometry import boolean, ellipse, polygon, quadrant, rectangle

# ---------------------------------------------------------------------------------------
# Gating-ML 2.0 compliance suite
# ---------------------------------------------------------------------------------------

GATE_REF = ("flowkit", "gate_ref")
ALL_GATES = "gml_all_gates.xml"

# Every truth file of the suite, with the kind of gate it checks. Gate id == file suffix,
# except ParQuadRect (gate ParRectangle1) and Ellipsoid3D, which live in their own document.
TRUTH = {
    **dict.fromkeys(["Range1", "Range2", "Rectangle1", "Rectangle2", "Rectangle3",
                     "Rectangle4", "Rectangle5"], "rectangle"),
    **dict.fromkeys(["ScaleRange1", "ScaleRange2", "ScaleRange3", "ScaleRange4",
                     "ScaleRange5", "ScaleRange6", "ScaleRange1c", "ScaleRange2c",
                     "ScaleRange3c", "ScaleRange4c", "ScaleRange5c", "ScaleRange6c",
                     "ScaleRange7c", "ScaleRange8c", "ScaleRect1"], "rectangle"),
    **dict.fromkeys(["ScalePar1", "ParQuadRect"], "rectangle"),  # with a parent gate
    **dict.fromkeys(["RatRange1", "RatRange1a", "RatRange2"], "ratio"),
    **dict.fromkeys(["Polygon1", "Polygon2", "Polygon3NS", "Polygon4"], "polygon"),
    **dict.fromkeys(["Ellipse1", "Ellipsoid3D"], "ellipse"),
    **dict.fromkeys(["FL2N-FL4N", "FL2N-FL4P", "FL2P-FL4N", "FL2P-FL4P", "FSCD-FL1P",
                     "FSCD-SSCN-FL1N", "FSCN-SSCN", "FSCN-SSCP-FL1P", "FSCP-SSCN-FL1N"],
                    "quadrant"),
    **dict.fromkeys(["And1", "And2", "And3", "And4", "Not1", "Or1", "Or2", "ParAnd2",
                     "ParAnd3"], "boolean"),
}
# truth id -> (document, gate id) where it is not (gml_all_gates.xml, truth id)
TRUTH_SOURCE = {
    "ParQuadRect": ("gml_parent_quadrant_rect_gate.xml", "ParRectangle1"),
    "Ellipsoid3D": ("gml_ellipsoid3d_gate.xml", "Ellipsoid3D"),
}
# FlowKit class of the gate behind each kind (quadrants are parts of a QuadrantGate)
FLOWKIT_CLASS = {"rectangle": "RectangleGate", "ratio": "RectangleGate",
                 "polygon": "PolygonGate", "ellipse": "EllipsoidGate",
                 "quadrant": "QuadrantGate", "boolean": "BooleanGate"}
# Gates we do not evaluate, with the reason; must stay empty for the kinds of the issue.
SKIPPED: dict[str, str] = {}
# Documents of the folder FlowKit cannot parse (so we cannot read their gates).
UNPARSEABLE = {
    "gml_range_gate_attr_testing.xml": "FlowKit's own attribute test: the gate is wrapped in a"
    " non-Gating-ML <sample> element, which flowkit.parse_gating_xml refuses (Range1 is"
    " checked from gml_all_gates.xml and gml_range_gate.xml)",
}

GML = "{http://www.isac-net.org/std/Gating-ML/v2.0/gating}"
LN10 = math.log(10.0)


def test_truth_ids_are_complete() -> None:
    """The suite holds exactly the 51 truth files listed above (none silently dropped)."""
    folder = shared(*GATE_REF, "truth")
    found = {p.name[len("Results_"):-len(".txt")] for p in folder.glob("Results_*.txt")}
    assert found == set(TRUTH)
    assert len(TRUTH) == 51
    issue_kinds = {"rectangle", "polygon", "ellipse", "quadrant", "boolean"}
    assert not [g for g in SKIPPED if TRUTH[g] in issue_kinds]


# -- Gating-ML transformations (sect. 6 of the specification), in float64 -----------------


def _flin(x: np.ndarray, T: float, A: float) -> np.ndarray:
    """flin(x) = (x + A) / (T + A)."""
    return (x + A) / (T + A)


def _flog(x: np.ndarray, T: float, M: float) -> np.ndarray:
    """flog(x) = log10(x / T) / M + 1; undefined (NaN, so outside every gate) for x <= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(x / T) / M + 1.0
    return np.where(x > 0, y, np.nan)


def _fasinh(x: np.ndarray, T: float, M: float, A: float) -> np.ndarray:
    """fasinh(x) = (asinh(x sinh(M ln10) / T) + A ln10) / ((M + A) ln10), via our arcsinh."""
    return (arcsinh(x, cofactor=T / math.sinh(M * LN10)) + A * LN10) / ((M + A) * LN10)


def _hyperlog(x: np.ndarray, T: float, W: float, M: float, A: float) -> np.ndarray:
    """hyperlog(x) = root y of EH(y) = x, found by bisection (EH is increasing).

    EH(y) = a exp(b y) + c y - f for y >= x1 and -EH(2 x1 - y) below, with
    w = W/(M+A), x2 = A/(M+A), x1 = x2 + w, x0 = x2 + 2w, b = (M+A) ln10,
    c_a = exp(b x0) / w, f_a = exp(b x1) + c_a x1, a = T / (exp(b) + c_a - f_a),
    c = c_a a, f = f_a a (so that EH(x1) = 0 and EH(1) = T).
    """
    w, x2 = W / (M + A), A / (M + A)
    x1, x0, b = x2 + w, x2 + 2 * w, (M + A) * LN10
    c_a = math.exp(b * x0) / w
    f_a = math.exp(b * x1) + c_a * x1
    a = T / (math.exp(b) + c_a - f_a)
    c, f = c_a * a, f_a * a

    def eh(y: np.ndarray) -> np.ndarray:
        s = np.abs(y - x1) + x1
        return np.sign(y - x1) * (a * np.exp(b * s) + c * s - f)

    top = float(np.nanmax(np.abs(x))) if x.size else 0.0
    span = 1.0
    while eh(np.array(x1 + span)) < top:
        span *= 2
    lo = np.full(x.shape, x1 - span)
    hi = np.full(x.shape, x1 + span)
    for _ in range(200):  # halve until lo and hi are adjacent doubles
        mid = 0.5 * (lo + hi)
        if np.all((mid == lo) | (mid == hi)):
            break
        above = eh(mid) >= x
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    y = np.where(np.abs(eh(lo) - x) <= np.abs(eh(hi) - x), lo, hi)
    return np.where(np.isnan(x), np.nan, y)


def _transform(transform: object, x: np.ndarray) -> np.ndarray:
    """Apply a FlowKit-parsed Gating-ML transformation with our own formulas."""
    name = type(transform).__name__
    p = vars(transform)
    if name == "LogicleTransform":
        return logicle(x, T=p["param_t"], W=p["param_w"], M=p["param_m"], A=p["param_a"])
    if name == "AsinhTransform":
        return _fasinh(x, p["param_t"], p["param_m"], p["param_a"])
    if name == "LinearTransform":
        return _flin(x, p["param_t"], p["param_a"])
    if name == "LogTransform":
        return _flog(x, p["param_t"], p["param_m"])
    if name == "HyperlogTransform":
        return _hyperlog(x, p["param_t"], p["param_w"], p["param_m"], p["param_a"])
    raise NotImplementedError(f"Gating-ML transformation {name}")


# -- Evaluation of a parsed Gating-ML document on data1.fcs --------------------------------


@functools.lru_cache(maxsize=1)
def _sample():
    return read_fcs(shared(*GATE_REF, "data1.fcs"))


@functools.lru_cache(maxsize=None)
def _truth(truth_id: str) -> np.ndarray:
    path = shared(*GATE_REF, "truth", f"Results_{truth_id}.txt")
    return np.loadtxt(path, dtype=np.int64).astype(bool)


class _Document:
    """A Gating-ML document parsed by FlowKit, evaluated by treganalysis."""

    def __init__(self, path: Path) -> None:
        import flowkit

        self.strategy = flowkit.parse_gating_xml(str(path))
        self.sample = _sample()
        # gate id -> path of its ancestors ('root', ..., parent)
        self.paths: dict[str, tuple[str, ...]] = {}
        for gate_id, gate_path in self.strategy.get_gate_ids():
            assert gate_id not in self.paths, f"{path.name}: gate id {gate_id} is not unique"
            self.paths[gate_id] = tuple(gate_path)
        # quadrant id -> its QuadrantGate (FlowKit refuses get_gate on a single quadrant).
        # FlowKit turns gating:location into intervals while parsing, so the raw locations
        # are read here, for our quadrant() to choose the interval itself.
        self.quadrant_of: dict[str, object] = {}
        for gate_id, gate_path in self.paths.items():
            try:
                self.strategy.get_gate(gate_id, gate_path=gate_path)
            except flowkit.exceptions.QuadrantReferenceError:
                owner = self.strategy.get_gate(gate_path[-1], gate_path=gate_path[:-1])
                self.quadrant_of[gate_id] = owner
        self.locations = self._quadrant_locations(path)
        self._compensated: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}

    @staticmethod
    def _quadrant_locations(path: Path) -> dict[str, dict[str, float]]:
        locations: dict[str, dict[str, float]] = {}
        for element in ET.parse(path).iter(f"{GML}Quadrant"):
            locations[element.get(f"{GML}id")] = {
                position.get(f"{GML}divider_ref"): float(position.get(f"{GML}location"))
                for position in element.iter(f"{GML}position")
            }
        return locations

    def kind(self, gate_id: str) -> str:
        """FlowKit's class name of the gate (QuadrantGate for a quadrant)."""
        if gate_id in self.quadrant_of:
            return type(self.quadrant_of[gate_id]).__name__
        return type(self.strategy.get_gate(gate_id, gate_path=self.paths[gate_id])).__name__

    # events ----------------------------------------------------------------------------

    def _events(self, compensation_ref: str | None) -> np.ndarray:
        """All events, compensated as the reference says (float32, our compensate)."""
        if compensation_ref in (None, "uncompensated"):
            return self.sample.events
        if compensation_ref not in self._compensated:
            if compensation_ref == "FCS":  # the file's own matrix; data1.fcs has none
                events = (self.sample.events if self.sample.spillover is None
                          else compensate(self.sample).events)
            else:
                matrix = self.strategy.comp_matrices[compensation_ref]
                spill = Spillover(np.asarray(matrix.matrix, dtype=np.float64),
                                  tuple(matrix.detectors), f"Gating-ML {compensation_ref}")
                events = compensate(self.sample, spill).events
            self._compensated[compensation_ref] = events
        return self._compensated[compensation_ref]

    def _channel(self, name: str, compensation_ref: str | None) -> np.ndarray:
        """One channel (by $PnN, or a fluorochrome of the spectrum matrix) as float64."""
        if compensation_ref not in (None, "uncompensated", "FCS"):
            matrix = self.strategy.comp_matrices[compensation_ref]
            if name in matrix.fluorochromes:
                name = matrix.detectors[matrix.fluorochromes.index(name)]
        column = self._events(compensation_ref)[:, self.sample.channels.index(name)]
        return column.astype(np.float64)  # exact; transforms are evaluated in float64

    def column(self, dimension: object) -> np.ndarray:
        """The values of a gate dimension (or quadrant divider) on the gate's scale."""
        comp = dimension.compensation_ref
        if type(dimension).__name__ == "RatioDimension":
            ratio = self.strategy.transformations[dimension.ratio_ref]
            numerator, denominator = (self._channel(d, comp) for d in ratio.dimensions)
            with np.errstate(divide="ignore", invalid="ignore"):
                # fratio(x, y) = A (x - B) / (y - C)
                values = ratio.param_a * (numerator - ratio.param_b) / (denominator - ratio.param_c)
        elif type(dimension).__name__ == "QuadrantDivider":
            values = self._channel(dimension.dimension_ref, comp)
        else:
            values = self._channel(dimension.id, comp)
        if dimension.transformation_ref is not None:
            values = _transform(self.strategy.transformations[dimension.transformation_ref], values)
        return values

    # gates -----------------------------------------------------------------------------

    def mask(self, gate_id: str) -> np.ndarray:
        """Events in the gate and in all its ancestors."""
        if gate_id not in self._masks:
            own = self._own_mask(gate_id)
            parent = self.paths[gate_id][-1]
            if parent != "root":
                own = boolean("and", [own, self.mask(parent)])
            self._masks[gate_id] = own
        return self._masks[gate_id]

    def _own_mask(self, gate_id: str) -> np.ndarray:
        if gate_id in self.quadrant_of:
            owner = self.quadrant_of[gate_id]
            dividers = [divider.values for divider in owner.dimensions]
            where = self.locations[gate_id]
            location = [where.get(divider.id) for divider in owner.dimensions]
            data = np.column_stack([self.column(divider) for divider in owner.dimensions])
            return quadrant(data, dividers, location)
        gate = self.strategy.get_gate(gate_id, gate_path=self.paths[gate_id])
        kind = type(gate).__name__
        if kind == "QuadrantGate":  # only its quadrants are gates: transparent as a parent
            return np.ones(self.sample.n_events, dtype=bool)
        if kind == "BooleanGate":
            refs = gate.gate_refs
            return boolean(gate.type, [self.mask(r["ref"]) for r in refs],
                           complement=[r["complement"] for r in refs])
        data = np.column_stack([self.column(d) for d in gate.dimensions])
        if kind == "RectangleGate":
            dims = gate.dimensions
            return rectangle(data, [d.min for d in dims], [d.max for d in dims])
        if kind == "PolygonGate":
            return polygon(data, gate.vertices)
        if kind == "EllipsoidGate":
            return ellipse(data, gate.coordinates, gate.covariance_matrix, gate.distance_square)
        raise NotImplementedError(f"gate {gate_id}: {kind}")


@functools.lru_cache(maxsize=None)
def _document(name: str) -> _Document:
    return _Document(shared(*GATE_REF, "gml", name))


def _compare(truth_id: str, document: str, gate_id: str) -> None:
    doc = _document(document)
    assert gate_id in doc.paths, f"{document} has no gate {gate_id}"
    got = doc.mask(gate_id)
    expected = _truth(truth_id)
    assert got.dtype == np.bool_ and got.shape == expected.shape
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, (
        f"{truth_id} ({document}): {wrong.size} of {expected.size} events differ from the "
        f"truth (first: {wrong[:10].tolist()}; truth {expected.sum()} in, ours {got.sum()} in)"
    )


@pytest.mark.parametrize("truth_id", sorted(TRUTH))
def test_compliance_suite(truth_id: str) -> None:
    """Every event of every gate of the suite, exactly."""
    if truth_id in SKIPPED:
        pytest.skip(SKIPPED[truth_id])
    document, gate_id = TRUTH_SOURCE.get(truth_id, (ALL_GATES, truth_id))
    doc = _document(document)
    assert gate_id in doc.paths, f"{document} has no gate {gate_id}"
    assert doc.kind(gate_id) == FLOWKIT_CLASS[TRUTH[truth_id]]
    _compare(truth_id, document, gate_id)


def _single_documents() -> list:
    """(truth id, document, gate id) for every gate with a truth file in every document."""
    folder = SHARED.joinpath(*GATE_REF, "gml")
    if not folder.is_dir():  # the test then skips through shared(), with the reason
        return [pytest.param("", "", "", id="suite-absent")]
    cases = []
    by_gate = {gate: truth for truth, (_, gate) in TRUTH_SOURCE.items()}
    for path in sorted(folder.glob("*.xml")):
        if path.name == ALL_GATES:
            continue
        for element in ET.parse(path).iter():
            gate_id = element.get(f"{GML}id")
            if gate_id is None or not element.tag.startswith(GML):
                continue
            truth_id = by_gate.get(gate_id, gate_id)
            if truth_id in TRUTH:
                cases.append(pytest.param(truth_id, path.name, gate_id,
                                          id=f"{path.stem}-{gate_id}"))
    return cases


@pytest.mark.parametrize(("truth_id", "document", "gate_id"), _single_documents())
def test_compliance_single_documents(truth_id: str, document: str, gate_id: str) -> None:
    """The one-gate documents of the suite (their own compensation references) agree too."""
    shared(*GATE_REF, "gml", document)
    if document in UNPARSEABLE:
        pytest.skip(UNPARSEABLE[document])
    if truth_id in SKIPPED:
        pytest.skip(SKIPPED[truth_id])
    _compare(truth_id, document, gate_id)


# ---------------------------------------------------------------------------------------
# Unit tests of the primitives
# ---------------------------------------------------------------------------------------

GATES = {
    "rectangle": lambda data: rectangle(data, [0, 0], [1, 1]),
    "polygon": lambda data: polygon(data, [(0, 0), (1, 0), (0, 1)]),
    "ellipse": lambda data: ellipse(data, [0, 0], [[1, 0], [0, 1]], 1),
    "quadrant": lambda data: quadrant(data, [[0], [0]], [1, 1]),
}


@pytest.mark.parametrize("name", sorted(GATES))
def test_every_gate_has_the_same_shape(name: str) -> None:
    """(n, d) events in, (n,) bool out; float32/float64/int; input left alone; empty input."""
    gate = GATES[name]
    data = np.array([[0.25, 0.25], [5, 5], [-0.5, 0.5]], dtype=np.float32)
    before = data.copy()
    mask = gate(data)
    assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (3,)
    np.testing.assert_array_equal(data, before)
    np.testing.assert_array_equal(gate(data.astype(np.float64)), mask)
    np.testing.assert_array_equal(gate(data.astype(np.float64).tolist()), mask)
    integers = np.array([[0, 0], [5, 5], [-1, 1]])
    np.testing.assert_array_equal(gate(integers), gate(integers.astype(np.float64)))
    empty = gate(np.empty((0, 2), dtype=np.float32))
    assert empty.dtype == np.bool_ and empty.shape == (0,)


@pytest.mark.parametrize("name", sorted(GATES))
def test_nan_events_are_never_inside(name: str) -> None:
    gate = GATES[name]
    data = np.array([[np.nan, 0.1], [0.1, np.nan], [np.nan, np.nan], [0.1, 0.1]])
    assert gate(data).tolist() == [False, False, False, True]
    # ... so they are inside the complement
    assert boolean("not", [gate(data)]).tolist() == [True, True, True, False]


@pytest.mark.parametrize("name", sorted(GATES))
def test_bad_event_arrays_are_refused(name: str) -> None:
    gate = GATES[name]
    with pytest.raises(ValueError, match="data has 3 (column|dimension)"):
        gate(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        gate(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="numeric"):
        gate(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="numeric"):
        gate(np.ones((2, 2), dtype=bool))


# -- rectangle ----------------------------------------------------------------------------


def test_rectangle_is_half_open() -> None:
    """min <= x < max: the minimum is in, the maximum out; adjacent ranges share nothing."""
    x = np.array([0.999, 1.0, 1.5, 2.0, 2.001], dtype=np.float32)
    assert rectangle(x, 1.0, 2.0).tolist() == [False, True, True, False, False]
    assert rectangle(x, [1.0], [2.0]).tolist() == [False, True, True, False, False]
    low, high = rectangle(x, None, 1.5), rectangle(x, 1.5, None)
    assert not (low & high).any() and (low | high).all()
    assert not rectangle(x, 1.5, 1.5).any()  # min == max: empty, not an error
    corners = [(0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)]
    assert rectangle(corners, [0, 0], [1, 1]).tolist() == [True, False, False, False, True]


def test_rectangle_open_bounds() -> None:
    x = np.array([-np.inf, -1e30, 0.0, 1e30, np.inf, np.nan])
    assert rectangle(x, 0.0).tolist() == [False, False, True, True, True, False]
    assert rectangle(x, maximum=0.0).tolist() == [True, True, False, False, False, False]
    assert rectangle(x, np.nan, None).tolist() == [True] * 5 + [False]  # NaN bound = open
    assert rectangle(x).tolist() == [True] * 5 + [False]
    data = np.array([[5.0, -100.0], [5.0, 100.0], [-5.0, 0.0]])
    assert rectangle(data, [0, None], [None, 50]).tolist() == [True, False, False]
    assert rectangle(data, [0, np.nan], [np.nan, 50]).tolist() == [True, False, False]


def test_rectangle_compares_float32_events_in_float64() -> None:
    """A bound is never rounded to float32 (NumPy 2 would, for a Python float)."""
    x = np.array([100.0], dtype=np.float32)
    assert not rectangle(x, 100.000001).any()
    assert rectangle(x, 100.0).all()
    assert not rectangle(x, None, 100.0).any()
    assert rectangle(x, None, 100.000001).all()
    big = np.array([16777217.0])  # not a float32; float32(16777217) == 16777216
    assert rectangle(big, 16777217.0).all() and not rectangle(big, 16777217.5).any()


def test_rectangle_validates_bounds() -> None:
    with pytest.raises(ValueError, match="minimum 2.0 > maximum 1.0"):
        rectangle([1.0], 2.0, 1.0)
    with pytest.raises(ValueError, match="minimum has 1 value"):
        rectangle(np.zeros((3, 2)), 0.0, None)
    with pytest.raises(ValueError, match="maximum has 3 value"):
        rectangle(np.zeros((3, 2)), None, [1, 2, 3])
    with pytest.raises(ValueError, match="open bound"):
        rectangle([1.0], -np.inf)
    with pytest.raises(ValueError, match="real number"):
        rectangle([1.0], "low")


# -- polygon ------------------------------------------------------------------------------

# Concave "C" shape of the suite's Polygon3NS: a notch [100, 200) x [180, 300) cut in from the left
NOTCHED = [(10, 10), (500, 10), (500, 390), (100, 390), (100, 180), (200, 180), (200, 300),
           (10, 300)]


def test_polygon_concave() -> None:
    points = [(50, 50), (150, 250), (50, 250), (150, 350), (300, 350), (50, 350), (600, 50)]
    expected = [True, False, True, True, True, False, False]
    assert polygon(points, NOTCHED).tolist() == expected
    assert polygon(points, NOTCHED[::-1]).tolist() == expected  # orientation does not matter
    assert polygon(points, NOTCHED + NOTCHED[:1]).tolist() == expected  # closed explicitly


def test_polygon_edges_and_vertices_are_half_open() -> None:
    """Left/bottom edges are in, right/top edges out; the rectangle rule min <= x < max."""
    square = [(0, 0), (2, 0), (2, 2), (0, 2)]
    points = {
        (1, 1): True,
        (0, 1): True, (1, 0): True,  # left and bottom edges
        (2, 1): False, (1, 2): False,  # right and top edges
        (0, 0): True, (2, 0): False, (2, 2): False, (0, 2): False,  # vertices
    }
    assert polygon(list(points), square).tolist() == list(points.values())
    # diagonal edges: the suite's Polygon1 triangle, events with x == y on its hypotenuse are in
    triangle = [(5, 5), (500, 5), (500, 500)]
    on_edge = np.array([(7, 7), (250, 250), (499, 499), (5, 5), (500, 500), (250, 5), (500, 250)],
                       dtype=np.float32)
    assert polygon(on_edge, triangle).tolist() == [True, True, True, True, False, True, False]
    # a vertex pointing to the right on the ray (the ray touches it but does not cross)
    diamond = [(0, -1), (1, 0), (0, 1), (-1, 0)]
    on_ray = [(-2, 0), (-1, 0), (0, 0), (1, 0)]
    assert polygon(on_ray, diamond).tolist() == [False, True, True, False]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=3, max_size=7),
    st.integers(0, 10**6),
)
def test_polygon_grid_points_match_rectangle(corners, seed) -> None:
    """An axis-aligned rectangular polygon selects the events of the rectangle gate."""
    xs, ys = sorted({c[0] for c in corners}), sorted({c[1] for c in corners})
    if len(xs) < 2 or len(ys) < 2:
        return
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    grid = np.array([(x, y) for x in range(-1, 8) for y in range(-1, 8)], dtype=np.float32)
    start = seed % 4  # any starting corner
    box = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    box = box[start:] + box[:start]
    np.testing.assert_array_equal(polygon(grid, box), rectangle(grid, [x0, y0], [x1, y1]))


def _crossing_reference(point: tuple[int, int], vertices: list[tuple[int, int]]) -> bool:
    """Even-odd rule for one point, in exact integer arithmetic (the slow, obvious way)."""
    x, y = point
    inside = False
    for (xa, ya), (xb, yb) in zip(vertices, vertices[1:] + vertices[:1]):
        if ya > yb:
            xa, ya, xb, yb = xb, yb, xa, ya
        if ya <= y < yb and (x - xa) * (yb - ya) < (xb - xa) * (y - ya):
            inside = not inside
    return inside


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-8, 8), st.integers(-8, 8)), min_size=3, max_size=9))
def test_polygon_matches_exact_even_odd_rule(vertices) -> None:
    """Random (often self-intersecting) polygons, all grid points incl. those on edges."""
    grid = [(x, y) for x in range(-9, 10) for y in range(-9, 10)]
    expected = [_crossing_reference(p, vertices) for p in grid]
    assert polygon(np.array(grid, dtype=np.float32), vertices).tolist() == expected


def test_polygon_self_intersecting_uses_even_odd() -> None:
    """A pentagram's centre is covered twice (winding number 2): even, so outside."""
    angles = np.pi / 2 + 2 * np.pi * np.arange(5) / 5
    star = np.column_stack([np.cos(angles), np.sin(angles)])[[0, 2, 4, 1, 3]]
    tip = 0.9 * star[0]
    assert polygon([(0, 0), tuple(tip), (2, 2)], star).tolist() == [False, True, False]
    bowtie = [(0, 0), (2, 2), (2, 0), (0, 2)]  # two triangles meeting at (1, 1)
    points = [(0.2, 1), (1.8, 1), (1, 0.2), (1, 1.8)]
    assert polygon(points, bowtie).tolist() == [True, True, False, False]


def test_polygon_non_finite_events_are_outside() -> None:
    square = [(0, 0), (2, 0), (2, 2), (0, 2)]
    events = [(-np.inf, 1), (np.inf, 1), (1, -np.inf), (1, np.inf), (np.nan, 1), (1, 1)]
    assert polygon(events, square).tolist() == [False] * 5 + [True]


def test_polygon_validates_vertices() -> None:
    with pytest.raises(ValueError, match="at least 3 vertices"):
        polygon([(0, 0)], [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        polygon([(0, 0)], [(0, 0, 0), (1, 1, 1), (1, 0, 0)])
    with pytest.raises(ValueError, match="finite"):
        polygon([(0, 0)], [(0, 0), (1, np.nan), (1, 0)])
    with pytest.raises(ValueError, match="numeric"):
        polygon([(0, 0)], [(0, 0), (1, "x"), (1, 0)])
    with pytest.raises(ValueError, match="1 column"):
        polygon([0.0, 1.0], [(0, 0), (1, 1), (1, 0)])


# -- ellipse ------------------------------------------------------------------------------


def test_ellipse_matches_brute_force_mahalanobis() -> None:
    rng = np.random.default_rng(7)
    for dims in (1, 2, 3, 5):
        mean = rng.normal(size=dims) * 10
        root = rng.normal(size=(dims, dims))
        cov = root @ root.T + np.eye(dims)
        events = (mean + rng.normal(size=(400, dims)) * 3).astype(np.float32)
        d2 = 2.5
        expected = []
        for event in events.astype(np.float64):  # per event, the textbook way
            offset = event - mean
            expected.append(offset @ np.linalg.solve(cov, offset))
        expected = np.array(expected)
        clear = np.abs(expected - d2) > 1e-9  # rounding decides the rest either way
        got = ellipse(events if dims > 1 else events[:, 0], mean, cov, d2)
        np.testing.assert_array_equal(got[clear], (expected <= d2)[clear])
        assert 0 < got.sum() < len(got)


def test_ellipse_boundary_is_inside() -> None:
    circle = dict(mean=[1, 1], covariance=[[4, 0], [0, 4]], distance_square=1)
    points = np.array([(1, 3), (3, 1), (-1, 1), (1, -1), (1, 3.0001), (1, 1)], dtype=np.float32)
    assert ellipse(points, **circle).tolist() == [True, True, True, True, False, True]
    # the suite's Ellipse1: half-axes 10 and 5, rotated 45 degrees
    mean = np.array([12.99701, 16.22941])
    cov = [[62.5, 37.5], [37.5, 62.5]]
    axis = np.array([1, 1]) / np.sqrt(2)
    minor = axis * [1, -1]
    points = [mean + 9.99 * axis, mean - 9.99 * axis, mean + 10.01 * axis, mean + 5.01 * minor]
    assert ellipse(points, mean, cov, 1).tolist() == [True, True, False, False]


def test_ellipse_uses_the_matrix_as_given() -> None:
    """Not symmetric, not positive definite (as the suite's Ellipsoid3D): only C^-1 counts."""
    cov = np.array([[2.5, 7.5, 17.5], [7.5, 7, 13.5], [15.5, 13.5, 4.3]])
    inverse = np.linalg.inv(cov)
    rng = np.random.default_rng(3)
    events = rng.normal(size=(500, 3)) * 5
    quadratic = np.einsum("ij,jk,ik->i", events, inverse, events)
    np.testing.assert_array_equal(ellipse(events, [0, 0, 0], cov, 1), quadratic <= 1)


def test_ellipse_non_finite_events_are_outside() -> None:
    events = [(np.inf, 0), (0, -np.inf), (np.inf, np.inf), (np.nan, 0), (0, 0)]
    for cov in ([[1, 0.5], [0.5, 1]], [[1, -0.5], [-0.5, 1]], [[1, 0], [0, -1]]):
        assert ellipse(events, [0, 0], cov, 1).tolist() == [False] * 4 + [True]


def test_ellipse_is_evaluated_in_blocks_with_the_same_result() -> None:
    """More events than one block (65,536), non-finite ones on both sides of a block edge,
    on a positive definite and an indefinite matrix: the same as one whole-array formula."""
    from treganalysis.gating import geometry

    rng = np.random.default_rng(11)
    n = 3 * geometry._ELLIPSE_BLOCK + 17
    events = (rng.normal(size=(n, 2)) * 2).astype(np.float32)
    edge = geometry._ELLIPSE_BLOCK
    events[[edge - 1, edge, 2 * edge + 5]] = [(np.inf, 0), (np.nan, 1), (0, -np.inf)]
    for cov in ([[2.0, 0.7], [0.7, 1.5]], [[1.0, 0.0], [0.0, -1.0]]):
        inverse = np.linalg.inv(cov)
        with np.errstate(invalid="ignore", over="ignore"):
            offset = events.astype(np.float64)
            quadratic = np.einsum("ij,jk,ik->i", offset, inverse, offset)
        expected = (quadratic <= 1.5) & np.isfinite(offset).all(axis=1)
        got = ellipse(events, [0, 0], cov, 1.5)
        np.testing.assert_array_equal(got, expected)
        assert not got[[edge - 1, edge, 2 * edge + 5]].any() and 0 < got.sum() < n


def test_ellipse_validates_parameters() -> None:
    with pytest.raises(ValueError, match="singular"):
        ellipse(np.zeros((2, 2)), [0, 0], [[1, 1], [1, 1]], 1)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        ellipse(np.zeros((2, 2)), [0, 0], np.eye(3), 1)
    with pytest.raises(ValueError, match="distance_square"):
        ellipse(np.zeros((2, 2)), [0, 0], np.eye(2), 0)
    with pytest.raises(ValueError, match="distance_square"):
        ellipse(np.zeros((2, 2)), [0, 0], np.eye(2), np.nan)
    with pytest.raises(ValueError, match="mean must be finite"):
        ellipse(np.zeros((2, 2)), [0, np.nan], np.eye(2), 1)
    with pytest.raises(ValueError, match="data has 2 column"):
        ellipse(np.zeros((2, 2)), [0, 0, 0], np.eye(3), 1)
    with pytest.raises(ValueError, match="mean"):
        ellipse(np.zeros((2, 2)), [], np.eye(2), 1)


# -- quadrant -----------------------------------------------------------------------------


def test_quadrant_cells_partition_the_events() -> None:
    """The suite's Quadrant2 layout: 2 dividers on x, 1 on y; every event in one cell."""
    rng = np.random.default_rng(11)
    events = rng.uniform(0, 100, size=(2000, 2)).astype(np.float32)
    events[:50, 0] = np.float32(70.5)  # exactly on a divider
    events[50:100, 1] = np.float32(17.75)
    dividers = [[70.5, 28.0], [17.75]]  # any order
    count = np.zeros(len(events), dtype=int)
    for location_x in (-np.inf, 28.0, 50, 80):
        for location_y in (0, 17.75):
            cell = quadrant(events, dividers, [location_x, location_y])
            count += cell
    # 28.0 and 50 pick the same cell (28 <= x < 70.5), -inf and 80 one each
    middle = (events[:, 0] >= 28.0) & (events[:, 0] < 70.5)
    np.testing.assert_array_equal(count, np.where(middle, 2, 1))
    upper = quadrant(events, dividers, [80, 30])
    assert upper[:50].tolist() == (events[:50, 1] >= 17.75).tolist()  # x on divider: upper side
    assert quadrant(events, dividers, [None, 30])[50:100].all()  # y on divider: upper side


def test_quadrant_equals_rectangle_of_its_cell() -> None:
    rng = np.random.default_rng(5)
    events = rng.uniform(-10, 10, size=(500, 3))
    dividers = [[-2.0, 3.0], [0.0], [1.0, 5.0, 7.0]]
    cases = [
        ([-5, 0, 6], [None, 0.0, 5.0], [-2.0, None, 7.0]),
        ([3.0, -1, None], [3.0, None, None], [None, 0.0, None]),
        ([np.inf, -np.inf, 1.0], [3.0, None, 1.0], [None, 0.0, 5.0]),
    ]
    for location, low, high in cases:
        np.testing.assert_array_equal(quadrant(events, dividers, location),
                                      rectangle(events, low, high))
    one_d = quadrant(events[:, 0], [[0.0]], [1.0])
    np.testing.assert_array_equal(one_d, events[:, 0] >= 0)


def test_quadrant_validates() -> None:
    data = np.zeros((3, 2))
    with pytest.raises(ValueError, match="2 dimension"):
        quadrant(data, [[0.0]], [1.0])
    with pytest.raises(ValueError, match="at least one divider"):
        quadrant(data, [[0.0], []], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        quadrant(data, [[0.0], [np.nan]], [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        quadrant(data, [[0.0], [0.0]], [1.0, np.nan])


# -- boolean ------------------------------------------------------------------------------


def test_boolean_operations_and_complements() -> None:
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    c = np.array([True, True, True, False])
    assert boolean("and", [a, b]).tolist() == [True, False, False, False]
    assert boolean("AND", [a, b, c]).tolist() == [True, False, False, False]
    assert boolean("or", [a, b]).tolist() == [True, True, True, False]
    assert boolean("not", [a]).tolist() == [False, False, True, True]
    assert boolean("not", [a], complement=[True]).tolist() == a.tolist()
    # use-as-complement: in a but not in b (the suite's And3), or: in a or outside b (Or2)
    assert boolean("and", [a, b], complement=[False, True]).tolist() == [False, True, False, False]
    assert boolean("or", [a, b], complement=[False, True]).tolist() == [True, True, False, True]
    empty = boolean("and", [np.zeros(0, bool), np.zeros(0, bool)])
    assert empty.dtype == np.bool_ and empty.shape == (0,)


def test_boolean_validates() -> None:
    a = np.array([True, False])
    with pytest.raises(ValueError, match="'and', 'or' or 'not'"):
        boolean("xor", [a, a])
    with pytest.raises(ValueError, match="exactly one"):
        boolean("not", [a, a])
    with pytest.raises(ValueError, match="at least two"):
        boolean("and", [a])
    with pytest.raises(ValueError, match="boolean mask"):
        boolean("or", [a, np.array([1, 0])])
    with pytest.raises(ValueError, match="operand 1 has 3 events"):
        boolean("or", [a, np.array([True, False, True])])
    with pytest.raises(ValueError, match="complement has 1 flag"):
        boolean("and", [a, a], complement=[True])


def test_docstring_examples() -> None:
    import doctest

    from treganalysis.gating import geometry

    result = doctest.testmod(geometry, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
