"""Properties of the array quantities of ``core.quantities`` against independent references.

References: :func:`scipy.linalg.expm` (P(t), the semigroup property, the
probability of never leaving a state), matrix powers and series sums for
discrete time. Tolerance 1e-10 unless stated (measured around 1e-14).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from markov_migration.core import quantities as cq

TOL = 1e-10


def random_generators(rng, n, k, absorbing=()):
    """``n`` random generators on ``k`` states, rates log-uniform in [0.01, 3] per time unit."""
    q = np.exp(rng.uniform(np.log(0.01), np.log(3.0), size=(n, k, k)))
    q[:, np.eye(k, dtype=bool)] = 0.0
    q[:, list(absorbing), :] = 0.0
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


def defective_generators():
    """Generators with a non-diagonalisable or ill-conditioned spectrum (the Pade fallback)."""
    # triangular with equal diagonals: a Jordan block of size 3
    jordan = np.array([[-0.5, 0.5, 0.0], [0.0, -0.5, 0.5], [0.0, 0.0, 0.0]])
    # nearly equal rates out of two states
    near = np.array([[-0.3, 0.3, 0.0], [0.0, -0.3 - 1e-9, 0.3 + 1e-9], [0.0, 0.0, 0.0]])
    return np.stack([jordan, near])


TIMES = np.array([0.0, 0.01, 0.5, 1.0, 3.7, 20.0])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_pmatrix_rows_sum_to_one_and_match_scipy(k):
    rng = np.random.default_rng(k)
    q = np.concatenate([random_generators(rng, 8, k), random_generators(rng, 4, k, [k - 1])])
    P = cq.pmatrix(q, TIMES)
    assert P.shape == (q.shape[0], TIMES.size, k, k)
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, rtol=0, atol=TOL)
    assert np.all(P > -TOL)
    for n in range(q.shape[0]):
        for j, t in enumerate(TIMES):
            np.testing.assert_allclose(P[n, j], scipy.linalg.expm(q[n] * t), rtol=0, atol=TOL)


def test_pmatrix_fallback_matches_scipy():
    q = defective_generators()
    P = cq.pmatrix(q, TIMES)
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, rtol=0, atol=TOL)
    for n in range(q.shape[0]):
        for j, t in enumerate(TIMES):
            np.testing.assert_allclose(P[n, j], scipy.linalg.expm(q[n] * t), rtol=0, atol=TOL)


@pytest.mark.parametrize("s, t", [(0.3, 0.7), (1.0, 2.5), (4.0, 11.0)])
def test_pmatrix_semigroup(s, t):
    rng = np.random.default_rng(7)
    q = random_generators(rng, 10, 4)
    ps, pt, pst = (cq.pmatrix(q, x) for x in (s, t, s + t))
    np.testing.assert_allclose(ps @ pt, pst, rtol=0, atol=TOL)
    qd = defective_generators()
    ps, pt, pst = (cq.pmatrix(qd, x) for x in (s, t, s + t))
    np.testing.assert_allclose(ps @ pt, pst, rtol=0, atol=TOL)


def test_pmatrix_rejects_bad_input_and_gives_nan_for_non_finite_q():
    with pytest.raises(ValueError, match="t must be finite"):
        cq.pmatrix(np.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="shape"):
        cq.pmatrix(np.zeros((2, 3)), 1.0)
    q = random_generators(np.random.default_rng(0), 2, 3)
    q[1, 0, 1] = np.nan
    P = cq.pmatrix(q, 1.0)
    assert np.all(np.isfinite(P[0])) and np.all(np.isnan(P[1]))


def test_leave_is_one_minus_staying_without_return():
    # never leaving r within t: P(t)[r, r] of the chain in which every other state absorbs
    rng = np.random.default_rng(3)
    q = random_generators(rng, 6, 4, [3])
    t = 1.7
    got = cq.leave(q, t)
    for n in range(q.shape[0]):
        for r in range(4):
            q_stop = np.where(np.arange(4)[:, None] == r, q[n], 0.0)
            stay = scipy.linalg.expm(q_stop * t)[r, r]
            assert got[n, r] == pytest.approx(1.0 - stay, abs=TOL)
    assert np.all(got[:, 3] == 0.0)  # absorbing states are never left


def test_totlos_sums_to_horizon_and_is_the_integral_of_pmatrix():
    rng = np.random.default_rng(4)
    q = random_generators(rng, 3, 3)
    start = np.array([0.2, 0.5, 0.3])
    horizon = 6.0
    got = cq.totlos(q, horizon, start)
    np.testing.assert_allclose(got.sum(axis=-1), horizon, rtol=1e-12)
    # Simpson's rule on a fine grid of scipy's P(t): error O(h^4), below 1e-11 here
    grid = np.linspace(0.0, horizon, 2001)
    P = np.stack([[scipy.linalg.expm(qn * u) for u in grid] for qn in q])
    ref = scipy.integrate.simpson(np.einsum("k,ntkj->ntj", start, P), x=grid, axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_discrete_quantities_against_series():
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(cq.pmatrix_discrete(p, 3), p @ p @ p, rtol=0, atol=1e-15)
    # geometric series of stays: sum_n n (1 - p_rr) p_rr^(n-1) = 1 / (1 - p_rr)
    n = np.arange(1, 2000)
    for r in (0, 1):
        ref = np.sum(n * (1 - p[r, r]) * p[r, r] ** (n - 1))
        assert cq.sojourn_discrete(p)[r] == pytest.approx(ref, rel=TOL)
    assert np.isinf(cq.sojourn_discrete(p)[2])
    np.testing.assert_allclose(cq.pnext_discrete(p)[:2].sum(axis=-1), 1.0, rtol=0, atol=TOL)
    np.testing.assert_allclose(cq.leave_discrete(p, 4), 1.0 - np.diag(p) ** 4, rtol=0, atol=0)
    start = np.array([1.0, 0.0, 0.0])
    los = cq.totlos_discrete(p, 5, start)
    ref = sum(start @ np.linalg.matrix_power(p, s) for s in range(5))
    np.testing.assert_allclose(los, ref, rtol=0, atol=1e-14)
    # expected steps to absorption from 0 and 1: sum over n of P(not yet absorbed at n)
    finite = cq.passage_states(p > 0, [2])
    got = cq.passage_discrete(p, [2], finite)
    ref = [sum(np.linalg.matrix_power(p, s)[r, :2].sum() for s in range(3000)) for r in (0, 1)]
    np.testing.assert_allclose(got[:2], ref, rtol=TOL)
    assert got[2] == 0.0
