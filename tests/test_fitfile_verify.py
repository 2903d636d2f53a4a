"""Fit files are verified on reading: tampered, truncated and foreign files (issue 11).

Each case: ``read_fit`` raises a FitFileError naming the file and what is wrong, and
every fit-reading command exits 2 with one line on stderr and no traceback.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.errors import FitFileError
from markov_migration.fitfile.format import read_fit, write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec
from markov_migration.io import models_dir
from markov_migration.testing import fake_fit

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    spec = load_spec(models_dir() / "migration5.toml")
    tree = fake_fit(spec, simulate_panel(spec, 200, seed=5), chains=2, draws=30, seed=1)
    path = write_fit(tree, tmp_path_factory.mktemp("verify") / "good.nc")
    return path


def _tamper(tree: xr.DataTree, how: str) -> xr.DataTree:
    tree = tree.copy(deep=True)
    post = tree["posterior"].to_dataset()
    if how == "nan-draws":
        q = post["Q"].values.copy()
        q[0, :3] = np.nan
        post["Q"] = (post["Q"].dims, q)
    elif how == "inf":
        q = post["Q"].values.copy()
        q[1, 2, 0, 1] = np.inf
        post["Q"] = (post["Q"].dims, q)
    elif how == "negated-Q":
        post["Q"] = -post["Q"]
    elif how == "rows-not-zero":
        q = post["Q"].values.copy()
        k = q.shape[-1]
        q[..., np.arange(k), np.arange(k)] += 0.1
        post["Q"] = (post["Q"].dims, q)
    elif how == "forbidden-move":
        q = post["Q"].values.copy()
        q[..., 3, 0] = 0.2  # returned -> abroad is not allowed in migration5
        q[..., 3, 3] -= 0.2
        post["Q"] = (post["Q"].dims, q)
    elif how == "no-draws":
        post = post.isel(draw=slice(0, 0))
    elif how == "wrong-dims":
        post["Q"] = post["Q"].rename({"from_state": "origin"})
    if how in {
        "nan-draws",
        "inf",
        "negated-Q",
        "rows-not-zero",
        "forbidden-move",
        "no-draws",
        "wrong-dims",
    }:
        tree["posterior"] = xr.DataTree(post)
    obs = tree["observed_data"].to_dataset()
    if how == "negative-counts":
        obs["count"] = -obs["count"]
        tree["observed_data"] = xr.DataTree(obs)
    elif how == "fractional-counts":
        obs["count"] = obs["count"] + 0.5
        tree["observed_data"] = xr.DataTree(obs)
    elif how == "state-index-out-of-range":
        obs["to"] = obs["to"] + 10
        tree["observed_data"] = xr.DataTree(obs)
    elif how == "states-not-json":
        tree.attrs["states"] = "abroad, transit"
    elif how == "states-wrong-count":
        tree.attrs["states"] = json.dumps(["abroad", "transit"])
    elif how == "no-model-text":
        del tree.attrs["model_text"]
    elif how == "bad-model-text":
        tree.attrs["model_text"] = "name = 'x'\nstates = [1, 2"
    return tree


CASES = {
    "nan-draws": "non-finite",
    "inf": "non-finite",
    "negated-Q": "negative intensities",
    "rows-not-zero": "do not sum to 0",
    "forbidden-move": "does not allow",
    "no-draws": "no draws",
    "wrong-dims": "dims",
    "negative-counts": "non-negative",
    "fractional-counts": "whole numbers",
    "state-index-out-of-range": "state indices",
    "states-not-json": "JSON list",
    "states-wrong-count": "differs from the recorded model",
    "no-model-text": "no model file text",
    "bad-model-text": "recorded model file is invalid",
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_a_tampered_fit_is_refused_with_one_line(good, tmp_path, how):
    bad = write_fit(_tamper(read_fit(good), how), tmp_path / f"{how}.nc")
    with pytest.raises(FitFileError, match=CASES[how]) as err:
        read_fit(bad)
    assert str(bad) in str(err.value)
    for args in (
        ["summarize", bad],
        ["check", bad],
        [
            "project",
            bad,
            "--initial",
            "abroad=10",
            "--start",
            "2024",
            "--horizon",
            "2025",
            "--out",
            tmp_path / "p.nc",
        ],
    ):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (args[0], result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert CASES[how] in result.stderr
    assert not (tmp_path / "p.nc").exists()


def test_truncated_and_foreign_files(good, tmp_path):
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    text = tmp_path / "text.nc"
    text.write_text("not a netcdf file\n")
    for path, needle in [
        (truncated, "not a NetCDF"),
        (foreign, "not a markov-migration fit"),
        (text, "not a NetCDF"),
    ]:
        with pytest.raises(FitFileError, match=needle):
            read_fit(path)
        result = runner.invoke(app, ["summarize", str(path)])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_a_sound_fit_passes(good):
    assert "Q" in read_fit(good)["posterior"]
