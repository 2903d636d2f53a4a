"""Periods: the little-exposure warning of `validate` and `check`, and the configurable
period prior ``[priors] period = { sd = ... }``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.defaults import PERIOD_MIN_EXPOSURE
from markov_migration.errors import InputError
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.period_exposure import little_exposure, period_exposure
from markov_migration.inputs.spec import parse_spec

#: The first period, before 0.02, is nearly empty (observations start at 0).
MODEL = """
name = "per3"
states = ["a", "b", "c"]
periods = { cuts = [0.02, 2.0], transitions = ["a->b", "b->a"] }
[transitions]
a = ["b", "c"]
b = ["a", "c"]
c = ["a"]
[rates]
"a->b" = 0.3
"a->c" = 0.1
"b->a" = 0.4
"b->c" = 0.1
"c->a" = 0.2
[data]
resolution = 0.001
"""


def random_panel(n: int, seed: int) -> pd.DataFrame:
    """Three observations per respondent on the 0.001 grid in [0, 4), random states."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for t in np.sort(rng.choice(4000, size=3, replace=False)):
            rows.append((i, round(t * 0.001, 3), rng.choice(["a", "b", "c"])))
    return pd.DataFrame(rows, columns=["id", "time", "state"])


@pytest.fixture(scope="module")
def data():
    spec = parse_spec(MODEL)
    df = random_panel(300, seed=4)
    return spec, df, aggregate(validate_panel(df, spec), spec)


def test_exposure_against_pair_by_pair_overlap(data):
    """Person-years in each period and pairs starting in it, from the raw pairs."""
    spec, df, agg = data
    edges = [-np.inf, 0.02, 2.0, np.inf]
    pairs = np.zeros(3)
    years = np.zeros(3)
    for _, g in df.sort_values(["id", "time"]).groupby("id"):
        t = g["time"].to_numpy()
        for t0, t1 in zip(t[:-1], t[1:], strict=True):
            pairs[np.searchsorted(edges, t0, side="right") - 1] += 1
            for k in range(3):
                years[k] += max(0.0, min(t1, edges[k + 1]) - max(t0, edges[k]))
    got = period_exposure(spec, agg.table)
    np.testing.assert_array_equal(got["pairs"].to_numpy(), pairs)
    # times are on the resolution grid: only float rounding differs
    np.testing.assert_allclose(got["exposure"].to_numpy(), years, rtol=1e-9, atol=1e-9)
    assert years[0] < PERIOD_MIN_EXPOSURE < min(years[1:])


def test_only_the_nearly_empty_period_is_flagged(data):
    spec, df, agg = data
    lines = little_exposure(spec, agg.table)
    assert len(lines) == 1
    assert lines[0].startswith("period [-inf, 0.02) has little exposure:")
    wide = parse_spec(MODEL.replace("0.02, ", ""))
    assert little_exposure(wide, aggregate(validate_panel(df, wide), wide).table) == []


def test_validate_and_check_warn_but_succeed(tmp_path, data):
    from markov_migration.fitfile.format import write_fit
    from markov_migration.results.checks import period_notes
    from markov_migration.testing import fake_design_fit

    spec, df, _ = data
    model, panel = tmp_path / "m.toml", tmp_path / "p.csv"
    model.write_text(MODEL)
    df.to_csv(panel, index=False)
    res = CliRunner().invoke(app, ["validate", str(panel), "--model", str(model)])
    assert res.exit_code == 0, res.output
    warn = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "period [-inf, 0.02) has little exposure" in warn[0]
    tree = fake_design_fit(spec, df, chains=2, draws=50)
    notes = period_notes(tree)
    assert len(notes) == 1 and notes[0].startswith("period [-inf, 0.02)")
    write_fit(tree, tmp_path / "f.nc")
    res = CliRunner().invoke(app, ["check", str(tmp_path / "f.nc"), "--draws", "20"])
    assert "period [-inf, 0.02) has little exposure" in res.stderr


def test_configured_period_sd_reaches_the_pymc_model(data):
    """The Normal prior of each period effect has the model file's sd (default 1)."""
    from markov_migration.inference.model import build_model

    _, df, _ = data
    for text, sd in ((MODEL, 1.0), (MODEL + "[priors]\nperiod = { sd = 0.3 }\n", 0.3)):
        spec = parse_spec(text)
        assert spec.period_prior_sd == sd
        model = build_model(spec, aggregate(validate_panel(df, spec), spec))
        rv = model["log_hr_scaled"]
        sigma = np.asarray(rv.owner.inputs[-1].eval())
        # two periods after the first x two period transitions, scale 1 (indicators)
        np.testing.assert_allclose(sigma, np.full(4, sd), rtol=1e-12)


@pytest.mark.parametrize(
    "value",
    ["{ sd = -1 }", "{ sd = 0 }", '{ sd = "wide" }', "2", "{ sd = 1, mean = 0 }", "{ }"],
)
def test_bad_period_prior_is_one_line_exit_2(tmp_path, data, value):
    _, df, _ = data
    text = MODEL + f"[priors]\nperiod = {value}\n"
    with pytest.raises(InputError, match=r"\[priors\] period"):
        parse_spec(text)
    model, panel = tmp_path / "m.toml", tmp_path / "p.csv"
    model.write_text(text)
    df.to_csv(panel, index=False)
    res = CliRunner().invoke(app, ["validate", str(panel), "--model", str(model)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "period" in lines[0]
    assert res.stdout == ""
