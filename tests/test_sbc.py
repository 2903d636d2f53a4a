"""Simulation-based calibration: rank and uniformity arithmetic, prior draws, simulation
on a design panel, and one small real end-to-end run of ``markov-migration sbc``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, stats
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import sbc as S
from tests.conftest import DESIGN_TABLES
from tests.test_cli_results import THREE

runner = CliRunner()


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


# ----------------------------------------------------------------- ranks and uniformity


def test_rank_counts_draws_below_and_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    draws = np.array([0.1, 0.5, 0.2, 0.9, 0.5])
    assert S.rank_of(0.0, draws, rng) == 0
    assert S.rank_of(1.0, draws, rng) == 5
    assert S.rank_of(0.3, draws, rng) == 2
    # two draws below 0.5 and two equal to it: rank 2, 3 or 4, each about a third of the time
    ties = [S.rank_of(0.5, draws, rng) for _ in range(3000)]
    assert set(ties) == {2, 3, 4}
    assert np.allclose(np.bincount(ties)[2:] / 3000, 1 / 3, atol=0.04)


def test_thin_takes_evenly_spaced_pooled_draws():
    x = np.arange(400)
    assert np.array_equal(S.thin(x, 100), np.arange(0, 400, 4))
    assert len(S.thin(x, 7)) == 7 and S.thin(x, 7)[-1] < 400


def _ranks(values: dict[str, np.ndarray], draws: int) -> pd.DataFrame:
    rows = [(i, name, int(r), draws) for name, rs in values.items() for i, r in enumerate(rs)]
    return pd.DataFrame(rows, columns=S.RANK_COLUMNS)


def test_uniformity_accepts_uniform_and_rejects_skewed_ranks():
    """Exactly flat ranks give chi2 = 0; ranks piled at 0 (a posterior that is always too
    high) fail; the chi-square agrees with scipy.stats.chisquare on the same bins."""
    rng = np.random.default_rng(1)
    d = 19  # 20 rank values, 5 bins of 4
    flat = np.tile(np.arange(d + 1), 5)  # 100 ranks, every value 5 times
    random = rng.integers(0, d + 1, 100)
    low = np.minimum(rng.geometric(0.3, 100) - 1, d)
    table = S.uniformity(_ranks({"flat": flat, "random": random, "low": low}, d), bins=5)
    row = table.set_index("parameter")
    assert row.loc["flat", "chi2"] == pytest.approx(0.0, abs=1e-12)
    assert row.loc["flat", "passed"] and row.loc["random", "passed"]
    assert not row.loc["low", "passed"] and row.loc["low", "p_value"] < 1e-10
    observed = np.bincount(random // 4, minlength=5)
    ref = stats.chisquare(observed)
    assert row.loc["random", "chi2"] == pytest.approx(ref.statistic, rel=1e-12)
    assert row.loc["random", "p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert list(table.columns) == S.UNIFORMITY_COLUMNS


def test_uniformity_with_unequal_bins_uses_their_widths():
    """10 rank values in 3 bins (4, 3, 3 values): expected counts 0.4, 0.3, 0.3 of n."""
    r = np.tile(np.arange(10), 6)  # flat: chi2 = 0 with width-proportional expectations
    table = S.uniformity(_ranks({"x": r}, 9), bins=3)
    assert table["chi2"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert table["df"].iloc[0] == 2


def test_bonferroni_level():
    """With 10 parameters a p-value of 0.01 passes (0.05 / 10 = 0.005)."""
    rng = np.random.default_rng(2)
    ranks = _ranks({f"p{i}": rng.integers(0, 50, 60) for i in range(10)}, 49)
    table = S.uniformity(ranks)
    assert np.array_equal(table["passed"], table["p_value"] >= 0.005)


# ------------------------------------------------------------------------- prior draws


def test_prior_draws_match_the_model_priors():
    """Mean and sd of 20000 draws against the spec's mu and sigma per transition
    (tolerance 5 standard errors)."""
    text = THREE.replace(
        "default = { rate = 0.2, sd = 1.5 }",
        'default = { rate = 0.2, sd = 1.5 }\n"a->b" = { rate = 0.05, sd = 0.5 }',
    )
    spec = parse_spec(text)
    rng = np.random.default_rng(3)
    x = np.stack([S.prior_draw(spec, rng) for _ in range(20000)])
    mu = np.array([spec.priors[p].mu for p in spec.transitions])
    sigma = np.array([spec.priors[p].sigma for p in spec.transitions])
    assert sigma[0] == 0.5 and mu[0] == pytest.approx(np.log(0.05))
    n = len(x)
    assert np.all(np.abs(x.mean(0) - mu) < 5 * sigma / np.sqrt(n))
    assert np.all(np.abs(x.std(0) - sigma) < 5 * sigma / np.sqrt(2 * n))


def test_derived_quantities(spec):
    rates = np.array([[0.3, 0.15, 0.5, 0.2]])
    out = S.derived(spec, rates)
    q = S.generator(spec, rates[0])
    p = linalg.expm(q)
    assert out["P1[a->c]"][0] == pytest.approx(p[0, 2], rel=1e-12)
    assert out["sojourn[a]"][0] == pytest.approx(1 / 0.45)
    assert out["sojourn[b]"][0] == pytest.approx(1 / 0.7)
    assert "sojourn[c]" not in out and "P1[c->c]" not in out
    total = sum(out[f"P1[a->{s}]"][0] for s in spec.states)
    assert total == pytest.approx(1.0, abs=1e-12)


COV = (
    THREE
    + """
[covariates.sex]
kind = "categorical"
transitions = ["a->b", "b->a"]
prior_sd = 0.7
[simulate.covariates.sex]
levels = { f = 0.5, m = 0.5 }
"""
)


def test_groups_periods_and_numeric_covariates_are_refused():
    from markov_migration.errors import InputError

    with pytest.raises(InputError, match="groups"):
        S.check_sbc_spec(parse_spec(THREE + DESIGN_TABLES))
    numeric = THREE + '[covariates.age]\nkind = "numeric"\ntransitions = ["a->b"]\n'
    with pytest.raises(InputError, match="numeric"):
        S.check_sbc_spec(parse_spec(numeric))
    S.check_sbc_spec(parse_spec(COV))


def test_prior_of_hazard_ratios_and_their_effect_on_the_simulation():
    """Log hazard ratio draws have the covariate's prior sd; a respondent at the level
    moves a->b with expm(Q(HR))[a, b] over one time unit (3000 per level, 4 sd)."""
    from markov_migration.inputs.panel import validate_panel

    spec = parse_spec(COV)
    n = 3000
    raw = pd.DataFrame({"id": np.repeat(np.arange(2 * n), 2).astype(str),
                        "time": np.tile([0.0, 1.0], 2 * n), "state": "a",
                        "sex": np.repeat(["f", "m"], 2 * n)})  # fmt: skip
    design = S.sbc_design(spec, validate_panel(raw, spec, path="<d>", sha256=""))
    assert design.parameter_labels == ("sex[m]: a->b", "sex[m]: b->a")
    rng = np.random.default_rng(7)
    draws = np.array([S.prior_log_hr(design, rng)[0] for _ in range(20000)])
    assert abs(draws.std() - 0.7) < 5 * 0.7 / np.sqrt(2 * 20000)
    rates = np.array([0.3, 0.15, 0.5, 0.2])
    log_hr = np.log([3.0, 0.5])
    sim = S.simulate_on_design(spec, design, np.log(rates), 8, log_hr)
    assert np.array_equal(sim["sex"].to_numpy(), design.frame["sex"].to_numpy())
    second = sim.iloc[1::2]
    for level, hr in (("f", [1.0, 1.0]), ("m", [3.0, 0.5])):
        r = rates * np.array([hr[0], 1.0, hr[1], 1.0])
        p = linalg.expm(S.generator(spec, r))[0, 1]
        freq = np.mean(second.loc[second["sex"] == level, "state"] == "b")
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n), (level, freq, p)


# ------------------------------------------------------------- simulation on the design


def test_simulation_keeps_ids_times_and_first_states(spec):
    """Same ids and times (so the attrition), each respondent's first state kept, and the
    one-step transition frequencies match expm(Q) (4000 respondents, 4 sd tolerance)."""
    from markov_migration.inputs.panel import validate_panel

    design_spec = parse_spec(THREE + "attrition = 0.3\n")
    raw = simulate_panel(design_spec, 400, seed=4)
    design = validate_panel(raw, spec, path="<design>", sha256="").data
    rates = np.array([0.3, 0.15, 0.5, 0.2])
    new = S.simulate_on_design(spec, design, np.log(rates), 5)
    ref = S.design_frame(design)
    assert np.array_equal(new["id"].astype(str), ref["id"].astype(str))
    assert np.array_equal(new["time"].to_numpy(), ref["time"].to_numpy())
    codes = new["state"].map({s: i for i, s in enumerate(spec.states)}).to_numpy()
    first = ~ref["id"].duplicated().to_numpy()
    assert np.array_equal(codes[first], ref["state"].to_numpy()[first])
    assert (~first).sum() > 0 and not np.array_equal(codes, ref["state"].to_numpy())
    # transition probabilities: a fixed design with times 0 and 1
    n = 4000
    grid = pd.DataFrame({"id": np.repeat(np.arange(n), 2).astype(str),
                         "time": np.tile([0.0, 1.0], n), "state": 0})  # fmt: skip
    sim = S.simulate_on_design(spec, grid, np.log(rates), 6)
    second = sim["state"].to_numpy()[1::2]
    p = linalg.expm(S.generator(spec, rates))[0]
    for s, name in enumerate(spec.states):
        freq = np.mean(second == name)
        assert abs(freq - p[s]) < 4 * np.sqrt(p[s] * (1 - p[s]) / n)


# ------------------------------------------------------------- end to end (real fits)


@pytest.mark.slow
def test_sbc_command_end_to_end(tmp_path):
    """4 simulations of the 3-state model with a categorical covariate, real nutpie fits:
    ranks.csv has exactly the contract's columns, 14 parameters per simulation (4 rates,
    6 P(1) entries, 2 sojourn times, 2 hazard ratios), ranks in 0..draws; the same seed
    gives the same ranks; --strict decides the exit code from uniformity.csv."""
    model = tmp_path / "cov.toml"
    model.write_text(COV)
    design = tmp_path / "design.csv"
    with_attrition = COV.replace("[covariates.sex]", "attrition = 0.2\n[covariates.sex]")
    simulate_panel(parse_spec(with_attrition), 150, seed=8).to_csv(design, index=False)
    args = ["sbc", "--model", str(model), "--design", str(design), "--sims", "4",
            "--draws", "20", "--seed", "3", "--tune", "150", "--chains", "2"]  # fmt: skip
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    ranks = pd.read_csv(tmp_path / "a" / "ranks.csv")
    assert list(ranks.columns) == ["sim", "parameter", "rank", "draws"]
    assert len(ranks) == 4 * 14 and set(ranks["sim"]) == {0, 1, 2, 3}
    assert {"hazard_ratio[sex[m]: a->b]", "hazard_ratio[sex[m]: b->a]"} <= set(ranks["parameter"])
    assert ranks["rank"].between(0, 20).all() and (ranks["draws"] == 20).all()
    assert (tmp_path / "a" / "sbc_ecdf.png").stat().st_size > 1000
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--strict"])
    uni = pd.read_csv(tmp_path / "b" / "uniformity.csv")
    assert again.exit_code == (0 if uni["passed"].all() else 1)
    pd.testing.assert_frame_equal(ranks, pd.read_csv(tmp_path / "b" / "ranks.csv"))


def test_sbc_bad_input_writes_nothing(tmp_path):
    model = tmp_path / "grp.toml"
    model.write_text(THREE + DESIGN_TABLES)
    design = tmp_path / "design.csv"
    simulate_panel(parse_spec(THREE), 20, seed=1).to_csv(design, index=False)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["sbc", "--model", str(model), "--design", str(design), "--out", str(out)]
    )
    assert res.exit_code == 2 and "groups" in res.output
    assert not out.exists()
    res = runner.invoke(
        app,
        ["sbc", "--model", str(model), "--design", str(tmp_path / "none.csv"), "--out", str(out)],
    )
    assert res.exit_code == 2 and not out.exists()


def test_ecdf_figure_of_many_parameters(tmp_path):
    """A five-state model has 41 ranked quantities: more than arviz-plots' default
    40 panels; the figure is written and the PIT values lie in (0, 1)."""
    from markov_migration.plots.sbc_figures import ecdf_figure, rank_pit

    rng = np.random.default_rng(5)
    ranks = _ranks({f"q[{i}]": rng.integers(0, 31, 25) for i in range(41)}, 30)
    pit = rank_pit(ranks)["pit"].to_numpy()
    assert pit.shape == (25, 41) and np.all((pit > 0) & (pit < 1))
    out = ecdf_figure(ranks, tmp_path / "ecdf.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
