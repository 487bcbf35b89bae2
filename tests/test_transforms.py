"""Tests of treganalysis.transforms against FlowKit/FlowUtils and against themselves."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treganalysis import transforms
from treganalysis.errors import TransformError
from treganalysis.transforms import (
    arcsinh,
    arcsinh_inverse,
    estimate_logicle_w,
    logicle,
    logicle_inverse,
)

# (T, W, M, A)
PARAMETER_SETS = [
    (262144.0, 0.5, 4.5, 0.0),
    (262144.0, 1.0, 4.5, 0.0),
    (262144.0, 0.0, 4.5, 0.0),
    (10000.0, 0.5, 4.0, 0.0),
    (262144.0, 0.5, 4.5, 1.0),
    (262144.0, 2.0, 5.0, 0.5),
    (1024.0, 0.25, 4.0, 0.0),
    (262144.0, 2.25, 4.5, 0.0),  # W = M/2: linear region over the whole lower half
    (262144.0, 0.5, 4.5, -0.5),  # A = -W
]
IDS = ["T{:g}-W{:g}-M{:g}-A{:g}".format(*p) for p in PARAMETER_SETS]


def flowkit_logicle(params: tuple[float, float, float, float]):
    """FlowKit's GatingML 2.0 Logicle with the same parameters (the reference)."""
    from flowkit import transforms as fk_transforms

    T, W, M, A = params
    return fk_transforms.LogicleTransform(param_t=T, param_w=W, param_m=M, param_a=A)


def data_grid() -> np.ndarray:
    """Dense grid of [-5000, 262144] with zero, negatives, T values and small values.

    Values of |x| below 1e-8 are left out: FlowUtils does not converge there when W = 0
    (it returns -1), while this module is exact.
    """
    dense = np.linspace(-5000.0, 262144.0, 300_001)
    special = [0.0, -0.0, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0]
    special += [1024.0, 10000.0, 262144.0, -5000.0]
    return np.concatenate([dense, special])


def slope_dx_dy(y: np.ndarray, params) -> np.ndarray:
    """|dx/dy| of the inverse by central differences (to turn a y error into an x error)."""
    h = 1e-6
    return np.abs(logicle_inverse(y + h, *params) - logicle_inverse(y - h, *params)) / (2 * h)


# --------------------------------------------------------------------------------------
# Agreement with FlowKit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_logicle_matches_flowkit_float64(params):
    x = data_grid()
    expected = flowkit_logicle(params).apply(x)
    got = logicle(x, *params)
    assert got.dtype == np.float64
    assert np.max(np.abs(got - expected)) <= 1e-6


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_logicle_matches_flowkit_float32(params):
    x = data_grid().astype(np.float32)
    expected = flowkit_logicle(params).apply(x.astype(np.float64))
    got = logicle(x, *params)
    assert got.dtype == np.float32
    assert np.max(np.abs(got.astype(np.float64) - expected)) <= 1e-6


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_logicle_inverse_matches_flowkit(params):
    T = params[0]
    x1 = (params[1] + params[3]) / (params[2] + params[3])
    y = np.concatenate([np.linspace(-0.3, 1.2, 100_001), [x1, 0.0, 1.0]])
    expected = flowkit_logicle(params).inverse(y)
    got = logicle_inverse(y, *params)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * T)
    got32 = logicle_inverse(y.astype(np.float32), *params)
    assert got32.dtype == np.float32
    expected32 = flowkit_logicle(params).inverse(y.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got32, expected32, rtol=1e-6, atol=1e-6 * T)


def test_fallback_without_table_matches_flowkit():
    # M = 60 would need more than 160 table octaves: everything takes the exact solver.
    params = (262144.0, 0.5, 60.0, 0.0)
    assert transforms._logicle_table(*params, "d") is None
    x = np.linspace(-5000.0, 262144.0, 2001)
    expected = flowkit_logicle(params).apply(x)
    np.testing.assert_allclose(logicle(x, *params), expected, rtol=0, atol=1e-9)


def test_logicle_once_is_logicle_without_caching_its_table():
    # the gating job's transform: per-sample W, a table built for the one column and then freed
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(0.0, 300.0, 5000), rng.lognormal(8.0, 1.5, 5000), [0.0, np.nan, np.inf, 1e9]])
    params = (262144.0, 0.6173, 4.5, 0.0)  # a W no other test uses
    for data in (x, x.astype(np.float32), np.asfortranarray(np.stack([x, -x], axis=1))):
        transforms._logicle_table.cache_clear()
        got = transforms._logicle_once(data, *params)
        assert transforms._logicle_table.cache_info().currsize == 0
        expected = logicle(data, *params)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------------------
# Constants and special points
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_biexponential_constants(params):
    T, W, M, A = params
    k = transforms._logicle_constants(T, W, M, A)

    def B(y: float) -> float:
        return k.a * math.exp(k.b * y) - k.c * math.exp(-k.d * y) - k.f

    assert B(1.0) == pytest.approx(T, rel=1e-12)
    assert abs(B(k.x1)) <= 1e-12 * T
    assert k.x1 == pytest.approx((W + A) / (M + A), rel=1e-15)
    assert k.b == pytest.approx((M + A) * math.log(10), rel=1e-15)
    w = W / (M + A)
    assert 0 < k.d <= k.b
    assert 2 * (math.log(k.d) - math.log(k.b)) + w * (k.b + k.d) == pytest.approx(0.0, abs=1e-12)
    # Public view of the same facts: 0 <-> x1 and T <-> 1.
    assert logicle(0.0, *params) == pytest.approx(k.x1, abs=1e-15)
    assert logicle(T, *params) == pytest.approx(1.0, abs=1e-8)
    assert logicle_inverse(1.0, *params) == pytest.approx(T, rel=1e-12)
    assert logicle_inverse(k.x1, *params) == 0.0


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_logicle_is_reflected_about_x1(params):
    x = np.geomspace(1e-3, 5e5, 2000)
    k = transforms._logicle_constants(*params)
    reflected = 2 * k.x1 - logicle(x, *params)
    np.testing.assert_allclose(logicle(-x, *params), reflected, rtol=0, atol=1e-12)


def test_values_beyond_table_and_infinities():
    params = PARAMETER_SETS[0]
    x = np.array([-1e300, -1e12, -3e6, 3e6, 1e12, 1e300, np.inf, -np.inf])
    got = logicle(x, *params)
    exact = transforms._logicle_exact(x, transforms._logicle_constants(*params))
    np.testing.assert_allclose(got, exact, rtol=1e-15)
    assert got[-2] == np.inf and got[-1] == -np.inf
    assert np.all(np.diff(logicle(np.sort(x), *params)) >= 0)


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_round_trip_x_y_x(params):
    # A y error e becomes an x error e * |dx/dy|: relative 1e-5 where the scale is
    # logarithmic, and up to 1e-7 (float64) or 1e-6 (float32) times the slope near zero.
    x = data_grid()
    y = logicle(x, *params)
    back = logicle_inverse(y, *params)
    assert np.all(np.abs(back - x) <= 1e-5 * np.abs(x) + 1e-7 * slope_dx_dy(y, params))

    x32 = x.astype(np.float32)
    y32 = logicle(x32, *params)
    back32 = logicle_inverse(y32, *params).astype(np.float64)
    tol = 1e-5 * np.abs(x32) + 1e-6 * slope_dx_dy(y32.astype(np.float64), params)
    assert np.all(np.abs(back32 - x32) <= tol)


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=IDS)
def test_round_trip_y_x_y(params):
    y = np.linspace(-0.2, 1.2, 20_001)
    np.testing.assert_allclose(logicle(logicle_inverse(y, *params), *params), y, rtol=0, atol=1e-7)
    y32 = y.astype(np.float32)
    back32 = logicle(logicle_inverse(y32, *params), *params)
    assert back32.dtype == np.float32
    np.testing.assert_allclose(back32, y32, rtol=0, atol=5e-7)


# --------------------------------------------------------------------------------------
# Property-based tests over random valid parameters
# --------------------------------------------------------------------------------------


@st.composite
def logicle_parameters(draw):
    T = 10.0 ** draw(st.floats(1.0, 7.0))
    M = draw(st.floats(1.0, 8.0))
    W = draw(st.sampled_from([0.0, M / 2]) | st.floats(0.0, M / 2))
    A = draw(st.sampled_from([-W, M - 2 * W, 0.0]) | st.floats(-W, M - 2 * W))
    A = min(max(A, -W), M - 2 * W)  # guard against rounding at the bounds
    return T, W, M, A


@st.composite
def parameters_and_data(draw, max_size=200):
    params = draw(logicle_parameters())
    T = params[0]
    # Data within +-2T, the range every data set of T's instrument lies in and which
    # the lookup table covers (beyond it, see test_values_beyond_table_and_infinities).
    scaled = draw(st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=max_size))
    tiny = draw(st.lists(st.floats(-1e-3, 1e-3), max_size=20))
    x = np.array(scaled) * T
    x = np.concatenate([x, np.array(tiny), np.nextafter(x, np.inf), [0.0, T, -T]])
    return params, x


@settings(max_examples=60, deadline=None)
@given(parameters_and_data())
def test_monotone_non_decreasing(case):
    params, x = case
    for dtype in (np.float64, np.float32):
        xs = np.sort(x.astype(dtype))
        y = logicle(xs, *params)
        assert y.dtype == dtype
        assert np.all(np.diff(y) >= 0)


@settings(max_examples=60, deadline=None)
@given(parameters_and_data(max_size=100))
def test_round_trips_random_parameters(case):
    params, x = case
    y = logicle(x, *params)
    exact = transforms._logicle_exact(x, transforms._logicle_constants(*params))
    # Interpolation error ~2**-22 / (8 b) with b = (M + A) ln 10 >= 1.15 here.
    assert np.max(np.abs(y - exact)) <= 1e-7
    back = logicle_inverse(y, *params)
    assert np.all(np.abs(back - x) <= 1e-5 * np.abs(x) + 2e-7 * slope_dx_dy(y, params))
    np.testing.assert_allclose(logicle(logicle_inverse(y, *params), *params), y, rtol=0, atol=2e-7)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=50),
    st.floats(1e-3, 1e5),
)
def test_arcsinh_properties(values, cofactor):
    x = np.array(values)
    y = arcsinh(x, cofactor)
    np.testing.assert_array_equal(y, np.arcsinh(x / cofactor))
    np.testing.assert_allclose(arcsinh_inverse(y, cofactor), x, rtol=1e-12, atol=1e-12 * cofactor)
    x32 = x.astype(np.float32)
    y32 = arcsinh(x32, cofactor)
    assert y32.dtype == np.float32
    expected32 = np.arcsinh(x32.astype(np.float64) / cofactor)
    np.testing.assert_allclose(y32, expected32, rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(arcsinh(np.sort(x), cofactor)) >= 0)


# --------------------------------------------------------------------------------------
# Validation, NaN, shapes and dtypes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"W": 2.5, "M": 4.5}, "0 <= W <= M/2"),
        ({"W": -0.1}, "0 <= W <= M/2"),
        ({"W": 0.5, "A": -0.6}, "-W <= A <= M - 2W"),
        ({"W": 1.0, "M": 4.5, "A": 2.6}, "-W <= A <= M - 2W"),
        ({"T": 0.0}, "T > 0"),
        ({"T": -1.0}, "T > 0"),
        ({"M": 0.0, "W": 0.0}, "M > 0"),
        ({"T": float("nan")}, "finite"),
        ({"W": "wide"}, "real number"),
        ({"M": 200.0}, "M + A <= 150"),
    ],
)
def test_invalid_logicle_parameters(kwargs, fragment):
    for function in (logicle, logicle_inverse):
        with pytest.raises(TransformError) as info:
            function([1.0, 2.0], **kwargs)
        assert fragment in str(info.value)
    key, value = next(iter(kwargs.items()))
    if isinstance(value, float) and math.isfinite(value):
        assert f"{key}={value!r}" in str(info.value)  # the message names the values


def test_transform_error_is_a_value_error():
    with pytest.raises(ValueError):
        logicle([1.0], W=3.0)


@pytest.mark.parametrize("cofactor", [0.0, -5.0])
def test_invalid_cofactor(cofactor):
    for function in (arcsinh, arcsinh_inverse):
        with pytest.raises(TransformError, match="cofactor > 0"):
            function([1.0], cofactor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates(dtype):
    x = np.array([np.nan, 1.0, -np.nan, 0.0], dtype=dtype)
    for result in (logicle(x), logicle_inverse(x), arcsinh(x), arcsinh_inverse(x)):
        assert result.dtype == dtype
        np.testing.assert_array_equal(np.isnan(result), [True, False, True, False])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype_preserved(dtype):
    rng = np.random.default_rng(1)
    block = rng.uniform(-5000, 262144, size=(3000, 4)).astype(dtype)
    for function in (logicle, logicle_inverse, arcsinh, arcsinh_inverse):
        values = block if function not in (logicle_inverse,) else block / 262144
        out = function(values)
        assert out.shape == values.shape and out.dtype == dtype
        # A column (strided view) and a transposed block give the same numbers.
        np.testing.assert_array_equal(function(values[:, 2]), out[:, 2])
        np.testing.assert_array_equal(function(values.T), out.T)
    # Values are not modified in place.
    copy = block.copy()
    logicle(block)
    np.testing.assert_array_equal(block, copy)


def test_other_inputs_give_float64():
    assert logicle([1, 2, 3]).dtype == np.float64
    assert logicle(np.arange(5, dtype=np.int16)).dtype == np.float64
    assert logicle(np.arange(5, dtype=np.float16)).dtype == np.float64
    scalar = logicle(0.0)
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()
    empty = logicle(np.empty((0, 3), dtype=np.float32))
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert arcsinh([1, 2]).dtype == np.float64
    assert logicle_inverse([0, 1]).dtype == np.float64


def test_large_input_crosses_blocks():
    # More than one 65536-value block, with off-table values in the middle of one.
    x = np.linspace(-5000.0, 262144.0, 200_003)
    x[100_000] = 1e9
    x[150_000] = np.nan
    y = logicle(x)
    exact = transforms._logicle_exact(x, transforms._logicle_constants(262144.0, 0.5, 4.5, 0.0))
    np.testing.assert_allclose(y, exact, rtol=0, atol=1e-7)
    assert np.isnan(y[150_000])


def test_docstring_examples():
    result = doctest.testmod(transforms, verbose=False)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------------------
# estimate_logicle_w
# --------------------------------------------------------------------------------------


def test_estimate_logicle_w_known_quantile():
    # 21 negatives 5 apart: the 5% quantile (linear interpolation) is exactly the second.
    negatives = np.linspace(-105.0, -5.0, 21)
    assert np.quantile(negatives, 0.05) == pytest.approx(-100.0)
    positives = np.random.default_rng(2).uniform(0, 262144, 5000)
    data = np.concatenate([positives, negatives, [np.nan]])
    expected = (4.5 - math.log10(262144 / 100)) / 2
    assert estimate_logicle_w(data) == pytest.approx(expected, rel=1e-12)
    assert estimate_logicle_w(data.astype(np.float32)) == pytest.approx(expected, rel=1e-6)


def test_estimate_logicle_w_no_negatives():
    assert estimate_logicle_w(np.array([0.0, 5.0, 1e5])) == 0.5
    assert estimate_logicle_w([]) == 0.5
    assert estimate_logicle_w([1.0], M=0.6) == pytest.approx(0.3)  # clipped to M/2


def test_estimate_logicle_w_is_clipped():
    assert estimate_logicle_w([-1e-3, 10.0]) == 0.0  # W would be negative
    assert estimate_logicle_w([-1e7, 10.0], T=262144, M=4.5) == 2.25  # W would exceed M/2


def test_estimate_logicle_w_validation():
    with pytest.raises(TransformError, match="T > 0"):
        estimate_logicle_w([-1.0], T=0)
    with pytest.raises(TransformError, match="M > 0"):
        estimate_logicle_w([-1.0], M=-1)
    with pytest.raises(TransformError, match="quantile"):
        estimate_logicle_w([-1.0], quantile=1.5)


def test_zero_dimensional_input_gives_arrays():
    for function in (logicle, logicle_inverse, arcsinh, arcsinh_inverse):
        for value in (0.5, np.float32(0.5), np.array(0.5)):
            out = function(value)
            assert isinstance(out, np.ndarray) and out.shape == ()


def test_logicle_on_a_fortran_ordered_column_block():
    # events[:, [i, j, ...]] is Fortran-ordered; the result must equal the C-ordered one
    rng = np.random.default_rng(7)
    events = rng.normal(500, 2000, (5000, 6)).astype(np.float32)
    block = events[:, [1, 3, 4]]
    assert block.flags.f_contiguous and not block.flags.c_contiguous
    result = logicle(block)
    np.testing.assert_array_equal(result, logicle(np.ascontiguousarray(block)))
    assert result.shape == block.shape and result.dtype == np.float32
