"""`compare --by group`: the standard error of elpd_diff clustered by host group."""

from __future__ import annotations

import numpy as np
import pytest

from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import compare as M
from markov_migration.testing import fake_design_fit, fake_fit
from tests.conftest import DESIGN_TABLES
from tests.test_compare import THREE


def test_clustered_dse_matches_hand_computation():
    """sqrt(G * var(S_g, ddof=1)) with S_g the group sums, computed by hand."""
    d = np.array([1.0, 2.0, -1.0, 0.5, 0.5, 3.0])
    g = np.array(["x", "x", "y", "y", "z", "z"])
    sums = np.array([3.0, -0.5, 3.5])  # x, y, z
    mean = sums.mean()
    hand = np.sqrt(3 * ((sums - mean) ** 2).sum() / 2)
    assert M.clustered_dse(d, g) == pytest.approx(hand, rel=1e-12)
    assert M.clustered_dse(np.zeros(4), np.array([0, 0, 1, 1])) == 0.0
    assert np.isnan(M.clustered_dse(d, np.zeros(6)))


def test_clustered_exceeds_plain_with_correlated_pairs_and_agrees_without():
    """Strong within-group correlation inflates the clustered se well above the
    paired one; independent pairs give the same se within 20% (200 groups of 10
    pairs: the clustered se's own relative sampling error is about
    1/sqrt(2*199) = 5%, so 20% is four of its sds)."""
    rng = np.random.default_rng(3)
    n_groups, size = 200, 10
    g = np.repeat(np.arange(n_groups), size)
    plain = lambda d: np.sqrt(d.size * np.var(d, ddof=1))  # noqa: E731 (ArviZ's paired dse)
    correlated = rng.normal(0, 1, n_groups)[g] + rng.normal(0, 0.3, g.size)
    assert M.clustered_dse(correlated, g) > 3 * plain(correlated)
    for seed in range(5):
        independent = np.random.default_rng(seed).normal(0.1, 1, g.size)
        ratio = M.clustered_dse(independent, g) / plain(independent)
        assert abs(ratio - 1) < 0.2, ratio


@pytest.fixture(scope="module")
def group_fits():
    cov_spec = parse_spec(THREE + DESIGN_TABLES)
    plain_spec = parse_spec(THREE)
    df = simulate_panel(cov_spec, 300, seed=7)
    plain = fake_fit(plain_spec, df, chains=2, draws=200, spread=0.05)
    grouped = fake_design_fit(cov_spec, df, chains=2, draws=200, spread=0.05)
    return {"plain": plain, "groups": grouped}, df


def test_compare_by_group_adds_clustered_dse(group_fits):
    fits, df = group_fits
    table, loos = M.compare_fits(fits, by="group")
    assert "dse" in table.columns and "dse_group" in table.columns
    best, worse = table.index
    pairs, _ = M.panel_pairs(fits["plain"])
    # the group of each pair, independently of the code: the panel's host at t0
    ids, times, hosts = df["id"].to_numpy(), df["time"].to_numpy(), df["host"].to_numpy()
    states = df["state"].to_numpy()
    # pairs out of the absorbing state c are not counted (as in aggregate)
    first = np.flatnonzero((ids[1:] == ids[:-1]) & (states[:-1] != "c"))
    assert first.size == len(pairs)
    np.testing.assert_allclose(times[first], pairs["t0"].to_numpy(), atol=1e-5)
    g = hosts[first]
    d = loos[best].elpd.elpd_i.values - loos[worse].elpd.elpd_i.values
    sums = np.array([d[g == v].sum() for v in np.unique(g)])
    hand = np.sqrt(sums.size * np.var(sums, ddof=1))
    assert table.loc[worse, "dse_group"] == pytest.approx(hand, rel=1e-9)
    assert table.loc[best, "dse_group"] == 0.0
    # without --by the table is unchanged
    assert "dse_group" not in M.compare_fits(fits)[0].columns


def test_by_group_refused_without_groups(group_fits):
    spec = parse_spec(THREE)
    df = simulate_panel(spec, 200, seed=2)
    fits = {s: fake_fit(spec, df, chains=2, draws=200, seed=s) for s in (1, 2)}
    with pytest.raises(InputError, match="none of the fits has host groups"):
        M.compare_fits(fits, by="group")
    with pytest.raises(InputError, match="unknown --by"):
        M.compare_fits(group_fits[0], by="country")


def test_by_group_refused_with_different_group_columns(group_fits):
    fits, df = group_fits
    other = parse_spec(THREE + DESIGN_TABLES.replace('column = "host"', 'column = "host2"', 1))
    df2 = df.assign(host2=df["host"])
    alt = fake_design_fit(other, df2, chains=2, draws=200, spread=0.05)
    with pytest.raises(InputError, match="different columns"):
        M.compare_fits({"groups": fits["groups"], "host2": alt}, by="group")


def test_cli_by_group_one_line_exit_2(tmp_path, group_fits):
    from typer.testing import CliRunner

    from markov_migration.cli.app import app
    from markov_migration.fitfile.format import write_fit

    spec = parse_spec(THREE)
    df = simulate_panel(spec, 200, seed=2)
    paths = []
    for s in (1, 2):
        p = tmp_path / f"f{s}.nc"
        write_fit(fake_fit(spec, df, chains=2, draws=200, seed=s), p)
        paths.append(str(p))
    res = CliRunner().invoke(app, ["compare", *paths, "--by", "group"])
    assert res.exit_code == 2
    assert "none of the fits has host groups" in res.output
    assert "Traceback" not in res.output
    fits, _ = group_fits
    good = []
    for name, tree in fits.items():
        p = tmp_path / f"{name}.nc"
        write_fit(tree, p)
        good.append(str(p))
    out = tmp_path / "cmp.csv"
    res = CliRunner().invoke(app, ["compare", *good, "--by", "group", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "dse_group" in out.read_text().splitlines()[0].split(",")
