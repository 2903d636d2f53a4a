"""State-dependent nonresponse (issue 13, item 6): spec, schedule, likelihood, simulator, recovery.

References: the likelihood of the PyMC model built from a model file is
compared, at fixed parameters, with a brute-force sum over the true states at
every record and scheduled interview (``P(t)`` from :func:`scipy.linalg.expm`),
to 1e-10 relative; the model's gradient with central finite differences; the
simulator's response shares with their probabilities (4 binomial standard
errors); the fits with the simulated truth.
"""

# ruff: noqa: TID251  (tests of the layer-3 model import PyTensor directly)
from __future__ import annotations

import itertools
import textwrap

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.forward import OBS_EXACT, OBS_PANEL
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import SpecError
from markov_migration.inference.latent import build_latent_model
from markov_migration.inputs.nonresponse import schedule_records
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_paths_for_spec
from markov_migration.inputs.spec import parse_spec
from tests.conftest import model_gradient_and_fd

BASE = """\
name = "tiny"
states = ["well", "ill", "dead"]
[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]
[data]
resolution = 0.01
"""

#: A tiny panel with waves near 0, 1, 2, 3 (medians 0.025, 1.00, 2.07, 3.00).
#: Respondent 1 misses wave 2; 2 answers only wave 0 (misses 1, 2, 3); 3 joins at
#: wave 1 and dies in wave 2 (the schedule ends); 4 has two records in wave 1 and
#: misses wave 2; 5 answers every wave.
TINY = [
    (1, 0.02, "well"), (1, 1.05, "ill"), (1, 3.01, "well"),
    (2, 0.00, "ill"),
    (3, 0.98, "well"), (3, 2.10, "dead"),
    (4, 0.05, "well"), (4, 0.97, "well"), (4, 1.02, "ill"), (4, 3.00, "dead"),
    (5, 0.03, "ill"), (5, 1.00, "ill"), (5, 2.04, "well"), (5, 2.96, "ill"),
]  # fmt: skip
#: The scheduled interviews each respondent missed (wave medians, by hand).
MISSED = {1: [2.07], 2: [1.00, 2.07, 3.00], 3: [], 4: [2.07], 5: []}


def tiny_panel(spec):
    df = pd.DataFrame(TINY, columns=["id", "time", "state"])
    return validate_panel(df, spec)


def spec_of(extra: str):
    return parse_spec(BASE + textwrap.dedent(extra), path="m.toml")


# -- the model file ---------------------------------------------------------------------


def test_defaults_and_priors_parsed():
    o = spec_of("[nonresponse]\n").observation
    assert o.latent and not o.hidden
    assert o.nonresponse.schedule == "waves"
    assert o.nonresponse.states == (0, 1, 2)
    assert o.nonresponse.alpha == (1.0, 1.0, 1.0) and o.nonresponse.beta == (1.0, 1.0, 1.0)
    assert o.nonresponse.attrition
    o = spec_of(
        """
        [nonresponse]
        schedule = "waves"
        states = ["well", "ill"]
        [priors]
        response = { alpha = 4, beta = 1, ill = { beta = 2 } }
        "well->ill" = { rate = 0.1 }
        """
    ).observation
    assert o.nonresponse.states == (0, 1)
    assert o.nonresponse.alpha == (4.0, 4.0) and o.nonresponse.beta == (1.0, 2.0)


@pytest.mark.parametrize(
    ("extra", "message", "line"),
    [
        ("[nonresponse]\nschedule = 'visit_date'\n", 'schedule must be "waves"', 9),
        ("[nonresponse]\nstates = ['ghost']\n", "'ghost' is not a declared state", 9),
        ("[nonresponse]\nstates = ['well', 'well']\n", "lists a state twice", 9),
        ("[nonresponse]\nattrition = 'yes'\n", "attrition must be true or false", 9),
        (
            "[nonresponse]\n[priors]\nresponse = { ghost = { alpha = 2 } }\n",
            "'ghost' is neither alpha, beta nor a declared state",
            10,
        ),
        (
            "[nonresponse]\nstates = ['ill']\n[priors]\nresponse = { well = { alpha = 2 } }\n",
            "'well' is not one of the [nonresponse] states",
            11,
        ),
        ("[nonresponse]\n[priors]\nresponse = { alpha = -1 }\n", "must be a positive", 10),
        ("[nonresponse]\n[priors]\nresponse = { well = 0.5 }\n", "Beta prior", 10),
        ("[priors]\nresponse = { alpha = 2 }\n", "needs a [nonresponse] table", 9),
    ],
)
def test_bad_specs(extra, message, line):
    with pytest.raises(SpecError) as err:
        spec_of(extra)
    assert message in str(err.value)
    assert str(err.value).count("\n") == 0
    assert err.value.line == line


def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(BASE + "[nonresponse]\n[priors]\nresponse = { ghost = { alpha = 2 } }\n")
    panel = tmp_path / "p.csv"
    pd.DataFrame(TINY, columns=["id", "time", "state"]).to_csv(panel, index=False)
    out = tmp_path / "f.nc"
    result = CliRunner().invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "'ghost'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


# -- the schedule -------------------------------------------------------------------------


def test_schedule_records_adds_missed_waves():
    ids, times, states = (np.array(c) for c in zip(*TINY, strict=True))
    codes = np.array([["well", "ill", "dead"].index(s) for s in states])
    obstype = np.where(codes == 2, OBS_EXACT, OBS_PANEL)
    rec = schedule_records(ids, times, codes, obstype, np.ones(ids.size), 3, [2])
    assert rec.n_missed == sum(len(v) for v in MISSED.values())
    np.testing.assert_allclose(rec.wave_times, [0.025, 1.00, 2.07, 3.00])
    for person, missed in MISSED.items():
        mine = rec.ids == person
        np.testing.assert_allclose(rec.times[mine & (rec.codes == 6)], missed)
        assert np.all(np.diff(rec.times[mine]) >= 0)
    # first records plain; answered interviews in the second block; the exact death
    # and respondent 4's second record in wave 1 plain
    first = np.r_[True, rec.ids[1:] != rec.ids[:-1]]
    assert np.all(rec.codes[first] < 3)
    assert rec.codes[(rec.ids == 4) & (rec.times == 0.97)] == [3 + 0]
    assert rec.codes[(rec.ids == 4) & (rec.times == 1.02)] == [1]
    assert rec.codes[(rec.ids == 3) & (rec.times == 2.10)] == [2 * 3 + 1 + 2]
    assert rec.n_answered == 6


# -- the likelihood at fixed parameters against a brute-force sum over hidden paths -------


def brute_force(Q, pi, E, r, exact, d=None) -> float:
    """Sum over the true states at every record and scheduled interview of the tiny panel.

    ``E[true, recorded]``; ``r`` the response probability of each true state;
    ``exact``: whether ``dead`` records are exact entry times (the state just
    before is summed over too, with the intensity into ``dead``). ``d``: the
    attrition hazard of each state: the chain then runs on (state, lost) pairs,
    lost respondents miss every interview (``P(t)`` of that chain by expm too).
    """
    k = Q.shape[0]
    if d is None:
        pairs = [(s, False) for s in range(k)]
        Qx = Q
    else:
        pairs = [(s, False) for s in range(k)] + [(s, True) for s in range(k)]
        D = np.diag(d)
        Qx = np.block([[Q - D, D], [np.zeros((k, k)), Q]])
    total = 0.0
    for person in MISSED:
        steps = [(t, s, "record") for i, t, s in TINY if i == person]
        steps += [(t, None, "missed") for t in MISSED[person]]
        steps.sort(key=lambda x: x[0])
        lik = 0.0
        for path in itertools.product(range(len(pairs)), repeat=len(steps)):
            p = 1.0
            waves_seen = set()
            for j, ((t, state, kind), h) in enumerate(zip(steps, path, strict=True)):
                s, lost = pairs[h]
                wave = round(t)
                if j == 0:
                    p *= pi[s] * E[s, ["well", "ill", "dead"].index(state)] * (not lost)
                    waves_seen = {wave}
                    continue
                P = expm(Qx * (t - steps[j - 1][0]))
                prev = path[j - 1]
                if kind == "missed":
                    p *= P[prev, h] * (1.0 if lost else 1 - r[s])
                    continue
                code = ["well", "ill", "dead"].index(state)
                if exact and state == "dead":  # entered dead from an alive state, same flag
                    into = sum(
                        P[prev, a] * Q[pairs[a][0], 2]
                        for a in range(len(pairs))
                        if pairs[a][0] != 2 and pairs[a][1] == lost
                    )
                    p *= into * (s == 2)
                else:
                    p *= P[prev, h] * E[s, code] * (not lost)
                    if wave not in waves_seen:
                        p *= r[s]
                waves_seen.add(wave)
            lik += p
        total += np.log(lik)
    return total


def model_loglik(model, values: dict) -> float:
    pot = model.potentials[0]
    replace = {model[name]: pt.constant(np.asarray(v, dtype=float)) for name, v in values.items()}
    return float(pytensor.graph.replace.graph_replace(pot, replace, strict=False).eval())


RATES = {(0, 1): 0.35, (0, 2): 0.05, (1, 0): 0.6, (1, 2): 0.15}


def generator() -> np.ndarray:
    Q = np.zeros((3, 3))
    for (a, b), v in RATES.items():
        Q[a, b] = v
    np.fill_diagonal(Q, -Q.sum(axis=1))
    return Q


@pytest.mark.parametrize("attrition", [False, True])
def test_loglik_equals_brute_force_exact_death(attrition):
    """Non-hidden model: the first record conditioned on; dead always recorded (r = 1)."""
    spec = spec_of(
        f"""
        [observation]
        exact = ["dead"]
        [nonresponse]
        states = ["well", "ill"]
        attrition = {str(attrition).lower()}
        """
    )
    model = build_latent_model(spec, tiny_panel(spec))
    response = np.array([0.8, 0.45])
    log_rate = np.log([RATES[p] for p in spec.transitions])
    values = {"log_rate": log_rate, "response": response}
    d = None
    if attrition:
        values["log_attrition"] = np.log([0.2, 0.5])
        d = np.array([0.2, 0.5, 0.0])
    got = model_loglik(model, values)
    ref = brute_force(generator(), np.ones(3), np.eye(3), [0.8, 0.45, 1.0], exact=True, d=d)
    assert got == pytest.approx(ref, rel=1e-10, abs=0)
    # the responses matter: a model without [nonresponse] differs
    plain = build_latent_model(spec_of("[observation]\nexact = ['dead']\n"), tiny_panel(spec))
    assert abs(model_loglik(plain, {"log_rate": log_rate}) - got) > 0.5


@pytest.mark.parametrize("attrition", [False, True])
def test_loglik_equals_brute_force_misclassified(attrition):
    """Hidden model: initial distribution, misclassification, every state may not answer."""
    spec = spec_of(
        f"""
        [misclassification]
        well = ["ill"]
        ill = ["well"]
        [nonresponse]
        attrition = {str(attrition).lower()}
        """
    )
    model = build_latent_model(spec, tiny_panel(spec))
    E = np.array([[0.85, 0.15, 0], [0.3, 0.7, 0], [0, 0, 1]])
    pi = np.array([0.5, 0.4, 0.1])
    r = np.array([0.9, 0.6, 0.2])
    values = {
        "log_rate": np.log([RATES[p] for p in spec.transitions]),
        "response": r,
        "misclassification_well": E[0, [0, 1]],
        "misclassification_ill": E[1, [1, 0]],
        "initial": pi,
    }
    d = None
    if attrition:
        values["log_attrition"] = np.log([0.3, 0.1])
        d = np.array([0.3, 0.1, 0.0])
    got = model_loglik(model, values)
    ref = brute_force(generator(), pi, E, r, exact=False, d=d)
    assert got == pytest.approx(ref, rel=1e-10)


def test_model_gradient_matches_finite_differences():
    """d logp (rates, phases, misclassification, response, initial) vs central differences."""
    spec = spec_of(
        """
        [observation]
        exact = ["dead"]
        [misclassification]
        well = ["ill"]
        [phases]
        ill = 2
        [nonresponse]
        [priors]
        response = { alpha = 3, beta = 1 }
        """
    )
    model = build_latent_model(spec, tiny_panel(spec))
    assert {rv.name for rv in model.free_RVs} >= {"response", "log_rate_latent", "log_attrition"}
    grad, fd = model_gradient_and_fd(model, seed=7, spread=0.2)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


# -- the simulator ------------------------------------------------------------------------

SIM = """\
name = "nr"
states = ["abroad", "returned"]
[transitions]
abroad = ["returned"]
returned = ["abroad"]
[rates]
"abroad->returned" = 0.3
"returned->abroad" = 0.6
[simulate]
waves = [0, 1, 2, 3, 4, 5]
jitter = 0.1
initial = { abroad = 0.7, returned = 0.3 }
response = { returned = 0.5, abroad = 0.9 }
"""


def test_simulated_response_depends_on_the_true_state():
    sim = simulate_paths_for_spec(parse_spec(SIM), 4000, seed=2)
    state = sim.paths.observed[:, 1:]  # scheduled waves after joining (no late entry)
    answered = sim.interviewed[:, 1:]
    assert np.all(sim.interviewed[:, 0])
    for s, p in ((0, 0.9), (1, 0.5)):
        n = int(np.sum(state == s))
        share = np.sum(answered & (state == s)) / n
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (s, share)
    assert len(sim.panel) == int(sim.interviewed.sum())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("{ ghost = 0.5 }", "'ghost' is not a declared state"),
        ("{ returned = 0 }", "must be a probability in (0, 1]"),
        ("{ returned = 1.5 }", "must be a probability in (0, 1]"),
    ],
)
def test_bad_simulated_response(table, message):
    text = SIM.replace("{ returned = 0.5, abroad = 0.9 }", table)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("]", r"\]")):
        simulate_paths_for_spec(parse_spec(text), 10, seed=1)


# -- recovery -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "attrition",
    [pytest.param(0.0, marks=pytest.mark.validation), 0.15],  # one case in the default suite
)
def test_nonresponse_fit_recovers_rates_the_plain_fit_misses(tmp_path, attrition):
    """Returnees answer half the waves, the settled 90%: the nonresponse fit covers the truth.

    1,500 respondents, 6 yearly waves (seed 11), without and with 15% of
    respondents lost at random between waves. The plain fit of the same panel
    puts ``returned->abroad`` far above the truth (returnees who stay are
    missed); the nonresponse fit's 90% intervals cover both rates and both
    response probabilities. More seeds: ``docs/observation-models.md``.
    """
    from markov_migration.inference.fit import fit
    from markov_migration.inputs.simulate import simulate_panel

    df = simulate_panel(parse_spec(SIM), 1500, seed=11, attrition=attrition)
    path = tmp_path / "panel.csv"
    df.to_csv(path, index=False)
    truth = np.array([0.3, 0.6])
    kwargs = {"chains": 2, "draws": 500, "tune": 500, "seed": 11, "cores": 2}
    plain = fit(path, parse_spec(SIM), **kwargs).posterior["rate"]
    lo = plain.quantile(0.05, SAMPLE_DIMS).to_numpy()
    assert lo[1] > truth[1]  # returned->abroad overestimated
    post = fit(path, parse_spec(SIM + "[nonresponse]\n"), **kwargs).posterior
    for name, value in (("rate", truth), ("response", np.array([0.9, 0.5]))):
        lo, hi = (post[name].quantile(q, SAMPLE_DIMS).to_numpy() for q in (0.05, 0.95))
        assert np.all((lo <= value) & (value <= hi)), (name, lo, value, hi)
