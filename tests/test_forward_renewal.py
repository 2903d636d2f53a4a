"""Renewal splitting of the forward algorithm's tree (core/renewal.py, inference/latent_renewal.py).

A split tree must give the unsplit tree's log-likelihood and gradient. References
and tolerances:

* the unsplit tree of :func:`markov_migration.core.forward.aggregate_histories`
  (itself tested against scipy, finite differences and R msm in test_forward.py):
  value and ``d/dQ``, ``d/dpi`` to 1e-10 relative; ``d/dB`` to 1e-10 where ``B``
  can be non-zero (elsewhere it is a derivative along a structural zero, which
  no parameter reaches);
* R msm 1.7 at fixed parameters on ``cav`` (committed JSON), on the split tree,
  to 1e-8 relative as in test_forward.py;
* central finite differences with Richardson extrapolation on the split tree, to 1e-6;
* the PyMC models of the latent features (logp and its gradient through the
  real parameterisation) with and without splitting, to 1e-10 relative.
"""

import json

import numpy as np
import pandas as pd
import pytest

from markov_migration.core import forward as F
from markov_migration.core import phases as PH
from markov_migration.core.renewal import renewal_states, split_histories
from markov_migration.io import models_dir
from tests.test_forward import (
    ALLOWED,
    CODE_SETS,
    E4,
    FROM,
    PI4,
    Q4,
    RATES,
    RESULTS,
    TO,
    _case,
    _msm,
    assert_rel,
    generator,
    richardson_grad,
    simulate_hidden,
)

# -- the core: split == unsplit -----------------------------------------------------------


@pytest.fixture(scope="module")
def recs():
    """The records of test_forward.py's fixture (misclassified, exact deaths)."""
    rng = np.random.default_rng(13)
    return simulate_hidden(rng, Q4, PI4, E4, 120, [0.0, 1.0, 2.0, 3.5], exact_state=3)


def _phase_case(recs):
    """State 1 in two Coxian phases (K = 5 hidden states), censored codes, exact death."""
    ids, times, rec, obstype = recs
    lay = PH.phase_expansion(ALLOWED, {1: 2})
    rng = np.random.default_rng(3)
    rates = np.exp(rng.normal(np.log(0.3), 0.5, lay.rate_from.size))
    Qh = PH.generator_from_rates(lay.observed.size, lay.rate_from, lay.rate_to, rates)
    codes = rec.copy()
    codes[rng.random(codes.size) < 0.2] = 4  # "alive"
    B = F.emission_table(lay.emission, CODE_SETS)
    pi = np.array([0.4, 0.2, 0.1, 0.2, 0.1])
    return Qh, pi, B, codes, obstype, B != 0


def _named_case(name, recs):
    """(Q, pi, B, codes, obstype, condition_first, structural support of B)."""
    if name == "phases":
        Q, pi, B, codes, obstype, support = _phase_case(recs)
        return Q, pi, B, codes, obstype, False, support
    B, pi, codes, obstype, cond = _case(name, recs)
    E_support = E4 > 0 if name in ("misclassification", "all") else np.eye(4, dtype=bool)
    sets = CODE_SETS[: B.shape[0]]
    support = F.emission_table(E_support.astype(float), sets) > 0
    return Q4, pi, B, codes, obstype, bool(cond), support


CASES = ["phases", "exact_death", "censored", "misclassification", "all"]


@pytest.mark.parametrize("name", CASES)
def test_split_equals_unsplit(recs, name):
    ids, times, _, _ = recs
    Q, pi, B, codes, obstype, cond, support = _named_case(name, recs)
    h = F.aggregate_histories(ids, times, codes, obstype)
    ren = renewal_states(support)
    hs = split_histories(h, ren)
    for c in (cond, not cond):
        ll, dQ, dB, dpi = F.loglik_and_grad(Q, pi, B, *h, condition_first=c)
        ll_s, dQ_s, dB_s, dpi_s = F.loglik_and_grad(Q, pi, B, *hs, condition_first=c)
        assert ll_s == pytest.approx(ll, rel=1e-10, abs=0)
        assert_rel(dQ_s, dQ, 1e-10)
        assert_rel(dpi_s, dpi, 1e-10)
        assert_rel(np.where(support, dB_s, 0), np.where(support, dB, 0), 1e-10)
    if name in ("phases", "exact_death", "censored"):  # the others renew only at death
        assert hs.n_intervals < h.n_intervals, (hs.n_intervals, h.n_intervals)
    # splitting a split tree changes nothing
    again = split_histories(hs, ren)
    assert all(np.array_equal(a, b) for a, b in zip(again, hs, strict=True))


def test_renewal_states_are_structural():
    """One possible true state, decided from the support: misclassified codes are not renewals."""
    assert renewal_states(np.eye(3, dtype=bool)).tolist() == [0, 1, 2]
    # 0 <-> 1 and 2 -> 1 errors: recording 3 (dead) is the only certain one
    assert renewal_states(F.emission_table(E4, CODE_SETS) > 0).tolist() == [-1, -1, -1, 3, -1, -1]
    lay = PH.phase_expansion(ALLOWED, {1: 2})
    assert renewal_states(F.emission_table(lay.emission, CODE_SETS) > 0).tolist() == [
        0, -1, 3, 4, -1, -1,
    ]  # fmt: skip


def test_split_counts_and_weights():
    """A tiny tree by hand: two histories share their tail after the exact record 1."""
    # A: 0 -(1)-> 1 -(2)-> 2 ; B: 2 -(1)-> 1 -(2)-> 2 ; C (weight 3): 1 -(2)-> 2
    ids = [1, 1, 1, 2, 2, 2, 3, 3]
    times = [0.0, 1.0, 3.0, 0.0, 1.0, 3.0, 0.0, 2.0]
    codes = [0, 1, 2, 2, 1, 2, 1, 2]
    weight = [1, 1, 1, 1, 1, 1, 3, 3]
    h = F.aggregate_histories(ids, times, codes, weight=weight)
    assert h.n_intervals == 5
    hs = split_histories(h, [-1, 1, -1])  # only code 1 is certain
    # heads 0-(1)->1 and 2-(1)->1 (weight 1 each) and the root 1 (C, weight 3),
    # one shared tail 1-(2)->2 of weight 5 from the restart root of state 1
    assert hs.n_intervals == 3
    restart = np.flatnonzero((hs.node_parent < 0) & (hs.node_type == F.OBS_RESTART))
    assert restart.size == 1 and hs.node_piece[restart[0]] == 1
    tail = np.flatnonzero(hs.node_parent == restart[0])
    assert tail.size == 1 and hs.node_count[tail[0]] == 5.0
    assert hs.node_count.sum() == 2 + 5 + 3  # heads of A and B, the tails, C's root
    Q = generator([[0, 0.2, 0.1], [0.3, 0, 0.2], [0.1, 0.4, 0]])
    B = np.array([[1, 0, 0], [0, 1, 0], [0.7, 0, 0.9]])  # code 2: not a renewal point
    pi = np.array([0.5, 0.3, 0.2])
    ref = F.loglik_reference(Q, pi, B, ids, times, codes, weight=weight)
    assert F.loglik(Q, pi, B, *hs) == pytest.approx(ref, rel=1e-12)


def test_several_generators_and_weights(recs):
    """Covariate patterns: tails are shared only within a generator; survey weights."""
    ids, times, _, _ = recs
    Q, pi, B, codes, obstype, cond, support = _named_case("censored", recs)
    rng = np.random.default_rng(4)
    group = (ids % 3 == 0).astype(np.int64)[...]
    group = np.where(rng.random(ids.size) < 0.1, 1 - group, group)  # changes over time
    weight = np.repeat(rng.uniform(0.5, 2.0, ids.max() + 1), 1)[ids]
    Qs = np.stack([Q, PH.generator_from_rates(4, FROM, TO, RATES * 1.7)])
    h = F.aggregate_histories(ids, times, codes, obstype, generator=group, weight=weight)
    hs = split_histories(h, renewal_states(support))
    ll, dQ, _, dpi = F.loglik_and_grad(Qs, pi, B, *h, condition_first=cond)
    ll_s, dQ_s, _, dpi_s = F.loglik_and_grad(Qs, pi, B, *hs, condition_first=cond)
    assert ll_s == pytest.approx(ll, rel=1e-10, abs=0)
    assert_rel(dQ_s, dQ, 1e-10)
    assert_rel(dpi_s, dpi, 1e-10)
    assert hs.n_intervals < h.n_intervals


def test_split_gradient_matches_finite_differences(recs):
    """Log-rates, pi and the non-zero entries of B of the phase case, on the split tree."""
    ids, times, _, _ = recs
    Q, pi, B, codes, obstype, _, support = _named_case("phases", recs)
    lay = PH.phase_expansion(ALLOWED, {1: 2})
    hs = split_histories(F.aggregate_histories(ids, times, codes, obstype), renewal_states(support))
    ll, dQ, dB, dpi = F.loglik_and_grad(Q, pi, B, *hs)
    rates = Q[lay.rate_from, lay.rate_to]

    def f_rates(x):
        Qx = PH.generator_from_rates(Q.shape[0], lay.rate_from, lay.rate_to, np.exp(x))
        return F.loglik(Qx, pi, B, *hs)

    g = PH.log_rate_grad(Q, dQ, lay.rate_from, lay.rate_to)
    assert_rel(g, richardson_grad(f_rates, np.log(rates)), 1e-6)
    assert_rel(dpi, richardson_grad(lambda x: F.loglik(Q, x, B, *hs), pi, h=1e-5), 1e-6)

    def f_B(x):
        Bx = B.copy()
        Bx[support] = x
        return F.loglik(Q, pi, Bx, *hs)

    assert_rel(dB[support], richardson_grad(f_B, B[support], h=1e-5), 1e-6)


def test_layout_of_a_restart_root(recs):
    ids, times, rec, obstype = recs
    h = F.aggregate_histories(ids, times, rec, obstype)
    hs = split_histories(h, [0, 1, 2, 3])
    root = np.flatnonzero(hs.node_type == F.OBS_RESTART)[0]
    bad = hs._replace(node_piece=np.where(np.arange(hs.node_piece.size) == root, 4, hs.node_piece))
    with pytest.raises(ValueError, match="restart root"):
        F.loglik(Q4, np.ones(4), np.eye(4), *bad)
    with pytest.raises(ValueError, match="renewal"):
        split_histories(h, [0, 1])


def test_history_loglik_of_segments(recs):
    """On a split tree, per-node values are segments' and sum (with counts) to the total."""
    ids, times, _, _ = recs
    Q, pi, B, codes, obstype, cond, support = _named_case("all", recs)
    hs = split_histories(F.aggregate_histories(ids, times, codes, obstype), renewal_states(support))
    per_node = F.history_loglik(Q, pi, B, *hs, condition_first=cond)
    total = F.loglik(Q, pi, B, *hs, condition_first=cond)
    assert np.sum(per_node * hs.node_count) == pytest.approx(total, rel=1e-12)


# -- R msm on the split tree ------------------------------------------------------------


@pytest.fixture(scope="module")
def cav():
    data = np.genfromtxt(RESULTS / "cav.csv", delimiter=",", names=True)
    return data["PTNUM"].astype(np.int64), data["years"], data["state"].astype(np.int64)


def _split_minus2ll(Q, pi, B, support, ids, times, codes, deathexact):
    obstype = np.where(codes == deathexact - 1, F.OBS_EXACT, F.OBS_PANEL) if deathexact else None
    h = F.aggregate_histories(ids, times, codes, obstype)
    hs = split_histories(h, renewal_states(support))
    assert hs.n_intervals <= h.n_intervals
    return -2 * F.loglik(Q, pi, B, *hs)


def test_msm_on_the_split_tree(cav):
    """deathexact, censored codes, misclassification (with obstrue) and phase.states."""
    ids, times, state = cav
    for case in _msm("msm_deathexact"):
        Q = generator(case["qmatrix"])
        eye = np.eye(4)
        value = _split_minus2ll(Q, np.ones(4), eye, eye > 0, ids, times, state - 1,
                                case["deathexact"])  # fmt: skip
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]
    out = json.loads((RESULTS / "msm_censor.json").read_text())
    recorded = np.asarray(out["states"], dtype=np.int64)
    codes = np.select([recorded == 99, recorded == 98], [4, 5], recorded - 1)
    B = F.emission_table(np.eye(4), [[0], [1], [2], [3], [0, 1, 2], [0, 1]])
    for case in out["cases"]:
        Q = generator(case["qmatrix"])
        value = _split_minus2ll(Q, np.ones(4), B, B > 0, ids, times, codes, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]
    firstobs = np.genfromtxt(RESULTS / "cav.csv", delimiter=",", names=True)["firstobs"] == 1
    for case in _msm("msm_misc"):
        Q = generator(case["qmatrix"])
        E = np.array(case["ematrix"], dtype=float)
        declared = E > 0  # msm's ematrix: the possible errors
        E[np.diag_indices(4)] = 1 - E.sum(axis=1)
        declared[np.diag_indices(4)] = True
        B = np.vstack([F.emission_table(E, [[0], [1], [2], [3]]), np.eye(4)])
        support = np.vstack([declared.T, np.eye(4, dtype=bool)])  # obstrue codes 4-7
        codes = state - 1
        if case.get("obstrue") == "firstobs":
            codes = np.where(firstobs, codes + 4, codes)
        pi = np.array(case["initprobs"], dtype=float)
        value = _split_minus2ll(Q, pi, B, support, ids, times, codes, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]
    allowed = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
    for case in _msm("msm_phase"):
        lay = PH.phase_expansion(allowed, {case["phase_state"] - 1: case["n_phases"]})
        Qh = np.array(case["hidden_qmatrix"], dtype=float)
        rates = Qh[lay.rate_from, lay.rate_to]
        Qh = PH.generator_from_rates(Qh.shape[0], lay.rate_from, lay.rate_to, rates)
        B = F.emission_table(lay.emission, [[0], [1], [2], [3]])
        pi = np.array(case["initprobs"], dtype=float)
        value = _split_minus2ll(Qh, pi, B, B > 0, ids, times, state - 1, case["deathexact"])
        assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]


# -- the PyMC models: split (what the sampler uses) against unsplit -------------------------

#: The bundled cav model (models/cav.toml), the base of the latent models below.
TWOWAY = (models_dir() / "cav.toml").read_text()
NONRESPONSE = """\
name = "tiny"
states = ["well", "ill", "dead"]
[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]
[data]
resolution = 0.01
[observation]
exact = ["dead"]
"""
MODELS = {
    "phases": TWOWAY + '[observation]\nexact = ["dead"]\n[phases]\nmild = 2\n',
    "exact_death": TWOWAY + '[observation]\nexact = ["dead"]\n',
    "censored": TWOWAY + '[observation]\ncensored = { "99" = ["well", "mild", "severe"] }\n',
    "misclassification": TWOWAY + '[misclassification]\nwell = ["mild"]\nsevere = ["mild"]\n',
    "nonresponse": NONRESPONSE + '[nonresponse]\nstates = ["well"]\nattrition = false\n',
    "nonresponse_attrition": NONRESPONSE + '[nonresponse]\nstates = ["well", "ill"]\n',
    "covariates_periods": None,  # built from tests/test_latent_covariates.py's GRAD_BASE
}


#: Renewal state of each record code of the models above (-1: several possible states).
RENEWAL = {
    "phases": [0, -1, 3, 4],  # mild in two phases: hidden states well, mild_1, mild_2, ...
    "exact_death": [0, 1, 2, 3],
    "censored": [0, 1, 2, 3, -1],
    # true well and severe may be recorded mild: a record of mild may be any of three
    "misclassification": [0, -1, 2, 3],
    # plain, answered, missed (only "well" misses), exact entry
    "nonresponse": [0, 1, 2, 0, 1, 2, 0, 0, 1, 2],
    # with attrition: plain and answered active, missed (lost or not), exact (either)
    "nonresponse_attrition": [0, 1, 2, 0, 1, 2, -1, -1, -1, -1],
    # true swing may be recorded abroad; the blank record at a cut says nothing
    "covariates_periods": [-1, 1, 2, -1],
}


def _model_and_panel(name):
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.spec import parse_spec

    if name.startswith("nonresponse"):
        from tests.test_nonresponse import TINY

        spec = parse_spec(MODELS[name], path="m.toml")
        return spec, validate_panel(pd.DataFrame(TINY, columns=["id", "time", "state"]), spec)
    if name == "covariates_periods":
        from tests.test_latent_covariates import GRAD_BASE, small_panel

        spec = parse_spec(
            "periods = [1.5]\n" + GRAD_BASE
            + '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned"]\n'
        )  # fmt: skip
        return spec, validate_panel(small_panel(n=50, seed=5), spec)
    spec = parse_spec(MODELS[name])
    df = pd.read_csv(RESULTS / "cav.csv")
    if name == "censored":
        df.loc[df.index[::7], "state"] = np.where(df["state"].iloc[::7] == 4, 4, 99)
    return spec, validate_panel(df, spec)


def _logp_and_grad(model, points):
    import pytensor  # noqa: TID251
    import pytensor.tensor as pt  # noqa: TID251

    lp = model.logp()
    fn = pytensor.function(
        model.value_vars, [lp, *pt.grad(lp, model.value_vars)], mode="FAST_COMPILE"
    )
    return [[np.ravel(v) for v in fn(*(p[v.name] for v in model.value_vars))] for p in points]


@pytest.mark.parametrize("name", list(MODELS))
def test_model_split_equals_unsplit(name, monkeypatch):
    """The sampler's logp and gradient (through the real parameters) with and without splitting.

    Also that splitting happens where the structure allows it and the emission
    support is that of the model's table at a random point.
    """
    from markov_migration.inference import latent_renewal
    from markov_migration.inference.latent import (
        build_latent_model,
        latent_design,
        latent_histories,
        latent_layout,
    )

    spec, panel = _model_and_panel(name)
    layout = latent_layout(spec)
    split_model = build_latent_model(spec, panel)
    rng = np.random.default_rng(11)
    start = split_model.initial_point()
    points = [{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()} for _ in range(2)]
    got = _logp_and_grad(split_model, points)
    monkeypatch.setattr(latent_renewal, "fit_histories", lambda spec, layout, h: h)
    want = _logp_and_grad(build_latent_model(spec, panel), points)
    for g, w in zip(got, want, strict=True):
        assert g[0][0] == pytest.approx(w[0][0], rel=1e-10, abs=0)
        assert_rel(np.concatenate(g[1:]), np.concatenate(w[1:]), 1e-10)
    h = latent_histories(spec, panel, latent_design(spec, panel)[1])[0]
    support = latent_renewal.emission_support(spec, layout)
    ren = renewal_states(support)
    hs = split_histories(h, ren)
    assert hs.n_intervals <= h.n_intervals
    if name in ("phases", "exact_death", "censored"):  # cav: tails shared
        assert hs.n_intervals < h.n_intervals, (hs.n_intervals, h.n_intervals)
    assert ren.tolist() == RENEWAL[name]
    # the table of the model at a point is zero wherever the support says it must be
    import pytensor  # noqa: TID251

    table = _op_input(split_model.potentials[0], 2)
    fn = pytensor.function(split_model.value_vars, table, mode="FAST_COMPILE",
                           on_unused_input="ignore")  # fmt: skip
    value = fn(*(points[0][v.name] for v in split_model.value_vars))
    assert value.shape == support.shape
    assert not np.any(value[~support]), name
    assert np.all(value[support] > 0), name


def _op_input(var, i):
    """Input ``i`` of the ForwardLogLik node under ``var`` (depth-first)."""
    from markov_migration.inference.latent_op import ForwardLogLik

    stack, seen = [var], set()
    while stack:
        v = stack.pop()
        if v.owner is None or id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v.owner.op, ForwardLogLik):
            return v.owner.inputs[i]
        stack.extend(v.owner.inputs)
    raise LookupError("no ForwardLogLik in the graph")


def test_phase_panel_split_reduces_the_tree():
    """The benchmark's phased panel: fewer forward steps after splitting."""
    from pathlib import Path

    from markov_migration.inputs.panel import load_panel
    from markov_migration.inputs.spec import load_spec

    root = Path(__file__).resolve().parents[1]
    spec = load_spec(root / "models" / "migration5.toml")
    panel = load_panel(root / "examples" / "outrush_synthetic.csv", spec)
    d = panel.data
    h = F.aggregate_histories(
        d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(), resolution=spec.resolution
    )
    lay = PH.phase_expansion(spec.allowed_matrix(), {spec.states.index("returned"): 2})
    support = F.emission_table(lay.emission, [[s] for s in range(spec.n_states)]) > 0
    hs = split_histories(h, renewal_states(support))
    # every state but returned is a renewal point: most tails are one interval
    assert hs.n_intervals < 0.6 * h.n_intervals, (hs.n_intervals, h.n_intervals)


def test_a_false_renewal_point_changes_the_likelihood(recs):
    """The comparison can fail: declaring misclassified records certain is wrong."""
    ids, times, _, _ = recs
    Q, pi, B, codes, obstype, cond, _ = _named_case("misclassification", recs)
    h = F.aggregate_histories(ids, times, codes, obstype)
    wrong = split_histories(h, np.arange(B.shape[0]))  # as if E were the identity
    ll, ll_wrong = (F.loglik(Q, pi, B, *t, condition_first=cond) for t in (h, wrong))
    assert abs(ll_wrong - ll) > 1e-3 * abs(ll)


def test_split_equals_unsplit_with_exact_transition_times(recs):
    """Exact transition times (obstype 2) and entry times (3) mixed with panel records.

    Every code of a non-hidden model is a renewal point, so each interval, of whatever
    type, becomes its own tail; value and gradients agree with the unsplit tree to 1e-10.
    """
    ids, times, rec, obstype = recs
    rng = np.random.default_rng(21)
    codes = np.minimum(rec, 3)
    first = np.r_[True, ids[1:] != ids[:-1]]
    kind = obstype.copy()
    # type 2 on later records that did not end in death: the previous state kept until then
    prev = np.r_[0, codes[:-1]]
    possible = (prev == codes) | (Q4[prev, codes] > 0)  # else the record has likelihood 0
    flag = ~first & possible & (kind == F.OBS_PANEL) & (rng.random(kind.size) < 0.4)
    kind[flag] = F.OBS_TRANSITION
    B, pi = np.eye(4), np.ones(4)
    h = F.aggregate_histories(ids, times, codes, kind)
    assert np.any(h.node_type == F.OBS_TRANSITION)
    hs = split_histories(h, renewal_states(np.eye(4, dtype=bool)))
    assert hs.n_intervals < h.n_intervals
    ll, dQ, dB, dpi = F.loglik_and_grad(Q4, pi, B, *h)
    ll_s, dQ_s, dB_s, dpi_s = F.loglik_and_grad(Q4, pi, B, *hs)
    assert np.isfinite(ll)
    assert ll_s == pytest.approx(ll, rel=1e-10, abs=0)
    assert_rel(dQ_s, dQ, 1e-10)
    assert ll == pytest.approx(F.loglik_reference(Q4, pi, B, ids, times, codes, kind), rel=1e-10)
