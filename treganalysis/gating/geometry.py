"""Gate geometry: which events lie inside a rectangle, polygon, ellipsoid or quadrant.

Every gate has the same shape (as in FlowCal): it takes the event coordinates ``data``
(an array of shape ``(n, d)``, or ``(n,)`` for one dimension) plus the gate's geometry, and
returns a boolean mask of length ``n``. Columns of ``data`` are the gate's dimensions, in
the order of the geometry parameters, already compensated and transformed as the gate
requires (the gate's coordinates are on that scale). Combine masks with `boolean`.

The boundaries follow Gating-ML 2.0 (ISAC) and reproduce its compliance suite exactly:

* rectangle / range:  ``min <= x < max`` in every dimension; a missing bound is open;
* polygon:            even-odd (crossing-number) rule, with the same half-open edges, so
                      an axis-aligned rectangular polygon equals the rectangle gate;
* ellipsoid:          ``(x - mean)^T C^-1 (x - mean) <= distance_square`` (boundary in);
* quadrant:           the cell of a grid of dividers, half-open like rectangles;
* boolean:            ``and``/``or``/``not`` of masks, any operand may be complemented.

An event with a NaN coordinate in any dimension of a gate is never inside it (so it is
inside the gate's complement). Comparisons are made in float64: float32 events are widened
exactly and the gate's numbers are never rounded to float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["rectangle", "polygon", "ellipse", "quadrant", "boolean"]

# A covariance matrix whose condition number exceeds this cannot be inverted without its
# rounding errors deciding which events are inside.
_MAX_CONDITION = 1e12
_ELLIPSE_BLOCK = 16384  # events per block of an ellipse's evaluation (about 0.5 MB of float64 temporaries)

Bound = float | None


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------


def _events(data: ArrayLike, gate: str, dims: int | None = None) -> np.ndarray:
    """``data`` as a 2-D float array ``(n, d)``: float32 kept, anything else float64."""
    arr = np.asarray(data)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{gate}: data must be a real numeric array; got dtype {arr.dtype}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    elif arr.ndim != 2:
        raise ValueError(
            f"{gate}: data must have shape (n,) or (n, d) (one row per event); got {arr.shape}"
        )
    if dims is not None and arr.shape[1] != dims:
        raise ValueError(
            f"{gate}: data has {arr.shape[1]} column(s) but the gate has {dims} dimension(s)"
        )
    return arr


def _real(value: object, what: str, gate: str) -> float:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{gate}: {what} must be a real number; got {value!r}") from None
    return result


def _bounds(bound: ArrayLike | None, dims: int, what: str, gate: str) -> list[Bound]:
    """One bound (a finite float, or None for open) per dimension."""
    if bound is None:
        return [None] * dims
    if np.ndim(bound) == 0:
        values: list[object] = [bound]
    else:
        values = list(np.asarray(bound, dtype=object).reshape(-1))
    if len(values) != dims:
        raise ValueError(
            f"{gate}: {what} has {len(values)} value(s) but data has {dims} dimension(s)"
        )
    result: list[Bound] = []
    for i, value in enumerate(values):
        if value is None:
            result.append(None)
            continue
        v = _real(value, f"{what}[{i}]", gate)
        if math.isnan(v):
            result.append(None)
        elif math.isinf(v):
            raise ValueError(
                f"{gate}: {what}[{i}] is {v}; use None (or NaN) for an open bound"
            )
        else:
            result.append(v)
    return result


def _floats(values: ArrayLike, ndim: int, what: str, gate: str) -> np.ndarray:
    """A finite float64 array of ``ndim`` dimensions (a scalar counts as 1 or 1x1)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{gate}: {what} must be numeric; got {values!r}") from None
    arr = np.atleast_1d(arr) if ndim == 1 else np.atleast_2d(arr)
    if arr.ndim != ndim:
        raise ValueError(f"{gate}: {what} must be {ndim}-D; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{gate}: {what} must be finite; got {arr.tolist()}")
    return arr


# ---------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------


def rectangle(
    data: ArrayLike,
    minimum: ArrayLike | None = None,
    maximum: ArrayLike | None = None,
) -> np.ndarray:
    """Events inside a (hyper-)rectangle or, for one dimension, a range.

    Parameters
    ----------
    data : array_like, shape (n, d) or (n,)
        Event coordinates; column ``j`` is the gate's dimension ``j``.
    minimum, maximum : array_like of float or None, optional
        Lower and upper bound of every dimension: a sequence of ``d`` values, or a scalar
        when ``d == 1``. A bound that is None or NaN is open (no limit); None for the
        whole argument leaves every dimension open on that side.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the events inside the gate.

    Raises
    ------
    ValueError
        If ``data`` is not a numeric (n,) or (n, d) array, a bound list has the wrong
        length, a bound is infinite or not a number, or a minimum exceeds its maximum.

    Notes
    -----
    Gating-ML 2.0 RectangleGate: an event is inside when ``min <= x < max`` holds in every
    dimension: the minimum is inclusive, the maximum exclusive, so adjacent ranges
    ``[a, b)`` and ``[b, c)`` share no event. An open bound does not limit its side: an
    event at ``+inf`` is inside a range without maximum. A NaN coordinate is never inside,
    not even in a dimension open on both sides. ``minimum == maximum`` is allowed and
    selects nothing. Bounds are compared in float64, so ``x = 100`` stored as float32 is
    outside ``min = 100.000001`` (NumPy would otherwise round that bound to float32).

    Examples
    --------
    >>> rectangle([1.0, 2.0, 3.0, float("nan")], minimum=2.0, maximum=3.0).tolist()
    [False, True, False, False]
    >>> rectangle([[0, 5], [5, 0]], minimum=[0, None], maximum=[None, 5]).tolist()
    [False, True]
    """
    gate = "rectangle gate"
    events = _events(data, gate)
    dims = events.shape[1]
    lows = _bounds(minimum, dims, "minimum", gate)
    highs = _bounds(maximum, dims, "maximum", gate)
    for j, (lo, hi) in enumerate(zip(lows, highs)):
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"{gate}: dimension {j} has minimum {lo!r} > maximum {hi!r}"
            )
    inside = np.ones(events.shape[0], dtype=bool)
    for j, (lo, hi) in enumerate(zip(lows, highs)):
        column = events[:, j]
        # np.float64 scalars make NumPy compare in float64 (a Python float would be
        # rounded to float32 for float32 data under NEP 50).
        if lo is not None:
            inside &= column >= np.float64(lo)
        if hi is not None:
            inside &= column < np.float64(hi)
        if lo is None and hi is None:
            inside &= ~np.isnan(column)
    return inside


def polygon(data: ArrayLike, vertices: ArrayLike) -> np.ndarray:
    """Events inside a 2-D polygon (even-odd rule, half-open edges).

    Parameters
    ----------
    data : array_like, shape (n, 2)
        Event coordinates (x, y).
    vertices : array_like, shape (k, 2), k >= 3
        Polygon vertices in order; the last is joined to the first. The polygon may be
        concave or self-intersecting; repeating the first vertex at the end is allowed.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the events inside the polygon.

    Raises
    ------
    ValueError
        If ``data`` is not (n, 2), or ``vertices`` is not a finite (k, 2) array with at
        least 3 vertices.

    Notes
    -----
    Gating-ML 2.0 PolygonGate, even-odd (crossing-number) rule: an event is inside when a
    ray from it crosses the boundary an odd number of times, so the regions of a
    self-intersecting polygon alternate in and out (FlowKit/FlowUtils count the winding
    number modulo 2, which has the same parity). The ray runs from the event towards
    ``+x``; an edge counts when it straddles the event's ``y`` half-open,
    ``min(y_a, y_b) <= y < max(y_a, y_b)``, and passes strictly to the right of the event.
    A horizontal edge never counts; a vertex on the ray counts once when its two edges
    continue on opposite sides of the ray and zero or two times otherwise.

    Boundary events therefore follow the rectangle rule ``min <= x < max``: an event on
    a left or bottom edge (where the inside is to its right or above) is inside, one on a
    right or top edge is outside, and an axis-aligned rectangular polygon selects exactly
    the events of `rectangle` with the same corners. The compliance suite has events on
    bottom, left and upper-left diagonal edges, all inside; FlowUtils' winding count
    treats right and top edges as outside, as here. Events with a NaN or infinite
    coordinate are outside.

    The "right of the edge" test is the sign of a cross product evaluated in float64,
    not a division, so events exactly on an edge are classified consistently. The loop
    runs over the edges; each edge is tested against all events at once.

    Examples
    --------
    >>> square = [(0, 0), (2, 0), (2, 2), (0, 2)]
    >>> polygon([(1, 1), (0, 1), (2, 1), (1, 0), (1, 2), (3, 1)], square).tolist()
    [True, True, False, True, False, False]
    """
    gate = "polygon gate"
    events = _events(data, gate, dims=2)
    verts = _floats(vertices, 2, "vertices", gate)
    if verts.shape[1] != 2:
        raise ValueError(f"{gate}: vertices must have shape (k, 2); got {verts.shape}")
    if verts.shape[0] < 3:
        raise ValueError(f"{gate}: a polygon needs at least 3 vertices; got {verts.shape[0]}")
    x = events[:, 0].astype(np.float64)
    y = events[:, 1].astype(np.float64)
    inside = np.zeros(events.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):  # 0 * inf for infinite events: NaN, not counted
        for (xa, ya), (xb, yb) in zip(verts, np.roll(verts, -1, axis=0)):
            if ya == yb:
                continue  # a horizontal edge never straddles a horizontal ray
            if ya > yb:  # orient the edge upwards: (xa, ya) is the lower end
                xa, ya, xb, yb = xb, yb, xa, ya
            straddles = (y >= ya) & (y < yb)
            # x < x-intercept of the edge at y  <=>  (x - xa)(yb - ya) < (xb - xa)(y - ya)
            left = (x - xa) * (yb - ya) < (xb - xa) * (y - ya)
            inside ^= straddles & left
    return inside


def ellipse(
    data: ArrayLike,
    mean: ArrayLike,
    covariance: ArrayLike,
    distance_square: float,
) -> np.ndarray:
    """Events inside an ellipse (2-D) or ellipsoid (any dimension).

    Parameters
    ----------
    data : array_like, shape (n, d) or (n,)
        Event coordinates.
    mean : array_like, shape (d,)
        Centre of the ellipsoid.
    covariance : array_like, shape (d, d)
        The covariance matrix ``C`` that shapes the ellipsoid; must be invertible.
    distance_square : float
        Square of the Mahalanobis distance of the boundary; must be > 0.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the events inside or on the ellipsoid.

    Raises
    ------
    ValueError
        If shapes disagree, a value is not finite, ``distance_square <= 0`` or the
        covariance matrix is singular (condition number above 1e12).

    Notes
    -----
    Gating-ML 2.0 EllipsoidGate: an event ``x`` is inside when
    ``(x - mean)^T C^-1 (x - mean) <= distance_square``; the boundary is inside, as in
    FlowUtils (no event of the compliance suite lies exactly on one, so the suite does not
    decide this). For a 2-D ellipse with half-axes ``a``, ``b`` and
    ``distance_square = 1``, ``C`` has eigenvalues ``a**2`` and ``b**2``.

    ``C`` is used as given: it is not required to be symmetric (only the symmetric part
    of ``C^-1`` matters in the quadratic form) nor positive definite (then the "ellipsoid"
    is an unbounded quadric); the Gating-ML compliance suite contains a 3-D gate whose
    matrix is neither, and its expected events are reproduced. The inverse is computed
    once in float64. Events with a NaN or infinite coordinate are outside.

    Examples
    --------
    >>> circle = ellipse([(0, 2), (0, 2.01), (1, 1)], mean=(0, 0),
    ...                  covariance=[[4, 0], [0, 4]], distance_square=1)
    >>> circle.tolist()
    [True, False, True]
    """
    gate = "ellipse gate"
    centre = _floats(mean, 1, "mean", gate)
    dims = centre.size
    if dims == 0:
        raise ValueError(f"{gate}: mean must hold one coordinate per dimension; got {mean!r}")
    events = _events(data, gate, dims=dims)
    cov = _floats(covariance, 2, "covariance", gate)
    if cov.shape != (dims, dims):
        raise ValueError(
            f"{gate}: covariance must have shape ({dims}, {dims}) for a {dims}-D mean;"
            f" got {cov.shape}"
        )
    d2 = _real(distance_square, "distance_square", gate)
    if not (math.isfinite(d2) and d2 > 0):
        raise ValueError(f"{gate}: distance_square must be finite and > 0; got {d2!r}")
    condition = float(np.linalg.cond(cov))
    if not condition <= _MAX_CONDITION:
        raise ValueError(
            f"{gate}: the covariance matrix is singular (condition number {condition:.3g})"
        )
    inverse = np.linalg.inv(cov)
    with np.errstate(invalid="ignore", over="ignore"):  # infinite events: inf or NaN, out
        if dims <= 3:
            inside = np.empty(events.shape[0], dtype=bool)
            # by blocks of events, term by term on columns: float64 temporaries of a block, not
            # of every event, and no BLAS call (its thread pool makes small products slow)
            for start in range(0, events.shape[0], _ELLIPSE_BLOCK):
                block = events[start : start + _ELLIPSE_BLOCK]
                offsets = [block[:, i].astype(np.float64) - centre[i] for i in range(dims)]
                distance = np.zeros(block.shape[0])
                for i in range(dims):
                    # row i of the quadratic form: offset_i * sum_j inverse[i, j] * offset_j
                    row = inverse[i, 0] * offsets[0]
                    for j in range(1, dims):
                        row += inverse[i, j] * offsets[j]
                    row *= offsets[i]
                    distance += row
                # a NaN or infinite coordinate makes the distance NaN or infinite: such events
                # are out (as are events so far out, beyond 1e150, that the distance overflows)
                out = inside[start : start + _ELLIPSE_BLOCK]
                np.less_equal(distance, d2, out=out)
                out &= np.isfinite(distance)  # -inf: an infinite event on an indefinite quadric
            return inside
        offset = events.astype(np.float64) - centre
        distance = np.einsum("ij,ij->i", offset @ inverse, offset)  # per event
        finite = np.isfinite(offset).all(axis=1)
    return (distance <= d2) & finite


def quadrant(
    data: ArrayLike,
    dividers: Sequence[Sequence[float]],
    location: Sequence[float | None],
) -> np.ndarray:
    """Events in one cell ("quadrant") of a grid of dividers.

    Parameters
    ----------
    data : array_like, shape (n, d) or (n,)
        Event coordinates; column ``j`` is divided by ``dividers[j]``.
    dividers : sequence of d sequences of float
        Divider positions of every dimension (at least one each; any order). ``m``
        positions cut the dimension into ``m + 1`` intervals.
    location : sequence of d floats or None
        A point of the wanted cell, one coordinate per dimension (Gating-ML's
        ``gating:location``): the cell is the interval of each dimension containing it.
        ``None`` leaves that dimension unrestricted (the quadrant does not reference the
        divider). ``-inf``/``+inf`` pick the lowest/highest interval.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True for the events in that cell.

    Raises
    ------
    ValueError
        If lengths disagree, a dimension has no divider or a non-finite one, or a
        location is NaN.

    Notes
    -----
    Gating-ML 2.0 QuadrantGate: dividers ``v_1 < ... < v_m`` of a dimension make the
    intervals ``(-inf, v_1), [v_1, v_2), ..., [v_m, +inf)``, half-open like `rectangle`
    (an event exactly on a divider belongs to the upper side). A quadrant is given by
    one position per divider it references and contains the events whose coordinates lie
    in the same intervals as those positions; a location exactly on a divider likewise
    selects the upper interval. A Gating-ML QuadrantGate with a quadrant per cell thus
    assigns every event without a NaN coordinate to exactly one quadrant.

    Examples
    --------
    >>> events = [(1, 1), (1, 9), (9, 9), (5, 5)]
    >>> quadrant(events, dividers=[[5], [5]], location=[9, 9]).tolist()  # ++ quadrant
    [False, False, True, True]
    >>> quadrant(events, dividers=[[5], [5]], location=[0, None]).tolist()  # x < 5
    [True, True, False, False]
    """
    gate = "quadrant gate"
    events = _events(data, gate)
    dims = events.shape[1]
    if len(dividers) != dims or len(location) != dims:
        raise ValueError(
            f"{gate}: data has {dims} dimension(s) but {len(dividers)} divider list(s) and "
            f"{len(location)} location value(s) were given"
        )
    lows: list[Bound] = []
    highs: list[Bound] = []
    for j, (positions, where) in enumerate(zip(dividers, location)):
        values = np.atleast_1d(np.asarray(positions, dtype=np.float64))
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"{gate}: dimension {j} needs at least one divider position")
        if not np.isfinite(values).all():
            raise ValueError(
                f"{gate}: divider positions of dimension {j} must be finite; got {values.tolist()}"
            )
        if where is None:
            lows.append(None)
            highs.append(None)
            continue
        point = _real(where, f"location[{j}]", gate)
        if math.isnan(point):
            raise ValueError(
                f"{gate}: location[{j}] is NaN; use None for an unrestricted dimension"
            )
        values = np.unique(values)  # sorted, duplicates merged
        k = int(np.searchsorted(values, point, side="right"))  # interval index 0..m
        lows.append(float(values[k - 1]) if k > 0 else None)
        highs.append(float(values[k]) if k < values.size else None)
    return rectangle(events, lows, highs)


def boolean(
    operation: Literal["and", "or", "not"],
    masks: Sequence[ArrayLike],
    complement: Sequence[bool] | None = None,
) -> np.ndarray:
    """Combine gate masks with Gating-ML's ``and``, ``or`` or ``not``.

    Parameters
    ----------
    operation : {"and", "or", "not"}
        How to combine the operands (case-insensitive).
    masks : sequence of array_like of bool, each shape (n,)
        The operand gates' masks, on the same events. ``and``/``or`` take at least two,
        ``not`` exactly one.
    complement : sequence of bool, optional
        Per operand, use its complement instead (Gating-ML ``use-as-complement``).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        The combined mask.

    Raises
    ------
    ValueError
        For an unknown operation, a wrong number of operands, masks that are not boolean
        or differ in length, or a ``complement`` of another length than ``masks``.

    Notes
    -----
    Gating-ML 2.0 BooleanGate: ``and`` is inside all operands, ``or`` inside at least
    one, ``not`` outside its single operand. ``use-as-complement`` replaces an operand by
    its complement before combining, so ``and(A, complement B)`` is "in A but not in B".
    Complements are taken over all events: an event outside a gate because of a NaN
    coordinate is inside its complement. Parent gates are not applied here: a gate with
    ``gating:parent_id`` is its own mask AND its parent's (``boolean("and", [g, parent])``).

    Examples
    --------
    >>> a, b = [True, True, False], [True, False, False]
    >>> boolean("and", [a, b], complement=[False, True]).tolist()
    [False, True, False]
    >>> boolean("not", [a]).tolist()
    [False, False, True]
    """
    gate = "boolean gate"
    op = str(operation).lower()
    if op not in ("and", "or", "not"):
        raise ValueError(f"{gate}: operation must be 'and', 'or' or 'not'; got {operation!r}")
    arrays = [np.asarray(m) for m in masks]
    if op == "not" and len(arrays) != 1:
        raise ValueError(f"{gate}: 'not' takes exactly one operand; got {len(arrays)}")
    if op != "not" and len(arrays) < 2:
        raise ValueError(f"{gate}: {op!r} takes at least two operands; got {len(arrays)}")
    flags = [False] * len(arrays) if complement is None else [bool(c) for c in complement]
    if len(flags) != len(arrays):
        raise ValueError(
            f"{gate}: complement has {len(flags)} flag(s) for {len(arrays)} operand(s)"
        )
    for i, arr in enumerate(arrays):
        if arr.dtype != np.bool_ or arr.ndim != 1:
            raise ValueError(
                f"{gate}: operand {i} must be a 1-D boolean mask;"
                f" got dtype {arr.dtype}, shape {arr.shape}"
            )
        if arr.shape != arrays[0].shape:
            raise ValueError(
                f"{gate}: operand {i} has {arr.shape[0]} events"
                f" but operand 0 has {arrays[0].shape[0]}"
            )
    operands = [~a if flag else a for a, flag in zip(arrays, flags)]
    if op == "not":
        return ~operands[0]
    reduce = np.logical_and if op == "and" else np.logical_or
    return reduce.reduce(operands)
