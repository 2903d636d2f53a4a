"""Exact transition events (core.events) against independent references.

References: scipy.stats (Poisson tails), scipy.linalg.expm (end stocks; Van Loan
blocks are checked against quadrature), the exact multinomial pmf, direct
multinomial sampling, and a plain per-person Gillespie simulation written here.
Tolerances: Monte Carlo means within 4.5 standard errors (``Z``), test p-values
above 0.001 (``P_MIN``), deterministic quantities to 1e-9 relative, integer
identities exactly. Every random test has a fixed seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats

from markov_migration.core.event_moments import (
    expected_events,
    expected_step,
    occupancy_integrals,
)
from markov_migration.core.events import project_events, step_events, step_events_pieces
from markov_migration.core.ever_home import EverHomeSpace
from markov_migration.core.projection import draw_seeds, inflow_counts
from markov_migration.core.uniformization import continuation_tables
from markov_migration.inputs.spec import load_spec
from markov_migration.io import models_dir

#: Monte Carlo tolerance in standard errors; smallest accepted p-value.
Z = 4.5
P_MIN = 0.001
#: Index of "returned" in migration5 (the home state).
RETURNED = 3


def migration5_q() -> np.ndarray:
    """Generator of models/migration5.toml's [rates] table (per year)."""
    return load_spec(models_dir() / "migration5.toml").rate_matrix()


#: Illness-death: "dead" (2) is absorbing (tests/conftest.py's toy model rates).
ABSORBING_Q = np.array([[-0.35, 0.3, 0.05], [0.5, -0.7, 0.2], [0.0, 0.0, 0.0]])
X0_5 = np.array([400, 300, 200, 100, 0])
X0_3 = np.array([600, 300, 100])


def replicate(x0, q, steps, n, seed, arrivals=None):
    """``n`` independent replications (draws) of one population."""
    return project_events(x0, q, steps, seeds=draw_seeds(seed, np.arange(n)), inflow=arrivals)


def zscore(sample: np.ndarray, expected) -> np.ndarray:
    """(mean - expected) / its Monte Carlo standard error, per column (0 where sd is 0)."""
    se = sample.std(axis=0, ddof=1) / math.sqrt(sample.shape[0])
    diff = sample.mean(axis=0) - expected
    return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))


def two_sample_z(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    diff = a.mean(axis=0) - b.mean(axis=0)
    return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))


# ----------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("lam", [0.01, 0.7, 2.5, 25.0, 300.0])
def test_continuation_tables_match_scipy_tails(lam):
    n = 60 if lam < 100 else 500
    j = np.arange(n)
    at_least = scipy.stats.poisson.sf(j - 1, lam)  # P(N >= j)
    ok = at_least > 1e-280
    ref = scipy.stats.poisson.sf(j, lam)[ok] / at_least[ok]
    got = continuation_tables(lam, n)[0][ok]
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    # mixed Poisson of a uniform arrival: P(M = m) = P(N >= m + 1) / lam
    m = np.arange(n + 3000)
    pmf = scipy.stats.poisson.sf(m, lam) / lam
    assert pmf.sum() == pytest.approx(1.0, rel=1e-12)
    tail = np.cumsum(pmf[::-1])[::-1]  # P(M >= m)
    ok = tail[:n] > 1e-280
    ref = (tail[1 : n + 1] / tail[:n])[ok]
    np.testing.assert_allclose(continuation_tables(lam, n)[1][ok], ref, rtol=1e-10)


def test_van_loan_blocks_match_quadrature():
    q, h = migration5_q(), 0.8
    p, int1, int2 = occupancy_integrals(q, h)
    np.testing.assert_allclose(p, scipy.linalg.expm(q * h), rtol=1e-10)
    ref1 = scipy.integrate.quad_vec(lambda u: scipy.linalg.expm(q * u), 0, h, epsabs=1e-13)[0]
    ref2 = scipy.integrate.quad_vec(
        lambda u: (h - u) * scipy.linalg.expm(q * u), 0, h, epsabs=1e-13
    )[0]
    np.testing.assert_allclose(int1, ref1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(int2, ref2, rtol=1e-9, atol=1e-12)
    # an absorbing chain: expected absorptions = x0 P(h) - x0 in the absorbing state
    ev = expected_events(X0_3, ABSORBING_Q, 2.0)
    end = X0_3 @ scipy.linalg.expm(ABSORBING_Q * 2.0)
    assert ev[:, 2].sum() == pytest.approx(end[2] - X0_3[2], rel=1e-10)


# ----------------------------------------------------------------------------- against expectations


@pytest.mark.parametrize(("name", "x0", "h"), [("migration5", X0_5, 1.0), ("absorbing", X0_3, 1.5)])
@pytest.mark.parametrize("with_arrivals", [False, True])
def test_event_means_match_van_loan(name, x0, h, with_arrivals):
    q = migration5_q() if name == "migration5" else ABSORBING_Q
    k = q.shape[0]
    arrivals = np.zeros(k, dtype=np.int64)
    if with_arrivals:
        arrivals[1] = 150
    out = replicate(x0, q, [[(h, 0)]], 4000, seed=11, arrivals=arrivals[None])
    stock_ref, events_ref = expected_step(x0, [(q, h)], arrivals)
    allowed = ~np.eye(k, dtype=bool) & (q > 0)
    events = out.events[:, 0]
    assert np.all(events[:, ~allowed] == 0)
    z = zscore(events[:, allowed], events_ref[allowed])
    assert np.all(np.abs(z) < Z), z
    z = zscore(out.stock[:, 1].astype(float), stock_ref)
    assert np.all(np.abs(z) < Z), z


@pytest.mark.parametrize(("scale", "h"), [(1.0, 11.0), (50.0, 1.0)])
def test_long_and_fast_steps_match_van_loan(scale, h):
    """Many virtual jumps per step (mu h = 27.5 and 125): deep continuation tables."""
    q = migration5_q() * scale
    arrivals = np.array([0, 300, 0, 0, 0])
    out = replicate(X0_5, q, [[(h, 0)]], 1000, seed=13, arrivals=arrivals[None])
    stock_ref, events_ref = expected_step(X0_5, [(q, h)], arrivals)
    allowed = q > 0
    assert np.all(np.abs(zscore(out.events[:, 0][:, allowed], events_ref[allowed])) < Z)
    assert np.all(np.abs(zscore(out.stock[:, 1].astype(float), stock_ref)) < Z)


def test_per_draw_generators_match_van_loan_per_draw():
    """Posterior-like draws: mean over draws of (events - Van Loan of that draw) is 0."""
    rng = np.random.default_rng(5)
    q0 = migration5_q()
    n, k = 1000, 5
    off = ~np.eye(k, dtype=bool)
    q = np.where(off, q0 * np.exp(0.3 * rng.standard_normal((n, k, k))), 0.0)
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    out = replicate(X0_5, q, [[(1.0, 0)]], n, seed=3)
    ref = expected_events(X0_5, q, 1.0)  # batched over draws
    np.testing.assert_allclose(ref[7], expected_events(X0_5, q[7], 1.0), rtol=1e-12)
    allowed = q0 > 0
    diff = (out.events[:, 0] - ref)[:, allowed]
    assert np.all(np.abs(zscore(diff, 0.0)) < Z)


def test_end_stocks_follow_the_exact_multinomial():
    """Four persons starting in state 0: end stocks ~ Multinomial(4, P(h)[0]) (chi-square)."""
    h, n = 1.3, 20000
    p = scipy.linalg.expm(ABSORBING_Q * h)[0]
    out = replicate(np.array([4, 0, 0]), ABSORBING_Q, [[(h, 0)]], n, seed=8)
    end = out.stock[:, 1]
    outcomes = [(a, b, 4 - a - b) for a in range(5) for b in range(5 - a)]
    observed = np.array([np.sum(np.all(end == o, axis=1)) for o in outcomes])
    expected = np.array([n * scipy.stats.multinomial.pmf(o, 4, p) for o in outcomes])
    assert observed.sum() == n
    assert scipy.stats.chisquare(observed, expected).pvalue > P_MIN


def test_end_stocks_match_direct_multinomial_sampling():
    q, h, n = migration5_q(), 1.0, 3000
    p = scipy.linalg.expm(q * h)
    out = replicate(X0_5, q, [[(h, 0)]], n, seed=9)
    rng = np.random.default_rng(9)
    direct = sum(rng.multinomial(X0_5[r], p[r], size=n) for r in range(5))
    for s in range(5):
        assert scipy.stats.ks_2samp(out.stock[:, 1, s], direct[:, s]).pvalue > P_MIN
    assert np.all(np.abs(zscore(out.stock[:, 1].astype(float), X0_5 @ p)) < Z)


# ----------------------------------------------------------------------------- brute force


def gillespie(q, x0, h, reps, rng, arrivals=None):
    """Per-person continuous-time simulation: events (reps, K, K) and end stocks (reps, K).

    Every person of every replication gets exponential sojourns and a
    destination drawn from the jump chain; arrivals start at uniform times.
    """
    k = q.shape[0]
    rates = np.where(~np.eye(k, dtype=bool), q, 0.0)
    exit_rate = rates.sum(axis=1)
    jump = np.divide(
        rates, exit_rate[:, None], out=np.zeros_like(rates), where=exit_rate[:, None] > 0
    )
    cum = np.cumsum(jump, axis=1)
    start = np.repeat(np.arange(k), x0)
    t0 = np.zeros(start.size)
    if arrivals is not None:
        start = np.concatenate([start, np.repeat(np.arange(k), arrivals)])
        t0 = np.concatenate([t0, np.full(int(np.sum(arrivals)), np.nan)])
    state = np.tile(start, reps)
    rep = np.repeat(np.arange(reps), start.size)
    t = np.tile(t0, reps)
    t[np.isnan(t)] = rng.uniform(0.0, h, size=int(np.isnan(t).sum()))
    events = np.zeros(reps * k * k, dtype=np.int64)
    idx = np.flatnonzero(exit_rate[state] > 0)
    while idx.size:
        t[idx] += rng.exponential(1.0 / exit_rate[state[idx]])
        idx = idx[t[idx] < h]
        u = rng.random(idx.size)
        dest = np.minimum((u[:, None] > cum[state[idx]]).sum(axis=1), k - 1)
        cell = (rep[idx] * k + state[idx]) * k + dest
        events += np.bincount(cell, minlength=reps * k * k)
        state[idx] = dest
        idx = idx[exit_rate[dest] > 0]
    stock = np.bincount(rep * k + state, minlength=reps * k).reshape(reps, k)
    return events.reshape(reps, k, k), stock


def assert_same_distribution(a: np.ndarray, b: np.ndarray) -> None:
    """Two samples of counts: KS, means (two-sample z) and log variance ratio (4.5 SE)."""
    assert scipy.stats.ks_2samp(a, b).pvalue > P_MIN
    assert abs(two_sample_z(a.astype(float), b.astype(float))) < Z
    se_log_var = math.sqrt(2.0 / (len(a) - 1) + 2.0 / (len(b) - 1))
    assert abs(math.log(a.var(ddof=1) / b.var(ddof=1))) < Z * se_log_var


def test_returns_per_year_match_gillespie():
    q, h, reps = migration5_q(), 1.0, 2000
    x0 = np.array([1000, 500, 300, 200, 0])  # 2,000 persons
    out = replicate(x0, q, [[(h, 0)]], reps, seed=21)
    events, stock = gillespie(q, x0, h, reps, np.random.default_rng(21))
    returns = out.events[:, 0, :, RETURNED].sum(axis=1)
    assert_same_distribution(returns, events[:, :, RETURNED].sum(axis=1))
    assert_same_distribution(out.events[:, 0, RETURNED, 4], events[:, RETURNED, 4])
    assert_same_distribution(out.stock[:, 1, RETURNED], stock[:, RETURNED])


@pytest.mark.slow
def test_returns_with_arrivals_match_gillespie():
    q, h, reps = migration5_q(), 1.0, 4000
    x0, arrivals = np.array([1000, 500, 300, 200, 0]), np.array([0, 400, 0, 0, 0])
    out = replicate(x0, q, [[(h, 0)]], reps, seed=22, arrivals=arrivals[None])
    events, stock = gillespie(q, x0, h, reps, np.random.default_rng(22), arrivals)
    for r, s in zip(*np.nonzero(q > 0), strict=True):
        if r != s:
            assert_same_distribution(out.events[:, 0, r, s], events[:, r, s])
    for s in range(5):
        assert_same_distribution(out.stock[:, 1, s], stock[:, s])


# ----------------------------------------------------------------------------- step invariance


def yearly_totals(q, x0, n_steps, reps, seed, arrivals_per_year=None):
    """Events summed over one year cut into ``n_steps`` equal steps, and end stocks."""
    k = q.shape[-1]
    arr = None
    if arrivals_per_year is not None:
        arr = np.tile(np.asarray(arrivals_per_year) // n_steps, (n_steps, 1))
    out = replicate(x0, q, [[(1.0 / n_steps, 0)]] * n_steps, reps, seed, arrivals=arr)
    assert out.events.shape == (reps, n_steps, k, k)
    return out.events.sum(axis=1), out.stock[:, -1]


def assert_close_distributions(a: np.ndarray, b: np.ndarray, var_tol: float = 0.10) -> None:
    """Means within Monte Carlo error, variances within ``var_tol`` (relative)."""
    assert abs(two_sample_z(a.astype(float), b.astype(float))) < Z
    assert abs(a.var(ddof=1) / b.var(ddof=1) - 1.0) < var_tol


@pytest.mark.parametrize("arrivals", [None, [0, 240, 0, 0, 0]])
def test_yearly_quarterly_monthly_events_agree(arrivals):
    q, reps = migration5_q(), 6000
    x0 = np.array([600, 300, 200, 100, 0])
    results = {
        n: yearly_totals(q, x0, n, reps, seed=30 + n, arrivals_per_year=arrivals)
        for n in (1, 4, 12)
    }
    for n in (4, 12):
        events, stock = results[n]
        events1, stock1 = results[1]
        assert_close_distributions(
            events[:, :, RETURNED].sum(axis=1), events1[:, :, RETURNED].sum(axis=1)
        )
        assert_close_distributions(events[:, RETURNED, 4], events1[:, RETURNED, 4])
        assert_close_distributions(events[:, 0, :].sum(axis=1), events1[:, 0, :].sum(axis=1))
        assert_close_distributions(stock[:, RETURNED], stock1[:, RETURNED])
    # and the expectation of the yearly step is Van Loan's
    events1 = results[1][0]
    ref = expected_events(x0, q, 1.0, None if arrivals is None else np.asarray(arrivals))
    assert (
        abs(
            zscore(
                events1[:, :, RETURNED].sum(axis=1)[:, None].astype(float), ref[:, RETURNED].sum()
            )[0]
        )
        < Z
    )


def test_ever_home_agrees_across_step_lengths_and_with_first_passage():
    q, reps = migration5_q(), 6000
    space = EverHomeSpace(k=5, home=[RETURNED])
    x0 = np.array([600, 300, 200, 100, 0])
    arrivals = np.array([0, 240, 0, 0, 0])
    qa, xa = space.generator(q), space.initial(x0)
    ever, back = {}, {}
    for n in (1, 4, 12):
        arr = np.tile(space.arrivals(arrivals // n), (n, 1))
        out = replicate(xa, qa, [[(1.0 / n, 0)]] * n, reps, seed=40 + n, arrivals=arr)
        end = out.stock[:, -1]
        ever[n], back[n] = space.ever_home(end), space.home_from_abroad(end)
        # collapsed to the model's states, stocks and events still balance exactly
        stock, events = space.stock(out.stock), space.events(out.events)
        assert np.all(
            stock[:, 1:] == stock[:, :-1] + arrivals // n + events.sum(-2) - events.sum(-1)
        )
    for n in (4, 12):
        assert_close_distributions(ever[n], ever[1])
        assert_close_distributions(back[n], back[1])
    # first passage into home, independently: a chain where entering home absorbs
    k = 5
    killed = np.zeros((k + 1, k + 1))
    for r in range(k):
        for s in range(k):
            if s != r and q[r, s] > 0:
                killed[r, k if s == RETURNED else s] += q[r, s]
    killed[np.arange(k + 1), np.arange(k + 1)] = -killed.sum(axis=1)
    x_ext = np.append(x0, 0.0)
    a_ext = np.append(arrivals, 0.0)
    ref_ever = expected_step(x_ext, [(killed, 1.0)], a_ext)[0][k]
    assert abs(zscore(ever[1][:, None].astype(float), ref_ever)[0]) < Z
    abroad = np.ones(k, dtype=bool)
    abroad[RETURNED] = False
    ref_back = (x0 * abroad) @ scipy.linalg.expm(q)[:, RETURNED]
    assert abs(zscore(back[1][:, None].astype(float), ref_back)[0]) < Z
    # the flag alone (2K states) gives the same ever-home counts
    flag_only = EverHomeSpace(k=5, home=[RETURNED], by_start=False)
    arr = flag_only.arrivals(arrivals)[None]
    out = replicate(flag_only.initial(x0), flag_only.generator(q), [[(1.0, 0)]], reps, 50, arr)
    assert_close_distributions(flag_only.ever_home(out.stock[:, -1]), ever[1])
    assert np.array_equal(flag_only.stock(out.stock[:, 0]), np.broadcast_to(x0, (reps, 5)))


# ----------------------------------------------------------------------------- exact identities


def test_conservation_is_exact_per_replication():
    """x_end = x0 + arrivals + inflow events - outflow events, per draw and step, exactly."""
    rng = np.random.default_rng(2)
    q0, n, k = migration5_q(), 300, 5
    q = np.stack([q0, q0 * 1.7, q0 * 0.4])  # three generator variants
    q = np.broadcast_to(q, (n, 3, k, k)) * np.exp(0.2 * rng.standard_normal((n, 1, k, k)))
    steps = [[(0.5, 0)], [(0.2, 0), (0.3, 1)], [(0.25, 1), (0.05, 2), (0.2, 0)], [(1.0, 2)]]
    x0 = rng.integers(0, 5000, size=(n, k))
    arrivals = rng.integers(0, 300, size=(n, len(steps), k))
    out = project_events(x0, q, steps, seeds=draw_seeds(4, np.arange(n)), inflow=arrivals)
    assert out.stock.dtype == np.int64 and out.events.dtype == np.int64
    assert np.all(out.stock[:, 0] == x0)
    assert np.all(out.arrivals == arrivals)
    inflow, outflow = out.events.sum(axis=-2), out.events.sum(axis=-1)
    assert np.all(out.stock[:, 1:] == out.stock[:, :-1] + arrivals + inflow - outflow)
    assert np.all(out.stock.sum(axis=-1)[:, -1] == x0.sum(axis=1) + arrivals.sum(axis=(1, 2)))
    assert np.all(out.stock >= 0) and np.all(out.events >= 0)
    assert np.all(out.events[..., np.arange(k), np.arange(k)] == 0)
    assert np.all(out.events[..., q0 == 0] == 0)


def test_no_moves_without_intensities():
    q = np.zeros((3, 3))
    end, events = step_events(np.array([5, 6, 7]), q, 2.0, arrivals=np.array([1, 0, 2]), seed=3)
    assert end.tolist() == [6, 6, 9] and not events.any()


def test_results_depend_only_on_seed_and_draw_index():
    q, n = migration5_q(), 40
    seeds = draw_seeds(7, np.arange(n))
    steps = [[(0.5, 0)], [(0.5, 0)]]
    arr = np.array([[0, 30, 0, 0, 0], [0, 10, 0, 0, 0]])
    a = project_events(X0_5, q, steps, seeds=seeds, inflow=arr, parallel=True)
    b = project_events(X0_5, q, steps, seeds=seeds, inflow=arr, parallel=False)
    c = project_events(X0_5, np.broadcast_to(q, (n, 5, 5)), steps, seeds=seeds, inflow=arr)
    part = project_events(X0_5, q, steps, seeds=draw_seeds(7, np.arange(30, 40)), inflow=arr)
    for got in (b, c):
        assert np.array_equal(a.stock, got.stock) and np.array_equal(a.events, got.events)
    assert np.array_equal(a.events[30:], part.events) and np.array_equal(a.stock[30:], part.stock)
    one = step_events(X0_5, q, 0.5, arrivals=arr[0], seed=int(seeds[3]))
    assert np.array_equal(one[0], a.stock[3, 1]) and np.array_equal(one[1], a.events[3, 0])
    assert not np.array_equal(a.events[0], a.events[1])  # draws get different streams


@pytest.mark.parametrize("per_draw", [False, True])
def test_draws_in_blocks_give_the_same_result_as_one_call(monkeypatch, per_draw):
    """run_schedule calls the kernel on blocks of draws (so Ctrl-C is heard between them)."""
    import markov_migration.core.events as E

    q, n = migration5_q(), 37
    qs = q * np.linspace(0.5, 1.5, n)[:, None, None] if per_draw else q
    seeds = draw_seeds(11, np.arange(n))
    steps = [[(0.25, 0)]] * 8
    arr = np.tile([0, 20, 0, 3, 0], (8, 1))
    whole = project_events(X0_5, qs, steps, seeds=seeds, inflow=arr, inflow_cv=0.3)
    monkeypatch.setattr(E, "BLOCK_DRAW_STEPS", 8)  # one draw per block ...
    monkeypatch.setattr(E, "MIN_BLOCK_DRAWS", 5)  # ... raised to 5: blocks of 5, last of 2
    blocks = project_events(X0_5, qs, steps, seeds=seeds, inflow=arr, inflow_cv=0.3)
    for name in ("stock", "events", "arrivals"):
        assert np.array_equal(getattr(whole, name), getattr(blocks, name)), name


def test_two_piece_generator_matches_chained_exponentials():
    """A cut at c inside the step: E[x_end] = x0 expm(Q1 c) expm(Q2 (h - c))."""
    q1 = migration5_q()
    q2 = q1 * np.array([[1.0], [2.0], [0.5], [0.3], [1.5]])  # scenario: rows scaled
    c, h, n = 0.3, 1.0, 4000
    out = project_events(
        X0_5, np.stack([q1, q2])[None], [[(c, 0), (h - c, 1)]], seeds=draw_seeds(12, np.arange(n))
    )
    ref = X0_5 @ scipy.linalg.expm(q1 * c) @ scipy.linalg.expm(q2 * (h - c))
    assert np.all(np.abs(zscore(out.stock[:, 1].astype(float), ref)) < Z)
    stock_ref, events_ref = expected_step(X0_5, [(q1, c), (q2, h - c)])
    np.testing.assert_allclose(stock_ref, ref, rtol=1e-10)
    allowed = q1 > 0
    assert np.all(np.abs(zscore(out.events[:, 0][:, allowed], events_ref[allowed])) < Z)
    # with arrivals through the step (split over the pieces by duration)
    arrivals = np.array([0, 200, 0, 0, 0])
    got = np.array(
        [
            step_events_pieces(X0_5, [(q1, c), (q2, h - c)], arrivals=arrivals, seed=s)[0]
            for s in range(1500)
        ]
    )
    ref_arr = expected_step(X0_5, [(q1, c), (q2, h - c)], arrivals)[0]
    assert np.all(np.abs(zscore(got.astype(float), ref_arr)) < Z)
    # a piece of the same generator is no cut: expectation of two halves = one step
    halves = expected_step(X0_5, [(q1, 0.4), (q1, 0.6)], arrivals)
    whole = expected_step(X0_5, [(q1, 1.0)], arrivals)
    np.testing.assert_allclose(halves[0], whole[0], rtol=1e-10)
    np.testing.assert_allclose(halves[1], whole[1], rtol=1e-10)


@pytest.mark.parametrize("by_start", [True, False])
def test_ever_home_space_generator(by_start):
    q = migration5_q()
    space = EverHomeSpace(k=5, home=[RETURNED], by_start=by_start)
    n = 4 if by_start else 2
    qa = space.generator(np.stack([q, 2 * q]))
    assert qa.shape == (2, 5 * n, 5 * n)
    np.testing.assert_allclose(qa.sum(axis=-1), 0.0, atol=1e-12)
    # lumpable: from every augmented state, the total rate into model state s is q[r, s]
    for i in range(space.size):
        lumped = qa[0, i].reshape(n, 5).sum(axis=0)
        np.testing.assert_allclose(lumped, q[i % 5], atol=1e-12)
    # entering home sets the flag: no flag-0 state of a home state is entered
    flag0_home = [space.index(label, 0, RETURNED) for label in range(space.labels)]
    assert np.all(qa[0][:, flag0_home][~np.eye(space.size, dtype=bool)[:, flag0_home]] == 0)
    # the flag never goes back to 0 and the label never changes
    for label in range(space.labels):
        for r in range(5):
            i = space.index(label, 1, r)
            assert np.all(qa[0, i, : space.index(label, 1, 0)] == 0)
            assert np.all(qa[0, i, space.index(label, 1, 4) + 1 :] == 0)
    x = space.initial(np.array([10, 20, 30, 40, 50]))
    assert space.stock(x).tolist() == [10, 20, 30, 40, 50]
    assert int(space.ever_home(x)) == 0
    if by_start:
        assert int(space.home_from_abroad(x)) == 0
    else:
        with pytest.raises(ValueError, match="by_start"):
            space.home_from_abroad(x)
    with pytest.raises(ValueError, match="home states"):
        EverHomeSpace(k=5, home=[7])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x0": [1.5, 0, 0]}, "whole persons"),
        ({"x0": [-1, 0, 0]}, ">= 0"),
        ({"x0": [1, 0]}, "initial stocks must have shape"),
        ({"q": -ABSORBING_Q}, "off-diagonal"),
        ({"q": np.zeros((2, 3))}, "q must have shape"),
        ({"steps": [[(0.0, 0)]]}, "durations must be > 0"),
        ({"steps": [[(1.0, 1)]]}, "generator index"),
        ({"steps": [[]]}, "no pieces"),
        ({"inflow": [[1, 2]]}, "inflow must have shape"),
        ({"inflow": [[1, -2, 0]]}, "inflow must be finite"),
    ],
)
def test_bad_inputs_are_refused(kwargs, match):
    args = {"x0": [1, 2, 3], "q": ABSORBING_Q, "steps": [[(1.0, 0)]], "inflow": None} | kwargs
    with pytest.raises(ValueError, match=match):
        project_events(args["x0"], args["q"], args["steps"], seeds=[1], inflow=args["inflow"])


def test_fractional_and_uncertain_inflows():
    q, n = ABSORBING_Q, 4000
    steps = [[(0.5, 0)]] * 4
    inflow = np.tile([12.5, 0.0, 0.0], (4, 1))  # 12.5 persons a half-year into state 0
    out = project_events(X0_3, q, steps, seeds=draw_seeds(1, np.arange(3)), inflow=inflow)
    # cumulative rounding, as project_stocks: 12.5, 25, 37.5, 50 -> 12, 25, 38, 50
    counts = [12, 13, 13, 12]
    assert out.arrivals[0, :, 0].tolist() == inflow_counts(inflow[:, 0]).tolist() == counts
    cv = 0.5
    out = project_events(
        X0_3, q, steps, seeds=draw_seeds(2, np.arange(n)), inflow=inflow, inflow_cv=cv
    )
    total = out.arrivals.sum(axis=(1, 2)).astype(float)
    mean = inflow.sum()
    # Poisson with a gamma level (mean 1, CV cv): var = mean + (cv * mean)^2
    assert abs(zscore(total[:, None], mean)[0]) < Z
    var = mean + (cv * mean) ** 2
    se_var = var * math.sqrt(2.0 / (n - 1)) * 2.5  # heavy-ish tails: generous
    assert abs(total.var(ddof=1) - var) < Z * se_var
    balance = out.stock[:, :-1] + out.arrivals + out.events.sum(axis=-2) - out.events.sum(axis=-1)
    assert np.array_equal(out.stock[:, 1:], balance)
