"""Fitting speed, as ratios measured in one run (issue 3, benchmarks a-d).

(a) whole-process fit of msm's ``cav`` panel (4 chains x 1,000 draws + 1,000 tune)
    with ``markov-migration fit``, with a cold and a warm compile cache, vs R msm's
    whole-process maximum-likelihood fit (Rscript) of the same data;
(b) the same posterior sampled with the fast Op vs a naive PyMC model built from
    per-interval ``pytensor.tensor.linalg.expm`` graphs (same sampler, same draws),
    plus the ratio of one log-density+gradient evaluation;
(c) 8,500 vs 850,000 respondents on the same wave grid (migration5): fit time from
    a validated DataFrame (aggregation included, compile cached);
(d) a panel with continuous, all-distinct gaps (about 14,000 observations, 5 states)
    vs R msm on the same panel.

Usage::

    python benchmarks/bench_fit.py            # all (needs Rscript + msm for a and d)
    python benchmarks/bench_fit.py --only b,c

Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from markov_migration.inputs.spec import load_spec, parse_spec  # noqa: E402
from markov_migration.reference.msm import fit_msm, msm_available  # noqa: E402


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("markov-migration")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "markov_migration.cli.app"]


def export_cav(path: Path) -> None:
    subprocess.run(
        [
            "Rscript",
            "-e",
            "suppressPackageStartupMessages(library(msm)); "
            f'write.csv(cav[, c("PTNUM", "years", "state")], "{path}", row.names = FALSE)',
        ],
        check=True,
    )


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return took


def bench_a(tmp: Path) -> None:
    print("\n(a) whole-process fit of msm's cav panel: markov-migration fit vs R msm")
    if not msm_available():
        print("    skipped: Rscript with msm is not installed")
        return
    cav = tmp / "cav.csv"
    export_cav(cav)
    spec = load_spec(ROOT / "models" / "cav.toml")
    cache = tmp / "pytensor-cache"
    env = dict(
        os.environ,
        PYTENSOR_FLAGS=f"base_compiledir={cache}",
        NUMBA_CACHE_DIR=str(tmp / "numba-cache"),
    )
    cmd = [
        *cli(),
        "fit",
        str(cav),
        "--model",
        str(ROOT / "models" / "cav.toml"),
        "--out",
        str(tmp / "cav.nc"),
    ]
    cmd += [
        "--chains",
        "4",
        "--draws",
        "1000",
        "--tune",
        "1000",
        "--seed",
        "1",
        "--quiet",
        "--force",
    ]
    cold = timed_run(cmd, env)
    warm = timed_run(cmd, env)
    df = pd.read_csv(cav)
    panel = pd.DataFrame({"id": df["PTNUM"], "time": df["years"], "state": df["state"] - 1})
    ref = fit_msm(panel, spec.allowed_matrix())
    print(f"    markov-migration fit, cold cache : {cold:7.1f} s")
    print(f"    markov-migration fit, warm cache : {warm:7.1f} s")
    print(
        f"    R msm (Rscript, whole process)   : {ref.wall_seconds:7.1f} s (msm() itself {ref.seconds:.2f} s)"
    )
    print(f"    ratio cold / msm = {cold / ref.wall_seconds:.1f}x   (target <= 8x)")
    print(f"    ratio warm / msm = {warm / ref.wall_seconds:.1f}x   (target <= 2x)")


def naive_model(spec, agg):
    """PyMC model with one pytensor expm graph per distinct interval (the slow baseline)."""
    import pymc as pm
    import pytensor.tensor as pt

    from markov_migration.inference.model import generator_matrix

    t = agg.table
    intervals, which = np.unique(t["interval"].to_numpy(), return_inverse=True)
    mu = np.array([spec.priors[p].mu for p in spec.transitions])
    sigma = np.array([spec.priors[p].sigma for p in spec.transitions])
    with pm.Model(coords={"transition": list(spec.transition_labels)}) as model:
        log_rate = pm.Normal("log_rate", mu=mu, sigma=sigma, dims="transition")
        q = generator_matrix(pt.exp(log_rate), spec)
        p = pt.stack([pt.linalg.expm(q * float(dt)) for dt in intervals])
        prob = p[which, t["from"].to_numpy(), t["to"].to_numpy()]
        pm.Potential("loglik", pt.sum(t["count"].to_numpy() * pt.log(prob)))
    return model


def most_common_intervals(agg, n: int):
    """The aggregated data restricted to the rows of its ``n`` most frequent intervals."""
    import dataclasses

    t = agg.table
    top = t.groupby("interval")["count"].sum().nlargest(n).index
    sub = t[t["interval"].isin(top)].reset_index(drop=True)
    return dataclasses.replace(agg, table=sub)


def bench_b(tmp: Path) -> None:
    # A fresh PyTensor compile cache, so the naive model's compile times are real.
    if "pytensor" not in sys.modules:
        os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={tmp / 'pytensor-b'}"
    cold = "pytensor" not in sys.modules
    import pymc as pm

    from markov_migration.inference.model import build_model
    from markov_migration.inputs.aggregate import load_data

    print("\n(b) fast Op vs naive per-interval expm PyMC model (cav panel)")
    cav = tmp / "cav.csv"
    spec = load_spec(ROOT / "models" / "cav.toml")
    if not cav.exists():
        if not msm_available():
            print("    skipped: needs R's msm for the cav data")
            return
        export_cav(cav)
    _, full = load_data(cav, spec)
    print(
        f"    full panel: {len(full.table)} aggregated rows, {full.intervals.size} distinct intervals"
    )
    # The naive model of the full panel (617 expm graphs) did not finish compiling here:
    # PyTensor's rewrites of its gradient grew past 20 GiB of memory in 6 minutes. So the
    # naive model is measured on the rows of the n most common intervals, n = 10..80, and
    # its cost per evaluation (linear in n) is extrapolated to the full panel.
    print(
        "    one log-density + gradient evaluation (PyMC's default C backend for both; "
        f"{'fresh' if cold else 'shared'} PyTensor compile cache):"
    )
    print(f"    {'model':>6s} {'intervals':>9s} {'rows':>5s} {'compile s':>9s} {'us/eval':>9s}")
    naive_points = []
    for n in (10, 20, 40, 80):
        agg = most_common_intervals(full, n)
        c, e = eval_time(naive_model(spec, agg), reps=20)
        naive_points.append((n, e, c))
        print(f"    {'naive':>6s} {n:9d} {len(agg.table):5d} {c:9.1f} {e * 1e6:9.0f}")
    fast_evals = {}
    for n in (40, full.intervals.size):
        agg = most_common_intervals(full, n)
        c, e = eval_time(build_model(spec, agg), reps=500)
        fast_evals[n] = e
        print(f"    {'fast':>6s} {n:9d} {len(agg.table):5d} {c:9.1f} {e * 1e6:9.0f}")
    slope, intercept = np.polyfit(*np.array(naive_points)[:, :2].T, 1)
    naive_full = slope * full.intervals.size + intercept
    print(
        f"    naive per evaluation, extrapolated to {full.intervals.size} intervals: "
        f"{naive_full * 1e6:.0f} us ({slope * 1e6:.1f} us per interval)"
    )
    print(
        f"    ratio per evaluation, full panel (extrapolated) = "
        f"{naive_full / fast_evals[full.intervals.size]:.0f}x   (target >= 100x); "
        f"40 intervals (measured) = {naive_points[2][1] / fast_evals[40]:.0f}x"
    )
    # Sampling with the same sampler and settings (PyMC's NUTS, 1 chain, 100 tune + 100 draws),
    # whole call including PyMC's compile, on the 40-interval subset.
    agg = most_common_intervals(full, 40)
    times = {}
    for name, model in (("fast", build_model(spec, agg)), ("naive", naive_model(spec, agg))):
        with model:
            start = time.perf_counter()
            pm.sample(
                draws=100,
                tune=100,
                chains=1,
                cores=1,
                random_seed=1,
                nuts_sampler="pymc",
                progressbar=False,
                compute_convergence_checks=False,
            )
            times[name] = time.perf_counter() - start
        print(
            f"    PyMC NUTS 1 chain x 200 iterations, 40 intervals, {name:5s}: {times[name]:7.1f} s"
        )
    print(
        f"    ratio sampling (40 intervals, compile included) = {times['naive'] / times['fast']:.0f}x"
    )
    # The full panel: our fit (nutpie, 4 x (1,000 + 1,000)) and what the naive model's
    # evaluations alone would cost for the same number of gradient evaluations.
    from markov_migration.inference.fit import FitSettings, sample

    st = FitSettings(chains=4, draws=1000, tune=1000, seed=1)
    tree = sample(spec, full, st)
    steps = int(tree["sample_stats"]["n_steps"].sum())
    evals_total = 2 * steps  # warm-up draws are not kept; counted like the kept ones
    naive_sampling = evals_total * naive_full / 2  # 2 cores
    ours = st.timings["compile"] + st.timings["sample"]
    print(
        f"    full panel, ours (nutpie): compile {st.timings['compile']:.1f} s + sampling "
        f"{st.timings['sample']:.1f} s; about {evals_total:,} gradient evaluations"
    )
    print(
        f"    naive, same evaluations at {naive_full * 1e6:.0f} us on 2 cores: about "
        f"{naive_sampling:.0f} s of sampling, plus a compile that did not finish"
    )
    print(
        f"    ratio sampling, full panel (estimated) = {naive_sampling / st.timings['sample']:.0f}x; "
        f"ratio whole fit >= {(naive_sampling + naive_points[-1][2]) / ours:.0f}x "
        "(naive compile counted as the 80-interval one only)"
    )


def eval_time(model, reps: int) -> tuple[float, float]:
    """Compile time and seconds per call of the model's log-density and gradient."""
    from pymc.pytensorf import compile as pcompile

    t0 = time.perf_counter()
    f = pcompile(model.value_vars, [model.logp(), model.dlogp()])
    point = model.initial_point()
    args = [point[v.name] for v in model.value_vars]
    f(*args)
    compiled = time.perf_counter() - t0
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            f(*args)
        best = min(best, (time.perf_counter() - t0) / reps)
    return compiled, best


def bench_c(tmp: Path) -> None:
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.simulate import simulate_panel

    print("\n(c) 8,500 vs 850,000 respondents, same wave grid (migration5, 4 x 1,000 draws)")
    spec = load_spec(ROOT / "models" / "migration5.toml")
    settings = lambda: FitSettings(chains=4, draws=1000, tune=1000, seed=1)  # noqa: E731
    # Warm the in-process compile cache so both sizes measure data handling + sampling.
    small = simulate_panel(spec, 8500, seed=1)
    p = validate_panel(small, spec)
    sample(spec, aggregate(p, spec), FitSettings(chains=1, draws=10, tune=10, seed=1))
    rows = []
    for n in (8500, 850_000):
        df = small if n == 8500 else simulate_panel(spec, n, seed=2)
        start = time.perf_counter()
        panel = validate_panel(df, spec)
        agg = aggregate(panel, spec)
        prep = time.perf_counter() - start
        s = settings()
        sample(spec, agg, s)
        total = time.perf_counter() - start
        rows.append(
            (n, len(df), len(agg.table), agg.intervals.size, prep, s.timings["sample"], total)
        )
        print(
            f"    {n:>9,} respondents ({len(df):,} rows -> {len(agg.table):,} aggregated rows, "
            f"{agg.intervals.size} intervals): validate+aggregate {prep:5.1f} s, "
            f"sampling {s.timings['sample']:5.1f} s, total {total:5.1f} s"
        )
    print(f"    ratio total 850,000 / 8,500 = {rows[1][-1] / rows[0][-1]:.2f}x   (target <= 1.3x)")
    print(f"    ratio sampling only        = {rows[1][5] / rows[0][5]:.2f}x")


DISTINCT = """
name = "distinct5"
states = ["abroad", "transit", "swing", "returned", "reemigrated"]
[transitions]
abroad = ["transit", "swing", "returned"]
transit = ["abroad", "swing", "returned"]
swing = ["abroad", "returned"]
returned = ["reemigrated"]
reemigrated = ["returned", "swing"]
[data]
resolution = 1e-9   # keep every gap distinct
"""


def bench_d(tmp: Path) -> None:
    from markov_migration.core.simulate import simulate_paths
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel

    print("\n(d) continuous, all-distinct gaps (~14,000 observations, 5 states) vs R msm")
    spec = parse_spec(DISTINCT)
    rates = load_spec(ROOT / "models" / "migration5.toml").rate_matrix()
    rng = np.random.default_rng(7)
    n, w = 3500, 4
    times = np.cumsum(rng.uniform(0.2, 1.5, (n, w)), axis=1)
    start = rng.integers(0, 3, n)
    sim = simulate_paths(
        rates[None, None], np.zeros(n, dtype=np.int64), start, times[:, 0], times, seed=3
    )
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), w),
            "time": times.ravel(),
            "state": sim.observed.ravel().astype(int),
        }
    )
    df["state"] = np.array(spec.states)[df["state"]]
    panel = validate_panel(df, spec)
    agg = aggregate(panel, spec)
    print(f"    {len(df):,} observations, {agg.intervals.size:,} distinct intervals")
    s = FitSettings(chains=4, draws=1000, tune=1000, seed=1)
    t0 = time.perf_counter()
    exact = sample(spec, agg, s)
    ours = time.perf_counter() - t0
    t = s.timings
    print(
        f"    markov-migration (compile {t['compile']:.1f} s + sampling {t['sample']:.1f} s): {ours:7.1f} s"
    )
    # The package's default: gaps rounded to one day (DISTINCT without its resolution line).
    day_spec = parse_spec(DISTINCT.replace("resolution = 1e-9   # keep every gap distinct", ""))
    day = aggregate(validate_panel(df, day_spec), day_spec)
    s_day = FitSettings(chains=4, draws=1000, tune=1000, seed=1)
    t0 = time.perf_counter()
    rounded = sample(day_spec, day, s_day)
    ours_day = time.perf_counter() - t0
    q0 = exact["posterior"]["rate"].mean(("chain", "draw")).values
    q1 = rounded["posterior"]["rate"].mean(("chain", "draw")).values
    sd = exact["posterior"]["rate"].std(("chain", "draw")).values
    print(
        f"    same panel, gaps rounded to 1 day (the default): {day.intervals.size:,} distinct "
        f"intervals, {ours_day:7.1f} s; posterior means move by at most "
        f"{np.max(np.abs(q1 - q0) / sd):.2f} posterior sd"
    )
    if not msm_available():
        print("    msm skipped: Rscript with msm is not installed")
        return
    ref = fit_msm(panel.data.assign(state=panel.data["state"]), spec.allowed_matrix())
    print(f"    R msm: {ref.wall_seconds:7.1f} s (msm() itself {ref.seconds:.1f} s)")
    print(
        f"    ratio msm / ours, all gaps distinct = {ref.wall_seconds / ours:.1f}x   (target >= 10x)"
    )
    print(f"    ratio msm / ours, gaps rounded to 1 day = {ref.wall_seconds / ours_day:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    args = parser.parse_args()
    which = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-fit-"))
    try:
        for key, fn in (("a", bench_a), ("b", bench_b), ("c", bench_c), ("d", bench_d)):
            if key in which:
                fn(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
