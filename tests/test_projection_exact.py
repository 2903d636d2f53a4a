"""The projection's flows are exact transition events: references independent of the kernel.

- Expectations: Van Loan's block exponential (:mod:`markov_migration.core.event_moments`),
  per posterior draw, against the mean over projection draws.
- Step invariance: yearly, quarterly and monthly output give the same distribution of
  cumulative returns, ever returned and stocks (with inflows arriving through the steps).
- Periods: a two-period fit projected across its cut against ``x0 expm(Q1 (c - t0))
  expm(Q2 (t - c))`` (scipy), per draw.

Tolerances: means within |z| < 4.5 (standard errors from the draws), variances within 15%
(with 3,000 draws the standard error of a variance ratio is about 4%).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from markov_migration.core.draws import select_draws
from markov_migration.core.event_moments import expected_step
from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel, simulate_paths_for_spec
from markov_migration.inputs.spec import load_spec, parse_spec
from markov_migration.io import models_dir
from markov_migration.projection.initial import initial_stocks_from_fit
from markov_migration.projection.plan import Inflow
from markov_migration.projection.run import project_fit
from markov_migration.testing import fake_design_fit, fake_fit

Z_MAX = 4.5
VAR_TOL = 0.15
INITIAL = {"abroad": 1200, "transit": 500, "swing": 300}


@pytest.fixture(scope="module")
def tree():
    spec = load_spec(models_dir() / "migration5.toml")
    return fake_fit(spec, simulate_panel(spec, 300, seed=5), chains=2, draws=100, seed=4)


def posterior_q(tree, n):
    q = tree["posterior"]["Q"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    return q[select_draws(q.shape[0], n)]


def test_mean_cumulative_returns_equal_the_van_loan_expectation_per_draw(tree):
    n, states = 2000, ["abroad", "transit", "swing", "returned", "reemigrated"]
    inflow = Inflow.constant(400.0, state="transit")
    ds = project_fit(tree, INITIAL, start=2024.5, horizon=2030, inflow=inflow, draws=n, seed=3)
    q = posterior_q(tree, n)
    k, home = len(states), states.index("returned")
    away = [i for i in range(k) if i != home]
    x = np.broadcast_to(np.array([INITIAL.get(s, 0) for s in states], float), (n, k))
    expected = np.zeros((n, ds.sizes["time"]))
    times = ds["time"].values
    for s, (a, b) in enumerate(zip(times[:-1], times[1:], strict=True)):
        arrivals = np.zeros(k)
        arrivals[states.index("transit")] = 400.0 * (b - a)
        x, events = expected_step(x, [(q, b - a)], arrivals)
        expected[:, s + 1] = expected[:, s] + events[:, away, home].sum(axis=-1)
    diff = ds["cumulative_returns"].values - expected
    z = diff.mean(axis=0)[1:] / (diff.std(axis=0, ddof=1)[1:] / np.sqrt(n))
    assert np.all(np.abs(z) < Z_MAX), z
    # the old step-end count is far below the events when returnees re-emigrate within a year
    assert float(ds["net_returnees_change"].sum("time").mean()) < 0.8 * expected[:, -1].mean()


def test_cumulative_returns_ever_returned_and_stocks_do_not_depend_on_the_step(tree):
    n = 3000
    inflow = Inflow.constant(300.0, state="transit")
    runs = {
        step: project_fit(
            tree, INITIAL, start=2024.5, horizon=2030, step=step, inflow=inflow, draws=n, seed=s
        ).sel(time=2030.0)
        for s, step in enumerate((1.0, 0.25, 1 / 12))
    }
    names = ["cumulative_returns", "ever_returned", "returned_from_abroad", "returnees"]
    for name in names + ["stock:abroad", "stock:reemigrated"]:
        if name.startswith("stock:"):
            values = {h: r["stock"].sel(state=name[6:]).values for h, r in runs.items()}
        else:
            values = {h: r[name].values for h, r in runs.items()}
        yearly = values[1.0].astype(float)
        for h, v in values.items():
            v = v.astype(float)
            se = np.sqrt(yearly.var(ddof=1) / n + v.var(ddof=1) / n)
            z = (v.mean() - yearly.mean()) / se
            assert abs(z) < Z_MAX, (name, h, z)
            assert v.var() == pytest.approx(yearly.var(), rel=VAR_TOL), (name, h)
    # the step-end net change is what does depend on the step (and is named so)
    assert "net_returnees_change" in runs[1.0]


PERIODS = """
name = "per3"
states = ["a", "b", "c"]
home = ["b"]
periods = { cuts = [1.5], transitions = ["a->b", "b->a"] }
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.3
initial = { a = 0.6, b = 0.4 }
period_effects = { "a->b" = [1.0, 2.5], "b->a" = [1.0, 0.5] }
"""


@pytest.fixture(scope="module")
def period_tree():
    spec = parse_spec(PERIODS)
    panel = simulate_paths_for_spec(spec, 400, seed=8).panel
    return fake_design_fit(spec, panel, chains=2, draws=100, effect_sd=0.6, seed=2)


def test_two_periods_switch_at_the_cut_inside_the_window(period_tree):
    n, x0, cut = 1500, np.array([800.0, 200.0, 0.0]), 1.5
    ds = project_fit(period_tree, {"a": 800, "b": 200}, start=0.5, horizon=3.2, draws=n, seed=1)
    q = period_tree["posterior"]["Q"].stack(sample=("chain", "draw"))
    q = q.transpose("sample", "period", "from_state", "to_state").values
    q = q[select_draws(q.shape[0], n)]
    assert not np.allclose(q[:, 0], q[:, 1])  # the periods differ
    for t in (1.0, 2.0, 3.0, 3.2):
        pieces = [(q[:, 0], min(t, cut) - 0.5)] + ([(q[:, 1], t - cut)] if t > cut else [])
        expected = np.broadcast_to(x0, (n, 3))
        for qq, h in pieces:
            expected = np.einsum(
                "dr,drs->ds", expected, np.stack([scipy.linalg.expm(m * h) for m in qq])
            )
        diff = ds["stock"].sel(time=t).values - expected
        z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(n) + 1e-12)
        assert np.all(np.abs(z[:2]) < Z_MAX), (t, z)
    note = ds.attrs["periods"]
    assert "1.5" in note and "holds to the horizon" in note
    # the period at the start alone is still available (and differs after the cut)
    only = project_fit(
        period_tree, {"a": 800, "b": 200}, start=0.5, horizon=3.2, draws=n, seed=1, period=0
    )
    assert (
        abs(float(only["returnees"].sel(time=3.2).mean() - ds["returnees"].sel(time=3.2).mean()))
        > 5
    )


def test_initial_split_carries_respondents_through_the_periods(period_tree):
    stocks = initial_stocks_from_fit(period_tree, 10_000, at=3.2, states=["a", "b", "c"])
    assert sum(stocks.values()) == 10_000 and min(stocks.values()) > 0
    first = initial_stocks_from_fit(period_tree, 10_000, at=3.2, states=["a", "b", "c"], period=0)
    assert stocks != first  # the late respondents are carried with the later period's rates


def test_exits_leave_the_population_at_their_rates(tree):
    n, states = 1500, ["abroad", "transit", "swing", "returned", "reemigrated"]
    rates = {"abroad": 0.05, "returned": 0.2}
    ds = project_fit(tree, INITIAL, start=2024.5, horizon=2028, draws=n, seed=2, exit_rates=rates)
    q = posterior_q(tree, n)
    k = len(states)
    wide = np.zeros((n, k + 1, k + 1))
    wide[:, :k, :k] = q
    wide[:, [0, 3], k] = [0.05, 0.2]
    idx = np.arange(k + 1)
    wide[:, idx, idx] = 0.0
    wide[:, idx, idx] = -wide.sum(axis=-1)
    x0 = np.array([INITIAL.get(s, 0) for s in states] + [0], float)
    expected = np.einsum("r,drs->ds", x0, np.stack([scipy.linalg.expm(m * 3.5) for m in wide]))
    got = np.concatenate(
        [ds["stock"].sel(time=2028.0).values, ds["exited"].sel(time=2028.0).values[:, None]], 1
    )
    diff = got - expected
    z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(n))
    assert np.all(np.abs(z) < Z_MAX), z
    # persons are conserved counting those who left; exits per step add up to exited
    total = ds["stock"].sum("state") + ds["exited"]
    assert np.all(total == sum(INITIAL.values()))
    np.testing.assert_array_equal(ds["exits"].cumsum("time"), ds["exited"])
    assert "0.2" in ds.attrs["exit_rates"]
    with pytest.raises(InputError, match="--exit-rate must be >= 0"):
        project_fit(tree, INITIAL, start=2024.5, horizon=2028, draws=5, exit_rates={"abroad": -1})


def test_a_model_without_home_states_projects_with_no_returns():
    text = PERIODS.replace('home = ["b"]\n', "").replace(
        'periods = { cuts = [1.5], transitions = ["a->b", "b->a"] }\n', ""
    )
    text = text.replace('period_effects = { "a->b" = [1.0, 2.5], "b->a" = [1.0, 0.5] }\n', "")
    spec = parse_spec(text)
    assert not spec.home
    fit = fake_fit(spec, simulate_paths_for_spec(spec, 200, seed=1).panel, chains=1, draws=50)
    ds = project_fit(fit, {"a": 500, "b": 300}, start=0.5, horizon=2.0, draws=50, seed=1)
    assert int(ds["ever_returned"].max()) == 0 and int(ds["cumulative_returns"].max()) == 0
    np.testing.assert_array_equal(ds["stock"].sum("state"), 800)
    assert int(ds["events"].sum()) > 0
