"""Hostile outputs and interrupts, for every command that writes (issue 11).

Each case: exit 2 (or 130/143 for interrupts), at most a few lines on stderr, no
traceback, no output file created or half-written, no temporary or lock file left,
inputs and existing outputs byte-identical.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec
from markov_migration.io import atomic_output, models_dir
from markov_migration.testing import fake_fit

runner = CliRunner()
INITIAL = "abroad=30000,transit=15000,swing=8000,reemigrated=5000"
#: The module the ``project`` command takes its file writers from.
WRITERS = "markov_migration.projection.files"
PROJECT = ["--initial", INITIAL, "--start", "2024.5", "--horizon", "2030", "--draws", "20"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary, lock and probe files a run may have left behind."""
    return sorted(p.name for p in Path(folder).rglob(".*") if p.is_file())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    spec = load_spec(models_dir() / "migration5.toml")
    panel = simulate_panel(spec, 300, seed=2)
    panel_path = folder / "panel.csv"
    panel.to_csv(panel_path, index=False)
    fit = write_fit(fake_fit(spec, panel, chains=2, draws=40, seed=3), folder / "fit.nc")
    fit2 = write_fit(fake_fit(spec, panel, chains=2, draws=40, seed=4), folder / "fit2.nc")
    model = folder / "model.toml"
    model.write_text((models_dir() / "migration5.toml").read_text())
    stocks = folder / "stocks.csv"
    stocks.write_text("state,stock\nabroad,1000\nswing,500\n")
    return {
        "dir": folder,
        "panel": panel_path,
        "fit": fit,
        "fit2": fit2,
        "model": model,
        "stocks": stocks,
    }


def assert_clean_refusal(result, *, inputs, folder, needle=None, code=2):
    assert result.exit_code == code, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert 1 <= len(err.splitlines()) <= 3, err
    if needle is not None:
        assert needle in err, err
    for path, before in inputs.items():
        assert digest(path) == before, f"{path} changed"
    assert leftovers(folder) == [], leftovers(folder)


# -- an output that is an input ----------------------------------------------------------

OUTPUT_IS_INPUT = {
    "summarize --out FIT": ["summarize", "{fit}", "--format", "csv", "--out", "{fit}", "--force"],
    "project --out FIT": ["project", "{fit}", *PROJECT, "--out", "{fit}", "--force"],
    "project --csv INITIAL-FILE": [
        "project",
        "{fit}",
        "--initial-file",
        "{stocks}",
        "--start",
        "2024.5",
        "--horizon",
        "2030",
        "--draws",
        "20",
        "--out",
        "{dir}/p.nc",
        "--csv",
        "{stocks}",
        "--force",
    ],
    "compare --out FIT2": ["compare", "{fit}", "{fit2}", "--out", "{fit2}", "--force"],
    "fit --out PANEL.nc": ["fit", "{fit}", "--model", "{model}", "--out", "{fit}", "--force"],
    "simulate --out MODEL": ["simulate", "--model", "{model}", "--out", "{model}", "--force"],
}


@pytest.mark.parametrize("case", sorted(OUTPUT_IS_INPUT))
def test_an_output_that_is_an_input_is_refused(world, case):
    args = [a.format(**world) for a in OUTPUT_IS_INPUT[case]]
    inputs = {world[k]: digest(world[k]) for k in ("fit", "fit2", "panel", "model", "stocks")}
    result = invoke(*args)
    assert_clean_refusal(
        result, inputs=inputs, folder=world["dir"], needle="is one of this command's inputs"
    )
    assert not (world["dir"] / "p.nc").exists()


def test_an_output_reached_through_another_path_is_still_the_input(world):
    other = world["dir"] / "sub"
    other.mkdir(exist_ok=True)
    alias = f"{other}/../fit.nc"
    result = invoke("summarize", world["fit"], "--format", "csv", "--out", alias, "--force")
    assert_clean_refusal(
        result, inputs={world["fit"]: digest(world["fit"])}, folder=world["dir"], needle="inputs"
    )


# -- outputs that cannot be written -----------------------------------------------------


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_is_never_replaced(world):
    result = invoke("summarize", world["fit"], "--format", "csv", "--out", "/dev/null", "--force")
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    assert Path("/dev/null").is_char_device()


UNWRITABLE = {
    "fit --out /proc": ["fit", "{panel}", "--model", "{model}", "--out", "/proc/f.nc"],
    "check --report /proc": ["check", "{fit}", "--report", "/proc/r.html"],
    "check --out-dir /proc": ["check", "{fit}", "--out-dir", "/proc/xx"],
    "summarize under a file": ["summarize", "{fit}", "--out", "{panel}/x.csv"],
    "project under a file": ["project", "{fit}", *PROJECT, "--out", "{panel}/p.nc"],
    "project missing folder": ["project", "{fit}", *PROJECT, "--out", "{dir}/nope/p.nc"],
    "project --plot-dir under a file": [
        "project",
        "{fit}",
        *PROJECT,
        "--out",
        "{dir}/q.nc",
        "--plot-dir",
        "{panel}/charts",
    ],
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_an_unwritable_output_is_refused_before_any_work(world, case):
    if "/proc" in case and not Path("/proc/self").exists():
        pytest.skip("needs /proc")
    args = [a.format(**world) for a in UNWRITABLE[case]]
    inputs = {world[k]: digest(world[k]) for k in ("fit", "panel", "model")}
    t0 = time.perf_counter()
    result = invoke(*args)
    assert_clean_refusal(result, inputs=inputs, folder=world["dir"])
    assert time.perf_counter() - t0 < 60  # refused up front: no sampling, no projection
    assert not (world["dir"] / "q.nc").exists()


def test_a_full_disk_leaves_nothing(world, monkeypatch):
    """ENOSPC while writing the second output: neither output is placed, no temp file."""

    def full(ds, path, force=False):
        with atomic_output(path, force) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(importlib.import_module(WRITERS), "write_quantile_csv", full)
    out, csv = world["dir"] / "full.nc", world["dir"] / "full.csv"
    result = invoke("project", world["fit"], *PROJECT, "--out", out, "--csv", csv)
    assert_clean_refusal(result, inputs={}, folder=world["dir"], needle="no space left")
    assert not out.exists() and not csv.exists()


# -- existing outputs and concurrent runs ----------------------------------------------


def test_a_failing_run_leaves_an_existing_output_byte_identical(world):
    out = world["dir"] / "kept.csv"
    out.write_text("precious\n")
    before = digest(out)
    result = invoke(
        "summarize", world["fit"], "--what", "pmatrix", "--t", "nan", "--out", out, "--force"
    )
    assert result.exit_code == 2
    assert digest(out) == before
    assert leftovers(world["dir"]) == []


def test_force_never_replaces_what_another_run_is_writing(world):
    out = world["dir"] / "busy.csv"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = world["dir"] / ".busy.csv.lock"
        lock.write_text(str(sleeper.pid))
        result = invoke("summarize", world["fit"], "--format", "csv", "--out", out, "--force")
        assert result.exit_code == 2 and "another markov-migration run" in result.stderr
        assert not out.exists()
        lock.unlink()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_of_a_dead_run_is_taken_over(world):
    out = world["dir"] / "stale.csv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (world["dir"] / ".stale.csv.lock").write_text(str(dead.pid))
    result = invoke("summarize", world["fit"], "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists()
    out.unlink()
    assert leftovers(world["dir"]) == []


def test_outputs_of_one_run_are_placed_together(world, monkeypatch):
    """An interrupt after the NetCDF is written but before the CSV: neither is placed."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(WRITERS), "write_quantile_csv", interrupted)
    out, csv = world["dir"] / "pair.nc", world["dir"] / "pair.csv"
    result = invoke("project", world["fit"], *PROJECT, "--out", out, "--csv", csv)
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted"
    assert not out.exists() and not csv.exists()
    assert leftovers(world["dir"]) == []


# -- real signals and standard output (subprocesses) -----------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from markov_migration.cli.app import main; main()", *args]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_exits_cleanly_and_writes_nothing(world, tmp_path, sig, code):
    out = tmp_path / "sig.nc"
    existing = tmp_path / "sig.csv"
    existing.write_text("old\n")
    before = digest(existing)
    args = [
        "project",
        str(world["fit"]),
        "--initial",
        INITIAL,
        "--start",
        "2024.5",
        "--horizon",
        "2150",
        "--step",
        "0.1",
        "--draws",
        "1500",
        "--out",
        str(out),
        "--csv",
        str(existing),
        "--force",
    ]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # imports and reading the fit; the projection itself takes longer
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal (a very fast machine)")
    assert proc.returncode == code, (proc.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr
    assert not out.exists()
    assert digest(existing) == before
    assert leftovers(tmp_path) == []


def test_stdout_that_cannot_be_written_is_one_line_exit_2(world):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            _cli("summarize", str(world["fit"]), "--what", "qmatrix"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "standard output" in done.stderr or "No space" in done.stderr


def test_no_lock_or_temp_files_after_a_normal_run(world, tmp_path):
    out = tmp_path / "ok.csv"
    result = invoke("summarize", world["fit"], "--format", "csv", "--out", out)
    assert result.exit_code == 0
    assert out.exists() and leftovers(tmp_path) == []
    assert not any(p.name.startswith(".") for p in world["dir"].iterdir()), os.listdir(world["dir"])


@pytest.mark.slow
@pytest.mark.parametrize("delay", [3.0, 15.0])
def test_ctrl_c_during_a_fit_writes_no_fit_file(world, tmp_path, delay):
    """Ctrl-C while the model compiles (3 s) or samples (15 s): exit 130, no fit file.

    One chain, so that the fit leaves the other core to the rest of the suite (a warm
    fit of this model starts sampling after about 5 s; a cold one after about 12 s).

    nutpie returns the draws sampled so far when interrupted; they must not become a
    fit file (``interrupts.reraise_after``), and an existing output stays as it was.
    """
    out = tmp_path / "fit.nc"
    out.write_bytes(b"an earlier fit")
    args = ["fit", str(world["panel"]), "--model", str(world["model"]), "--out", str(out),
            "--force", "--draws", "100000", "--tune", "200", "--chains", "1", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr
    assert out.read_bytes() == b"an earlier fit"
    assert leftovers(tmp_path) == []
