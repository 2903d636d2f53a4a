"""The Pearson-type goodness-of-fit test against R msm's ``pearson.msm`` and on simulated panels.

msm's reference is tests/results/pearson_cav.json (``pearson_cav.R``: msm 1.7's MLE of
its cav model and ``pearson.msm`` with its defaults). msm 1.7's Titman p-value uses an
expected information summed from mis-ordered aggregated counts (fixed upstream in msm
commit df48015); the script also records msm's information recomputed by msm's own C
code from correctly counted data and the weights ``lambda`` it then gives, which are
what we compute. Tolerances: counts exact; expected counts, statistic and weights
1e-8 relative (measured 7e-15 and 2e-12: both evaluate ``P(t)`` at the same MLE).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from markov_migration.core import pearson as CP
from markov_migration.core.quantities import pmatrix
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec, parse_spec
from markov_migration.io import models_dir
from markov_migration.plots.check_figures import write_outputs
from markov_migration.plots.report import render_report
from markov_migration.results.checks import run_checks
from markov_migration.results.pearson import pearson_test
from markov_migration.testing import fake_fit
from tests.results import RESULTS, load

REL = 1e-8


@pytest.fixture(scope="module")
def ref():
    return load("pearson_cav")


@pytest.fixture(scope="module")
def cav(ref):
    """cav's intervals, sorted by respondent and time: from, to, dt, time ending them."""
    raw = pd.read_csv(RESULTS / "cav.csv")
    resp, t, s = raw["PTNUM"].to_numpy(), raw["years"].to_numpy(), raw["state"].to_numpy() - 1
    o = np.lexsort((t, resp))
    resp, t, s = resp[o], t[o], s[o]
    later = np.flatnonzero(resp[1:] == resp[:-1]) + 1
    return s[later - 1], s[later], t[later] - t[later - 1], t[later]


def _msm_order(cats):
    """Our categories in msm's row order (observation-time group varying fastest)."""
    return [t * cats.n_interval + i for i in range(cats.n_interval) for t in range(cats.n_time)]


def test_groupings_tables_statistic_against_msm(ref, cav):
    frm, to, dt, tend = cav
    q = np.array(ref["Q"])
    cats = CP.msm_categories(tend, dt, 3, 3)
    np.testing.assert_allclose(cats.time_breaks, ref["time_quantiles"], rtol=1e-12)
    for ours, theirs in zip(cats.interval_breaks, ref["interval_quantiles"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    probs = pmatrix(q, dt)[np.arange(dt.size), frm]
    obs, exp = CP.pearson_tables(cats.code, frm, to, probs, cats.n_categories)
    pairs = CP.interval_transitions(q > 0)
    assert [f"{a + 1}-{b + 1}" for a, b in pairs] == ref["transitions"]
    rows = _msm_order(cats)
    np.testing.assert_array_equal(obs[rows][:, pairs[:, 0], pairs[:, 1]], ref["observed"])
    np.testing.assert_allclose(
        exp[rows][:, pairs[:, 0], pairs[:, 1]], ref["expected"], rtol=REL, atol=1e-12
    )
    stat = CP.pearson_statistic(obs, exp, pairs)
    assert stat == pytest.approx(ref["stat"], rel=REL)
    assert CP.degrees_of_freedom(obs, pairs, n_parameters=7) == (ref["df_lower"], ref["df_upper"])
    p_lower, p_upper = CP.chi_square_bounds(stat, ref["df_lower"], ref["df_upper"])
    assert p_lower < 1e-70 and p_upper < 1e-70  # msm prints 0 for both
    assert ref["p_lower"] == 0 and ref["p_upper"] == 0 and ref["p"] == 0


def test_other_grouping_against_msm(ref, cav):
    """pearson.msm(timegroups = 4, intervalgroups = 2): same tables and statistic."""
    frm, to, dt, tend = cav
    q = np.array(ref["Q"])
    cats = CP.msm_categories(tend, dt, 4, 2)
    probs = pmatrix(q, dt)[np.arange(dt.size), frm]
    obs, exp = CP.pearson_tables(cats.code, frm, to, probs, cats.n_categories)
    pairs = CP.interval_transitions(q > 0)
    rows = _msm_order(cats)
    np.testing.assert_array_equal(obs[rows][:, pairs[:, 0], pairs[:, 1]], ref["observed_4x2"])
    np.testing.assert_allclose(
        exp[rows][:, pairs[:, 0], pairs[:, 1]], ref["expected_4x2"], rtol=REL, atol=1e-12
    )
    assert CP.pearson_statistic(obs, exp, pairs) == pytest.approx(ref["stat_4x2"], rel=REL)
    assert CP.degrees_of_freedom(obs, pairs, 7) == (ref["df_lower_4x2"], ref["df_upper_4x2"])


def test_titman_weights_against_msm(ref, cav):
    """Information and weights equal msm's C code on correctly counted data; with msm 1.7's
    own (mis-aggregated) information we reproduce msm 1.7's weights too."""
    frm, to, dt, tend = cav
    q = np.array(ref["Q"])
    cats = CP.msm_categories(tend, dt)
    moves = np.argwhere((q > 0) & ~np.eye(4, dtype=bool))  # msm's parameter order
    p_u, dp_u, key = CP.pmatrix_derivatives(q, dt, moves)
    probs, dprobs = p_u[key, frm], dp_u[key, frm]
    _, exp = CP.pearson_tables(cats.code, frm, to, probs, cats.n_categories)
    pairs = CP.interval_transitions(q > 0)
    info = CP.expected_information(probs, dprobs)
    np.testing.assert_allclose(2 * info, ref["information_corrected"], rtol=REL)
    n = ref["df_upper"]  # the rest are 0 up to rounding (|lambda| < 1e-14)
    lam = CP.titman_weights(cats.code, frm, probs, dprobs, exp, pairs)
    np.testing.assert_allclose(lam[:n], ref["lambda_corrected"][:n], rtol=REL)
    assert np.abs(lam[n:]).max() < 1e-12
    lam17 = CP.titman_weights(
        cats.code, frm, probs, dprobs, exp, pairs, information=0.5 * np.array(ref["information"])
    )
    np.testing.assert_allclose(lam17[:n], ref["lambda"][:n], rtol=REL)
    assert CP.weighted_chi_square_sf(ref["stat"], lam) == ref["p_corrected"] == 0


def test_weighted_chi_square_sf():
    """Imhof's inversion against chi-square tails (equal weights, scaled weights): 1e-6."""
    for x, df in [(60.0, 62), (5.0, 3), (0.5, 1), (100.0, 69)]:
        assert CP.weighted_chi_square_sf(x, np.ones(df)) == pytest.approx(
            stats.chi2.sf(x, df), abs=1e-6
        )
    # 2 chi2(3) + 0.5 chi2(2): against a large simulation (se ~ 0.0007)
    w = np.array([2, 2, 2, 0.5, 0.5])
    draws = (np.random.default_rng(1).chisquare(1, (400_000, 5)) * w).sum(axis=1)
    assert CP.weighted_chi_square_sf(9.0, w) == pytest.approx(np.mean(draws > 9.0), abs=3e-3)


def test_quantile_cut_matches_msm_qcut():
    """Codes of msm:::qcut (msm 1.7), repeated quantiles included (from Rscript, by hand)."""
    cases = [
        ([1, 1, 1, 1, 2, 3], 3, [1, 1, 1, 1, 3, 3]),
        ([0.5, 1, 1, 1, 1, 1, 2, 2, 7], 4, [1, 2, 2, 2, 2, 2, 4, 4, 4]),
        (list(range(1, 11)), 3, [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]),
    ]
    for x, n, codes in cases:
        x = np.asarray(x, dtype=float)
        np.testing.assert_array_equal(CP.quantile_cut(x, CP.quantile_edges(x, n))[0] + 1, codes)


def test_interval_transitions():
    allowed = np.zeros((4, 4), dtype=bool)
    allowed[0, 1] = allowed[1, 2] = allowed[2, 3] = True  # progressive: 0 -> 1 -> 2 -> 3
    pairs = CP.interval_transitions(allowed)
    assert [tuple(p) for p in pairs] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cav_fit(ref):
    """A fake fit of cav whose every draw is msm's MLE (posterior mean = MLE)."""
    spec = load_spec(models_dir() / "cav.toml")
    q = np.array(ref["Q"])
    spec = dataclasses.replace(spec, rates={p: q[p] for p in spec.transitions})
    return fake_fit(spec, pd.read_csv(RESULTS / "cav.csv"), spread=0.0, draws=50)


def test_fit_file_test_equals_msm_and_rejects_cav(ref, cav_fit):
    """From the fit file at msm's MLE: msm's table and statistic; cav rejected (p < 0.001)."""
    res = pearson_test(cav_fit, n_draws=100, seed=1)
    assert res.statistic == pytest.approx(ref["stat"], rel=REL)
    assert (res.df_lower, res.df_upper) == (ref["df_lower"], ref["df_upper"])
    np.testing.assert_allclose(
        res.weights[: ref["df_upper"]], ref["lambda_corrected"][: ref["df_upper"]], rtol=REL
    )
    t = res.table
    assert len(t) == 9 * 12
    cats = res.categories
    for r, c in enumerate(_msm_order(cats)):
        tg, ig = divmod(c, cats.n_interval)
        sub = t[(t["time_group"] == t["time_group"].unique()[tg])]
        sub = sub[sub["interval_group"] == sub["interval_group"].unique()[ig]]
        np.testing.assert_array_equal(sub["observed"], ref["observed"][r])
        np.testing.assert_allclose(sub["expected"], ref["expected"][r], rtol=REL, atol=1e-12)
        np.testing.assert_allclose(sub["deviance"], ref["deviance"][r], rtol=REL, atol=1e-12)
    assert res.p < 0.001 and res.p_upper < 0.001
    assert res.ppp < 0.001  # no replicated panel comes near X = 535 (they average ~60)
    assert np.mean(res.replicated_discrepancy) < 100


THREE = """
name = "three"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
c = ["a", "b"]
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
"c->a" = 0.2
"c->b" = 0.1
[simulate]
waves = [0, 1, 2, 3, 4]
jitter = 0.4
initial = { a = 0.5, b = 0.3, c = 0.2 }
"""


@pytest.fixture(scope="module")
def three():
    return parse_spec(THREE)


def test_well_specified_panel_is_not_rejected(three):
    """Panels simulated from the model, fitted at the truth: not rejected.

    Fake posteriors around the true rates (sd 0.05 on the log scale). Measured over
    these 20 panels of 600 respondents (5 irregular waves, 3 x 3 categories, df 48-54):
    the predictive p-value >= 0.01 in 20 of 20 (median 0.32); Titman's p >= 0.01 in 19
    of 20 (5 below 0.05: at the truth rather than the MLE, Titman's correction for
    estimated parameters makes it anti-conservative; ``p_upper``, chi2(df_upper), is
    below 0.05 in 2 of 20).
    """
    ppps, ps = [], []
    for r in range(20):
        tree = fake_fit(three, simulate_panel(three, 600, seed=300 + r), spread=0.05, seed=r)
        res = pearson_test(tree, n_draws=100, seed=r)
        ppps.append(res.ppp)
        ps.append(res.p)
    ppps, ps = np.array(ppps), np.array(ps)
    assert np.mean(ppps >= 0.01) >= 0.9
    assert np.mean(ps >= 0.01) >= 0.9
    assert 0.2 < np.median(ppps) < 0.8


def test_check_table_outputs_and_report(cav_fit, tmp_path):
    """`check` carries the row, writes ppc_pearson.csv/png and the report's section."""
    report = run_checks(cav_fit, n_draws=50)
    row = next(c for c in report.checks if c.name == "ppc_pearson")
    assert row.passed is False and row.value < 0.01
    assert "X = 534.9" in row.detail
    written = {p.name for p in write_outputs(report, cav_fit, tmp_path)}
    assert {"ppc_pearson.csv", "ppc_pearson.png"} <= written
    disc = pd.read_csv(tmp_path / "ppc_discrepancy.csv")
    assert {"pearson_observed", "pearson_replicated"} <= set(disc.columns)
    html = render_report(cav_fit, report)
    assert "pearson.msm" in html and "at least as discrepant" in html


def test_fit_with_covariates_groups_and_periods():
    """Keyed fits: each interval's own P (likelihood kernel); no Titman p, df bounds equal.

    The expected counts of each from-state and category sum to its observed intervals
    (rows of P sum to 1; 1e-9).
    """
    from markov_migration.testing import fake_design_fit
    from tests.test_checks import PREVALENCE_DESIGN

    spec = parse_spec(PREVALENCE_DESIGN)
    tree = fake_design_fit(spec, simulate_panel(spec, 150, seed=9), draws=40, group_sd=0.5)
    res = pearson_test(tree, n_draws=40)
    assert 0.0 <= res.ppp <= 1.0
    assert np.isnan(res.p) and res.df_lower == res.df_upper and res.p_lower == res.p_upper
    t = res.table
    by = t.groupby(["time_group", "interval_group", "from"])[["observed", "expected"]].sum()
    np.testing.assert_allclose(by["expected"], by["observed"], rtol=1e-9, atol=1e-9)
    # every interval from a transient state (c is absorbing) is in one cell
    from markov_migration.fitfile.readback import panel_sequences

    _, _, state, first, _ = panel_sequences(tree)
    later = np.flatnonzero(~first)
    assert t["observed"].sum() == np.sum(state[later - 1] != spec.states.index("c"))


def test_draws_in_chunks_give_the_same_result(three, monkeypatch):
    """Chunking the draws (to bound memory) changes nothing (1e-12: summation order)."""
    import markov_migration.results.pearson as RP

    tree = fake_fit(three, simulate_panel(three, 200, seed=5), spread=0.05, draws=30)
    whole = RP.pearson_test(tree, n_draws=60, seed=2)
    monkeypatch.setattr(RP, "CHUNK_ELEMENTS", 1)
    chunked = RP.pearson_test(tree, n_draws=60, seed=2)
    for a, b in [
        (whole.observed_discrepancy, chunked.observed_discrepancy),
        (whole.replicated_discrepancy, chunked.replicated_discrepancy),
    ]:
        np.testing.assert_allclose(a, b, rtol=1e-12)
    pd.testing.assert_frame_equal(whole.table, chunked.table, rtol=1e-12)
    assert whole.statistic == pytest.approx(chunked.statistic, rel=1e-12)


def test_wrong_rates_are_rejected(three):
    """A 'posterior' at three times the true rates: both the check and the plug-in reject.

    Measured: predictive p 0 of 100 draws, Titman's p 0 (X = 660 on df 48-54).
    """
    panel = simulate_panel(three, 600, seed=7)
    fast = dataclasses.replace(three, rates={p: 3 * v for p, v in three.rates.items()})
    res = pearson_test(fake_fit(fast, panel, spread=0.05, seed=1), n_draws=100)
    assert res.ppp < 0.01 and res.p < 0.001 and res.p_upper < 0.001


def test_fit_with_an_observation_model_is_skipped(three):
    """Exact death times (msm's Titman-Sharples modification) are not implemented: skipped."""
    from markov_migration.errors import InputError

    text = THREE.replace('c = ["a", "b"]\n', "").replace('"c->a" = 0.2\n"c->b" = 0.1\n', "")
    spec = parse_spec(text + '\n[observation]\nexact = ["c"]\n')
    tree = fake_fit(spec, simulate_panel(spec, 100, seed=1), draws=10)
    with pytest.raises(InputError, match="observation model"):
        pearson_test(tree)
    row = next(c for c in run_checks(tree, n_draws=10).checks if c.name == "ppc_pearson")
    assert row.status == "skipped" and "observation model" in row.detail


@pytest.mark.slow
@pytest.mark.validation  # 20 real fits (about 2 minutes): make validate
def test_calibration_with_fitted_posteriors(three):
    """Real fits (nutpie, 2 x 500 draws) of 20 panels simulated from the model.

    Measured over 40 such panels (400 respondents): predictive p-values mean 0.520,
    sd 0.276 (uniform: 0.5, 0.289), Kolmogorov-Smirnov distance to the uniform 0.086
    (p = 0.90), below 0.1 in 4 of 40 and below 0.01 in none; correlation with
    Titman's p at the posterior mean 0.997 (largest difference 0.08). Tolerances: the
    mean within 0.15 of 0.5 (about 2.3 standard errors of a mean of 20 uniforms) and
    at most 2 of 20 below 0.01.
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel

    ppps, ps = [], []
    for r in range(20):
        panel = validate_panel(
            simulate_panel(three, 400, seed=1000 + r), three, path="<sim>", sha256="e" * 64
        )
        settings = FitSettings(chains=2, draws=500, tune=500, seed=r, cores=1)
        tree = sample(three, aggregate(panel, three), settings, panel=panel)
        res = pearson_test(tree, n_draws=500, seed=r)
        ppps.append(res.ppp)
        ps.append(res.p)
    ppps, ps = np.array(ppps), np.array(ps)
    assert abs(ppps.mean() - 0.5) < 0.15, ppps
    assert np.sum(ppps < 0.01) <= 2, ppps
    assert np.corrcoef(ppps, ps)[0, 1] > 0.9, (ppps, ps)
