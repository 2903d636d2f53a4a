"""A discrete-time fit projects at whole multiples of its step (one multinomial move per step).

References: per posterior draw, expected stocks ``x0 P^n`` and expected return events
``sum_t x_t[away] P[away, home]`` (numpy matrix products), against the mean over
projection draws (|z| < 4.5); output steps of 1 and 2 model steps give the same
distribution of cumulative returns and ever returned at the horizon. The fit is real
(nutpie; a Dirichlet model, fast to sample).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.draws import select_draws
from markov_migration.fitfile.format import write_fit
from markov_migration.inference.fit import FitSettings, sample
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.projection.initial import InitialTotal
from markov_migration.projection.plan import Inflow
from markov_migration.projection.run import project_fit

Z_MAX = 4.5
MODEL = """
name = "waves3"
time = "discrete"
states = ["abroad", "transit", "returned"]
home = ["returned"]
[transitions]
abroad = ["transit", "returned"]
transit = ["abroad", "returned"]
returned = ["abroad", "transit"]
"""
P_TRUE = np.array([[0.85, 0.05, 0.10], [0.30, 0.55, 0.15], [0.25, 0.15, 0.60]])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    spec = parse_spec(MODEL)
    rng = np.random.default_rng(11)
    n, waves = 400, 4
    s = rng.choice(2, n, p=[0.6, 0.4])
    rows = []
    for w in range(waves):
        rows.append(
            pd.DataFrame({"id": np.arange(n), "time": w, "state": np.array(spec.states)[s]})
        )
        s = np.array([rng.choice(3, p=P_TRUE[x]) for x in s])
    panel = validate_panel(pd.concat(rows), spec, path="<waves>", sha256="e" * 64)
    tree = sample(spec, aggregate(panel, spec), FitSettings(chains=2, draws=300, tune=300, seed=2),
                  panel=panel)  # fmt: skip
    path = tmp_path_factory.mktemp("disc") / "fit.nc"
    write_fit(tree, path)
    return spec, tree, path


def posterior_p(tree, n):
    p = tree["posterior"]["P"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    return p[select_draws(p.shape[0], n)]


def test_expected_stocks_and_returns_match_matrix_powers(fitted):
    spec, tree, _ = fitted
    n, x0 = 2000, {"abroad": 3000, "transit": 1000}
    ds = project_fit(tree, x0, start=3, horizon=9, step=2, draws=n, seed=4)
    assert ds["time"].values.tolist() == [3.0, 5.0, 7.0, 9.0]
    p = posterior_p(tree, n)
    x = np.broadcast_to(np.array([3000.0, 1000.0, 0.0]), (n, 3)).copy()
    returns = np.zeros(n)
    for _ in range(6):
        returns += np.einsum("dr,dr->d", x[:, :2], p[:, :2, 2])
        x = np.einsum("dr,drs->ds", x, p)
    for got, want in (
        (ds["stock"].isel(time=-1).values, x),
        (ds["cumulative_returns"].isel(time=-1).values[:, None], returns[:, None]),
    ):
        diff = got - want
        z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(n))
        assert np.all(np.abs(z) < Z_MAX), z
    # events add up to the stocks, persons are conserved
    np.testing.assert_array_equal(ds["stock"].sum("state"), 4000)
    assert int(ds["ever_returned"].isel(time=-1).min()) > 0


def test_output_step_does_not_change_the_distribution(fitted):
    _, tree, _ = fitted
    kw = dict(start=0, horizon=8, draws=3000, inflow=Inflow.constant(100.0, state="transit"))
    one = project_fit(tree, {"abroad": 2000}, step=1, seed=1, **kw)
    two = project_fit(tree, {"abroad": 2000}, step=2, seed=2, **kw)
    for name in ("cumulative_returns", "ever_returned", "returnees"):
        a, b = one[name].isel(time=-1).values, two[name].isel(time=-1).values
        z = (a.mean() - b.mean()) / np.sqrt(a.var() / a.size + b.var() / b.size)
        assert abs(z) < Z_MAX, (name, a.mean(), b.mean())
    # arrivals: 100 per model step, all in
    assert int(one["inflow"].sum("time").min()) == 800


def test_initial_total_split_and_exits(fitted):
    _, tree, _ = fitted
    ds = project_fit(tree, InitialTotal(5000), start=3, horizon=6, draws=200, seed=3,
                     exit_rates=0.1)  # fmt: skip
    x0 = ds["stock"].isel(time=0)
    assert np.all(x0.sum("state") == 5000) and np.all(x0.sel(state="returned") == 0)
    # with exits: P(leave in a step) = 1 - exp(-0.1), before moving
    left = ds["exited"].isel(time=-1).values / 5000
    assert abs(left.mean() - (1 - np.exp(-0.3))) < 0.01


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--step", "0.5"], "--step must be a whole number >= 1"),
        (["--horizon", "8.5"], "is not a whole number of --step"),
        (["--group", "x"], "no covariates, groups or periods"),
        (["--scenario", "SCENARIO"], "scenario 'faster' multiplies intensities"),
    ],
)
def test_bad_discrete_options_exit_2(fitted, tmp_path, extra, message):
    _, _, path = fitted
    scenario = tmp_path / "faster.toml"
    scenario.write_text('name = "faster"\nfrom = 4.0\n[multipliers]\n"abroad->returned" = 2.0\n')
    extra = [str(scenario) if e == "SCENARIO" else e for e in extra]
    out = tmp_path / "out"
    out.mkdir()
    args = ["project", str(path), "--initial", "abroad=100", "--start", "3", "--horizon", "8",
            "--draws", "10", "--out", str(out / "p.nc")]  # fmt: skip
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert list(out.iterdir()) == []


def test_cli_projects_a_discrete_fit(fitted, tmp_path):
    _, _, path = fitted
    more = tmp_path / "more.toml"  # an inflow-only scenario applies to a discrete fit
    more.write_text('name = "more"\nfrom = 5.0\n[inflow]\nper_year = 50.0\n')
    result = CliRunner().invoke(
        app,
        ["project", str(path), "--initial-total", "1000", "--start", "3", "--horizon", "8",
         "--draws", "50", "--out", str(tmp_path / "p.nc"), "--csv", str(tmp_path / "p.csv"),
         "--plot-dir", str(tmp_path / "plots"), "--scenario", str(more), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p.csv")
    assert sorted(set(table["time"])) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert set(table["scenario"]) == {"baseline", "more"}
    assert any((tmp_path / "plots").iterdir())
