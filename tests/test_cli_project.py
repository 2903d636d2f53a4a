"""``project`` command: outputs, bad inputs (exit 2, one stderr line, no output file)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.projection.files import QUANTILE_COLUMNS, read_projection
from markov_migration.testing import fake_fit
from tests.conftest import deadline

runner = CliRunner()
INITIAL = "abroad=30000,transit=15000,swing=8000,reemigrated=5000"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory):
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import models_dir

    spec = load_spec(models_dir() / "migration5.toml")
    tree = fake_fit(spec, simulate_panel(spec, 300, seed=2), chains=2, draws=40, seed=3)
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    write_fit(tree, path)
    return path


def base_args(fit_file, out, *extra):
    return (
        "project",
        fit_file,
        "--initial",
        INITIAL,
        "--start",
        2024.5,
        "--horizon",
        2030,
        "--draws",
        50,
        "--out",
        out,
        *extra,
    )


def test_help_lists_the_contract_options():
    result = invoke("project", "--help")
    assert result.exit_code == 0
    for opt in (
        "--initial",
        "--initial-file",
        "--start",
        "--horizon",
        "--step",
        "--inflow",
        "--inflow-file",
        "--inflow-state",
        "--draws",
        "--seed",
        "--out",
        "--csv",
        "--plot-dir",
        "--scenario",
        "--dask",
        "--force",
    ):
        assert opt in result.stdout


def test_project_writes_netcdf_csv_and_fan_charts(fit_file, tmp_path):
    out, csv, plots = tmp_path / "p.nc", tmp_path / "p.csv", tmp_path / "plots"
    args = base_args(
        fit_file,
        out,
        "--csv",
        csv,
        "--plot-dir",
        plots,
        "--scenario",
        "ceasefire-2026",
        "--inflow",
        1000,
        "--inflow-state",
        "transit",
        "--seed",
        4,
        "--plot-states",
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "returnees" in result.stdout and f"wrote {out}" in result.stdout
    ds = read_projection(out)
    assert list(ds["scenario"].values) == ["baseline", "ceasefire-2026"]
    assert ds["stock"].dims == ("scenario", "draw", "time", "state")
    assert ds.attrs["fit_sha256"] == hashlib.sha256(fit_file.read_bytes()).hexdigest()
    assert ds.attrs["command_line"].startswith("markov-migration")
    assert json.loads(ds.attrs["inflow"])["state"] == "transit"
    total = 58_000 + np.array([0, 500, 1500, 2500, 3500, 4500, 5500])
    np.testing.assert_array_equal(ds["stock"].sum("state"), np.broadcast_to(total, (2, 50, 7)))
    table = pd.read_csv(csv)
    assert tuple(table.columns) == QUANTILE_COLUMNS
    assert set(table["scenario"]) == {"baseline", "ceasefire-2026"}
    assert {"returns", "reemigrations", "moves_abroad"} <= set(table["series"])
    for name in ("returns", "reemigrations", "moves_abroad"):
        assert ds[name].dims == ("scenario", "draw", "time")
        assert ds[name].attrs["units"] == "persons per step"
    names = sorted(p.name for p in plots.iterdir())
    assert names == sorted(
        ["returnees.png", "diaspora.png", "cumulative_returns.png", "ever_returned.png"]
        + [f"stock-{s}.png" for s in ds["state"].values]
    )
    # same seed, same projection; --force needed to overwrite
    again = invoke(*args)
    assert again.exit_code == 2 and "output exists; use --force" in again.stderr
    again = invoke(*args, "--force")
    assert again.exit_code == 0, again.output
    xr.testing.assert_identical(read_projection(out).drop_attrs(), ds.drop_attrs())


def test_initial_file_and_inflow_file(fit_file, tmp_path):
    stocks = tmp_path / "stocks.csv"
    stocks.write_text("state,stock\nabroad,1000\nswing,500\n")
    inflow = tmp_path / "inflow.csv"
    inflow.write_text("time,inflow\n2025,100\n2027,0\n")
    out = tmp_path / "p.nc"
    result = invoke(
        "project",
        fit_file,
        "--initial-file",
        stocks,
        "--inflow-file",
        inflow,
        "--start",
        2025,
        "--horizon",
        2028,
        "--draws",
        20,
        "--out",
        out,
        "-q",
    )
    assert result.exit_code == 0, result.output
    ds = read_projection(out)
    np.testing.assert_array_equal(ds["stock"].sum("state").isel(draw=0), [1500, 1600, 1700, 1700])


def test_dask_local_equals_in_memory(fit_file, tmp_path):
    pytest.importorskip("distributed")
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    assert invoke(*base_args(fit_file, a, "--seed", 9, "-q")).exit_code == 0
    result = invoke(*base_args(fit_file, b, "--seed", 9, "-q", "--dask", "local"))
    assert result.exit_code == 0, result.output
    xr.testing.assert_identical(read_projection(a).drop_attrs(), read_projection(b).drop_attrs())


def scenario_file(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--initial": "abroad=-5"}, "--initial: stock of 'abroad' must be >= 0, got -5"),
        ({"--initial": "abroad=10,mars=3"}, "--initial: 'mars' is not a state of model migration5"),
        ({"--initial": "abroad"}, "is not of the form state=persons"),
        ({"--horizon": "2020"}, "--horizon 2020 is not after --start 2024.5"),
        ({"--inflow-state": "moon", "--inflow": "10"}, "--inflow-state 'moon' is not a state"),
        ({"--scenario": "nope.toml"}, "nope.toml: scenario file not found"),
        ({"--step": "0"}, "--step must be positive"),
        ({"--draws": "0"}, "Invalid value for '--draws'"),
        ({"--horizon": "1e9"}, "is more than 10,000 steps (about 1e+09): use a larger --step"),
        ({"--start": "1e300", "--horizon": "1e301"}, "is more than 10,000 steps"),
        ({"--step": "1e-300"}, "is more than 10,000 steps"),
        ({"--horizon": "inf"}, "--horizon must be a finite number, got inf"),
        ({"--start": "nan"}, "--start must be a finite number, got nan"),
        ({"--step": "inf"}, "--step must be a finite number, got inf"),
        (
            {"--initial": "abroad=10000000000000000000000"},
            "--initial: stock of 'abroad' is 1e+22 persons; at most 1e+14 are supported",
        ),
        ({"--initial": "abroad=1e400"}, "stock of 'abroad' must be a finite whole number"),
        (
            {"--initial": "abroad=60000000000000,transit=60000000000000"},
            "--initial: stocks add up to 120,000,000,000,000 persons; at most 1e+14",
        ),
        ({"--inflow": "1e22"}, "--inflow must be at most 1e+14 persons per year, got 1e+22"),
        (
            {"--initial": "abroad=90000000000000", "--inflow": "5000000000000"},
            "initial stocks plus the inflows of scenario 'baseline' come to 117,500,000,000,000",
        ),
    ],
)
def test_bad_inputs_exit_2_with_one_line_and_no_output(fit_file, tmp_path, change, message):
    args = {
        "--initial": INITIAL,
        "--start": 2024.5,
        "--horizon": 2030,
        "--draws": 50,
        "--out": tmp_path / "p.nc",
    }
    args.update(change)
    flat = ["project", fit_file, "--csv", tmp_path / "p.csv", "--plot-dir", tmp_path / "plots"]
    for k, v in args.items():
        flat += [k, v]
    with deadline(20):
        result = invoke(*flat)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'from = 2026.0\n[multipliers]\n"abroad->reemigrated" = 2.0\n',
            "bad.toml, line 3: 'abroad->reemigrated' is not an allowed transition",
        ),
        (
            'from = 2026.0\n[multipliers]\n"abroad->returned" = -2.0\n',
            "bad.toml, line 3: multiplier of 'abroad->returned' must not be negative",
        ),
        (
            'from = 2040.0\n[multipliers]\n"abroad->returned" = 2.0\n',
            "bad.toml, line 1: from = 2040 is outside the projection (2024.5 to 2030)",
        ),
        ("from = 2026.0\n[multipliers\n", "bad.toml, line 2: TOML syntax error"),
    ],
)
def test_bad_scenario_files_exit_2(fit_file, tmp_path, text, message):
    sc = scenario_file(tmp_path, text)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = invoke(
        *base_args(fit_file, out_dir / "p.nc", "--scenario", sc, "--csv", out_dir / "p.csv")
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert list(out_dir.iterdir()) == []


def test_a_file_that_is_not_a_fit(tmp_path):
    bad = tmp_path / "fit.nc"
    bad.write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(*base_args(bad, out / "p.nc"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: not a NetCDF fit file")
    assert result.stderr.count("\n") == 1
    assert list(out.iterdir()) == []
    missing = invoke(*base_args(tmp_path / "none.nc", out / "p.nc"))
    assert missing.exit_code == 2 and "fit file not found" in missing.stderr


def test_both_or_neither_initial_option(fit_file, tmp_path):
    result = invoke(
        "project", fit_file, "--start", 2024.5, "--horizon", 2030, "--out", tmp_path / "p.nc"
    )
    assert result.exit_code == 2 and "one of --initial, --initial-file or --initial-total" in (
        result.stderr
    )
    assert not (tmp_path / "p.nc").exists()


def test_bad_initial_file_names_row_and_column(fit_file, tmp_path):
    stocks = tmp_path / "stocks.csv"
    stocks.write_text("state,stock\nabroad,1000\nswing,-3\n")
    result = invoke(
        "project",
        fit_file,
        "--initial-file",
        stocks,
        "--start",
        2025,
        "--horizon",
        2028,
        "--out",
        tmp_path / "p.nc",
    )
    assert result.exit_code == 2
    assert (
        f"{stocks}, row 2, column 'stock': stock must be a whole number of persons >= 0"
        in result.stderr
    )
    assert not (tmp_path / "p.nc").exists()


def test_huge_inflow_in_a_file_names_row_and_column(fit_file, tmp_path):
    inflow = tmp_path / "inflow.csv"
    inflow.write_text("time,inflow\n2025,100\n2026,10000000000000000000000\n")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(*base_args(fit_file, out / "p.nc", "--inflow-file", inflow))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {inflow}, row 2, column 'inflow': inflow must be")
    assert result.stderr.count("\n") == 1
    assert list(out.iterdir()) == []


def test_huge_stock_in_a_file_names_row_and_column(fit_file, tmp_path):
    stocks = tmp_path / "stocks.csv"
    stocks.write_text("state,stock\nabroad,1000\nswing,10000000000000000000000\n")
    out = tmp_path / "out"
    out.mkdir()
    args = ["project", fit_file, "--initial-file", stocks, "--start", 2025, "--horizon", 2028]
    result = invoke(*args, "--out", out / "p.nc")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {stocks}, row 2, column 'stock': stock is 1e+22 persons; "
        "at most 1e+14 are supported\n"
    )
    assert list(out.iterdir()) == []


def test_inflow_into_a_home_state_warns_that_it_counts_as_returnees(fit_file, tmp_path):
    out = tmp_path / "p.nc"
    args = base_args(fit_file, out, "--inflow", 500, "--inflow-state", "returned", "-q")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("warning: --inflow-state 'returned' is a home state")
    assert "counts as returnees" in result.stderr
    ds = read_projection(out)
    assert json.loads(ds.attrs["inflow"])["state"] == "returned"
    change = ds["returnees"].diff("time").values
    balance = (ds["returns"] - ds["reemigrations"]).isel(time=slice(1, None)).values
    np.testing.assert_array_equal(balance, change - ds["inflow"].isel(time=slice(1, None)).values)
    # a non-home inflow state: no warning
    quiet = invoke(*base_args(fit_file, tmp_path / "q.nc", "--inflow-state", "transit", "-q"))
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--initial-total", "650000", "--initial-total-range", "700000,800000"], "must contain"),
        (["--initial-total", "650000", "--initial-total-range", "-5,800000"], "numbers > 0"),
        (["--initial-total", "-650000"], "--initial-total must be a number of persons > 0"),
        (["--initial-total", "650000", "--initial-total-range", "5e5"], "two numbers LO,HI"),
        (["--initial-total-range", "5e5,7e5", "--initial", INITIAL], "needs --initial-total"),
        (["--initial-total", "650000", "--initial", INITIAL], "one of --initial"),
        (["--initial-total", "650000", "--inflow-cv", "-1"], "--inflow-cv must be >= 0"),
        (["--initial", INITIAL, "--exit-rate", "-0.01"], "--exit-rate must be >= 0"),
        (["--initial", INITIAL, "--exit-rate", "mars=0.01"], "'mars' is not a state"),
    ],
)
def test_bad_initial_totals_exit_2_with_one_line_and_no_output(fit_file, tmp_path, extra, message):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = invoke(
        "project", fit_file, "--start", 2024.5, "--horizon", 2030, "--draws", 20,
        "--out", out_dir / "p.nc", "--csv", out_dir / "p.csv", "--plot-dir", out_dir / "plots",
        *extra,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert list(out_dir.iterdir()) == []


def test_uncertain_initial_total_is_drawn_per_draw_and_recorded(fit_file, tmp_path):
    out = tmp_path / "p.nc"
    args = ["project", fit_file, "--start", 2024.5, "--horizon", 2027, "--draws", 400, "-q",
            "--initial-total", 650000, "--initial-total-range", "550000,800000", "--out", out]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    ds = read_projection(out)
    totals = ds["stock"].isel(time=0).sum("state").values
    # two-piece lognormal: median 650,000, 5% and 95% quantiles 550,000 and 800,000; with 400
    # draws the sample quantiles are within about 2.5 percentage points of probability
    assert np.mean(totals < 550_000) == pytest.approx(0.05, abs=0.035)
    assert np.mean(totals > 800_000) == pytest.approx(0.05, abs=0.035)
    assert np.mean(totals < 650_000) == pytest.approx(0.5, abs=0.08)
    note = json.loads(ds.attrs["initial_total_distribution"])
    assert note["range90"] == [550000, 800000] and "lognormal" in note["distribution"]
    # each draw has its own split: the shares of 'abroad' differ between draws
    share = ds["stock"].isel(time=0).sel(state="abroad").values / totals
    assert np.std(share) > 0
    assert int(ds["stock"].isel(time=0).sel(state="returned").max()) == 0
