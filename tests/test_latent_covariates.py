"""Latent-state models with covariates and groups on the intensities (issue 13).

References: R msm's -2 log L of the manual's misclassification model on ``cav`` with
``covariates = ~sex`` at fixed parameters (``tests/results/forward/msm_misc_covariate.R``
and its committed JSON), and the sum of per-pattern latent likelihoods without
covariates (the scipy reference of :mod:`markov_migration.core.forward`, one pattern at
a time). Gradients against central finite differences; a real fit recovers a binary
covariate's effect; summaries, checks and projections of such a fit run; bad specs exit 2.
"""

# ruff: noqa: TID251  (tests of the layer-3 model import PyTensor directly)
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core import forward as F
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.inference.latent import build_latent_model, latent_design
from markov_migration.inputs.latent_design import carry_forward
from markov_migration.inputs.panel import load_panel, validate_panel
from markov_migration.inputs.spec import parse_spec
from tests.conftest import model_gradient_and_fd
from tests.test_observation_model import MISC, RECOVERY, log_rates

RESULTS = Path(__file__).parent / "results" / "forward"
CAV_SEX = RESULTS / "cav_sex.csv"
RTOL = 1e-8  # R msm's -2 log L (observed agreement about 3e-11)
STATES = ["well", "mild", "severe", "dead"]


def model_loglik(model, values: dict) -> float:
    """The model's likelihood Potential at given values of its variables.

    As ``tests.test_observation_model.model_loglik``, compiled with FAST_COMPILE: the
    C compilation of the whole graph takes minutes on a loaded machine, and the Op's
    numba kernel does the arithmetic either way.
    """
    import pytensor
    import pytensor.tensor as pt

    pot = model.potentials[0]
    replace = {model[name]: pt.constant(np.asarray(v, dtype=float)) for name, v in values.items()}
    out = pytensor.graph.replace.graph_replace(pot, replace, strict=False)
    return float(pytensor.function([], out, mode="FAST_COMPILE")())


def msm_cases() -> list[dict]:
    return json.loads((RESULTS / "msm_misc_covariate.json").read_text())["cases"]


def msm_case(name: str) -> dict:
    return next(c for c in msm_cases() if c["name"] == name)


def sex_spec(c: dict, kind: str):
    moves = ", ".join(f'"{STATES[a - 1]}->{STATES[b - 1]}"' for a, b in c["transitions"])
    extra = f'[covariates.sex]\nkind = "{kind}"\ntransitions = [{moves}]\n'
    if c["deathexact"]:
        extra += '[observation]\nexact = ["dead"]\n'
    return parse_spec(MISC + extra)


def misc_values(c: dict) -> dict:
    e = np.array(c["ematrix"])
    return {
        "initial": c["initprobs"],
        "misclassification_well": [1 - e[0].sum(), e[0, 1]],
        "misclassification_mild": [1 - e[1].sum(), e[1, 0], e[1, 2]],
        "misclassification_severe": [1 - e[2].sum(), e[2, 1]],
    }


def msm_arrays(c: dict):
    """Baseline Q, Q of sex = 1, the emission table and pi of an msm case."""
    q0 = np.array(c["qmatrix"], dtype=float)
    q1 = q0.copy()
    for (a, b), beta in zip(c["transitions"], c["log_hazard_ratio"], strict=True):
        q1[a - 1, b - 1] *= np.exp(beta)
    for q in (q0, q1):
        q[np.diag_indices(4)] = -q.sum(axis=1)
    e = np.array(c["ematrix"], dtype=float)
    e[np.diag_indices(4)] = 1 - e.sum(axis=1)
    return q0, q1, F.emission_table(e, [[0], [1], [2], [3]]), np.array(c["initprobs"], float)


# -- the forward algorithm with one generator per pattern -----------------------------


@pytest.mark.parametrize("name", [c["name"] for c in msm_cases()])
def test_core_with_a_generator_per_sex_matches_msm(name):
    c = msm_case(name)
    d = pd.read_csv(CAV_SEX)
    q0, q1, b, pi = msm_arrays(c)
    obstype = np.where((d["state"] == 4) & bool(c["deathexact"]), 3, 1)
    h = F.aggregate_histories(
        d["PTNUM"], d["years"], d["state"] - 1, obstype, generator=d["sex"].to_numpy()
    )
    value = -2 * F.loglik(np.stack([q0, q1]), pi, b, *h)
    assert value == pytest.approx(c["minus2loglik"], rel=RTOL)
    # the same records with sex ignored give another likelihood: the test can fail
    h0 = F.aggregate_histories(d["PTNUM"], d["years"], d["state"] - 1, obstype)
    assert abs(-2 * F.loglik(q0, pi, b, *h0) - c["minus2loglik"]) > 1.0


def test_core_equals_the_sum_of_per_pattern_fits():
    """Histories with two generators: the sum of each pattern's own latent likelihood."""
    c = msm_case("misc_sex_all_deathexact")
    d = pd.read_csv(CAV_SEX)
    q0, q1, b, pi = msm_arrays(c)
    obstype = np.where(d["state"] == 4, 3, 1)
    sex = d["sex"].to_numpy()
    h = F.aggregate_histories(d["PTNUM"], d["years"], d["state"] - 1, obstype, generator=sex)
    both = F.loglik(np.stack([q0, q1]), pi, b, *h)
    parts = [
        F.loglik_reference(
            q,
            pi,
            b,
            d["PTNUM"][sex == s],
            d["years"][sex == s],
            d["state"][sex == s] - 1,
            obstype[sex == s],
        )  # fmt: skip
        for s, q in ((0, q0), (1, q1))
    ]
    assert both == pytest.approx(sum(parts), rel=1e-10)


def test_interval_uses_the_generator_of_its_first_record():
    """A time-varying pattern: each interval takes the covariates of its earlier record."""
    q = np.array([[-0.4, 0.4], [0.3, -0.3]])
    qs = np.stack([q, 3 * q])
    b = np.eye(2)
    times = [0.0, 1.0, 2.5, 3.0]
    codes = [0, 1, 1, 0]
    gen = [0, 1, 0, 1]  # the last record's pattern is never used
    h = F.aggregate_histories([1] * 4, times, codes, generator=gen)
    expected = np.log(
        _expm(qs[0] * 1.0)[0, 1] * _expm(qs[1] * 1.5)[1, 1] * _expm(qs[0] * 0.5)[1, 0]
    )
    assert F.loglik(qs, np.ones(2), b, *h) == pytest.approx(expected, rel=1e-12)


def _expm(a):
    import scipy.linalg

    return scipy.linalg.expm(a)


def test_carry_forward_takes_the_latest_earlier_record():
    out = carry_forward(
        ["a", "a", "b"], [0.0, 2.0, 1.0], [5, 7, 9], ["a", "a", "a", "b", "b"],
        [0.0, 1.0, 2.5, 0.5, 3.0],
    )  # fmt: skip
    assert out.tolist() == [5, 5, 7, 9, 9]


# -- the PyMC model, built from a model file, against msm ------------------------------


@pytest.mark.parametrize("kind", ["categorical", "numeric"])
@pytest.mark.parametrize("name", [c["name"] for c in msm_cases()])
def test_model_with_a_sex_covariate_matches_msm(name, kind):
    """The model file's ``[covariates.sex]`` on a misclassification model, at msm's parameters.

    A categorical sex has baseline sex = 0 (msm's ``center = FALSE``); a numeric one is
    centred at its mean over the observed transitions, so its baseline log-rates are
    msm's plus ``beta * centre``.
    """
    c = msm_case(name)
    spec = sex_spec(c, kind)
    panel = load_panel(CAV_SEX, spec)
    model = build_latent_model(spec, panel)
    lr = log_rates(spec, c["qmatrix"])
    beta = np.array(c["log_hazard_ratio"])
    if kind == "numeric":
        design, _ = latent_design(spec, panel)
        moved = [spec.transitions.index((a - 1, b - 1)) for a, b in c["transitions"]]
        lr[moved] += beta * design.centers["sex"]
    values = {"log_rate": lr, "log_hazard_ratio": beta, **misc_values(c)}
    assert -2 * model_loglik(model, values) == pytest.approx(c["minus2loglik"], rel=RTOL)
    labels = [f"sex{'[1]' if kind == 'categorical' else ''}: {STATES[a - 1]}->{STATES[b - 1]}"
              for a, b in c["transitions"]]  # fmt: skip
    assert list(model.coords["covariate_effect"]) == labels


#: test_observation_model's misclassified three-state model, under its own name.
GRAD_BASE = RECOVERY.replace('name = "misc3"', 'name = "misc3cov"', 1)
COVARIATES = """\
[covariates.sex]
kind = "categorical"
transitions = ["abroad->returned", "swing->returned"]
[covariates.age]
kind = "numeric"
transitions = ["abroad->swing"]
[groups]
column = "host"
transitions = ["abroad->returned"]
"""
GRAD = GRAD_BASE + COVARIATES


def small_panel(n=60, seed=1) -> pd.DataFrame:
    from markov_migration.inputs.simulate import simulate_panel

    df = simulate_panel(parse_spec(GRAD_BASE), n, waves=[0, 1, 2, 3], seed=seed)
    rng = np.random.default_rng(seed)
    ids = df["id"].unique()
    person = dict(zip(ids, rng.integers(0, 2, ids.size), strict=True))
    df["sex"] = df["id"].map(person).map({0: "f", 1: "m"})
    df["age"] = rng.normal(40, 10, len(df)).round(1)  # time-varying
    df["host"] = df["id"].map({i: ["ru", "kz", "tr"][j % 3] for j, i in enumerate(ids)})
    return df


def test_model_gradient_with_covariates_and_groups_matches_finite_differences():
    spec = parse_spec(GRAD)
    model = build_latent_model(spec, validate_panel(small_panel(), spec))
    assert {"log_hr_scaled", "group_sd", "group_z"} <= {rv.name for rv in model.free_RVs}
    grad, fd = model_gradient_and_fd(model, seed=5, spread=0.3)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


# -- bad specs: one line, exit 2 -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # periods with [nonresponse] are fitted now (tests/test_nonresponse_periods.py)
        (
            'time = "discrete"\n' + GRAD_BASE + '[nonresponse]\nschedule = "waves"\n',
            "latent states need a continuous-time model",
        ),
    ],
)
def test_unsupported_latent_designs_exit_2(tmp_path, text, message):
    model = tmp_path / "m.toml"
    model.write_text(text)
    panel = tmp_path / "p.csv"
    small_panel().to_csv(panel, index=False)
    out = tmp_path / "fit.nc"
    result = CliRunner().invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out)])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_level_only_next_to_censored_records_is_refused():
    spec = parse_spec(GRAD + '[observation]\ncensored = { "away" = ["abroad", "swing"] }\n')
    df = small_panel()
    one = df["id"] == df["id"].iloc[0]
    df.loc[one, "sex"] = "x"
    df.loc[one, "state"] = "away"
    with pytest.raises(InputError, match="level 'x' occurs only in intervals with censored"):
        latent_design(spec, validate_panel(df, spec))


# -- a real fit: recovery, then summarize / check / project ----------------------------

RECOVERY = """\
name = "misc3sex"
states = ["abroad", "swing", "returned"]
[transitions]
abroad = ["swing", "returned"]
swing = ["abroad", "returned"]
returned = ["abroad"]
[misclassification]
swing = ["abroad"]
[covariates.sex]
kind = "categorical"
reference = "f"
transitions = ["abroad->returned"]
[rates]
"abroad->swing" = 0.3
"abroad->returned" = 0.1
"swing->abroad" = 0.5
"swing->returned" = 0.2
"returned->abroad" = 0.15
[simulate]
waves = [0, 1, 2, 3, 4, 5]
[simulate.covariates.sex]
levels = { f = 0.5, m = 0.5 }
effects = { "m:abroad->returned" = 3.0 }
"""
TRUE_LOG_HR = np.log(3.0)


@pytest.fixture(scope="module")
def recovery_fit(tmp_path_factory):
    from markov_migration.inference.fit import fit
    from markov_migration.inputs.simulate import simulate_panel

    tmp = tmp_path_factory.mktemp("latentcov")
    spec = parse_spec(RECOVERY)
    df = simulate_panel(spec, 1200, seed=3)
    rng = np.random.default_rng(3)
    flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < 0.2)
    df.loc[flip, "state"] = "abroad"
    panel, model, out = tmp / "panel.csv", tmp / "model.toml", tmp / "fit.nc"
    df.to_csv(panel, index=False)
    model.write_text(RECOVERY)
    fit(panel, model, chains=2, draws=800, tune=500, seed=2, cores=2, out=out)
    return out


@pytest.mark.slow
def test_misclassified_panel_with_a_covariate_recovers_its_effect(recovery_fit):
    from markov_migration.fitfile.format import read_fit

    post = read_fit(recovery_fit).posterior
    lhr = post["log_hazard_ratio"].sel(covariate_effect="sex[m]: abroad->returned")
    lo, hi = (float(lhr.quantile(q, SAMPLE_DIMS)) for q in (0.05, 0.95))
    assert lo <= TRUE_LOG_HR <= hi, (lo, TRUE_LOG_HR, hi)
    assert lo > 0.0  # the effect is detected, not only covered
    assert post["Q"].sizes["pattern"] == 2
    assert "misclassification" in post and "initial" in post


@pytest.mark.slow
def test_summarize_check_project_run_on_a_latent_covariate_fit(recovery_fit, tmp_path):
    from markov_migration.projection.files import read_projection

    runner = CliRunner()
    res = runner.invoke(
        app, ["summarize", str(recovery_fit), "--what", "hazard", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [(r["covariate"], r["from"], r["to"]) for r in rows] == [
        ("sex[m]", "abroad", "returned")
    ]
    assert rows[0]["lower"] < 3.0 < rows[0]["upper"]
    res = runner.invoke(app, ["summarize", str(recovery_fit), "--covariate", "sex=m"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["check", str(recovery_fit)])
    assert res.exit_code in (0, 1), res.output
    returned = {}
    for sex in ("f", "m"):
        out = tmp_path / f"proj_{sex}.nc"
        res = runner.invoke(
            app,
            ["project", str(recovery_fit), "--initial", "abroad=1000,swing=500", "--start", "5",
             "--horizon", "10", "--draws", "40", "--covariate", f"sex={sex}", "--out", str(out)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        stock = read_projection(out)["stock"]
        returned[sex] = float(stock.sel(state="returned").isel(time=-1).mean())
    # men return three times as fast (hazard ratio 3 on abroad->returned)
    assert returned["m"] > 1.2 * returned["f"], returned


def test_nonresponse_model_with_a_covariate_is_the_sum_of_per_pattern_models():
    """With ``[nonresponse]`` (missed waves, attrition) the covariate model's likelihood is the
    sum of the covariate-free model's over the two sexes, each at its own intensities.

    Missed scheduled waves are records added by the model; they take the covariates of
    the respondent's record before them.
    """
    base = GRAD_BASE + '[nonresponse]\nschedule = "waves"\n'
    cov = '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned", "swing->returned"]\n'
    spec = parse_spec(base + cov)
    plain = parse_spec(base)
    df = small_panel(n=80, seed=7)
    rng = np.random.default_rng(7)
    later = df["id"].duplicated().to_numpy()
    df = df[~(later & (rng.uniform(size=len(df)) < 0.2))].reset_index(drop=True)
    lr = np.log([0.3, 0.1, 0.5, 0.2, 0.15])
    beta = np.array([0.7, -0.4])
    common = {
        "initial": [0.5, 0.3, 0.2],
        "misclassification_swing": [0.85, 0.15],
        "response": [0.9, 0.7, 0.6],
        "log_attrition": np.log([0.1, 0.2, 0.05]),
    }
    model = build_latent_model(spec, validate_panel(df, spec))
    assert list(model.coords["covariate_effect"]) == [
        "sex[m]: abroad->returned", "sex[m]: swing->returned",
    ]  # fmt: skip
    both = model_loglik(model, {"log_rate": lr, "log_hazard_ratio": beta, **common})
    parts = []
    for sex, shift in (("f", 0.0), ("m", 1.0)):
        sub = df[df["sex"] == sex].reset_index(drop=True)
        lr_s = lr.copy()
        lr_s[[1, 3]] += shift * beta
        m = build_latent_model(plain, validate_panel(sub, plain))
        parts.append(model_loglik(m, {"log_rate": lr_s, **common}))
    assert both == pytest.approx(sum(parts), rel=1e-10)


def test_groups_model_is_the_sum_of_per_group_models():
    """``[groups]`` with a sex covariate: the sum over (group, sex) of covariate-free models.

    Each group's effect and each sex's log hazard ratio shift the baseline log-rates of
    the transitions they act on; the covariate-free model of each subset at the shifted
    rates must give the same total.
    """
    spec = parse_spec(GRAD_BASE + COVARIATES.replace('[covariates.age]\nkind = "numeric"\n'
                                                     'transitions = ["abroad->swing"]\n', ""))  # fmt: skip
    plain = parse_spec(GRAD_BASE)
    df = small_panel(n=90, seed=11)
    lr = np.log([0.3, 0.1, 0.5, 0.2, 0.15])
    beta = np.array([0.6, -0.5])  # sex[m] on abroad->returned, swing->returned
    effect = {"kz": 0.4, "ru": -0.3, "tr": 0.1}  # group effects on abroad->returned
    common = {"initial": [0.5, 0.3, 0.2], "misclassification_swing": [0.8, 0.2]}
    model = build_latent_model(spec, validate_panel(df, spec))
    assert list(model.coords["group"]) == ["kz", "ru", "tr"]
    values = {"log_rate": lr, "log_hazard_ratio": beta,
              "group_effect": np.array([[effect[g]] for g in ["kz", "ru", "tr"]]), **common}  # fmt: skip
    both = model_loglik(model, values)
    parts = []
    for (host, sex), sub in df.groupby(["host", "sex"]):
        lr_s = lr.copy()
        lr_s[1] += effect[host] + (beta[0] if sex == "m" else 0.0)
        lr_s[3] += beta[1] if sex == "m" else 0.0
        m = build_latent_model(plain, validate_panel(sub.reset_index(drop=True), plain))
        parts.append(model_loglik(m, {"log_rate": lr_s, **common}))
    assert len(parts) == 6
    assert both == pytest.approx(sum(parts), rel=1e-10)


@pytest.mark.slow
def test_fit_file_history_loglik_matches_the_model(recovery_fit):
    """The fit file's per-respondent log-likelihood (for LOO) sums to the model's at a draw.

    The fit file's values come from the stored draws through the design's generators
    (``inference.latent_draws``), the model's from the PyMC graph: two routes from the
    log-rates and hazard ratios to the record patterns' generators.
    """
    from markov_migration.fitfile.format import read_fit

    tree = read_fit(recovery_fit)
    spec = parse_spec(RECOVERY)
    panel = load_panel(recovery_fit.parent / "panel.csv", spec)
    model = build_latent_model(spec, panel)
    draw = tree.posterior.isel(chain=1, draw=17)
    names = ("log_rate", "log_hazard_ratio", "initial", "misclassification_swing")
    value = model_loglik(model, {n: draw[n].to_numpy() for n in names})
    stored = float(tree["log_likelihood"]["histories"].isel(chain=1, draw=17).sum())
    assert stored == pytest.approx(value, rel=1e-9)


@pytest.mark.r
def test_committed_msm_covariate_results_are_reproduced(tmp_path):
    """Rerun the R script on a copy of the folder: the same -2 log L and data as committed."""
    import shutil
    import subprocess

    from markov_migration.reference.msm import msm_available

    if not msm_available():
        pytest.skip("Rscript with the msm package is not installed")
    for name in ("common.R", "msm_misc_covariate.R"):
        shutil.copy(RESULTS / name, tmp_path / name)
    res = subprocess.run(
        ["Rscript", str(tmp_path / "msm_misc_covariate.R")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    new = json.loads((tmp_path / "msm_misc_covariate.json").read_text())["cases"]
    for a, b in zip(new, msm_cases(), strict=True):
        assert a["name"] == b["name"]
        assert a["minus2loglik"] == pytest.approx(b["minus2loglik"], rel=1e-12), a["name"]
    assert (tmp_path / "cav_sex.csv").read_text() == CAV_SEX.read_text()


def test_periods_match_a_piecewise_reference():
    """``periods`` with a covariate: each interval's pieces use their period's generator.

    The reference multiplies ``expm(Q_(sex, period) * piece)`` over the pieces of every
    interval between a respondent's records, one respondent at a time (scipy), with
    the intensities built here from the effect list; a cut point inside the waves
    (1.5) splits intervals, one on a wave date (2.0) starts the next period there.
    """
    import scipy.linalg

    spec = parse_spec(
        "periods = [1.5, 2.0]\n" + GRAD_BASE
        + '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned"]\n'
        + "[data]\nresolution = 1e-9\n"
    )  # fmt: skip
    df = small_panel(n=50, seed=5)
    panel = validate_panel(df, spec)
    design, _ = latent_design(spec, panel)
    model = build_latent_model(spec, panel)
    rng = np.random.default_rng(5)
    lr = np.log([0.3, 0.1, 0.5, 0.2, 0.15])
    lhr = rng.normal(0, 0.5, len(design.effects))
    pi = np.array([0.5, 0.3, 0.2])
    e = np.array([[1.0, 0, 0], [0.2, 0.8, 0], [0, 0, 1.0]])  # swing recorded as abroad 20%
    values = {"log_rate": lr, "log_hazard_ratio": lhr, "initial": pi,
              "misclassification_swing": [0.8, 0.2]}  # fmt: skip
    got = model_loglik(model, values)

    def generator(sex: str, period: int) -> np.ndarray:
        log_q = lr.copy()
        for b, eff in zip(lhr, design.effects, strict=True):
            on = (eff.covariate == "sex" and sex == eff.level) or (
                eff.covariate == "period" and design.period_labels[period] == eff.level
            )
            log_q[spec.transitions.index(eff.transition)] += b * on
        q = np.zeros((3, 3))
        for (r, s), v in zip(spec.transitions, np.exp(log_q), strict=True):
            q[r, s] = v
        return q - np.diag(q.sum(axis=1))

    cuts = [1.5, 2.0]
    expected = 0.0
    for _, rows in panel.data.groupby("id", sort=False):
        t, code, sex = (rows[c].to_numpy() for c in ("time", "state", "sex"))
        alpha = pi * e[:, code[0]]
        for j in range(1, len(t)):
            edges = [t[j - 1], *[c for c in cuts if t[j - 1] < c < t[j]], t[j]]
            trans = np.eye(3)
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                period = int(np.searchsorted(cuts, a, side="right"))
                trans = trans @ scipy.linalg.expm(generator(sex[j - 1], period) * (b - a))
            alpha = (alpha @ trans) * e[:, code[j]]
        expected += np.log(alpha.sum())
    assert got == pytest.approx(expected, rel=1e-9)
    assert model["Q"].eval().shape[:2] == (2, 3)  # (pattern, period) grid


def test_prior_only_fit_with_covariates_and_groups(tmp_path):
    """--prior-only draws a latent design model (effects and group sds from their priors).

    (The backtest of latent fits with periods is tested in tests/test_backtest_exact.py.)"""
    from typer.testing import CliRunner

    from markov_migration.cli.app import app
    from markov_migration.fitfile.format import read_fit

    panel, model, out = tmp_path / "p.csv", tmp_path / "m.toml", tmp_path / "prior.nc"
    small_panel().to_csv(panel, index=False)
    model.write_text(GRAD)
    runner = CliRunner()
    res = runner.invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out),
                              "--prior-only", "--draws", "250", "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    post = read_fit(out)["posterior"]
    assert int(read_fit(out).attrs["prior_only"]) == 1
    assert {"log_hazard_ratio", "group_sd", "misclassification"} <= set(post.data_vars)
    assert np.all(np.isfinite(post["log_hazard_ratio"].values))
    assert post["log_hazard_ratio"].std() > 0.1  # drawn, not fixed
    res = runner.invoke(app, ["summarize", str(out)])
    assert res.exit_code == 0, (res.output, repr(res.exception))
