"""Stock projection: the stochastic core against its expectation, conservation, inflows,
scenarios, outputs, the Dask path, and the no-PyMC rule.

Reference for the transition matrices is scipy.linalg.expm (independent of the
package's batched eigendecomposition); Monte Carlo comparisons use 4 standard
errors of the per-draw difference between the stochastic and the expected
stocks, with fixed seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import xarray as xr

from markov_migration.core.draws import select_draws
from markov_migration.core.event_moments import expected_step
from markov_migration.core.projection import (
    draw_seeds,
    expected_stocks,
    generator_with_multipliers,
    inflow_counts,
    project_stocks,
    step_pmatrices,
)
from markov_migration.defaults import QUANTILE_WAVES
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, write_fit
from markov_migration.inputs.scenario import parse_scenario
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.plots.fan import write_projection_outputs
from markov_migration.projection.files import (
    QUANTILE_COLUMNS,
    interval,
    quantile_table,
    read_projection,
    summary_lines,
    write_projection,
    write_quantile_csv,
)
from markov_migration.projection.initial import initial_stocks_from_fit, observed_prevalence
from markov_migration.projection.plan import MAX_PERSONS, MAX_STEPS, Inflow, projection_times
from markov_migration.projection.run import project_fit
from markov_migration.testing import fake_fit
from tests.conftest import deadline

#: Monte Carlo tolerance in standard errors.
Z = 4.0
STATES = ["abroad", "transit", "swing", "returned", "reemigrated"]
INITIAL = {
    "abroad": 30_000,
    "transit": 15_000,
    "swing": 8_000,
    "returned": 2_000,
    "reemigrated": 5_000,
}


def random_generators(n, k, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    q = rng.gamma(2.0, scale / 2, (n, k, k))
    q[:, np.arange(k), np.arange(k)] = 0.0
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


def expm_steps(q, durations):
    """Reference P per draw and step with scipy (no batching, no eigendecomposition)."""
    out = np.empty((q.shape[0], len(durations)) + q.shape[1:])
    for d, qd in enumerate(q):
        cache = {t: scipy.linalg.expm(qd * t) for t in set(durations)}
        out[d] = [cache[t] for t in durations]
    return out


def within_mc_error(sample, expected, z=Z):
    """Per (time, state): |mean(sample - expected)| <= z standard errors (paired by draw)."""
    diff = np.asarray(sample, float) - np.asarray(expected, float)
    se = diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0])
    worst = np.abs(diff.mean(axis=0)) - z * se
    return bool(np.all(worst <= 1e-9)), float(
        np.max(np.abs(diff.mean(axis=0)) / np.maximum(se, 1e-12))
    )


# ---------------------------------------------------------------------------
# core (numpy only)
# ---------------------------------------------------------------------------


def test_step_matrices_match_scipy_expm_with_multipliers_and_split_steps():
    q = random_generators(7, 4, seed=1)
    mult = np.ones((2, 4, 4))
    mult[1, 0, 3] = 2.0
    mult[1, 3, 1] = 0.0
    steps = [[(1.0, 0)], [(0.3, 0), (0.7, 1)], [(0.5, 1)]]
    p = step_pmatrices(q, steps, mult)
    q1 = generator_with_multipliers(q, mult[1])
    for d in range(7):
        np.testing.assert_allclose(p[d, 0], scipy.linalg.expm(q[d]), atol=1e-12)
        ref = scipy.linalg.expm(q[d] * 0.3) @ scipy.linalg.expm(q1[d] * 0.7)
        np.testing.assert_allclose(p[d, 1], ref, atol=1e-12)
        np.testing.assert_allclose(p[d, 2], scipy.linalg.expm(q1[d] * 0.5), atol=1e-12)
    assert np.all(q1[:, 3, 1] == 0) and np.allclose(q1.sum(axis=-1), 0)


def test_mean_of_stochastic_projection_matches_expectation_with_inflow():
    d, k, s = 1500, 5, 6
    q = random_generators(d, k, seed=2)
    p = expm_steps(q, [1.0] * s)
    x0 = np.array([40_000, 10_000, 5_000, 0, 1_000])
    inflow = np.array([0.0, 1000.0, 2500.5, 0.0, 300.0, 7000.0])
    out = project_stocks(x0, p, seeds=draw_seeds(11, np.arange(d)), inflow=inflow, inflow_state=1)
    exp = expected_stocks(x0, p, inflow, inflow_state=1)
    ok, worst = within_mc_error(out.stock[:, 1:], exp[:, 1:])
    assert ok, f"mean differs from x0 P(t) + inflows by {worst:.1f} standard errors"


def test_demographic_noise_has_multinomial_variance():
    """One step from a single state: flows vary as n p (1 - p) (not a rounded mean)."""
    d, n = 3000, 20_000
    q = random_generators(1, 4, seed=3)
    p1 = scipy.linalg.expm(q[0])
    p = np.broadcast_to(p1, (d, 1, 4, 4))
    out = project_stocks(np.array([n, 0, 0, 0]), p, seeds=draw_seeds(5, np.arange(d)))
    flows = out.flows[:, 0, 0, :]
    se = np.sqrt(n * p1[0] * (1 - p1[0]) / d)
    assert np.all(np.abs(flows.mean(axis=0) - n * p1[0]) <= Z * se)
    # relative sd of a variance estimate ~ sqrt(2 / d) = 2.6%
    np.testing.assert_allclose(
        flows.var(axis=0, ddof=1), n * p1[0] * (1 - p1[0]), rtol=Z * np.sqrt(2 / d)
    )
    # multinomial covariance between two destinations: -n p_a p_b
    cov = np.cov(flows[:, 1], flows[:, 2])[0, 1]
    assert abs(cov - (-n * p1[0, 1] * p1[0, 2])) < Z * np.sqrt(2 / d) * n * p1[0, 1] * p1[0, 2] * 3


def test_exact_conservation_without_inflow():
    d = 400
    q = random_generators(d, 5, seed=4, scale=1.0)
    p = expm_steps(q, [0.5, 1.0, 1.0, 2.0])
    x0 = np.array([123_457, 1, 0, 99_999, 7])
    out = project_stocks(x0, p, seeds=draw_seeds(0, np.arange(d)))
    assert out.stock.dtype == np.int64
    assert np.all(out.stock.sum(axis=-1) == x0.sum())
    assert np.all(out.stock >= 0) and np.all(out.flows >= 0)
    # every row of a step's flows is the stock it started from
    np.testing.assert_array_equal(out.flows.sum(axis=-1), out.stock[:, :-1])
    np.testing.assert_array_equal(out.flows.sum(axis=-2), out.stock[:, 1:])


def test_inflows_add_exactly():
    d, s = 200, 5
    p = expm_steps(random_generators(d, 3, seed=5), [1.0] * s)
    inflow = np.array([1000.4, 1000.4, 0.0, 12_500.5, 3.0])
    x0 = np.array([5000, 0, 10])
    out = project_stocks(x0, p, seeds=draw_seeds(1, np.arange(d)), inflow=inflow, inflow_state=2)
    counts = inflow_counts(inflow)
    assert counts.sum() == round(inflow.sum())
    np.testing.assert_array_equal(out.inflow, np.broadcast_to(counts, (d, s)))
    totals = np.broadcast_to(x0.sum() + np.cumsum(counts), (d, s))
    np.testing.assert_array_equal(out.stock.sum(axis=-1)[:, 1:], totals)


def test_uncertain_inflow_is_gamma_poisson_with_stated_cv():
    d, m, cv = 4000, 20_000.0, 0.3
    p = np.broadcast_to(np.eye(2), (d, 2, 2, 2))
    out = project_stocks(
        np.array([10, 0]),
        p,
        seeds=draw_seeds(9, np.arange(d)),
        inflow=np.array([m, m]),
        inflow_cv=cv,
    )
    a = out.inflow[:, 0].astype(float)
    assert abs(a.mean() - m) < Z * np.sqrt(m + (cv * m) ** 2) / np.sqrt(d)
    np.testing.assert_allclose(a.std(ddof=1) / a.mean(), np.sqrt(1 / m + cv**2), rtol=0.1)
    # the level is persistent: the two steps of a draw are strongly correlated
    assert np.corrcoef(out.inflow[:, 0], out.inflow[:, 1])[0, 1] > 0.95


def test_results_do_not_depend_on_chunks_threads_or_companions():
    d = 300
    q = random_generators(d, 5, seed=6)
    p = expm_steps(q, [1.0, 1.0, 1.0])
    x0 = np.array([1000, 2000, 0, 50, 0])
    seeds = draw_seeds(42, np.arange(d))
    kw = {"inflow": np.array([10.0, 20.0, 30.0]), "inflow_cv": 0.2, "inflow_state": 1}
    whole = project_stocks(x0, p, seeds=seeds, **kw)
    serial = project_stocks(x0, p, seeds=seeds, parallel=False, **kw)
    part = project_stocks(x0, p[100:130], seeds=seeds[100:130], **kw)
    np.testing.assert_array_equal(whole.flows, serial.flows)
    np.testing.assert_array_equal(whole.flows[100:130], part.flows)
    np.testing.assert_array_equal(whole.inflow[100:130], part.inflow)
    other = project_stocks(x0, p, seeds=draw_seeds(43, np.arange(d)), **kw)
    assert not np.array_equal(whole.flows, other.flows)


def test_core_input_checks():
    p = np.broadcast_to(np.eye(2), (1, 1, 2, 2))
    with pytest.raises(ValueError, match=">= 0"):
        project_stocks(np.array([-1, 2]), p, seeds=draw_seeds(0, [0]))
    with pytest.raises(ValueError, match="whole persons"):
        project_stocks(np.array([1.5, 2.0]), p, seeds=draw_seeds(0, [0]))
    with pytest.raises(ValueError, match="seeds"):
        project_stocks(np.array([1, 2]), p, seeds=draw_seeds(0, [0, 1]))


# ---------------------------------------------------------------------------
# layer 4: from a (fake) fit
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(request):
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import models_dir

    spec = load_spec(models_dir() / "migration5.toml")
    panel = simulate_panel(spec, 400, seed=3)
    return fake_fit(spec, panel, chains=2, draws=60, spread=0.15, seed=1)


@pytest.fixture(scope="module")
def fit_path(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    write_fit(tree, path)
    return path


@pytest.fixture(scope="module")
def spec(tree):
    from markov_migration.fitfile.format import fit_spec

    return fit_spec(tree)


def scenario(spec, text, name="sc.toml"):
    return parse_scenario(textwrap.dedent(text), spec, path=name)


def test_projection_times_are_calendar_aligned():
    assert projection_times(2024.5, 2035, 1).tolist() == [2024.5] + [
        float(y) for y in range(2025, 2036)
    ]
    assert projection_times(2024, 2026, 0.5).tolist() == [2024.0, 2024.5, 2025.0, 2025.5, 2026.0]
    assert projection_times(2024.25, 2024.9, 1).tolist() == [2024.25, 2024.9]
    with pytest.raises(InputError, match="--horizon 2020 is not after --start 2024.5"):
        projection_times(2024.5, 2020, 1)
    with pytest.raises(InputError, match="--step must be positive"):
        projection_times(2024.5, 2030, 0)


@pytest.mark.parametrize(
    ("start", "horizon", "step", "message"),
    [
        (2024.5, 1e9, 1.0, r"more than 10,000 steps \(about 1e\+09\)"),
        (1e300, 1e301, 1.0, "more than 10,000 steps"),
        (-1e308, 1e308, 1.0, "more than 10,000 steps"),
        (2024.5, 2030.0, 1e-300, "more than 10,000 steps"),
        (2024.0, 2024.0 + MAX_STEPS + 1, 1.0, "10,001 steps"),
        (2024.5, math.inf, 1.0, "--horizon must be a finite number, got inf"),
        (math.nan, 2030.0, 1.0, "--start must be a finite number, got nan"),
        (2024.5, 2030.0, math.inf, "--step must be a finite number, got inf"),
        (1e17, 1e17 + 64, 1.0, r"--step 1 is too small for times near 1e\+17"),
    ],
)
def test_projection_times_refuses_too_many_steps_before_building_them(
    start, horizon, step, message
):
    with deadline(5), pytest.raises(InputError, match=message):
        projection_times(start, horizon, step)


def test_projection_times_at_the_step_limit():
    with deadline(5):
        times = projection_times(2024.0, 2024.0 + MAX_STEPS, 1.0)
    assert times.size == MAX_STEPS + 1 and times[-1] == 2024.0 + MAX_STEPS
    assert np.all(np.diff(times) == 1.0)


def test_select_draws():
    assert select_draws(100, None).tolist() == list(range(100))
    assert select_draws(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert select_draws(3, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_project_fit_layout_and_bookkeeping(tree, spec):
    ds = project_fit(tree, INITIAL, start=2024.5, horizon=2030, draws=80, seed=2)
    assert "scenario" not in ds.dims and str(ds["scenario"].values) == "baseline"
    assert ds["stock"].dims == ("draw", "time", "state")
    assert ds["events"].dims == ("draw", "time", "from_state", "to_state")
    assert ds.sizes == {
        "draw": 80,
        "time": 7,
        "state": 5,
        "from_state": 5,
        "to_state": 5,
        "wave": 3,
    }
    assert list(ds["state"].values) == STATES
    total = sum(INITIAL.values())
    np.testing.assert_array_equal(ds["stock"].sum("state"), total)
    np.testing.assert_array_equal(ds["returnees"] + ds["diaspora"], total)
    np.testing.assert_array_equal(ds["returnees"], ds["stock"].sel(state="returned"))
    back = ds["events"].sel(from_state=[s for s in STATES if s != "returned"], to_state="returned")
    np.testing.assert_array_equal(ds["cumulative_returns"], back.sum("from_state").cumsum("time"))
    # persons are conserved: stocks move by the events and the arrivals exactly
    moves = ds["events"].sum("from_state").rename(to_state="state") - ds["events"].sum(
        "to_state"
    ).rename(from_state="state")
    change = ds["stock"].diff("time")
    np.testing.assert_array_equal(change, moves.isel(time=slice(1, None)))
    # ever returned: no more than the returns, at least the home stock of those abroad at start
    assert np.all(ds["ever_returned"] <= ds["cumulative_returns"])
    assert np.all(ds["returned_from_abroad"] <= ds["returnees"])
    assert np.all(ds["ever_returned"] >= ds["returned_from_abroad"])
    assert np.all(ds["ever_returned"].diff("time") >= 0)
    np.testing.assert_array_equal(
        ds["net_returnees_change"].isel(time=slice(1, None)), ds["returnees"].diff("time")
    )
    assert int(ds["cumulative_returns"].isel(time=-1).min()) > 0
    assert (
        ds.attrs["seed"] == 2 and ds.attrs["draws"] == 80 and ds.attrs["posterior_samples"] == 120
    )
    assert json.loads(ds.attrs["initial_stocks"]) == INITIAL
    assert ds["stock"].attrs["units"] == "persons"


def test_mean_matches_independent_expectation_with_scenario_split_mid_step(tree, spec):
    """End to end, against Van Loan: multipliers from 2026.3 split the step 2026-2027."""
    sc = scenario(
        spec,
        """
        name = "mid"
        from = 2026.3
        [multipliers]
        "abroad->returned" = 3.0
        "returned->reemigrated" = 0.25
        [inflow]
        add = 4000
        """,
    )
    inflow = Inflow.constant(1500, state="transit")
    ds = project_fit(
        tree, INITIAL, start=2025, horizon=2028, scenarios=[sc], inflow=inflow, draws=400, seed=4
    )
    q = tree["posterior"]["Q"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    q = q[select_draws(q.shape[0], 400)]
    k = len(STATES)
    m = np.ones((k, k))
    m[0, 3], m[3, 4] = 3.0, 0.25
    qm = generator_with_multipliers(q, m)
    x0 = np.array([INITIAL[s] for s in STATES], float)
    j = STATES.index("transit")
    plans = {
        # steps 2025-26, 2026-27 (split at 2026.3), 2027-28: (pieces, arrivals through the step)
        "baseline": [([(q, 1.0)], 1500), ([(q, 1.0)], 1500), ([(q, 1.0)], 1500)],
        "mid": [
            ([(q, 1.0)], 1500),
            ([(q, 0.3), (qm, 0.7)], 1500 + 4000 * 0.7),
            ([(qm, 1.0)], 5500),
        ],
    }
    for name, plan in plans.items():
        exp = np.empty((q.shape[0], 4, k))
        x = np.broadcast_to(x0, (q.shape[0], k)).copy()
        exp[:, 0] = x
        for step, (pieces, add) in enumerate(plan):
            arrivals = np.zeros(k)
            arrivals[j] = add
            # Van Loan: arrivals at uniform times through the step (core.event_moments)
            x, _ = expected_step(x, pieces, arrivals)
            exp[:, step + 1] = x
        got = ds["stock"].sel(scenario=name).transpose("draw", "time", "state").values
        ok, worst = within_mc_error(got[:, 1:], exp[:, 1:])
        assert ok, f"{name}: mean differs from the scipy expectation by {worst:.1f} standard errors"


def test_scenario_of_ones_equals_baseline_exactly(tree, spec):
    ones = scenario(
        spec,
        """
        name = "ones"
        from = 2026.5
        until = 2029.25
        [multipliers]
        "*->returned" = 1.0
        "returned->reemigrated" = 1
        [inflow]
        multiplier = 1.0
        """,
    )
    kw = {
        "start": 2024.5,
        "horizon": 2031,
        "draws": 50,
        "seed": 7,
        "inflow": Inflow.constant(900, cv=0.2),
    }
    both = project_fit(tree, INITIAL, scenarios=[ones, "ceasefire-2026"], **kw)
    assert list(both["scenario"].values) == ["baseline", "ones", "ceasefire-2026"]
    for var in ("stock", "events", "inflow", "cumulative_returns", "ever_returned"):
        np.testing.assert_array_equal(
            both[var].sel(scenario="ones"), both[var].sel(scenario="baseline")
        )
    alone = project_fit(tree, INITIAL, **kw)
    np.testing.assert_array_equal(alone["stock"], both["stock"].sel(scenario="baseline"))
    ceasefire = both["returnees"].sel(scenario="ceasefire-2026").isel(time=-1)
    assert float(ceasefire.mean()) > 1.5 * float(
        both["returnees"].sel(scenario="baseline").isel(time=-1).mean()
    )


def test_inflows_add_exactly_from_a_file(tree, tmp_path):
    f = tmp_path / "inflow.csv"
    f.write_text("time,inflow\n2025,10000\n2026.5,3000\n2028,0\n")
    inflow = Inflow.read_csv(f, state="transit")
    ds = project_fit(tree, INITIAL, start=2024.5, horizon=2029, inflow=inflow, draws=30, seed=1)
    # steps: 2024.5-25: 0; 2025-26: 10000; 2026-27: 5000 + 1500; 2027-28: 3000; 2028-29: 0
    per_step = [0, 0, 10_000, 6_500, 3_000, 0]
    np.testing.assert_array_equal(ds["inflow"], np.broadcast_to(per_step, (30, 6)))
    totals = np.broadcast_to(sum(INITIAL.values()) + np.cumsum(per_step), (30, 6))
    np.testing.assert_array_equal(ds["stock"].sum("state"), totals)


def test_quantiles_ordered_and_csv_layout(tree, tmp_path):
    ds = project_fit(
        tree, INITIAL, start=2024.5, horizon=2028, scenarios=["ceasefire-2026"], draws=40, seed=3
    )
    table = quantile_table(ds)
    assert tuple(table.columns) == QUANTILE_COLUMNS
    cols = ["lower95", "lower80", "lower50", "median", "upper50", "upper80", "upper95"]
    v = table[cols].to_numpy()
    assert np.all(np.diff(v, axis=1) >= 0)
    assert np.all((table["mean"] >= table["lower95"]) & (table["mean"] <= table["upper95"]))
    flow_series = {"returns", "reemigrations", "moves_abroad"}
    stock_series = {"ever_returned", "returned_from_abroad", "net_returnees_change"}
    n_series = 4 + 3 + 3 + 5
    assert len(table) == 2 * ds.sizes["time"] * n_series
    assert set(table["series"]) == {
        "returnees",
        "diaspora",
        "cumulative_returns",
        "inflow",
    } | flow_series | stock_series | {f"stock:{s}" for s in STATES}
    for name in flow_series:
        rows = table[(table.scenario == "baseline") & (table.series == name)]
        assert rows["time"].tolist() == ds["time"].values.tolist()
        manual = ds[name].sel(scenario="baseline").transpose("time", "draw").values
        np.testing.assert_allclose(rows["median"], np.median(manual, axis=-1))
        np.testing.assert_allclose(rows["mean"], manual.mean(axis=-1))
        assert rows["upper95"].iloc[0] == 0  # no moves before the start
    r = table[
        (table.scenario == "ceasefire-2026")
        & (table.series == "returnees")
        & (table.time == 2028.0)
    ]
    manual = ds["returnees"].sel(scenario="ceasefire-2026", time=2028.0).values
    assert r["median"].item() == pytest.approx(np.median(manual))
    assert r["upper80"].item() == pytest.approx(np.quantile(manual, 0.9))
    path = write_quantile_csv(ds, tmp_path / "q.csv")
    back = pd.read_csv(path)
    assert tuple(back.columns) == QUANTILE_COLUMNS and len(back) == len(table)
    res = interval(ds, "returnees", 2028, "ceasefire-2026")
    assert res["lower"] <= res["median"] <= res["upper"] and res["time"] == 2028.0
    lines = summary_lines(ds, [2027.0])
    assert lines[0].startswith("baseline: returnees at 2027: median ")


def test_named_flow_series_balance_the_home_stock_exactly(tree, spec):
    ds = project_fit(
        tree,
        INITIAL,
        start=2024.5,
        horizon=2031,
        scenarios=["ceasefire-2026"],
        inflow=Inflow.constant(1200, state="transit"),
        draws=60,
        seed=3,
    )
    home, away = ["returned"], [s for s in STATES if s != "returned"]
    for name in ("returns", "reemigrations", "moves_abroad"):
        da = ds[name]
        assert da.dims == ("scenario", "draw", "time") and da.dtype == np.int64
        assert da.attrs["units"] == "persons per step" and da.attrs["description"]
        assert int(abs(da.isel(time=0)).max()) == 0
        assert int(da.isel(time=slice(1, None)).min()) >= 0
    later = {"time": slice(1, None)}
    balance = (ds["returns"] - ds["reemigrations"]).isel(later)
    np.testing.assert_array_equal(balance.values, ds["returnees"].diff("time").values)
    np.testing.assert_array_equal(balance.values, ds["net_returnees_change"].isel(later).values)
    # the same series read off the event matrix independently
    events = ds["events"]
    back = events.sel(from_state=away, to_state=home).sum(("from_state", "to_state"))
    out = events.sel(from_state=home, to_state=away).sum(("from_state", "to_state"))
    among = events.sel(from_state=away, to_state=away).sum(("from_state", "to_state"))
    assert int(sum(events.sel(from_state=s, to_state=s) for s in STATES).max()) == 0
    np.testing.assert_array_equal(ds["returns"], back)
    np.testing.assert_array_equal(ds["reemigrations"], out)
    np.testing.assert_array_equal(ds["moves_abroad"], among)
    # events count moves undone within a step: more returns than the step-end net change
    assert int(ds["returns"].sum()) > int(ds["net_returnees_change"].clip(min=0).sum())
    np.testing.assert_array_equal(ds["cumulative_returns"], ds["returns"].cumsum("time"))
    for name in ("returns", "reemigrations", "moves_abroad"):
        assert int(ds[name].sum()) > 0, name
    # one scenario: no scenario dim
    alone = project_fit(tree, INITIAL, start=2024.5, horizon=2027, draws=10, seed=3)
    assert alone["moves_abroad"].dims == ("draw", "time")


def test_inflow_into_a_home_state_joins_the_home_stock_but_is_not_a_return(tree):
    ds = project_fit(
        tree,
        INITIAL,
        start=2024.5,
        horizon=2030,
        inflow=Inflow.constant(800, state="returned"),
        draws=40,
        seed=6,
    )
    later = {"time": slice(1, None)}
    balance = (ds["returns"] - ds["reemigrations"]).isel(later).values
    change = ds["returnees"].diff("time").values - ds["inflow"].isel(later).values
    np.testing.assert_array_equal(balance, change)
    assert int(ds["inflow"].sum()) == 40 * 800 * 5.5


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        ({"abroad": 10**22}, r"stock of 'abroad' is 1e\+22 persons; at most 1e\+14"),
        ({"abroad": 1e19}, r"stock of 'abroad' is 1e\+19 persons; at most 1e\+14"),
        ({"abroad": math.inf}, "stock of 'abroad' must be a finite whole number of persons"),
        ({"abroad": math.nan}, "stock of 'abroad' must be a finite whole number of persons"),
        (
            {"abroad": MAX_PERSONS, "swing": 1},
            "initial stocks: stocks add up to 100,000,000,000,001 persons",
        ),
        (
            xr.DataArray([1e22, 0, 0, 0, 0], dims="state", coords={"state": STATES}),
            r"initial stocks add up to 1e\+22 persons; at most 1e\+14",
        ),
        (
            xr.DataArray([[1e300, 0, 0, 0, 0]] * 5, dims=("draw", "state")),
            r"initial stocks add up to 1e\+300 persons",
        ),
    ],
)
def test_stocks_beyond_the_supported_bound_are_refused(tree, initial, message):
    with pytest.raises(InputError, match=message):
        project_fit(tree, initial, start=2024.5, horizon=2026, draws=5)


def test_inflows_beyond_the_supported_bound_are_refused(tree, tmp_path):
    with pytest.raises(InputError, match=r"--inflow must be at most 1e\+14 persons per year"):
        Inflow.constant(1e22)
    f = tmp_path / "inflow.csv"
    f.write_text("time,inflow\n2025,1000\n2026,1e22\n")
    with pytest.raises(InputError, match=r"inflow.csv, row 2, column 'inflow': inflow must be"):
        Inflow.read_csv(f)
    # each part within bounds, but not the run's total
    big = {"abroad": 9 * 10**13}
    kw = {"start": 2024.5, "horizon": 2030, "draws": 5}
    with pytest.raises(InputError, match=r"initial stocks plus the inflows of scenario 'baseline'"):
        project_fit(tree, big, inflow=Inflow.constant(5e12), **kw)
    sc = parse_scenario('name = "surge"\nfrom = 2026.0\n[inflow]\nadd = 5e13\n', fit_spec(tree))
    with pytest.raises(
        InputError, match="inflows of scenario 'surge' come to 210,000,000,000,000 persons"
    ):
        project_fit(tree, {"abroad": 10**13}, scenarios=[sc], **kw)
    ok = project_fit(tree, {"abroad": 10**13}, inflow=Inflow.constant(10**12), **kw)
    assert int(ok["stock"].isel(time=-1).sum("state").min()) == 10**13 + 55 * 10**11


def test_netcdf_round_trip_with_provenance(tree, fit_path, tmp_path):
    ds = project_fit(
        fit_path, INITIAL, start=2024.5, horizon=2027, draws=20, seed=5, command="test"
    )
    out = write_projection(ds, tmp_path / "p.nc")
    back = read_projection(out)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.attrs["fit_sha256"] == hashlib.sha256(fit_path.read_bytes()).hexdigest()
    assert back.attrs["fit_path"] == str(fit_path)
    assert back.attrs["command_line"] == "test"
    with pytest.raises(InputError, match="output exists"):
        write_projection(ds, out)
    write_projection(ds, out, force=True)


def test_initial_split_from_fit_matches_independent_computation(tree, spec):
    got = initial_stocks_from_fit(tree, 650_000, at=2024.5)
    assert sum(got.values()) == 650_000 and got["returned"] == 0
    assert list(got) == STATES
    # independent: every respondent's last state carried forward with scipy expm, all draws
    panel = tree["panel_data"].to_dataset()
    frame = pd.DataFrame({k: panel[k].values for k in ("respondent", "time", "state", "weight")})
    last = frame[frame.time <= 2024.5].sort_values("time").groupby("respondent").tail(1)
    q = tree["posterior"]["Q"].stack(sample=("chain", "draw")).transpose("sample", ...).values[::6]
    dist = np.zeros(5)
    for qd in q:
        for (state, gap), w in (
            last.groupby(["state", np.round(2024.5 - last.time, 2)])["weight"].sum().items()
        ):
            dist += w * scipy.linalg.expm(qd * gap)[int(state)]
    dist /= dist.sum()
    away = np.array([s != "returned" for s in STATES])
    share = dist[away] / dist[away].sum()
    got_share = np.array([got[s] for s in STATES])[away] / 650_000
    # q[::6] is a subset of the draws the function averages over: posterior-mean shares agree to ~1%
    np.testing.assert_allclose(got_share, share, rtol=0.03)
    some = initial_stocks_from_fit(tree, 1001, at=2024.0, states=["abroad", "transit"])
    assert some["abroad"] + some["transit"] == 1001 and some["swing"] == 0
    with pytest.raises(InputError, match="'home' is not a state"):
        initial_stocks_from_fit(tree, 10, at=2024.5, states=["home"])
    with pytest.raises(InputError, match="before the first panel observation"):
        initial_stocks_from_fit(tree, 10, at=2000.0)


def test_observed_prevalence_finds_the_three_waves(tree):
    obs = observed_prevalence(tree)
    assert obs.sizes["wave"] == 3
    np.testing.assert_allclose(obs["wave_time"], [2022.70, 2023.55, 2024.55], atol=0.05)
    np.testing.assert_allclose(obs["observed_share"].sum("state"), 1.0)


def test_observed_prevalence_leaves_out_censored_codes(tree):
    """A latent fit's censored codes (after the states: a set of states) are not a state.

    Recoding a third of the records to code K (a censored code) gives the shares of the
    remaining records, as a fit of the panel without them would.
    """
    panel = tree["panel_data"].to_dataset()
    k = len(STATES)
    hide = np.arange(panel.sizes["observation"]) % 3 == 0
    censored = panel.assign(state=("observation", np.where(hide, k, panel["state"].values)))
    other, kept = tree.copy(), tree.copy()
    other["panel_data"] = xr.DataTree(censored)
    kept["panel_data"] = xr.DataTree(panel.isel(observation=np.flatnonzero(~hide)))
    got, want = observed_prevalence(other), observed_prevalence(kept)
    np.testing.assert_array_equal(got["observed_share"].values, want["observed_share"].values)
    assert got["observed_respondents"].sum() == (~hide).sum()


def test_observed_prevalence_without_clear_waves_uses_equal_count_bins(tree):
    # the one wave rule of inputs.waves (as in the checks): no gap over 10% of the span, so
    # QUANTILE_WAVES bins with equal numbers of observations
    panel = tree["panel_data"].to_dataset()
    rng = np.random.default_rng(0)
    times = rng.uniform(2022.0, 2025.0, panel.sizes["observation"])
    spread = panel.assign(time=("observation", times))
    other = tree.copy()
    other["panel_data"] = xr.DataTree(spread)
    obs = observed_prevalence(other)
    assert obs.sizes["wave"] == QUANTILE_WAVES
    # equal counts: n / QUANTILE_WAVES each, up to one observation where an interpolated
    # quantile edge falls between two ranks (n = 969 here is not a multiple of 6)
    counts = obs["observed_respondents"].values
    assert counts.sum() == times.size
    assert np.all(np.abs(counts - times.size / QUANTILE_WAVES) <= 1)
    assert np.all(np.diff(obs["wave_time"]) > 0)
    np.testing.assert_allclose(obs["observed_share"].sum("state"), 1.0)


def test_per_draw_initial_stocks_and_draw_reuse(tree):
    n = 150  # more than the 120 posterior samples: reused with fresh noise
    x0 = np.tile([1000, 0, 0, 0, 0], (n, 1))
    x0[:, 1] = np.arange(n)
    init = xr.DataArray(x0, dims=("draw", "state"), coords={"state": STATES})
    ds = project_fit(tree, init, start=2025, horizon=2027, draws=n, seed=1)
    np.testing.assert_array_equal(ds["stock"].isel(time=0), x0)
    np.testing.assert_array_equal(ds["stock"].isel(time=-1).sum("state"), 1000 + np.arange(n))
    assert ds["chain"].values[120] == ds["chain"].values[0]
    assert not np.array_equal(ds["events"].isel(draw=120), ds["events"].isel(draw=0))


@pytest.mark.parametrize(
    ("initial", "kwargs", "message"),
    [
        ({"abroad": -5}, {}, "stock of 'abroad' must be >= 0"),
        ({"mars": 5}, {}, "'mars' is not a state of model migration5"),
        ({"abroad": 0}, {}, "initial stocks are all zero"),
        ({"abroad": 2.5}, {}, "whole number"),
        (INITIAL, {"horizon": 2020}, "is not after --start"),
        (INITIAL, {"inflow": Inflow.constant(10, state="moon")}, "--inflow-state 'moon'"),
        (INITIAL, {"draws": 0}, "--draws must be at least 1"),
        (INITIAL, {"scenarios": ["/nonexistent/x.toml"]}, "scenario file not found"),
    ],
)
def test_bad_inputs_raise_input_error(tree, initial, kwargs, message):
    args = {"start": 2024.5, "horizon": 2030, "draws": 10} | kwargs
    with pytest.raises(InputError, match=message):
        project_fit(tree, initial, **args)


def test_not_a_fit_file(tmp_path):
    bad = tmp_path / "x.nc"
    bad.write_text("not netcdf")
    with pytest.raises(InputError, match="not a NetCDF fit file"):
        project_fit(bad, INITIAL, start=2024.5, horizon=2030)


def test_chunking_does_not_change_results(tree):
    kw = {"start": 2024.5, "horizon": 2029, "draws": 90, "seed": 8, "scenarios": ["ceasefire-2026"]}
    a = project_fit(tree, INITIAL, chunk_draws=1000, **kw)
    b = project_fit(tree, INITIAL, chunk_draws=7, **kw)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_dask_path_equals_in_memory_path(tree):
    distributed = pytest.importorskip("distributed")
    kw = {
        "start": 2024.5,
        "horizon": 2029,
        "draws": 90,
        "seed": 8,
        "scenarios": ["ceasefire-2026"],
        "inflow": Inflow.constant(2000, cv=0.25),
    }
    memory = project_fit(tree, INITIAL, **kw)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as c:
        with distributed.Client(c) as client:
            seen = []
            lazy = project_fit(
                tree,
                INITIAL,
                dask=client,
                chunk_draws=13,
                progress=lambda d, t: seen.append(d),
                **kw,
            )
    xr.testing.assert_identical(lazy.drop_attrs(), memory.drop_attrs())
    assert lazy.attrs["engine"] == "dask" and seen[-1] == 180


def test_projection_does_not_import_pymc(fit_path, tmp_path):
    code = f"""
import sys
from markov_migration.projection.files import write_projection, write_quantile_csv
from markov_migration.projection.run import project_fit
from markov_migration.plots.fan import write_fan_charts
ds = project_fit({str(fit_path)!r}, {{"abroad": 1000, "transit": 500}}, start=2024.5, horizon=2027,
                 draws=10, scenarios=["ceasefire-2026"])
write_projection(ds, {str(tmp_path / "p.nc")!r})
write_quantile_csv(ds, {str(tmp_path / "p.csv")!r})
write_fan_charts(ds, {str(tmp_path / "plots")!r})
from markov_migration.cli.app import app
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pymc", "pytensor", "nutpie", "arviz"))
print("IMPORTED", bad)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "IMPORTED []" in run.stdout, run.stdout


def test_fan_charts_are_written(tree, tmp_path):
    from markov_migration.plots.fan import write_fan_charts

    ds = project_fit(
        tree, INITIAL, start=2024.5, horizon=2030, scenarios=["ceasefire-2026"], draws=40, seed=1
    )
    paths = write_fan_charts(ds, tmp_path / "plots", states=["abroad"])
    assert [p.name for p in paths] == ["returnees.png", "diaspora.png", "stock-abroad.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with pytest.raises(InputError, match="output exists"):
        write_fan_charts(ds, tmp_path / "plots")
    flows = write_fan_charts(ds, tmp_path / "flows", series=("returns", "moves_abroad"))
    assert [p.name for p in flows] == ["returns.png", "moves_abroad.png"]


def test_write_outputs_for_the_demo(tree, tmp_path):
    stocks = initial_stocks_from_fit(tree, 650_000, at=2024.5)
    ds = project_fit(
        tree, stocks, start=2024.5, horizon=2035, scenarios=["ceasefire-2026"], draws=30, seed=1
    )
    paths = write_projection_outputs(ds, tmp_path / "demo")
    assert sorted(p.relative_to(tmp_path / "demo").as_posix() for p in paths) == [
        "charts/cumulative_returns.png",
        "charts/diaspora.png",
        "charts/ever_returned.png",
        "charts/returnees.png",
        "projection.csv",
        "projection.nc",
    ]
    before = {p: p.stat().st_mtime_ns for p in paths}
    with pytest.raises(InputError, match="output exists"):
        write_projection_outputs(ds, tmp_path / "demo")
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    assert write_projection_outputs(ds, tmp_path / "demo", force=True) == paths
