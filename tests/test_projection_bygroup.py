"""``project --by-group``: every host group of a fit on the same posterior draws.

References: the per-draw sum over groups (the total must equal it exactly), and
``project_fit(..., group=G)`` with the same seed and draws (a one-group run must
reproduce it bit for bit). Fake fits with groups (no MCMC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.errors import InputError
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.projection.bygroup import project_by_group
from markov_migration.projection.files import group_total, read_projection
from markov_migration.projection.run import project_fit
from markov_migration.testing import fake_design_fit, fake_fit

MODEL = """
name = "grp3"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[groups]
column = "host"
transitions = ["a->b", "b->a"]
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { a = 0.6, b = 0.4, c = 0.0 }
[simulate.groups]
column = "host"
levels = { X = 0.4, Y = 0.3, Z = 0.3 }
"""
STOCKS = {"X": {"b": 30_000, "c": 5_000}, "Y": {"b": 20_000}, "Z": {"a": 1_000, "b": 7_000}}


@pytest.fixture(scope="module")
def group_tree():
    spec = parse_spec(MODEL)
    return fake_design_fit(spec, simulate_panel(spec, 200, seed=3), draws=30, group_sd=0.5)


@pytest.fixture(scope="module")
def fit_path(group_tree, tmp_path_factory):
    return write_fit(group_tree, tmp_path_factory.mktemp("bygroup") / "fit.nc")


def test_group_sums_equal_the_total_per_draw(group_tree):
    ds = project_by_group(group_tree, STOCKS, start=3, horizon=6, draws=40, seed=2)
    assert ds["stock"].dims == ("draw", "time", "state", "group")
    assert list(ds["group"].values) == ["X", "Y", "Z"]
    total = group_total(ds)
    for name in ("stock", "returnees", "cumulative_returns", "ever_returned", "events"):
        manual = sum(ds[name].sel(group=g).values for g in ("X", "Y", "Z"))
        np.testing.assert_array_equal(total[name].values, manual)
    # persons are conserved per group (no inflow, no exits)
    start = {g: sum(v.values()) for g, v in STOCKS.items()}
    for g, n in start.items():
        assert (ds["stock"].sel(group=g).sum("state") == n).all()


def test_one_group_run_reproduces_the_single_group_projection(group_tree):
    kw = dict(start=3, horizon=6, step=0.5, draws=25, seed=7)
    for g in ("X", "Y"):
        by = project_by_group(group_tree, {g: STOCKS[g]}, **kw)
        one = project_fit(group_tree, STOCKS[g], group=g, **kw)
        for name in one.data_vars:
            if "observed" in name:
                continue
            np.testing.assert_array_equal(by[name].sel(group=g).values, one[name].values)


def test_groups_use_the_same_posterior_draws_and_independent_noise(group_tree):
    same = {"X": {"b": 10_000}, "Y": {"b": 10_000}}
    ds = project_by_group(group_tree, same, start=3, horizon=6, draws=30, seed=1)
    assert ds["posterior_draw"].dims == ("draw",)  # one set of draws for all groups
    x = ds["stock"].sel(group="X", state="b").values
    y = ds["stock"].sel(group="Y", state="b").values
    assert not np.array_equal(x, y)


def test_cli_by_group_writes_group_dim_csv_rows_and_charts(fit_path, tmp_path):
    rows = [(g, s, v) for g, d in STOCKS.items() for s, v in d.items()]
    init = tmp_path / "init.csv"
    pd.DataFrame(rows, columns=["group", "state", "stock"]).to_csv(init, index=False)
    out, csv, plots = tmp_path / "p.nc", tmp_path / "p.csv", tmp_path / "plots"
    args = ["project", str(fit_path), "--by-group", "--initial-file", str(init), "--start", "3",
            "--horizon", "6", "--draws", "30", "--out", str(out), "--csv", str(csv),
            "--plot-dir", str(plots), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = read_projection(out)
    assert ds["stock"].dims == ("draw", "time", "state", "group")
    table = pd.read_csv(csv)
    assert list(table.columns[:2]) == ["group", "scenario"]
    assert set(table["group"]) == {"total", "X", "Y", "Z"}
    # the total's quantiles are quantiles of the per-draw sums, not sums of quantiles
    at = table[(table["series"] == "returnees") & (table["time"] == 6.0)].set_index("group")
    sums = ds["returnees"].sel(time=6.0).sum("group").values
    assert at.loc["total", "median"] == pytest.approx(np.median(sums), abs=0.05)
    assert at.loc["total", "mean"] == pytest.approx(sums.mean(), abs=0.05)
    names = {p.name for p in plots.iterdir()}
    assert {"returnees.png", "returnees-group-X.png", "diaspora-group-Z.png"} <= names


@pytest.mark.parametrize(
    ("csv_text", "extra", "message"),
    [
        ("group,state,stock\nQ,b,10\n", [], "'Q' is not a group of the fit"),
        ("group,state\nX,b\n", [], "exactly the columns group,state,stock"),
        ("group,state,stock,inflow\nX,b,1,2\n", [], "exactly the columns group,state,stock"),
        ("group,state,stock\nX,b,10\nX,b,20\n", [], "appears twice"),
        ("group,state,stock\nX,q,10\n", [], "'q' is not a state"),
        ("group,state,stock\nX,b,-1\n", [], "whole number of persons >= 0"),
        ("group,state,stock\nX,b,10\n", ["--group", "X"], "either --group or --by-group"),
        ("group,state,stock\nX,b,10\n", ["--inflow", "100"], "does not take --inflow"),
    ],
)
def test_cli_bad_by_group_inputs(fit_path, tmp_path, csv_text, extra, message):
    init = tmp_path / "init.csv"
    init.write_text(csv_text)
    out = tmp_path / "p.nc"
    args = ["project", str(fit_path), "--by-group", "--initial-file", str(init), "--start", "3",
            "--horizon", "5", "--draws", "10", "--out", str(out), "--quiet", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_by_group_on_a_fit_without_groups(tmp_path):
    spec = parse_spec(MODEL.split("[groups]")[0] + "[simulate]\nwaves = [0, 1, 2]\n")
    fit = write_fit(fake_fit(spec, simulate_panel(spec, 50, seed=1)), tmp_path / "plain.nc")
    init = tmp_path / "init.csv"
    init.write_text("group,state,stock\nX,b,10\n")
    out = tmp_path / "p.nc"
    args = ["project", str(fit), "--by-group", "--initial-file", str(init), "--start", "1",
            "--horizon", "2", "--out", str(out), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "needs a fit with groups" in result.output
    assert not out.exists()
    with pytest.raises(InputError, match="needs a fit with groups"):
        project_by_group(fit, {"X": {"b": 10}}, start=1, horizon=2)
