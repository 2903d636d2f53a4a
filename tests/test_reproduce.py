"""Reproduction of a fit from its file: data rebuilding, draw comparison, real re-runs (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.fitfile import readback
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import reproduce as R
from markov_migration.testing import fake_fit
from tests.conftest import DESIGN_TABLES, THREE_SIMULATED

#: Same structure as the fit tests (one shared compile per session).
THREE = THREE_SIMULATED


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def fake(spec):
    return fake_fit(spec, simulate_panel(spec, 200, seed=41), chains=2, draws=400, spread=0.1)


def test_embedded_panel_rebuilds_the_aggregated_data(spec, fake):
    panel, agg, source = readback.recorded_data(fake, spec)
    assert "embedded" in source
    obs = fake["observed_data"]
    np.testing.assert_array_equal(agg.table["count"].to_numpy(), obs["count"].to_numpy())
    np.testing.assert_array_equal(agg.table["interval"].to_numpy(), obs["interval"].to_numpy())
    assert panel.n_respondents == int(fake["panel_data"]["respondent"].max()) + 1


def test_embedded_panel_keeps_covariate_and_group_columns(tmp_path):
    """A covariate/group fit rebuilds its data from the file alone, after a NetCDF round trip."""
    from markov_migration.fitfile.format import read_fit, write_fit
    from markov_migration.testing import fake_design_fit

    text = THREE + DESIGN_TABLES
    cov_spec = parse_spec(text)
    df = simulate_panel(cov_spec, 150, seed=2)
    tree = read_fit(write_fit(fake_design_fit(cov_spec, df), tmp_path / "fit.nc"))
    assert readback.embeds_panel(tree, cov_spec)
    panel, agg, source = readback.recorded_data(tree, cov_spec)
    assert "embedded" in source
    assert set(panel.data["host"]) == set(df["host"]) and set(panel.data["reason"]) == {
        "draft",
        "work",
    }
    by_id = df.groupby(df["id"].astype(str))["age"].first()
    np.testing.assert_array_equal(
        panel.data.groupby("id")["age"].first().to_numpy(), by_id.sort_index().to_numpy()
    )
    obs = tree["observed_data"]
    np.testing.assert_array_equal(agg.table["count"].to_numpy(), obs["count"].to_numpy())
    # older fit files without the columns fall back to the recorded data file
    old = tree.copy()
    old["panel_data"] = xr.DataTree(
        tree["panel_data"].to_dataset()[["respondent", "time", "state", "weight"]]
    )
    assert not readback.embeds_panel(old, cov_spec)
    with pytest.raises(InputError, match="embeds no panel"):
        readback.recorded_data(old, cov_spec)


def test_missing_or_changed_data_file(spec, fake, tmp_path):
    tree = fake.copy()
    del tree["panel_data"]
    tree.attrs = {**tree.attrs, "data_path": str(tmp_path / "gone.csv")}
    with pytest.raises(InputError, match="embeds no panel and its data file .* is missing"):
        readback.recorded_data(tree, spec)
    data = tmp_path / "panel.csv"
    data.write_text("id,time,state\n1,0,a\n1,1,b\n")
    tree.attrs = {**tree.attrs, "data_path": str(data)}
    with pytest.raises(InputError, match="changed since the fit"):
        readback.recorded_data(tree, spec)


def test_fake_fits_cannot_be_rerun(fake):
    with pytest.raises(InputError, match="sampler 'fake'"):
        R.reproduce(fake)


def _shift(tree, delta):
    out = tree.copy()
    post = tree["posterior"].to_dataset()
    post["log_rate"] = post["log_rate"] + delta
    out["posterior"] = xr.DataTree(post)
    return out


def test_compare_draws_verdicts(fake):
    verdict, table, z = R.compare_draws(fake, fake)
    assert verdict == "exact" and z == 0
    assert list(table.columns) == [
        "parameter",
        "mean_original",
        "mean_rerun",
        "mcse_original",
        "mcse_rerun",
        "z",
    ]
    mcse = float(table["mcse_original"].max())
    assert R.compare_draws(fake, _shift(fake, 0.5 * mcse))[0] == "agree"
    verdict, table, z = R.compare_draws(fake, _shift(fake, 10 * mcse))
    assert verdict == "disagree" and z > R.Z_TOLERANCE


def test_version_differences(fake):
    tree = fake.copy()
    versions = json.loads(tree.attrs["versions"])
    versions["numpy"] = "0.0.1"
    tree.attrs = {**tree.attrs, "versions": json.dumps(versions)}
    assert R.version_differences(fake) == {}
    assert list(R.version_differences(tree)) == ["numpy"]


# ---------------------------------------------------------------- real re-runs (slow)


@pytest.fixture(scope="module")
def real(spec, tmp_path_factory):
    from markov_migration.inference.fit import fit

    folder = tmp_path_factory.mktemp("reproduce")
    data = folder / "panel.csv"
    simulate_panel(spec, 300, seed=42).to_csv(data, index=False)
    model = folder / "three.toml"
    model.write_text(THREE)
    out = folder / "fit.nc"
    fit(data, model, chains=2, draws=300, tune=300, seed=7, out=out)
    return out, data


@pytest.mark.slow
def test_rerun_matches_exactly(real):
    path, _ = real
    res = R.reproduce(path)
    assert res.verdict == "exact", res.message()
    assert res.ok and "embedded" in res.data_source and res.max_abs_z == 0


@pytest.mark.slow
def test_rerun_from_the_data_file(real, tmp_path):
    from markov_migration.fitfile.format import read_fit, write_fit

    path, data = real
    tree = read_fit(path)
    del tree["panel_data"]
    no_panel = write_fit(tree, tmp_path / "nopanel.nc")
    res = R.reproduce(no_panel)
    assert res.verdict == "exact" and "SHA-256 matches" in res.data_source


@pytest.mark.slow
def test_rerun_with_another_seed_agrees_within_mc_error(real):
    path, _ = real
    res = R.reproduce(path, seed=8)
    assert res.verdict == "agree", res.message()
    assert res.max_abs_z < R.Z_TOLERANCE and "seed 8" in res.notes[0]
