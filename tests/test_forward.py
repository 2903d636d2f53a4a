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
  misclassification with initprobs, phase.states.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from markov_migration.core import forward as F
from markov_migration.core import likelihood as L
from markov_migration.core import phases as PH

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
Q4 = PH.generator_from_rates(4, FROM, TO, RATES)
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
    assert h.node_count.sum() == np.unique(ids).size
    assert h.n_histories < np.unique(ids).size  # aggregation did something
    assert h.node_parent.size < ids.size  # and prefixes are shared
    # the same data as pure-panel rows: one row per consecutive pair, count 1
    pair = np.flatnonzero(ids[1:] == ids[:-1])
    gaps, piece = np.unique(times[pair + 1] - times[pair], return_inverse=True)
    n = pair.size
    panel = (np.zeros(gaps.size, np.int64), gaps, np.arange(n + 1), piece)
    panel += (rec[pair], rec[pair + 1], np.ones(n))
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
    assert h.n_histories < np.unique(ids).size
    ref = F.loglik_reference(Q4, pi, B, ids, times, codes, obstype, condition_first=cond)
    assert np.isfinite(ref)
    assert F.loglik(Q4, pi, B, *h, condition_first=cond) == pytest.approx(ref, rel=1e-10)


# --------------------------------------------------------------------------
# gradient against finite differences
# --------------------------------------------------------------------------


def _check_grad(Q, allowed_from, allowed_to, pi, B, hist, cond):
    """Analytic gradient vs Richardson differences in log-rates, B and pi."""
    K = Q.shape[0]
    rates = Q[allowed_from, allowed_to]
    ll, dQ, dB, dpi = F.loglik_and_grad(Q, pi, B, *hist, condition_first=cond)
    assert np.isfinite(ll)

    def f_rates(x):
        Qx = PH.generator_from_rates(K, allowed_from, allowed_to, np.exp(x))
        return F.loglik(Qx, pi, B, *hist, condition_first=cond)

    g = PH.log_rate_grad(Q, dQ, allowed_from, allowed_to)
    assert_rel(g, richardson_grad(f_rates, np.log(rates)), 1e-6)
    # B and pi entries as free variables (those that are non-zero: a zero
    # emission of an observed code can make a history impossible)
    used = np.unique(hist.node_code)
    mask = B[used] > 0

    def f_b(x):
        Bx = B.copy()
        sub = Bx[used]
        sub[mask] = x
        Bx[used] = sub
        return F.loglik(Q, pi, Bx, *hist, condition_first=cond)

    x0 = B[used][mask]
    assert_rel(dB[used][mask], richardson_grad(f_b, x0, h=1e-5), 1e-6)
    assert np.all(dB[np.setdiff1d(np.arange(B.shape[0]), used)] == 0)
    pos = pi > 0

    def f_pi(x):
        p = pi.copy()
        p[pos] = x
        return F.loglik(Q, p, B, *hist, condition_first=cond)

    assert_rel(dpi[pos], richardson_grad(f_pi, pi[pos], h=1e-5), 1e-6)


@pytest.mark.parametrize("name", ["misclassification", "censored", "exact_death", "all"])
def test_gradient_matches_finite_differences(records, name):
    ids, times, _, _ = records
    B, pi, codes, obstype, cond = _case(name, records)
    h = F.aggregate_histories(ids, times, codes, obstype)
    _check_grad(Q4, FROM, TO, pi, B, h, cond)


REPEATED = {
    # 0 -> 1 -> 2 -> 3 with equal exit rates: triangular with a repeated
    # diagonal, defective (the Pade/Frechet fallback)
    "defective": (np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]), 0.4),
    # 0 <-> 1 and 2 <-> 3 with equal rates, both -> absorbing states: repeated
    # eigenvalues of a diagonalisable Q (close-pair divided differences)
    "diagonalisable": (
        np.array(
            [[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1]]
            + [[0] * 6] * 2
        ),
        0.3,
    ),
}


@pytest.mark.parametrize("kind", sorted(REPEATED))
def test_gradient_with_repeated_eigenvalues(kind):
    allowed, rate = REPEATED[kind]
    K = allowed.shape[0]
    frm, to = np.nonzero(allowed)
    Q = PH.generator_from_rates(K, frm, to, np.full(frm.size, rate))
    lam = np.linalg.eigvals(Q)
    assert np.min(np.abs(lam[:, None] - lam[None, :]) + 9 * np.eye(K)) < 1e-8  # repeated
    E = 0.9 * np.eye(K) + 0.1 / K
    E /= E.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(3)
    pi = np.r_[np.full(K - 2, 1.0 / (K - 2)), 0, 0] if kind != "defective" else np.eye(K)[0]
    ids, times, rec, _ = simulate_hidden(rng, Q, pi, E, 60, [0.0, 1.0, 2.0, 3.0])
    h = F.aggregate_histories(ids, times, rec)
    B = F.emission_table(E, [[k] for k in range(K)])
    ref = F.loglik_reference(Q, pi, B, ids, times, rec)
    assert F.loglik(Q, pi, B, *h) == pytest.approx(ref, rel=1e-10)
    _check_grad(Q, frm, to, pi, B, h, False)


# --------------------------------------------------------------------------
# R msm at fixed parameters (committed JSON; see tests/results/forward/*.R)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cav():
    data = np.genfromtxt(RESULTS / "cav.csv", delimiter=",", names=True)
    return data["PTNUM"].astype(np.int64), data["years"], data["state"].astype(np.int64)


def _msm(name):
    out = json.loads((RESULTS / f"{name}.json").read_text())
    assert out["msm_version"] and out["R_version"]
    return out["cases"]


def _minus2ll(Q, pi, B, ids, times, codes, deathexact, cond=False):
    obstype = np.where(codes == deathexact - 1, F.OBS_EXACT, F.OBS_PANEL) if deathexact else None
    h = F.aggregate_histories(ids, times, codes, obstype)
    return -2 * F.loglik(Q, pi, B, *h, condition_first=cond)


def test_msm_deathexact(cav):
    ids, times, state = cav
    for case in _msm("msm_deathexact"):
        Q = generator(case["qmatrix"])
        value = _minus2ll(Q, np.ones(4), np.eye(4), ids, times, state - 1, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]
    mle = [c for c in _msm("msm_deathexact") if c["name"] == "mle_deathexact"][0]
    assert mle["minus2loglik"] == pytest.approx(3968.80, abs=0.01)  # the msm manual's figure


def test_msm_censored_states(cav):
    ids, times, _ = cav
    out = json.loads((RESULTS / "msm_censor.json").read_text())
    recorded = np.asarray(out["states"], dtype=np.int64)
    # codes 0..3 the states, 4 = msm code 99 (states 1-3), 5 = code 98 (states 1-2)
    codes = np.select([recorded == 99, recorded == 98], [4, 5], recorded - 1)
    assert np.any(codes[np.r_[0, np.flatnonzero(np.diff(ids)) + 1]] == 5)  # censored first records
    B = F.emission_table(np.eye(4), [[0], [1], [2], [3], [0, 1, 2], [0, 1]])
    for case in out["cases"]:
        Q = generator(case["qmatrix"])
        value = _minus2ll(Q, np.ones(4), B, ids, times, codes, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]


def test_msm_misclassification(cav):
    ids, times, state = cav
    firstobs = np.genfromtxt(RESULTS / "cav.csv", delimiter=",", names=True)["firstobs"] == 1
    for case in _msm("msm_misc"):
        Q = generator(case["qmatrix"])
        E = np.array(case["ematrix"], dtype=float)
        E[np.diag_indices(4)] = 1 - E.sum(axis=1)
        # codes 0-3: records through E; 4-7: records of the true state (msm's obstrue)
        B = np.vstack([F.emission_table(E, [[0], [1], [2], [3]]), np.eye(4)])
        codes = state - 1
        if case.get("obstrue") == "firstobs":
            codes = np.where(firstobs, codes + 4, codes)
        pi = np.array(case["initprobs"], dtype=float)
        value = _minus2ll(Q, pi, B, ids, times, codes, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]


# --------------------------------------------------------------------------
# latent phases
# --------------------------------------------------------------------------


def test_phase_expansion_layout():
    allowed = np.array([[0, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=bool)
    lay = PH.phase_expansion(allowed, {1: 3})
    assert lay.observed.tolist() == [0, 1, 1, 1, 2]
    assert lay.phase.tolist() == [0, 0, 1, 2, 0]
    assert_rel(lay.emission.sum(axis=1), np.ones(5), 0)
    pairs = set(zip(lay.rate_from.tolist(), lay.rate_to.tolist(), strict=True))
    # entry into state 1 at its first phase; every phase leaves to 0 and 2; progression 1->2->3
    assert pairs == {(0, 1), (0, 4), (1, 2), (2, 3), (1, 0), (2, 0), (3, 0), (1, 4), (2, 4), (3, 4)}
    assert [tuple(r) for r in lay.rate_observed[lay.rate_from == 2]] == [(1, 1), (1, 0), (1, 2)]
    with pytest.raises(ValueError, match="absorbing"):
        PH.phase_expansion(allowed, {2: 2})


def test_lumpable_phases_equal_the_observed_markov_model(records):
    """Phases with identical exit rates: the observed process is the plain Markov chain."""
    ids, times, rec, obstype = _with_truth(records)
    lay = PH.phase_expansion(ALLOWED, {1: 2})
    rates = np.array([Q4[r, s] if r != s else 0.7 for r, s in lay.rate_observed])
    Qh = PH.generator_from_rates(lay.observed.size, lay.rate_from, lay.rate_to, rates)
    B = F.emission_table(lay.emission, [[0], [1], [2], [3]])
    h = F.aggregate_histories(ids, times, rec)
    hidden = F.loglik(Qh, np.ones(5), B, *h, condition_first=True)
    assert hidden == pytest.approx(F.loglik(Q4, np.ones(4), np.eye(4), *h), rel=1e-10)
    # and the gradient of a non-lumpable point against differences
    rates = rates * np.linspace(0.7, 1.3, rates.size)
    Qh = PH.generator_from_rates(lay.observed.size, lay.rate_from, lay.rate_to, rates)
    pi = np.array([0.5, 0.2, 0.1, 0.2, 0.0])
    _check_grad(Qh, lay.rate_from, lay.rate_to, pi, B, h, False)


# --------------------------------------------------------------------------
# layout, aggregation, several generators, weights, bad input
# --------------------------------------------------------------------------


def test_aggregation_builds_a_prefix_tree():
    ids = [1, 1, 2, 2, 2, 3, 3, 4, 4]
    times = [0.0, 1.0, 5.0, 6.001, 6.5, 0.0, 1.0, 2.0, 3.0]
    codes = [0, 1, 0, 1, 2, 0, 2, 0, 1]
    h = F.aggregate_histories(ids, times, codes, resolution=0.01)
    # 1 and 4 share a history; 2 extends it (gap 1.001 rounds to 1.0); 3 branches off
    assert h.node_parent.tolist() == [-1, 0, 1, 0]
    assert h.node_code.tolist() == [0, 1, 2, 2]
    assert h.node_count.tolist() == [0.0, 2.0, 1.0, 1.0]
    assert h.node_piece.tolist() == [-1, 0, 1, 0]
    assert_rel(h.piece_t, [1.0, 0.5], 1e-15)
    assert h.n_histories == 3
    exact = F.aggregate_histories(ids, times, codes)
    # without rounding, 2's first gap differs: it no longer shares 1's prefix
    assert exact.node_parent.tolist() == [-1, 0, 0, 2, 0]
    assert exact.piece_t.size == 3


def test_several_generators_and_weights(records):
    ids, times, _, _ = records
    B, pi, codes, obstype, cond = _case("all", records)
    Q2 = generator(np.where(ALLOWED, Q4 * 1.7 + 0.01, 0.0))
    person = np.unique(ids)
    group = (person % 3 == 0).astype(np.int64)[np.searchsorted(person, ids)]
    weight = (1.0 + (ids % 5) / 4.0)[:]
    h = F.aggregate_histories(ids, times, codes, obstype, generator=group, weight=weight)
    Qs = np.stack([Q4, Q2])
    ref = sum(
        F.loglik_reference(
            Qs[g], pi, B, ids[sel], times[sel], codes[sel], obstype[sel], weight[sel], cond
        )
        for g in (0, 1)
        for sel in [group == g]
    )
    ll, dQ, _, _ = F.loglik_and_grad(Qs, pi, B, *h, condition_first=cond)
    assert ll == pytest.approx(ref, rel=1e-10)
    assert dQ.shape == (2, 4, 4)
    # the gradient of generator 1 against differences in its log-rates

    def f(x):
        Qx = Qs.copy()
        Qx[1] = PH.generator_from_rates(4, FROM, TO, np.exp(x))
        return F.loglik(Qx, pi, B, *h, condition_first=cond)

    g1 = PH.log_rate_grad(Q2, dQ[1], FROM, TO)
    assert_rel(g1, richardson_grad(f, np.log(Q2[FROM, TO])), 1e-6)


def test_impossible_history_and_bad_generator(records):
    ids, times, rec, obstype = records
    B = F.emission_table(np.eye(4), CODE_SETS[:4])
    h = F.aggregate_histories(ids, times, rec, obstype)
    B0 = B.copy()
    B0[1, 1] = 0.0  # code 1 impossible
    ll, dQ, dB, dpi = F.loglik_and_grad(Q4, np.ones(4), B0, *h)
    assert ll == -np.inf and not dQ.any() and not dB.any() and not dpi.any()
    Qn = Q4.copy()
    Qn[0, 1] = np.nan
    assert F.loglik(Qn, np.ones(4), B, *h) == -np.inf


def test_layout_errors(records):
    ids, times, rec, obstype = records
    h = F.aggregate_histories(ids, times, rec, obstype)
    B = np.eye(4)
    bad = {
        "earlier node": h._replace(node_parent=np.r_[h.node_parent[:-1], h.node_parent.size]),
        "rows of B": h._replace(node_code=np.r_[h.node_code[:-1], 4]),
        "piece_t": h._replace(piece_t=-h.piece_t),
        "node_type": h._replace(node_type=np.full_like(h.node_type, 5)),
        "same length": h._replace(node_count=h.node_count[:-1]),
    }
    for match, hist in bad.items():
        with pytest.raises(ValueError, match=match):
            F.loglik(Q4, np.ones(4), B, *hist)
    with pytest.raises(ValueError, match="pi"):
        F.loglik(Q4, np.ones(3), B, *h)


def test_gradient_of_misclassification_probabilities(records):
    """Chain rule to E (``emission_table_grad``) against differences in E's entries."""
    ids, times, _, _ = records
    _, pi, codes, obstype, cond = _case("all", records)
    h = F.aggregate_histories(ids, times, codes, obstype)
    _, _, dB, _ = F.loglik_and_grad(
        Q4, pi, F.emission_table(E4, CODE_SETS), *h, condition_first=cond
    )
    dE = F.emission_table_grad(dB, CODE_SETS, 4)
    free = E4 > 0

    def f(x):
        E = E4.copy()
        E[free] = x
        return F.loglik(Q4, pi, F.emission_table(E, CODE_SETS), *h, condition_first=cond)

    assert_rel(dE[free], richardson_grad(f, E4[free], h=1e-5), 1e-6)


def test_msm_phase_states(cav):
    """msm's phase.states (Coxian phases of one state) at fixed parameters."""
    ids, times, state = cav
    allowed = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
    for case in _msm("msm_phase"):
        lay = PH.phase_expansion(allowed, {case["phase_state"] - 1: case["n_phases"]})
        Qh = np.array(case["hidden_qmatrix"], dtype=float)
        # the hidden transitions msm builds are those of phase_expansion
        pattern = np.zeros_like(Qh, dtype=bool)
        pattern[lay.rate_from, lay.rate_to] = True
        assert np.array_equal(pattern, np.array(case["imatrix"]) == 1), case["name"]
        rates = Qh[lay.rate_from, lay.rate_to]
        Qh = PH.generator_from_rates(Qh.shape[0], lay.rate_from, lay.rate_to, rates)
        B = F.emission_table(lay.emission, [[0], [1], [2], [3]])
        pi = np.array(case["initprobs"], dtype=float)
        value = _minus2ll(Qh, pi, B, ids, times, state - 1, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]


def test_pointwise_history_loglik(records):
    """Per-respondent log-likelihood: the reference one respondent at a time, and the total."""
    ids, times, _, _ = records
    B, pi, codes, obstype, cond = _case("all", records)
    h, people, node = F.aggregate_histories(ids, times, codes, obstype, return_nodes=True)
    per_node = F.history_loglik(Q4, pi, B, *h, condition_first=cond)
    assert np.sum(per_node * h.node_count) == pytest.approx(
        F.loglik(Q4, pi, B, *h, condition_first=cond), rel=1e-12
    )
    for k in range(0, people.size, 7):
        sel = ids == people[k]
        ref = F.loglik_reference(
            Q4, pi, B, ids[sel], times[sel], codes[sel], obstype[sel], condition_first=cond
        )
        assert per_node[node[k]] == pytest.approx(ref, rel=1e-10)
    B0 = B.copy()
    B0[1] = 0.0  # records of code 1 become impossible
    bad = F.history_loglik(Q4, pi, B0, *h, condition_first=cond)
    has1 = np.array([np.any(codes[ids == p] == 1) for p in people])
    assert np.all(bad[node[has1]] == -np.inf) and np.all(np.isfinite(bad[node[~has1]]))


def test_gradient_with_a_complex_spectrum():
    """A cycle 0 -> 1 -> 2 -> 0 (non-reversible): complex eigenvalues, complex arithmetic."""
    allowed = np.array([[0, 1, 0, 1], [0, 0, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)
    frm, to = np.nonzero(allowed)
    Q = PH.generator_from_rates(4, frm, to, [0.9, 0.05, 0.8, 0.7, 0.1])
    assert np.max(np.abs(np.linalg.eigvals(Q).imag)) > 0.1
    rng = np.random.default_rng(5)
    E = np.array([[0.9, 0.1, 0, 0], [0.05, 0.9, 0.05, 0], [0, 0.1, 0.9, 0], [0, 0, 0, 1.0]])
    pi = np.array([0.5, 0.3, 0.2, 0.0])
    ids, times, rec, obstype = simulate_hidden(
        rng, Q, pi, E, 60, [0.0, 0.5, 1.5, 2.5], exact_state=3
    )
    h = F.aggregate_histories(ids, times, rec, obstype)
    B = F.emission_table(E, [[k] for k in range(4)])
    ref = F.loglik_reference(Q, pi, B, ids, times, rec, obstype)
    assert F.loglik(Q, pi, B, *h) == pytest.approx(ref, rel=1e-10)
    _check_grad(Q, frm, to, pi, B, h, False)


@pytest.mark.r
@pytest.mark.parametrize("script", ["msm_deathexact", "msm_censor", "msm_misc", "msm_phase"])
def test_committed_msm_results_are_reproduced(tmp_path, script):
    """Rerun a reference script on a copy of the folder: same -2 log L as committed."""
    import shutil
    import subprocess

    from markov_migration.reference.msm import msm_available

    if not msm_available():
        pytest.skip("Rscript with the msm package is not installed")
    for name in ("common.R", "cav.csv", f"{script}.R"):
        shutil.copy(RESULTS / name, tmp_path / name)
    res = subprocess.run(
        ["Rscript", str(tmp_path / f"{script}.R")], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    new = json.loads((tmp_path / f"{script}.json").read_text())["cases"]
    old = _msm(script)
    assert [c["name"] for c in new] == [c["name"] for c in old]
    for a, b in zip(new, old, strict=True):
        assert a["minus2loglik"] == pytest.approx(b["minus2loglik"], rel=1e-12), a["name"]
