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
