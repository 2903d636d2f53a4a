"""Simulator tests: exact paths against expm, design draws, seeds, [simulate] validation.

Tolerances: an empirical frequency p_hat from n independent draws is compared with
its exact value p within 4 binomial standard errors sqrt(p (1 - p) / n) (plus 1e-9);
with a few dozen such checks the chance of a false failure is below 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from markov_migration.core.simulate import simulate_paths
from markov_migration.errors import InputError, SpecError
from markov_migration.inputs.simulate import simulate_panel, simulate_paths_for_spec
from markov_migration.inputs.simulate_design import parse_design
from markov_migration.inputs.spec import load_spec, parse_spec

Z = 4.0

TOY = """\
name = "toy"
states = ["well", "ill", "dead"]

[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]

[rates]
"well->ill" = 0.3
"well->dead" = 0.05
"ill->well" = 0.5
"ill->dead" = 0.2

"""


def toy_spec(extra: str = "", rates: bool = True) -> object:
    text = TOY if rates else TOY.split("[rates]")[0]
    return parse_spec(text + extra, path="toy.toml")


def assert_binomial(counts: np.ndarray, n: int, p: np.ndarray) -> None:
    """Empirical shares counts / n match probabilities p within Z standard errors."""
    p = np.asarray(p, dtype=float)
    se = np.sqrt(p * (1 - p) / n) + 1e-9
    z = np.abs(counts / n - p) / se
    assert np.all(z < Z), f"empirical {counts / n} vs exact {p} (z = {z})"


def transition_counts(start: np.ndarray, end: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(start * k + end, minlength=k * k).reshape(k, k)


# -- core: exact paths -------------------------------------------------------------
@pytest.mark.parametrize("gap", [0.4, 1.7])
def test_toy_transition_frequencies_match_expm(gap):
    q = np.array([[-0.35, 0.3, 0.05], [0.5, -0.7, 0.2], [0.0, 0.0, 0.0]])
    n = 60_000
    start = np.repeat([0, 1], n // 2)
    obs = np.column_stack([np.zeros(n), np.full(n, gap)])
    paths = simulate_paths(q[None, None], np.zeros(n, int), start, np.zeros(n), obs, seed=11)
    assert np.array_equal(paths.observed[:, 0], start)
    counts = transition_counts(start, paths.observed[:, 1].astype(int), 3)
    p = expm(q * gap)
    for r in (0, 1):
        assert_binomial(counts[r], n // 2, p[r])


def test_absorbing_state_stops_the_path():
    q = np.array([[-1.0, 1.0], [0.0, 0.0]])
    n = 5_000
    paths = simulate_paths(
        q[None, None], np.zeros(n, int), np.zeros(n, int), np.zeros(n),
        np.column_stack([np.zeros(n), np.full(n, 50.0)]), seed=2,
    )  # fmt: skip
    assert np.all(paths.observed[:, 1] == 1)  # P(still alive after 50 mean sojourns) ~ 2e-22
    assert np.all(paths.n_jumps == 1)
    times, states = paths.path(0)
    assert states.tolist() == [0, 1] and times[0] == 0.0 and 0 < times[1] < 50


def test_migration5_transition_frequencies_match_expm(migration5):
    q = migration5.rate_matrix()
    k = migration5.n_states
    n_per_state, gap = 12_000, 1.0
    start = np.repeat(np.arange(k), n_per_state)
    n = start.size
    obs = np.column_stack([np.full(n, 2023.5), np.full(n, 2023.5 + gap)])
    paths = simulate_paths(q[None, None], np.zeros(n, int), start, obs[:, 0], obs, seed=5)
    counts = transition_counts(start, paths.observed[:, 1].astype(int), k)
    p = expm(q * gap)
    for r in range(k):
        assert_binomial(counts[r], n_per_state, p[r])


def test_period_cut_matches_product_of_expm():
    q1 = np.array([[-0.4, 0.3, 0.1], [0.6, -0.8, 0.2], [0.0, 0.0, 0.0]])
    q2 = np.array([[-1.5, 1.2, 0.3], [0.1, -0.2, 0.1], [0.0, 0.0, 0.0]])
    cut, t0, t1 = 2023.3, 2022.8, 2024.0
    n = 60_000
    obs = np.column_stack([np.full(n, t0), np.full(n, t1)])
    paths = simulate_paths(
        np.stack([q1, q2])[None], np.zeros(n, int), np.zeros(n, int), obs[:, 0], obs,
        period_cuts=[cut], seed=8,
    )  # fmt: skip
    counts = np.bincount(paths.observed[:, 1], minlength=3)
    exact = (expm(q1 * (cut - t0)) @ expm(q2 * (t1 - cut)))[0]
    assert_binomial(counts, n, exact)
    # The constant-rate answer is far away: the cut is really applied.
    assert np.abs(counts / n - expm(q1 * (t1 - t0))[0]).max() > 0.05


def test_numeric_covariate_scales_intensities():
    q = np.array([[-0.5, 0.5], [0.0, 0.0]])
    n = 40_000
    x = np.repeat([[0.0], [1.0]], n // 2, axis=0)
    log_hr = np.zeros((1, 2, 2))
    log_hr[0, 0, 1] = math.log(3.0)
    obs = np.column_stack([np.zeros(n), np.ones(n)])
    paths = simulate_paths(
        q[None, None], np.zeros(n, int), np.zeros(n, int), np.zeros(n), obs,
        covariate_values=x, log_hazard_ratios=log_hr, seed=4,
    )  # fmt: skip
    for half, rate in ((slice(0, n // 2), 0.5), (slice(n // 2, n), 1.5)):
        moved = int((paths.observed[half, 1] == 1).sum())
        assert_binomial(np.array([moved]), n // 2, np.array([1 - math.exp(-rate)]))


def test_history_and_observed_states_agree():
    q = np.array([[-0.9, 0.6, 0.3], [0.7, -0.9, 0.2], [0.4, 0.4, -0.8]])
    n = 3_000
    obs = np.tile([0.0, 0.5, 2.0, 2.0, 3.5], (n, 1))
    obs[::3, 2] = np.nan  # unobserved in the middle
    paths = simulate_paths(
        q[None, None], np.zeros(n, int), np.zeros(n, int), np.zeros(n), obs, seed=9
    )
    assert np.all(paths.observed[::3, 2] == -1)
    truth = paths.states_at(obs)
    seen = ~np.isnan(obs)
    assert np.array_equal(truth[seen], paths.observed[seen])
    assert paths.history_ptr[-1] == paths.history_time.size == paths.n_jumps.sum() + n
    times, states = paths.path(1)
    assert np.all(np.diff(times) > 0) and np.all(states[1:] != states[:-1])


def test_core_is_reproducible_and_independent_of_chunking():
    q = np.array([[-0.9, 0.6, 0.3], [0.7, -0.9, 0.2], [0.4, 0.4, -0.8]])
    n = 2_000
    obs = np.tile([0.0, 1.0, 2.0], (n, 1))
    args = (q[None, None], np.zeros(n, int), np.zeros(n, int), np.zeros(n), obs)
    a = simulate_paths(*args, seed=3)
    b = simulate_paths(*args, seed=3, chunk_size=77)
    c = simulate_paths(*args, seed=4)
    assert np.array_equal(a.observed, b.observed)
    assert np.array_equal(a.history_time, b.history_time)
    assert not np.array_equal(a.history_time, c.history_time)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"obs_times": np.array([[1.0, 0.5]])}, "non-decreasing"),
        ({"obs_times": np.array([[-1.0, 0.5]])}, "before its subject's start"),
        ({"pattern": np.array([1])}, "pattern"),
        ({"start_state": np.array([3])}, "start_state"),
        ({"period_cuts": [1.0]}, "cut points"),
    ],
)
def test_core_rejects_bad_arguments(kwargs, message):
    q = np.array([[-1.0, 1.0], [1.0, -1.0]])
    args = {
        "intensities": q[None, None], "pattern": np.array([0]), "start_state": np.array([0]),
        "start_time": np.array([0.0]), "obs_times": np.array([[0.0, 1.0]]),
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate_paths(**args)


# -- layer 2: panels -----------------------------------------------------------------
def test_panel_shape_and_columns(migration5):
    panel = simulate_panel(migration5, 500, seed=1)
    assert list(panel.columns) == ["id", "time", "state", "host_country"]
    assert panel["id"].nunique() == 500
    assert set(panel["state"]) <= set(migration5.states)
    assert panel.groupby("id")["time"].apply(lambda t: t.is_monotonic_increasing).all()
    waves = np.array(parse_design(migration5).waves)
    off = np.abs(panel["time"].to_numpy()[:, None] - waves).min(axis=1)
    assert off.max() <= 0.08 + 1e-9  # within the jitter


def test_same_seed_same_panel_other_seed_differs(migration5):
    a = simulate_panel(migration5, 2_000, seed=42)
    b = simulate_panel(migration5, 2_000, seed=42)
    c = simulate_panel(migration5, 2_000, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    # The panel does not depend on whether the history is kept or a bar is shown.
    d = simulate_paths_for_spec(migration5, 2_000, seed=42, history=True).panel
    pd.testing.assert_frame_equal(a, d)


def test_attrition_and_late_entry_shares():
    spec = toy_spec("[simulate]\nwaves = [0, 1, 2, 3]\nattrition = 0.2\nlate_entry = 0.3\n")
    n = 20_000
    sim = simulate_paths_for_spec(spec, n, seed=7, history=False)
    seen = sim.interviewed
    late = ~seen[:, 0]
    assert_binomial(np.array([late.sum()]), n, np.array([0.3]))
    # Among those interviewed at wave w, the share also interviewed at w + 1 is 1 - 0.2.
    for w in range(3):
        at = seen[:, w]
        assert_binomial(np.array([(at & seen[:, w + 1]).sum()]), int(at.sum()), np.array([0.8]))
    # Monotone dropout: nobody comes back after missing a wave once in.
    joined = np.maximum.accumulate(seen, axis=1)
    gone = joined & ~seen
    assert not np.any(gone[:, :-1] & seen[:, 1:])
    assert sim.panel["id"].nunique() == n


def test_initial_shares_and_override_arguments():
    spec = toy_spec("[simulate]\nwaves = [0, 2]\ninitial = { well = 0.7, ill = 0.3 }\n")
    n = 20_000
    sim = simulate_paths_for_spec(spec, n, seed=3, waves=[0.0, 0.5, 1.0], attrition=0.0)
    assert sim.design.waves == (0.0, 0.5, 1.0)
    first = sim.paths.observed[:, 0]
    assert_binomial(np.bincount(first, minlength=3), n, np.array([0.7, 0.3, 0.0]))
    assert sim.interviewed.all()
    with pytest.raises(InputError, match="waves"):
        simulate_panel(spec, 10, waves=[1.0])
    with pytest.raises(InputError, match="attrition"):
        simulate_panel(spec, 10, attrition=1.5)
    with pytest.raises(InputError, match="seed"):
        simulate_panel(spec, 10, seed=-1)


def test_rates_override_and_missing_rates():
    spec = toy_spec(rates=False)
    with pytest.raises(SpecError, match=r"has no \[rates\] table"):
        simulate_panel(spec, 10)
    panel = simulate_panel(spec, 50, rates={"well->ill": 0.1, "ill->well": 0.2}, seed=1)
    assert set(panel["state"]) <= {"well", "ill"}
    with pytest.raises(InputError, match="not an allowed transition"):
        simulate_panel(spec, 10, rates={"dead->well": 0.1})


def test_state_codes_and_renamed_columns():
    spec = toy_spec('[data]\nid = "PTNUM"\ntime = "years"\nstate = "code"\nstate_codes = true\n')
    panel = simulate_panel(spec, 30, seed=1)
    assert list(panel.columns) == ["PTNUM", "years", "code"]
    assert set(panel["code"]) <= {1, 2, 3}


def empirical_rate(sim, r: int, s: int, mask: np.ndarray) -> tuple[float, float]:
    """MLE of q_rs (events / time at risk in r) over the true paths of masked subjects."""
    paths = sim.paths
    ptr, jt, js = paths.history_ptr, paths.history_time, paths.history_state
    events = exposure = 0.0
    for i in np.flatnonzero(mask):
        a, b = ptr[i], ptr[i + 1]
        t, st = jt[a:b], js[a:b]
        ends = np.r_[t[1:], paths.end_time[i]]
        exposure += float(np.sum((ends - t)[st == r]))
        events += float(np.sum((st[:-1] == r) & (st[1:] == s)))
    return events / exposure, events


def test_categorical_covariate_effect_changes_rates():
    spec = toy_spec(
        "[simulate]\nwaves = [0, 3]\n"
        "[simulate.covariates.reason]\n"
        "levels = { draft = 0.5, work = 0.5 }\n"
        'effects = { "work:well->ill" = 2.5 }\n'
    )
    sim = simulate_paths_for_spec(spec, 6_000, seed=12)
    design = sim.design
    assert design.covariates[0].reference == "draft"
    assert set(sim.panel["reason"]) == {"draft", "work"}
    work = (sim.subjects["reason"] == "work").to_numpy()
    for mask, expected in ((~work, 0.3), (work, 0.75)):
        rate, events = empirical_rate(sim, 0, 1, mask)
        # Poisson: the rate estimate has relative sd 1 / sqrt(events).
        assert abs(rate / expected - 1) < Z / math.sqrt(events)
    rate, events = empirical_rate(sim, 0, 2, work)  # untouched transition
    assert abs(rate / 0.05 - 1) < Z / math.sqrt(events)


def test_numeric_covariate_effect_is_centred_at_the_mean():
    spec = toy_spec(
        "[simulate]\nwaves = [0, 3]\n"
        "[simulate.covariates.age]\n"
        "normal = { mean = 35, sd = 10 }\n"
        'effects = { "ill->well" = 0.95 }\n'
    )
    sim = simulate_paths_for_spec(spec, 6_000, seed=13)
    age = sim.subjects["age"].to_numpy()
    assert abs(age.mean() - 35) < Z * 10 / math.sqrt(age.size)
    for mask, at in ((age < 30, 25.0), (age >= 40, 45.0)):
        rate, events = empirical_rate(sim, 1, 0, mask)
        mean_age = age[mask].mean()
        expected = 0.5 * 0.95 ** (mean_age - 35)
        # The mean hazard ratio over a band is within 1% of the ratio at the band mean.
        assert abs(rate / expected - 1) < Z / math.sqrt(events) + 0.01, at


def test_group_effects_fixed_and_random(migration5):
    sim = simulate_paths_for_spec(migration5, 20_000, seed=21)
    hosts = sim.subjects["host_country"].to_numpy()
    starts = sim.subjects["start_state"].to_numpy()
    # Hosts follow the first-wave state: transit countries only for transit starters.
    assert set(hosts[starts == "transit"]) == {
        "Georgia",
        "Armenia",
        "Turkey",
        "Kazakhstan",
        "Montenegro",
    }
    q = migration5.rate_matrix()
    t = migration5.index("transit")
    for host, hr in (("Georgia", 1.276), ("Kazakhstan", 0.751)):
        mask = hosts == host
        for s in (migration5.index("abroad"), migration5.index("returned")):
            rate, events = empirical_rate(sim, t, s, mask)
            assert abs(rate / (q[t, s] * hr) - 1) < Z / math.sqrt(events)

    spec = toy_spec(
        "[simulate]\nwaves = [0, 2]\n"
        '[simulate.groups]\ncolumn = "site"\n'
        "levels = { a = 0.25, b = 0.25, c = 0.25, d = 0.25 }\nsd = 0.8\n"
        'transitions = ["well->ill"]\n'
    )
    one = simulate_paths_for_spec(spec, 100, seed=5)
    two = simulate_paths_for_spec(spec, 100, seed=5)
    other = simulate_paths_for_spec(spec, 100, seed=6)
    effects = one.group_log_hr[:, 0, 1]
    assert np.array_equal(effects, two.group_log_hr[:, 0, 1])
    assert not np.array_equal(effects, other.group_log_hr[:, 0, 1])
    assert np.count_nonzero(one.group_log_hr) == 4  # only well->ill has random effects
    assert np.allclose(one.intensities[:, 0, 0, 1], 0.3 * np.exp(effects))


def test_period_effects():
    text = TOY.replace("[transitions]", "periods = [1.0]\n\n[transitions]") + (
        '[simulate]\nwaves = [0, 2]\nperiod_effects = { "well->ill" = [1.0, 3.0] }\n'
    )
    spec = parse_spec(text, path="toy.toml")
    sim = simulate_paths_for_spec(spec, 30_000, seed=2, waves=[0.0, 2.0], attrition=0.0)
    q = spec.rate_matrix()
    q2 = q.copy()
    q2[0, 1] *= 3
    np.fill_diagonal(q2, 0)
    np.fill_diagonal(q2, -q2.sum(axis=1))
    starts = sim.paths.observed[:, 0]
    well = starts == 0
    counts = np.bincount(sim.paths.observed[well, 1], minlength=3)
    t0 = sim.interview_times[well, 0]
    # Interview dates are exactly the waves here (no jitter).
    assert np.allclose(t0, 0.0)
    exact = (expm(q * 1.0) @ expm(q2 * 1.0))[0]
    assert_binomial(counts, int(well.sum()), exact)


# -- [simulate] validation -------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "message", "line"),
    [
        ("[simulate]\nwave = [0, 1]\n", "unknown key 'wave'", 15),
        ("[simulate]\nwaves = [1, 0]\n", "strictly increasing", 15),
        ("[simulate]\nwaves = [0, 1]\njitter = 0.6\n", "jitter 0.6 must be below half", 16),
        ("[simulate]\nwaves = [0, 1]\njitter = -1\n", "jitter must be a number >= 0", 16),
        ("[simulate]\nattrition = 1.0\n", "attrition must be a probability", 15),
        ("[simulate]\nlate_entry = -0.1\n", "late_entry must be a probability", 15),
        ("[simulate]\ninitial = { well = 0.5, ill = 0.3 }\n", "shares sum to 0.8, not 1", 15),
        (
            "[simulate]\ninitial = { well = 0.5, sick = 0.5 }\n",
            "'sick' is not a declared state",
            15,
        ),
        ("[simulate]\ninitial = { well = 1.5, ill = -0.5 }\n", "ill must be a number >= 0", 15),
        ("[simulate.covariates.reason]\nlevels = { a = 0.5, b = 0.4 }\n", "shares sum to 0.9", 15),
        (
            "[simulate.covariates.reason]\nlevels = { a = 0.5, b = 0.5 }\n"
            'effects = { "c:well->ill" = 2 }\n',
            "'c' is not a level",
            16,
        ),
        (
            "[simulate.covariates.reason]\nlevels = { a = 0.5, b = 0.5 }\n"
            'effects = { "a:well->ill" = 2 }\n',
            "'a' is the reference level",
            16,
        ),
        (
            "[simulate.covariates.reason]\nlevels = { a = 0.5, b = 0.5 }\n"
            'effects = { "b:dead->well" = 2 }\n',
            "'dead->well' is not an allowed transition",
            16,
        ),
        (
            "[simulate.covariates.reason]\nlevels = { a = 0.5, b = 0.5 }\n"
            'effects = { "b:well->ill" = -2 }\n',
            "must be a positive number",
            16,
        ),
        ("[simulate.covariates.age]\nnormal = { mean = 35 }\n", "normal needs mean and sd", 15),
        (
            "[simulate.covariates.age]\nnormal = { mean = 35, sd = 1 }\n"
            'effects = { "x:well->ill" = 2 }\n',
            "must have the form 'from->to'",
            16,
        ),
        (
            "[simulate.covariates.age]\nnormal = { mean = 35, sd = 1 }\nlevels = { a = 1 }\n",
            "exactly one of levels",
            14,
        ),
        ("[simulate.groups]\nlevels = { a = 0.5, b = 0.5 }\n", "needs column", 14),
        (
            '[simulate.groups]\ncolumn = "site"\nlevels = { a = 0.5, b = 0.5 }\n'
            'effects = { "a:well->ill" = 2 }\nsd = 1\n',
            "either effects",
            18,
        ),
        (
            '[simulate.groups]\ncolumn = "site"\nlevels = { a = 0.5, b = 0.5 }\nbogus = 1\n',
            "unknown key 'bogus'",
            17,
        ),
        ('[simulate]\nperiod_effects = { "well->ill" = [1, 2] }\n', "needs 'periods'", 15),
    ],
)
def test_invalid_simulate_tables(table, message, line):
    spec = toy_spec(table)
    with pytest.raises(SpecError, match=message) as info:
        simulate_panel(spec, 10)
    assert info.value.path == "toy.toml"
    assert info.value.line == line, str(info.value)


def test_model_covariate_must_be_simulated_consistently():
    base = TOY.replace(
        "[rates]",
        '[covariates.reason]\nkind = "categorical"\nlevels = ["draft", "work"]\n'
        'transitions = ["well->ill"]\n\n[rates]',
    )
    with pytest.raises(SpecError, match="has no \\[simulate.covariates.reason\\]"):
        simulate_panel(parse_spec(base), 10)
    wrong_levels = base + "[simulate.covariates.reason]\nlevels = { draft = 0.5, other = 0.5 }\n"
    with pytest.raises(SpecError, match="differ from the model's"):
        simulate_panel(parse_spec(wrong_levels), 10)
    wrong_transition = base + (
        "[simulate.covariates.reason]\nlevels = { draft = 0.5, work = 0.5 }\n"
        'effects = { "work:ill->well" = 2 }\n'
    )
    with pytest.raises(SpecError, match="does not let this act on 'ill->well'"):
        simulate_panel(parse_spec(wrong_transition), 10)
    numeric = base + "[simulate.covariates.reason]\nnormal = { mean = 0, sd = 1 }\n"
    with pytest.raises(SpecError, match="declares 'reason' categorical"):
        simulate_panel(parse_spec(numeric), 10)
    ok = base + "[simulate.covariates.reason]\nlevels = { draft = 0.5, work = 0.5 }\n"
    assert "reason" in simulate_panel(parse_spec(ok), 10).columns


def test_error_names_the_model_file(models_dir):
    spec = load_spec(models_dir / "migration5.toml")
    assert spec.path is not None
    design = parse_design(spec)
    assert design.waves == (2022.70, 2023.55, 2024.55)
    assert design.groups is not None and design.groups.column == "host_country"
