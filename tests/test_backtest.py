"""Backtest: the held-out split, the coverage and score arithmetic, files and the command.

Fast tests use fake fits whose posterior is the truth (every draw at the true rates) or
a deliberately wrong model; one small real refit runs end to end (slow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.likelihood import pmatrix
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.plots.backtest_figures import BACKTEST_FILES, write_backtest
from markov_migration.results import backtest as B
from markov_migration.testing import fake_fit, fake_posterior
from tests.conftest import DESIGN_TABLES
from tests.test_checks import THREE

runner = CliRunner()


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


def true_q(spec, scale: float = 1.0) -> np.ndarray:
    """The generator of the model's ``[rates]`` (times ``scale``)."""
    q = np.zeros((spec.n_states, spec.n_states))
    for (r, s), rate in spec.rates.items():
        q[r, s] = scale * rate
    q[np.diag_indices_from(q)] = -q.sum(axis=1)
    return q


def split(spec, n: int, seed: int, holdout_after=None):
    """A simulated panel, its held-out pairs and the raw rows kept for the refit."""
    raw = simulate_panel(spec, n, seed=seed)
    panel = validate_panel(raw, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(),
                           holdout_after)  # fmt: skip
    kept = raw.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    return kept, held


def truth_fit(spec, kept, scale: float = 1.0, draws: int = 200, seed: int = 0):
    """A fake fit of the kept rows whose every draw is the truth (times ``scale``)."""
    tree = fake_fit(spec, kept, chains=1, draws=draws, seed=seed)
    rates = scale * np.array([spec.rates[p] for p in spec.transitions])
    post = fake_posterior(spec, rates, chains=1, draws=draws, spread=0.0, seed=seed)
    tree["posterior"] = xr.DataTree(post)
    return tree


def test_holdout_split_by_hand():
    ids = np.array([1, 1, 1, 2, 2, 3, 3, 4])
    times = np.array([0.0, 1.0, 2.1, 0.1, 2.0, 0.0, 1.1, 2.05])
    states = np.array([0, 1, 2, 1, 1, 0, 0, 2])
    held = B.holdout_split(ids, times, states)  # waves near 0, 1, 2: the last one held out
    assert held.cut == pytest.approx(1.55)
    assert held.keep.tolist() == [True, True, False, True, False, True, True, False]
    assert held.origin.tolist() == [1, 1]  # respondents 1 and 2 (3 has no later, 4 no earlier)
    assert held.destination.tolist() == [2, 1]
    np.testing.assert_allclose(held.gap, [1.1, 1.9])
    after = B.holdout_split(ids, times, states, holdout_after=1.05)
    assert after.origin.tolist() == [1, 1, 0] and after.destination.tolist() == [2, 1, 0]
    later = B.holdout_split(np.ones(4), np.arange(4.0), np.array([0, 1, 1, 2]), 1.5)
    assert later.origin.tolist() == [1] and later.n_later == 1  # only the first is predicted
    with pytest.raises(B.InputError, match="nothing to refit"):
        B.holdout_split(ids, times, states, holdout_after=0.5)
    with pytest.raises(B.InputError, match="single wave"):
        B.holdout_split(ids, np.zeros(8), states)
    with pytest.raises(B.InputError, match="nothing to predict"):
        B.holdout_split(ids, times, states, holdout_after=5.0)


def test_destination_probabilities_are_rows_of_p_of_the_gap(spec):
    """backtest_fit's predictive against scipy-free pmatrix of the true Q, gap by gap."""
    kept, held = split(spec, 200, seed=3)
    tree = truth_fit(spec, kept, draws=20)
    res = B.backtest_fit(tree, held, n_draws=20, seed=1)
    q = true_q(spec)
    resolution = float(tree["constant_data"]["resolution"])
    gaps = np.round(held.gap / resolution) * resolution
    p = np.stack([pmatrix(q, g)[a] for a, g in zip(held.origin, gaps, strict=True)])
    lpd = np.log(p[np.arange(p.shape[0]), held.destination])
    scores = res.scores.set_index(["score", "origin"])["value"]
    np.testing.assert_allclose(scores[("lpd", "all")], lpd.sum(), rtol=1e-9)
    prev = res.predictions.set_index("quantity")["mean"]
    # 20 simulated destinations per respondent: mean prevalence within 4 sd of the exact one
    exact = p.mean(axis=0)
    sd = np.sqrt((p * (1 - p)).sum(axis=0) / 20) / p.shape[0]
    for s, name in enumerate(spec.states):
        assert abs(prev[f"prevalence:{name}"] - exact[s]) < 4 * sd[s] + 1e-12


#: Replications of the coverage check; the binomial sd of a 95% coverage share over
#: 40 replications x ~9 quantities is about 0.01 if independent (they are positively
#: dependent within a replication, so the tolerances below are 5-8 such sds).
N_COVERAGE = 40


def test_coverage_of_a_well_specified_truth_is_near_nominal(spec):
    """Truth posterior over replicated panels: coverage within [nominal - 0.06, nominal + 0.1].

    Intervals of discrete counts end at replicated values, so they cover at least their
    probability (up to Monte Carlo error); the upper tolerance allows for that.
    """
    covered, pit = [], []
    for r in range(N_COVERAGE):
        kept, held = split(spec, 300, seed=100 + r)
        res = B.backtest_fit(truth_fit(spec, kept, seed=r), held, seed=r)
        cov = res.coverage
        cov = cov[cov["quantity"].str.contains(":")]
        covered.append(cov.groupby("nominal")["covered"].mean())
        pit.append(res.predictions["pit"].to_numpy())
    share = pd.concat(covered, axis=1).mean(axis=1)  # measured 0.55, 0.84, 0.97
    for nominal, value in share.items():
        assert nominal - 0.06 <= value <= nominal + 0.1, share
    # the randomized PITs are uniform: exactly nominal central shares (measured 0.50, 0.80, 0.96)
    pit = np.concatenate(pit)
    for nominal in B.BACKTEST_INTERVALS:
        assert abs(np.mean(np.abs(pit - 0.5) <= nominal / 2) - nominal) < 0.05


def test_scores_rank_the_truth_above_a_wrong_model(spec):
    kept, held = split(spec, 600, seed=7)
    good = B.backtest_fit(truth_fit(spec, kept), held).scores.set_index(["score", "origin"])
    bad = B.backtest_fit(truth_fit(spec, kept, scale=3.0), held).scores.set_index(
        ["score", "origin"]
    )
    assert good.loc[("lpd_mean", "all"), "value"] > bad.loc[("lpd_mean", "all"), "value"] + 0.05
    assert good.loc[("rps_mean", "all"), "value"] < bad.loc[("rps_mean", "all"), "value"]
    assert good.loc[("brier_mean", "all"), "value"] < bad.loc[("brier_mean", "all"), "value"]


def test_score_arithmetic_by_hand():
    probs = np.array([[[0.7, 0.2, 0.1]], [[0.5, 0.4, 0.1]]])  # two draws, one respondent
    lpd, rps, brier = B.score_destinations(probs, np.array([0]), np.array([1]))
    np.testing.assert_allclose(lpd, np.log(0.3))
    # mean (0.6, 0.3, 0.1): cumulative (0.6, 0.9) vs observed (0, 1)
    np.testing.assert_allclose(rps, (0.6**2 + 0.1**2) / 2)
    np.testing.assert_allclose(brier, 0.6**2 + 0.7**2 + 0.1**2)


def test_written_files_and_exact_columns(spec, tmp_path):
    kept, held = split(spec, 150, seed=2)
    tree = truth_fit(spec, kept, draws=50)
    res = B.backtest_fit(tree, held)
    written = write_backtest(res, tree, tmp_path / "bt")
    assert [p.name for p in written] == list(BACKTEST_FILES)
    cov = pd.read_csv(tmp_path / "bt" / "coverage.csv")
    assert list(cov.columns) == ["quantity", "interval", "nominal", "covered"]
    assert set(cov["interval"]) == {"50%", "80%", "95%"}
    assert set(cov["nominal"]) == {0.5, 0.8, 0.95}
    assert cov["covered"].between(0, 1).all()
    scores = pd.read_csv(tmp_path / "bt" / "scores.csv")
    assert list(scores.columns) == ["score", "origin", "value", "n"]
    assert {"lpd", "lpd_mean", "rps_mean"} <= set(scores["score"])
    assert (tmp_path / "bt" / "pit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(B.InputError, match="exists"):
        write_backtest(res, tree, tmp_path / "bt")


@pytest.fixture
def files(spec, tmp_path):
    model = tmp_path / "three.toml"
    model.write_text(THREE)
    panel = tmp_path / "panel.csv"
    simulate_panel(spec, 150, seed=5).to_csv(panel, index=False)
    return model, panel


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--draws", "0"], "--draws"),
        (["--holdout-after", "nan"], "--holdout-after"),
        (["--holdout-after", "99"], "nothing to predict"),
        (["--chains", "x"], "--chains"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(files, tmp_path, extra, message):
    model, panel = files
    out = tmp_path / "bt"
    res = runner.invoke(app, ["backtest", str(panel), "--model", str(model), "--out", str(out),
                              *extra])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_bad_inputs_exit_2(files, tmp_path):
    model, panel = files
    out = tmp_path / "bt"
    res = runner.invoke(app, ["backtest", str(tmp_path / "none.csv"), "--model", str(model),
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2 and not out.exists()
    design = tmp_path / "design.toml"
    design.write_text(THREE + DESIGN_TABLES)
    res = runner.invoke(app, ["backtest", str(panel), "--model", str(design), "--out", str(out)])
    # a design model is supported now: this panel lacks its covariate column
    assert res.exit_code == 2 and "missing column 'reason'" in res.stderr
    out.write_text("not a folder")
    res = runner.invoke(app, ["backtest", str(panel), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 2 and "not a folder" in res.stderr


@pytest.mark.slow
def test_real_backtest_end_to_end(files, tmp_path):
    """A real refit of the 3-state model (2 x 300 draws) and its held-out predictions."""
    model, panel = files
    out = tmp_path / "bt"
    args = ["backtest", str(panel), "--model", str(model), "--out", str(out), "--chains", "2",
            "--draws", "300", "--tune", "300", "--seed", "1", "-q"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "held out" in res.output and "intervals cover" in res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(BACKTEST_FILES)
    cov = pd.read_csv(out / "coverage.csv")
    overall = cov[cov["quantity"] == "prevalence (all states)"].set_index("nominal")["covered"]
    assert overall[0.95] >= 2 / 3  # 3 states, a correctly specified model
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "exists" in res.stderr


def test_help_lists_the_options():
    res = runner.invoke(app, ["backtest", "--help"])
    assert res.exit_code == 0
    for option in ("--model", "--out", "--holdout-after", "--draws", "--chains", "--tune",
                   "--seed", "--force"):  # fmt: skip
        assert option in res.stdout


COVARIATE = """
[covariates.reason]
kind = "categorical"
transitions = ["a->b", "b->a"]
[simulate.covariates.reason]
levels = { draft = 0.5, work = 0.5 }
"""


def test_a_fit_with_covariates_predicts_each_respondent_from_its_own_pattern():
    """Keyed predictive against P(gap) of the posterior Q of each respondent's pattern."""
    from markov_migration.testing import fake_design_fit
    from tests.conftest import THREE_SIMULATED

    spec = parse_spec(THREE_SIMULATED + COVARIATE)
    raw = simulate_panel(spec, 150, seed=4)
    panel = validate_panel(raw, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy())
    kept = raw.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    tree = fake_design_fit(spec, kept, chains=1, draws=15, effect_sd=1.5, seed=2)
    res = B.backtest_fit(tree, held, n_draws=15, seed=1)
    q = tree["posterior"]["Q"].isel(chain=0)  # (draw, pattern, from, to)
    level = dict(zip(d["id"].astype(str), raw.loc[d["row"] - 1, "reason"], strict=True))
    resolution = float(tree["constant_data"]["resolution"])
    lpd = 0.0
    for i, a, b, g in zip(held.origin_id, held.origin, held.destination, held.gap, strict=True):
        qi = q.sel(pattern=f"reason={level[str(i)]}").values
        gap = np.round(g / resolution) * resolution
        lpd += np.log(np.mean([pmatrix(m, gap)[a, b] for m in qi]))
    got = res.scores.set_index(["score", "origin"])["value"][("lpd", "all")]
    np.testing.assert_allclose(got, lpd, rtol=1e-6)
    # the patterns differ: predicting everyone with one pattern gives another answer
    one = q.sel(pattern="reason=draft").values
    other = sum(
        np.log(np.mean([pmatrix(m, np.round(g / resolution) * resolution)[a, b] for m in one]))
        for a, b, g in zip(held.origin, held.destination, held.gap, strict=True)
    )
    assert abs(other - lpd) > 0.5
