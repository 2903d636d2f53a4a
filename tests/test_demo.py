"""The ``demo`` command: outputs refused up front (fast), then end to end (slow): every step
runs and every promised file is written."""

from __future__ import annotations

import os
import re
import stat

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app


def tree_listing(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def no_pipeline(monkeypatch):
    """Make any pipeline step fail loudly: the tests below must stop before the first one."""

    def boom(*args, **kwargs):
        raise AssertionError("the demo started its pipeline")

    monkeypatch.setattr("markov_migration.inputs.simulate.simulate_panel", boom)


@pytest.mark.parametrize("under", [False, True])
def test_out_dir_that_is_a_file_exits_2_and_creates_nothing(tmp_path, no_pipeline, under):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "deeper" if under else blocker
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert str(blocker) in result.stderr and "not a folder" in result.stderr
    assert "Traceback" not in result.output
    assert tree_listing(tmp_path) == ["taken"] and blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    "existing",
    [
        "panel.csv",
        "fit.nc",
        "report.html",
        "checks/checks.csv",
        "checks/trace.png",
        "summaries/sojourn.csv",
        "projection/projection.nc",
        "projection/projection.csv",
        "projection/charts/returnees.png",
    ],
)
def test_every_existing_output_is_refused_before_anything_runs(tmp_path, no_pipeline, existing):
    out = tmp_path / "out"
    (out / existing).parent.mkdir(parents=True, exist_ok=True)
    (out / existing).write_text("earlier run")
    before = tree_listing(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert f"error: {out / existing}: output exists; use --force" in result.stderr
    assert tree_listing(tmp_path) == before
    assert (out / existing).read_text() == "earlier run"


@pytest.mark.parametrize("blocked", ["fit.nc", "checks", "projection/charts"])
def test_outputs_blocked_by_a_folder_or_a_file_are_refused_even_with_force(
    tmp_path, no_pipeline, blocked
):
    out = tmp_path / "out"
    path = out / blocked
    path.parent.mkdir(parents=True, exist_ok=True)
    if blocked.endswith(".nc"):
        path.mkdir()  # a folder where a file goes
    else:
        path.write_text("x")  # a file where a folder goes
    before = tree_listing(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out), "--force"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: ") and result.stderr.count("\n") == 1
    assert tree_listing(tmp_path) == before


def test_projection_summary_lines_are_not_wrapped(tmp_path, monkeypatch):
    """The planner's lines are printed whole, however narrow the console."""
    from markov_migration.cli import demo
    from markov_migration.cli._common import console
    from markov_migration.fitfile.format import write_fit
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import models_dir
    from markov_migration.testing import fake_fit

    spec = load_spec(models_dir() / "migration5.toml")
    fit = tmp_path / "fit.nc"
    write_fit(fake_fit(spec, simulate_panel(spec, 300, seed=2), chains=2, draws=40, seed=3), fit)
    monkeypatch.setattr(demo, "DEMO_PROJECTION_DRAWS", 100)  # the lines, not the figures
    width = console._width
    console.width = 80
    try:
        with console.capture() as cap:
            demo._project(fit, tmp_path / "projection", seed=1, force=False)
    finally:
        console._width = width
    text = cap.get()
    pattern = re.compile(
        r"^(baseline|ceasefire-2026): (returnees|diaspora|cumulative returns|ever returned) "
        r"at 20(30|35): "
        r"median [\d,]+ \(80% interval [\d,]+-[\d,]+\)$"
    )
    lines = [line for line in text.splitlines() if line.startswith(("baseline", "ceasefire"))]
    steps = [line for line in lines if " by 2035: " in line]
    lines = [line for line in lines if line not in steps]
    assert len(lines) == 16, text
    # yearly and monthly steps side by side, with the Van Loan expectation
    # cumulative returns, ever returned and (the demo projects with exits) exited
    assert len(steps) == 3 and "monthly steps mean" in steps[0] and "Van Loan" in steps[0]
    assert steps[2].startswith("baseline: exited by 2035")
    yearly, monthly, van_loan = (
        float(m.replace(",", "")) for m in re.findall(r"(?:mean|expectation) ([\d,]+)", steps[0])
    )
    # 1,000 draws: the means agree to well within 2% (the Monte Carlo error is about 0.3%)
    assert yearly == pytest.approx(van_loan, rel=0.02) and monthly == pytest.approx(
        van_loan, rel=0.02
    )
    assert all(pattern.match(line) for line in lines), text
    assert max(len(line) for line in lines) > 80  # the test would see a wrap


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out), "--draws", "100"])
    return out, result


@pytest.mark.slow
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
    # whole lines, not soft-wrapped at the console width
    assert re.search(
        r"^ceasefire-2026: cumulative returns at 2035: median [\d,]+ \(80% interval [\d,]+-[\d,]+\)$",
        result.output,
        flags=re.MULTILINE,
    )


@pytest.mark.slow
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
    assert (sojourn["lower"] <= sojourn["median"]).all() and (
        sojourn["median"] <= sojourn["upper"]
    ).all()
    proj = xr.open_dataset(out / "projection" / "projection.nc")
    assert list(proj["scenario"].values) == ["baseline", "ceasefire-2026"]
    html = (out / "report.html").read_text()
    assert "<img" in html and "provenance" in html.lower()


@pytest.mark.slow
def test_demo_refuses_to_overwrite_without_force(demo_run):
    out, _ = demo_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(out), "--draws", "100"])
    assert result.exit_code == 2
    assert "--force" in result.output
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert before == after
