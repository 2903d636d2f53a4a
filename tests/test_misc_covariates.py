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
from tests.test_latent_covariates import model_loglik, misc_values
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
