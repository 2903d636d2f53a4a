"""Latent-state models (issue 13): the Op's gradient, the PyMC model against R msm, real fits.

The model-level tests evaluate the PyMC model's likelihood term at R msm's fixed
parameters (``tests/results/forward/*.json``, made by the R scripts there) with the
model built from a model file and a panel exactly as ``fit`` builds it, so the
spec -> record codes -> emission table -> Op wiring is checked against msm.
"""

# ruff: noqa: TID251  (tests of the layer-3 Op and model import PyTensor directly)
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

from markov_migration.core.forward import aggregate_histories, loglik_and_grad
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inference.latent import (
    build_latent_model,
    latent_layout,
    observed_generator,
)
from markov_migration.inference.latent_op import forward_loglik
from markov_migration.inputs.panel import load_panel, validate_panel
from markov_migration.inputs.spec import parse_spec
from tests.conftest import model_gradient_and_fd

RESULTS = Path(__file__).parent / "results" / "forward"
CAV = RESULTS / "cav.csv"
#: R msm's -2 log L is matched to this relative tolerance (the core matches to 1e-14).
RTOL = 1e-8

TWOWAY = """\
name = "cav"
states = ["well", "mild", "severe", "dead"]
[transitions]
well = ["mild", "dead"]
mild = ["well", "severe", "dead"]
severe = ["mild", "dead"]
[data]
id = "PTNUM"
time = "years"
state_codes = true
resolution = 1e-9  # msm uses the exact times; fits round gaps to a day by default
"""


def case(script: str, name: str) -> dict:
    cases = json.loads((RESULTS / f"{script}.json").read_text())["cases"]
    return next(c for c in cases if c["name"] == name)


def model_loglik(model, values: dict) -> float:
    """The model's likelihood Potential with its random variables replaced by values."""
    pot = model.potentials[0]
    replace = {model[name]: pt.constant(np.asarray(v, dtype=float)) for name, v in values.items()}
    return float(pytensor.graph.replace.graph_replace(pot, replace, strict=False).eval())


def log_rates(spec, q) -> np.ndarray:
    q = np.asarray(q)
    return np.log([q[r, s] for r, s in spec.transitions])


# -- the Op: gradient against finite differences --------------------------------------


@pytest.fixture(scope="module")
def small_histories():
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(30), 4)
    times = np.tile([0.0, 1.0, 2.5, 3.0], 30) + rng.uniform(0, 0.3, 120)
    codes = rng.integers(0, 4, 120)
    obstype = np.where(codes == 2, 3, 1)  # exact entry times into state 2
    return aggregate_histories(ids, times, codes, obstype)


Q_SMALL = np.array([[-0.5, 0.3, 0.2], [0.4, -0.7, 0.3], [0.1, 0.2, -0.3]])
E_SMALL = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
#: Records: the three states and a censored code {0, 1}.
S_SMALL = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=float)
PI_SMALL = np.array([0.5, 0.3, 0.2])


def test_op_gradient_matches_finite_differences(small_histories):
    def f(q, pi, b):
        return forward_loglik(q, pi, b, list(small_histories))

    pytensor.gradient.verify_grad(
        f, [Q_SMALL, PI_SMALL, S_SMALL @ E_SMALL.T], rng=np.random.default_rng(0), eps=1e-6
    )


def test_op_gradient_repeated_eigenvalues(small_histories):
    # A symmetric chain with equal rates has a repeated eigenvalue.
    q = np.full((3, 3), 0.25) - 0.75 * np.eye(3)

    def f(q, pi, b):
        return forward_loglik(q, pi, b, list(small_histories))

    pytensor.gradient.verify_grad(
        f, [q, PI_SMALL, S_SMALL @ E_SMALL.T], rng=np.random.default_rng(0), eps=1e-6
    )


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_op_matches_core_in_each_backend(small_histories, mode):
    q, pi, b = pt.matrix("q"), pt.vector("pi"), pt.matrix("b")
    ll = forward_loglik(q, pi, b, list(small_histories), condition_first=True)
    fn = pytensor.function([q, pi, b], [ll, *pt.grad(ll, [q, pi, b])], mode=mode)
    B = S_SMALL @ E_SMALL.T
    value, dq, dpi, db = fn(Q_SMALL, PI_SMALL, B)
    ref = loglik_and_grad(Q_SMALL, PI_SMALL, B, *small_histories, condition_first=True)
    assert value == pytest.approx(ref[0], rel=1e-13)
    np.testing.assert_allclose(dq, ref[1], atol=1e-12)
    np.testing.assert_allclose(db, ref[2], atol=1e-12)
    np.testing.assert_allclose(dpi, ref[3], atol=1e-12)


# -- the PyMC model from a model file against R msm -------------------------------------


@pytest.mark.parametrize(("name", "exact"), [("other_deathexact", True), ("other_panel", False)])
def test_exact_death_model_matches_msm(name, exact):
    c = case("msm_deathexact", name)
    spec = parse_spec(TWOWAY + ('[observation]\nexact = ["dead"]\n' if exact else ""))
    panel = load_panel(CAV, spec)
    if not exact:  # the plain panel is not latent: declare a harmless censored code
        spec = parse_spec(TWOWAY + '[observation]\ncensored = { "0" = ["well", "mild"] }\n')
    model = build_latent_model(spec, panel)
    ll = model_loglik(model, {"log_rate": log_rates(spec, c["qmatrix"])})
    assert -2 * ll == pytest.approx(c["minus2loglik"], rel=RTOL)


def test_censored_model_matches_msm():
    c = case("msm_censor", "censor_deathexact")
    codes = json.loads((RESULTS / "msm_censor.json").read_text())["states"]
    spec = parse_spec(
        TWOWAY
        + '[observation]\nexact = ["dead"]\n'
        + 'censored = { "99" = ["well", "mild", "severe"], "98" = ["well", "mild"] }\n'
    )
    df = pd.read_csv(CAV)
    df["state"] = codes
    panel = validate_panel(df, spec)
    model = build_latent_model(spec, panel)
    ll = model_loglik(model, {"log_rate": log_rates(spec, c["qmatrix"])})
    assert -2 * ll == pytest.approx(c["minus2loglik"], rel=RTOL)


MISC = """\
name = "cav_misc"
states = ["well", "mild", "severe", "dead"]
[transitions]
well = ["mild", "dead"]
mild = ["severe", "dead"]
severe = ["dead"]
[misclassification]
well = ["mild"]
mild = ["well", "severe"]
severe = ["mild"]
[data]
id = "PTNUM"
time = "years"
state_codes = true
resolution = 1e-9  # msm uses the exact times; fits round gaps to a day by default
"""


@pytest.mark.parametrize(
    ("name", "exact"),
    [("misc_init0.7_0.2_0.1_0_deathexact", True), ("misc_init0.7_0.2_0.1_0", False)],
)
def test_misclassification_model_matches_msm(name, exact):
    c = case("msm_misc", name)
    spec = parse_spec(MISC + ('[observation]\nexact = ["dead"]\n' if exact else ""))
    model = build_latent_model(spec, load_panel(CAV, spec))
    e = np.array(c["ematrix"])
    values = {
        "log_rate": log_rates(spec, c["qmatrix"]),
        "initial": c["initprobs"],
        "misclassification_well": [1 - e[0].sum(), e[0, 1]],
        "misclassification_mild": [1 - e[1].sum(), e[1, 0], e[1, 2]],
        "misclassification_severe": [1 - e[2].sum(), e[2, 1]],
    }
    assert -2 * model_loglik(model, values) == pytest.approx(c["minus2loglik"], rel=RTOL)


@pytest.mark.parametrize("name", ["phase_well", "phase_mild_deathexact"])
def test_phase_model_matches_msm(name):
    c = case("msm_phase", name)
    state = ["well", "mild"][c["phase_state"] - 1]
    extra = f"[phases]\n{state} = {c['n_phases']}\n"
    if c["deathexact"]:
        extra += '[observation]\nexact = ["dead"]\n'
    spec = parse_spec(TWOWAY + extra)
    layout = latent_layout(spec)
    hq = np.array(c["hidden_qmatrix"])
    # msm's hidden states are ordered as ours: by observed state, then phase
    assert len(layout.hidden_states) == hq.shape[0]
    values = {"log_rate_latent": np.log(hq[layout.rate_from, layout.rate_to])}
    values["initial"] = c["initprobs"]
    model = build_latent_model(spec, load_panel(CAV, spec))
    assert -2 * model_loglik(model, values) == pytest.approx(c["minus2loglik"], rel=RTOL)


def test_observed_generator_of_phases():
    # Two phases of state 0 (rates 0->0' a, 0->1 b, 0'->1 c): mean time 1/(a+b) + a/((a+b)c),
    # always leaving to state 1.
    spec = parse_spec('states = ["x", "y"]\n[transitions]\nx = ["y"]\ny = ["x"]\n[phases]\nx = 2\n')
    layout = latent_layout(spec)
    a, b, c, d = 0.5, 0.2, 0.05, 0.3
    rates = {("x_1", "x_2"): a, ("x_1", "y"): b, ("x_2", "y"): c, ("y", "x_1"): d}
    names = layout.hidden_states
    q = np.zeros((3, 3))
    for (r, s), v in rates.items():
        q[names.index(r), names.index(s)] = v
    q[np.diag_indices(3)] = -q.sum(axis=1)
    out = observed_generator(q, layout, 2)
    mean = 1 / (a + b) + a / ((a + b) * c)
    np.testing.assert_allclose(out, [[-1 / mean, 1 / mean], [d, -d]], rtol=1e-12)
    stacked = observed_generator(np.stack([q, 2 * q, 3 * q]).reshape(3, 1, 3, 3), layout, 2)
    assert stacked.shape == (3, 1, 2, 2)
    np.testing.assert_allclose(stacked[2, 0], 3 * out, rtol=1e-12)


# -- real sampling --------------------------------------------------------------------


@pytest.mark.slow
def test_cav_exact_death_fit_matches_msm_mle(tmp_path):
    """nutpie posterior means within 2 posterior sd of msm's MLE with ``deathexact = 4``.

    With flat-ish priors (log-rate sd 1.5) and 622 patients the posterior mean and
    the MLE differ by much less than a posterior sd (observed: |z| < 0.3).
    """
    from markov_migration.inference.fit import fit

    model = tmp_path / "cav.toml"
    model.write_text(TWOWAY + '[observation]\nexact = ["dead"]\n')
    tree = fit(CAV, model, chains=2, draws=500, tune=500, seed=1, cores=2)
    q = tree.posterior["Q"]
    mean, sd = q.mean(SAMPLE_DIMS).to_numpy(), q.std(SAMPLE_DIMS).to_numpy()
    mle = np.array(case("msm_deathexact", "mle_deathexact")["qmatrix"])
    allowed = mle > 0
    z = (mean - mle)[allowed] / sd[allowed]
    assert np.all(np.abs(z) < 2), z
    assert tree["log_likelihood"]["histories"].sizes["respondent"] == 622
    assert "Q" in tree.posterior and "initial" not in tree.posterior


RECOVERY = """\
name = "misc3"
states = ["abroad", "swing", "returned"]
[transitions]
abroad = ["swing", "returned"]
swing = ["abroad", "returned"]
returned = ["abroad"]
[misclassification]
swing = ["abroad"]
[rates]
"abroad->swing" = 0.3
"abroad->returned" = 0.1
"swing->abroad" = 0.5
"swing->returned" = 0.2
"returned->abroad" = 0.15
"""


@pytest.mark.slow
def test_misclassified_panel_recovery(tmp_path):
    """A panel whose ``swing`` records are ``abroad`` 20% of the time: the truth is recovered.

    1,500 respondents, 6 yearly waves (seed 3). Every true intensity and the error
    probability lie in the 95% posterior interval; a pure-panel fit of the same
    records would see fewer swing stays and faster swing->abroad moves.
    """
    from markov_migration.inference.fit import fit
    from markov_migration.inputs.simulate import simulate_panel

    spec = parse_spec(RECOVERY)
    df = simulate_panel(spec, 1500, waves=[0, 1, 2, 3, 4, 5], seed=3)
    rng = np.random.default_rng(3)
    error = 0.2
    flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < error)
    df.loc[flip, "state"] = "abroad"
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    tree = fit(panel, spec, chains=2, draws=400, tune=400, seed=2, cores=2)
    post = tree.posterior
    lo, hi = (post["rate"].quantile(q, SAMPLE_DIMS).to_numpy() for q in (0.025, 0.975))
    truth = np.array([spec.rates[p] for p in spec.transitions])
    assert np.all((lo <= truth) & (truth <= hi)), (lo, truth, hi)
    err = post["misclassification"].sel(true_state="swing", recorded_state="abroad")
    lo, hi = (float(err.quantile(q, SAMPLE_DIMS)) for q in (0.025, 0.975))
    assert lo <= error <= hi, (lo, hi)


def test_model_gradient_with_every_feature_matches_finite_differences():
    """d logp of the PyMC model (phases, misclassification, exact, censored) vs central FD."""
    spec = parse_spec(
        TWOWAY
        + '[observation]\nexact = ["dead"]\ncensored = { "99" = ["well", "mild", "severe"] }\n'
        + '[misclassification]\nwell = ["mild"]\nsevere = ["mild"]\n[phases]\nmild = 2\n'
    )
    df = pd.read_csv(CAV)
    df.loc[df.index[::13], "state"] = np.where(df["state"].iloc[::13] == 4, 4, 99)
    model = build_latent_model(spec, validate_panel(df, spec))
    grad, fd = model_gradient_and_fd(model, seed=5, spread=0.1)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-4)


STAYER_TRUTH = """\
name = "stayer_truth"
states = ["abroad", "returned_1", "returned_2"]
[transitions]
abroad = ["returned_1"]
returned_1 = ["returned_2", "abroad"]
returned_2 = ["abroad"]
[rates]
"abroad->returned_1" = 0.3
"returned_1->returned_2" = 0.5
"returned_1->abroad" = 1.5
"returned_2->abroad" = 0.05
"""

STAYER_FIT = """\
name = "stayer"
states = ["abroad", "returned"]
[transitions]
abroad = ["returned"]
returned = ["abroad"]
[phases]
returned = 2
"""


@pytest.mark.slow
def test_phase_type_returnees_recovered(tmp_path):
    """Short-stay vs settled returnees (a Coxian ``returned``): the four hidden rates are recovered.

    The panel is simulated on the hidden states and recorded as ``returned`` for
    both phases (2,000 respondents, 7 yearly waves, seed 4). Every true hidden
    intensity lies in the 95% posterior interval.
    """
    from markov_migration.inference.fit import fit
    from markov_migration.inputs.simulate import simulate_panel

    truth = parse_spec(STAYER_TRUTH)
    df = simulate_panel(truth, 2000, waves=[0, 1, 2, 3, 4, 5, 6], seed=4)
    df["state"] = df["state"].str.replace(r"_\d$", "", regex=True)
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    spec = parse_spec(STAYER_FIT)
    tree = fit(panel, spec, chains=2, draws=400, tune=600, seed=3, cores=2)
    rate = tree.posterior["rate_latent"]
    lo, hi = (rate.quantile(q, SAMPLE_DIMS) for q in (0.025, 0.975))
    for (r, s), value in truth.rates.items():
        label = f"{truth.states[r]}->{truth.states[s]}"
        assert float(lo.sel(latent_transition=label)) <= value, label
        assert value <= float(hi.sel(latent_transition=label)), label
