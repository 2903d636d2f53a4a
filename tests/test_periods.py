"""Periods: piecewise-constant intensities with cut points in calendar time.

References: a brute-force product of ``scipy.linalg.expm`` over the pieces of
every interval (as R msm's ``pci``), and recovery of a simulated period change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from markov_migration.core.likelihood import loglik
from markov_migration.errors import InputError, PanelError
from markov_migration.fitfile.format import read_fit, write_fit
from markov_migration.fitfile.generators import generator_draws
from markov_migration.inference.fit import FitSettings, sample
from markov_migration.inputs.aggregate import LEAD_TIME, START_PERIOD, aggregate, load_data
from markov_migration.inputs.design import model_design
from markov_migration.inputs.likelihood_arrays import generators_from_rates
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.period_exposure import period_labels
from markov_migration.inputs.simulate import simulate_paths_for_spec
from markov_migration.inputs.spec import parse_spec

#: Every move allowed, so that random states make a valid panel.
FULL = """
name = "per3"
states = ["a", "b", "c"]
periods = { cuts = [1.5, 2.25], transitions = ["a->b", "b->a", "c->a"] }
[transitions]
a = ["b", "c"]
b = ["a", "c"]
c = ["a"]
[data]
resolution = 0.001
"""


def random_panel(n: int, seed: int) -> pd.DataFrame:
    """Three observations per respondent at times on the 0.001 grid in [0, 4)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ticks = np.sort(rng.choice(4000, size=3, replace=False))
        for t in ticks:
            rows.append((i, round(t * 0.001, 3), rng.choice(["a", "b", "c"])))
    return pd.DataFrame(rows, columns=["id", "time", "state"])


def brute_force_loglik(spec, panel, q_by_period) -> float:
    """sum over pairs of log (prod over the pieces of expm(Q_p * length))[from, to]."""
    cuts = [-np.inf, *spec.periods, np.inf]
    total = 0.0
    for row in panel.pairs().itertuples(index=False):
        t0, t1 = row.t0, row.t1
        p = np.eye(spec.n_states)
        for k in range(len(cuts) - 1):
            lo, hi = max(t0, cuts[k]), min(t1, cuts[k + 1])
            if hi > lo:
                p = p @ expm(q_by_period[k] * (hi - lo))
        total += np.log(p[row[1], row[2]])
    return total


def test_period_keys_of_intervals():
    spec = parse_spec(FULL)
    df = pd.DataFrame(
        {
            "id": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
            "time": [0.5, 1.0, 1.0, 2.0, 1.5, 1.6, 0.25, 3.0, 1.4995, 1.7],
            "state": ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"],
        }
    )
    agg = aggregate(validate_panel(df, spec), spec)
    t = agg.table.sort_values("interval")
    keyed = {
        round(iv, 4): (int(p), round(lead, 4))
        for iv, p, lead in t[["interval", START_PERIOD, LEAD_TIME]].itertuples(index=False)
    }
    assert keyed[0.5] == (0, 0.5)  # within the first period
    assert keyed[1.0] == (0, 0.5)  # 1.0 -> 2.0 crosses 1.5 after 0.5
    assert keyed[0.1] == (1, 0.1)  # starts exactly on a cut: the new period
    assert keyed[2.75] == (0, 1.25)  # crosses both cuts
    # Starting 0.0005 before the cut (half the resolution) counts as starting on it.
    assert keyed[0.2] == (1, 0.2)


def test_exact_cut_points_against_brute_force_expm():
    """Intervals crossing one or both cut points: product of expm over the pieces."""
    spec = parse_spec(FULL)
    panel = validate_panel(random_panel(300, seed=1), spec)
    agg = aggregate(panel, spec)
    design = model_design(spec, agg)
    crossing = (agg.table[LEAD_TIME] < agg.table["interval"]).sum()
    assert crossing > 100
    assert design.likelihood.row_ptr[-1] > len(agg.table)  # some rows have several pieces
    labels = [e.label for e in design.effects]
    assert labels == [
        "period[[1.5, 2.25)]: a->b", "period[[1.5, 2.25)]: b->a", "period[[1.5, 2.25)]: c->a",
        "period[[2.25, inf)]: a->b", "period[[2.25, inf)]: b->a", "period[[2.25, inf)]: c->a",
    ]  # fmt: skip
    rng = np.random.default_rng(2)
    for _ in range(3):
        log_rate = rng.normal(np.log(0.4), 0.5, len(spec.transitions))
        log_hr = rng.normal(0, 0.7, len(design.effects))
        q = generators_from_rates(np.exp(design.log_rates(log_rate, log_hr)), spec)
        got = loglik(q, *design.likelihood.arrays())
        # Q of each period, built independently of the design.
        q_by_period = []
        for p in range(3):
            lq = log_rate.copy()
            for e, b in zip(design.effects, log_hr, strict=True):
                if e.level == period_labels(spec)[p]:
                    lq[spec.transitions.index(e.transition)] += b
            q_by_period.append(generators_from_rates(np.exp(lq), spec))
        assert got == pytest.approx(brute_force_loglik(spec, panel, q_by_period), rel=1e-10)


def test_counts_table_needs_the_start_time(write_panel):
    spec = parse_spec(FULL)
    path = write_panel("from,to,interval,count\na,b,1,3\n")
    with pytest.raises(PanelError, match="counts table needs a 'start' column"):
        load_data(path, spec)
    path = write_panel("from,to,interval,count,start\na,b,1,3,1.0\na,a,1,2,0.2\nb,a,0.5,1,2.5\n")
    _, agg = load_data(path, spec)
    rows = {(float(r.interval), int(r[4]), float(r[5])) for r in agg.table.itertuples(index=False)}
    # (start 1.0: crosses 1.5 after 0.5), (start 0.2: inside), (start 2.5: last period)
    assert rows == {(1.0, 0, 0.5), (1.0, 0, 1.0), (0.5, 2, 0.5)}


def test_a_period_without_data_is_refused():
    spec = parse_spec(FULL.replace("[1.5, 2.25]", "[1.5, 2.25, 10.0]"))
    agg = aggregate(validate_panel(random_panel(50, seed=3), spec), spec)
    with pytest.raises(InputError, match=r"period \[10, inf\) has no observed time"):
        model_design(spec, agg)


# -- recovery of a period change ----------------------------------------------------------------

MODEL = """
name = "per3"
states = ["a", "b", "c"]
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
def period_fit():
    spec = parse_spec(MODEL)
    panel = validate_panel(simulate_paths_for_spec(spec, 2500, seed=8).panel, spec)
    agg = aggregate(panel, spec)
    tree = sample(spec, agg, FitSettings(chains=2, draws=500, tune=500, seed=2), panel=panel)
    return spec, agg, tree


def test_recovers_a_period_change(period_fit, tmp_path):
    spec, agg, tree = period_fit
    # The wave at 1 +- 0.3 and 2 +- 0.3 put the cut at 1.5 inside many intervals.
    assert (agg.table[LEAD_TIME] < agg.table["interval"]).sum() > 20
    post = tree["posterior"]
    assert post["Q"].dims == ("chain", "draw", "period", "from_state", "to_state")
    assert list(post["period"].values) == ["[-inf, 1.5)", "[1.5, inf)"]
    hr = post["hazard_ratio"]
    assert list(hr["covariate"].values) == ["period", "period"]
    assert list(hr["level"].values) == ["[1.5, inf)", "[1.5, inf)"]
    draws = hr.values.reshape(-1, 2)
    lo, hi = np.quantile(draws, [0.005, 0.995], axis=0)
    truth = np.array([2.5, 0.5])
    assert np.all((lo < truth) & (truth < hi)), (lo, hi)
    assert lo[0] > 1.5 and hi[1] < 0.8  # the change is found, not just covered
    # Q of the second period = baseline x period hazard ratio on the period transitions only.
    q2 = post["Q"].sel(period="[1.5, inf)").values
    rate = post["rate"].values
    np.testing.assert_allclose(q2[..., 0, 1], rate[..., 0] * hr.values[..., 0], rtol=1e-10)
    np.testing.assert_allclose(q2[..., 0, 2], rate[..., 1], rtol=1e-10)
    const = tree["constant_data"]
    assert list(const["period_start"].values) == [-np.inf, 1.5]
    back = read_fit(write_fit(tree, tmp_path / "fit.nc"))
    np.testing.assert_allclose(generator_draws(back, period=1).values, q2, rtol=1e-10)
    np.testing.assert_allclose(generator_draws(back, period="[1.5, inf)").values, q2, rtol=1e-10)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0


@pytest.mark.slow
@pytest.mark.validation
def test_coverage_of_period_hazard_ratios(period_fit):
    """Coverage of the period hazard ratios' 90% intervals over 20 simulated panels.

    40 intervals, expected about 36 covered; below 30 (75%) fails.
    """
    spec = parse_spec(MODEL)
    truth = np.log([2.5, 0.5])
    covered = []
    for rep in range(20):
        panel = validate_panel(simulate_paths_for_spec(spec, 1000, seed=300 + rep).panel, spec)
        tree = sample(
            spec, aggregate(panel, spec), FitSettings(seed=rep, chains=2, draws=300, tune=300)
        )
        lhr = tree["posterior"]["log_hazard_ratio"].values.reshape(-1, 2)
        lo, hi = np.quantile(lhr, [0.05, 0.95], axis=0)
        covered.append((lo < truth) & (truth < hi))
    covered = np.array(covered)
    print(
        f"90% interval coverage of the period hazard ratios: {covered.mean():.3f} "
        f"({covered.sum()} of {covered.size})"
    )
    assert covered.sum() >= 30


def test_covariates_groups_and_periods_together():
    """All three at once: grid dims, and the likelihood vs a pair-by-pair expm product."""
    spec = parse_spec(
        FULL
        + """
[covariates.sex]
kind = "categorical"
transitions = ["a->c", "b->c"]
[covariates.age]
kind = "numeric"
transitions = ["c->a"]
[groups]
column = "host"
transitions = ["a->b"]
"""
    )
    rng = np.random.default_rng(4)
    df = random_panel(200, seed=4)
    people = df["id"].unique()
    attrs = pd.DataFrame({
        "id": people,
        "sex": rng.choice(["f", "m"], people.size),
        "age": rng.integers(20, 60, people.size),
        "host": rng.choice(["GE", "TR", "AM"], people.size),
    })  # fmt: skip
    panel = validate_panel(df.merge(attrs, on="id"), spec)
    agg = aggregate(panel, spec)
    design = model_design(spec, agg)
    assert design.grid_dims == ("pattern", "group", "period")
    assert design.grid_x.shape[0] == 2 * 3 * 3
    log_rate = rng.normal(np.log(0.4), 0.4, len(spec.transitions))
    log_hr = rng.normal(0, 0.5, len(design.effects)) * np.where(
        [e.covariate == "age" for e in design.effects], 0.05, 1.0
    )
    effect = rng.normal(0, 0.5, (3, 1))
    q = generators_from_rates(np.exp(design.log_rates(log_rate, log_hr, effect)), spec)
    got = loglik(q, *design.likelihood.arrays())
    labels = period_labels(spec)
    cuts = [-np.inf, *spec.periods, np.inf]
    expected = 0.0
    for row in panel.pairs().itertuples(index=False):
        p = np.eye(3)
        for k in range(3):
            lo, hi = max(row.t0, cuts[k]), min(row.t1, cuts[k + 1])
            if hi <= lo:
                continue
            lq = log_rate.copy()
            lq[0] += effect[design.group_levels.index(row.host), 0]
            for e, b in zip(design.effects, log_hr, strict=True):
                j = spec.transitions.index(e.transition)
                if e.covariate == "period":
                    lq[j] += b * (e.level == labels[k])
                elif e.covariate == "sex":
                    lq[j] += b * (row.sex == e.level)
                else:
                    lq[j] += b * (row.age - design.centers["age"])
            p = p @ expm(generators_from_rates(np.exp(lq), spec) * (hi - lo))
        expected += np.log(p[row[1], row[2]])
    assert got == pytest.approx(expected, rel=1e-10)
    # It samples, and the fit file has every piece (a short run: structure, not inference).
    tree = sample(spec, agg, FitSettings(chains=1, draws=30, tune=60, seed=1), panel=panel)
    post = tree["posterior"]
    assert post["Q"].dims == (
        "chain", "draw", "pattern", "group", "period", "from_state", "to_state"
    )  # fmt: skip
    assert post["Q"].shape[2:5] == (2, 3, 3)
    assert set(post["hazard_ratio"]["covariate"].values) == {"sex", "age", "period"}
    ll = tree["log_likelihood"]["transitions"]
    assert ll.sizes["obs"] == len(agg.table) and np.all(np.isfinite(ll.values))
    q_last = generator_draws(tree, {"sex": "m", "age": 50}, group="TR", period=-1)
    assert q_last.dims == ("chain", "draw", "from_state", "to_state")


def test_projection_generators_by_period(period_fit):
    from markov_migration.errors import InputError
    from markov_migration.projection.fitted import period_generators, posterior_generators

    spec, _, tree = period_fit

    def stacked(q):
        return q.stack(sample=("chain", "draw")).transpose("sample", ...).values

    late = posterior_generators(tree, spec, at=3.0)
    np.testing.assert_array_equal(late.values, stacked(generator_draws(tree, period=1)))
    early = posterior_generators(tree, spec, at=1.0)
    np.testing.assert_array_equal(early.values, stacked(generator_draws(tree, period=0)))
    chosen = posterior_generators(tree, spec, at=3.0, period="0")
    np.testing.assert_array_equal(chosen.values, early.values)
    with pytest.raises(InputError, match="out of range"):
        posterior_generators(tree, spec, at=3.0, period=5)
    with pytest.raises(InputError, match="the fit has no groups"):
        posterior_generators(tree, spec, at=3.0, group="g1")
    # a projection switches period at the cuts: every period's generator, and the cuts
    both, cuts = period_generators(tree, spec, at=1.0)
    assert cuts == [1.5] and both.dims == ("sample", "period", "from_state", "to_state")
    np.testing.assert_array_equal(both.values[:, 0], early.values)
    np.testing.assert_array_equal(both.values[:, 1], late.values)
    one, none = period_generators(tree, spec, at=1.0, period=1)
    assert none == [] and one.sizes["period"] == 1
    np.testing.assert_array_equal(one.values[:, 0], late.values)


def test_predictive_check_of_transitions_with_periods(period_fit):
    from markov_migration.results.ppc import ppc_transitions

    _, agg, tree = period_fit
    result = ppc_transitions(tree, n_draws=200, seed=3)
    assert result.table["observed"].sum() == pytest.approx(np.round(agg.table["count"]).sum())
    assert 0.01 <= result.ppp <= 0.99, result.ppp
