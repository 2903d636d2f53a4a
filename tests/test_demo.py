"""The ``demo`` command end to end: every step runs and every promised file is written."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out), "--draws", "100"])
    return out, result


def test_demo_runs_every_step(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    for step in (
        "1. Simulate",
        "2. Validate",
        "3. Published figures",
        "4. Fit",
        "5. Check the fit",
        "6. Key posterior summaries",
        "7. Project",
    ):
        assert step in result.output
    # the key human-readable lines a planner looks for
    assert "baseline: returnees at 2030: median" in result.output
    assert "ceasefire-2026: diaspora at 2035: median" in result.output
    assert "mean length of a stay" in result.output


def test_demo_writes_the_promised_files(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    expected = [
        "panel.csv",
        "fit.nc",
        "report.html",
        "checks/checks.csv",
        "checks/ppc_prevalence.png",
        "summaries/pmatrix-1y.csv",
        "summaries/sojourn.csv",
        "summaries/passage-returned.csv",
        "projection/projection.nc",
        "projection/projection.csv",
        "projection/charts/returnees.png",
        "projection/charts/diaspora.png",
    ]
    for name in expected:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert not [p for p in out.rglob("*.tmp")]
    # files are readable by others, as ordinary outputs are (not mkstemp's 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "fit.nc").stat().st_mode) == 0o666 & ~umask
    sojourn = pd.read_csv(out / "summaries" / "sojourn.csv")
    assert list(sojourn.columns) == ["state", "mean", "sd", "median", "lower", "upper"]
    assert (sojourn["lower"] <= sojourn["median"]).all() and (sojourn["median"] <= sojourn["upper"]).all()
    proj = xr.open_dataset(out / "projection" / "projection.nc")
    assert list(proj["scenario"].values) == ["baseline", "ceasefire-2026"]
    html = (out / "report.html").read_text()
    assert "<img" in html and "provenance" in html.lower()


def test_demo_refuses_to_overwrite_without_force(demo_run):
    out, _ = demo_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out), "--draws", "100"])
    assert result.exit_code == 2
    assert "--force" in result.output
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert before == after
