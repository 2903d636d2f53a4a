"""Covariates on misclassification probabilities (issue 13's bonus; R msm's ``misccovariates``).

References: R msm 1.7's -2 log L of the manual's misclassification model on ``cav`` with
``misccovariates = ~sex`` (with and without sex on the intensities and ``deathexact``) at
fixed parameters, and msm's misclassification matrices at sex = 0 and 1
(``tests/results/forward/msm_misccov.R`` and its committed JSON); the model's gradient
against central finite differences; a real fit recovers a covariate's log odds ratio
(slow); bad specs exit 2; every command runs on such a fit.
"""

# ruff: noqa: TID251  (tests of the layer-3 model import PyTensor directly)
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from markov_migration.inference.latent import build_latent_model
from markov_migration.inputs.misc_covariates import (
    MISC_LOG_OR,
    misclassification_effects,
    pattern_emissions,
)
from markov_migration.inputs.panel import load_panel
from markov_migration.inputs.spec import parse_spec
from tests.test_latent_covariates import misc_values, model_loglik
from tests.test_observation_model import MISC, log_rates

RESULTS = Path(__file__).parent / "results" / "forward"
CAV_SEX = RESULTS / "cav_sex.csv"
RTOL = 1e-8
STATES = ["well", "mild", "severe", "dead"]


def msm_cases() -> list[dict]:
    return json.loads((RESULTS / "msm_misccov.json").read_text())["cases"]


def msm_case(name: str) -> dict:
    return next(c for c in msm_cases() if c["name"] == name)


def misccov_spec(c: dict, kind: str = "categorical"):
    """The model file of an msm case: sex on the four misclassifications (and intensities)."""
    misc = ", ".join(f'"{STATES[a - 1]}->{STATES[b - 1]}"' for a, b in c["misc"])
    moves = ", ".join(f'"{STATES[a - 1]}->{STATES[b - 1]}"' for a, b in c["transitions"])
    extra = f'[covariates.sex]\nkind = "{kind}"\ntransitions = [{moves}]\n'
    extra += f"misclassification = [{misc}]\n"
    if c["deathexact"]:
        extra += '[observation]\nexact = ["dead"]\n'
    return parse_spec(MISC + extra)


@pytest.mark.parametrize("name", [c["name"] for c in msm_cases()])
def test_model_with_sex_on_misclassification_matches_msm(name):
    c = msm_case(name)
    spec = misccov_spec(c)
    panel = load_panel(CAV_SEX, spec)
    model = build_latent_model(spec, panel)
    values = {"log_rate": log_rates(spec, c["qmatrix"]), MISC_LOG_OR: c["log_odds_ratio"],
              **misc_values(c)}  # fmt: skip
    if c["transitions"]:
        values["log_hazard_ratio"] = c["log_hazard_ratio"]
    assert -2 * model_loglik(model, values) == pytest.approx(c["minus2loglik"], rel=RTOL)
    labels = [f"sex[1]: {STATES[a - 1]}->{STATES[b - 1]}" for a, b in c["misc"]]
    assert list(model.coords["misclassification_effect"]) == labels


@pytest.mark.parametrize("name", [c["name"] for c in msm_cases()])
def test_pattern_matrices_are_msms(name):
    """msm's ``ematrix.msm`` at sex = 0 and 1 from the baseline and the log odds ratios."""
    c = msm_case(name)
    spec = misccov_spec(c)
    panel = load_panel(CAV_SEX, spec)
    from markov_migration.inference.latent import latent_design

    misc = misclassification_effects(spec, latent_design(spec, panel)[0], panel.data)
    assert misc.n_patterns == 2 and misc.pattern_values == [{"sex": "0"}, {"sex": "1"}]
    e = pattern_emissions(np.array(c["ematrix_sex0"]), misc.shift_design(4),
                          np.array(c["log_odds_ratio"]))  # fmt: skip
    np.testing.assert_allclose(e[0], c["ematrix_sex0"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(e[1], c["ematrix_sex1"], rtol=0, atol=1e-14)


def test_numeric_covariate_is_centred():
    """A numeric sex is centred at its mean: the baseline rows are msm's at sex = centre."""
    c = msm_case("misccov_sex_deathexact")
    spec = misccov_spec(c, kind="numeric")
    panel = load_panel(CAV_SEX, spec)
    from markov_migration.inference.latent import latent_design

    design = latent_design(spec, panel)[0]
    centre = design.centers["sex"]
    assert 0 < centre < 1
    misc = misclassification_effects(spec, design, panel.data)
    beta = np.array(c["log_odds_ratio"])
    # the baseline (x = 0) is msm's matrix at sex = centre; the patterns are sex = 0, 1
    e_c = pattern_emissions(np.array(c["ematrix_sex0"]), _shift_at(misc, 4, centre), beta)[0]
    e = pattern_emissions(e_c, misc.shift_design(4), beta)
    np.testing.assert_allclose(e[0], c["ematrix_sex0"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(e[1], c["ematrix_sex1"], rtol=0, atol=1e-14)
    model = build_latent_model(spec, panel)
    values = {"log_rate": log_rates(spec, c["qmatrix"]), MISC_LOG_OR: beta,
              "initial": c["initprobs"],
              "misclassification_well": e_c[0, [0, 1]],
              "misclassification_mild": e_c[1, [1, 0, 2]],
              "misclassification_severe": e_c[2, [2, 1]]}  # fmt: skip
    assert -2 * model_loglik(model, values) == pytest.approx(c["minus2loglik"], rel=RTOL)
    assert list(model.coords["misclassification_effect"])[0] == "sex: well->mild"


def _shift_at(misc, k: int, x: float) -> np.ndarray:
    """Shift design (1, K, K, n_effects) of every effect at covariate term ``x``."""
    s = np.zeros((1, k, k, len(misc.labels)))
    for j, (r, t) in enumerate(misc.pairs):
        s[0, r, t, j] = x
    return s


# -- the model on a small simulated panel: gradient, NumPy draws path, bad specs -------

SMALL = """\
name = "misc3cov"
states = ["abroad", "swing", "returned"]
[transitions]
abroad = ["swing", "returned"]
swing = ["abroad", "returned"]
returned = ["abroad"]
[misclassification]
swing = ["abroad"]
abroad = ["swing", "returned"]
[covariates.sex]
kind = "categorical"
transitions = ["abroad->returned"]
misclassification = ["swing->abroad", "abroad->returned"]
[covariates.age]
kind = "numeric"
transitions = []
misclassification = ["swing->abroad"]
"""


def small_panel(n=60, seed=1):
    from tests.test_latent_covariates import small_panel as base

    return base(n, seed)


@pytest.mark.parametrize("phases", [False, True])
def test_model_gradient_matches_finite_differences(phases):
    from markov_migration.inputs.panel import validate_panel
    from tests.conftest import model_gradient_and_fd

    spec = parse_spec(SMALL + ("[phases]\nreturned = 2\n" if phases else ""))
    model = build_latent_model(spec, validate_panel(small_panel(), spec))
    assert MISC_LOG_OR in {rv.name for rv in model.free_RVs}
    assert len(model.coords["misclassification_effect"]) == 3
    grad, fd = model_gradient_and_fd(model, seed=5, spread=0.3)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", ["", "[phases]\nreturned = 2\n", "periods = [1.5]\n"])
def test_fit_file_history_loglik_path_equals_the_model(extra):
    """The NumPy per-respondent path (fit files, LOO) sums to the PyMC model's Potential."""
    import pymc as pm

    from markov_migration.inference.latent import latent_model_and_context
    from markov_migration.inference.latent_draws import history_loglik_draws
    from markov_migration.inference.latent_layout import latent_layout
    from markov_migration.inputs.panel import validate_panel

    spec = parse_spec(extra + SMALL if extra.startswith("periods") else SMALL + extra)
    panel = validate_panel(small_panel(), spec)
    model, context = latent_model_and_context(spec, panel)
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the Potential is left out: intended
        prior = pm.sample_prior_predictive(draws=3, random_seed=4).prior.to_dataset()
    if extra.startswith("[phases]"):
        from markov_migration.inference.latent_draws import observed_from_latent

        prior = observed_from_latent(spec, latent_layout(spec), prior, design=context[3])
    ll = history_loglik_draws(spec, latent_layout(spec), prior, *context)["histories"]
    names = [rv.name for rv in model.free_RVs]
    for d in range(3):
        draw = prior.isel(chain=0, draw=d)
        values = {n: draw[n].to_numpy() for n in names if n in draw}
        value = model_loglik(model, values)
        assert float(ll.isel(chain=0, draw=d).sum()) == pytest.approx(value, rel=1e-9)


BAD = [
    ('swing = ["abroad"]\n[covariates.sex]\nkind = "categorical"\n'
     'misclassification = ["abroad->swing"]\n', "is not declared in [misclassification]"),
    ('swing = ["abroad"]\n[covariates.sex]\nkind = "categorical"\n'
     'misclassification = ["swing->nowhere"]\n', "'nowhere' is not a declared state"),
    ('swing = ["abroad"]\n[covariates.sex]\nkind = "categorical"\n'
     'misclassification = "swing"\n', "is not of the form 'true->recorded'"),
    ('swing = ["abroad"]\n[covariates.sex]\nkind = "categorical"\n'
     'misclassification = ["swing->abroad"]\n[nonresponse]\nschedule = "waves"\n',
     "with [nonresponse] are not supported yet"),
    ('swing = ["abroad"]\n[covariates.height]\nkind = "numeric"\n'
     'misclassification = ["swing->abroad"]\n', "height"),
]  # fmt: skip


@pytest.mark.parametrize(("tail", "message"), BAD)
def test_bad_specs_exit_2(tmp_path, tail, message):
    from typer.testing import CliRunner

    from markov_migration.cli.app import app

    head = SMALL[: SMALL.index("[misclassification]")] + "[misclassification]\n"
    model = tmp_path / "m.toml"
    model.write_text(head + tail)
    panel = tmp_path / "p.csv"
    small_panel().to_csv(panel, index=False)
    out = tmp_path / "fit.nc"
    result = CliRunner().invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out)])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.r
def test_committed_msm_results_are_reproduced(tmp_path):
    """Rerun the R script on a copy of the folder: the same -2 log L as committed."""
    import shutil
    import subprocess

    from markov_migration.reference.msm import msm_available

    if not msm_available():
        pytest.skip("Rscript with the msm package is not installed")
    for name in ("common.R", "msm_misccov.R", "cav_sex.csv"):
        shutil.copy(RESULTS / name, tmp_path / name)
    res = subprocess.run(["Rscript", str(tmp_path / "msm_misccov.R")],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    new = json.loads((tmp_path / "msm_misccov.json").read_text())["cases"]
    for a, b in zip(new, msm_cases(), strict=True):
        assert a["name"] == b["name"]
        assert a["minus2loglik"] == pytest.approx(b["minus2loglik"], rel=1e-12), a["name"]


# -- a real fit: recovery, then every command -------------------------------------------

RECOVERY = """\
name = "misc3miscsex"
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
transitions = []
misclassification = ["swing->abroad"]
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
"""
#: swing records read as abroad: 10% of women's, 35% of men's
ERROR = {"f": 0.10, "m": 0.35}
TRUE_LOG_OR = float(np.log(0.35 / 0.65) - np.log(0.10 / 0.90))


def recovery_panel(n: int = 1500, seed: int = 3):
    """A simulated panel whose ``swing`` records are misread as ``abroad`` by sex."""
    from markov_migration.inputs.simulate import simulate_panel

    df = simulate_panel(parse_spec(RECOVERY), n, seed=seed)
    rng = np.random.default_rng(seed)
    p = df["sex"].map(ERROR).to_numpy()
    flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < p)
    df.loc[flip, "state"] = "abroad"
    return df


@pytest.fixture(scope="module")
def recovery_fit(tmp_path_factory):
    from markov_migration.inference.fit import fit

    tmp = tmp_path_factory.mktemp("misccov")
    panel, model, out = tmp / "panel.csv", tmp / "model.toml", tmp / "fit.nc"
    recovery_panel().to_csv(panel, index=False)
    model.write_text(RECOVERY)
    fit(panel, model, chains=2, draws=600, tune=500, seed=2, cores=2, out=out)
    return out


@pytest.mark.slow
def test_fit_recovers_the_log_odds_ratio(recovery_fit):
    """The effect's 90% interval covers the truth (one replication) and excludes 0."""
    from markov_migration.defaults import SAMPLE_DIMS
    from markov_migration.fitfile.format import read_fit

    post = read_fit(recovery_fit).posterior
    lor = post[MISC_LOG_OR].sel(misclassification_effect="sex[m]: swing->abroad")
    lo, hi = (float(lor.quantile(q, SAMPLE_DIMS)) for q in (0.05, 0.95))
    print(f"log odds ratio 90% interval {lo:.3f}-{hi:.3f}, mean {float(lor.mean()):.3f}, "
          f"truth {TRUE_LOG_OR:.3f}")  # fmt: skip
    assert lo <= TRUE_LOG_OR <= hi, (lo, TRUE_LOG_OR, hi)
    assert lo > 0.0
    base = post["misclassification"].sel(true_state="swing", recorded_state="abroad")
    lo, hi = (float(base.quantile(q, SAMPLE_DIMS)) for q in (0.05, 0.95))
    assert lo <= ERROR["f"] <= hi, (lo, hi)


# -- the predictive check: each record through its own covariates' matrix --------------


@pytest.fixture(scope="module")
def prior_fit(tmp_path_factory):
    """A prior-only fit of SMALL (its draws vary every effect) and its panel."""
    from typer.testing import CliRunner

    from markov_migration.cli.app import app
    from markov_migration.fitfile.format import read_fit, write_fit

    d = tmp_path_factory.mktemp("misccovppc")
    df = small_panel()
    df.to_csv(d / "p.csv", index=False)
    (d / "m.toml").write_text(SMALL)
    res = CliRunner().invoke(app, ["fit", str(d / "p.csv"), "--model", str(d / "m.toml"),
                                   "--out", str(d / "prior.nc"), "--prior-only", "--chains", "2",
                                   "--draws", "6", "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    tree = read_fit(d / "prior.nc")
    post = tree["posterior"].to_dataset()
    # the prior's age effect (per year) saturates the probabilities far from the centre:
    # shrink it to a plausible per-year effect
    age = np.array([lab.startswith("age") for lab in post["misclassification_effect"].values])
    post[MISC_LOG_OR] = post[MISC_LOG_OR] * np.where(age, 0.05, 1.0)
    tree["posterior"] = post
    write_fit(tree, d / "fit.nc")
    return read_fit(d / "fit.nc"), df, d


def _reference_terms(tree):
    """Per draw ``i``: first weights, and the generator and misclassification of a record.

    The generator of a record (which starts an interval) has ``exp(log HR)`` on
    abroad->returned for men; its misclassification matrix is the baseline times
    ``exp(beta x)`` on the declared errors for the record's own sex and age, rows
    normalised.
    """
    post = tree["posterior"]
    states = list(post["from_state"].values.astype(str))
    k = len(states)
    n = post.sizes["chain"] * post.sizes["draw"]

    def flat(name):
        v = post[name].values
        return v.reshape(n, *v.shape[2:])

    log_rate, lhr, e, pi = (flat(v) for v in ("log_rate", "log_hazard_ratio",
                                              "misclassification", "initial"))  # fmt: skip
    lor = flat(MISC_LOG_OR)
    labels = post["misclassification_effect"].values.astype(str)
    centre = float(tree["constant_data"]["covariate_center"].sel(numeric_covariate="age"))
    moves = [tuple(states.index(s) for s in t.split("->"))
             for t in post["transition"].values.astype(str)]  # fmt: skip
    step = float(tree["constant_data"]["resolution"])

    def generator(i, row):
        q = np.zeros((k, k))
        for j, m in enumerate(moves):
            x = float(row["sex"] == "m") if m == (0, 2) else 0.0  # sex on abroad->returned
            q[m] = np.exp(log_rate[i, j] + lhr[i, 0] * x)
        q[range(k), range(k)] = -q.sum(axis=1)
        return q

    def emission(i, row):
        w = e[i].copy()
        for j, lab in enumerate(labels):
            cov, pair = lab.split(": ")
            r, s = (states.index(v) for v in pair.split("->"))
            x = float(row["sex"] == "m") if cov == "sex[m]" else float(row["age"]) - centre
            w[r, s] *= np.exp(lor[i, j] * x)
        return w / w.sum(axis=1, keepdims=True)

    return states, n, pi, generator, emission, step


def _check_reference(tree, df) -> dict[tuple[str, str], float]:
    """Expected next-record counts by (previous, next) record, brute force per respondent.

    The forward filter with ``scipy.linalg.expm`` of the generator of the record that
    starts each interval and the misclassification matrix of each record's own
    covariates (:func:`_reference_terms`).
    """
    from scipy.linalg import expm

    states, n, pi, generator, emission, step = _reference_terms(tree)
    k = len(states)
    out = np.zeros((k, k))
    data = df.sort_values(["id", "time"], kind="stable")
    for i in range(n):
        for _, g in data.groupby("id", sort=False):
            rows = g.to_dict("records")
            s = [states.index(r["state"]) for r in rows]
            f = pi[i] * emission(i, rows[0])[:, s[0]]
            f /= f.sum()
            for a in range(len(rows) - 1):
                gap = max(np.round((rows[a + 1]["time"] - rows[a]["time"]) / step), 1) * step
                carried = f @ expm(generator(i, rows[a]) * gap)
                e_next = emission(i, rows[a + 1])
                out[s[a]] += carried @ e_next
                f = carried * e_next[:, s[a + 1]]
                f /= f.sum()
    return {(states[a], states[b]): out[a, b] / n for a in range(k) for b in range(k)}


def test_check_expected_counts_equal_a_per_record_forward_filter(prior_fit):
    from markov_migration.results.ppc_latent import ppc_latent

    tree, df, _ = prior_fit
    res = ppc_latent(tree, n_draws=12, seed=0)
    got = res.table.groupby(["from", "to"])["expected"].sum().to_dict()
    want = _check_reference(tree, df)
    assert sum(want.values()) == pytest.approx(len(df) - df["id"].nunique(), rel=1e-9)
    for cell, value in want.items():
        assert got.get(cell, 0.0) == pytest.approx(value, rel=1e-9, abs=1e-9), cell
    assert any("its own covariates" in note for note in res.notes)


def test_backtest_predictive_equals_a_per_record_forward_filter(prior_fit):
    """``backtest``'s predictive of a record after each respondent's last one.

    Reference: the brute-force filter over the respondent's records (each through its
    own covariates' misclassification), carried over the gap with the last record's
    generator and recorded with the last record's covariates (their own are not in
    the refit; equal here, as sex is fixed and age is a respondent's), to 1e-9.
    """
    from scipy.linalg import expm

    from markov_migration.results.backtest_latent import latent_heldout_predictive

    tree, df, _ = prior_fit
    states, n, pi, generator, emission, step = _reference_terms(tree)
    pd_ = tree["panel_data"]
    resp, time = pd_["respondent"].to_numpy(), pd_["time"].to_numpy()
    ids = pd_["respondent_id"].to_numpy()[resp]  # the panel's id of each embedded row
    srt = np.lexsort((time, resp))
    origin = srt[np.r_[resp[srt][1:] != resp[srt][:-1], True]]  # each respondent's last row
    gap = np.round(np.linspace(0.4, 2.0, origin.size) / step) * step
    destination = np.arange(origin.size) % len(states)
    probs, predicted, names, _ = latent_heldout_predictive(tree, origin, gap, destination, n)
    assert predicted.all() and names[: len(states)] == states and probs.shape[0] == n
    data = df.sort_values(["id", "time"], kind="stable")
    by_id = {str(key): g.to_dict("records") for key, g in data.groupby("id", sort=False)}
    for j, row in enumerate(origin):
        rows = by_id[ids[row]]
        s = [states.index(r["state"]) for r in rows]
        for i in range(n):
            f = pi[i] * emission(i, rows[0])[:, s[0]]
            f /= f.sum()
            for a in range(len(rows) - 1):
                g = max(np.round((rows[a + 1]["time"] - rows[a]["time"]) / step), 1) * step
                f = (f @ expm(generator(i, rows[a]) * g)) * emission(i, rows[a + 1])[:, s[a + 1]]
                f /= f.sum()
            want = f @ expm(generator(i, rows[-1]) * gap[j]) @ emission(i, rows[-1])
            np.testing.assert_allclose(probs[i, j, : len(states)], want, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_summarize_check_project_on_the_fit(recovery_fit, tmp_path):
    from typer.testing import CliRunner

    from markov_migration.cli.app import app

    runner = CliRunner()
    fit = str(recovery_fit)
    shown = {}
    for sex in ("f", "m"):
        res = runner.invoke(app, ["summarize", fit, "--what", "misclassification",
                                  "--covariate", f"sex={sex}", "--format", "json"])  # fmt: skip
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)["rows"]
        row = next(r for r in rows if (r["from"], r["to"]) == ("swing", "abroad"))
        assert row["lower"] < ERROR[sex] < row["upper"], (sex, row)
        shown[sex] = row["mean"]
    assert shown["m"] > 2 * shown["f"]
    res = runner.invoke(app, ["summarize", fit, "--what", "misclassification",
                              "--covariate", "sex=x"])  # fmt: skip
    assert res.exit_code == 2 and "not a level of 'sex'" in res.stderr
    res = runner.invoke(app, ["check", fit, "--out-dir", str(tmp_path / "check"), "--draws", "50"])
    assert res.exit_code in (0, 1), res.output
    rows = (tmp_path / "check" / "checks.csv").read_text()
    assert "ppc_transitions" in rows and "misclassification" in rows
    # sex acts on misclassification only: the projection (true states) is the same for both
    stocks = []
    for sex in ("f", "m"):
        out = tmp_path / f"proj_{sex}.nc"
        res = runner.invoke(app, ["project", fit, "--initial", "abroad=1000,swing=500",
                                  "--start", "5", "--horizon", "10", "--draws", "20", "--seed", "1",
                                  "--covariate", f"sex={sex}", "--out", str(out)])  # fmt: skip
        assert res.exit_code == 0, res.output
        from markov_migration.projection.files import read_projection

        stocks.append(read_projection(out)["stock"].to_numpy())
    np.testing.assert_array_equal(stocks[0], stocks[1])


@pytest.mark.slow
def test_filters_without_per_record_tables_refuse(recovery_fit):
    """A caller without per-pattern tables gets one line, not a wrong table (a guard: the
    check and the backtest pass ``per_pattern``; nonresponse models refuse these covariates)."""
    from markov_migration.errors import InputError
    from markov_migration.fitfile.format import read_fit
    from markov_migration.results.ppc_latent import MISC_COVARIATES_REFUSAL, latent_model_arrays

    with pytest.raises(InputError, match="covariates on misclassification") as err:
        latent_model_arrays(read_fit(recovery_fit), np.arange(4))
    assert str(err.value).startswith(MISC_COVARIATES_REFUSAL[:40])


def test_prior_sd_and_misclassification_only_covariates_are_parsed():
    assert SMALL.endswith(
        '[covariates.age]\nkind = "numeric"\ntransitions = []\n'
        'misclassification = ["swing->abroad"]\n'
    )
    spec = parse_spec(SMALL + "misclassification_prior_sd = 2.5\n")  # on age
    age = next(c for c in spec.covariates if c.name == "age")
    assert age.transitions == () and age.misclassification == ((1, 0),)
    assert age.misclassification_prior_sd == 2.5
    sex = next(c for c in spec.covariates if c.name == "sex")
    assert sex.transitions == ((0, 2),) and sex.misclassification_prior_sd == 1.0
    from markov_migration.inference.latent import latent_design
    from markov_migration.inputs.panel import validate_panel

    panel = validate_panel(small_panel(), spec)
    misc = misclassification_effects(spec, latent_design(spec, panel)[0], panel.data)
    assert misc.prior_sd.tolist() == [1.0, 1.0, 2.5]
    assert misc.labels == ("sex[m]: swing->abroad", "sex[m]: abroad->returned",
                           "age: swing->abroad")  # fmt: skip


def test_hazard_of_a_model_whose_covariates_act_only_on_misclassification(tmp_path):
    """``summarize --what hazard`` says why there are no hazard ratios, in one line."""
    from typer.testing import CliRunner

    from markov_migration.cli.app import app

    only = SMALL.replace('transitions = ["abroad->returned"]\n', "transitions = []\n")
    (tmp_path / "m.toml").write_text(only)
    small_panel().to_csv(tmp_path / "p.csv", index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["fit", str(tmp_path / "p.csv"), "--model", str(tmp_path / "m.toml"),
                              "--out", str(tmp_path / "f.nc"), "--prior-only", "--draws", "5",
                              "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    res = runner.invoke(app, ["summarize", str(tmp_path / "f.nc"), "--what", "hazard"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: the covariates of model 'misc3cov' act only on misclassification "
        "probabilities: no hazard ratios (see summarize --what misclassification)"
    ]
