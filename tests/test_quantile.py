"""treganalysis._quantile: np.quantile's linear quantile from one partition, number for number."""

from __future__ import annotations

import numpy as np
import pytest

from treganalysis._quantile import linear_quantile


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_linear_quantile_is_np_quantile(dtype):
    rng = np.random.default_rng(5)
    for i in range(400):
        n = int(rng.integers(1, 300))
        values = rng.normal(-100, 50, n)
        if i % 3 == 0:
            values = np.round(values / 10)  # ties
        values = values.astype(dtype)
        for q in (0.0, 0.05, 0.25, 0.5, 0.95, 1.0, float(rng.random())):
            assert linear_quantile(values.copy(), q) == float(np.quantile(values, q)), (n, q)


def test_linear_quantile_leaves_the_input_alone_and_refuses_empty():
    values = np.array([3.0, 1.0, 2.0])
    assert linear_quantile(values, 0.5) == 2.0 and values.tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="empty"):
        linear_quantile(np.array([]), 0.5)
    for q in (-0.1, 1.5, float("nan")):  # np.partition would take a negative position
        with pytest.raises(ValueError, match="quantile"):
            linear_quantile(values, q)
