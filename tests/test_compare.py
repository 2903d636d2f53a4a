"""PSIS-LOO comparison of fits: units, agreement with ArviZ, same-data rule, Pareto k warnings."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import compare as M
from markov_migration.testing import fake_fit, fake_posterior
from tests.conftest import DESIGN_TABLES

THREE = """
name = "three"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.02
initial = { a = 0.6, b = 0.4, c = 0.0 }
"""


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def panel(spec):
    return simulate_panel(spec, 300, seed=31)


def with_rates(tree, spec, factor, spread=0.05, seed=0):
    """The fit with its posterior moved to ``factor`` x the true rates (log-lik recomputed)."""
    from markov_migration.fitfile.assemble import log_likelihood_dataset
    from markov_migration.inputs.aggregate import AggregatedData

    rates = factor * np.array([spec.rates[p] for p in spec.transitions])
    post = fake_posterior(spec, rates, chains=2, draws=200, spread=spread, seed=seed)
    obs = tree["observed_data"].to_dataset().to_dataframe().reset_index(drop=True)
    agg = AggregatedData(
        obs[["from", "to", "interval", "count"]], spec.states, 1 / 365.25, "<x>", "0" * 64
    )
    out = tree.copy()
    out["posterior"] = xr.DataTree(post)
    out["log_likelihood"] = xr.DataTree(log_likelihood_dataset(spec, agg, post))
    return out


@pytest.fixture(scope="module")
def fits(spec, panel):
    base = fake_fit(spec, panel, chains=2, draws=200, spread=0.05, seed=1)
    return {"true": with_rates(base, spec, 1.0), "double": with_rates(base, spec, 2.0, seed=2)}


def test_transition_unit_equals_arviz_on_expanded_loglik(fits):
    """Per-transition LOO = ArviZ's loo on the log-likelihood with one column per transition."""
    import arviz_stats as azs

    tree = fits["true"]
    res = M.loo_fit(tree, "transition")
    count = tree["observed_data"]["count"].to_numpy().astype(int)
    ll = tree["log_likelihood"]["transitions"].to_numpy() / count
    expanded = np.repeat(ll, count, axis=-1)
    data = xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset()[["log_rate"]],
            "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), expanded)}),
        }
    )
    ref = azs.loo(data, pointwise=True, var_name="y")
    assert res.n_units == count.sum() == ref.n_data_points
    assert res.elpd.elpd == pytest.approx(ref.elpd, rel=1e-10)
    assert res.elpd.se == pytest.approx(ref.se, rel=1e-10)
    assert res.elpd.p == pytest.approx(ref.p, rel=1e-8)
    np.testing.assert_allclose(res.elpd.pareto_k.values, ref.pareto_k.values, rtol=1e-10)


def test_row_unit_is_arviz_loo_on_stored_rows(fits):
    import arviz_stats as azs

    tree = fits["true"]
    res = M.loo_fit(tree, "row")
    data = xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset()[["log_rate"]],
            "log_likelihood": tree["log_likelihood"].to_dataset(),
        }
    )
    ref = azs.loo(data, pointwise=True)
    assert res.n_units == res.n_rows == tree["observed_data"].sizes["obs"]
    assert res.elpd.elpd == pytest.approx(ref.elpd, rel=1e-12)


def test_compare_ranks_the_true_rates_first(fits):
    table, loos = M.compare_fits(fits)
    assert list(table.index) == ["true", "double"]
    assert table.loc["true", "elpd_diff"] == 0
    diff = table.loc["double", "elpd_diff"]
    assert diff < 0 and abs(diff) > 4 * table.loc["double", "dse"]
    assert diff == pytest.approx(loos["double"].elpd.elpd - loos["true"].elpd.elpd, rel=1e-12)
    assert {"rank", "elpd", "se", "dse", "p", "weight", "unit", "n", "high_k", "max_k"} <= set(
        table.columns
    )
    assert table["weight"].sum() == pytest.approx(1.0)


def test_pareto_k_warnings_for_influential_rows(spec, panel):
    # broad posterior + leaving out whole rows with many transitions: large Pareto k
    base = fake_fit(spec, panel, chains=2, draws=200, spread=0.05, seed=1)
    broad = with_rates(base, spec, 1.0, spread=0.6, seed=5)
    res = M.loo_fit(broad, "row")
    assert res.high_k_units > 0
    msgs = M.pareto_k_warnings({"broad": res})
    assert len(msgs) == 1 and msgs[0].startswith("broad: Pareto k >") and "rows" in msgs[0]


def test_refuses_fits_of_different_data(spec, panel, fits):
    other = fake_fit(spec, simulate_panel(spec, 300, seed=32), chains=2, draws=200)
    with pytest.raises(InputError, match="panel's observation pairs differ from those of true"):
        M.compare_fits({"true": fits["true"], "other": other})
    # without an embedded panel the aggregated rows must be the same
    bare = other.copy()
    del bare["panel_data"]
    with pytest.raises(InputError, match="aggregated observations differ"):
        M.compare_fits({"true": fits["true"], "other": bare})
    changed = fits["double"].copy()
    changed.attrs = {**changed.attrs, "data_sha256": "f" * 64}
    with pytest.raises(InputError, match="fitted to different data than true"):
        M.compare_fits({"true": fits["true"], "changed": changed})
    with pytest.raises(InputError, match="at least two"):
        M.compare_fits({"true": fits["true"]})
    with pytest.raises(InputError, match="unknown LOO unit"):
        M.loo_fit(fits["true"], "person")


def test_compare_fit_files(fits, tmp_path):
    from markov_migration.fitfile.format import write_fit

    paths = [write_fit(fits[n], tmp_path / f"{n}.nc") for n in ("double", "true")]
    table, _ = M.compare_fits(paths)
    assert table.index[0] == str(paths[1])
    with pytest.raises(InputError, match="same fit file is given twice"):
        M.compare_fits([paths[0], paths[0]])


COVARIATE_MODEL = THREE + DESIGN_TABLES


def test_models_that_aggregate_differently_compare_by_transition():
    """The same panel with and without covariates and groups: pairs in panel order."""
    from markov_migration.testing import fake_design_fit

    cov_spec = parse_spec(COVARIATE_MODEL)
    plain_spec = parse_spec(THREE)
    df = simulate_panel(cov_spec, 300, seed=7)
    plain = fake_fit(plain_spec, df, chains=2, draws=200, spread=0.05)
    cov = fake_design_fit(cov_spec, df, chains=2, draws=200, spread=0.05)
    assert cov["observed_data"].sizes["obs"] > plain["observed_data"].sizes["obs"]
    pairs, rows = M.panel_pairs(plain)
    cov_pairs, cov_rows = M.panel_pairs(cov)
    assert pairs.equals(cov_pairs) and not np.array_equal(rows, cov_rows)
    # one pair's value is its row's log P, whichever row it is aggregated into
    ll = plain["log_likelihood"]["transitions"].values / plain["observed_data"]["count"].values
    res = M.loo_fit(plain, pair_rows=rows)
    assert res.n_units == len(pairs) == int(plain["observed_data"]["count"].sum())
    assert res.elpd.elpd == pytest.approx(M.loo_fit(plain).elpd.elpd, rel=1e-12)
    i = 17
    lppd = np.logaddexp.reduce(ll[..., rows[i]].ravel()) - np.log(400)
    assert float(res.elpd.elpd_i[i]) <= lppd + 1e-12  # LOO never beats the in-sample fit
    table, loos = M.compare_fits({"plain": plain, "covariates": cov})
    assert set(table.index) == {"plain", "covariates"}
    assert set(table["n"]) == {len(pairs)}
    # the pointwise differences line up pair by pair
    d = loos["covariates"].elpd.elpd_i.values - loos["plain"].elpd.elpd_i.values
    assert table["elpd_diff"].abs().max() == pytest.approx(abs(d.sum()), rel=1e-9)
    # ...and ArviZ's standard error of the difference is the paired one
    worse = table.index[1]
    assert table.loc[worse, "dse"] == pytest.approx(np.sqrt(d.size * np.var(d)), rel=1e-9)


def test_small_posteriors_are_refused_or_flagged():
    """PSIS-LOO needs a tail: fewer than LOO_MIN_DRAWS draws is one clear error, a few
    hundred a warning; never ArviZ's IndexError or 'n_draws_tail' traceback."""
    from markov_migration.defaults import LOO_FEW_DRAWS, LOO_MIN_DRAWS
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import models_dir

    spec = load_spec(models_dir() / "migration5.toml")
    panel = simulate_panel(spec, 200, seed=5)
    for chains, draws in [(1, 1), (1, 4), (2, 12), (4, 6), (1, LOO_MIN_DRAWS - 1)]:
        tiny = fake_fit(spec, panel, chains=chains, draws=draws, seed=1)
        with pytest.raises(InputError, match="too few for PSIS-LOO"):
            M.loo_fit(tiny, "transition", "tiny")
    few = {
        s: fake_fit(spec, panel, chains=2, draws=LOO_MIN_DRAWS // 2 + 10, seed=s) for s in (1, 2)
    }
    table, loos = M.compare_fits({"a": few[1], "b": few[2]})
    assert np.isfinite(table["elpd"]).all()
    warnings = M.pareto_k_warnings(loos)
    assert any("LOO estimates are noisy" in w for w in warnings)
    assert LOO_FEW_DRAWS > LOO_MIN_DRAWS
