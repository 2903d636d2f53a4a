"""Survey weights: a weighted pseudo-log-likelihood.

A respondent with weight ``w`` counts as ``w`` identical respondents: every one of
their transitions enters the log-likelihood ``w`` times. So duplicating every
respondent of a panel is the same as giving everyone weight 2, exactly for the
log-likelihood (and the aggregated counts) and within Monte Carlo error for the
posterior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from markov_migration.core.likelihood import loglik
from markov_migration.inference.fit import FitSettings, sample
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.design import likelihood_data
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from tests.conftest import THREE_PLAIN

THREE = THREE_PLAIN
WEIGHTED = THREE + '[data]\nweight = "w"\n'
Q3 = np.array([[-0.45, 0.3, 0.15], [0.5, -0.7, 0.2], [0.0, 0.0, 0.0]])


def simulate(n: int, seed: int) -> pd.DataFrame:
    """Panel (id, time, state) drawn from expm(Q gap) at three jittered waves."""
    rng = np.random.default_rng(seed)
    names = np.array(["a", "b", "c"])
    s = rng.integers(0, 2, n)
    t = rng.uniform(-0.05, 0.05, n)
    rows = [pd.DataFrame({"id": np.arange(n), "time": t, "state": names[s]})]
    for wave in (1.0, 2.0):
        t_new = np.round((wave + rng.uniform(-0.05, 0.05, n)) * 365.25) / 365.25
        new = np.empty(n, dtype=int)
        for i in range(n):
            new[i] = rng.choice(3, p=expm(Q3 * (t_new[i] - t[i]))[s[i]].clip(0))
        s, t = new, t_new
        rows.append(pd.DataFrame({"id": np.arange(n), "time": t, "state": names[s]}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def panels():
    """The same respondents three ways: weights 1/2, duplicated, and the spec."""
    base = simulate(300, seed=4)
    doubled = base["id"] % 3 == 0  # every third respondent has weight 2
    weighted = base.assign(w=np.where(doubled, 2.0, 1.0))
    copies = base[doubled].assign(id=base.loc[doubled, "id"] + 10_000)
    duplicated = pd.concat([base, copies], ignore_index=True).assign(w=1.0)
    spec = parse_spec(WEIGHTED)
    return spec, weighted, duplicated


def test_weight_two_equals_duplicating_for_the_counts(panels):
    spec, weighted, duplicated = panels
    a = aggregate(validate_panel(weighted, spec), spec)
    b = aggregate(validate_panel(duplicated, spec), spec)
    assert a.weighted and not b.weighted
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.n_transitions == b.n_transitions


def test_weight_two_equals_duplicating_for_the_log_likelihood(panels):
    """Exactly equal, and equal to sum_i w_i log P(gap_i)[from_i, to_i] by scipy expm."""
    spec, weighted, duplicated = panels
    rng = np.random.default_rng(0)
    a = likelihood_data(aggregate(validate_panel(weighted, spec), spec))
    b = likelihood_data(aggregate(validate_panel(duplicated, spec), spec))
    for _ in range(5):
        q = Q3 * np.exp(rng.normal(0, 0.5, Q3.shape))
        q[np.arange(3), np.arange(3)] = 0
        q[np.arange(3), np.arange(3)] = -q.sum(axis=1)
        la, lb = loglik(q[None], *a.arrays()), loglik(q[None], *b.arrays())
        assert la == lb
        # Independent: loop over the respondents' consecutive pairs.
        expected = 0.0
        for _, g in weighted.groupby("id"):
            g = g.sort_values("time")
            states = g["state"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
            times = g["time"].to_numpy()
            for j in range(len(g) - 1):
                if states[j] == 2:  # absorbing: log P = 0
                    continue
                gap = np.round((times[j + 1] - times[j]) * 365.25) / 365.25
                expected += g["w"].iloc[0] * np.log(expm(q * gap)[states[j], states[j + 1]])
        assert la == pytest.approx(expected, rel=1e-10)


def test_weights_scale_the_log_likelihood():
    """Weight w on everyone multiplies the log-likelihood by w (a pseudo-likelihood)."""
    spec = parse_spec(WEIGHTED)
    base = simulate(100, seed=2)
    l1 = likelihood_data(aggregate(validate_panel(base.assign(w=1.0), spec), spec))
    l3 = likelihood_data(aggregate(validate_panel(base.assign(w=3.0), spec), spec))
    assert loglik(Q3[None], *l3.arrays()) == pytest.approx(3 * loglik(Q3[None], *l1.arrays()))


def test_weight_two_equals_duplicating_for_the_posterior(panels):
    """Posterior means within Monte Carlo error; the same seed gives the same draws."""
    spec, weighted, duplicated = panels
    settings = {"chains": 2, "draws": 400, "tune": 400}
    wa = validate_panel(weighted, spec)
    fit_w = sample(spec, aggregate(wa, spec), FitSettings(seed=1, **settings), panel=wa)
    agg_d = aggregate(validate_panel(duplicated, spec), spec)
    fit_d = sample(spec, agg_d, FitSettings(seed=2, **settings))
    assert fit_w.attrs["data_weighted"] == 1 and fit_d.attrs["data_weighted"] == 0
    rw = fit_w["posterior"]["log_rate"].values.reshape(-1, 4)
    rd = fit_d["posterior"]["log_rate"].values.reshape(-1, 4)
    # MC standard error of the difference of two means with >= 200 effective draws each.
    se = np.sqrt(rw.var(axis=0) / 200 + rd.var(axis=0) / 200)
    assert np.all(np.abs(rw.mean(axis=0) - rd.mean(axis=0)) < 4 * se)
    assert rw.std(axis=0) == pytest.approx(rd.std(axis=0), rel=0.2)
    # The data the sampler sees are identical, so the same seed reproduces the draws.
    again = sample(spec, agg_d, FitSettings(seed=1, **settings))
    np.testing.assert_array_equal(again["posterior"]["Q"].values, fit_w["posterior"]["Q"].values)
    # The per-row log-likelihood uses the weighted counts.
    ll = fit_w["log_likelihood"]["transitions"].values
    assert ll.shape[-1] == len(agg_d.table)
