"""People leave the population: constant, per-state and time-varying exit rates.

References: the exit state is an absorbing state added to each draw's generator, so the
expected stocks and exits at the horizon are ``x0 expm(W1 (c - t0)) expm(W2 (t - c))``
(scipy, per draw) for a rate that changes at ``c``; the expected return events are Van
Loan's (:func:`markov_migration.projection.reference.expected_returns`). Means within
|z| < 4.5 (standard errors from the draws).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.draws import select_draws
from markov_migration.defaults import DEFAULT_EXIT_RATE
from markov_migration.errors import InputError
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec
from markov_migration.io import models_dir
from markov_migration.projection.exits import ExitRates
from markov_migration.projection.files import read_projection
from markov_migration.projection.plan import Inflow
from markov_migration.projection.reference import expected_returns
from markov_migration.projection.run import project_fit
from markov_migration.testing import fake_fit

Z_MAX = 4.5
STATES = ["abroad", "transit", "swing", "returned", "reemigrated"]
INITIAL = {"abroad": 1200, "transit": 500, "swing": 300}


@pytest.fixture(scope="module")
def spec():
    return load_spec(models_dir() / "migration5.toml")


@pytest.fixture(scope="module")
def tree(spec):
    return fake_fit(spec, simulate_panel(spec, 300, seed=5), chains=2, draws=100, seed=4)


def wide(q, rates):
    """Generators (D, K+1, K+1) with an absorbing exit state entered at ``rates`` (K,)."""
    k = q.shape[-1]
    w = np.zeros((q.shape[0], k + 1, k + 1))
    w[:, :k, :k] = q
    w[:, :k, k] = rates
    idx = np.arange(k + 1)
    w[:, idx, idx] = 0.0
    w[:, idx, idx] = -w.sum(axis=-1)
    return w


def test_a_life_table_series_changes_the_rate_inside_a_step(tree, spec, tmp_path):
    path = tmp_path / "exits.csv"
    path.write_text("time,state,rate\n2020,abroad,0.05\n2020,returned,0.1\n"
                    "2026.3,abroad,0.4\n2026.3,returned,0.3\n")  # fmt: skip
    exits = ExitRates.read_csv(path, spec)
    n = 1500
    ds = project_fit(tree, INITIAL, start=2024.5, horizon=2028, draws=n, seed=2, exit_rates=exits)
    q = tree["posterior"]["Q"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    q = q[select_draws(q.shape[0], n)]
    before = wide(q, [0.05, 0, 0, 0.1, 0])
    after = wide(q, [0.4, 0, 0, 0.3, 0])
    x0 = np.array([INITIAL.get(s, 0) for s in STATES] + [0], float)
    p = np.stack(
        [
            scipy.linalg.expm(a * 1.8) @ scipy.linalg.expm(b * 1.7)
            for a, b in zip(before, after, strict=True)
        ]
    )
    expected = np.einsum("r,drs->ds", x0, p)
    got = np.concatenate(
        [ds["stock"].sel(time=2028.0).values, ds["exited"].sel(time=2028.0).values[:, None]], 1
    )
    diff = got - expected
    z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(n))
    assert np.all(np.abs(z) < Z_MAX), z
    # the change at 2026.3 matters: exits in 2027 (rate 0.4) well above those of 2026's first part
    assert float(ds["exits"].sel(time=2028.0).mean()) > 3 * float(
        ds["exits"].sel(time=2025.0).mean()
    )
    note = json.loads(ds.attrs["exit_rates"])
    assert note["rates"][1]["from"] == 2026.3 and note["rates"][1]["per_time_unit"]["abroad"] == 0.4


def test_van_loan_reference_counts_exits(tree, spec):
    exits = ExitRates.parse({"abroad": 0.3, "returned": 0.5, "transit": 0.2}, spec)
    n = 2000
    kw = dict(start=2024.5, horizon=2030, draws=n, seed=7)
    ds = project_fit(tree, INITIAL, inflow=Inflow.constant(300.0), exit_rates=exits, **kw)
    v = ds["cumulative_returns"].isel(time=-1).values
    expected = expected_returns(tree, ds, exits)
    z = (v.mean() - expected) / (v.std(ddof=1) / np.sqrt(n))
    assert abs(z) < Z_MAX, (v.mean(), expected)
    # and without exits the expectation is clearly higher (the reference is not blind to them)
    assert expected_returns(tree, ds) > 1.1 * expected


def test_default_and_bundled_series(spec):
    default = ExitRates.parse("default", spec)
    np.testing.assert_array_equal(default.rates_at(2030.0), DEFAULT_EXIT_RATE)
    bundled = ExitRates.read_csv("working-age-2022", spec)
    assert bundled.times[0] <= 2022.0 and np.all(np.diff(bundled.rates[:, 0]) > 0)
    assert bundled.rates_at(2024.5)[0] == pytest.approx(0.003)
    with pytest.raises(InputError, match="after --start 2020"):
        bundled.check_window(2020.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,rate\n2022,0.01\n2022,0.02\n", "times must increase"),
        ("time,rate\n2022,-0.01\n", "rate must be a number from 0"),
        ("time,rate\n2022,abc\n", "rate must be a number from 0"),
        ("time,rate\nsoon,0.01\n", "time is not a number"),
        ("time,state,rate\n2022,mars,0.01\n", "'mars' is not a state"),
        ("time,state,rate\n2022,abroad,0.01\n2025,abroad,0.02\n2025,returned,0.01\n",
         "'returned' has no rate at time 2022"),
        ("time,state,rate\n2022,abroad,0.01\n2022,abroad,0.02\n", "two rates at time 2022"),
        ("when,rate\n2022,0.01\n", "missing column 'time'"),
        ("time,rate\n2026,0.01\n", "after --start 2024.5"),
    ],
)  # fmt: skip
def test_bad_exit_files_exit_2_and_write_nothing(tree, tmp_path, text, message):
    fit = tmp_path / "fit.nc"
    write_fit(tree, fit)
    bad = tmp_path / "exits.csv"
    bad.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    before = bad.read_bytes()
    result = CliRunner().invoke(
        app,
        ["project", str(fit), "--initial", "abroad=1000", "--start", "2024.5", "--horizon",
         "2030", "--draws", "10", "--out", str(out / "p.nc"), "--exit-file", str(bad)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert list(out.iterdir()) == [] and bad.read_bytes() == before


def test_cli_exit_options(tree, tmp_path):
    fit = tmp_path / "fit.nc"
    write_fit(tree, fit)
    base = ["project", str(fit), "--initial", "abroad=1000", "--start", "2024.5", "--horizon",
            "2030", "--draws", "10", "-q"]  # fmt: skip
    both = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "a.nc"), "--exit-rate", "0.01", "--exit-file", "x"]
    )
    assert both.exit_code == 2 and "not both" in both.stderr
    ok = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "b.nc"), "--exit-file", "working-age-2022"]
    )
    assert ok.exit_code == 0, ok.output
    ds = read_projection(tmp_path / "b.nc")
    assert "exited" in ds and "working-age-2022" in ds.attrs["exit_rates"]
    total = ds["stock"].sum("state") + ds["exited"]
    assert np.all(total == 1000)
    default = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "c.nc"), "--exit-rate", "default"]
    )
    assert default.exit_code == 0, default.output
