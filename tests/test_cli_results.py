"""Command line: ``summarize``, ``check``, ``compare`` and ``reproduce``.

Exit codes: 0 success, 1 a check failed (``check --strict``, ``reproduce``), 2
bad input with one line on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.testing import fake_fit
from tests.conftest import THREE_SIMULATED

runner = CliRunner()

#: Same structure as the fit tests (one shared compile per session).
THREE = THREE_SIMULATED


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def files(spec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    panel = simulate_panel(spec, 300, seed=61)
    good = write_fit(
        fake_fit(spec, panel, chains=4, draws=250, spread=0.08, seed=1), folder / "good.nc"
    )
    broad = write_fit(
        fake_fit(spec, panel, chains=4, draws=250, spread=0.3, seed=2), folder / "broad.nc"
    )
    few = write_fit(
        fake_fit(spec, panel, chains=2, draws=20, spread=0.08, seed=3), folder / "few.nc"
    )
    other = fake_fit(spec, simulate_panel(spec, 300, seed=62), chains=2, draws=100)
    other.attrs = {**other.attrs, "data_sha256": "e" * 64}
    other = write_fit(other, folder / "other.nc")
    return {"good": good, "broad": broad, "few": few, "other": other, "dir": folder}


@pytest.mark.parametrize("command", ["summarize", "check", "compare", "reproduce"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


# -- summarize --------------------------------------------------------------------------


def test_summarize_table(files):
    result = invoke("summarize", files["good"], "--what", "qmatrix")
    assert result.exit_code == 0, result.stderr
    assert (
        "qmatrix" in result.stdout and "lower 95%" in result.stdout and "a->b" not in result.stdout
    )
    result = invoke("summarize", files["good"], "--what", "sojourn", "--ci", "0.9")
    assert result.exit_code == 0 and "lower 90%" in result.stdout
    assert "note: absorbing states have no finite sojourn: c" in result.stdout


def test_summarize_csv_and_json(files):
    result = invoke("summarize", files["good"], "--what", "pmatrix", "--t", "2", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(StringIO(result.stdout))
    assert list(frame.columns) == ["from", "to", "mean", "sd", "median", "lower", "upper"]
    np.testing.assert_allclose(frame.groupby("from")["mean"].sum(), 1.0, atol=1e-9)
    result = invoke(
        "summarize", files["good"], "-w", "totlos", "--horizon", "5", "--start", "b", "-f", "csv"
    )
    frame = pd.read_csv(StringIO(result.stdout))
    assert list(frame.columns) == ["state", "mean", "sd", "median", "lower", "upper"]
    assert frame["mean"].sum() == pytest.approx(5.0, rel=1e-9)
    result = invoke("summarize", files["good"], "-w", "passage", "--to", "c", "-f", "json")
    doc = json.loads(result.stdout)
    assert (
        doc["quantity"] == "passage"
        and doc["to"] == "c"
        and [r["state"] for r in doc["rows"]] == ["a", "b"]
    )


def test_summarize_out_file(files, tmp_path):
    out = tmp_path / "q.json"
    result = invoke("summarize", files["good"], "--what", "pnext", "--out", out)
    assert result.exit_code == 0 and out.exists()
    assert json.loads(out.read_text())["quantity"] == "pnext"
    result = invoke("summarize", files["good"], "--what", "pnext", "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"error: {out}: output exists; use --force to overwrite it\n"
    assert (
        invoke("summarize", files["good"], "--what", "pnext", "--out", out, "--force").exit_code
        == 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--what", "bogus"], "summarize: Invalid value for '--what' / '-w': 'bogus' is not"),
        (["--what", "hazard"], "model 'three' has no covariates, so the fit has no hazard ratios"),
        (["--what", "totlos"], "--what totlos needs --horizon H"),
        (["--what", "totlos", "--horizon", "3", "--start", "z"], "unknown start state 'z'"),
        (["--what", "passage", "--to", "a"], "no state has a finite expected passage time to a"),
        (["--format", "xml"], "summarize: Invalid value for '--format' / '-f': 'xml' is not"),
        (["--ci", "95"], "summarize: Invalid value for '--ci': must be in the range 0 < x < 1"),
    ],
)
def test_summarize_bad_input(files, args, message):
    result = invoke("summarize", files["good"], *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_bad_fit_files(tmp_path):
    result = invoke("summarize", tmp_path / "none.nc")
    assert (
        result.exit_code == 2
        and result.stderr == f"error: {tmp_path / 'none.nc'}: fit file not found\n"
    )
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    result = invoke("check", junk)
    assert result.exit_code == 2 and "not a NetCDF fit file" in result.stderr


@pytest.mark.parametrize("command", ["summarize", "check", "compare", "reproduce"])
def test_fit_file_of_a_newer_format_is_refused(files, tmp_path, command):
    import xarray as xr

    from markov_migration.fitfile.format import FIT_FORMAT_VERSION, FIT_MARKER, read_fit

    tree = read_fit(files["good"])
    tree.attrs = {**tree.attrs, FIT_MARKER: FIT_FORMAT_VERSION + 1}
    newer = write_fit(tree, tmp_path / "newer.nc")
    with xr.open_datatree(newer, engine="h5netcdf") as raw:  # the file itself is fine
        assert "posterior" in raw.children
    args = [files["good"], newer] if command == "compare" else [newer]
    result = invoke(command, *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: {newer}: written by a newer markov-migration (format {FIT_FORMAT_VERSION + 1}, "
        f"this version reads up to {FIT_FORMAT_VERSION}); upgrade markov-migration to read it\n"
    )


# -- check ------------------------------------------------------------------------------


def test_check_writes_tables_plots_and_report(files, tmp_path):
    out_dir, report = tmp_path / "checks", tmp_path / "report.html"
    result = invoke(
        "check",
        files["good"],
        "--out-dir",
        out_dir,
        "--report",
        report,
        "--strict",
        "--draws",
        "100",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "R-hat" in result.stdout and "FAIL" not in result.stdout
    assert (out_dir / "ppc_transitions.png").exists() and (out_dir / "checks.csv").exists()
    assert "Pearson table" in result.stdout and (out_dir / "ppc_pearson.png").exists()
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # nothing is overwritten without --force, and the refusal comes before any work
    result = invoke("check", files["good"], "--report", report)
    assert result.exit_code == 2 and "output exists" in result.stderr
    result = invoke("check", files["good"], "--report", tmp_path / "r.pdf")
    assert result.exit_code == 2 and "report must end in .html" in result.stderr


def test_check_strict_fails_with_too_few_draws(files):
    result = invoke("check", files["few"], "--draws", "40")
    assert result.exit_code == 0  # without --strict failures are reported, not fatal
    assert "FAIL" in result.stdout
    result = invoke("check", files["few"], "--strict", "--draws", "40")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "check(s) failed: " in result.stderr
    assert "ess_bulk (bulk ESS: " in result.stderr and "needs >= 200" in result.stderr


# -- compare ----------------------------------------------------------------------------


def test_compare(files):
    result = invoke("compare", files["broad"], files["good"])
    assert result.exit_code == 0, result.stderr
    assert "PSIS-LOO comparison (unit: transition" in result.stdout
    result = invoke("compare", files["broad"], files["good"], "--format", "csv", "--unit", "row")
    frame = pd.read_csv(StringIO(result.stdout))
    assert {"model", "elpd", "elpd_diff", "dse", "se", "high_k"} <= set(frame.columns)
    assert set(frame["unit"]) == {"row"} and len(frame) == 2
    result = invoke("compare", files["broad"], files["good"], "--format", "json")
    doc = json.loads(result.stdout)
    assert doc["unit"] == "transition" and len(doc["rows"]) == 2


def test_compare_refuses_different_data(files):
    result = invoke("compare", files["good"], files["other"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {files['other']}: fitted to different data than {files['good']}"
    )
    assert result.stderr.count("\n") == 1
    result = invoke("compare", files["good"])
    assert result.exit_code == 2 and "at least two fit files" in result.stderr


# -- reproduce --------------------------------------------------------------------------


def test_reproduce_refuses_fake_fit(files):
    result = invoke("reproduce", files["good"], "--quiet")
    assert result.exit_code == 2 and "sampler 'fake', which cannot be re-run" in result.stderr


def test_results_commands_do_not_import_pymc(files):
    code = textwrap.dedent(
        f"""
        import sys
        from typer.testing import CliRunner
        from markov_migration.cli.app import app
        for args in (["summarize", {str(files["good"])!r}, "-w", "pmatrix"],
                     ["check", {str(files["good"])!r}, "--draws", "20"],
                     ["compare", {str(files["good"])!r}, {str(files["broad"])!r}]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
        print(",".join(m for m in ("pymc", "pytensor", "nutpie") if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# -- real fits (slow) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(spec, tmp_path_factory):
    from markov_migration.inference.fit import fit

    folder = tmp_path_factory.mktemp("cli_real")
    data = folder / "panel.csv"
    simulate_panel(spec, 300, seed=63).to_csv(data, index=False)
    model = folder / "three.toml"
    model.write_text(THREE)
    paths = {}
    for name, draws in (("well", 500), ("short", 15)):
        paths[name] = folder / f"{name}.nc"
        fit(data, model, chains=2, draws=draws, tune=max(draws, 100), seed=3, out=paths[name])
    return paths


@pytest.mark.slow
def test_check_strict_on_real_fits(real, tmp_path):
    result = invoke("check", real["well"], "--strict", "--report", tmp_path / "r.html")
    assert result.exit_code == 0, result.stdout + result.stderr
    result = invoke("check", real["short"], "--strict")
    assert result.exit_code == 1, result.stdout
    assert "ess_bulk" in result.stderr


@pytest.mark.slow
def test_reproduce_real_fit(real, tmp_path):
    out = tmp_path / "rerun.nc"
    result = invoke("reproduce", real["well"], "--quiet", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "exact match: every posterior draw is identical" in result.stdout
    assert out.exists()
    result = invoke("reproduce", real["well"], "--quiet", "--seed", "99")
    assert result.exit_code == 0 and "agree within Monte Carlo error" in result.stdout


@pytest.mark.slow
def test_compare_real_fits_of_the_same_data(real, tmp_path):
    import shutil

    twin = shutil.copy(real["well"], tmp_path / "twin.nc")
    result = invoke("compare", real["well"], twin, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(StringIO(result.stdout))
    np.testing.assert_allclose(frame["elpd_diff"], 0.0, atol=1e-9)
    # 2 chains x 15 draws: too few for PSIS-LOO's tail fit, refused in one line
    result = invoke("compare", real["well"], real["short"])
    assert result.exit_code == 2
    assert "30 posterior draws are too few for PSIS-LOO" in result.stderr
