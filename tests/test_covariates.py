"""Covariates: log-linear hazard ratios on chosen intensities.

References: the likelihood is checked against generators built pair by pair and
``scipy.linalg.expm``; the fit against the simulator's true hazard ratios and
against R msm's maximum-likelihood hazard ratios (``hazard.msm``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.core.likelihood import loglik, loglik_and_grad
from markov_migration.errors import InputError, PanelError
from markov_migration.fitfile.format import read_fit, write_fit
from markov_migration.fitfile.generators import generator_draws
from markov_migration.inference.fit import FitSettings, sample, structure_key
from markov_migration.inference.model import check_supported
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.design import model_design
from markov_migration.inputs.likelihood_arrays import generators_from_rates
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_paths_for_spec
from markov_migration.inputs.spec import parse_spec

BASE = """
name = "cov3"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
"""
MODEL = (
    BASE
    + """
[covariates.reason]
kind = "categorical"
transitions = ["a->b", "b->a", "b->c"]
[covariates.age]
kind = "numeric"
transitions = ["a->b", "b->a"]
prior_sd = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.1
initial = { a = 0.6, b = 0.4 }
[simulate.covariates.reason]
levels = { draft = 0.4, politics = 0.4, work = 0.2 }
effects = { "politics:a->b" = 0.5, "work:b->a" = 1.6, "work:b->c" = 1.6 }
[simulate.covariates.age]
normal = { mean = 35, sd = 10 }
effects = { "a->b" = 1.03 }
"""
)
#: True hazard ratios of MODEL by effect label (1 where the simulation has none).
TRUE_HR = {
    "reason[politics]: a->b": 0.5,
    "reason[politics]: b->a": 1.0,
    "reason[politics]: b->c": 1.0,
    "reason[work]: a->b": 1.0,
    "reason[work]: b->a": 1.6,
    "reason[work]: b->c": 1.6,
    "age: a->b": 1.03,
    "age: b->a": 1.0,
}
SETTINGS = {"chains": 2, "draws": 400, "tune": 400}


def simulated(spec, n, seed):
    """A simulated panel with ages rounded to whole years (as surveys report them).

    Rounding a N(35, 10) age to the year is a measurement error of sd 0.29
    years: it attenuates a log hazard ratio by 0.08%, far below the tolerances.
    """
    df = simulate_paths_for_spec(spec, n, seed=seed).panel
    return df.assign(age=np.round(df["age"]))


@pytest.fixture(scope="module")
def cov_fit():
    spec = parse_spec(MODEL)
    panel = validate_panel(simulated(spec, 2500, seed=11), spec, path="<sim>", sha256="c" * 64)
    agg = aggregate(panel, spec)
    tree = sample(spec, agg, FitSettings(seed=3, **SETTINGS), panel=panel, command="test")
    return spec, panel, agg, tree


# -- design and likelihood (no MCMC) ----------------------------------------------------------


def pairwise_loglik(spec, panel, log_rate, log_hr, effects, centers):
    """sum_i log expm(Q_i gap_i)[from_i, to_i] with Q_i built from pair i's own covariates."""
    p = panel.pairs()
    res = spec.resolution
    total = 0.0
    for row in p.itertuples(index=False):
        if spec.states[row[1]] in spec.absorbing:
            continue
        log_q = np.array(log_rate, dtype=float)
        for e, beta in zip(effects, log_hr, strict=True):
            j = spec.transitions.index(e.transition)
            value = getattr(row, e.covariate)
            if e.level:
                log_q[j] += beta * (value == e.level)
            else:
                log_q[j] += beta * (value - centers[e.covariate])
        q = generators_from_rates(np.exp(log_q), spec)
        gap = np.round((row.t1 - row.t0) / res) * res
        total += np.log(expm(q * gap)[row[1], row[2]])
    return total


def test_design_log_likelihood_matches_pairwise_expm():
    spec = parse_spec(MODEL)
    panel = validate_panel(simulated(spec, 300, seed=5), spec)
    agg = aggregate(panel, spec)
    design = model_design(spec, agg)
    assert design.levels == {"reason": ("draft", "politics", "work")}
    assert [e.label for e in design.effects] == list(TRUE_HR)
    # A pattern per (reason, age) in the data, far fewer than the pairs.
    n_patterns = len(panel.pairs()[["reason", "age"]].drop_duplicates())
    assert design.n_generators <= n_patterns < len(panel.pairs())
    rng = np.random.default_rng(1)
    for _ in range(3):
        log_rate = np.log([0.3, 0.15, 0.5, 0.2]) + rng.normal(0, 0.3, 4)
        log_hr = rng.normal(0, 0.3, len(design.effects)) * np.where(
            [e.level == "" for e in design.effects], 0.05, 1.0
        )
        q = generators_from_rates(np.exp(design.log_rates(log_rate, log_hr)), spec)
        got = loglik(q, *design.likelihood.arrays())
        expected = pairwise_loglik(spec, panel, log_rate, log_hr, design.effects, design.centers)
        assert got == pytest.approx(expected, rel=1e-10)


def test_hazard_ratios_are_per_unit_of_the_data():
    """Age in months instead of years: the same fit with the per-unit log hazard ratio / 12."""
    spec = parse_spec(MODEL)
    df = simulated(spec, 300, seed=6)
    years = model_design(spec, aggregate(validate_panel(df, spec), spec))
    months = model_design(
        spec, aggregate(validate_panel(df.assign(age=df["age"] * 12), spec), spec)
    )
    assert months.centers["age"] == pytest.approx(12 * years.centers["age"])
    assert months.scales["age"] == pytest.approx(12 * years.scales["age"])
    log_rate = np.log([0.3, 0.15, 0.5, 0.2])
    log_hr = np.array([-0.7, 0.1, 0.2, 0.0, 0.47, 0.47, 0.03, -0.01])
    per_month = np.where([e.level == "" for e in years.effects], log_hr / 12, log_hr)
    np.testing.assert_allclose(
        months.log_rates(log_rate, per_month), years.log_rates(log_rate, log_hr), atol=1e-12
    )


def test_reference_levels_and_shared_effects():
    spec = parse_spec(
        BASE
        + """
[covariates.reason]
kind = "categorical"
levels = ["work", "draft", "politics"]
reference = "politics"
shared = [["a->b", "a->c"]]
[covariates.age]
kind = "numeric"
transitions = ["a->b", "b->a"]
shared = [["a->b", "b->a"]]
"""
    )
    df = pd.DataFrame(
        {
            "id": [1, 1, 2, 2, 3, 3],
            "time": [0, 1, 0, 1, 0, 2],
            "state": ["a", "b", "b", "a", "a", "c"],
            "reason": ["work", "work", "politics", "politics", "draft", "draft"],
            "age": [30, 30, 40, 40, 50, 50],
        }
    )
    design = model_design(spec, aggregate(validate_panel(df, spec), spec))
    assert design.levels["reason"] == ("politics", "work", "draft")
    labels = [e.label for e in design.effects]
    assert labels[:4] == [
        "reason[work]: a->b", "reason[work]: a->c", "reason[work]: b->a", "reason[work]: b->c"
    ]  # fmt: skip
    params = design.effect_parameter
    # a->b and a->c share one effect per level; age's two transitions share one.
    assert params[0] == params[1] and params[2] != params[0]
    assert params[-1] == params[-2]
    assert len(design.parameter_labels) == 2 * 3 + 1
    assert "reason[work]: a->b|a->c" in design.parameter_labels
    assert "age: a->b|b->a" in design.parameter_labels
    assert design.grid_coords["pattern"] == [
        "reason=politics", "reason=work", "reason=draft"
    ]  # fmt: skip


BAD_VALUES = [
    ("numeric", "id,time,state,reason,age\n1,0,a,x,30\n1,1,b,x,thirty\n2,0,a,y,40\n2,1,a,y,40\n",
     "covariate 'age' is numeric: 'thirty' is not a finite number", 2, "age"),
    ("constant", "id,time,state,reason,age\n1,0,a,x,30\n1,1,b,x,30\n2,0,a,y,30\n2,1,a,y,30\n",
     "numeric covariate 'age' is 30 on every row", None, "age"),
    ("one-level", "id,time,state,reason,age\n1,0,a,x,30\n1,1,b,x,31\n2,0,a,x,40\n2,1,a,x,40\n",
     "categorical covariate 'reason' has a single level in the data ('x')", None, "reason"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "csv", "message", "row", "column"), BAD_VALUES,
                         ids=[b[0] for b in BAD_VALUES])  # fmt: skip
def test_bad_covariate_values(case, csv, message, row, column, write_panel):
    from markov_migration.inputs.panel import load_panel

    spec = parse_spec(BASE + '[covariates.reason]\nkind = "categorical"\n'
                      '[covariates.age]\nkind = "numeric"\n')  # fmt: skip
    with pytest.raises(PanelError) as err:
        load_panel(write_panel(csv), spec)
    assert message in str(err.value)
    assert err.value.row == row and err.value.column == column


def test_undeclared_level_and_missing_reference(write_panel):
    from markov_migration.inputs.panel import load_panel

    spec = parse_spec(
        BASE + '[covariates.sex]\nkind = "categorical"\nlevels = ["f", "m"]\nreference = "m"\n'
    )
    with pytest.raises(PanelError) as err:
        load_panel(write_panel("id,time,state,sex\n1,0,a,f\n1,1,b,x\n"), spec)
    assert "'x' is not a level of covariate 'sex' (levels: f, m)" in str(err.value)
    assert (err.value.row, err.value.column) == (2, "sex")
    with pytest.raises(PanelError) as err:
        load_panel(write_panel("id,time,state,sex\n1,0,a,f\n1,1,b,f\n"), spec)
    assert "reference level 'm' of covariate 'sex' does not occur" in str(err.value)


def test_model_checks_before_data():
    with pytest.raises(InputError, match="discrete-time models support none"):
        check_supported(parse_spec(BASE.replace('name = "cov3"', 'name = "d"\ntime = "discrete"')
                                   + '[covariates.age]\nkind = "numeric"\n'))  # fmt: skip
    with pytest.raises(InputError, match="'period' is a reserved name"):
        check_supported(parse_spec(BASE + '[covariates.period]\nkind = "numeric"\ncolumn = "p"\n'))
    with pytest.raises(InputError, match="column 'x' is already used"):
        check_supported(parse_spec(BASE + '[covariates.u]\nkind = "numeric"\ncolumn = "x"\n'
                                   '[covariates.v]\nkind = "numeric"\ncolumn = "x"\n'))  # fmt: skip


def test_structure_key_covers_levels():
    spec = parse_spec(MODEL)
    df = simulated(spec, 200, seed=1)
    agg = aggregate(validate_panel(df, spec), spec)
    other = aggregate(validate_panel(simulated(spec, 150, seed=2), spec), spec)
    assert structure_key(spec, agg) == structure_key(spec, other)
    fewer = df[df["reason"] != "work"]
    agg2 = aggregate(validate_panel(fewer, spec), spec)
    assert structure_key(spec, agg2) != structure_key(spec, agg)
    assert structure_key(spec, agg) != structure_key(parse_spec(BASE), None)


# -- fitting ----------------------------------------------------------------------------------


def test_fit_file_layout(cov_fit, tmp_path):
    spec, _, agg, tree = cov_fit
    post = tree["posterior"]
    hr = post["hazard_ratio"]
    assert hr.dims == ("chain", "draw", "covariate_effect")
    assert list(hr["covariate_effect"].values) == list(TRUE_HR)
    assert list(hr["covariate"].values) == ["reason"] * 6 + ["age"] * 2
    assert list(hr["level"].values) == ["politics"] * 3 + ["work"] * 3 + ["", ""]
    assert list(hr["from"].values) == ["a", "b", "b", "a", "b", "b", "a", "b"]
    assert list(hr["to"].values) == ["b", "a", "c", "b", "a", "c", "b", "a"]
    np.testing.assert_allclose(np.log(hr.values), post["log_hazard_ratio"].values, atol=1e-14)
    assert post["Q"].dims == ("chain", "draw", "pattern", "from_state", "to_state")
    assert list(post["Q"]["pattern"].values) == ["reason=draft", "reason=politics", "reason=work"]
    # the sampled variable is kept for its diagnostics, and recorded as sampled
    assert post["log_hr_scaled"].dims == ("chain", "draw", "hr_parameter")
    assert "log_hr_scaled" in tree.attrs["sampled_variables"]
    # Q of each pattern = baseline rates x its hazard ratios (age at its centre).
    q = post["Q"].sel(pattern="reason=politics").values
    rate = post["rate"].values
    np.testing.assert_allclose(q[..., 0, 1], rate[..., 0] * hr.values[..., 0], rtol=1e-10)
    np.testing.assert_allclose(q[..., 0, 2], rate[..., 1], rtol=1e-10)
    np.testing.assert_allclose(q.sum(axis=-1), 0.0, atol=1e-12)
    const = tree["constant_data"]
    assert float(const["covariate_center"].sel(numeric_covariate="age")) == pytest.approx(
        np.average(agg.table["age"], weights=agg.table["count"])
    )
    assert list(const["reference_level"].values) == ["draft"]
    path = write_fit(tree, tmp_path / "fit.nc")
    back = read_fit(path)
    assert list(back["posterior"]["hazard_ratio"]["covariate"].values) == list(
        hr["covariate"].values
    )
    # generator_draws at given values agrees with Q, and moves with age as the hazard ratio says.
    at_centre = generator_draws(back, {"reason": "politics"})
    np.testing.assert_allclose(at_centre.values, q, rtol=1e-10)
    centre = float(const["covariate_center"].values[0])
    older = generator_draws(back, {"reason": "politics", "age": centre + 10})
    ratio = older.values[..., 0, 1] / q[..., 0, 1]
    np.testing.assert_allclose(ratio, hr.values[..., 6] ** 10, rtol=1e-10)


def test_log_likelihood_per_row_uses_each_rows_generator(cov_fit):
    spec, panel, agg, tree = cov_fit
    post = tree["posterior"]
    design = model_design(spec, agg)
    i, j = 1, 37
    log_rate = post["log_rate"].isel(chain=i, draw=j).values
    log_hr = post["log_hazard_ratio"].isel(chain=i, draw=j).values
    got = tree["log_likelihood"]["transitions"].isel(chain=i, draw=j).values
    t = agg.table
    expected = np.empty(len(t))
    for r, row in enumerate(t.itertuples(index=False)):
        lq = log_rate.copy()
        for e, beta in zip(design.effects, log_hr, strict=True):
            k = spec.transitions.index(e.transition)
            value = getattr(row, e.covariate)
            lq[k] += beta * ((value == e.level) if e.level else value - design.centers["age"])
        q = generators_from_rates(np.exp(lq), spec)
        expected[r] = row.count * np.log(expm(q * row.interval)[row[0], row[1]])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert got.sum() == pytest.approx(
        loglik(
            generators_from_rates(np.exp(design.log_rates(log_rate, log_hr)), spec),
            *design.likelihood.arrays(),
        ),
        rel=1e-10,
    )


def test_recovers_hazard_ratios(cov_fit):
    """Every true hazard ratio in its 99% interval; coverage of the 90% intervals printed."""
    _, _, _, tree = cov_fit
    hr = tree["posterior"]["hazard_ratio"]
    draws = hr.values.reshape(-1, hr.shape[-1])
    truth = np.array(list(TRUE_HR.values()))
    lo, hi = np.quantile(draws, [0.005, 0.995], axis=0)
    assert np.all((lo < truth) & (truth < hi)), list(zip(lo, truth, hi, strict=True))
    lo90, hi90 = np.quantile(draws, [0.05, 0.95], axis=0)
    covered = int(((lo90 < truth) & (truth < hi90)).sum())
    print(f"90% intervals covering the true hazard ratio: {covered} of {truth.size}")
    assert covered >= truth.size - 2
    # The strong effects are found: politics halves a->b, age raises a->b by 3% a year.
    assert hi[0] < 0.75 and lo[6] > 1.01
    assert int(tree["sample_stats"]["diverging"].sum()) == 0


def test_second_fit_reuses_the_compiled_model(cov_fit):
    """New data with the same levels: no recompilation, and the data really are new."""
    spec, _, _, first = cov_fit
    panel = validate_panel(simulated(spec, 800, seed=12), spec)
    agg = aggregate(panel, spec)
    settings = FitSettings(seed=4, **SETTINGS)
    tree = sample(spec, agg, settings)
    assert settings.timings["compile"] < 5.0
    assert tree["log_likelihood"]["transitions"].sizes["obs"] == len(agg.table)
    # Fewer respondents: wider intervals than the first fit's.
    sd_new = tree["posterior"]["log_hazard_ratio"].std(("chain", "draw")).values
    sd_old = first["posterior"]["log_hazard_ratio"].std(("chain", "draw")).values
    assert np.all(sd_new > sd_old)


def test_fit_from_the_command_line(cov_fit, tmp_path):
    from markov_migration.cli.app import app

    spec, _, _, _ = cov_fit
    model = tmp_path / "cov.toml"
    model.write_text(MODEL)
    panel = tmp_path / "panel.csv"
    simulated(spec, 600, seed=13).to_csv(panel, index=False)
    out = tmp_path / "fit.nc"
    res = CliRunner().invoke(
        app,
        ["fit", str(panel), "--model", str(model), "--out", str(out), "--chains", "2",
         "--draws", "100", "--tune", "200", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_fit(out)["posterior"]["hazard_ratio"].sizes["covariate_effect"] == 8


def test_hazard_ratios_against_r_msm():
    """msm's maximum likelihood: our log-likelihood at msm's MLE equals msm's maximum, our
    own maximum gives msm's hazard ratios, and posterior medians are within 3 sd of them.

    msm's fit is the committed reference tests/results/fit_covariates.json (msm 1.7) of
    this panel (fit_covariates_panel.csv there, checked by test_msm_results.py).
    """
    from scipy.optimize import minimize

    from tests.results import load_fit
    from tests.results.make_inputs import covariate_panel

    spec, panel, design, _ = covariate_panel()
    agg = aggregate(panel, spec)
    ref = load_fit("fit_covariates")
    assert ref.converged
    frm = np.array([r for r, _ in spec.transitions])
    to = np.array([s for _, s in spec.transitions])
    msm_hr = []
    for e in design.effects:
        term = f"{e.covariate}{e.level}"
        row = ref.hazard[(ref.hazard["term"] == term) & (ref.hazard["from"] == e.transition[0])
                         & (ref.hazard["to"] == e.transition[1])]  # fmt: skip
        msm_hr.append(float(row["hr"].iloc[0]))
    msm_hr = np.array(msm_hr)
    msm_log_rate = np.log(ref.Q[frm, to])
    # Our log-likelihood at msm's MLE is msm's maximum.
    q = generators_from_rates(np.exp(design.log_rates(msm_log_rate, np.log(msm_hr))), spec)
    assert loglik(q, *design.likelihood.arrays()) == pytest.approx(ref.loglik, rel=1e-6)
    # Our maximum (BFGS on the design's likelihood and gradient) reproduces msm's estimates.
    n_t, eff_t = len(frm), design.effect_transition

    def negll(theta):
        lr, lh = theta[:n_t], theta[n_t:]
        log_q = design.log_rates(lr, lh)
        value, grad = loglik_and_grad(generators_from_rates(np.exp(log_q), spec),
                                      *design.likelihood.arrays())  # fmt: skip
        # d/d log q[m, j] = (dQ[m, from_j, to_j] - dQ[m, from_j, from_j]) * q[m, j]
        g = (grad[:, frm, to] - grad[:, frm, frm]) * np.exp(log_q)
        d_lr = g.sum(axis=0)
        d_lh = ((g @ eff_t.T) * design.generator_x).sum(axis=0)
        return -value, -np.concatenate([d_lr, d_lh])

    x0 = np.concatenate([np.log(np.full(n_t, 0.2)), np.zeros(len(design.effects))])
    opt = minimize(negll, x0, jac=True, method="BFGS", options={"gtol": 1e-7})
    assert -opt.fun == pytest.approx(ref.loglik, abs=1e-3)
    np.testing.assert_allclose(np.exp(opt.x[n_t:]), msm_hr, rtol=5e-3)
    np.testing.assert_allclose(np.exp(opt.x[:n_t]), ref.Q[frm, to], rtol=5e-3)
    # Posterior medians of the hazard ratios vs msm (priors are weak next to 2,000 respondents).
    tree = sample(spec, agg, FitSettings(seed=2, **SETTINGS))
    lhr = tree["posterior"]["log_hazard_ratio"].values.reshape(-1, len(design.effects))
    z = np.abs(np.median(lhr, axis=0) - np.log(msm_hr)) / lhr.std(axis=0)
    assert np.all(z < 3), dict(zip([e.label for e in design.effects], z.round(2), strict=True))
    print(
        "posterior median HR vs msm:",
        dict(
            zip(
                [e.label for e in design.effects],
                zip(np.exp(np.median(lhr, axis=0)).round(3), msm_hr.round(3), strict=True),
                strict=True,
            )
        ),
    )


@pytest.mark.slow
@pytest.mark.validation
def test_coverage_of_hazard_ratio_intervals(cov_fit):
    """Frequentist coverage over 20 simulated panels: 90% intervals cover about 90%.

    20 panels x 8 effects = 160 intervals; with true coverage 0.9 the count of covered
    intervals is about 144 +- 4 (binomial sd, more with correlated effects), so below
    128 (80%) would be a real failure. The figure is printed for the docs.
    """
    spec = parse_spec(MODEL)
    truth = np.log(np.array(list(TRUE_HR.values())))
    covered, z = [], []
    for rep in range(20):
        panel = validate_panel(simulated(spec, 1000, seed=100 + rep), spec)
        tree = sample(spec, aggregate(panel, spec), FitSettings(seed=rep, chains=2, draws=300,
                                                               tune=300))  # fmt: skip
        lhr = tree["posterior"]["log_hazard_ratio"].values.reshape(-1, truth.size)
        lo, hi = np.quantile(lhr, [0.05, 0.95], axis=0)
        covered.append((lo < truth) & (truth < hi))
        z.append((np.median(lhr, axis=0) - truth) / lhr.std(axis=0))
    covered = np.array(covered)
    print(f"90% interval coverage of the hazard ratios: {covered.mean():.3f} "
          f"({covered.sum()} of {covered.size}); by effect {covered.mean(axis=0).round(2)}; "
          f"mean z {np.mean(z):+.2f}, sd of z {np.std(z):.2f}")  # fmt: skip
    assert covered.sum() >= 128


def test_fit_command_prints_hazard_ratios(cov_fit):
    from rich.console import Console

    from markov_migration.cli.fit import print_posterior_table

    _, _, _, tree = cov_fit
    con = Console(record=True, width=120)
    print_posterior_table(tree, con)
    text = con.export_text()
    assert "Posterior baseline intensities" in text
    assert "Posterior hazard ratios" in text
    assert "reason=work on a->b" in text
    assert "age (per unit) on b->a" in text
    hr = tree["posterior"]["hazard_ratio"].isel(covariate_effect=0).values
    assert f"{hr.mean():.4f}" in text


def test_predictive_check_of_transitions_with_covariates(cov_fit, tmp_path):
    """The transition-count PPC runs on covariate fits (rows grouped by pattern too)."""
    from markov_migration.results.checks import run_checks
    from markov_migration.results.ppc import ppc_transitions

    _, _, agg, tree = cov_fit
    back = read_fit(write_fit(tree, tmp_path / "fit.nc"))
    result = ppc_transitions(back, n_draws=200, seed=1)
    table = result.table
    # every observed transition lands in one cell
    assert table["observed"].sum() == pytest.approx(np.round(agg.table["count"]).sum())
    assert (table["lower"] <= table["upper"]).all()
    # the replicated totals per starting state equal the observed ones (multinomial)
    by_from = table.groupby("from")[["observed", "mean"]].sum()
    np.testing.assert_allclose(by_from["mean"], by_from["observed"], rtol=1e-9)
    assert 0.01 <= result.ppp <= 0.99, result.ppp  # a correctly specified model
    report = run_checks(back, n_draws=100)
    ppc = {c.name: c for c in report.checks}["ppc_transitions"]
    assert ppc.status == "pass"
