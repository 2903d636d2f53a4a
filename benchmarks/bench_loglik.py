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


def timeit_us(fn, min_time=0.5, repeats=7):
    """Best (minimum) microseconds per call over `repeats` batches of >= min_time / repeats s.

    The minimum is the least disturbed by other load on the machine.
    """
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / repeats:
            break
        n *= 2
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return min(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=600)
    parser.add_argument("--states", type=int, default=5)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the pytensor expm graph")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
