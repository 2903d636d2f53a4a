"""The fit command: exit codes, no output on failure, data checked before compiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import read_fit
from tests.test_fit import Q3, THREE, simulate_expm

runner = CliRunner()


@pytest.fixture
def three(tmp_path):
    model = tmp_path / "three.toml"
    model.write_text(THREE)
    panel = tmp_path / "panel.csv"
    simulate_expm(Q3, 200, [0.0, 1.0, 2.0], seed=4).to_csv(panel, index=False)
    return model, panel


def test_fit_writes_a_fit_file(three, tmp_path):
    model, panel = three
    out = tmp_path / "fit.nc"
    args = ["fit", str(panel), "--model", str(model), "--out", str(out)]
    res = runner.invoke(
        app, [*args, "--chains", "2", "--draws", "200", "--tune", "200", "--seed", "3", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "Posterior intensities" in res.output and "divergences" in res.output
    tree = read_fit(out)
    assert tree["posterior"]["Q"].shape == (2, 200, 3, 3)
    assert tree.attrs["command_line"].startswith("markov-migration")
    assert tree.attrs["seed"] == 3
    # An existing fit file is not overwritten without --force.
    before = out.read_bytes()
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "exists; use --force" in res.stderr
    assert out.read_bytes() == before


def test_target_accept_is_used_and_recorded(three, tmp_path):
    model, panel = three
    step = {}
    for accept in (0.8, 0.97):
        out = tmp_path / f"fit-{accept}.nc"
        res = runner.invoke(
            app,
            ["fit", str(panel), "--model", str(model), "--out", str(out), "--chains", "2",
             "--draws", "200", "--tune", "200", "--seed", "3", "-q", "--target-accept", str(accept)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        tree = read_fit(out)
        assert json.loads(tree.attrs["sampler_settings"])["target_accept"] == accept
        step[accept] = float(tree["sample_stats"]["step_size"].mean())
    # a higher acceptance target adapts smaller steps
    assert step[0.97] < 0.8 * step[0.8]


def _forbid_compile(monkeypatch):
    import markov_migration.inference.model as model_module

    def boom(*args, **kwargs):
        raise AssertionError("the model was built although the input is bad")

    monkeypatch.setattr(model_module, "build_model", boom)


def test_impossible_transition_fails_before_compiling(three, tmp_path, monkeypatch):
    _forbid_compile(monkeypatch)
    model, panel = three
    text = panel.read_text().splitlines()
    # Respondent 'x' goes from the absorbing state c back to a.
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*text, "x,0.0,c", "x,1.0,a"]) + "\n")
    out = tmp_path / "fit.nc"
    res = runner.invoke(app, ["fit", str(bad), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 2
    assert "transition c->a is impossible under the model (it is absorbing)" in res.stderr
    assert "first by respondent 'x'" in res.stderr
    assert "Traceback" not in res.output + res.stderr
    assert not out.exists()
    assert list(tmp_path.glob(".fit.nc*")) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sampler", "stan"], "fit: Invalid value for '--sampler': 'stan' is not one of"),
        (["--draws", "0"], "Invalid value for '--draws'"),
        (["--target-accept", "1.0"], "'--target-accept': must be in the range 0 < x < 1, got 1"),
        (["--tune", "0"], "--tune must be at least 1 with nutpie, got 0"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--seed", "99999999999999999999999"], "Invalid value for '--seed'"),
        (["--draws", "99999999999999999999999"], "Invalid value for '--draws'"),
    ],
)
def test_bad_options(three, tmp_path, monkeypatch, extra, message):
    _forbid_compile(monkeypatch)
    model, panel = three
    out = tmp_path / "fit.nc"
    res = runner.invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out), *extra])
    assert res.exit_code == 2
    assert message in res.stderr
    assert not out.exists()


def test_bad_model_and_missing_panel(three, tmp_path, monkeypatch):
    _forbid_compile(monkeypatch)
    model, panel = three
    out = tmp_path / "fit.nc"
    res = runner.invoke(
        app, ["fit", str(tmp_path / "none.csv"), "--model", str(model), "--out", str(out)]
    )
    assert res.exit_code == 2 and "none.csv: file not found" in res.stderr
    bad_model = tmp_path / "bad.toml"
    bad_model.write_text('states = ["a", "a"]\n[transitions]\na = ["a"]\n')
    res = runner.invoke(app, ["fit", str(panel), "--model", str(bad_model), "--out", str(out)])
    assert res.exit_code == 2 and "duplicate state 'a'" in res.stderr
    assert not out.exists()


def test_fit_python_api_matches_cli_layout(three, tmp_path):
    from markov_migration.inference.fit import fit

    model, panel = three
    tree = fit(panel, model, chains=2, draws=100, tune=100, seed=1, out=tmp_path / "api.nc")
    assert (tmp_path / "api.nc").exists()
    assert np.all(np.isfinite(tree["posterior"]["Q"].values))
    assert tree.attrs["data_sha256"] == read_fit(tmp_path / "api.nc").attrs["data_sha256"]
