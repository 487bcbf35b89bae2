"""Gaussian mixtures with full covariances, fitted by expectation-maximisation in numpy.

The lymphocyte gate fits a 3-component mixture to (FSC-A, SSC-A) and gates an ellipse of the
lymphocyte component (:func:`treganalysis.gating.geometry.ellipse`). This module does the fit
with numpy alone: scikit-learn's ``GaussianMixture`` computes the same model (it is the
reference the tests compare with) but importing it costs more than the whole gating job.

The algorithm follows scikit-learn's defaults (``covariance_type="full"``,
``init_params="kmeans"``, ``tol=1e-3``, ``reg_covar=1e-6``) step by step, so that both find the
same components on the same events; only the random numbers of the k-means++ seeding differ
(Python's ``random.Random`` here, a ``RandomState`` there: the few draws of a seeding do not
need ``numpy.random``, whose import adds about 2 MB to every gating job's memory). When both
seedings end in the same k-means partition the two fits agree to rounding error.

EM finds a local maximum of the likelihood, chosen by the seeding. On scatter data a
k-means start sometimes splits the (large) lymphocyte cluster in two and EM stays there,
with scikit-learn as here; ``n_init > 1`` keeps the best of several starts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._checks import check_integer
from .._threads import check_threads, together

__all__ = ["Mixture", "fit_gaussian_mixture", "predict_proba"]

_LOG_2PI = math.log(2.0 * math.pi)
# added to every component's total responsibility, as scikit-learn does, so that an empty
# component has a defined (if meaningless) mean instead of 0 / 0
_EMPTY = 10.0 * np.finfo(np.float64).eps
_KMEANS_MAX_ITER = 300  # scikit-learn's KMeans defaults
_KMEANS_TOL = 1e-4


@dataclass(frozen=True)
class Mixture:
    """A fitted Gaussian mixture with full covariance matrices.

    Attributes
    ----------
    weights : numpy.ndarray, shape (k,)
        Mixing proportions; they sum to 1.
    means : numpy.ndarray, shape (k, d)
        Component means.
    covariances : numpy.ndarray, shape (k, d, d)
        Component covariance matrices (``reg_covar`` included on the diagonal).
    log_likelihood : float
        Mean log-likelihood per event of the fitted events under these parameters (what
        scikit-learn's ``GaussianMixture.score`` returns).
    n_iter : int
        EM iterations run for the returned fit.
    converged : bool
        Whether the mean log-likelihood changed by less than ``tol`` before ``max_iter``.

    The arrays of a fit returned by :func:`fit_gaussian_mixture` are read-only.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    log_likelihood: float
    n_iter: int
    converged: bool

    @property
    def n_components(self) -> int:
        """Number of components ``k``."""
        return int(self.weights.shape[0])

    @property
    def n_features(self) -> int:
        """Number of dimensions ``d``."""
        return int(self.means.shape[1])


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------


def _events(x: ArrayLike, what: str) -> np.ndarray:
    """``x`` as a finite float64 array of shape (n, d); 1-D input is one column."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{what}: x must be a real numeric array; got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    elif arr.ndim != 2:
        raise ValueError(f"{what}: x must have shape (n,) or (n, d) (one row per event); got {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{what}: x has no columns; got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(arr.shape[0] - np.count_nonzero(finite))
        raise ValueError(f"{what}: x must be finite; {bad} of {arr.shape[0]} events have a NaN or infinite value")
    return arr


def _nonnegative(value: object, what: str) -> float:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"fit_gaussian_mixture: {what} must be a finite number >= 0; got {value!r}") from None
    if not (math.isfinite(result) and result >= 0.0):
        raise ValueError(f"fit_gaussian_mixture: {what} must be a finite number >= 0; got {value!r}")
    return result


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------


def fit_gaussian_mixture(
    x: ArrayLike,
    n_components: int = 3,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    threads: int = 1,
) -> Mixture:
    """Fit a full-covariance Gaussian mixture by expectation-maximisation.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
        The events, one row each (a 1-D array is one dimension). Computed in float64.
    n_components : int, default 3
        Number of components ``k``; at most the number of distinct events.
    seed : int, default 0
        Seed of the k-means++ seeding's generator (Python's ``random.Random``, a Mersenne
        Twister, of which only ``random()`` is drawn: its sequence for a seed is the one Python
        keeps from version to version): the same seed and events give the same fit.
    max_iter : int, default 100
        Most EM iterations per initialisation.
    tol : float, default 1e-3
        Convergence threshold on the change of the mean log-likelihood per event.
    reg_covar : float, default 1e-6
        Added to the diagonal of every covariance matrix (keeps it positive definite).
    n_init : int, default 1
        Initialisations (successive k-means++ seedings from the one generator); the fit with
        the highest mean log-likelihood is returned.
    threads : int, default 1
        Initialisations fitted at once. The seedings are drawn first, in order, so the fit is
        the same for any number.

    Returns
    -------
    Mixture

    Raises
    ------
    ValueError
        If ``x`` is not a finite numeric (n,) or (n, d) array, holds fewer (distinct) events
        than ``n_components``, a parameter is out of range, or a covariance matrix is not
        positive definite even with ``reg_covar`` (e.g. ``reg_covar=0`` and collinear events,
        or values so large that ``reg_covar`` is lost in rounding).

    Notes
    -----
    The events are first centred on their mean (the model is translation invariant; it keeps
    the distances below precise for events far from the origin) and held transposed, (d, n),
    so that every per-event operation runs along contiguous rows.

    Initialisation (scikit-learn's default): k-means with k-means++ seeding. The first centre
    is a uniformly drawn event; each further centre is the best of ``2 + floor(log k)``
    candidates drawn with probability proportional to the squared distance to the nearest
    centre so far (the candidate that lowers the summed squared distance most). Lloyd
    iterations follow until the labels repeat or the centres move (summed squared shift) by
    at most ``1e-4`` times the mean per-dimension variance of ``x``, at most 300 times; an
    empty cluster is moved to the event farthest from its centre. The k-means labels, as hard
    responsibilities, give the starting weights, means and covariances (an M-step).

    EM: the E-step computes each event's log-density under each component through the
    Cholesky factor ``L`` of the covariance (``Sigma = L L^T``, ``np.linalg.cholesky``):
    with ``P = L^-1`` (forward substitution, d x d), ``log N(x) = -(d log 2 pi +
    |P x - P mu|^2) / 2 - sum log diag L``; the whitening of all components is one
    ``(k d, d) @ (d, n)`` product. Responsibilities are ``r_ij = exp(a_ij - logsumexp_j
    a_ij)`` with ``a_ij = log w_j + log N_j(x_i)``, the log-sum-exp shifted by each event's
    maximum; its mean over the events is the mean log-likelihood. The M-step sets
    ``N_j = sum_i r_ij + 10 eps``, ``w_j = N_j / sum N``, ``mu_j = sum_i r_ij x_i / N_j`` and
    ``Sigma_j = sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T / N_j + reg_covar I``. Iterations stop
    when the mean log-likelihood (computed in the E-step, i.e. for the parameters before that
    iteration's M-step) changes by less than ``tol``; ``n_iter`` counts as scikit-learn's
    ``n_iter_``. ``log_likelihood`` is then evaluated for the returned parameters (what
    scikit-learn's ``score`` gives); with ``n_init > 1`` the fit with the highest one is kept.

    EM converges to a local maximum that depends on the start (see the module's docstring):
    ``n_init`` starts cost ``n_init`` fits. Memory: besides a copy of ``x``, a few ``(k, n)``
    and one ``(k d, n)`` float64 arrays.
    """
    what = "fit_gaussian_mixture"
    k = check_integer(n_components, "n_components", 1, what)
    max_iter = check_integer(max_iter, "max_iter", 1, what)
    n_init = check_integer(n_init, "n_init", 1, what)
    seed = check_integer(seed, "seed", 0, what)
    tol = _nonnegative(tol, "tol")
    reg_covar = _nonnegative(reg_covar, "reg_covar")
    threads = check_threads(threads, what)
    events = _events(x, what)
    n = events.shape[0]
    if n < k:
        raise ValueError(f"{what}: {n} event(s) cannot be fitted with {k} components (need at least {k})")
    # centred (the fit is translation invariant; distances keep their precision far from the
    # origin) and transposed (d, n): every per-event operation runs along contiguous rows
    offset = events.mean(axis=0)
    columns = np.ascontiguousarray((events - offset).T)
    with np.errstate(over="ignore"):  # 4 n sum |x|^2 bounds every squared distance and sums of them
        spread = float(np.sum(columns * columns)) * 4.0 * n
    if not math.isfinite(spread):
        raise ValueError(f"{what}: the events are too spread out for float64 arithmetic (up to "
                         f"{float(np.abs(columns).max()):.3g} from their mean); scale the events")
    rng = random.Random(seed)
    norms = np.einsum("ji,ji->i", columns, columns)
    # every start's seeding drawn first, in order (the generator's only use): each start's fit
    # then depends on its own centres alone and may run beside the others
    seedings = [_seeding(columns, norms, k, rng) for _ in range(n_init)]
    fits = together([functools.partial(_fit_once, columns, norms, centres, max_iter, tol, reg_covar)
                     for centres in seedings], threads)
    best: Mixture | None = None
    for fit in fits:
        if best is None or fit.log_likelihood > best.log_likelihood:
            best = fit
    assert best is not None
    best = dataclasses.replace(best, means=best.means + offset)
    for array in (best.weights, best.means, best.covariances):
        array.flags.writeable = False  # a frozen result
    return best


def predict_proba(mixture: Mixture, x: ArrayLike) -> np.ndarray:
    """Posterior probability of each component for each event.

    Parameters
    ----------
    mixture : Mixture
        As returned by :func:`fit_gaussian_mixture`.
    x : array_like, shape (n, d) or (n,)
        Events with as many dimensions as the mixture.

    Returns
    -------
    numpy.ndarray, shape (n, k)
        Rows sum to 1.

    Raises
    ------
    ValueError
        If ``x`` is not a finite numeric array with the mixture's number of dimensions, or a
        covariance of ``mixture`` is not positive definite.

    Notes
    -----
    Bayes' rule with the mixture's weights and component densities, computed in logs
    (log-sum-exp per event) as in the E-step of :func:`fit_gaussian_mixture`.
    """
    what = "predict_proba"
    events = _events(x, what)
    if events.shape[1] != mixture.n_features:
        raise ValueError(
            f"{what}: x has {events.shape[1]} column(s) but the mixture has {mixture.n_features} dimension(s)"
        )
    means = np.asarray(mixture.means, dtype=np.float64)
    whitening, half_log_det = _whitening(np.asarray(mixture.covariances, dtype=np.float64), what)
    with np.errstate(divide="ignore"):  # a weight of 0 is a component no event belongs to
        log_weights = np.log(np.asarray(mixture.weights, dtype=np.float64))
    offset = means.mean(axis=0)  # distances computed near the origin, as in the fit
    resp = _weighted_log_prob(np.ascontiguousarray((events - offset).T), means - offset, whitening, half_log_det,
                              log_weights)
    _normalise(resp)
    return np.ascontiguousarray(resp.T)


def _seeding(columns: np.ndarray, norms: np.ndarray, k: int, rng: random.Random) -> np.ndarray | ValueError:
    """A start's k-means++ centres, or the error of seeding it (raised when that start is fitted,
    so that the first failing start's error is the one raised, as one start after another)."""
    try:
        return _kmeans_plus_plus(columns, norms, k, rng)
    except ValueError as exc:
        return exc


def _fit_once(columns: np.ndarray, norms: np.ndarray, centres: np.ndarray | ValueError, max_iter: int, tol: float,
              reg_covar: float) -> Mixture:
    """One initialisation (k-means from its seeding) and its EM iterations on ``columns`` (d, n)."""
    what = "fit_gaussian_mixture"
    if isinstance(centres, ValueError):
        raise centres
    k = centres.shape[0]
    labels = _kmeans(columns, norms, centres)
    resp = (labels == np.arange(k)[:, np.newaxis]).astype(np.float64)  # (k, n), one-hot
    weights, means, covariances = _m_step(columns, resp, reg_covar)
    previous = -np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        whitening, half_log_det = _whitening(covariances, what)
        resp = _weighted_log_prob(columns, means, whitening, half_log_det, np.log(weights), out=resp)
        current = _normalise(resp)
        weights, means, covariances = _m_step(columns, resp, reg_covar)
        if abs(current - previous) < tol:
            converged = True
            break
        previous = current
    whitening, half_log_det = _whitening(covariances, what)
    log_prob = _weighted_log_prob(columns, means, whitening, half_log_det, np.log(weights), out=resp)
    log_likelihood = _normalise(log_prob)
    if not math.isfinite(log_likelihood):
        raise ValueError(f"{what}: the mean log-likelihood is {log_likelihood} (events too large or too close"
                         " together for float64); scale the events")
    return Mixture(weights=weights, means=means, covariances=covariances, log_likelihood=log_likelihood,
                   n_iter=n_iter, converged=converged)


def _whitening(covariances: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The inverse Cholesky factors ``P_j = L_j^-1`` stacked, shape (k d, d), and
    ``log det Sigma_j / 2 = sum log diag L_j``, shape (k,)."""
    k, d, _ = covariances.shape
    if not np.isfinite(covariances).all():
        raise ValueError(f"{what}: a covariance matrix is not finite (events too large for float64?); scale the events")
    try:
        chol = np.linalg.cholesky(covariances)  # (k, d, d), lower triangular
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{what}: a component's covariance matrix is not positive definite (its events lie on"
            " a point or a line, or are too large for reg_covar to matter); use fewer components,"
            " a larger reg_covar, or scale the events"
        ) from None
    diagonal = np.diagonal(chol, axis1=1, axis2=2)
    # P = L^-1 row by row (forward substitution on the identity, all components at once):
    # P[i] = (e_i - sum_{j<i} L[i, j] P[j]) / L[i, i]
    inverse = np.zeros_like(chol)
    for i in range(d):
        row = -np.einsum("kj,kjc->kc", chol[:, i, :i], inverse[:, :i, :])
        row[:, i] += 1.0
        inverse[:, i, :] = row / diagonal[:, i, np.newaxis]
    return inverse.reshape(k * d, d), np.log(diagonal).sum(axis=1)


def _weighted_log_prob(columns: np.ndarray, means: np.ndarray, whitening: np.ndarray, half_log_det: np.ndarray,
                       log_weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``log w_j + log N(x_i | mu_j, Sigma_j)``, shape (k, n)."""
    d, n = columns.shape
    k = means.shape[0]
    white = whitening @ columns  # (k d, n): rows j d .. j d + d - 1 are P_j x_i
    white -= (whitening.reshape(k, d, d) @ means[:, :, np.newaxis]).reshape(k * d, 1)  # P_j mu_j
    np.square(white, out=white)
    log_prob = white.reshape(k, d, n).sum(axis=1, out=out)  # squared Mahalanobis distances
    log_prob *= -0.5
    log_prob += (log_weights - half_log_det - 0.5 * d * _LOG_2PI)[:, np.newaxis]
    return log_prob


def _normalise(log_prob: np.ndarray) -> float:
    """Weighted log-densities (k, n) to responsibilities, in place; the mean log-likelihood."""
    top = log_prob.max(axis=0)
    log_prob -= top
    np.exp(log_prob, out=log_prob)
    total = log_prob.sum(axis=0)
    log_prob /= total
    np.log(total, out=total)
    total += top
    return float(np.mean(total))


def _m_step(columns: np.ndarray, resp: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances from responsibilities ``resp`` (k, n)."""
    d = columns.shape[0]
    k = resp.shape[0]
    nk = resp.sum(axis=1) + _EMPTY
    means = (resp @ columns.T) / nk[:, np.newaxis]
    covariances = np.empty((k, d, d))
    for j in range(k):
        centred = columns - means[j][:, np.newaxis]
        covariances[j] = (centred * resp[j]) @ centred.T / nk[j]
        covariances[j].flat[:: d + 1] += reg_covar
    return nk / nk.sum(), means, covariances


# ---------------------------------------------------------------------------------------
# k-means initialisation
# ---------------------------------------------------------------------------------------


def _kmeans(columns: np.ndarray, norms: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Lloyd iterations on ``columns`` (d, n) from seeded ``centres``; each event's cluster."""
    tolerance = _KMEANS_TOL * float(np.mean(np.var(columns, axis=1)))
    labels = _nearest(columns, centres)
    for _ in range(_KMEANS_MAX_ITER):
        new = _centres(columns, norms, labels, centres)
        new_labels = _nearest(columns, new)
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        if shift <= tolerance:
            break
    return labels


def _squared_distances(columns: np.ndarray, norms: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``|x_i - c_j|^2``, shape (k, n), clipped at 0 (the expansion can round below)."""
    distance = centres @ columns
    distance *= -2.0
    distance += norms
    distance += np.einsum("ij,ij->i", centres, centres)[:, np.newaxis]
    return np.maximum(distance, 0.0, out=distance)


def _kmeans_plus_plus(columns: np.ndarray, norms: np.ndarray, k: int, rng: random.Random) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn)."""
    d, n = columns.shape
    trials = 2 + int(math.log(k))
    centres = np.empty((k, d))
    # random() alone: the one draw whose sequence for a seed Python keeps across versions
    centres[0] = columns[:, min(int(rng.random() * n), n - 1)]
    closest = _squared_distances(columns, norms, centres[:1])[0]
    potential = float(closest.sum())
    for c in range(1, k):
        if not potential > 0.0:
            distinct = np.unique(columns, axis=1).shape[1]
            raise ValueError(
                f"fit_gaussian_mixture: x has {distinct} distinct event(s), fewer than the {k} components"
            )
        draws = np.array([rng.random() for _ in range(trials)]) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        trial = _squared_distances(columns, norms, columns[:, candidates].T)  # (trials, n)
        np.minimum(trial, closest, out=trial)
        pots = trial.sum(axis=1)
        best = int(np.argmin(pots))
        centres[c] = columns[:, candidates[best]]
        closest = trial[best]
        potential = float(pots[best])
    return centres


def _nearest(columns: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each event's nearest centre (the first on a tie).

    ``|c|^2 - 2 c.x`` orders the centres as the squared distance does (``|x|^2`` is common).
    """
    distance = centres @ columns
    distance *= -2.0
    distance += np.einsum("ij,ij->i", centres, centres)[:, np.newaxis]
    labels = np.zeros(columns.shape[1], dtype=np.intp)
    best = distance[0]
    for j in range(1, centres.shape[0]):
        labels[distance[j] < best] = j
        best = np.minimum(best, distance[j])
    return labels


def _centres(columns: np.ndarray, norms: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Mean of each cluster; an empty cluster moves to the event farthest from its centre
    (taken from its own cluster), as scikit-learn does."""
    k = previous.shape[0]
    members = (labels == np.arange(k)[:, np.newaxis]).astype(np.float64)  # (k, n)
    counts = members.sum(axis=1)
    sums = members @ columns.T
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        distance = np.take_along_axis(_squared_distances(columns, norms, previous), labels[np.newaxis], axis=0)[0]
        far = np.argsort(distance, kind="stable")[::-1]
        for cluster, event in zip(empty, far[counts[labels[far]] > 1][: empty.size]):
            donor = labels[event]
            sums[donor] -= columns[:, event]
            counts[donor] -= 1
            sums[cluster] = columns[:, event]
            counts[cluster] = 1
    return sums / np.maximum(counts, 1.0)[:, np.newaxis]
