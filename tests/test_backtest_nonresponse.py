"""Backtest of ``[nonresponse]`` fits: every held-out scheduled interview, "missed" an outcome.

References (fake fits whose every draw is a known model):

- a brute-force computation written here: per respondent, the forward filter over the
  kept records and the kept missed waves on the state space doubled by attrition
  (``scipy.linalg.expm`` of the attrition-extended generator ``[[Q - D, D], [0, Q]]`` per
  interval, emissions ``r_s`` answered as ``s``, ``1 - r`` or 1 (lost) missed), carried to
  each held-out wave's interview (its own date, or the wave's median date when missed):
  each held-out interview's predictive equals the brute force (1e-9), and the log
  predictive density in ``scores.csv`` the sum of the brute-force log probabilities
  (1e-9); with a period cut point, every interval crossing it is split into pieces,
  each with its period's extended generator (1e-9; one generator per interval differs);
- on a panel where returnees answer half the waves and emigrants 90%, the refit at that
  truth scores a higher log predictive density than one with a state-independent
  response (0.78 in both states);
- the command runs end to end with a faked refit, ``missed`` among the predicted counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.inputs.nonresponse import wave_times
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import backtest as B
from markov_migration.results.backtest_nonresponse import nonresponse_heldout
from tests.test_nonresponse import SIM
from tests.test_ppc_nonresponse import nr_fit

runner = CliRunner()
TOL = 1e-9
RESPONSE = {"abroad": 0.9, "returned": 0.5}
ATTRITION = {"abroad": 0.1, "returned": 0.3}
MODEL = SIM + "[nonresponse]\nattrition = true\n"


def split(spec, df, holdout_after=None):
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(),
                           holdout_after)  # fmt: skip
    kept = df.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    return panel, kept, held


def base_generator(spec) -> np.ndarray:
    k = spec.n_states
    q = np.zeros((k, k))
    for (a, b), v in spec.rates.items():
        q[a, b] = v
    q[np.diag_indices(k)] = -q.sum(axis=1)
    return q


def brute_force(spec, panel, held, response, attrition, cut=None, hr=1.0, split_cut=True):
    """(origin, outcome, probability of the observed outcome, predictive) per held-out interview.

    With ``cut``, intensities are ``hr`` times larger after it and every interval
    crossing it is split there (``split_cut``; else it has the generator of its start).
    """
    k = spec.n_states
    q = base_generator(spec)
    r = np.array([response[s] for s in spec.states])
    dr = np.diag([attrition[s] for s in spec.states])
    z = np.zeros((k, k))

    def transition(t0: float, t1: float) -> np.ndarray:
        edges = [t0, *([cut] if cut is not None and split_cut and t0 < cut < t1 else []), t1]
        out = np.eye(2 * k)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            qp = q * (hr if cut is not None and a >= cut else 1.0)
            qa = np.block([[qp - dr, dr], [z, qp]])  # active, then lost to attrition
            out = out @ expm(qa * (b - a))
        return out

    answered_as = np.vstack([np.diag(r), np.zeros((k, k))])  # (2K, K): answered as each state
    missed = np.r_[1 - r, np.ones(k)]
    d = panel.data.sort_values(["id", "time"])
    wave, dates = wave_times(d["time"].to_numpy())
    d = d.assign(wave=wave)
    out = []
    for _, g in d.groupby("id", sort=False):
        rec = dict(zip(g["wave"], zip(g["time"], g["state"], strict=True), strict=True))
        w0 = int(g["wave"].iloc[0])
        if g["time"].iloc[0] >= held.cut:
            continue  # joined after the cut: not in the refit
        alpha = np.r_[np.eye(k)[rec[w0][1]], np.zeros(k)]
        t_prev, origin = rec[w0][0], rec[w0][1]
        for w in range(w0 + 1, dates.size):
            t = rec[w][0] if w in rec else dates[w]
            if t >= held.cut:  # a held-out interview, predicted from the kept records
                hidden = alpha @ transition(t_prev, t)
                pred = np.r_[hidden @ answered_as, hidden @ missed]
                outcome = rec[w][1] if w in rec else k
                out.append((origin, outcome, pred[outcome], pred))
                continue
            alpha = alpha @ transition(t_prev, t)
            alpha = alpha * (answered_as[:, rec[w][1]] if w in rec else missed)
            alpha /= alpha.sum()
            t_prev, origin = t, (rec[w][1] if w in rec else k)
    return out


@pytest.fixture(scope="module")
def nr_panel():
    spec = parse_spec(MODEL)
    df = simulate_panel(spec, 600, seed=11)
    return spec, df


def test_predictive_equals_a_brute_force_filter_on_the_attrition_extended_chain(nr_panel):
    spec, df = nr_panel
    panel, kept, held = split(spec, df)
    tree = nr_fit(spec, kept, RESPONSE, draws=2, attrition=ATTRITION)
    tree["constant_data"]["resolution"] = 0.0  # exact gaps, as the reference
    want = brute_force(spec, panel, held, RESPONSE, ATTRITION)
    probs, origin, outcome, names, notes = nonresponse_heldout(tree, held, 2)
    assert names == [*spec.states, "missed"] and probs.shape[1] == len(want)
    missed = sum(o == 2 for _, o, _, _ in want)
    assert missed > 50 and f"{missed:,} missed" in notes[0]
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    # the same interviews, origins and outcomes, in the same (respondent, time) order
    np.testing.assert_array_equal(origin, [w[0] for w in want])
    np.testing.assert_array_equal(outcome, [w[1] for w in want])
    np.testing.assert_allclose(probs[0], np.stack([w[3] for w in want]), atol=TOL)
    res = B.backtest_fit(tree, held, n_draws=2, seed=0)
    lpd = res.scores.query("score == 'lpd' and origin == 'all'")["value"].iloc[0]
    assert lpd == pytest.approx(np.sum(np.log([w[2] for w in want])), rel=TOL)
    assert not any("after a respondent's first held-out" in n for n in res.notes)


def test_several_held_out_waves_are_each_predicted_from_the_kept_records(nr_panel):
    spec, df = nr_panel
    panel, kept, held = split(spec, df, holdout_after=3.5)  # waves 4 and 5 held out
    tree = nr_fit(spec, kept, RESPONSE, draws=2, attrition=ATTRITION)
    tree["constant_data"]["resolution"] = 0.0
    want = brute_force(spec, panel, held, RESPONSE, ATTRITION)  # no record at exactly 3.5
    probs, origin, outcome, _, _ = nonresponse_heldout(tree, held, 2)
    assert probs.shape[1] == len(want) > 1.5 * len(set(kept["id"]))
    np.testing.assert_allclose(probs[1], np.stack([w[3] for w in want]), atol=TOL)


def test_state_dependent_response_scores_above_a_state_independent_one():
    spec = parse_spec(SIM + "[nonresponse]\nattrition = false\n")
    df = simulate_panel(spec, 1500, seed=11)
    _, kept, held = split(spec, df)
    lpd = {}
    for name, response in (("truth", RESPONSE), ("flat", {"abroad": 0.78, "returned": 0.78})):
        res = B.backtest_fit(nr_fit(spec, kept, response, draws=20), held, n_draws=20, seed=2)
        lpd[name] = res.scores.query("score == 'lpd' and origin == 'all'")["value"].iloc[0]
        if name == "truth":
            prev = res.coverage.query("quantity == 'prevalence (all states)'")
            assert prev.set_index("nominal")["covered"][0.95] >= 2 / 3, res.predictions
    assert lpd["truth"] > lpd["flat"] + 10, lpd


def test_nonresponse_backtest_runs_through_the_cli(nr_panel, tmp_path, monkeypatch):
    spec, df = nr_panel
    df.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "m.toml").write_text(MODEL)

    def fake_sample(spec, agg, settings, *, command=None, panel=None, progress=False):
        d = panel.data
        kept = pd.DataFrame({"id": d["id"], "time": d["time"],
                             "state": np.asarray(spec.states)[d["state"].to_numpy()]})  # fmt: skip
        return nr_fit(spec, kept, RESPONSE, draws=10, attrition=ATTRITION)

    monkeypatch.setattr("markov_migration.inference.fit.sample", fake_sample)
    out = tmp_path / "bt"
    res = runner.invoke(app, ["backtest", str(tmp_path / "p.csv"), "--model",
                              str(tmp_path / "m.toml"), "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "every scheduled interview" in res.output
    cov = pd.read_csv(out / "coverage.csv")
    assert "prevalence:missed" in set(cov["quantity"])
    assert cov["quantity"].str.contains("->missed").any()


def test_periods_split_the_kept_intervals_of_the_attrition_extended_chain():
    """Intensities doubled after 2.5: each piece with its period's extended generator."""
    import xarray as xr

    from markov_migration.defaults import SAMPLE_DIMS
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.inference.fit import FitSettings
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.latent_design import latent_design
    from markov_migration.testing import fake_sample_stats

    cut, hr, draws = 2.5, 2.0, 2
    spec = parse_spec(f"periods = [{cut}]\n" + MODEL)
    df = simulate_panel(parse_spec(MODEL), 300, seed=4)
    panel, kept, held = split(spec, df)
    kp = validate_panel(kept, spec, path="<kept>", sha256="0" * 64)
    agg = aggregate(kp, spec)
    design, _ = latent_design(spec, kp, agg)
    q0 = base_generator(spec)
    states = list(spec.states)
    shape = (1, draws)
    rate = np.array([q0[a, b] for a, b in spec.transitions])
    post = {
        "log_rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(np.log(rate), shape + (2,))),
        "log_hazard_ratio": ((*SAMPLE_DIMS, "covariate_effect"), np.full(shape + (2,), np.log(hr))),
        "Q": ((*SAMPLE_DIMS, "period", "from_state", "to_state"),
              np.broadcast_to(np.stack([q0, hr * q0]), shape + (2, 2, 2))),
        "response": ((*SAMPLE_DIMS, "response_state"),
                     np.broadcast_to([RESPONSE[s] for s in states], shape + (2,))),
        "attrition": ((*SAMPLE_DIMS, "attrition_state"),
                      np.broadcast_to([ATTRITION[s] for s in states], shape + (2,))),
    }  # fmt: skip
    coords = {"chain": [0], "draw": np.arange(draws), "from_state": states, "to_state": states,
              "transition": list(spec.transition_labels), "response_state": states,
              "attrition_state": states, "covariate_effect": [e.label for e in design.effects],
              "period": list(design.grid_coords["period"])}  # fmt: skip
    settings = FitSettings(chains=1, draws=draws, tune=1, seed=0, sampler="fake")
    tree = assemble_fit(spec, agg, xr.Dataset(post, coords=coords), fake_sample_stats(1, draws, 0),
                        settings.to_attrs(), None, kp,
                        sampled=["log_rate", "log_hazard_ratio", "response"])  # fmt: skip
    tree["constant_data"]["resolution"] = 0.0
    probs, origin, outcome, _, notes = nonresponse_heldout(tree, held, draws)
    want = brute_force(spec, panel, held, RESPONSE, ATTRITION, cut=cut, hr=hr)
    np.testing.assert_array_equal(outcome, [w[1] for w in want])
    np.testing.assert_allclose(probs[0], np.stack([w[3] for w in want]), atol=TOL)
    # without the split (each interval with its start's generator) the predictive differs
    unsplit = brute_force(spec, panel, held, RESPONSE, ATTRITION, cut=cut, hr=hr, split_cut=False)
    assert np.abs(probs[0] - np.stack([w[3] for w in unsplit])).max() > 1e-3
