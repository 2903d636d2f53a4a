"""Backtest of latent-state fits: held-out records predicted through the forward filter.

References:

- without a hidden layer (a censored code only, unused) the filter is the recorded
  state, so every held-out record's predictive is ``P(gap)[origin, :]``
  (core ``pmatrix``, 1e-10);
- with misclassification, a brute-force forward recursion written here (scipy
  ``expm``, one respondent at a time, the emission matrix applied row by row)
  gives the predictive of each held-out record (1e-9);
- on a panel with 20% of ``swing`` records read as ``abroad``, fake fits at the
  truth score a higher log predictive density than the same rates without
  misclassification, and their 95% prevalence intervals cover.

Periods and exact times: ``tests/test_backtest_exact.py``; ``[nonresponse]``:
``tests/test_backtest_nonresponse.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.likelihood import pmatrix
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.plots.backtest_figures import BACKTEST_FILES, write_backtest
from markov_migration.results import backtest as B
from markov_migration.results.backtest_latent import latent_heldout_probs
from tests.test_observation_model import RECOVERY
from tests.test_ppc_latent import ERROR, PLAIN, truth_fit

runner = CliRunner()


def misread_panel(spec, n: int, seed: int, waves=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """A simulated panel with ``ERROR`` of the ``swing`` records read as ``abroad``."""
    df = simulate_panel(spec, n, waves=list(waves), seed=seed)
    rng = np.random.default_rng(seed)
    flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < ERROR)
    df.loc[flip, "state"] = "abroad"
    return df


def split(spec, df):
    """Held-out pairs (last wave) and the kept raw rows."""
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy())
    kept = df.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    return kept, held


def initial_shares(spec, df) -> np.ndarray:
    first = df.groupby("id").head(1)["state"].value_counts(normalize=True)
    return np.array([first.get(s, 0.0) for s in spec.states])


@pytest.fixture(scope="module")
def misread():
    spec = parse_spec(RECOVERY)
    df = misread_panel(spec, 800, seed=11)
    kept, held = split(spec, df)
    return spec, df, kept, held


def test_without_a_hidden_layer_the_predictive_is_p_of_the_gap(misread):
    _, df, _, _ = misread
    spec = parse_spec(PLAIN)
    kept, held = split(spec, df)
    tree = truth_fit(spec, kept, 0.0, None, draws=5)
    rows = B._origin_rows(tree, held)
    probs, predicted, names = latent_heldout_probs(tree, rows, held.gap, held.destination, 5)
    assert predicted.all() and names == [*spec.states, "away"]
    q = tree["posterior"]["Q"].values[0, 0]
    res = float(tree["constant_data"]["resolution"])
    gap = np.maximum(np.round(held.gap / res), 1) * res
    want = np.stack(
        [pmatrix(q, np.array([g]))[0, o] for g, o in zip(gap, held.origin, strict=True)]
    )
    np.testing.assert_allclose(probs[0, :, :3], want, atol=1e-10)
    np.testing.assert_array_equal(probs[..., 3], 0.0)  # no held-out record is censored


def brute_force_predictive(q, e, pi, times, codes, gap):
    """Forward recursion of one respondent by hand, then the next record's distribution."""
    alpha = pi * e[:, codes[0]]
    alpha /= alpha.sum()
    for a, b, c in zip(times[:-1], times[1:], codes[1:], strict=True):
        alpha = (alpha @ expm(q * (b - a))) * e[:, c]
        alpha /= alpha.sum()
    hidden = alpha @ expm(q * gap)
    return np.array([sum(hidden[h] * e[h, c] for h in range(len(pi))) for c in range(len(pi))])


def test_misclassification_predictive_equals_a_brute_force_forward_recursion(misread):
    spec, df, kept, held = misread
    pi = initial_shares(spec, df)
    tree = truth_fit(spec, kept, ERROR, pi, draws=3)
    # exact times: the fit's resolution rounds nothing at these simulated dates
    tree["constant_data"]["resolution"] = 0.0
    probs, predicted, _ = latent_heldout_probs(
        tree, B._origin_rows(tree, held), held.gap, held.destination, 3
    )
    assert predicted.all()
    q = tree["posterior"]["Q"].values[0, 0]
    e = tree["posterior"]["misclassification"].values[0, 0]
    codes = {s: i for i, s in enumerate(spec.states)}
    by_id = {str(i): g for i, g in kept.groupby("id")}
    for i in range(0, held.origin.size, max(held.origin.size // 25, 1)):
        g = by_id[str(held.origin_id[i])].sort_values("time")
        want = brute_force_predictive(q, e, pi, g["time"].to_numpy(),
                                      g["state"].map(codes).to_numpy(), held.gap[i])  # fmt: skip
        np.testing.assert_allclose(probs[0, i], want, atol=1e-9)


def test_the_true_misclassification_model_scores_above_one_without_it(misread):
    spec, df, kept, held = misread
    pi = initial_shares(spec, df)
    truth = B.backtest_fit(truth_fit(spec, kept, ERROR, pi, draws=200), held, seed=1)
    plain_spec = parse_spec(PLAIN)
    plain = B.backtest_fit(truth_fit(plain_spec, kept, 0.0, None, draws=200), held, seed=1)
    lpd = {
        name: float(r.scores.query("score == 'lpd'")["value"].iloc[0])
        for name, r in (("truth", truth), ("plain", plain))
    }
    assert lpd["truth"] > lpd["plain"] + 5, lpd
    cov = truth.coverage
    prev = cov[cov["quantity"] == "prevalence (all states)"].set_index("nominal")["covered"]
    assert prev[0.95] == 1.0, truth.predictions
    assert np.all((truth.pit >= 0) & (truth.pit <= 1))


def test_written_files_of_a_latent_backtest(misread, tmp_path):
    spec, df, kept, held = misread
    tree = truth_fit(spec, kept, ERROR, initial_shares(spec, df), draws=20)
    res = B.backtest_fit(tree, held)
    written = write_backtest(res, tree, tmp_path / "bt")
    assert [p.name for p in written] == list(BACKTEST_FILES)
    cov = pd.read_csv(tmp_path / "bt" / "coverage.csv")
    assert list(cov.columns) == ["quantity", "interval", "nominal", "covered"]


@pytest.mark.slow
def test_real_latent_backtest_end_to_end(tmp_path):
    """A real refit of the misclassification model (2 x 200 draws) and its predictions."""
    spec = parse_spec(RECOVERY)
    model = tmp_path / "m.toml"
    model.write_text(RECOVERY)
    panel = tmp_path / "p.csv"
    misread_panel(spec, 400, seed=4).to_csv(panel, index=False)
    out = tmp_path / "bt"
    args = ["backtest", str(panel), "--model", str(model), "--out", str(out), "--chains", "2",
            "--draws", "200", "--tune", "200", "--seed", "1", "-q"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "held out" in res.output and "intervals cover" in res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(BACKTEST_FILES)
    cov = pd.read_csv(out / "coverage.csv")
    overall = cov[cov["quantity"] == "prevalence (all states)"].set_index("nominal")["covered"]
    assert overall[0.95] >= 2 / 3, cov
    scores = pd.read_csv(out / "scores.csv")
    assert np.isfinite(scores.query("score == 'lpd'")["value"]).all()


PHASED = """
name = "ph"
states = ["abroad", "returned", "dead"]
[transitions]
abroad = ["returned", "dead"]
returned = ["abroad", "dead"]
[phases]
returned = 2
[observation]
exact = ["dead"]
[rates]
"abroad->returned" = 0.3
"abroad->dead" = 0.02
"returned->abroad" = 0.5
"returned->dead" = 0.02
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { abroad = 0.7, returned = 0.3, dead = 0.0 }
"""


def test_phases_and_exact_deaths_with_a_prior_draw_refit():
    """Plumbing of Q_latent and exact entries: a prior-only fit of the kept rows as the refit."""
    from markov_migration.inference.fit import FitSettings
    from markov_migration.inference.prior import sample_prior
    from markov_migration.inputs.aggregate import aggregate

    spec = parse_spec(PHASED)
    df = simulate_panel(spec, 200, seed=3)
    kept, held = split(spec, df)
    kp = validate_panel(kept, spec, path="<kept>", sha256="0" * 64)
    settings = FitSettings(chains=1, draws=60, tune=1, seed=1)
    tree = sample_prior(spec, aggregate(kp, spec), settings, panel=kp)
    assert "Q_latent" in tree["posterior"]
    dead = spec.index("dead")
    probs, predicted, _ = latent_heldout_probs(
        tree, B._origin_rows(tree, held), held.gap, held.destination, 60
    )
    assert (~predicted).sum() == (held.destination == dead).sum() > 0
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(probs[..., dead], 0.0)  # predicted given survival
    res = B.backtest_fit(tree, held, n_draws=60)
    assert any("exact transition or entry time" in n for n in res.notes)
    assert np.isfinite(res.scores["value"]).all()
