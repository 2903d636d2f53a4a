"""Posterior summaries against closed forms, independent computations and R msm.

Fits here are fake (``markov_migration.testing.fake_fit``: log-normal draws
around known rates), so the tests are about the summaries, not inference.
References: ``-1/q_rr`` and ``q_rs/-q_rr`` (closed forms), ``scipy.linalg.expm``
and ``scipy.integrate.quad_vec`` (P(t) and its integral), a Monte Carlo
simulation of first passages, series sums for discrete time, and R msm's
``pmatrix.msm``, ``sojourn.msm``, ``pnext.msm``, ``totlos.msm`` and ``efpt.msm``
evaluated at the same fixed generator (committed in tests/results; agreement to
1e-10 relative; measured at most 4e-15 absolute).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.integrate import quad_vec
from scipy.linalg import expm

from markov_migration.core import quantities as cq
from markov_migration.errors import InputError
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import summaries as S
from markov_migration.testing import fake_fit, fake_sample_stats
from tests.conftest import DESIGN_TABLES, THREE_SIMULATED
from tests.results import RESULTS, load

#: Three states, "c" absorbing; known rates per year (same structure as the fit tests).
THREE = THREE_SIMULATED
Q3 = np.array([[-0.45, 0.3, 0.15], [0.5, -0.7, 0.2], [0.0, 0.0, 0.0]])

#: Three states without an absorbing one.
CYCLE = """
name = "cycle"
states = ["home", "abroad", "transit"]
home = ["home"]
[transitions]
home = ["abroad"]
abroad = ["home", "transit"]
transit = ["abroad", "home"]
[rates]
"home->abroad" = 0.3
"abroad->home" = 0.2
"abroad->transit" = 0.15
"transit->abroad" = 0.5
"transit->home" = 0.25
[simulate]
waves = [0, 1, 2]
initial = { home = 0.4, abroad = 0.4, transit = 0.2 }
"""


def random_generators(rng, n, allowed):
    """n random generators (n, K, K) with intensities 0.05-2 on the allowed moves."""
    k = allowed.shape[0]
    q = np.where(allowed, rng.uniform(0.05, 2.0, (n, k, k)), 0.0)
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


@pytest.fixture(scope="module")
def three():
    spec = parse_spec(THREE)
    panel = simulate_panel(spec, 200, seed=3)
    return spec, fake_fit(spec, panel, chains=2, draws=50, spread=0.2, seed=1)


@pytest.fixture(scope="module")
def cycle():
    spec = parse_spec(CYCLE)
    panel = simulate_panel(spec, 150, seed=4)
    return spec, fake_fit(spec, panel, chains=2, draws=40, spread=0.2, seed=2)


def exact_fit(spec, panel):
    """A fake fit whose every draw is the model's [rates] generator."""
    return fake_fit(spec, panel, chains=1, draws=3, spread=0.0)


# ---------------------------------------------------------------- numpy core


def test_sojourn_and_pnext_closed_forms():
    rng = np.random.default_rng(0)
    allowed = parse_spec(THREE).allowed_matrix()
    q = random_generators(rng, 20, allowed)
    soj = cq.sojourn(q)
    np.testing.assert_allclose(soj[:, :2], -1.0 / q[:, [0, 1], [0, 1]], rtol=1e-15)
    assert np.all(np.isinf(soj[:, 2]))  # absorbing
    nxt = cq.pnext(q)
    np.testing.assert_allclose(nxt[:, 0, 1], q[:, 0, 1] / -q[:, 0, 0], rtol=1e-15)
    np.testing.assert_allclose(nxt[:, :2].sum(axis=-1), 1.0, rtol=1e-14)
    assert np.all(np.isnan(nxt[:, 2]))
    assert np.all(nxt[:, [0, 1], [0, 1]] == 0)


def test_integrated_pmatrix_matches_quadrature():
    rng = np.random.default_rng(1)
    allowed = parse_spec(CYCLE).allowed_matrix()
    q = random_generators(rng, 3, allowed)
    for horizon in (0.5, 4.0, 25.0):
        got = cq.integrated_pmatrix(q, horizon)
        for i in range(q.shape[0]):
            ref, err = quad_vec(
                lambda u, i=i: expm(q[i] * u), 0.0, horizon, epsabs=1e-12, epsrel=1e-12
            )
            np.testing.assert_allclose(got[i], ref, rtol=1e-9, atol=1e-11)
        # time spent in all states adds up to the horizon
        np.testing.assert_allclose(got.sum(axis=-1), horizon, rtol=1e-12)


def test_totlos_infinite_horizon_is_the_limit():
    rng = np.random.default_rng(2)
    allowed = parse_spec(THREE).allowed_matrix()
    q = random_generators(rng, 5, allowed)
    start = np.array([0.3, 0.7, 0.0])
    inf = cq.totlos(q, np.inf, start)
    long = cq.totlos(q, 400.0, start)
    np.testing.assert_allclose(inf[:, :2], long[:, :2], rtol=1e-9)
    assert np.all(np.isinf(inf[:, 2]))


def simulate_first_passage(q, start, target, n, rng):
    """Monte Carlo first-passage times of a CTMC (Gillespie), paths started in ``start``."""
    k = q.shape[0]
    rates = -np.diag(q)
    jump = np.where(np.eye(k, dtype=bool), 0.0, q) / np.where(rates > 0, rates, 1.0)[:, None]
    out = np.empty(n)
    for i in range(n):
        s, t = start, 0.0
        while s not in target:
            t += rng.exponential(1.0 / rates[s])
            s = rng.choice(k, p=jump[s])
        out[i] = t
    return out


def test_first_passage_matches_simulation_and_closed_form():
    spec = parse_spec(CYCLE)
    q = spec.rate_matrix()
    finite = cq.passage_states(spec.allowed_matrix(), [0])
    assert finite.tolist() == [False, True, True]
    m = cq.passage(q, [0], finite)
    assert m[0] == 0.0
    rng = np.random.default_rng(5)
    for s in (1, 2):
        sim = simulate_first_passage(q, s, {0}, 4000, rng)
        se = sim.std() / np.sqrt(sim.size)
        assert abs(sim.mean() - m[s]) < 4 * se, (s, sim.mean(), m[s], se)
    # two states: the passage time is exponential with mean 1 / q_12
    q2 = np.array([[-0.4, 0.4], [0.1, -0.1]])
    m2 = cq.passage(q2, [1], np.array([True, False]))
    assert m2[0] == pytest.approx(1 / 0.4, rel=1e-14)


def test_passage_states_structure():
    # from c (absorbing) a never reaches "a"; from b it may be absorbed first: infinite
    allowed = parse_spec(THREE).allowed_matrix()
    assert cq.passage_states(allowed, [0]).tolist() == [False, False, False]
    # to the absorbing state: finite from a and b
    assert cq.passage_states(allowed, [2]).tolist() == [True, True, False]
    # targets {a, c}: from b every path ends in a or c
    assert cq.passage_states(allowed, [0, 2]).tolist() == [False, True, False]


# ---------------------------------------------------------------- labelled API


def test_posterior_summary_statistics(three):
    _, tree = three
    draws = S.qmatrix(tree)
    s = S.posterior_summary(draws, ci=0.9)
    flat = draws.to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(s["mean"], flat.mean(axis=0))
    np.testing.assert_allclose(s["sd"], flat.std(axis=0, ddof=1))
    np.testing.assert_allclose(s["median"], np.median(flat, axis=0))
    np.testing.assert_allclose(s["lower"], np.quantile(flat, 0.05, axis=0))
    np.testing.assert_allclose(s["upper"], np.quantile(flat, 0.95, axis=0))
    assert s.attrs["ci_prob"] == 0.9 and s.attrs["ci_kind"] == "eti"
    assert list(s["from_state"].values) == ["a", "b", "c"]


def test_pmatrix_rows_sum_to_one_and_semigroup(three):
    _, tree = three
    p1 = S.pmatrix(tree, 1.0)
    assert p1.dims == ("chain", "draw", "from_state", "to_state")
    np.testing.assert_allclose(p1.sum("to_state"), 1.0, atol=1e-12)
    p_s, p_t, p_st = (S.pmatrix(tree, t).to_numpy() for t in (0.7, 1.8, 2.5))
    np.testing.assert_allclose(np.einsum("cdij,cdjk->cdik", p_s, p_t), p_st, atol=1e-12)
    q = S.qmatrix(tree).to_numpy()
    np.testing.assert_allclose(p_st[1, 7], expm(q[1, 7] * 2.5), atol=1e-12)
    np.testing.assert_allclose(S.pmatrix(tree, 0.0).to_numpy()[0, 0], np.eye(3), atol=1e-14)


def test_sojourn_pnext_labelled(three):
    _, tree = three
    q = S.qmatrix(tree)
    soj = S.sojourn(tree)
    assert list(soj["state"].values) == ["a", "b"]  # c is absorbing
    np.testing.assert_allclose(soj.sel(state="b"), -1 / q.sel(from_state="b", to_state="b"))
    assert "absorbing" in S.notes(S.posterior_summary(soj))[0]
    pn = S.pnext(tree)
    np.testing.assert_allclose(
        pn.sel(from_state="a", to_state="c"),
        q.sel(from_state="a", to_state="c") / -q.sel(from_state="a", to_state="a"),
    )


def test_totlos_sums_to_horizon_and_start_forms(cycle):
    _, tree = cycle
    los = S.totlos(tree, 10.0, "abroad")
    np.testing.assert_allclose(los.sum("state"), 10.0, rtol=1e-12)
    mix = S.totlos(tree, 10.0, "home=0.25,abroad=0.75")
    a = S.totlos(tree, 10.0, "home")
    np.testing.assert_allclose(mix, 0.25 * a + 0.75 * los, rtol=1e-12)
    obs = S.totlos(tree, 5.0, "observed")
    assert "observed first states" in obs.attrs["start"]
    for bad, msg in (
        ("nowhere", "unknown start state"),
        ("home=0.5,abroad=0.2", "sum to 1"),
        ("home=x", "not a number"),
    ):
        with pytest.raises(InputError, match=msg):
            S.totlos(tree, 5.0, bad)
    with pytest.raises(InputError, match="absorbing states"):
        S.totlos(tree, np.inf, "home")
    with pytest.raises(InputError, match="needs --horizon"):
        S.summarize(tree, "totlos")


def test_totlos_infinite_horizon_with_absorbing_state(three):
    _, tree = three
    los = S.totlos(tree, np.inf, "a")
    assert list(los["state"].values) == ["a", "b"]
    q = S.qmatrix(tree).to_numpy()
    fund = np.linalg.inv(-q[..., :2, :2])
    np.testing.assert_allclose(los.to_numpy(), fund[..., 0, :], rtol=1e-12)


def test_passage_labelled_and_default_target(cycle, three):
    _, tree = cycle
    pas = S.passage(tree)  # default: the home states
    assert pas.attrs["to"] == "home"
    assert list(pas["state"].values) == ["abroad", "transit"]
    s = S.summarize(tree, "passage", to="transit")
    assert list(s["state"].values) == ["home", "abroad"]
    _, tree3 = three
    with pytest.raises(InputError, match="no state has a finite expected passage time"):
        S.passage(tree3, "a")
    s3 = S.summarize(tree3, "passage", to="c")
    assert list(s3["state"].values) == ["a", "b"]
    with pytest.raises(InputError, match="unknown state 'x'"):
        S.passage(tree3, "x")


def test_hazard_without_covariates_is_a_clear_error(three):
    _, tree = three
    with pytest.raises(InputError, match="has no covariates, so the fit has no hazard ratios"):
        S.summarize(tree, "hazard")


def test_hazard_ratios_of_a_fit_with_covariates(three):
    """exp(log_hazard_ratio) by covariate effect (the fitting layer's layout)."""
    _, tree = three
    text = THREE + '[covariates.reason]\nkind = "categorical"\nlevels = ["economic", "political"]\n'
    text += 'transitions = ["a->b", "b->a"]\n'
    with_cov = tree.copy()
    with_cov.attrs = {**tree.attrs, "model_text": text}
    with pytest.raises(InputError, match="no 'log_hazard_ratio' posterior variable"):
        S.hazard(with_cov)
    post = tree["posterior"].to_dataset()
    rng = np.random.default_rng(3)
    effects = ["reason[political]:a->b", "reason[political]:b->a"]
    post["log_hazard_ratio"] = (
        ("chain", "draw", "covariate_effect"),
        rng.normal(0.4, 0.1, (2, 50, 2)),
    )
    # the coordinates the fitting layer attaches (fitfile._label_posterior)
    post = post.assign_coords(
        covariate_effect=effects,
        covariate=("covariate_effect", ["reason", "reason"]),
        level=("covariate_effect", ["political", "political"]),
        **{"from": ("covariate_effect", ["a", "b"]), "to": ("covariate_effect", ["b", "a"])},
    )
    with_cov["posterior"] = xr.DataTree(post)
    hr = S.hazard(with_cov)
    np.testing.assert_allclose(hr.to_numpy(), np.exp(post["log_hazard_ratio"].to_numpy()))
    frame = S.to_frame(S.summarize(with_cov, "hazard"))
    assert list(frame.columns) == ["covariate", "from", "to", *S.STATS]
    assert list(frame["covariate"]) == ["reason[political]"] * 2
    assert list(frame["from"]) == ["a", "b"]
    flat = np.exp(post["log_hazard_ratio"].to_numpy()).reshape(-1, 2)
    np.testing.assert_allclose(frame["median"], np.median(flat, axis=0), rtol=1e-12)


def test_leave_is_the_chance_of_not_staying_put(three):
    """1 - exp(q_rr t) against expm of Q with every other state made absorbing."""
    spec, tree = three
    t = 1.5
    draws = S.leave(tree, t)
    assert list(draws["state"].values) == ["a", "b"]  # c is absorbing
    q = S.qmatrix(tree).to_numpy()
    for c, d in [(0, 0), (1, 37)]:
        for i, state in enumerate(["a", "b"]):
            sticky = np.zeros_like(q[c, d])
            sticky[i] = q[c, d, i]  # only state i moves; reaching any other state ends the path
            stayed = expm(sticky * t)[i, i]
            assert float(draws.sel(state=state)[c, d]) == pytest.approx(1 - stayed, rel=1e-12)
    summary = S.summarize(tree, "leave", t=t)
    assert summary.attrs["t"] == t
    assert "absorbing states are never left: c" in S.notes(summary)
    with pytest.raises(InputError, match="finite time > 0"):
        S.leave(tree, 0.0)


def test_invalid_arguments(three):
    _, tree = three
    with pytest.raises(InputError, match="between 0 and 1"):
        S.summarize(tree, "qmatrix", ci=1.5)
    with pytest.raises(InputError, match="unknown quantity"):
        S.summarize(tree, "bogus")
    with pytest.raises(InputError, match="--t must be"):
        S.pmatrix(tree, -1.0)


def test_tables_and_json(three):
    _, tree = three
    q = S.to_frame(S.summarize(tree, "qmatrix"))
    assert list(q.columns) == ["from", "to", "mean", "sd", "median", "lower", "upper"]
    # structural zeros (a->a is not, c->* and impossible moves are) are left out
    assert set(zip(q["from"], q["to"], strict=True)) == {
        ("a", "a"), ("a", "b"), ("a", "c"), ("b", "a"), ("b", "b"), ("b", "c"),
    }  # fmt: skip
    p = S.to_frame(S.summarize(tree, "pmatrix", t=2.0))
    assert len(p) == 9
    soj = S.to_frame(S.summarize(tree, "sojourn"))
    assert list(soj.columns) == ["state", "mean", "sd", "median", "lower", "upper"]
    doc = json.loads(S.to_json(S.summarize(tree, "totlos", horizon=np.inf, start="b")))
    assert doc["quantity"] == "totlos" and doc["horizon"] == "inf" and doc["units"] == "years"
    assert [r["state"] for r in doc["rows"]] == ["a", "b"]
    assert doc["notes"] and "infinite horizon" in doc["notes"][0]


def test_lower_median_upper_ordered(cycle):
    _, tree = cycle
    for what, kw in (
        ("pmatrix", {"t": 3.0}),
        ("sojourn", {}),
        ("totlos", {"horizon": 4.0}),
        ("passage", {}),
    ):
        s = S.summarize(tree, what, ci=0.8, **kw)
        assert np.all(s["lower"] <= s["median"]) and np.all(s["median"] <= s["upper"])


def test_extra_dims_give_one_summary_per_group(three):
    """A Q with a group dim (as fits with groups or covariate patterns will have)."""
    _, tree = three
    q = tree["posterior"]["Q"]
    grouped = xr.concat([q, 2 * q], dim=xr.DataArray(["GE", "DE"], dims="group", name="group"))
    tree = tree.copy()
    post = tree["posterior"].to_dataset()
    post["Q"] = grouped.transpose("chain", "draw", "group", "from_state", "to_state")
    tree["posterior"] = xr.DataTree(post)
    soj = S.sojourn(tree)
    assert soj.dims == ("chain", "draw", "group", "state")
    np.testing.assert_allclose(soj.sel(group="DE"), soj.sel(group="GE") / 2, rtol=1e-14)
    p = S.pmatrix(tree, 1.0)
    np.testing.assert_allclose(
        p.sel(group="DE").to_numpy()[0, 0], expm(2 * q.to_numpy()[0, 0]), atol=1e-12
    )
    frame = S.to_frame(S.summarize(tree, "qmatrix"))
    assert list(frame.columns[:3]) == ["group", "from", "to"] and len(frame) == 12
    frame = S.to_frame(S.summarize(tree, "totlos", horizon=3.0, start="a"))
    assert list(frame.columns[:2]) == ["group", "state"]
    np.testing.assert_allclose(frame.groupby("group")["mean"].sum(), 3.0, rtol=1e-12)


# ---------------------------------------------------------------- discrete time

DISCRETE = """
name = "discrete3"
time = "discrete"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
"""


@pytest.fixture(scope="module")
def discrete():
    spec = parse_spec(DISCRETE)
    rng = np.random.default_rng(7)
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.0, 0.0, 1.0]])
    ids, times, states = [], [], []
    for i in range(60):
        s = rng.integers(0, 2)
        for w in range(4):
            ids.append(i), times.append(w), states.append("abc"[s])
            s = rng.choice(3, p=p[s])
    df = pd.DataFrame({"id": ids, "time": times, "state": states})
    panel = validate_panel(df, spec, path="<test>", sha256="0" * 64)
    agg = aggregate(panel, spec)
    draws = np.stack(
        [p + np.array([[-0.01, 0.01, 0], [0.01, -0.01, 0], [0, 0, 0]]) * k for k in range(-3, 3)]
    )
    post = xr.Dataset(
        {"P": (("chain", "draw", "from_state", "to_state"), draws.reshape(2, 3, 3, 3))},
        coords={
            "chain": [0, 1],
            "draw": [0, 1, 2],
            "from_state": list("abc"),
            "to_state": list("abc"),
        },
    )
    tree = assemble_fit(
        spec, agg, post, fake_sample_stats(2, 3), {"sampler": "fake"}, "test", panel
    )
    return tree, draws


def test_discrete_time_quantities(discrete):
    tree, draws = discrete
    with pytest.raises(InputError, match="discrete-time fit has no intensities"):
        S.qmatrix(tree)
    p3 = S.pmatrix(tree, 3).to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(p3, np.linalg.matrix_power(draws, 3), atol=1e-14)
    with pytest.raises(InputError, match="whole number of steps"):
        S.pmatrix(tree, 1.5)
    soj = S.sojourn(tree).to_numpy().reshape(-1, 2)
    np.testing.assert_allclose(soj, 1 / (1 - draws[:, [0, 1], [0, 1]]))
    pn = S.pnext(tree).to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(pn[:, 0, 1], draws[:, 0, 1] / (1 - draws[:, 0, 0]))
    los = S.totlos(tree, 5, "a").to_numpy().reshape(-1, 3)
    ref = sum(np.linalg.matrix_power(draws, n)[:, 0, :] for n in range(5))
    np.testing.assert_allclose(los, ref, atol=1e-13)
    # expected steps to absorption = sum over n of P(not absorbed after n steps)
    pas = S.passage(tree, "c").to_numpy().reshape(-1, 2)
    tail = sum(np.linalg.matrix_power(draws[:, :2, :2], n).sum(axis=-1) for n in range(2000))
    np.testing.assert_allclose(pas, tail, rtol=1e-9)
    assert S.summarize(tree, "sojourn").attrs["units"] == "steps"


# ---------------------------------------------------------------- layering


def test_summaries_do_not_import_pymc():
    code = textwrap.dedent(
        """
        import sys
        import markov_migration.results.summaries, markov_migration.results.checks, markov_migration.results.compare
        import markov_migration.plots.report, markov_migration.results.reproduce
        bad = [m for m in sys.modules if m.split(".")[0] in ("pymc", "pytensor", "nutpie")]
        print(",".join(bad))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


# ---------------------------------------------------------------- R msm


@pytest.mark.parametrize("model", ["three", "migration5"])
def test_against_r_msm(model, migration5):
    """Summaries at a fixed Q equal msm's to 1e-10 relative (measured: at most 4e-15
    absolute, 3e-13 relative on the smallest entry of P).

    msm's numbers are the committed references tests/results/summaries_<model>.json
    (msm 1.7: ``pmatrix.msm``, ``sojourn.msm``, ``pnext.msm``, ``totlos.msm``,
    ``efpt.msm`` with ``fixedpars = TRUE``), re-run against R by test_msm_results.py.
    """
    spec = parse_spec(THREE) if model == "three" else migration5
    panel = simulate_panel(spec, 150, seed=9)
    tree = exact_fit(spec, panel)
    target = spec.index("c") if model == "three" else spec.index("returned")
    start = np.full(spec.n_states, 1.0 / spec.n_states)
    horizon = 7.5
    raw = load(f"summaries_{model}")
    # The reference was computed at this generator, time, horizon, start and target.
    q = np.loadtxt(RESULTS / f"summaries_{model}_q.csv", delimiter=",")
    np.testing.assert_array_equal(q, spec.rate_matrix())
    assert (raw["t"], raw["horizon"], raw["tostate"]) == (1.7, horizon, target + 1)
    np.testing.assert_array_equal(raw["start"], start)
    ref = {k: np.array(raw[k], dtype=float) for k in ("P", "sojourn", "pnext", "totlos", "efpt")}

    p = S.summarize(tree, "pmatrix", t=1.7)["mean"].to_numpy()
    np.testing.assert_allclose(p, ref["P"], rtol=1e-10, atol=1e-13)
    soj = S.summarize(tree, "sojourn")["mean"].to_numpy()
    np.testing.assert_allclose(soj, ref["sojourn"], rtol=1e-10)
    # pnext: msm writes 0 in an absorbing state's row, we leave it undefined (NaN).
    nxt = S.summarize(tree, "pnext")["mean"].to_numpy()
    moving = [i for i, s in enumerate(spec.states) if s not in spec.absorbing]
    np.testing.assert_allclose(nxt[moving], ref["pnext"][moving], rtol=1e-10, atol=1e-13)
    assert np.all(np.delete(ref["pnext"], moving, axis=0) == 0)
    los = S.summarize(tree, "totlos", horizon=horizon, start=start.tolist())["mean"].to_numpy()
    np.testing.assert_allclose(los, ref["totlos"], rtol=1e-10)
    pas = S.summarize(tree, "passage", to=spec.states[target])
    finite = [spec.index(s) for s in pas["state"].values]
    np.testing.assert_allclose(pas["mean"].to_numpy(), ref["efpt"][finite], rtol=1e-10)
    assert np.all(
        ref["efpt"][[i for i in range(spec.n_states) if i not in finite and i != target]] < 0
    )


# -- fits with covariates and groups: one summary per generator, or a chosen one ----------

DESIGN = THREE + DESIGN_TABLES


@pytest.fixture(scope="module")
def design_fit(tmp_path_factory):
    from markov_migration.fitfile.format import write_fit
    from markov_migration.testing import fake_design_fit

    spec = parse_spec(DESIGN)
    tree = fake_design_fit(spec, simulate_panel(spec, 400, seed=5), draws=200, group_sd=0.5)
    path = write_fit(tree, tmp_path_factory.mktemp("design") / "fit.nc")
    return spec, tree, path


def test_summaries_per_pattern_and_group(design_fit):
    _, tree, _ = design_fit
    frame = S.to_frame(S.summarize(tree, "leave"))
    assert list(frame.columns) == ["pattern", "group", "state", *S.STATS]
    assert len(frame) == 2 * 3 * 2  # patterns x groups x non-absorbing states
    q = tree["posterior"]["Q"].sel(pattern="reason=work", group="Y", from_state="b", to_state="b")
    row = frame.query("pattern == 'reason=work' and group == 'Y' and state == 'b'")
    assert float(row["mean"].iloc[0]) == pytest.approx(float((-np.expm1(q)).mean()), rel=1e-12)
    hz = S.to_frame(S.summarize(tree, "hazard"))
    assert list(hz.columns) == ["covariate", "from", "to", *S.STATS]
    assert list(hz["covariate"]) == ["reason[work]", "reason[work]", "age"]


def test_a_chosen_generator(design_fit):
    _, tree, _ = design_fit
    post = tree["posterior"]
    chosen = S.at_generator(tree, {"reason": "work"}, group="Y")
    expected = post["Q"].sel(pattern="reason=work", group="Y")
    np.testing.assert_allclose(chosen["posterior"]["Q"].values, expected.values, rtol=1e-12)
    assert json.loads(chosen.attrs["generator"])["group"] == "Y"
    # ten years older: a->b (the only transition age acts on) times HR^10
    older = S.at_generator(
        tree,
        {
            "reason": "work",
            "age": 10
            + float(tree["constant_data"]["covariate_center"].sel(numeric_covariate="age")),
        },
        group="Y",
    )
    hr_age = post["hazard_ratio"].isel(covariate_effect=2).values
    ratio = older["posterior"]["Q"].values[..., 0, 1] / expected.values[..., 0, 1]
    np.testing.assert_allclose(ratio, hr_age**10, rtol=1e-10)
    np.testing.assert_allclose(
        older["posterior"]["Q"].values[..., 1, 0], expected.values[..., 1, 0], rtol=1e-12
    )


def test_a_new_group_has_the_population_spread(design_fit):
    _, tree, _ = design_fit
    post = tree["posterior"]
    new = S.at_generator(tree, {"reason": "draft"}, group="new", seed=4)
    again = S.at_generator(tree, {"reason": "draft"}, group="new", seed=4)
    np.testing.assert_array_equal(new["posterior"]["Q"].values, again["posterior"]["Q"].values)
    # log q_ab of a new host minus the baseline log rate is u ~ Normal(0, group_sd ~ 0.5)
    u = np.log(new["posterior"]["Q"].values[..., 0, 1]) - post["log_rate"].values[..., 0]
    # a->b also has the age effect at the centre (0) and reason at the reference (1)
    assert u.mean() == pytest.approx(0.0, abs=0.1)  # 400 draws: se 0.025
    assert u.std() == pytest.approx(float(post["group_sd"].values[..., 0].mean()), rel=0.15)


def test_summarize_command_with_a_chosen_generator(design_fit):
    from typer.testing import CliRunner

    from markov_migration.cli.app import app

    _, _, path = design_fit
    runner = CliRunner()
    res = runner.invoke(
        app, ["summarize", str(path), "--what", "leave", "--format", "csv", "--group", "new",
              "--covariate", "reason=work", "--covariate", "age=50"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    header, *rows = res.stdout.strip().splitlines()
    assert header == "state,mean,sd,median,lower,upper" and len(rows) == 2
    res = runner.invoke(app, ["summarize", str(path), "--what", "hazard", "--format", "csv"])
    assert res.stdout.splitlines()[0] == "covariate,from,to,mean,sd,median,lower,upper"
    res = runner.invoke(
        app, ["summarize", str(path), "--what", "qmatrix", "--format", "json", "--group", "X",
              "--covariate", "reason=draft"],
    )  # fmt: skip
    assert json.loads(json.loads(res.stdout)["generator"])["group"] == "X"
    for args, message in [
        (["--group", "Q"], "'Q' is not a group of the fit"),
        (["--group", "X", "--covariate", "age=old"], "'old' is not a number"),
        (["--covariate", "reason=work"], "choose one with --group"),
        (["--what", "hazard", "--group", "X"], "do not depend on --covariate"),
    ]:
        res = runner.invoke(app, ["summarize", str(path), *args])
        assert res.exit_code == 2, res.output
        assert message in res.stderr
