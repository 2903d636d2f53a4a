"""Survey weights: a weighted pseudo-log-likelihood, and its calibrated posterior.

A respondent with weight ``w`` counts as ``w`` identical respondents: every one of
their transitions enters the log-likelihood ``w`` times. So duplicating every
respondent of a panel is the same as giving everyone weight 2, exactly for the
log-likelihood (and the aggregated counts) and within Monte Carlo error for the raw
pseudo-posterior.

The calibration (:mod:`markov_migration.inference.weights`, Williams & Savitsky 2021)
is tested against independent references: closed-form scores of a one-parameter
model (the calibrated variance equals the sandwich computed by hand), central
differences of the log-likelihood (scores with covariates, groups and periods),
Kish's design effect (weights unrelated to the outcome), and, as a validation study,
the coverage of its intervals under informative sampling.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.linalg import expm

from markov_migration.core.likelihood import loglik
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import PanelError, SpecError
from markov_migration.inference.fit import FitSettings, sample
from markov_migration.inference.weights import (
    ADJUST_ATTR,
    DEFF_ATTR,
    KISH_ATTR,
    adjust_weighted_posterior,
    cluster_scores,
    derived_variables,
    free_blocks,
    row_scores,
)
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.design import likelihood_data, model_design
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
    """The raw pseudo-posterior: means within Monte Carlo error; same seed, same draws.

    Without the calibration (``weights_adjust = "none"``): a respondent with weight 2
    is one respondent counted twice, not two independent ones, so the calibrated
    posterior is wider than the duplicated panel's (tested below).
    """
    _, weighted, duplicated = panels
    spec = parse_spec(WEIGHTED + 'weights_adjust = "none"\n')
    settings = {"chains": 2, "draws": 400, "tune": 400}
    wa = validate_panel(weighted, spec)
    fit_w = sample(spec, aggregate(wa, spec), FitSettings(seed=1, **settings), panel=wa)
    agg_d = aggregate(validate_panel(duplicated, spec), spec)
    fit_d = sample(spec, agg_d, FitSettings(seed=2, **settings))
    assert fit_w.attrs["data_weighted"] == 1 and fit_d.attrs["data_weighted"] == 0
    assert fit_w.attrs[ADJUST_ATTR].startswith("none: [data] weights_adjust")
    assert ADJUST_ATTR not in fit_d.attrs  # unweighted: nothing done, nothing recorded
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


# --------------------------------------------------------------------------
# The calibrated pseudo-posterior (Williams & Savitsky 2021)
# --------------------------------------------------------------------------

#: One parameter: a -> b at rate lambda, b absorbing; prior log lambda ~ N(log 0.2, 1.5).
TWO = """
name = "two"
states = ["a", "b"]
[transitions]
a = ["b"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[data]
weight = "w"
"""
LAMBDA = 0.4
#: The one-year gap as aggregation rounds it (to whole days of 1/365.25 year).
GAP = np.round(365.25) / 365.25


def two_state_panel(weights: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Respondents in a at 0, seen at 1: (panel, moved). One transition each."""
    rng = np.random.default_rng(seed)
    n = weights.size
    moved = rng.random(n) < 1 - np.exp(-LAMBDA)
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), 2),
            "time": np.tile([0.0, 1.0], n),
            "state": np.where(
                np.arange(2 * n) % 2 == 0, "a", np.where(np.repeat(moved, 2), "b", "a")
            ),
            "w": np.repeat(weights, 2),
        }
    )
    return df, moved


def grid_pseudo_posterior(weights, moved, n_draws=4000, seed=0):
    """Draws of log lambda from the exact weighted pseudo-posterior, by inverse CDF on a grid."""
    eta = np.linspace(np.log(LAMBDA) - 1.5, np.log(LAMBDA) + 1.5, 20001)
    lam = np.exp(eta)
    n_move, n_stay = weights[moved].sum(), weights[~moved].sum()
    logp = n_move * np.log1p(-np.exp(-lam * GAP)) - n_stay * lam * GAP
    logp += -0.5 * ((eta - np.log(0.2)) / 1.5) ** 2
    p = np.exp(logp - logp.max())
    cdf = np.cumsum(p) / p.sum()
    u = (np.arange(n_draws) + np.random.default_rng(seed).random(n_draws)) / n_draws
    return np.interp(u, cdf, eta)


def fake_posterior(eta: np.ndarray) -> xr.Dataset:
    """A one-chain posterior of the TWO model with its derived variables."""
    rate = np.exp(eta)
    q = np.zeros((eta.size, 2, 2))
    q[:, 0, 1], q[:, 0, 0] = rate, -rate
    return xr.Dataset(
        {
            "log_rate": (("chain", "draw", "transition"), eta[None, :, None]),
            "rate": (("chain", "draw", "transition"), rate[None, :, None]),
            "Q": (("chain", "draw", "from_state", "to_state"), q[None]),
        },
        coords={"transition": ["a->b"], "from_state": ["a", "b"], "to_state": ["a", "b"]},
    )


def calibrate_two(weights, seed, spec_text=TWO):
    spec = parse_spec(spec_text)
    df, moved = two_state_panel(weights, seed)
    panel = validate_panel(df, spec)
    agg = aggregate(panel, spec)
    raw = fake_posterior(grid_pseudo_posterior(weights, moved, seed=seed))
    adjusted, attrs = adjust_weighted_posterior(spec, agg, panel, raw)
    return raw, adjusted, attrs, moved


def test_unweighted_posterior_is_returned_untouched():
    """Weights all 1: the same object back and no attributes (bit for bit)."""
    raw, adjusted, attrs, _ = calibrate_two(np.ones(300), seed=1)
    assert adjusted is raw and attrs == {}


def test_calibrated_variance_is_the_sandwich_from_closed_form_scores():
    """Var of the adjusted draws = Sigma (J + P) Sigma, scores of the one-parameter model by hand.

    Respondent i's score at eta_hat: w_i * (-lambda t) if it stayed, w_i * lambda t e^-lambda t
    / (1 - e^-lambda t) if it moved; J = n/(n-1) sum (s_i - mean s)^2, P = 1/1.5^2. Relative
    tolerance 1e-9 (the adjustment is linear; no Monte Carlo error).
    """
    rng = np.random.default_rng(5)
    w = rng.uniform(0.2, 3.0, 500)
    w /= w.mean()
    raw, adjusted, attrs, moved = calibrate_two(w, seed=5)
    eta = raw["log_rate"].values.ravel()
    lam = np.exp(eta.mean()) * GAP  # lambda t
    s = w * np.where(moved, lam * np.exp(-lam) / -np.expm1(-lam), -lam)
    j = s.size / (s.size - 1) * np.sum((s - s.mean()) ** 2)
    var = eta.var(ddof=1)
    expected = var * (j + 1 / 1.5**2) * var
    new = adjusted["log_rate"].values.ravel()
    assert new.var(ddof=1) == pytest.approx(expected, rel=1e-9)
    assert new.mean() == pytest.approx(eta.mean(), rel=1e-12)
    # Derived variables follow the adjusted draws.
    np.testing.assert_allclose(adjusted["rate"].values.ravel(), np.exp(new), rtol=1e-14)
    np.testing.assert_allclose(adjusted["Q"].values[0, :, 0, 1], np.exp(new), rtol=1e-14)
    np.testing.assert_allclose(adjusted["Q"].values[0, :, 0, 0], -np.exp(new), rtol=1e-14)
    assert json.loads(attrs[DEFF_ATTR])["log_rate[a->b]"] == pytest.approx(expected / var, rel=1e-3)
    assert attrs[ADJUST_ATTR].startswith("calibrated")


def test_calibrated_sd_grows_by_the_kish_design_effect():
    """Weights unrelated to the outcome: sd ratio ~ sqrt(n sum w^2 / (sum w)^2).

    Weights 4 (20%) and 0.25 (80%), mean 1: Kish's design effect 3.25, sd ratio 1.80.
    Tolerance 10% of the ratio: the score variance of 2,000 respondents has a relative
    sampling sd of about 3% (400 heavy-weight respondents), so 10% is over 3 sd, while
    an uncalibrated posterior (ratio 1) or a variance-scale error (ratio 3.25) fails.
    """
    n = 2000
    w = np.where(np.arange(n) % 5 == 0, 4.0, 0.25)
    raw, adjusted, attrs, _ = calibrate_two(w, seed=11)
    kish = n * np.sum(w**2) / np.sum(w) ** 2
    assert attrs[KISH_ATTR] == pytest.approx(kish)
    ratio = adjusted["log_rate"].values.std() / raw["log_rate"].values.std()
    assert ratio == pytest.approx(np.sqrt(kish), rel=0.10)


def test_weights_adjust_none_leaves_the_draws():
    w = np.where(np.arange(400) % 2 == 0, 0.5, 1.5)
    raw, adjusted, attrs, _ = calibrate_two(w, 3, TWO + 'weights_adjust = "none"\n')
    assert adjusted is raw and attrs[ADJUST_ATTR].startswith("none")


def test_clusters_sum_their_respondents_scores():
    """With [data] cluster, J uses PSU totals; one PSU per respondent gives the same J."""
    n = 300
    w = np.where(np.arange(n) % 3 == 0, 2.0, 0.5)
    spec_r, spec_c = parse_spec(TWO), parse_spec(TWO + 'cluster = "psu"\n')
    df, moved = two_state_panel(w, seed=2)
    psu = df["id"] // 10
    own = validate_panel(df.assign(psu=df["id"].astype(str)), spec_c)
    grouped = validate_panel(df.assign(psu=psu), spec_c)
    plain = validate_panel(df, spec_r)
    agg = aggregate(plain, spec_r)
    design = model_design(spec_r, agg)
    blocks = free_blocks(design)
    g = row_scores(spec_r, design, blocks, np.array([np.log(0.3)]), [(1,)])
    s_plain, c_plain = cluster_scores(spec_r, agg, plain, g)
    s_own, _ = cluster_scores(spec_c, agg, own, g)
    s_psu, c_psu = cluster_scores(spec_c, agg, grouped, g)
    assert c_plain == n and c_psu == n // 10
    np.testing.assert_allclose(np.sort(s_own.ravel()), np.sort(s_plain.ravel()))
    expected = pd.Series(s_plain.ravel()).groupby(np.arange(n) // 10).sum().to_numpy()
    np.testing.assert_allclose(np.sort(s_psu.ravel()), np.sort(expected), rtol=1e-12)
    # The scores add up to the gradient of the weighted log-likelihood (by hand).
    lam = 0.3 * GAP
    total = np.sum(w * np.where(moved, lam * np.exp(-lam) / -np.expm1(-lam), -lam))
    assert s_plain.sum() == pytest.approx(total, rel=1e-10)


DESIGNED = """
name = "three"
states = ["a", "b", "c"]
periods = [1.5]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[covariates.reason]
kind = "categorical"
transitions = ["a->b", "b->a"]
[covariates.age]
kind = "numeric"
transitions = ["a->b"]
[groups]
column = "host"
transitions = ["a->b", "b->a"]
[data]
weight = "w"
"""


def designed_panel(n: int = 200, seed: int = 4) -> pd.DataFrame:
    """The three-state panel with a categorical, a numeric covariate, a host and weights."""
    rng = np.random.default_rng(seed)
    base = simulate(n, seed=seed)
    reason = rng.choice(["draft", "work"], n)
    age = rng.normal(35, 10, n).round()
    host = rng.choice(["X", "Y", "Z"], n)
    w = rng.uniform(0.3, 2.0, n)
    i = base["id"].to_numpy()
    return base.assign(reason=reason[i], age=age[i], host=host[i], w=w[i])


def test_row_scores_match_finite_differences_with_covariates_groups_and_periods():
    """sum_r count_r * score_r = d loglik / d theta (central differences, 1e-6 relative)."""
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

    spec = parse_spec(DESIGNED)
    panel = validate_panel(designed_panel(), spec)
    agg = aggregate(panel, spec)
    design = model_design(spec, agg)
    blocks = free_blocks(design)
    assert [b.name for b in blocks] == ["log_rate", "log_hr_scaled", "group_sd", "group_z"]
    shapes = [(4,), (len(design.parameter_labels),), (2,), (3, 2)]
    rng = np.random.default_rng(0)
    theta = np.concatenate(
        [np.log([0.3, 0.15, 0.5, 0.2]), rng.normal(0, 0.3, sum(np.prod(s) for s in shapes) - 4)]
    )
    lik = design.likelihood

    def total(th):
        # Independent of the chain rule: the forward map only.
        parts, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(th[start : start + size].reshape(shape))
            start += size
        lr, scaled, log_sd, z = parts
        log_hr = (scaled / design.parameter_scale)[design.effect_parameter]
        rates = np.exp(design.log_rates(lr, log_hr, z * np.exp(log_sd)[None, :]))
        return loglik(generators_from_rates(rates, spec), *lik.arrays())

    g = row_scores(spec, design, blocks, theta, shapes)
    assert g.shape == (lik.n_rows, theta.size)
    grad = lik.row_count @ g
    h = 1e-5
    fd = np.array(
        [(total(theta + h * e) - total(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_derived_variables_recomputes_rates_hazard_ratios_and_q():
    """Rates and log hazard ratios by hand on fake draws (Q against the sampler: slow test)."""
    spec = parse_spec(DESIGNED)
    panel = validate_panel(designed_panel(), spec)
    agg = aggregate(panel, spec)
    design = model_design(spec, agg)
    blocks = free_blocks(design)
    rng = np.random.default_rng(1)
    coords = design.coords()
    post = xr.Dataset(
        {
            "log_rate": (("chain", "draw", "transition"), rng.normal(-1.5, 0.3, (2, 5, 4))),
            "log_hr_scaled": (("chain", "draw", "hr_parameter"),
                              rng.normal(0, 0.3, (2, 5, len(coords["hr_parameter"])))),
            "group_sd": (("chain", "draw", "group_transition"), rng.uniform(0.1, 1, (2, 5, 2))),
            "group_z": (("chain", "draw", "group", "group_transition"), rng.normal(0, 1, (2, 5, 3, 2))),
        },
        coords={"transition": list(spec.transition_labels), **coords},
    )  # fmt: skip
    for name, shape in (("rate", (4,)), ("log_hazard_ratio", (len(design.effects),)),
                        ("hazard_ratio", (len(design.effects),)),
                        ("Q", (*design.grid_shape, 3, 3))):  # fmt: skip
        dims = {"rate": ("transition",), "Q": (*design.grid_dims, "from_state", "to_state")}
        post[name] = ((*SAMPLE_DIMS, *dims.get(name, ("covariate_effect",))),
                      np.full((2, 5, *shape), np.nan))  # fmt: skip
    post = post.assign_coords(from_state=list(spec.states), to_state=list(spec.states))
    post["group_effect"] = post["group_z"] * post["group_sd"]
    out = derived_variables(spec, design, post, blocks)
    np.testing.assert_allclose(out["rate"].values, np.exp(post["log_rate"].values), rtol=1e-14)
    scaled = post["log_hr_scaled"].values / design.parameter_scale
    np.testing.assert_allclose(
        out["log_hazard_ratio"].values, scaled[..., design.effect_parameter], rtol=1e-14
    )
    q = out["Q"].values
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q.sum(axis=-1), 0.0, atol=1e-12)


# --------------------------------------------------------------------------
# Informative sampling: coverage of the raw and the calibrated pseudo-posterior
# --------------------------------------------------------------------------

#: Two states, a <-> b ("returned" is b); true intensities per year.
RETURN = """
name = "return"
states = ["a", "b"]
[transitions]
a = ["b"]
b = ["a"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[data]
weight = "w"
"""
RETURN_TRUE = {"a->b": 0.25, "b->a": 0.4}


def informative_sample(seed: int, population: int = 6000) -> pd.DataFrame:
    """A panel sampled with unequal probabilities that depend on the outcome.

    A population starts in a (70%) or b, is seen at three jittered yearly waves;
    respondents ever seen in b (returnees) are sampled with probability 0.6, the others
    with 0.06, and carry weights 1/pi normalised to mean 1. The unweighted fit is then
    biased towards moves to b; the weighted one is centred right but its raw spread
    ignores the design effect of the unequal weights.
    """
    rng = np.random.default_rng(seed)
    q = np.array([[-0.25, 0.25], [0.4, -0.4]])
    s = (rng.random(population) < 0.3).astype(int)
    t = np.zeros(population)
    states, times = [s], [t]
    for wave in (1.0, 2.0):
        t_new = np.round((wave + rng.uniform(-0.1, 0.1, population)) * 365.25) / 365.25
        gaps = np.unique(np.round((t_new - t) * 365.25))
        p_stay = {g: expm(q * g / 365.25) for g in gaps}
        u = rng.random(population)
        g = np.round((t_new - t) * 365.25)
        p_b = np.array([p_stay[gi][si, 1] for gi, si in zip(g, s, strict=True)])
        s = (u < p_b).astype(int)
        t = t_new
        states.append(s)
        times.append(t)
    ever_b = np.any(np.stack(states) == 1, axis=0)
    pi = np.where(ever_b, 0.6, 0.06)
    keep = rng.random(population) < pi
    w = 1 / pi[keep]
    w /= w.mean()
    ids = np.flatnonzero(keep)
    frames = [
        pd.DataFrame({"id": ids, "time": tm[keep], "state": np.array(["a", "b"])[st[keep]], "w": w})
        for st, tm in zip(states, times, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


def coverage_replication(seed: int, prob: float = 0.9) -> dict[str, np.ndarray]:
    """One weighted fit: whether the raw and calibrated intervals of log_rate cover the truth."""
    spec_raw = parse_spec(RETURN + 'weights_adjust = "none"\n')
    spec_cal = parse_spec(RETURN)
    panel = validate_panel(informative_sample(seed), spec_raw)
    agg = aggregate(panel, spec_raw)
    fit = sample(spec_raw, agg, FitSettings(seed=seed, chains=2, draws=500, tune=500), panel=panel)
    raw = fit["posterior"].to_dataset()
    cal, attrs = adjust_weighted_posterior(spec_cal, agg, panel, raw)
    truth = np.log([RETURN_TRUE[t] for t in spec_raw.transition_labels])
    out = {"kish": np.array(attrs[KISH_ATTR])}
    for name, post in (("raw", raw), ("calibrated", cal)):
        draws = post["log_rate"].transpose(..., "transition").values.reshape(-1, truth.size)
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        out[name] = (lo <= truth) & (truth <= hi)
        out[f"{name}_sd"] = draws.std(axis=0)
        out[f"{name}_mean"] = draws.mean(axis=0)
    return out


@pytest.mark.validation
def test_calibrated_intervals_cover_under_informative_sampling():
    """100 replications: calibrated 90% intervals cover near 90% for both intensities.

    The raw pseudo-posterior is too narrow for a->b (informed mostly by the large weights
    of non-returnees) and too wide for b->a (informed by the oversampled returnees, whose
    normalised weights are below 1): mean-1 weights do not keep the information right.
    Binomial sd of a coverage over 100 intervals is 0.03 at 0.9; the spread of the
    posterior means over replications (the estimator's sampling sd) is compared with the
    average posterior sd, 14% tolerance (the sd of an sd from 100 replications is 7%).
    """
    reps = [coverage_replication(seed) for seed in range(100)]
    raw = np.mean([r["raw"] for r in reps], axis=0)
    cal = np.mean([r["calibrated"] for r in reps], axis=0)
    spread = np.std([r["calibrated_mean"] for r in reps], axis=0, ddof=1)
    cal_sd = np.mean([r["calibrated_sd"] for r in reps], axis=0)
    raw_sd = np.mean([r["raw_sd"] for r in reps], axis=0)
    print(f"coverage of 90% intervals (a->b, b->a): raw {raw}, calibrated {cal}")
    print(f"sampling sd {spread}, mean posterior sd: raw {raw_sd}, calibrated {cal_sd}")
    assert np.all((0.82 <= cal) & (cal <= 0.96))
    assert raw[0] < 0.85 and raw[1] > 0.95
    np.testing.assert_allclose(cal_sd, spread, rtol=0.14)


def test_check_and_compare_say_what_a_weighted_fit_means():
    """LOO and the predictive checks of a weighted fit are computed, with a warning saying so."""
    from markov_migration.results.checks import run_checks, weighted_notes
    from markov_migration.results.compare import WEIGHTED_NOTE, compare_fits, pareto_k_warnings
    from markov_migration.testing import fake_fit

    spec = parse_spec(TWO + '[rates]\n"a->b" = 0.4\n')  # the fake posterior's centre
    w = np.where(np.arange(200) % 4 == 0, 2.5, 0.5)
    df, _ = two_state_panel(w, seed=1)
    fits = {f"m{s}": fake_fit(spec, df, chains=2, draws=100, seed=s) for s in (1, 2)}
    _, loos = compare_fits(fits)
    warnings = pareto_k_warnings(loos)
    assert [x for x in warnings if WEIGHTED_NOTE in x] == [
        f"m1: {WEIGHTED_NOTE}",
        f"m2: {WEIGHTED_NOTE}",
    ]
    assert "not an estimate of predictive accuracy for the population" in WEIGHTED_NOTE
    tree = fits["m1"]
    (note,) = weighted_notes(tree)
    assert "not calibrated for the survey design" in note and "raw pseudo-posterior" in note
    assert "can fail for a correct model" in note
    tree.attrs[ADJUST_ATTR] = "calibrated: ..."
    assert "posterior is calibrated" in weighted_notes(tree)[0]
    assert weighted_notes(tree)[0] in run_checks(tree, n_draws=50).notes
    plain = fake_fit(spec, df.assign(w=1.0), chains=2, draws=100, seed=1)
    assert weighted_notes(plain) == []
    assert not [x for x in pareto_k_warnings(compare_fits({"a": plain, "b": plain.copy()})[1])
                if WEIGHTED_NOTE in x]  # fmt: skip


def test_bad_weights_options_are_refused():
    """A typo in weights_adjust, an empty or changing cluster: one clear error each."""
    with pytest.raises(SpecError, match="weights_adjust must be 'calibrated' or 'none'"):
        parse_spec(TWO + 'weights_adjust = "sandwich"\n')
    with pytest.raises(SpecError, match="cluster must be a column name"):
        parse_spec(TWO + "cluster = 3\n")
    spec = parse_spec(TWO + 'cluster = "psu"\n')
    df, _ = two_state_panel(np.ones(20), seed=0)
    with pytest.raises(PanelError, match="missing column 'psu'"):
        validate_panel(df, spec)
    psu = np.where(np.arange(len(df)) == 5, "", "p1")
    with pytest.raises(PanelError, match="missing cluster") as err:
        validate_panel(df.assign(psu=psu), spec)
    assert err.value.row == 6
    psu = np.where(np.arange(len(df)) == 5, "p2", "p1")
    with pytest.raises(PanelError, match="cluster of respondent '2' changes"):
        validate_panel(df.assign(psu=psu), spec)


@pytest.mark.slow
def test_calibrated_fit_with_covariates_groups_and_periods(tmp_path):
    """A real weighted fit: derived variables rebuilt like the sampler's, groups untouched.

    The raw fit (weights_adjust = "none") gives the sampler's own rate, hazard ratios and
    Q; :func:`derived_variables` recomputes them from the free draws to 1e-10. The
    calibrated fit (same seed, so the same raw draws) keeps group_sd and group_z, moves
    log_rate and log_hr_scaled (keeping their means), is a valid fit file with its
    clusters embedded, and its embedded panel gives the same likelihood and clusters.
    """
    from markov_migration.fitfile.format import read_fit, write_fit
    from markov_migration.fitfile.readback import recorded_panel
    from markov_migration.fitfile.verify import verify_fit

    df = designed_panel(300, seed=7)
    df = df.assign(psu=(df["id"] // 4).astype(str))
    settings = {"chains": 2, "draws": 60, "tune": 100, "seed": 3}  # equalities, not estimates
    spec_raw = parse_spec(DESIGNED + 'weights_adjust = "none"\ncluster = "psu"\n')
    spec_cal = parse_spec(DESIGNED + 'cluster = "psu"\n')
    panel = validate_panel(df, spec_cal)
    agg = aggregate(panel, spec_cal)
    raw = sample(spec_raw, agg, FitSettings(**settings), panel=panel)
    cal = sample(spec_cal, agg, FitSettings(**settings), panel=panel)
    pr, pc = raw["posterior"].to_dataset(), cal["posterior"].to_dataset()
    design = model_design(spec_cal, agg)
    rebuilt = derived_variables(spec_cal, design, pr, free_blocks(design))
    for name in ("rate", "log_hazard_ratio", "hazard_ratio", "Q", "group_effect"):
        np.testing.assert_allclose(rebuilt[name].values, pr[name].values, rtol=1e-10, atol=1e-14)
    for name in ("group_sd", "group_z", "group_effect"):
        np.testing.assert_array_equal(pc[name].values, pr[name].values)
    assert not np.allclose(pc["Q"].values, pr["Q"].values)
    for name in ("log_rate", "log_hr_scaled"):  # the map keeps the mean of the free draws
        assert not np.allclose(pc[name].values, pr[name].values)
        np.testing.assert_allclose(
            pc[name].mean(SAMPLE_DIMS).values, pr[name].mean(SAMPLE_DIMS).values, atol=1e-10
        )
    assert cal.attrs[KISH_ATTR] > 1 and cal.attrs["weights_clusters"] == 75
    assert "PSU 'psu'" in cal.attrs[ADJUST_ATTR]
    assert "group_sd and group_z left as sampled" in cal.attrs[ADJUST_ATTR]
    assert set(json.loads(cal.attrs[DEFF_ATTR])) >= {"log_rate[a->b]", "log_rate[b->c]"}
    path = tmp_path / "fit.nc"
    write_fit(cal, path, False)
    back = read_fit(path)
    verify_fit(back, path)
    again = recorded_panel(back, spec_cal)

    def clusters(p):
        return p.data.drop_duplicates("id").set_index("id")["_cluster"].sort_index().astype(str)

    pd.testing.assert_series_equal(clusters(again), clusters(panel))
    # What a refit reads is what this fit read: the same likelihood arrays (so the same draws
    # for the same seed; the sampler's determinism is tested in test_fit.py) and the same
    # respondents' weights and clusters for the calibration.
    for a, b in zip(
        likelihood_data(aggregate(again, spec_cal)).arrays(), likelihood_data(agg).arrays(),
        strict=True,
    ):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    cols = ["id", "time", "state", "weight", "_cluster"]
    pd.testing.assert_frame_equal(
        again.data[cols].reset_index(drop=True), panel.data[cols].reset_index(drop=True),
        check_dtype=False,
    )  # fmt: skip


def test_weights_line_of_fit_and_report():
    """What ``fit`` prints and the report shows about weights, from the fit's attributes."""
    from markov_migration.plots.report import weights_text

    assert weights_text({"data_weighted": 0}) == "no"
    raw = weights_text({"data_weighted": 1, ADJUST_ATTR: 'none: [data] weights_adjust = "none"'})
    assert raw.startswith("yes (pseudo-likelihood; not calibrated: [data] weights_adjust")
    cal = weights_text(
        {"data_weighted": 1, ADJUST_ATTR: "calibrated: ...", KISH_ATTR: 3.0137,
         DEFF_ATTR: json.dumps({"log_rate[a->b]": 2.1, "log_rate[b->a]": 0.6})}
    )  # fmt: skip
    assert cal == (
        "yes (pseudo-likelihood; posterior calibrated to the design, Kish design effect 3.01; "
        "variance ratios 0.60-2.10 by parameter)"
    )


# --------------------------------------------------------------------------
# Discrete time: the Dirichlet rows on their log-ratio scale
# --------------------------------------------------------------------------

DISC = """
name = "disc"
time = "discrete"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
c = ["a"]
[priors]
concentration = 1.0
b = { concentration = 2.0 }
[data]
weight = "w"
"""
P_DISC = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.4, 0.0, 0.6]])


def discrete_panel(n: int, seed: int, skip: bool) -> pd.DataFrame:
    """Four waves (steps 0..3); with ``skip`` every fifth respondent misses wave 1."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, n)
    w = rng.uniform(0.3, 3.0, n)
    rows = []
    for wave in range(4):
        frame = pd.DataFrame(
            {"id": np.arange(n), "time": wave, "state": np.array(["a", "b", "c"])[s], "w": w}
        )
        rows.append(frame[(np.arange(n) % 5 != 0) | (wave != 1) | (not skip)])
        s = np.array([rng.choice(3, p=P_DISC[x]) for x in s])
    return pd.concat(rows, ignore_index=True)


def test_discrete_row_scores_match_finite_differences():
    """Rows of one and two steps: sum_r count_r * score_r = d loglik / d eta (1e-6)."""
    from markov_migration.inference import weights_discrete as wd

    spec = parse_spec(DISC)
    agg = aggregate(validate_panel(discrete_panel(200, 1, skip=True), spec), spec)
    steps = np.round(agg.table["interval"].to_numpy() / agg.resolution).astype(int)
    assert set(steps) == {1, 2}
    targets = {0: [0, 1, 2], 1: [1, 0, 2], 2: [2, 0]}  # itself first, as the model orders

    def total(eta):
        p, col = np.zeros((3, 3)), 0
        for r, tg in targets.items():
            e = np.exp(np.concatenate([[0.0], eta[col : col + len(tg) - 1]]))
            p[r, tg] = e / e.sum()
            col += len(tg) - 1
        t = agg.table
        return sum(
            c * np.log(np.linalg.matrix_power(p, n)[a, b])
            for a, b, n, c in zip(t["from"], t["to"], steps, t["count"], strict=True)
        )

    eta = np.random.default_rng(2).normal(0, 0.5, 5)
    grad = agg.table["count"].to_numpy() @ wd.row_scores(spec, agg, eta)
    h = 1e-6
    fd = np.array([(total(eta + h * e) - total(eta - h * e)) / (2 * h) for e in np.eye(5)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_discrete_calibration_is_the_sandwich_by_hand():
    """One-step rows: the pseudo-posterior is Dirichlet(alpha + weighted counts), drawn exactly.

    Respondent i's score for row r: w_i * sum over its moves r -> c of (e_c - p)[1:] on the
    log-ratios against staying; J = n/(n-1) sum (s_i - s_bar)(s_i - s_bar)'; the prior's
    curvature alpha_0 (diag(p) - p p'). The calibrated covariance is Sigma (J + P) Sigma
    (1e-9 relative), the means are kept and p_<state>, P are consistent.
    """
    spec = parse_spec(DISC)
    df = discrete_panel(400, 3, skip=False)
    panel = validate_panel(df, spec)
    agg = aggregate(panel, spec)
    targets = {0: [0, 1, 2], 1: [1, 0, 2], 2: [2, 0]}
    alpha = {r: np.array([spec.concentration[(r, c)] for c in tg]) for r, tg in targets.items()}
    counts = np.zeros((3, 3))
    np.add.at(counts, (agg.table["from"], agg.table["to"]), agg.table["count"])
    rng = np.random.default_rng(0)
    n_draws = 4000
    post, eta = {}, []
    p_all = np.zeros((n_draws, 3, 3))
    for r, tg in targets.items():
        d = rng.dirichlet(alpha[r] + counts[r, tg], n_draws)
        name = f"p_{'abc'[r]}"
        post[name] = (("chain", "draw", f"next_{'abc'[r]}"), d[None])
        p_all[:, r, tg] = d
        eta.append(np.log(d[:, 1:] / d[:, :1]))
    post["P"] = (("chain", "draw", "from_state", "to_state"), p_all[None])
    raw = xr.Dataset(post)
    eta = np.concatenate(eta, axis=1)
    adjusted, attrs = adjust_weighted_posterior(spec, agg, panel, raw)
    # Scores by hand at the posterior mean of eta.
    eta_hat = eta.mean(axis=0)
    p_hat, col = {}, 0
    for r, tg in targets.items():
        e = np.exp(np.concatenate([[0.0], eta_hat[col : col + len(tg) - 1]]))
        p_hat[r] = (e / e.sum(), col)
        col += len(tg) - 1
    n = df["id"].nunique()
    s = np.zeros((n, 5))
    for i, g in df.groupby("id"):
        states = g.sort_values("time")["state"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
        for a, b in zip(states[:-1], states[1:], strict=True):
            p, col = p_hat[a]
            onehot = (np.array(targets[a]) == b).astype(float)
            s[i, col : col + len(p) - 1] += g["w"].iloc[0] * (onehot - p)[1:]
    centred = s - s.mean(axis=0)
    j = centred.T @ centred * n / (n - 1)
    prec = np.zeros((5, 5))
    for r, (p, col) in p_hat.items():
        m = len(p) - 1
        prec[col : col + m, col : col + m] = alpha[r].sum() * (
            np.diag(p[1:]) - np.outer(p[1:], p[1:])
        )
    sigma = np.cov(eta, rowvar=False)
    expected = sigma @ (j + prec) @ sigma
    new = []
    for r, tg in targets.items():
        d = adjusted[f"p_{'abc'[r]}"].values[0]
        np.testing.assert_allclose(adjusted["P"].values[0][:, r, tg], d, rtol=1e-12)
        new.append(np.log(d[:, 1:] / d[:, :1]))
    new = np.concatenate(new, axis=1)
    np.testing.assert_allclose(np.cov(new, rowvar=False), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(new.mean(axis=0), eta_hat, atol=1e-12)
    np.testing.assert_allclose(adjusted["P"].values.sum(axis=-1), 1.0, atol=1e-12)
    assert "p_a, p_b, p_c (as log-ratios against staying)" in attrs[ADJUST_ATTR]
    assert "log(p_b[a] / p_b[b])" in json.loads(attrs[DEFF_ATTR])
