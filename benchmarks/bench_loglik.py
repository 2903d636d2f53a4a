"""Cost of one log-likelihood + gradient evaluation of the panel likelihood.

Run: ``python benchmarks/bench_loglik.py [--intervals 600] [--states 5]``

Setting: K states, one generator (M = 1), ~600 distinct intervals (one piece
per row) and ~3 aggregated rows per interval. Timed, in microseconds per
log-likelihood + gradient call (best of repeated batches):

* ``numba kernel``: the fast path (one eigendecomposition + Kalbfleisch-Lawless
  gradient), called from Python and from a numba loop (no dispatch overhead);
* ``pytensor NUMBA``: the compiled PyTensor function of the log-rates (builds
  Q, calls the Op, maps the gradient to log-rates), as the sampler runs it;
* ``fallback``: the same kernel forced onto the Pade/Frechet path (a defective Q);
* ``scipy reference``: scipy.linalg.expm + expm_frechet per piece;
* ``pytensor expm graph``: the naive baseline, one ``pytensor.tensor.linalg.expm``
  per interval (Blockwise) and PyTensor's own gradient, compiled with numba.

Also times ``row_loglik_draws`` for 4000 draws (PSIS-LOO input).

``--phases`` times the kernel's phases (decomposition, exponentials, row entries,
forward pass, adjoint) at this size and at ``cav``'s; ``--base COMMIT`` compares the
kernel with an older commit's in one process (paired timing, values); both skip
the rest.
"""

# ruff: noqa: TID251, T201

import argparse
import time

import numba
import numpy as np

from markov_migration.core import likelihood as L


def make_problem(n_intervals: int, n_states: int, rows_per_interval: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    K = n_states
    allowed = ~np.eye(K, dtype=bool) & (rng.random((K, K)) < 0.75)
    frm, to = np.nonzero(allowed)
    log_rate = rng.normal(np.log(0.2), 0.7, size=frm.size)
    piece_t = np.sort(rng.uniform(0.2, 5.0, size=n_intervals))
    n_rows = n_intervals * rows_per_interval
    row_piece = np.repeat(np.arange(n_intervals), rows_per_interval)
    data = {
        "piece_q": np.zeros(n_intervals, dtype=np.int64),
        "piece_t": piece_t,
        "row_ptr": np.arange(n_rows + 1, dtype=np.int64),
        "row_piece": row_piece.astype(np.int64),
        "row_from": rng.integers(0, K, n_rows).astype(np.int64),
        "row_to": rng.integers(0, K, n_rows).astype(np.int64),
        "row_count": rng.integers(1, 40, n_rows).astype(np.float64),
    }
    return frm, to, log_rate, data


def q_of(log_rate, frm, to, K):
    Q = np.zeros((K, K))
    Q[frm, to] = np.exp(log_rate)
    Q[np.diag_indices(K)] = -Q.sum(axis=1)
    return Q[None]


def timeit_us(fn, min_time=0.5, repeats=7, clock=time.perf_counter):
    """Best (minimum) microseconds per call over `repeats` batches of >= min_time / repeats s.

    The minimum is the least disturbed by other load on the machine; ``clock``
    ``time.thread_time`` counts the CPU time of this thread only (less sensitive to
    other processes on a loaded machine than wall time).
    """
    fn()
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt > min_time / repeats:
            break
        n *= 2
    samples = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n):
            fn()
        samples.append((clock() - t0) / n * 1e6)
    return min(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=600)
    parser.add_argument("--states", type=int, default=5)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the pytensor expm graph")
    parser.add_argument(
        "--phases", action="store_true", help="only time the kernel's phases (bench and cav)"
    )
    parser.add_argument(
        "--base", metavar="COMMIT[,COMMIT]", help="only compare the kernel with these commits'"
    )
    args = parser.parse_args()
    if args.phases or args.base:
        kernel_report(args)
        return
    K = args.states
    frm, to, log_rate, data = make_problem(args.intervals, K)
    panel = tuple(data[k] for k in L.PANEL_FIELDS)
    Q = q_of(log_rate, frm, to, K)
    print(
        f"K = {K} states, {frm.size} rates, {args.intervals} intervals, "
        f"{panel[4].size} rows, M = 1; numba {numba.__version__}"
    )

    results = {}
    ll_ref, grad_ref = L.loglik_and_grad_reference(Q, *panel)

    # --- numba kernel ------------------------------------------------------
    kernel = L.native_loglik_and_grad()
    ll, grad = kernel(Q, *panel)
    assert abs(ll - ll_ref) < 1e-9 * abs(ll_ref)
    results["numba kernel (from Python)"] = timeit_us(lambda: kernel(Q, *panel))

    @numba.njit
    def loop(n, Q, a, b, c, d, e, f, g):
        s = 0.0
        for _ in range(n):
            s += kernel(Q, a, b, c, d, e, f, g)[0]
        return s

    loop(1, Q, *panel)
    n_loop = 2000
    results["numba kernel (numba loop)"] = timeit_us(lambda: loop(n_loop, Q, *panel)) / n_loop

    # --- fallback path -------------------------------------------------------
    Qd = np.zeros((1, K, K))
    Qd[0, np.arange(K - 1), np.arange(1, K)] = 0.3  # progressive, equal rates: defective
    Qd[0][np.diag_indices(K)] = -Qd[0].sum(axis=1)
    panel_d = list(panel)
    shift = np.random.default_rng(2).integers(0, 2, panel[4].size)
    panel_d[5] = np.minimum(panel[4] + shift, K - 1)  # stay or move one state forward
    panel_d = tuple(panel_d)
    assert L.loglik(Qd, *panel_d) > -np.inf
    results["numba kernel, Pade/Frechet fallback"] = timeit_us(lambda: kernel(Qd, *panel_d))

    # --- PyTensor, numba backend ---------------------------------------------
    import pytensor
    import pytensor.tensor as pt

    from markov_migration.inference.likelihood_op import panel_loglik

    theta = pt.dvector("log_rate")
    off = pt.set_subtensor(pt.zeros((K, K))[frm, to], pt.exp(theta))
    Qsym = off - pt.diag(off.sum(axis=1))
    shared = {k: pytensor.shared(v, name=k) for k, v in data.items()}
    ll_sym = panel_loglik(Qsym[None], shared)
    t0 = time.perf_counter()
    f_numba = pytensor.function([theta], [ll_sym, pytensor.grad(ll_sym, theta)], mode="NUMBA")
    f_numba(log_rate)
    compile_numba = time.perf_counter() - t0
    assert abs(f_numba(log_rate)[0] - ll_ref) < 1e-9 * abs(ll_ref)
    results["pytensor NUMBA function (Op)"] = timeit_us(lambda: f_numba(log_rate))
    # the jitted graph without PyTensor's Python call overhead (what nutpie calls);
    # its inputs are the fgraph inputs: log_rate, then the shared variables
    jit_fn = f_numba.vm.jit_fn
    by_name = {k: shared[k].get_value(borrow=True) for k in L.PANEL_FIELDS}
    order = [log_rate] + [by_name[v.name] for v in f_numba.maker.fgraph.inputs[1:]]
    results["pytensor NUMBA jit_fn (no Python wrapper)"] = timeit_us(lambda: jit_fn(*order))

    # --- scipy reference -----------------------------------------------------
    results["scipy expm_frechet reference"] = timeit_us(
        lambda: L.loglik_and_grad_reference(Q, *panel), min_time=1.0, repeats=3
    )

    # --- naive PyTensor expm graph --------------------------------------------
    compile_expm = None
    if not args.no_baseline:
        from pytensor.tensor.linalg import expm

        t_int = pt.as_tensor(data["piece_t"])
        P_all = expm(Qsym[None, :, :] * t_int[:, None, None])  # (n_intervals, K, K)
        probs = P_all[data["row_piece"], data["row_from"], data["row_to"]]
        ll_naive = (pt.as_tensor(data["row_count"]) * pt.log(probs)).sum()
        t0 = time.perf_counter()
        f_naive = pytensor.function(
            [theta], [ll_naive, pytensor.grad(ll_naive, theta)], mode="NUMBA"
        )
        f_naive(log_rate)
        compile_expm = time.perf_counter() - t0
        ll_n, g_n = f_naive(log_rate)
        assert abs(ll_n - ll_ref) < 1e-8 * abs(ll_ref)
        assert np.allclose(g_n, f_numba(log_rate)[1], rtol=1e-7, atol=1e-8)
        results["pytensor expm graph, NUMBA (baseline)"] = timeit_us(
            lambda: f_naive(log_rate), min_time=1.0, repeats=3
        )

    # --- report --------------------------------------------------------------
    base = results["numba kernel (from Python)"]
    width = max(map(len, results))
    print(f"\n{'log-likelihood + gradient':<{width}}  {'us/call':>10}  {'x kernel':>9}")
    for name, us in results.items():
        print(f"{name:<{width}}  {us:10.1f}  {us / base:9.2f}")
    if compile_expm is not None:
        speedup = (
            results["pytensor expm graph, NUMBA (baseline)"]
            / (results["pytensor NUMBA function (Op)"])
        )
        print(f"\nOp graph vs per-interval expm graph: {speedup:.1f}x faster")
        print(
            f"compile + first call: Op graph {compile_numba:.1f} s, expm graph {compile_expm:.1f} s"
        )
    print(
        f"scipy reference vs numba kernel: "
        f"{results['scipy expm_frechet reference'] / base:.0f}x slower"
    )

    # --- PSIS-LOO input ------------------------------------------------------
    rng = np.random.default_rng(1)
    Q_draws = np.stack(
        [q_of(log_rate + rng.normal(0, 0.05, frm.size), frm, to, K) for _ in range(args.draws)]
    )
    n_loo_rows = 300
    loo_panel = list(panel)
    loo_panel[2] = np.arange(n_loo_rows + 1, dtype=np.int64)
    for i in (3, 4, 5, 6):
        loo_panel[i] = panel[i][:n_loo_rows]
    L.row_loglik_draws(Q_draws[:2], *loo_panel)
    t0 = time.perf_counter()
    L.row_loglik_draws(Q_draws, *loo_panel)
    print(
        f"row_loglik_draws: {args.draws} draws x {n_loo_rows} rows "
        f"in {time.perf_counter() - t0:.2f} s"
    )


# --------------------------------------------------------------------------
# The kernel: per-phase costs and a paired comparison with an older commit
# --------------------------------------------------------------------------


def cav_problem():
    """msm's ``cav`` panel as a fit sees it (models/cav.toml, one-day gaps) at msm's MLE.

    K = 4, a real spectrum; returns ``(Q, panel)``.
    """
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from markov_migration.inputs.aggregate import aggregate, load_data
    from markov_migration.inputs.design import likelihood_data
    from markov_migration.inputs.spec import load_spec
    from tests.results import RESULTS, load_fit

    spec = load_spec(root / "models" / "cav.toml")
    panel, _ = load_data(RESULTS / "cav.csv", spec)
    data = likelihood_data(aggregate(panel, spec))
    Q = np.ascontiguousarray(load_fit("fit_cav").Q[None], dtype=float)
    return Q, tuple(np.ascontiguousarray(a) for a in data.arrays())


def phase_costs(Q, panel, n=50, repeats=15):
    """Microseconds per call of the kernel's phases (numba loops, best of ``repeats`` batches).

    ``decompose`` (eigendecomposition of the generators and their real forms), ``exponentials``
    (exp(lambda t) of every piece), ``row entries`` (P[from, to] of every row from
    the spectrum), ``forward`` (all of them, with the bookkeeping), ``log-likelihood``
    (the kernel without the gradient), ``log-likelihood + gradient``; the adjoint is
    the difference of the last two. Compiles the kernels as plain numba functions
    (about a minute).
    """
    from numba import njit

    from markov_migration.core import loglik_kernel as LK
    from markov_migration.core import spectral as S
    from markov_migration.core import spectral_real as SR

    @njit
    def real_form(Q, pq):
        mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, _ = S._decompose_used(Q, pq)
        M, K = Q.shape[0], Q.shape[1]
        kind = np.zeros((M, K), dtype=np.int64)
        Ut, Uit, Wt = np.empty((M, K, K)), np.empty((M, K, K)), np.empty((M, K, K, K))
        for m in range(M):
            if mode[m] == S._MODE_REAL:
                SR._real_form(lam_r, U_r, Ui_r, m, kind, Ut, Uit, Wt)
            else:
                SR._real_form(lam_c, U_c, Ui_c, m, kind, Ut, Uit, Wt)
        return mode, lam_r, lam_c, kind, Wt

    @njit
    def decompose(n, Q, pq):
        s = 0.0
        for _ in range(n):
            s += real_form(Q, pq)[4][0, 0, 0, 0]
        return s

    @njit
    def exponentials(n, Q, pq, pt):
        mode, lam_r, lam_c, kind, _ = real_form(Q, pq)
        K = Q.shape[1]
        er = np.empty((pq.shape[0], K))
        ec = np.empty((pq.shape[0], K), dtype=np.complex128)
        for _ in range(n):
            for p in range(pq.shape[0]):
                if mode[pq[p]] == S._MODE_REAL:
                    S._piece_exponentials(lam_r, pq[p], pt[p], er, p)
                else:
                    S._piece_exponentials(lam_c, pq[p], pt[p], ec, p)
                    SR._real_exponentials(kind, pq[p], ec, p, er)
        return er[0, 0]

    @njit
    def entries(n, Q, pq, pt, rp, rpi, rf, rt):
        mode, lam_r, lam_c, kind, Wt = real_form(Q, pq)
        K = Q.shape[1]
        er = np.empty((pq.shape[0], K))
        ec = np.empty((pq.shape[0], K), dtype=np.complex128)
        for p in range(pq.shape[0]):
            if mode[pq[p]] == S._MODE_REAL:
                S._piece_exponentials(lam_r, pq[p], pt[p], er, p)
            else:
                S._piece_exponentials(lam_c, pq[p], pt[p], ec, p)
                SR._real_exponentials(kind, pq[p], ec, p, er)
        s = 0.0
        for _ in range(n):
            for r in range(rf.shape[0]):
                p = rpi[rp[r]]
                s += SR._entry_real_form(Wt, pq[p], er, p, rf[r], rt[r])
        return s

    @njit
    def forward(n, Q, pq, pt, rp, rpi, rf, rt):
        s = 0.0
        for _ in range(n):
            s += LK._forward(Q, pq, pt, rp, rpi, rf, rt, None)[10][0]
        return s

    @njit
    def kernel(n, Q, pq, pt, rp, rpi, rf, rt, rc, grad):
        s = 0.0
        for _ in range(n):
            s += LK._loglik_kernel(Q, pq, pt, rp, rpi, rf, rt, rc, grad, None)[0]
        return s

    pq, pt, rp, rpi, rf, rt, rc = panel
    calls = {
        "decompose (and real form)": (decompose, (Q, pq)),
        "exponentials": (exponentials, (Q, pq, pt)),
        "row entries": (entries, (Q, pq, pt, rp, rpi, rf, rt)),
        "forward (all of the above)": (forward, (Q, pq, pt, rp, rpi, rf, rt)),
        "log-likelihood": (kernel, (Q, *panel, False)),
        "log-likelihood + gradient": (kernel, (Q, *panel, True)),
    }
    out = {}
    for name, (fn, args) in calls.items():
        out[name] = (
            timeit_us(
                lambda fn=fn, args=args: fn(n, *args), repeats=repeats, clock=time.thread_time
            )
            / n
        )
    out["adjoint (difference)"] = out["log-likelihood + gradient"] - out["log-likelihood"]
    return out


def load_base_kernel(commit: str):
    """The log-likelihood kernel of an older commit, imported under other module names.

    ``git show`` extracts its ``core/loglik_kernel.py``, ``core/spectral.py`` and (if
    present) ``core/spectral_real.py`` into a temporary directory; the kernel's imports
    of the latter two are redirected there.
    Returns the module (compile its ``_loglik_kernel`` by calling it).
    """
    import importlib
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench_loglik_base_"))

    def show(name):
        path = f"{commit}:markov_migration/core/{name}.py"
        res = subprocess.run(["git", "-C", str(root), "show", path], capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else None

    name = f"base_{commit}".replace("-", "_").replace("~", "_").replace("^", "_")
    kernel = show("loglik_kernel")
    for module in ("spectral_real", "spectral"):  # spectral_real since lever 3
        source = show(module)
        if source is not None:
            (tmp / f"{name}_{module}.py").write_text(source)
            kernel = kernel.replace(f"markov_migration.core.{module}\n", f"{name}_{module}\n")
            kernel = kernel.replace(f"markov_migration.core.{module} ", f"{name}_{module} ")
    (tmp / f"{name}_loglik_kernel.py").write_text(kernel)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{name}_loglik_kernel")


def compare_with_base(commits, problems, rounds=60, n=10):
    """Paired timing and values of this kernel against older commits', in one process.

    All kernels (with the fallback, ``full=True``) are called from Python in
    alternating short batches of CPU time (``time.thread_time``); the best batch of
    each is kept (the least disturbed by other load). Returns per problem and commit ``(base us, new us,
    log-likelihood relative difference, gradient difference relative to its
    largest entry)``.
    """
    from markov_migration.core import loglik_kernel as LK

    fns = {c: load_base_kernel(c)._loglik_kernel for c in commits}
    fns["new"] = LK._loglik_kernel
    out = {}
    for name, (Q, panel) in problems.items():
        values = {key: fn(Q, *panel, True, True) for key, fn in fns.items()}
        best = dict.fromkeys(fns, np.inf)
        for _ in range(rounds):
            for key, fn in fns.items():
                t0 = time.thread_time()
                for _ in range(n):
                    fn(Q, *panel, True, True)
                best[key] = min(best[key], (time.thread_time() - t0) / n * 1e6)
        ll_n, g_n, _ = values["new"]
        for c in commits:
            ll_b, g_b, _ = values[c]
            d_ll = abs(ll_n - ll_b) / abs(ll_b)
            d_g = np.abs(g_n - g_b).max() / np.abs(g_b).max()
            out[name, c] = (best[c], best["new"], d_ll, d_g)
    return out


def test_problems():
    """The panels of tests/test_likelihood.py (random and hard cases), as ``name -> (Q, panel)``."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import test_likelihood as T

    out = {}
    for case in T.CASES:
        Q, panel = case.values[0]()
        out[case.id] = (
            np.ascontiguousarray(Q, dtype=float),
            tuple(map(np.ascontiguousarray, panel)),
        )
    return out


def value_differences(commits, problems):
    """Worst differences of log-likelihood and gradient from older commits' kernels.

    Per commit: the largest relative log-likelihood difference, the largest gradient
    difference relative to the gradient's largest entry, and the largest entrywise
    relative difference over entries above 1e-8 of that scale.
    """
    from markov_migration.core import loglik_kernel as LK

    out = {}
    for c in commits:
        base = load_base_kernel(c)
        worst = [0.0, 0.0, 0.0]
        for Q, panel in problems.values():
            ll_b, g_b, _ = base._loglik_kernel(Q, *panel, True, True)
            ll_n, g_n, _ = LK._loglik_kernel(Q, *panel, True, True)
            scale = np.abs(g_b).max()
            big = np.abs(g_b) > 1e-8 * scale
            worst[0] = max(worst[0], abs(ll_n - ll_b) / abs(ll_b))
            worst[1] = max(worst[1], np.abs(g_n - g_b).max() / scale)
            worst[2] = max(worst[2], (np.abs(g_n - g_b)[big] / np.abs(g_b)[big]).max())
        out[c] = worst
    return out


def kernel_report(args):
    """``--phases`` and ``--base``: where the kernel's time goes, and the change."""
    K = args.states
    frm, to, log_rate, data = make_problem(args.intervals, K)
    problems = {
        f"bench (K = {K}, {args.intervals} intervals)": (
            q_of(log_rate, frm, to, K),
            tuple(np.ascontiguousarray(data[k]) for k in L.PANEL_FIELDS),
        ),
        "cav (K = 4, 617 intervals, 1,013 rows)": cav_problem(),
    }
    if args.phases:
        for name, (Q, panel) in problems.items():
            print(f"\nphases, {name}: us per call (best of 15 batches)")
            for phase, us in phase_costs(Q, panel).items():
                print(f"  {phase:<28} {us:8.1f}")
    if args.base:
        commits = args.base.split(",")
        print(f"\nthis kernel against {', '.join(commits)}, paired in one process (full kernels):")
        for (name, c), (b, n, d_ll, d_g) in compare_with_base(commits, problems).items():
            print(
                f"  {name} vs {c}: {b:.1f} -> {n:.1f} CPU us, new/base {n / b:.3f}; "
                f"log-likelihood rel diff {d_ll:.1e}, gradient diff / max {d_g:.1e}"
            )
        cases = test_problems()
        print(f"values on the {len(cases)} panels of tests/test_likelihood.py (worst):")
        for c, (d_ll, d_g, d_rel) in value_differences(commits, cases).items():
            print(
                f"  vs {c}: log-likelihood rel {d_ll:.1e}, gradient diff / max {d_g:.1e}, "
                f"entrywise rel (entries > 1e-8 max) {d_rel:.1e}"
            )


if __name__ == "__main__":
    main()
