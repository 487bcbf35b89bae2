"""Display transforms for cytometry data: Logicle and arcsinh.

The Logicle functions reproduce, to well below 1e-6 on the 0..1 scale, the GatingML 2.0
Logicle of FlowKit (``flowkit.transforms.LogicleTransform``, which calls
``flowutils.transforms.logicle``), but are several times faster on large event arrays.

All functions accept any array-like of any shape.  A ``float32`` input gives a ``float32``
result; anything else is converted to, and returned as, ``float64``.  NaN stays NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from treganalysis._quantile import linear_quantile
from treganalysis.errors import TransformError

__all__ = [
    "logicle",
    "logicle_inverse",
    "arcsinh",
    "arcsinh_inverse",
    "estimate_logicle_w",
]

_LN10 = math.log(10.0)

# Each binary octave of |x| is cut into 2**bits segments of the lookup table. Linear
# interpolation error is about 2**(-2 * bits) / (8 * b) on the 0..1 scale (b = (M+A) ln 10),
# ~5e-8 for 9 bits and b ~ 10: the size of a float32 result's own rounding (up to 6e-8; results
# measured within about 3 ulp of the exact value, against 2 ulp at 10 bits), so 9 bits suffice
# there (the table, built in every gating job for each channel's W, takes 3 ms instead of 7
# at 10 bits); float64 gets 11 bits (~3e-9).
_SEGMENT_BITS = {np.dtype(np.float32): 9, np.dtype(np.float64): 11}
# Events per block: keeps the temporaries in cache (measured 2-3x faster than whole-array
# operations on 1e6 events) and bounds the extra memory for large 2-D blocks.
_CHUNK = 65536
# The table starts at the |x| where y - x1 is about 2**-20; below it the scale is linear
# to ~1e-16 (its second derivative vanishes at zero).
_LINEAR_DELTA = 2.0**-20
# Guard against extreme parameters (e.g. M = 60) that would need a huge table; those
# fall back to the exact solver for every value.
_MAX_OCTAVES = 160
# Constants involve 10**(2*(M + A)), which must not overflow a double (1.8e308).
_MAX_DECADES = 150.0

# Integer type of the same width, mantissa bits and exponent bias per float type.
_FLOAT_LAYOUT = {
    np.dtype(np.float32): (np.dtype(np.int32), 23, 127),
    np.dtype(np.float64): (np.dtype(np.int64), 52, 1023),
}


# ---------------------------------------------------------------------------------------
# Input handling and validation
# ---------------------------------------------------------------------------------------


def _as_float_array(x: ArrayLike) -> np.ndarray:
    """Return ``x`` as a float32 array if it is float32, otherwise as float64."""
    arr = np.asarray(x)
    if arr.dtype == np.float32:
        return arr
    if np.iscomplexobj(arr):
        # Silently dropping an imaginary part would hide a bug in the caller.
        raise TypeError(f"transforms need real values; got an array of dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def _as_real(name: str, value: object) -> float:
    """Convert a parameter to float, or raise TransformError naming it."""
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TransformError(f"{name} must be a real number; got {name}={value!r}") from None
    if not math.isfinite(result):
        raise TransformError(f"{name} must be finite; got {name}={result!r}")
    return result


def _check_logicle_parameters(
    T: object, W: object, M: object, A: object
) -> tuple[float, float, float, float]:
    """Validate Logicle parameters and return them as floats."""
    t = _as_real("T", T)
    w = _as_real("W", W)
    m = _as_real("M", M)
    a = _as_real("A", A)
    if not t > 0:
        raise TransformError(f"Logicle requires T > 0 (top of scale); got T={t!r}")
    if not m > 0:
        raise TransformError(f"Logicle requires M > 0 (decades); got M={m!r}")
    if not 0 <= w <= m / 2:
        raise TransformError(f"Logicle requires 0 <= W <= M/2; got W={w!r}, M={m!r}")
    if not -w <= a <= m - 2 * w:
        raise TransformError(
            f"Logicle requires -W <= A <= M - 2W; got A={a!r}, W={w!r}, M={m!r}"
        )
    # exp((M + A) ln 10) and its square appear in the constants; keep them finite.
    if not m + a <= _MAX_DECADES:
        raise TransformError(
            f"Logicle requires M + A <= {_MAX_DECADES:g} to stay within double precision;"
            f" got M={m!r}, A={a!r}"
        )
    return t, w, m, a


def _check_cofactor(cofactor: object) -> float:
    c = _as_real("cofactor", cofactor)
    if not c > 0:
        raise TransformError(f"arcsinh requires cofactor > 0; got cofactor={c!r}")
    return c


# ---------------------------------------------------------------------------------------
# Logicle constants and exact evaluation
# ---------------------------------------------------------------------------------------


class _LogicleConstants(NamedTuple):
    """Moore & Parks (2012) constants of one Logicle scale.

    ``B(y) = a*exp(b*y) - c*exp(-d*y) - f`` for ``y >= x1`` and ``-B(2*x1 - y)`` below.
    ``p = a*exp(b*x1)`` and ``q = c*exp(-d*x1)`` are the two exponentials at zero data, so
    ``f = p - q`` and ``B(x1 + s) = p*expm1(b*s) - q*expm1(-d*s)``; ``slope0 = B'(x1)``.
    """

    x1: float
    b: float
    d: float
    a: float
    c: float
    f: float
    p: float
    q: float
    slope0: float


def _solve_d(b: float, w: float) -> float:
    """Root of ``2*(ln d - ln b) + w*(b + d) = 0`` on (0, b], the Logicle condition."""
    if w == 0.0:
        return b
    # g(d) is increasing; g(b) = 2*w*b > 0 and g(lo) < -2 for lo = b*exp(-w*b - 1).
    # Newton's method (g is concave and increasing) kept inside the bracket by bisection; a
    # few lines instead of importing scipy.optimize into every gating job.
    lo, hi = b * math.exp(-w * b - 1.0), b
    d = hi
    for _ in range(400):
        g = 2.0 * (math.log(d) - math.log(b)) + w * (b + d)
        if g == 0.0:
            return d
        if g > 0.0:
            hi = d
        else:
            lo = d
        step = g / (2.0 / d + w)
        new = d - step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - d) <= 4.0 * np.finfo(float).eps * abs(new):
            return new
        d = new
    return d


@functools.lru_cache(maxsize=128)
def _logicle_constants(T: float, W: float, M: float, A: float) -> _LogicleConstants:
    """Compute the biexponential constants once per parameter set."""
    w = W / (M + A)
    x2 = A / (M + A)
    x1 = x2 + w
    x0 = x2 + 2.0 * w
    b = (M + A) * _LN10
    d = _solve_d(b, w)
    c_a = math.exp(x0 * (b + d))
    mf_a = math.exp(b * x1) - c_a * math.exp(-d * x1)
    a = T / (math.exp(b) - mf_a - c_a * math.exp(-d))
    c = c_a * a
    f = mf_a * a  # so that B(x1) = 0 (Moore & Parks store -f)
    p = a * math.exp(b * x1)
    q = c * math.exp(-d * x1)
    return _LogicleConstants(x1=x1, b=b, d=d, a=a, c=c, f=f, p=p, q=q, slope0=p * b + q * d)


def _biexponential_offset(s: np.ndarray, k: _LogicleConstants) -> np.ndarray:
    """``B(x1 + s)`` for ``s >= 0`` without cancellation (both terms are >= 0)."""
    return k.p * np.expm1(k.b * s) - k.q * np.expm1(-k.d * s)


def _solve_offset(ax: np.ndarray, k: _LogicleConstants) -> np.ndarray:
    """Exact ``s >= 0`` with ``B(x1 + s) = ax`` for finite ``ax >= 0`` (float64)."""
    ax = np.asarray(ax, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # Both starting values are upper bounds of the root: B is convex for s >= 0 (its
        # second derivative vanishes at s = 0 and grows), so it lies above its tangent
        # ax/slope0; and B(x1 + s) >= p*expm1(b*s) gives log1p(ax/p)/b.  Newton's method on
        # a convex increasing function started above the root decreases monotonically.
        log_bound = np.logaddexp(0.0, np.log(ax) - math.log(k.p)) / k.b
        s = np.minimum(ax / k.slope0, log_bound)
        active = np.flatnonzero(ax > 0)
        for _ in range(200):
            if active.size == 0:
                break
            sa = s[active]
            # expm1 gives the residual without cancellation and, plus one, the exponentials of
            # the derivative: two transcendental calls a round instead of four
            ebs = np.expm1(k.b * sa)
            eds = np.expm1(-k.d * sa)
            g = k.p * ebs - k.q * eds - ax[active]
            ebs += 1.0
            eds += 1.0
            step = g / (k.p * k.b * ebs + k.q * k.d * eds)
            s[active] = sa - step
            # Quadratic convergence: once a step is at rounding level, the next is ~0.
            active = active[~(np.abs(step) <= 1e-15 * np.abs(sa))]
    return s


def _logicle_exact(x: np.ndarray, k: _LogicleConstants) -> np.ndarray:
    """Logicle of float64 ``x`` by solving B(y) = x for every value (slow, exact)."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    finite = np.isfinite(ax)
    s = np.full(x.shape, np.inf)
    s[finite] = _solve_offset(ax[finite], k)
    # Reflection: logicle(-x) = 2*x1 - logicle(x); NaN keeps its NaN through copysign.
    y = np.copysign(s, x)
    y += k.x1
    y[np.isnan(x)] = np.nan
    return y


# ---------------------------------------------------------------------------------------
# Fast Logicle: piecewise-linear table indexed by the float's bits
# ---------------------------------------------------------------------------------------


class _LogicleTable(NamedTuple):
    """Lookup table of one parameter set for one float type (see ``logicle`` Notes)."""

    start: np.ndarray  # segment start |x| (0 for the linear segment 0)
    offset: np.ndarray  # y - x1 at the segment start
    slope: np.ndarray  # chord slope of y over the segment
    shift: int  # right shift of the |x| bit pattern giving the segment number
    base: int  # segment number of the bit pattern, minus this, is the table row
    x_high: float  # |x| >= x_high (or NaN) is outside the table
    offset_high: np.floating  # y - x1 at x_high, a floor for values beyond the table
    x1: np.floating  # y at x = 0 in the table's float type


@functools.lru_cache(maxsize=64)
def _logicle_table(
    T: float, W: float, M: float, A: float, dtype_char: str
) -> _LogicleTable | None:
    """Build (once per parameters and float type) the Logicle lookup table."""
    k = _logicle_constants(T, W, M, A)
    dtype = np.dtype(dtype_char)
    _, mantissa_bits, bias = _FLOAT_LAYOUT[dtype]
    finfo = np.finfo(dtype)

    # Octaves [2**e_lo, 2**e_hi) are tabulated: from where the scale is linear to 2T.
    e_lo = math.floor(math.log2(k.slope0 * _LINEAR_DELTA))
    e_lo = max(e_lo, int(finfo.minexp))  # stay among normal numbers of the float type
    e_hi = math.ceil(math.log2(2.0 * T))
    e_hi = min(e_hi, int(finfo.maxexp))
    if e_hi - e_lo > _MAX_OCTAVES or e_hi <= e_lo:
        return None

    bits = _SEGMENT_BITS[dtype]
    per_octave = 1 << bits
    n_octaves = e_hi - e_lo
    exponents = np.repeat(np.arange(e_lo, e_hi), per_octave)
    fractions = np.tile(np.arange(per_octave), n_octaves) / per_octave
    # Node i (i >= 1) is the start of segment i; node 0 is x = 0; the last node is 2**e_hi.
    nodes = np.empty(n_octaves * per_octave + 2)
    nodes[0] = 0.0
    nodes[1:-1] = np.ldexp(1.0 + fractions, exponents)
    nodes[-1] = math.ldexp(1.0, e_hi)
    offsets64 = _solve_offset(nodes, k)  # exact y - x1 at every node

    widths = np.diff(nodes)  # all powers of two, so slope * width is exact
    offsets = offsets64.astype(dtype)
    slope = (np.diff(offsets64) / widths).astype(dtype)
    # Monotone by construction: the value reached at the end of segment i must not
    # exceed the value at the start of segment i+1 once rounded in this float type.
    widths_t = widths.astype(dtype)
    # (a few segments: each lowered by one ulp at a time, at most 8 times)
    fix = np.flatnonzero(offsets[:-1] + slope * widths_t > offsets[1:])
    for _ in range(8):
        if not fix.size:
            break
        slope[fix] = np.nextafter(slope[fix], dtype.type(0))
        fix = fix[offsets[fix] + slope[fix] * widths_t[fix] > offsets[fix + 1]]

    start = nodes[:-1].astype(dtype)
    for array in (start, offsets, slope):
        array.flags.writeable = False
    x_high = math.ldexp(1.0, e_hi)
    if x_high > float(finfo.max):
        x_high = math.inf  # every finite value of this float type is in the table
    return _LogicleTable(
        start=start,
        offset=offsets[:-1],
        slope=slope,
        shift=mantissa_bits - bits,
        base=((e_lo + bias) << bits) - 1,
        x_high=x_high,
        offset_high=offsets[-1],
        x1=dtype.type(k.x1),
    )


def _logicle_block(
    x: np.ndarray, out: np.ndarray, ax: np.ndarray, row: np.ndarray, table: _LogicleTable
) -> bool:
    """Fast Logicle of one 1-D block into ``out``; False if some |x| is off the table."""
    np.abs(x, out=ax)
    inside = bool(ax.max() < table.x_high)  # False for NaN as well
    # Bits of |x| >> shift = exponent and leading mantissa bits = segment number.
    int_type = _FLOAT_LAYOUT[ax.dtype][0]
    np.right_shift(ax.view(int_type), table.shift, out=row)
    row -= table.base
    # mode="clip" sends |x| below the first octave to row 0 (the linear segment).
    table.start.take(row, mode="clip", out=out)
    np.subtract(ax, out, out=out)  # exact (Sterbenz): start <= |x| < 2*start
    table.slope.take(row, mode="clip", out=ax)
    out *= ax
    table.offset.take(row, mode="clip", out=ax)
    out += ax
    np.copysign(out, x, out=out)  # reflection about x1 for negative data
    out += table.x1
    return inside


def _logicle_off_table(
    x: np.ndarray, table: _LogicleTable, k: _LogicleConstants
) -> np.ndarray:
    """Exact Logicle, in the table's float type, of values beyond the table or not finite."""
    ax = np.abs(x).astype(np.float64)
    finite = np.isfinite(ax)
    s64 = np.full(ax.shape, np.inf)
    s64[finite] = _solve_offset(ax[finite], k)
    s = s64.astype(table.offset.dtype)
    # Never below the table's end value, so the scale stays monotone across x_high.
    np.maximum(s, table.offset_high, out=s)
    np.copysign(s, x, out=s)  # same final operations as the table path
    s += table.x1
    s[np.isnan(x)] = np.nan
    return s


def logicle(
    x: ArrayLike,
    T: float = 262144.0,
    W: float = 0.5,
    M: float = 4.5,
    A: float = 0.0,
) -> np.ndarray:
    """Logicle transform (GatingML 2.0 scale, T maps to 1).

    Returns the same numbers as FlowKit's
    ``LogicleTransform(param_t=T, param_w=W, param_m=M, param_a=A).apply(x)`` (within
    about 1e-8 for float64 and 2e-7 for float32 input), but much faster.

    Parameters
    ----------
    x : array_like
        Data values, any shape.
    T : float, default 262144.0
        Top of the data scale; ``x = T`` maps to 1. Must be > 0.
    W : float, default 0.5
        Width of the linear region in decades. Must satisfy ``0 <= W <= M/2``.
    M : float, default 4.5
        Number of decades of the full scale. Must be > 0.
    A : float, default 0.0
        Additional negative decades. Must satisfy ``-W <= A <= M - 2W``.
        (Also ``M + A <= 150``, so that the constants fit in double precision.)

    Returns
    -------
    numpy.ndarray
        Scale values, same shape as ``x``; float32 if ``x`` is float32, else float64.
        Zero maps to ``x1 = (W + A)/(M + A)``; NaN stays NaN, +-inf gives +-inf.

    Raises
    ------
    TransformError
        If a parameter breaks one of the rules above.

    Notes
    -----
    Parks, Roederer & Moore (2006) and Moore & Parks (2012) define the scale through its
    inverse, the biexponential ``B(y) = a*exp(b*y) - c*exp(-d*y) - f`` for ``y >= x1``,
    reflected as ``B(y) = -B(2*x1 - y)`` below ``x1``, with ``w = W/(M+A)``,
    ``x2 = A/(M+A)``, ``x1 = x2 + w``, ``x0 = x2 + 2w``, ``b = (M+A) ln 10``, ``d`` the root
    of ``2(ln d - ln b) + w(b + d) = 0`` on (0, b] (``d = b`` if ``w = 0``),
    ``a = T / (exp(b) - mf_a - c_a exp(-d))``, ``c = c_a a`` and ``f`` such that
    ``B(x1) = 0`` (``c_a = exp(x0 (b + d))``, ``mf_a = exp(b x1) - c_a exp(-d x1)``).
    The condition on ``d`` makes ``B''(x1) = 0``, so the scale is linear near zero.
    (The biexponential alone is not odd about ``x1``; FlowKit/FlowUtils, like Moore &
    Parks' reference code, use the reflection, and so does this function.)

    ``logicle(x)`` is the root ``y`` of ``B(y) = x``. Solving it per event (FlowUtils uses
    Halley's method) is slow, so this function interpolates in a table instead:

    1. The table splits every binary octave ``[2**e, 2**(e+1))`` of ``|x|``, from the
       octave where ``y - x1`` is about ``2**-20`` up to at least ``2T``, into ``2**n``
       equal segments (n = 9 for float32, 11 for float64 input). The segment of a value
       is its float bit pattern shifted right (exponent and leading n mantissa bits), so
       no logarithm is evaluated. Smaller ``|x|``, where ``y`` is linear to ~1e-16, go to
       one extra segment starting at 0.
    2. At every segment start the exact ``y - x1`` is computed once (Newton's method on
       ``B(x1 + s) = p*expm1(b*s) - q*expm1(-d*s)``, started above the root where ``B``
       is convex, converged to rounding level) and stored with the chord slope to the
       next start. Segments have a fixed *relative* width, so the interpolation error is
       about ``2**(-2n) / (8 b)`` everywhere (for the usual M + A near 4.5, about 5e-8 for
       float32, the size of its rounding, and 3e-9 for float64).
    3. For data, ``y - x1 = offset + slope * (|x| - start)`` (the subtraction is exact),
       the sign of ``x`` is applied (reflection) and ``x1`` added. Slopes are nudged at
       build time so that, after rounding, every segment ends at or below the start of
       the next: the result is monotone non-decreasing, not just nearly so.
    4. Values with ``|x|`` beyond the table, infinities and NaN take the exact solver
       (never below the table's last value; among themselves monotone only to ~1 ulp).

    Tables are cached per parameter set and float type (built in 3-10 ms); data are
    processed in blocks of 65536 values so the temporaries stay in cache. On 1e6 values
    this is over 10 times faster than ``flowutils.transforms.logicle``.

    Unlike FlowUtils, which returns -1 for NaN and for tiny ``|x|`` when ``W = 0``
    (its iteration does not converge there), NaN stays NaN here and tiny values are exact.

    References
    ----------
    Parks DR, Roederer M, Moore WA. A new "Logicle" display method avoids deceptive
    effects of logarithmic scaling for low signals and compensated data. Cytometry A.
    2006;69(6):541-551.

    Moore WA, Parks DR. Update for the logicle data scale including operational code
    implementations. Cytometry A. 2012;81(4):273-277.

    Examples
    --------
    >>> y = logicle([0.0, 262144.0])
    >>> [round(float(v), 6) for v in y]
    [0.111111, 1.0]
    """
    return _logicle(x, T, W, M, A, _logicle_table)


def _logicle_once(x: ArrayLike, T: float, W: float, M: float, A: float) -> np.ndarray:
    """:func:`logicle` with a table built for this call and not cached: for parameters estimated
    for one sample (the gating's own W of each channel), which no later call repeats. The table
    (about 180 KB in float32) is freed with the call instead of staying among the cached ones
    for the rest of the process."""
    return _logicle(x, T, W, M, A, _logicle_table.__wrapped__)


def _logicle(x: ArrayLike, T: float, W: float, M: float, A: float,
             table_of: Callable[[float, float, float, float, str], _LogicleTable | None]) -> np.ndarray:
    """:func:`logicle` with its table from ``table_of(T, W, M, A, dtype_char)``."""
    t, w, m, a = _check_logicle_parameters(T, W, M, A)
    arr = _as_float_array(x)
    if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
        # a column block such as events[:, channels]: work on its C-ordered view, no copy
        return _logicle(arr.T, T, W, M, A, table_of).T
    dtype = arr.dtype
    out = np.empty(arr.shape, dtype=dtype)
    if arr.size == 0:
        return out
    table = table_of(t, w, m, a, dtype.char)
    if table is None:
        out[...] = _logicle_exact(arr.reshape(-1), _logicle_constants(t, w, m, a)).reshape(arr.shape)
        return out

    flat_x = arr.reshape(-1)  # a view for contiguous and 1-D strided input
    flat_out = out.reshape(-1)
    n = flat_x.size
    chunk = min(n, _CHUNK)
    ax = np.empty(chunk, dtype=dtype)
    row = np.empty(chunk, dtype=np.intp)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        size = stop - start
        xs = flat_x[start:stop]
        ys = flat_out[start:stop]
        if not _logicle_block(xs, ys, ax[:size], row[:size], table):
            # Rare: |x| >= table end (2T or more), infinities or NaN.
            off_table = ~(np.abs(xs) < table.x_high)
            k = _logicle_constants(t, w, m, a)
            ys[off_table] = _logicle_off_table(xs[off_table], table, k)
    return out


def logicle_inverse(
    y: ArrayLike,
    T: float = 262144.0,
    W: float = 0.5,
    M: float = 4.5,
    A: float = 0.0,
) -> np.ndarray:
    """Inverse Logicle transform: data value of a Logicle scale value.

    Matches FlowKit's ``LogicleTransform(...).inverse(y)`` to about 1e-11 relative.

    Parameters
    ----------
    y : array_like
        Logicle scale values (1 maps to T), any shape.
    T, W, M, A : float
        Logicle parameters; see `logicle` for their meaning and rules.

    Returns
    -------
    numpy.ndarray
        Data values, same shape as ``y``; float32 if ``y`` is float32, else float64.
        NaN stays NaN; values overflow to +-inf far above the scale.

    Raises
    ------
    TransformError
        If a parameter breaks a rule (see `logicle`).

    Notes
    -----
    The inverse is closed form: ``x = B(y)``, reflected as ``-B(2*x1 - y)`` for
    ``y < x1`` (see `logicle` for the constants). Written around the zero point as
    ``B(x1 + s) = p*expm1(b*s) - q*expm1(-d*s)`` with ``p = a*exp(b*x1)``,
    ``q = c*exp(-d*x1)`` (so that ``f = p - q``), both terms are >= 0 for ``s >= 0``:
    there is no cancellation near ``x1``, so Moore & Parks' Taylor series is not
    needed. Evaluated in float64 and cast back for float32 input.
    """
    t, w, m, a = _check_logicle_parameters(T, W, M, A)
    arr = _as_float_array(y)
    k = _logicle_constants(t, w, m, a)
    # np.array (not ufunc results) so that 0-d input stays an array for the in-place ops.
    s = np.array(arr, dtype=np.float64)
    s -= k.x1
    sign = np.sign(s)
    np.abs(s, out=s)
    with np.errstate(over="ignore"):  # far above the scale the data value is +-inf
        x = np.asarray(_biexponential_offset(s, k))
        x *= sign  # NaN stays NaN; s = 0 gives 0
        return x.astype(arr.dtype, copy=False)  # beyond float32's range: inf


# ---------------------------------------------------------------------------------------
# arcsinh
# ---------------------------------------------------------------------------------------


def arcsinh(x: ArrayLike, cofactor: float = 150.0) -> np.ndarray:
    """Arcsinh transform ``asinh(x / cofactor)``.

    Parameters
    ----------
    x : array_like
        Data values, any shape.
    cofactor : float, default 150.0
        Scale of the linear region around zero. Must be > 0.

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``; float32 if ``x`` is float32, else float64. NaN stays NaN.

    Raises
    ------
    TransformError
        If ``cofactor <= 0``.

    Notes
    -----
    ``asinh(x/c)`` is linear (``x/c``) for ``|x| << c`` and logarithmic
    (``sign(x) * ln(2|x|/c)``) for ``|x| >> c``; it is odd, so negative data are kept.
    """
    c = _check_cofactor(cofactor)
    arr = _as_float_array(x)
    out = np.array(arr)  # a copy, also an array for 0-d input
    out /= arr.dtype.type(c)  # keep float32 as float32
    np.arcsinh(out, out=out)
    return out


def arcsinh_inverse(y: ArrayLike, cofactor: float = 150.0) -> np.ndarray:
    """Inverse arcsinh transform ``cofactor * sinh(y)``.

    Parameters
    ----------
    y : array_like
        Transformed values, any shape.
    cofactor : float, default 150.0
        The cofactor used by `arcsinh`. Must be > 0.

    Returns
    -------
    numpy.ndarray
        Same shape as ``y``; float32 if ``y`` is float32, else float64. NaN stays NaN.

    Raises
    ------
    TransformError
        If ``cofactor <= 0``.

    Notes
    -----
    Direct evaluation of ``c * sinh(y)``, the exact inverse of ``asinh(x/c)``.
    """
    c = _check_cofactor(cofactor)
    arr = _as_float_array(y)
    out = np.array(arr)  # a copy, also an array for 0-d input
    with np.errstate(over="ignore"):  # |y| beyond ~710 (float64) is +-inf, as intended
        np.sinh(out, out=out)
        out *= arr.dtype.type(c)
    return out


# ---------------------------------------------------------------------------------------
# Data-driven W
# ---------------------------------------------------------------------------------------


def estimate_logicle_w(
    x: ArrayLike,
    T: float = 262144.0,
    M: float = 4.5,
    quantile: float = 0.05,
) -> float:
    """Estimate the Logicle width W from the negative data, as flowCore's estimateLogicle.

    Parameters
    ----------
    x : array_like
        Data values of one channel (any shape; flattened). NaN and infinities are ignored.
    T : float, default 262144.0
        Top of the data scale. Must be > 0.
    M : float, default 4.5
        Decades of the full scale. Must be > 0.
    quantile : float, default 0.05
        Quantile of the negative values used as the reference "most negative" value.
        Must be in [0, 1].

    Returns
    -------
    float
        ``W`` in [0, M/2] (valid for A = 0):

        * if there are finite negative values: ``r`` = their ``quantile`` quantile
          (linear interpolation, R's type 7), ``W = (M - log10(T/|r|)) / 2``, clipped to
          [0, M/2] (so W <= 0 gives 0);
        * if there are none: 0.5 (the usual default), clipped to at most M/2.

    Raises
    ------
    TransformError
        If ``T <= 0``, ``M <= 0`` or ``quantile`` is outside [0, 1].

    Notes
    -----
    Parks, Roederer & Moore (2006) choose ``W = (M - log10(T/|r|)) / 2`` so that a
    reference negative value ``r`` still falls inside the displayed range with a linear
    region wide enough to show the spread of compensated negative data. Using a low
    quantile of the negatives instead of the minimum keeps a few outliers from widening
    the linear region. This follows flowCore's ``estimateLogicle``, except that flowCore
    adds machine epsilon to ``r`` (irrelevant here) and returns ``W = 0`` when there are
    no negative values, where this function returns 0.5.
    """
    t = _as_real("T", T)
    m = _as_real("M", M)
    q = _as_real("quantile", quantile)
    if not t > 0:
        raise TransformError(f"estimate_logicle_w requires T > 0; got T={t!r}")
    if not m > 0:
        raise TransformError(f"estimate_logicle_w requires M > 0; got M={m!r}")
    if not 0 <= q <= 1:
        raise TransformError(
            f"estimate_logicle_w requires 0 <= quantile <= 1; got quantile={q!r}"
        )
    values = _as_float_array(x).reshape(-1)
    # np.compress: a boolean index is several times slower on a mask this mixed
    negatives = np.compress((values < 0) & np.isfinite(values), values)
    if negatives.size == 0:
        return min(0.5, m / 2)
    r = linear_quantile(negatives.astype(np.float64, copy=False), q)
    w = (m - math.log10(t / abs(r))) / 2.0
    return float(min(max(w, 0.0), m / 2))
