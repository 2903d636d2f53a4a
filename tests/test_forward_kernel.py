"""The forward kernel's arithmetic paths against independent references.

The kernel takes different paths by spectrum and tree shape (docs/performance.md,
"Latent-state fits"): real spectra take per-piece divided differences; complex
spectra take the real-form row sums of the pure-panel kernel where every
eigenvalue pair is separated at the piece's length, the stable divided differences
for pairs close at every length (repeated eigenvalues), and complex per-piece
products for pieces shorter than that (a one-day gap); nodes below a restart root
(a split tree) read one row of their transition matrix. Each is checked here on
a generator built to need it:

* log-likelihood against the scipy reference (unscaled products of
  ``scipy.linalg.expm``, one respondent at a time), 1e-10 relative;
* gradient (log-rates, emission table, initial weights) against Richardson
  differences, 1e-6 relative (``tests.test_forward._check_grad``);
* the split tree against the unsplit one: log-likelihood 1e-12 relative,
  gradient 1e-10 of its largest entry.
"""

import numpy as np
import pytest

from markov_migration.core import forward as F
from markov_migration.core import forward_kernel as FK
from markov_migration.core import phases as PH
from markov_migration.core.renewal import renewal_states, split_histories
from markov_migration.core.spectral import _MODE_COMPLEX, _MODE_REAL
from tests.test_forward import _check_grad, simulate_hidden

# two identical cycles 0 -> 1 -> 2 -> 0 and 3 -> 4 -> 5 -> 3, both leaving for the
# absorbing state 6: every complex pair of the spectrum is repeated
_CYCLES = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)]
_EXITS = [(k, 6) for k in range(6)]


def _generator(cycle_rates, exit_rate):
    frm, to = np.array(_CYCLES + _EXITS).T
    rates = np.r_[np.tile(cycle_rates, 2), np.full(6, exit_rate)]
    return PH.generator_from_rates(7, frm, to, rates), frm, to


def _records(Q, seed=11, exact_state=None):
    """States 0-2 and 6 recorded exactly (renewal points), 3-5 misclassified among themselves."""
    K = Q.shape[0]
    E = np.eye(K)
    E[3:6, 3:6] = 0.8 * np.eye(3) + 0.2 / 3
    pi = np.r_[np.full(6, 1 / 6), 0.0]
    rng = np.random.default_rng(seed)
    # a one-day gap (in years) among the waves: too short for the row sums
    waves = [0.0, 1 / 365.25, 0.7, 1.6, 2.9]
    ids, times, rec, obstype = simulate_hidden(
        rng, Q, pi, E, 80, waves, jitter=0.0, exact_state=exact_state
    )
    return ids, times, rec, E, pi, obstype


def _mode(Q, hist):
    spectra = FK._pieces(Q[None], hist.piece_q, hist.piece_t, *FK._tree(
        hist.node_parent, hist.node_piece, hist.node_type, hist.node_count, hist.piece_q.size
    )[3:6])[0]  # fmt: skip
    return spectra[0][0]


@pytest.mark.parametrize("spectrum", ["complex", "real"])
def test_repeated_spectrum_split_and_unsplit(spectrum):
    cycle = [0.9, 0.6, 0.3] if spectrum == "complex" else [0.5, 0.5, 0.5]
    Q, frm, to = _generator(cycle, 0.15)
    if spectrum == "real":  # a reversible cycle: real spectrum
        Q = Q + PH.generator_from_rates(7, to[:6], frm[:6], np.full(6, 0.5))
        frm, to = np.nonzero((Q != 0) & ~np.eye(7, dtype=bool))
    lam = np.linalg.eigvals(Q)
    assert (np.abs(lam.imag).max() > 0.1) == (spectrum == "complex")
    gaps = np.abs(lam[:, None] - lam[None, :]) + 9 * np.eye(7)
    assert gaps.min() < 1e-8  # repeated eigenvalues: close pairs at every length
    ids, times, rec, E, pi, _ = _records(Q)
    B = F.emission_table(E, [[k] for k in range(7)])
    h = F.aggregate_histories(ids, times, rec)
    assert _mode(Q, h) == (_MODE_COMPLEX if spectrum == "complex" else _MODE_REAL)
    hs = split_histories(h, renewal_states(B != 0))
    assert np.count_nonzero(hs.node_type[hs.node_parent < 0] == F.OBS_RESTART) > 0
    separated = gaps * h.piece_t.max() >= 0.01
    assert h.piece_t.min() * gaps[separated].min() < 0.01  # a piece too short for the sums

    ref = F.loglik_reference(Q, pi, B, ids, times, rec)
    ll, dQ, dB, dpi = F.loglik_and_grad(Q, pi, B, *h)
    assert ll == pytest.approx(ref, rel=1e-10)
    ll_s, dQ_s, dB_s, dpi_s = F.loglik_and_grad(Q, pi, B, *hs)
    assert ll_s == pytest.approx(ll, rel=1e-12)
    # the split assumes the structural zeros of B stay 0: their gradients differ
    scale = max(np.abs(dQ).max(), np.abs(dB[B > 0]).max(), np.abs(dpi).max())
    for a, b in ((dQ_s, dQ), (dB_s[B > 0], dB[B > 0]), (dpi_s, dpi)):
        assert np.abs(a - b).max() <= 1e-10 * scale
    _check_grad(Q, frm, to, pi, B, hs, False)


def test_exact_times_use_compact_slots():
    """Exact entry and exact transition times on some pieces only: the matrices of
    other pieces are not formed; values as the scipy reference and differences."""
    Q, frm, to = _generator([0.9, 0.6, 0.3], 0.15)
    ids, times, rec, E, pi, obstype = _records(Q, seed=4, exact_state=6)  # exact deaths
    # an exact move 0 -> 1 (or staying in 1) at some respondents' last record
    last = np.r_[ids[1:] != ids[:-1], True]
    before = np.r_[-1, rec[:-1]]
    move = last & (rec == 1) & ((before == 0) | (before == 1)) & (np.r_[-1, ids[:-1]] == ids)
    obstype[move & (np.arange(ids.size) % 2 == 0)] = F.OBS_TRANSITION
    assert {F.OBS_EXACT, F.OBS_TRANSITION} <= set(obstype)
    B = F.emission_table(E, [[k] for k in range(7)])
    h = F.aggregate_histories(ids, times, rec, obstype)
    tree = FK._tree(h.node_parent, h.node_piece, h.node_type, h.node_count, h.piece_q.size)
    assert h.piece_q.size < tree[5] < 3 * h.piece_q.size  # slots for some pieces only
    ref = F.loglik_reference(Q, pi, B, ids, times, rec, obstype)
    assert F.loglik(Q, pi, B, *h) == pytest.approx(ref, rel=1e-10)
    _check_grad(Q, frm, to, pi, B, h, False)
