"""Convergence checks and posterior predictive checks.

Fast tests use fake fits (independent draws around known rates) and hand-made
sample statistics; the slow ones sample real posteriors with nutpie on small
simulated panels (one compile per session, shared with the other test modules
through the in-process model cache).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from markov_migration.core import ppc as CP
from markov_migration.defaults import QUANTILE_WAVES, THRESHOLDS
from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.inputs.waves import wave_bins, wave_index
from markov_migration.plots.check_figures import write_outputs
from markov_migration.results import diagnostics as D
from markov_migration.results import ppc as P
from markov_migration.results.checks import run_checks
from markov_migration.testing import fake_fit
from tests.conftest import DESIGN_TABLES, THREE_SIMULATED, stored_fit

#: Three states, "c" absorbing (same structure as the fit tests: one shared compile).
THREE = THREE_SIMULATED


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def panel(spec):
    return simulate_panel(spec, 400, seed=21)


@pytest.fixture(scope="module")
def good(spec, panel):
    """Draws close to the true rates: a correctly specified 'posterior'."""
    return fake_fit(spec, panel, chains=4, draws=300, spread=0.08, seed=3)


@pytest.fixture(scope="module")
def wrong(spec, panel):
    """Draws around rates three times too high: the predictive checks must fail."""
    rates = 3.0 * np.array([spec.rates[p] for p in spec.transitions])
    from markov_migration.testing import fake_posterior

    tree = fake_fit(spec, panel, chains=2, draws=200, spread=0.05, seed=4)
    post = fake_posterior(spec, rates, chains=2, draws=200, spread=0.05, seed=4)
    tree["posterior"] = xr.DataTree(post)
    return tree


# ---------------------------------------------------------------- convergence


def _split_rhat(x: np.ndarray) -> float:
    """Classic split R-hat of draws ``x`` (chain, draw) with an even number of draws."""
    n = x.shape[1] // 2
    halves = np.concatenate([x[:, :n], x[:, n:]], axis=0)
    within = halves.var(axis=1, ddof=1).mean()
    between = n * halves.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def _rank_normalised(x: np.ndarray) -> np.ndarray:
    r = stats.rankdata(x, method="average").reshape(x.shape)
    return stats.norm.ppf((r - 3 / 8) / (x.size + 1 / 4))


def reference_rhat(x: np.ndarray) -> float:
    """Rank-normalised split R-hat (Vehtari et al. 2021, eqs. in section 4.2), in numpy.

    The larger of the bulk R-hat (rank-normalised draws) and the tail R-hat
    (rank-normalised draws folded about the median).
    """
    bulk = _split_rhat(_rank_normalised(x))
    tail = _split_rhat(_rank_normalised(np.abs(x - np.median(x))))
    return max(bulk, tail)


def test_convergence_table_against_an_independent_rhat(spec, panel):
    """Columns, labels, mean and sd against numpy and R-hat against :func:`reference_rhat`.

    The table comes from ArviZ; the reference is written here from the paper. Chain 1
    is shifted so that R-hat is well above 1 and the comparison is not of values near 1.
    Tolerance 1e-10 (both compute the same formula in floating point).
    """
    tree = fake_fit(spec, panel, chains=3, draws=200, spread=0.08, seed=3)
    post = tree["posterior"].to_dataset()
    shifted = post["log_rate"].copy()
    shifted[1] += 0.05
    post["log_rate"] = shifted
    tree["posterior"] = xr.DataTree(post)
    table = D.convergence_table(tree)
    assert list(table.columns) == [
        "parameter",
        "mean",
        "sd",
        "rhat",
        "ess_bulk",
        "ess_tail",
        "mcse_mean",
    ]
    assert list(table["parameter"]) == ["a->b", "a->c", "b->a", "b->c"]
    draws = shifted.transpose("chain", "draw", "transition").to_numpy()
    for i in range(draws.shape[-1]):
        x = draws[..., i]
        row = table.iloc[i]
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(x.std(ddof=1), rel=1e-12)
        assert row["rhat"] == pytest.approx(reference_rhat(x), rel=1e-10)
        assert row["rhat"] > 1.01
        # MCSE of the mean is sd / sqrt(bulk-like ESS of the mean): between the extremes
        assert 0 < row["mcse_mean"] < row["sd"]


def test_ebfmi_against_its_definition(good):
    """E-BFMI per chain = sum (E_n - E_{n-1})^2 / sum (E_n - mean E)^2 (Betancourt 2016)."""
    energy = good["sample_stats"]["energy"].transpose("chain", "draw").to_numpy()
    ref = (np.diff(energy, axis=1) ** 2).sum(axis=1) / ((energy.T - energy.mean(axis=1)) ** 2).sum(
        axis=0
    )
    check = next(c for c in D.convergence_checks(good) if c.name == "ebfmi")
    assert check.value == pytest.approx(ref.min(), rel=1e-10)
    assert check.detail.endswith(", ".join(f"{x:.2f}" for x in ref))


def test_convergence_passes_for_independent_draws(good):
    checks = {c.name: c for c in D.convergence_checks(good)}
    assert all(checks[n].passed for n in ("rhat", "ess_bulk", "ess_tail", "divergences", "ebfmi"))
    assert checks["ess_bulk"].threshold.startswith(">= 400")  # 4 chains x 100


def test_convergence_fails_with_few_draws(spec, panel):
    tree = fake_fit(spec, panel, chains=2, draws=30, spread=0.1, seed=5)
    checks = {c.name: c for c in D.convergence_checks(tree)}
    assert checks["ess_bulk"].passed is False and checks["ess_tail"].passed is False
    assert checks["ess_bulk"].value < 200


def test_rhat_fails_when_chains_disagree(spec, panel):
    tree = fake_fit(spec, panel, chains=2, draws=300, spread=0.05, seed=6)
    post = tree["posterior"].to_dataset()
    shifted = post["log_rate"].copy()
    shifted[1] += 0.1  # chain 1 sits elsewhere
    post["log_rate"] = shifted
    tree["posterior"] = xr.DataTree(post)
    checks = {c.name: c for c in D.convergence_checks(tree)}
    assert checks["rhat"].passed is False and checks["rhat"].value > 1.1


def test_divergences_and_ebfmi_fail(spec, panel):
    tree = fake_fit(spec, panel, chains=2, draws=300, seed=7)
    ss = tree["sample_stats"].to_dataset()
    div = ss["diverging"].to_numpy().copy()
    div[0, :3] = 1
    ss["diverging"] = (("chain", "draw"), div)
    # a slowly wandering energy (random walk): E-BFMI far below 0.3
    rng = np.random.default_rng(0)
    ss["energy"] = (("chain", "draw"), np.cumsum(rng.standard_normal((2, 300)), axis=1))
    tree["sample_stats"] = xr.DataTree(ss)
    checks = {c.name: c for c in D.convergence_checks(tree)}
    assert checks["divergences"].passed is False and checks["divergences"].value == 3
    assert "per chain: 3, 0" in checks["divergences"].detail
    assert checks["ebfmi"].passed is False and checks["ebfmi"].value < 0.3


def test_missing_sample_stats_are_skipped_not_failed(good):
    tree = good.copy()
    tree["sample_stats"] = xr.DataTree(xr.Dataset())
    checks = {c.name: c for c in D.convergence_checks(tree)}
    assert checks["divergences"].passed is None and checks["ebfmi"].passed is None
    assert checks["divergences"].status == "skipped"


# ---------------------------------------------------------------- PPC: transition counts


def test_ppc_transitions_conserves_counts(good):
    res = P.ppc_transitions(good, n_draws=100, seed=1)
    obs = good["observed_data"].to_dataset().to_dataframe()
    t = res.table
    assert list(t.columns) == [
        "from", "to", "band", "band_lower", "band_upper", "observed", "expected",
        "mean", "median", "lower", "upper",
    ]  # fmt: skip
    states = ["a", "b", "c"]
    per_pair = obs.groupby(["from", "to"])["count"].sum()
    got = t.groupby(["from", "to"])["observed"].sum()
    for (f, to), n in per_pair.items():
        assert got[(states[f], states[to])] == n
    # replicated and expected counts keep each (from, band) total: a multinomial redistributes
    tot = t.groupby(["from", "band"])[["observed", "mean", "expected"]].sum()
    np.testing.assert_allclose(tot["mean"], tot["observed"], rtol=1e-12)
    np.testing.assert_allclose(tot["expected"], tot["observed"], rtol=1e-12)
    assert (t["lower"] <= t["upper"]).all()
    assert res.observed_discrepancy.shape == (100,) and 0 <= res.ppp <= 1
    assert set(t["band"]) and len(set(t["band"])) <= P.PPC_BANDS


def test_ppc_is_reproducible_with_a_seed(good):
    a = P.ppc_transitions(good, n_draws=50, seed=3)
    b = P.ppc_transitions(good, n_draws=50, seed=3)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.ppp == b.ppp


def test_ppc_detects_wrong_rates(good, wrong):
    assert P.ppc_transitions(good, n_draws=200).ppp > 0.05
    assert P.ppc_transitions(wrong, n_draws=200).ppp < THRESHOLDS["ppp_min"]
    assert P.ppc_prevalence(good, n_draws=200).ppp > 0.05
    assert P.ppc_prevalence(wrong, n_draws=200).ppp < THRESHOLDS["ppp_min"]
    report = run_checks(wrong, n_draws=200)
    failed = {c.name for c in report.failed}
    assert {"ppc_transitions", "ppc_prevalence"} <= failed


def test_chi_square():
    y = np.array([[3.0, 0.0, 5.0]])
    e = np.array([[2.0, 0.0, 4.0]])
    assert CP.chi_square(y, e)[0] == pytest.approx(1 / 2 + 1 / 4)


def test_interval_bands_equal_counts():
    iv = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    w = np.ones(6)
    edges = CP.interval_bands(iv, w, 3)
    np.testing.assert_allclose(edges, [1.0, 2.0, 3.0, 3.0][: edges.size])
    assert CP.interval_bands(np.array([0.5, 0.5]), np.ones(2), 3).tolist() == [0.5]


# ---------------------------------------------------------------- PPC: prevalence


def test_wave_bins_cluster_or_fall_back_to_quantiles():
    rng = np.random.default_rng(1)
    waves = np.concatenate([w + rng.uniform(-0.1, 0.1, 50) for w in (2022.7, 2023.55, 2024.55)])
    edges = wave_bins(waves)
    assert edges.size == 4
    idx = wave_index(waves, edges)
    assert np.bincount(idx).tolist() == [50, 50, 50]
    spread = rng.uniform(0, 10, 300)
    edges = wave_bins(spread)
    assert edges.size == QUANTILE_WAVES + 1


def test_ppc_prevalence_counts(good):
    res = P.ppc_prevalence(good, n_draws=100)
    t = res.table
    pdata = good["panel_data"].to_dataset()
    resp, time, state = (pdata[v].to_numpy() for v in ("respondent", "time", "state"))
    # independent count: wave of each observation = nearest design wave; not a first observation
    wave = np.rint(time).astype(int)
    first = pd.Series(time).groupby(resp).transform("min").to_numpy()
    later = time > first
    for w in (1, 2, 3):
        sel = later & (wave == w)
        counts = np.bincount(state[sel], minlength=3)
        sub = t[t["wave"] == w + 1].set_index("state")
        assert sub["n"].iloc[0] == sel.sum()
        assert sub.loc[["a", "b", "c"], "observed"].tolist() == counts.tolist()
        np.testing.assert_allclose(sub["expected_pct"].sum(), 100.0, rtol=1e-12)
    assert 1 not in set(t["wave"])  # nobody was seen before the first wave
    assert res.notes and "first wave" in res.notes[0]


def test_prevalence_without_embedded_panel_is_skipped(good):
    tree = good.copy()
    del tree["panel_data"]
    with pytest.raises(InputError, match="no embedded panel"):
        P.ppc_prevalence(tree)
    report = run_checks(tree, n_draws=50)
    prev = next(c for c in report.checks if c.name == "ppc_prevalence")
    assert prev.passed is None and "no embedded panel" in prev.detail
    assert report.ok


def test_simulated_paths_follow_the_chain():
    """Joint distribution of two replicated observations against P1[s0, a] P2[a, b].

    200 draws x 500 respondents = 100,000 paths per cell; tolerance 5 binomial sd.
    """
    rng = np.random.default_rng(3)
    p1 = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.0, 0.0, 1.0]])
    p2 = np.array([[0.5, 0.4, 0.1], [0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    n_resp, n_draw = 500, 200
    first = np.zeros(3 * n_resp, dtype=bool)
    first[::3] = True
    p_gap = np.broadcast_to(np.stack([p1, p2]), (n_draw, 2, 3, 3))
    gap_key = np.tile([0, 1], n_resp)
    sim = P.simulate_paths(rng, p_gap, np.zeros(n_resp, dtype=np.int64), resp_start=first,
                           gap_key=gap_key)  # fmt: skip
    assert np.all(sim[:, ::3] == 0)
    pairs = sim[:, 1::3] * 3 + sim[:, 2::3]
    freq = np.bincount(pairs.ravel(), minlength=9) / pairs.size
    exact = (p1[0][:, None] * p2).ravel()
    sd = np.sqrt(exact * (1 - exact) / pairs.size)
    assert np.all(np.abs(freq - exact) <= 5 * sd + 1e-12), (freq, exact)


def test_prevalence_replications_match_the_expected_prevalence(good):
    """The joint replications' mean prevalence equals the expected one (P(t - t_first)).

    Gaps are rounded one by one in the replications and as a whole in the
    expectation: differences of order rate x resolution, far below the tolerance
    (4 sd of a mean of 200 replications, plus 0.1 percentage points).
    """
    res = P.ppc_prevalence(good, n_draws=200, seed=2)
    t = res.table
    sd = np.sqrt(t["expected_pct"] * (100 - t["expected_pct"]) / t["n"]) / np.sqrt(200)
    assert np.all(np.abs(t["mean_pct"] - t["expected_pct"]) <= 4 * sd + 0.1), t


PREVALENCE_DESIGN = THREE.replace('home = ["a"]', 'home = ["a"]\nperiods = [1.5]') + DESIGN_TABLES


def test_prevalence_of_a_fit_with_covariates_groups_and_periods():
    """Expected prevalence against each respondent's own generators, one respondent at a time.

    Reference: for every later observation, row s0 of
    expm(Q_1 lead) @ expm(Q_2 (dt - lead)) with Q_p from fitfile.generator_draws at the
    respondent's first covariates, group and period p (gaps rounded to the resolution as
    the panel layer does); tolerance 1e-9 on percentages.
    """
    from markov_migration.core.likelihood import pmatrix
    from markov_migration.fitfile.generators import generator_draws
    from markov_migration.fitfile.readback import recorded_panel
    from markov_migration.inputs.aggregate import period_keys
    from markov_migration.testing import fake_design_fit

    spec = parse_spec(PREVALENCE_DESIGN)
    tree = fake_design_fit(spec, simulate_panel(spec, 120, seed=9), draws=40, group_sd=0.5)
    res = P.ppc_prevalence(tree, n_draws=80)
    assert 0.0 <= res.ppp <= 1.0
    data = recorded_panel(tree, spec).data
    res_ = float(tree["constant_data"]["resolution"])
    labels = [str(x) for x in tree["posterior"]["period"].values]
    expected = {}
    n = {}
    for _, g in data.groupby("id", sort=False):
        g = g.sort_values("time")
        first = g.iloc[0]
        covs = {"reason": first["reason"], "age": float(first["age"])}
        q = [
            generator_draws(tree, covs, first["host"], lab).values.reshape(-1, 3, 3)
            for lab in labels
        ]
        for _, obs in g.iloc[1:].iterrows():
            ticks = np.round((obs["time"] - first["time"]) / res_)
            start, lead = period_keys(np.array([first["time"]]), np.array([ticks]), spec, res_)
            dt, lead = ticks * res_, float(lead[0])
            p = pmatrix(q[int(start[0])], lead)
            if lead < dt:
                p = p @ pmatrix(q[int(start[0]) + 1], dt - lead)
            w = int(np.rint(obs["time"]))
            expected[w] = expected.get(w, 0.0) + p[:, int(first["state"]), :].mean(axis=0)
            n[w] = n.get(w, 0) + 1
    for w, total in expected.items():
        sub = res.table[res.table["wave"] == w + 1].set_index("state")
        assert int(sub["n"].iloc[0]) == n[w]
        np.testing.assert_allclose(
            sub.loc[["a", "b", "c"], "expected_pct"].to_numpy(), 100 * total / n[w], atol=1e-9
        )
    report = run_checks(tree, n_draws=40)
    prev = next(c for c in report.checks if c.name == "ppc_prevalence")
    assert prev.passed is not None  # run, not skipped


def test_joint_replications_of_a_fit_with_covariates_groups_and_periods():
    """Each gap from its own generator pieces: replicated prevalence matches the expected.

    Covariates and groups are constant per respondent here, so the gap-by-gap
    replications must average to ``P(t - t_first)`` of the first observation's
    generators (the expectation, checked to 1e-9 above); tolerance 4 sd of a mean of
    200 replications plus 0.1 percentage points (measured |z| < 1 with 300 respondents).
    """
    from markov_migration.testing import fake_design_fit

    spec = parse_spec(PREVALENCE_DESIGN)
    tree = fake_design_fit(spec, simulate_panel(spec, 150, seed=9), draws=100, group_sd=0.5)
    t = P.ppc_prevalence(tree, n_draws=200, seed=1).table
    sd = np.sqrt(t["expected_pct"] * (100 - t["expected_pct"]) / t["n"]) / np.sqrt(200)
    assert np.all(np.abs(t["mean_pct"] - t["expected_pct"]) <= 4 * sd + 0.1), t


# ---------------------------------------------------------------- outputs


def test_write_outputs(good, tmp_path):
    report = run_checks(good, n_draws=80)
    assert report.ok, report.table()
    files = write_outputs(report, good, tmp_path / "out")
    names = sorted(p.name for p in files)
    assert names == sorted(
        ["checks.csv", "convergence.csv", "ppc_transitions.csv", "ppc_prevalence.csv",
         "ppc_discrepancy.csv", "ppc_transitions.png", "ppc_prevalence.png",
         "ppc_discrepancy.png", "trace.png", "ppc_markov.csv", "ppc_markov.png",
         "ppc_pearson.csv", "ppc_pearson.png"]
    )  # fmt: skip
    for p in files:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checks = pd.read_csv(tmp_path / "out" / "checks.csv")
    assert list(checks["check"]) == [
        "rhat", "ess_bulk", "ess_tail", "divergences", "ebfmi", "ppc_transitions", "ppc_prevalence",
        "ppc_markov", "ppc_pearson", "prior_sensitivity",
    ]  # fmt: skip
    # a fake fit has no log prior: prior sensitivity is not run (real fits: test_sensitivity)
    ran = checks[checks["check"] != "prior_sensitivity"]
    assert set(ran["status"]) == {"pass"}
    assert "no log_prior" in checks.set_index("check").loc["prior_sensitivity", "detail"]
    with pytest.raises(InputError, match="output exists"):
        write_outputs(report, good, tmp_path / "out")
    write_outputs(report, good, tmp_path / "out", force=True)


# ---------------------------------------------------------------- real posteriors (slow)


@pytest.fixture(scope="module")
def real_fits():
    """Real nutpie fits of THREE (2 x 500 and 2 x 15 draws), stored by tests/data/make_fixtures.py."""
    return stored_fit("checks_well", THREE), stored_fit("checks_short", THREE)


@pytest.mark.slow
def test_real_fit_passes_and_short_run_fails(real_fits):
    well, short = real_fits
    ok = run_checks(well, n_draws=300)
    assert ok.ok, ok.table().to_string()
    bad = run_checks(short, n_draws=30)
    failed = {c.name for c in bad.failed}
    assert {"ess_bulk", "ess_tail"} <= failed, bad.table().to_string()


#: Replications of the predictive p-value uniformity check (slow; under a second each).
N_REPLICATIONS = 60


@pytest.mark.slow
@pytest.mark.validation
def test_ppp_roughly_uniform_under_the_true_model(spec):
    """Posterior predictive p-values of a correctly specified model over replicated panels.

    Posterior predictive p-values are conservative (concentrated towards 0.5)
    rather than exactly uniform. Measured over 100 replications (300
    respondents, 4 waves, 2 x 250 draws): transition counts mean 0.497, sd 0.240
    (uniform: 0.289), Kolmogorov-Smirnov distance 0.108 (p = 0.18); prevalence
    mean 0.540, sd 0.134, none below 0.1 or above 0.8 - markedly conservative
    (replicated from the joint Markov predictive, over 60 of these panels: mean
    0.510, sd 0.122, range 0.18-0.70; transition counts mean 0.494, sd 0.239).
    The test asks of both: no replication fails the check (p >= 0.01) and a mean
    within 0.5 +- 0.1; of the transition counts a KS distance below 0.2 (the 1%
    critical value for 60 draws is 0.21); of the prevalence an sd in [0.08, 0.32].
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel

    ppp = []
    for r in range(N_REPLICATIONS):
        df = simulate_panel(spec, 300, seed=1000 + r)
        validated = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
        settings = FitSettings(chains=2, draws=250, tune=300, seed=r)
        tree = sample(spec, aggregate(validated, spec), settings, panel=validated)
        transitions = P.ppc_transitions(tree, n_draws=250, seed=r).ppp
        ppp.append((transitions, P.ppc_prevalence(tree, n_draws=250, seed=r).ppp))
    ppp = np.array(ppp)
    for p in ppp.T:
        assert p.min() >= THRESHOLDS["ppp_min"], p
        assert abs(p.mean() - 0.5) < 0.1, p
    assert stats.kstest(ppp[:, 0], "uniform").statistic < 0.2, ppp[:, 0]
    assert 0.08 <= ppp[:, 1].std() <= 0.32, ppp[:, 1]


#: Replications of the prevalence check's calibration with the true parameters (slow).
N_CALIBRATION = 200


@pytest.mark.slow
@pytest.mark.validation  # a calibration study: 200 panels (make validate)
def test_prevalence_check_rejects_at_its_nominal_rate_given_the_truth(spec):
    """Rejection rate of the prevalence check when the 'posterior' is the true parameters.

    Then the p-value is that of a plain predictive test and should be about uniform.
    Measured over 1000 panels (300 respondents, 4 waves, 200 draws): the joint
    replications rejected 0.6%, 4.7% and 8.8% at the nominal 1%, 5% and 10% (mean
    0.514, sd 0.291); replicating every wave independently (the former method)
    rejected 2.6%, 7.4% and 12.0% of the same panels.
    Tolerance: 3 binomial sd above the nominal rate over N_CALIBRATION panels.
    """
    ppp = []
    for r in range(N_CALIBRATION):
        tree = fake_fit(spec, simulate_panel(spec, 300, seed=5000 + r), chains=1, draws=200,
                        spread=0.0, seed=r)  # fmt: skip
        ppp.append(P.ppc_prevalence(tree, n_draws=200, seed=r).ppp)
    ppp = np.array(ppp)
    for nominal in (0.01, 0.05, 0.1):
        bound = nominal + 3 * np.sqrt(nominal * (1 - nominal) / N_CALIBRATION)
        assert np.mean(ppp < nominal) <= bound, (nominal, np.mean(ppp < nominal))
    assert abs(ppp.mean() - 0.5) < 0.06


# ------------------------------------------------ diagnostics on every sampled variable

DESIGN_SPEC = THREE + DESIGN_TABLES


def _prefixes(table: pd.DataFrame) -> set[str]:
    return {str(p).split("[")[0] if "[" in str(p) else "log_rate" for p in table["parameter"]}


def test_convergence_table_covers_every_recorded_sampled_variable():
    """Fake fit with a covariate and groups: rows for every entry of every free variable.

    Expected rows counted from the posterior's shapes: 4 log rates, one per hazard-ratio
    parameter, one group sd per group transition, one group_z per (group, transition).
    """
    import json

    from markov_migration.testing import fake_design_fit

    spec = parse_spec(DESIGN_SPEC)
    tree = fake_design_fit(spec, simulate_panel(spec, 150, seed=4), chains=2, draws=60)
    recorded = json.loads(tree.attrs["sampled_variables"])
    assert recorded == ["log_rate", "log_hr_scaled", "group_sd", "group_z"]
    table = D.convergence_table(tree)
    post = tree["posterior"]
    n_expected = sum(
        int(np.prod([post[v].sizes[d] for d in post[v].dims if d not in ("chain", "draw")]))
        for v in recorded
    )
    assert len(table) == n_expected
    assert _prefixes(table) == {"log_rate", "log_hr_scaled", "group_sd", "group_z"}
    hr = post["hr_parameter"].values
    assert {f"log_hr_scaled[{h}]" for h in hr} <= set(table["parameter"])
    # the checks judge the new rows: a stuck hazard ratio fails R-hat by name
    p = tree["posterior"].to_dataset()
    stuck = p["log_hr_scaled"].copy()
    stuck[1] += 1.0
    p["log_hr_scaled"] = stuck
    tree["posterior"] = xr.DataTree(p)
    rhat = next(c for c in D.convergence_checks(tree) if c.name == "rhat")
    assert not rhat.passed and "log_hr_scaled" in rhat.detail


def test_convergence_table_follows_the_record_and_falls_back_without_it(spec, panel):
    """The record decides which variables are diagnosed; without it, the old list."""
    import json

    tree = fake_fit(spec, panel, chains=2, draws=50, seed=5)
    assert json.loads(tree.attrs["sampled_variables"]) == ["log_rate"]
    tree.attrs["sampled_variables"] = json.dumps(["rate"])
    assert set(D.convergence_table(tree)["parameter"]) == {
        f"rate[{t}]" for t in spec.transition_labels
    }
    del tree.attrs["sampled_variables"]  # an older fit file
    assert list(D.convergence_table(tree)["parameter"]) == list(spec.transition_labels)


@pytest.mark.slow
def test_real_fit_records_and_diagnoses_effects_and_groups(tmp_path):
    """A real nutpie fit with a covariate and groups: the PyMC model's free variables are
    recorded, kept in the posterior and each has rows in the convergence table; the
    written and re-read fit file gives the same table."""
    import json

    from markov_migration.fitfile.format import read_fit, write_fit
    from markov_migration.inference.fit import fit

    spec = parse_spec(DESIGN_SPEC)
    data = tmp_path / "panel.csv"
    simulate_panel(spec, 200, seed=8).to_csv(data, index=False)
    tree = fit(data, spec, chains=2, draws=100, tune=150, seed=2)
    recorded = json.loads(tree.attrs["sampled_variables"])
    # the model's per-transition ``default``: each log intensity has its own prior
    assert recorded == ["log_rate_direct", "log_hr_scaled", "group_sd", "group_z"]
    assert all(v in tree["posterior"] for v in recorded)
    table = D.convergence_table(tree)
    # log_rate_direct rows are labelled by their transition, as log_rate's
    assert _prefixes(table) == {"log_rate", "log_hr_scaled", "group_sd", "group_z"}
    assert set(spec.transition_labels) <= set(table["parameter"])
    again = D.convergence_table(read_fit(write_fit(tree, tmp_path / "f.nc")))
    pd.testing.assert_frame_equal(table, again)


def test_reproduce_compares_every_sampled_variable():
    """reproduce's comparison (fake fits, two seeds): rows for hazard ratios, group sds
    and group effects, and a shifted hazard ratio makes the verdict 'disagree'."""
    from markov_migration.results.reproduce import compare_draws
    from markov_migration.testing import fake_design_fit

    spec = parse_spec(DESIGN_SPEC)
    panel = simulate_panel(spec, 150, seed=4)
    a = fake_design_fit(spec, panel, chains=2, draws=200, seed=1)
    b = fake_design_fit(spec, panel, chains=2, draws=200, seed=2)
    verdict, table, _ = compare_draws(a, a)
    assert verdict == "exact"
    assert _prefixes(table) == {"log_rate", "log_hr_scaled", "group_sd", "group_z"}
    p = b["posterior"].to_dataset()
    p["log_hr_scaled"] = p["log_hr_scaled"] + 1.0
    b["posterior"] = xr.DataTree(p)
    verdict, table, _ = compare_draws(a, b)
    worst = table.loc[table["z"].abs().idxmax(), "parameter"]
    assert verdict == "disagree" and worst.startswith("log_hr_scaled[")
