"""The numpy Gaussian mixture of the lymphocyte gate (treganalysis.gating.mixture), against the
truth of simulated mixtures and against scikit-learn's ``GaussianMixture``, its reference.

scikit-learn draws its k-means++ seeds from another generator, so the two fits may start from
different k-means partitions; on the same partition they agree to rounding error, and from
nearby ones to well within sampling error. On scatter data a start sometimes ends in another
local maximum (both implementations do it); the samples compared with one start are ones where
both end in the same one, and ``n_init`` is compared where they do not.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from treganalysis import read_fcs
from treganalysis.gating.geometry import ellipse
from treganalysis.gating.mixture import Mixture, _kmeans_plus_plus, fit_gaussian_mixture, predict_proba
from treganalysis.gating.strategy import _lymphocyte_component
from treganalysis.qc import _spaced
from treganalysis.simulate import CLASSES, SampleSpec, _write_sample, load_config, simulate_events

# A well-separated 2-D mixture: different weights, orientations and spreads (scatter-like scale).
WEIGHTS = np.array([0.6, 0.3, 0.1])
MEANS = np.array([[0.20, 0.10], [0.50, 0.20], [0.45, 0.60]])
COVARIANCES = np.array([
    [[0.0016, 0.0006], [0.0006, 0.0009]],  # sd 0.04, 0.03, correlation +0.5
    [[0.0025, -0.0010], [-0.0010, 0.0016]],  # sd 0.05, 0.04, correlation -0.5
    [[0.0049, 0.0], [0.0, 0.0064]],  # sd 0.07, 0.08
])
LYMPHOCYTE_CLASSES = ("b_cell", "nk", "cd8_t", "dn_t", "treg", "cd25neg_foxp3pos", "activated_tcon", "resting_tcon")
GATE_QUANTILE = 0.95
DISTANCE_SQUARE = -2.0 * math.log(1.0 - GATE_QUANTILE)  # chi-square(2) quantile


def simulate_mixture(n: int, seed: int, weights=WEIGHTS, means=MEANS, covariances=COVARIANCES,
                     labels: bool = False):
    """``n`` events of a Gaussian mixture, in random order (and each one's component)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, weights)
    x = np.concatenate([rng.multivariate_normal(m, c, size) for m, c, size in zip(means, covariances, counts)])
    order = rng.permutation(n)
    return (x[order], np.repeat(np.arange(len(weights)), counts)[order]) if labels else x[order]


def sklearn_fit(x: np.ndarray, **kwargs) -> GaussianMixture:
    """The reference: what ``_Engine.lymphocytes`` has fitted."""
    return GaussianMixture(kwargs.pop("n_components", 3), covariance_type="full", random_state=0, **kwargs).fit(x)


def matching(means_a: np.ndarray, means_b: np.ndarray) -> np.ndarray:
    """The permutation ``p`` of b's components that puts ``means_b[p]`` nearest ``means_a``."""
    k = len(means_a)
    best = min(itertools.permutations(range(k)),
               key=lambda p: float(np.linalg.norm(means_a - means_b[list(p)], axis=1).sum()))
    return np.array(best)


def standard_errors(n: int, weights: np.ndarray, covariances: np.ndarray):
    """Sampling standard errors of weights, means and covariance entries (Gaussian, per component)."""
    size = n * weights
    se_weights = np.sqrt(weights * (1 - weights) / n)
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    se_means = np.sqrt(variances / size[:, None])
    se_covariances = np.sqrt((variances[:, :, None] * variances[:, None, :] + covariances ** 2) / size[:, None, None])
    return se_weights, se_means, se_covariances


# -- against the truth and scikit-learn on simulated mixtures ------------------------------------------


@pytest.mark.parametrize("n, seed", [(5_000, 1), (20_000, 2), (20_000, 3)])
def test_recovers_the_truth_within_sampling_error(n: int, seed: int) -> None:
    x = simulate_mixture(n, seed)
    fit = fit_gaussian_mixture(x)
    assert fit.converged
    p = matching(MEANS, fit.means)
    se_w, se_m, se_c = standard_errors(n, WEIGHTS, COVARIANCES)
    assert np.all(np.abs(fit.weights[p] - WEIGHTS) < 5 * se_w)
    assert np.all(np.abs(fit.means[p] - MEANS) < 5 * se_m)
    assert np.all(np.abs(fit.covariances[p] - COVARIANCES) < 5 * se_c)
    assert fit.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert fit.weights.shape == (3,) and fit.means.shape == (3, 2) and fit.covariances.shape == (3, 2, 2)


@pytest.mark.parametrize("n, seed", [(5_000, 1), (20_000, 2), (20_000, 3), (2_000, 4)])
def test_matches_scikit_learn_on_a_separated_mixture(n: int, seed: int) -> None:
    """Same components as scikit-learn's fit to a small fraction of a standard error, and at
    least its mean log-likelihood (less 1e-3, its convergence tolerance)."""
    x = simulate_mixture(n, seed)
    fit = fit_gaussian_mixture(x)
    ref = sklearn_fit(x)
    p = matching(ref.means_, fit.means)
    se_w, se_m, se_c = standard_errors(n, WEIGHTS, COVARIANCES)
    q = matching(ref.means_, MEANS)  # the truth's standard errors in the reference's order
    assert np.all(np.abs(fit.weights[p] - ref.weights_) < 0.05 * se_w[q])
    assert np.all(np.abs(fit.means[p] - ref.means_) < 0.05 * se_m[q])
    assert np.all(np.abs(fit.covariances[p] - ref.covariances_) < 0.05 * se_c[q])
    assert fit.log_likelihood >= ref.score(x) - 1e-3
    # the same stopping rule: the same iteration count from the same partition
    assert abs(fit.n_iter - ref.n_iter_) <= 2


def test_log_likelihood_is_the_mean_log_density_of_the_returned_fit() -> None:
    x = simulate_mixture(3_000, 5)
    fit = fit_gaussian_mixture(x)
    density = sum(w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(fit.weights, fit.means, fit.covariances))
    assert fit.log_likelihood == pytest.approx(float(np.mean(np.log(density))), abs=1e-10)


def test_predict_proba_equals_scikit_learn_for_the_same_parameters() -> None:
    """The E-step alone: scikit-learn's posteriors for its own parameters."""
    x = simulate_mixture(4_000, 6)
    ref = sklearn_fit(x)
    mixture = Mixture(ref.weights_, ref.means_, ref.covariances_, ref.score(x), ref.n_iter_, ref.converged_)
    proba = predict_proba(mixture, x)
    assert proba.shape == (4_000, 3)
    np.testing.assert_allclose(proba, ref.predict_proba(x), rtol=0, atol=1e-10)


def test_predict_proba_rows_are_probabilities() -> None:
    x, truth = simulate_mixture(5_000, 7, labels=True)
    fit = fit_gaussian_mixture(x)
    far = np.array([[10.0, -10.0], [1e3, 1e3]])  # far from every component: still a distribution
    proba = predict_proba(fit, np.vstack([x, far]))
    assert proba.shape == (5_002, 3)
    assert np.all(proba >= 0) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the events drawn from a component are claimed by it (fit.means[p[t]] is true component t)
    p = matching(MEANS, fit.means)
    assert np.mean(np.argmax(proba[:5_000], axis=1) == p[truth]) >= 0.99


def test_one_dimension() -> None:
    """(n,) and (n, 1) give the same fit, which matches the truth and scikit-learn."""
    weights, means, variances = np.array([0.7, 0.3]), np.array([[0.0], [5.0]]), np.array([[[1.0]], [[0.25]]])
    x = simulate_mixture(10_000, 8, weights, means, variances)
    fit = fit_gaussian_mixture(x[:, 0], n_components=2)
    assert fit.means.shape == (2, 1) and fit.covariances.shape == (2, 1, 1)
    same = fit_gaussian_mixture(x, n_components=2)
    np.testing.assert_array_equal(fit.means, same.means)
    np.testing.assert_array_equal(fit.covariances, same.covariances)
    p = matching(means, fit.means)
    se_w, se_m, se_c = standard_errors(10_000, weights, variances)
    assert np.all(np.abs(fit.weights[p] - weights) < 5 * se_w)
    assert np.all(np.abs(fit.means[p] - means) < 5 * se_m)
    assert np.all(np.abs(fit.covariances[p] - variances) < 5 * se_c)
    ref = sklearn_fit(x, n_components=2)
    q = matching(ref.means_, fit.means)
    np.testing.assert_allclose(fit.means[q], ref.means_, atol=1e-4)
    np.testing.assert_allclose(fit.covariances[q], ref.covariances_, rtol=1e-3)
    assert fit.log_likelihood >= ref.score(x) - 1e-3
    proba = predict_proba(fit, x[:, 0])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_three_dimensions_match_scikit_learn() -> None:
    """Both fitted to convergence (a tolerance far below the default's): from different
    k-means++ draws they reach the same maximum."""
    rng = np.random.default_rng(9)
    means = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
    covariances = []
    for _ in range(3):
        a = rng.normal(size=(3, 3))
        covariances.append(a @ a.T / 3 + 0.2 * np.eye(3))
    x = simulate_mixture(8_000, 10, np.array([0.5, 0.3, 0.2]), means, np.array(covariances))
    fit = fit_gaussian_mixture(x, tol=1e-9, max_iter=1000)
    ref = sklearn_fit(x, tol=1e-9, max_iter=1000)
    p = matching(ref.means_, fit.means)
    np.testing.assert_allclose(fit.means[p], ref.means_, atol=1e-5)
    np.testing.assert_allclose(fit.covariances[p], ref.covariances_, atol=1e-5)
    np.testing.assert_allclose(fit.weights[p], ref.weights_, atol=1e-5)
    assert fit.log_likelihood >= ref.score(x) - 1e-3


def test_far_from_the_origin() -> None:
    """Events centred far from 0 (raw scatter units and beyond) fit as well as near it."""
    x = simulate_mixture(5_000, 11)
    near = fit_gaussian_mixture(x)
    far = fit_gaussian_mixture(x * 1e3 + 1e7, reg_covar=1e-6 * 1e6)  # the same regularisation, scaled
    np.testing.assert_allclose(far.means, near.means * 1e3 + 1e7, rtol=0, atol=1e-6)
    np.testing.assert_allclose(far.covariances, near.covariances * 1e6, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(far.weights, near.weights, rtol=0, atol=1e-8)


# -- realistic scatter: the lymphocyte gate ----------------------------------------------------------


@pytest.fixture(scope="module")
def scatter(tmp_path_factory) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """Per simulation seed: (FSC-A, SSC-A) / $PnR of a simulated sample read back from its FCS
    file, as ``_Engine.lymphocytes`` takes them, on the events its parent gate (singlets) would
    leave (debris and doublets removed by the simulator's truth); and which are lymphocytes."""
    folder = tmp_path_factory.mktemp("scatter")
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(seed: int) -> tuple[np.ndarray, np.ndarray]:
        if seed not in cache:
            cfg = load_config()
            rng = np.random.default_rng(seed)
            sim = simulate_events(SampleSpec(n_events=50_000, cd4=dict(cfg["cd4"]["patient"])), cfg, rng)
            path = Path(folder) / f"scatter{seed}.fcs"
            _write_sample(path, sim.events, cfg, rng, path.stem, 0)
            sample = read_fcs(path)
            fsc, ssc = sample.index("FSC-A"), sample.index("SSC-A")
            top = np.array([sample.ranges[fsc], sample.ranges[ssc]])
            parent = ~np.isin(sim.labels, [CLASSES.index("debris"), CLASSES.index("doublet")])
            xy = sample.events[np.ix_(np.flatnonzero(parent), [fsc, ssc])] / top
            lymphocyte = np.isin(sim.labels[parent], [CLASSES.index(c) for c in LYMPHOCYTE_CLASSES])
            cache[seed] = xy, lymphocyte
        return cache[seed]

    return get


def _subsample(xy: np.ndarray, size: int = 20_000) -> np.ndarray:
    """The strategy's subsample of at most 20,000 events (evenly spaced, as ``qc._spaced``)."""
    spaced = _spaced(len(xy), size)
    return xy if spaced is None else xy[spaced]


@pytest.mark.parametrize("seed, n_init", [(0, 1), (2, 1), (5, 1), (1, 5), (4, 5)])
def test_lymphocyte_gate_matches_scikit_learn(seed: int, n_init: int, scatter) -> None:
    """The component ``_lymphocyte_component`` picks, and the events its ellipse gates, are
    those of scikit-learn's fit; ``n_init=5`` where one start ends in different maxima."""
    xy, lymphocyte = scatter(seed)
    fit_on = _subsample(xy)
    fit = fit_gaussian_mixture(fit_on, n_init=n_init)
    ref = sklearn_fit(fit_on, n_init=n_init)
    i = _lymphocyte_component(fit.means, fit.weights, "auto")
    j = _lymphocyte_component(ref.means_, ref.weights_, "auto")
    np.testing.assert_allclose(fit.means[i], ref.means_[j], rtol=0, atol=1e-3)  # lymphocyte sd ~0.02-0.03
    np.testing.assert_allclose(fit.covariances[i], ref.covariances_[j], rtol=0,
                               atol=0.02 * np.abs(ref.covariances_[j]).max())
    assert fit.weights[i] == pytest.approx(ref.weights_[j], abs=0.005)
    assert fit.log_likelihood >= ref.score(fit_on) - 1e-3
    ours = ellipse(xy, fit.means[i], fit.covariances[i], DISTANCE_SQUARE)
    theirs = ellipse(xy, ref.means_[j], ref.covariances_[j], DISTANCE_SQUARE)
    assert np.mean(ours == theirs) >= 0.99
    # and it is the lymphocytes: centred on the simulator's lymphocyte scatter, most of them gated
    cfg = load_config()
    fsc_mean, _, ssc_mean, _ = cfg["scatter"]["lymphocyte"]
    np.testing.assert_allclose(fit.means[i], np.array([fsc_mean, ssc_mean]) / cfg["range"], atol=0.02)
    assert ours[lymphocyte].mean() >= 0.9


def test_more_starts_never_do_worse(scatter) -> None:
    """``n_init`` starts from the same generator: its first start is the single-start fit."""
    xy, _ = scatter(4)
    fit_on = _subsample(xy)
    one = fit_gaussian_mixture(fit_on, n_init=1)
    five = fit_gaussian_mixture(fit_on, n_init=5)
    assert five.log_likelihood >= one.log_likelihood


# -- determinism -------------------------------------------------------------------------------------


class _OnlyRandom:
    """A generator that offers ``random()`` alone, the one method whose sequence for a seed
    Python keeps from version to version."""

    def __init__(self, seed: int) -> None:
        self._generator = random.Random(seed)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self._generator.random()


def test_seeding_draws_only_random_and_starts_at_the_first_draw() -> None:
    """The first centre is event floor(u n) of the first draw u; each further centre takes
    2 + floor(log k) draws (its candidates): seedings stay the same across Python versions."""
    x = simulate_mixture(1_000, 11)
    columns = np.ascontiguousarray((x - x.mean(axis=0)).T)
    norms = np.einsum("ji,ji->i", columns, columns)
    rng = _OnlyRandom(5)
    centres = _kmeans_plus_plus(columns, norms, 3, rng)
    assert rng.draws == 1 + 2 * (2 + int(math.log(3)))
    np.testing.assert_array_equal(centres[0], columns[:, int(random.Random(5).random() * 1_000)])
    # every centre is an event
    assert all(np.any(np.all(columns.T == c, axis=1)) for c in centres)


def test_deterministic_for_a_seed() -> None:
    x = simulate_mixture(5_000, 12)
    a = fit_gaussian_mixture(x, seed=3, n_init=2)
    b = fit_gaussian_mixture(x.copy(), seed=3, n_init=2)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.log_likelihood, a.n_iter, a.converged) == (b.log_likelihood, b.n_iter, b.converged)


@pytest.mark.parametrize("n_init", [1, 3, 5])
def test_the_same_fit_with_starts_on_two_threads(n_init) -> None:
    """The seedings are drawn in order before the starts run, so threads change nothing."""
    x = simulate_mixture(5_000, 17)
    one = fit_gaussian_mixture(x, seed=4, n_init=n_init)
    two = fit_gaussian_mixture(x, seed=4, n_init=n_init, threads=2)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert (one.log_likelihood, one.n_iter, one.converged) == (two.log_likelihood, two.n_iter, two.converged)


def test_a_failing_start_raises_the_same_error_on_two_threads() -> None:
    two_points = np.array([[0.0, 0.0]] * 50 + [[1.0, 1.0]] * 50)
    t = np.random.default_rng(16).normal(size=600)
    line = np.column_stack([t, t])
    for x, kwargs, message in ((two_points, {}, r"2 distinct event\(s\), fewer than the 3 components"),
                               (line, {"reg_covar": 0.0}, "not positive definite")):
        for threads in (1, 2):
            with pytest.raises(ValueError, match=message):
                fit_gaussian_mixture(x, n_init=3, threads=threads, **kwargs)


def test_input_is_not_modified_and_float32_is_widened() -> None:
    x = simulate_mixture(3_000, 13)
    before = x.copy()
    fit64 = fit_gaussian_mixture(x.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(x, before)
    fit32 = fit_gaussian_mixture(x.astype(np.float32))
    assert fit32.means.dtype == np.float64
    np.testing.assert_array_equal(fit32.means, fit64.means)
    np.testing.assert_array_equal(fit32.covariances, fit64.covariances)
    with pytest.raises(ValueError):
        fit32.means[0, 0] = 1.0  # a frozen result has read-only arrays


def test_stops_at_max_iter_unconverged() -> None:
    x = simulate_mixture(3_000, 14)
    fit = fit_gaussian_mixture(x, max_iter=1, tol=0.0)
    assert fit.n_iter == 1 and not fit.converged
    assert fit_gaussian_mixture(x).converged


# -- validation --------------------------------------------------------------------------------------

GOOD = simulate_mixture(200, 15)


@pytest.mark.parametrize("x, message", [
    (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 3.0], [4.0, 5.0]]), r"finite; 1 of 4 events"),
    (np.array([[0.0, 1.0], [np.inf, 1.0], [2.0, 3.0], [4.0, 5.0]]), r"finite"),
    (np.zeros((4, 2, 2)), r"shape \(n,\) or \(n, d\)"),
    (np.zeros((5, 0)), r"no columns"),
    (np.array([["a", "b"]] * 5), r"real numeric"),
    (np.ones((5, 2), dtype=bool), r"real numeric"),
    (np.zeros((2, 2)), r"2 event\(s\) cannot be fitted with 3 components"),
    (np.zeros((0, 2)), r"0 event\(s\)"),
    (np.array([[0.0, 0.0]] * 50 + [[1.0, 1.0]] * 50), r"2 distinct event\(s\), fewer than the 3 components"),
])
def test_refuses_bad_events(x, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_gaussian_mixture(x)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_components": 0}, r"n_components must be an integer >= 1; got 0"),
    ({"n_components": 2.5}, r"n_components must be an integer"),
    ({"n_components": True}, r"n_components must be an integer"),
    ({"max_iter": 0}, r"max_iter must be an integer >= 1"),
    ({"n_init": 0}, r"n_init must be an integer >= 1"),
    ({"seed": -1}, r"seed must be an integer >= 0"),
    ({"seed": None}, r"seed must be an integer"),
    ({"tol": -1e-3}, r"tol must be a finite number >= 0"),
    ({"tol": float("nan")}, r"tol must be a finite number >= 0"),
    ({"reg_covar": -1.0}, r"reg_covar must be a finite number >= 0"),
    ({"reg_covar": "x"}, r"reg_covar must be a finite number >= 0"),
    ({"threads": 0}, r"^fit_gaussian_mixture: threads must be an integer >= 1; got 0$"),
])
def test_refuses_bad_parameters(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_gaussian_mixture(GOOD, **kwargs)


def test_singular_covariance_is_refused_without_regularisation() -> None:
    """Events on a line: reg_covar (the default) makes it fit; without it there is no density."""
    t = np.random.default_rng(16).normal(size=600)
    line = np.column_stack([t, t])
    assert np.all(np.isfinite(fit_gaussian_mixture(line).covariances))
    with pytest.raises(ValueError, match="not positive definite"):
        fit_gaussian_mixture(line, reg_covar=0.0)


def test_events_too_large_for_float64_are_refused() -> None:
    with pytest.raises(ValueError, match="scale the events"):
        fit_gaussian_mixture(GOOD * 1e200)


def test_predict_proba_refuses_other_dimensions() -> None:
    fit = fit_gaussian_mixture(GOOD)
    with pytest.raises(ValueError, match="x has 3 column"):
        predict_proba(fit, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        predict_proba(fit, np.array([[np.nan, 0.0]]))
