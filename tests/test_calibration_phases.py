"""Phase-type returnees: simulating a phased model and its exact calibration figures.

References are independent of the code under test: the simulator against
``x0 expm(Q_hidden t)`` summed over each observed state's phases (|z| < 4.5),
the exact figures (:mod:`markov_migration.inputs.calibration_exact`) against a
brute-force simulated panel (|z| < 4.5 with binomial standard errors), and the
phase model with its settling move switched off against the plain model (1e-12).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import expm

from markov_migration.errors import SpecError
from markov_migration.inputs.calibration import wave_metrics, wave_states
from markov_migration.inputs.calibration_exact import (
    HiddenModel,
    expected_figures,
    expected_table,
    spec_model,
)
from markov_migration.inputs.simulate import simulate_paths_for_spec
from markov_migration.inputs.simulate_design import parse_design
from markov_migration.inputs.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
PHASES = ROOT / "models" / "migration5_phases.toml"
PLAIN = ROOT / "models" / "migration5.toml"

TOY = """
states = ["away", "home", "dead"]
[transitions]
away = ["home", "dead"]
home = ["away", "dead"]
[phases]
home = 2
[simulate]
waves = [0.0, 0.4, 1.5]
initial = { away = 0.6, home = 0.4 }
initial_phases = { home = [0.25, 0.75] }
[simulate.latent_rates]
"away->home_1" = 0.8
"away->dead" = 0.05
"home_1->home_2" = 1.5
"home_1->away" = 2.0
"home_1->dead" = 0.05
"home_2->away" = 0.1
"home_2->dead" = 0.05
"""


def test_latent_design_parses_hidden_generator():
    spec = parse_spec(TOY)
    lat = parse_design(spec).latent
    assert lat.names == ("away", "home_1", "home_2", "dead")
    assert lat.observed.tolist() == [0, 1, 1, 2]
    assert lat.q[1, 2] == 1.5 and lat.q[2, 0] == 0.1 and lat.q[0, 1] == 0.8
    assert np.allclose(lat.q.sum(axis=1), 0.0)
    assert lat.initial(np.array([0.6, 0.4, 0.0])) == pytest.approx([0.6, 0.1, 0.3, 0.0])


def test_phased_simulation_matches_expm_of_hidden_generator():
    """Share in each observed state at every wave: simulation vs x0 expm(Q_h t) collapsed."""
    spec = parse_spec(TOY)
    n = 40_000
    sim = simulate_paths_for_spec(spec, n, seed=11, history=False)
    lat = sim.design.latent
    x0 = lat.initial(sim.design.initial)
    onehot = (lat.observed[:, None] == np.arange(3)[None, :]).astype(float)
    states = wave_states(spec, sim.panel)
    assert (states >= 0).all()
    # the recorded states are the observed states of the simulated hidden paths
    assert np.array_equal(states, lat.observed[sim.paths.observed])
    for w, t in enumerate(sim.design.waves):
        p = x0 @ expm(lat.q * t) @ onehot
        share = np.bincount(states[:, w], minlength=3) / n
        z = (share - p) / np.sqrt(p * (1 - p) / n + 1e-300)
        assert np.all(np.abs(z[p > 0]) < 4.5), (t, share, p)
    # the hidden phase split at the first wave follows initial_phases
    home = sim.paths.observed[:, 0]
    frac = np.mean(home[np.isin(home, [1, 2])] == 1)
    assert abs(frac - 0.25) < 4.5 * math.sqrt(0.25 * 0.75 / np.isin(home, [1, 2]).sum())


def test_phase_model_without_settling_equals_plain_model():
    """Switch off returned_1 -> returned_2: the phase model's figures are the plain model's."""
    plain, phased = load_spec(PLAIN), load_spec(PHASES)
    base = spec_model(plain)
    names = parse_design(phased).latent.names
    h = {name: i for i, name in enumerate(names)}
    q = np.zeros((6, 6))
    for r, s in plain.transitions:
        a, b = plain.states[r], plain.states[s]
        q[h.get(a, h.get(f"{a}_1")), h.get(b, h.get(f"{b}_1"))] = base.q[r, s]
    q[h["returned_2"], h["reemigrated"]] = 0.7  # never reached
    np.fill_diagonal(q, -q.sum(axis=1))
    observed = np.array([0, 1, 2, 3, 3, 4])
    initial = base.initial[observed] * np.array([1, 1, 1, 1, 0, 1])
    effects = parse_design(plain).groups.effects
    got = expected_figures(phased, HiddenModel(q, observed, initial), parse_design(plain), effects)
    want = expected_figures(plain)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.fixture(scope="module")
def brute_force():
    """A large simulated panel of the phase model, interviews exactly at the nominal waves."""
    text = PHASES.read_text(encoding="utf-8").replace("jitter = 0.08", "jitter = 0.0")
    spec = parse_spec(text, path=str(PHASES))
    sim = simulate_paths_for_spec(spec, 60_000, seed=7, history=False)
    return spec, wave_states(spec, sim.panel)


@pytest.mark.slow
@pytest.mark.parametrize(
    "key",
    ["returned_share_w1", "left_again_w1_w2", "changed_w1_w2", "returned_w2_w3", "moved_w2_w3",
     "swing_share_w3", "transit_departure_panel", "settled_departure_panel"],
)  # fmt: skip
def test_exact_figures_match_brute_force_simulation(brute_force, key):
    """Exact figures on the hidden generator vs 60,000 simulated respondents: |z| < 4.5."""
    spec, states = brute_force
    exact = expected_figures(spec)[key]
    sim = wave_metrics(spec, states)[key]
    # binomial standard error with the figure's denominator (attrition and late entry
    # thin the panel independently of the states)
    seen = states >= 0
    home = np.isin(states, [spec.index("returned")]) & seen
    away = ~np.isin(states, [spec.index("returned")]) & seen
    denominators = {
        "returned_share_w1": seen[:, 0],
        "left_again_w1_w2": home[:, 0] & seen[:, 1],
        "changed_w1_w2": away[:, 0] & away[:, 1],
        "returned_w2_w3": away[:, 1] & seen[:, 2],
        "moved_w2_w3": away[:, 1] & away[:, 2],
        "swing_share_w3": away[:, 2],
        "transit_departure_panel": (states[:, 1] == spec.index("transit")) & seen[:, 2],
        "settled_departure_panel": (states[:, 1] == spec.index("abroad")) & seen[:, 2],
    }
    n = denominators[key].sum()
    se = math.sqrt(exact * (1 - exact) / n)
    assert abs(sim - exact) < 4.5 * se, (key, sim, exact, n)


def test_calibrated_phase_file_reproduces_its_table():
    """models/migration5_phases.toml: every figure in tolerance, values as in docs/calibration.md."""
    table = expected_table(load_spec(PHASES)).set_index("key")
    assert table["pass"].all(), table[~table["pass"]].to_string()
    documented = {
        "left_again_w1_w2": 0.756, "changed_w1_w2": 0.219, "returned_w2_w3": 0.068,
        "moved_w2_w3": 0.213, "stationary_return": 0.074, "leavers_per_returner": 0.926,
    }  # fmt: skip
    for key, value in documented.items():
        assert table.loc[key, "expected"] == pytest.approx(value, abs=6e-4), key
    plain = expected_table(load_spec(PLAIN)).set_index("key")
    assert plain.loc["returned_w2_w3", "expected"] == pytest.approx(0.0722, abs=1e-4)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('"home_2->away" = 0.1\n', "has no intensity for 'home_2->away'"),
        ('"home_2->away" = 0.1', '"home_3->away" = 0.1'),
        ("initial_phases = { home = [0.25, 0.75] }", "initial_phases = { home = [0.5] }"),
        ("[phases]\nhome = 2\n", ""),
    ],
    ids=["missing", "unknown", "split", "no-phases"],
)
def test_bad_latent_tables_are_one_line_spec_errors(edit, message):
    if edit.endswith("\n") and message.startswith("has no"):
        text, needle = TOY.replace(edit, ""), message
    elif edit.startswith("[phases]"):
        text, needle = TOY.replace(edit, ""), "needs a model with [phases]"
    elif "initial_phases" in edit:
        text, needle = TOY.replace(edit, message), "one share per phase"
    else:
        text, needle = TOY.replace(edit, message), "is not a hidden move"
    with pytest.raises(SpecError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_design(parse_spec(text))
    assert "\n" not in str(err.value)


def test_expected_returnees_match_simulated_paths():
    """Exact stock, return events and ever returned vs 40,000 simulated hidden paths."""
    from markov_migration.core.simulate import simulate_paths
    from markov_migration.inputs.calibration_exact import expected_returnees

    top = 'states = ["away", "home", "dead"]'
    spec = parse_spec(TOY.replace(top, top + '\nhome = ["home"]'))
    lat = parse_design(spec).latent
    got = expected_returnees(spec, abroad=1.0, start=0.0, horizons=(2.0,)).iloc[0]
    n = 40_000  # everyone starts 'away' at 0 (the home states start empty)
    paths = simulate_paths(
        lat.q[None, None], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
        np.zeros(n), np.full((n, 1), 2.0), seed=5, history=True,
    )  # fmt: skip
    home = np.isin(lat.observed, [1])
    final = paths.observed[:, 0]
    returns = np.zeros(n)
    for i in range(n):
        seq = paths.history_state[paths.history_ptr[i] : paths.history_ptr[i + 1]]
        returns[i] = np.sum(~home[seq[:-1]] & home[seq[1:]])
    checks = {
        "returned": home[final].astype(float),
        "ever_returned": (returns > 0).astype(float),
        "cumulative_returns": returns,
    }
    for key, x in checks.items():
        se = x.std() / math.sqrt(n)
        assert abs(x.mean() - got[key]) < 4.5 * se, (key, x.mean(), got[key])
    assert got["returned"] == pytest.approx(got["phase_1"] + got["phase_2"])


@pytest.mark.slow
@pytest.mark.validation  # a 13-rate least-squares refit, 30-40 s (make validate)
def test_phase_calibration_rederives_the_file():
    """examples/calibrate_migration5.py --phases --fit gives the file's rates (rounded)."""
    import importlib.util

    path = ROOT / "examples" / "calibrate_migration5.py"
    if not path.exists():
        pytest.skip("examples/ is not shipped with an installed package")
    mod_spec = importlib.util.spec_from_file_location("calibrate_migration5", path)
    cal = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(cal)
    spec = load_spec(PHASES)
    rates, initial, _figures = cal.fit(spec)
    q = parse_design(spec).latent
    index = {name: i for i, name in enumerate(q.names)}
    for label, value in rates.items():
        a, b = label.split("->")
        assert q.q[index[a], index[b]] == cal.round_rate(value), label
    assert round(initial["first_phase"], 2) == q.split[index["returned_1"]]


def test_numeric_covariate_acts_on_every_hidden_exit():
    """A per-unit hazard ratio on 'home->away' multiplies both phases' exits, not settling."""
    text = TOY.replace(
        "[simulate.latent_rates]",
        '[simulate.covariates.x]\nnormal = { mean = 0, sd = 1 }\neffects = { "home->away" = 4.0 }\n'
        "\n[simulate.latent_rates]",
    )
    spec = parse_spec(text)
    n = 20_000
    sim = simulate_paths_for_spec(spec, n, seed=3, history=False)
    lat = sim.design.latent
    x = sim.subjects["x"].to_numpy()
    x0 = lat.initial(sim.design.initial)
    onehot = (lat.observed[:, None] == np.arange(3)[None, :]).astype(float)
    t = sim.design.waves[2] - sim.design.waves[0]
    p = np.empty((n, 3))
    for i in range(n):
        q = lat.q.copy()
        q[[1, 2], 0] *= 4.0 ** x[i]  # home_1->away and home_2->away; home_1->home_2 unchanged
        np.fill_diagonal(q, 0.0)
        np.fill_diagonal(q, -q.sum(axis=1))
        p[i] = x0 @ expm(q * t) @ onehot
    states = wave_states(spec, sim.panel)[:, 2]
    for s in range(3):
        observed, expected = np.sum(states == s), p[:, s].sum()
        z = (observed - expected) / math.sqrt(np.sum(p[:, s] * (1 - p[:, s])))
        assert abs(z) < 4.5, (s, observed, expected)
