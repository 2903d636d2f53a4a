"""Backtest of latent fits with periods, and of panels flagging exact times (obstype 2, 3).

References (fake fits whose every draw is a known generator, so the predictive is one
computation per respondent):

- periods: a brute-force forward filter written here (scipy ``expm`` of each period's
  generator over every piece of every kept interval and of the held-out gap, cut at the
  cut points; misclassification applied record by record) gives each held-out record's
  predictive (1e-9); ignoring the cut inside the held-out gap gives a different one;
- obstype: each held-out record of a panel without a hidden layer is scored by
  ``P(gap)[o, d]`` (type 1), ``(expm(Q gap) Q_off)[o, d]`` (type 3, an exact entry) or
  ``exp(q_oo gap) (I + Q_off)[o, d]`` (type 2, an exact transition time), scipy
  ``expm`` by hand (1e-9), and ``lpd`` in ``scores.csv`` is their sum;
- the command runs end to end with a faked refit on a latent model with periods and on a
  simulated panel with exact transition and entry times (a bad option still exits 2 in one
  line), and with a real refit (slow) on ``cav`` with exact deaths (``[observation] exact``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.inference.fit import FitSettings
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.latent_design import latent_design
from markov_migration.inputs.obstype import with_panel_obstype
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import backtest as B
from markov_migration.results.backtest_latent import latent_heldout_predictive
from markov_migration.testing import fake_sample_stats
from tests.test_backtest_latent import initial_shares, misread_panel
from tests.test_observation_model import RECOVERY
from tests.test_obstype import MODEL3, RATES3, _q3, simulate_paths
from tests.test_ppc_latent import truth_fit

runner = CliRunner()
TOL = 1e-9
CUTS = [1.5, 2.5]  # inside kept intervals, and inside the held-out gap of those who missed wave 3
HR = np.array([1.0, 2.0, 0.5])  # every intensity times HR[period]
ERROR = 0.2


def generator(spec) -> np.ndarray:
    k = spec.n_states
    q = np.zeros((k, k))
    for (r, s), v in spec.rates.items():
        q[r, s] = v
    q[np.diag_indices(k)] = -q.sum(axis=1)
    return q


def periods_fit(spec, df, initial, draws: int = 2):
    """A fake fit of a misclassification model with periods: period ``p`` has ``HR[p] Q0``."""
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    agg = aggregate(panel, spec)
    design, _ = latent_design(spec, panel, agg)
    levels = list(design.grid_coords["period"])
    lhr = np.array([np.log(HR[levels.index(e.level)]) for e in design.effects])
    q0 = generator(spec)
    k, shape = spec.n_states, (1, draws)
    rate = np.array([q0[r, s] for r, s in spec.transitions])
    e = np.eye(k)
    sw, ab = spec.index("swing"), spec.index("abroad")
    e[sw, sw], e[sw, ab] = 1 - ERROR, ERROR
    post = {
        "log_rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(np.log(rate), shape + rate.shape)),
        "rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(rate, shape + rate.shape)),
        "log_hazard_ratio": ((*SAMPLE_DIMS, "covariate_effect"), np.broadcast_to(lhr, shape + lhr.shape)),
        "Q": ((*SAMPLE_DIMS, "period", "from_state", "to_state"),
              np.broadcast_to(np.stack([h * q0 for h in HR]), shape + (3, k, k))),
        "misclassification": ((*SAMPLE_DIMS, "true_state", "recorded_state"),
                              np.broadcast_to(e, shape + (k, k))),
        "initial": ((*SAMPLE_DIMS, "latent_state"), np.broadcast_to(initial, shape + (k,))),
    }  # fmt: skip
    states = list(spec.states)
    coords = {"chain": [0], "draw": np.arange(draws), "from_state": states, "to_state": states,
              "transition": list(spec.transition_labels), "period": levels,
              "covariate_effect": [e.label for e in design.effects], "true_state": states,
              "recorded_state": states, "latent_state": states}  # fmt: skip
    settings = FitSettings(chains=1, draws=draws, tune=0, seed=0, sampler="fake")
    tree = assemble_fit(spec, agg, xr.Dataset(post, coords=coords), fake_sample_stats(1, draws, 0),
                        settings.to_attrs(), None, panel,
                        sampled=["log_rate", "log_hazard_ratio"])  # fmt: skip
    tree["constant_data"]["resolution"] = 0.0  # exact pieces, as the reference
    return tree, q0, e


def piecewise(q0, a: float, b: float, split: bool = True) -> np.ndarray:
    """``P`` from ``a`` to ``b``: the product of ``expm(HR[p] Q0 piece)`` over the pieces."""
    edges = [a, *[c for c in CUTS if split and a < c < b], b]
    out = np.eye(q0.shape[0])
    for t0, t1 in zip(edges[:-1], edges[1:], strict=True):
        out = out @ expm(HR[int(np.searchsorted(CUTS, t0, side="right"))] * q0 * (t1 - t0))
    return out


def brute_force(q0, e, pi, times, codes, gap, split=True) -> np.ndarray:
    """Forward filter of one respondent by hand over the kept records, then the next record."""
    alpha = pi * e[:, codes[0]]
    alpha /= alpha.sum()
    for a, b, c in zip(times[:-1], times[1:], codes[1:], strict=True):
        alpha = (alpha @ piecewise(q0, a, b)) * e[:, c]
        alpha /= alpha.sum()
    return alpha @ piecewise(q0, times[-1], times[-1] + gap, split) @ e


def split_panel(spec, df, obstype=None):
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    kind = d["obstype"].to_numpy() if "obstype" in d else None
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(),
                           None, kind)  # fmt: skip
    kept = df.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    return kept, held


@pytest.fixture(scope="module")
def with_periods():
    spec = parse_spec(f"periods = {CUTS}\n" + RECOVERY)
    df = misread_panel(spec, 300, seed=5)
    # 40% miss wave 3: their held-out gap (wave 2 -> 4) crosses the cut at 2.5 (a period
    # starting after the last kept wave could not be refit: no observed time in it)
    rng = np.random.default_rng(5)
    wave3 = (df["time"].round() == 3).to_numpy()
    df = df[~(wave3 & (rng.uniform(size=len(df)) < 0.4))].reset_index(drop=True)
    kept, held = split_panel(spec, df)
    pi = initial_shares(spec, df)
    tree, q0, e = periods_fit(spec, kept, pi)
    return spec, kept, held, tree, q0, e, pi


def test_periods_predictive_equals_a_brute_force_filter_cut_at_the_cut_points(with_periods):
    spec, kept, held, tree, q0, e, pi = with_periods
    probs, predicted, names, density = latent_heldout_predictive(
        tree, B._origin_rows(tree, held), held.gap, held.destination, 2
    )
    assert predicted.all() and density.shape == (2, 0) and names == list(spec.states)
    codes = {s: i for i, s in enumerate(spec.states)}
    by_id = {str(i): g.sort_values("time") for i, g in kept.groupby("id")}
    crossing, differs = 0, 0
    for i in range(held.origin.size):
        g = by_id[str(held.origin_id[i])]
        t, c = g["time"].to_numpy(), g["state"].map(codes).to_numpy()
        want = brute_force(q0, e, pi, t, c, held.gap[i])
        np.testing.assert_allclose(probs[0, i], want, atol=TOL)
        np.testing.assert_allclose(probs[1, i], want, atol=TOL)
        if t[-1] < CUTS[1] < t[-1] + held.gap[i]:
            crossing += 1
            unsplit = brute_force(q0, e, pi, t, c, held.gap[i], split=False)
            differs += np.abs(unsplit - want).max() > 1e-3
    assert crossing > 60 and differs == crossing  # the held-out gap is split at 2.5


def test_periods_backtest_scores_are_the_brute_force_log_density(with_periods):
    spec, kept, held, tree, q0, e, pi = with_periods
    res = B.backtest_fit(tree, held, n_draws=2, seed=3)
    codes = {s: i for i, s in enumerate(spec.states)}
    by_id = {str(i): g.sort_values("time") for i, g in kept.groupby("id")}
    want = 0.0
    for i in range(held.origin.size):
        g = by_id[str(held.origin_id[i])]
        p = brute_force(q0, e, pi, g["time"].to_numpy(), g["state"].map(codes).to_numpy(),
                        held.gap[i])  # fmt: skip
        want += np.log(p[held.destination[i]])
    lpd = res.scores.query("score == 'lpd' and origin == 'all'")["value"].iloc[0]
    assert lpd == pytest.approx(want, rel=TOL)


# -- exact transition and entry times (obstype 2, 3) ----------------------------------


def exact_panel(n_people=200, seed=3) -> pd.DataFrame:
    """Paths recorded at every jump (obstype 2, deaths 3), 40% of the later records read as
    panel records (1: the state at that time, which is still true)."""
    ids, times, states, kinds, _, _ = simulate_paths(
        np.random.default_rng(seed), _q3(RATES3), n_people, 4.0
    )
    names = np.array(["home", "abroad", "dead"])
    frame = pd.DataFrame({"id": ids, "time": times, "state": names[states], "obstype": kinds})
    later = frame["id"].duplicated().to_numpy()
    dead = (frame["state"] == "dead").to_numpy()
    frame.loc[later & dead, "obstype"] = 3
    panel = later & ~dead & (np.random.default_rng(seed + 1).uniform(size=len(frame)) < 0.4)
    frame.loc[panel, "obstype"] = 1
    return frame


EXACT_MODEL = MODEL3 + "[data]\nresolution = 1e-9\n"
AFTER = 2.0


def obstype_fit(spec, kept: pd.DataFrame, draws: int = 2):
    """A fake fit of the kept rows whose every draw is ``RATES3`` (the truth)."""
    return truth_fit(spec, kept, 0.0, None, draws, rates=RATES3)


def hand_density(o: int, d: int, gap: float, kind: int) -> float:
    """The likelihood's contribution of one held-out record, scipy ``expm`` by hand."""
    q = _q3(RATES3)
    off = q - np.diag(np.diag(q))
    if kind == 1:
        return expm(q * gap)[o, d]
    if kind == 3:
        return (expm(q * gap) @ off)[o, d]
    return np.exp(q[o, o] * gap) * (np.eye(3) + off)[o, d]


@pytest.fixture(scope="module")
def exact():
    df = exact_panel()
    spec0 = parse_spec(EXACT_MODEL)
    full = validate_panel(df, spec0, path="<sim>", sha256="0" * 64)
    spec = with_panel_obstype(spec0, full)  # as refit_kept: the whole panel's model
    d = full.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(),
                           AFTER, d["obstype"].to_numpy())  # fmt: skip
    kept = df.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    return spec, df, kept, held, obstype_fit(spec, kept)


def test_each_obstype_is_scored_by_its_likelihood_contribution(exact):
    spec, _, _, held, tree = exact
    rows = B._origin_rows(tree, held, missing=True)
    # respondents with a single kept record are not in the refit: their filter starts there
    assert (rows < 0).sum() > 20
    origin, dest, gap, kind = held.origin, held.destination, held.gap, held.kind
    assert set(np.unique(kind)) == {1, 2, 3}
    probs, predicted, _, density = latent_heldout_predictive(
        tree, rows, gap, dest, 2, kind, origin_code=origin, origin_time=held.origin_time
    )
    np.testing.assert_array_equal(predicted, kind == 1)
    want = np.array([hand_density(o, d, g, t) for o, d, g, t in
                     zip(origin, dest, gap, kind, strict=True)])  # fmt: skip
    got = np.zeros(origin.size)
    got[predicted] = probs[0, np.arange(predicted.sum()), dest[predicted]]
    got[~predicted] = density[0]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=1e-300)
    # the whole distribution of a record at a time is the row of P(gap)
    q = _q3(RATES3)
    for j, i in enumerate(np.flatnonzero(predicted)[:20]):
        np.testing.assert_allclose(probs[1, j], expm(q * gap[i])[origin[i]], atol=TOL)
    res = B.backtest_fit(tree, held, n_draws=2, seed=1)
    sc = res.scores.set_index(["score", "origin"])["value"]
    n = res.scores.set_index(["score", "origin"])["n"]
    assert sc[("lpd", "all")] == pytest.approx(np.log(want).sum(), rel=TOL)
    assert sc[("lpd_exact_times", "all")] == pytest.approx(np.log(want[~predicted]).sum(), rel=TOL)
    assert n[("rps_mean", "all")] == predicted.sum() and n[("lpd", "all")] == origin.size
    assert any("likelihood density" in note for note in res.notes)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_exact_times_backtest_runs_through_the_cli(exact, tmp_path, monkeypatch):
    """The command on a panel with an obstype column: the refit (faked here: the truth) is of
    the whole panel's model (the forward algorithm), the held-out exact times are scored."""
    _, df, _, _, _ = exact
    df.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "m.toml").write_text(EXACT_MODEL)
    seen = {}

    def fake_sample(spec, agg, settings, *, command=None, panel=None, progress=False):
        seen["obstype"] = spec.observation.obstype
        d = panel.data
        kept = pd.DataFrame({"id": d["id"], "time": d["time"],
                             "state": np.asarray(spec.states)[d["state"].to_numpy()],
                             "obstype": d["obstype"] if "obstype" in d else 1})  # fmt: skip
        return obstype_fit(spec, kept)

    monkeypatch.setattr("markov_migration.inference.fit.sample", fake_sample)
    out = tmp_path / "bt"
    res = run("backtest", tmp_path / "p.csv", "--model", tmp_path / "m.toml", "--out", out,
              "--holdout-after", AFTER, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert seen["obstype"] and "likelihood density" in res.output
    scores = pd.read_csv(out / "scores.csv")
    assert "lpd_exact_times" in set(scores["score"]) and np.isfinite(scores["value"]).all()
    # bad input still exits 2 in one line, writing nothing
    bad = run("backtest", tmp_path / "p.csv", "--model", tmp_path / "m.toml", "--out",
              tmp_path / "bt2", "--holdout-after", 99)  # fmt: skip
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.output
    assert not (tmp_path / "bt2").exists() or not any((tmp_path / "bt2").iterdir())


def test_periods_backtest_runs_through_the_cli(with_periods, tmp_path, monkeypatch):
    """The command on a latent model with periods (refit faked: the truth of the fixture)."""
    spec, _, _, _, _, _, pi = with_periods
    model = tmp_path / "m.toml"
    model.write_text(f"periods = {CUTS}\n" + RECOVERY)
    rng = np.random.default_rng(5)
    df = misread_panel(spec, 300, seed=5)
    wave3 = (df["time"].round() == 3).to_numpy()
    df[~(wave3 & (rng.uniform(size=len(df)) < 0.4))].to_csv(tmp_path / "p.csv", index=False)

    def fake_sample(spec, agg, settings, *, command=None, panel=None, progress=False):
        d = panel.data
        rows = pd.DataFrame({"id": d["id"], "time": d["time"],
                             "state": np.asarray(spec.states)[d["state"].to_numpy()]})  # fmt: skip
        return periods_fit(spec, rows, pi, draws=20)[0]

    monkeypatch.setattr("markov_migration.inference.fit.sample", fake_sample)
    out = tmp_path / "bt"
    res = run("backtest", tmp_path / "p.csv", "--model", model, "--out", out, "-q")
    assert res.exit_code == 0, (res.output, repr(res.exception))
    cov = pd.read_csv(out / "coverage.csv")
    prev = cov[cov["quantity"] == "prevalence (all states)"].set_index("nominal")["covered"]
    assert prev[0.95] >= 2 / 3, cov  # the truth's predictions cover


@pytest.mark.slow
def test_cav_with_exact_deaths_end_to_end(tmp_path):
    """A real refit (1 x 100 draws) of cav with ``[observation] exact = ["dead"]``, the
    records after 8 years held out: deaths are scored by their density."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    model = tmp_path / "cav.toml"
    model.write_text((root / "models" / "cav.toml").read_text()
                     + '\n[observation]\nexact = ["dead"]\n')  # fmt: skip
    out = tmp_path / "bt"
    res = run("backtest", root / "tests" / "results" / "cav.csv", "--model", model, "--out", out,
              "--holdout-after", 8, "--chains", 1, "--draws", 100, "--tune", 100, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    scores = pd.read_csv(out / "scores.csv").set_index(["score", "origin"])
    n_exact = scores.loc[("lpd_exact_times", "all"), "n"]
    assert n_exact > 20 and np.isfinite(scores["value"]).all()
    assert scores.loc[("lpd", "all"), "n"] == n_exact + scores.loc[("rps_mean", "all"), "n"]
