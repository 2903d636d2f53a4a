"""Cost of one forward-algorithm log-likelihood + gradient against the pure-panel kernel.

Run: ``python benchmarks/bench_forward.py [--repeat 200]``

Data: the calibrated example panel ``examples/outrush_synthetic.csv`` (8,500
respondents, 3 waves, 5 states, intervals rounded to the model's resolution of
one day) under ``models/migration5.toml``.

* ``pure panel``: :func:`markov_migration.core.likelihood.loglik_and_grad` on
  the aggregated transition counts (K = 5), as today's plain fit;
* ``forward``: :func:`markov_migration.core.forward.loglik_and_grad` on the
  aggregated histories of the same panel with ``returned`` split into 2
  Coxian phases (K = 6 hidden states, phase emission table, initial
  distribution over hidden states);
* ``forward, no phases``: the forward kernel on the K = 5 model (pi = ones),
  to separate the cost of the algorithm from the cost of the larger K;
* ``split``: the same two on the tree split at renewal points
  (:func:`markov_migration.core.renewal.split_histories`: records of a state
  without phases have one possible true state), as the sampler's Op uses it.

Both timings include the Python wrappers' input checks; ``unchecked`` is the
forward call with ``check=False``, as an Op that validated its data once would
make it. The best of ``--repeat`` calls is reported, then the ratio.

``--phases`` times the forward kernel's phases on the split phased tree (the
sampler's problem) in numba loops: decomposition, piece exponentials and
transition matrices, forward pass over the nodes, reverse pass over the nodes,
the per-piece adjoint and back-transformation to ``dQ``. ``--base COMMIT``
compares the kernel with an older commit's in one process (paired CPU time,
alternating batches; values on the bench problem and on the test problems).
Both skip the rest.
"""

# ruff: noqa: TID251, T201

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from markov_migration.core import forward as F
from markov_migration.core import likelihood as L
from markov_migration.core import phases as PH
from markov_migration.core.renewal import renewal_states, split_histories
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.design import likelihood_data
from markov_migration.inputs.panel import load_panel
from markov_migration.inputs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def best_time(fn, repeat: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def phased_problem():
    """The split phased tree of the bench (K = 6) as ``(Q, pi, B, split histories)``."""
    spec = load_spec(ROOT / "models" / "migration5.toml")
    panel = load_panel(ROOT / "examples" / "outrush_synthetic.csv", spec)
    states = list(spec.states)
    d = panel.data
    hist = F.aggregate_histories(
        d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(), resolution=spec.resolution
    )
    lay = PH.phase_expansion(spec.allowed_matrix(), {states.index("returned"): 2})
    hidden_rates = [
        1.0 if r == s else spec.rates[(r, s)] * (0.1 if phase == 1 else 1.0)
        for (r, s), phase in zip(lay.rate_observed, lay.phase[lay.rate_from], strict=True)
    ]
    Qh = PH.generator_from_rates(lay.observed.size, lay.rate_from, lay.rate_to, hidden_rates)
    B = F.emission_table(lay.emission, [[s] for s in range(len(states))])
    init = spec.simulation.get("initial", {})
    pi_obs = np.array([float(init.get(s, 0.0)) for s in states]) + 0.02
    pi = (pi_obs / pi_obs.sum())[lay.observed] / np.bincount(lay.observed)[lay.observed]
    split = split_histories(hist, renewal_states(B != 0))
    Q = np.ascontiguousarray(np.asarray(Qh, dtype=float).reshape(-1, *Qh.shape[-2:]))
    return Q, pi, np.ascontiguousarray(B, dtype=float), tuple(map(np.ascontiguousarray, split))


def batch_us(fn, n, repeats=15):
    """Best CPU microseconds per call of ``fn(n)`` (a numba loop of ``n`` calls)."""
    fn(1)
    best = np.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn(n)
        best = min(best, (time.thread_time() - t0) / n * 1e6)
    return best


def phase_costs(Q, pi, B, hist, n=50):
    """Microseconds per call of the forward kernel's phases (numba loops, best of 15 batches).

    Cumulative stages, each timed as a loop compiled here (about a minute):
    ``decompose`` (eigendecomposition), ``pieces`` (and exponentials and the
    transition matrices of every slot), ``forward nodes`` (all the above and the
    forward pass), ``log-likelihood`` (the kernel without the gradient),
    ``reverse nodes`` (... and the reverse pass), ``log-likelihood + gradient``
    (the kernel); the phases are the differences.
    """
    from numba import njit

    from markov_migration.core import forward_kernel as FK
    from markov_migration.core import spectral as S

    pq, pt, par, pc, ty, code, cnt = hist

    @njit
    def decompose(n, Q, pq):
        s = 0.0
        for _ in range(n):
            s += S._decompose_used(Q, pq)[1][0, 0]
        return s

    @njit
    def pieces(n, Q, pq, pt, par, pc, ty, cnt):
        s = 0.0
        for _ in range(n):
            tree = FK._tree(par, pc, ty, cnt, pq.shape[0])
            s += FK._pieces(Q, pq, pt, tree[3], tree[4], tree[5])[3][0, 0, 0]
        return s

    @njit
    def forward_nodes(n, Q, pi, B, pq, pt, par, pc, ty, code, cnt):
        s = 0.0
        for _ in range(n):
            tree = FK._tree(par, pc, ty, cnt, pq.shape[0])
            T = FK._pieces(Q, pq, pt, tree[3], tree[4], tree[5])[3]
            s += FK._forward_nodes(T, pi, B, par, ty, pc, code, tree)[2][0]
        return s

    @njit
    def reverse_nodes(n, Q, pi, B, pq, pt, par, pc, ty, code, cnt):
        s = 0.0
        for _ in range(n):
            tree = FK._tree(par, pc, ty, cnt, pq.shape[0])
            T = FK._pieces(Q, pq, pt, tree[3], tree[4], tree[5])[3]
            ahat, pre, cval, Y, zdone, _ = FK._forward_nodes(T, pi, B, par, ty, pc, code, tree)
            s += FK._loglik_sum(par, ty, tree[0], cval, False)
            G = FK._reverse_nodes(T, B, par, ty, code, tree, ahat, pre, cval, Y, zdone, False)[0]
            s += G[0, 0, 0]
        return s

    @njit
    def kernel(n, Q, pi, B, pq, pt, par, pc, ty, code, cnt, grad):
        s = 0.0
        for _ in range(n):
            s += FK.forward_kernel(Q, pi, B, pq, pt, par, pc, ty, code, cnt, False, grad)[0]
        return s

    node_args = (Q, pi, B, pq, pt, par, pc, ty, code, cnt)
    stages = {
        "decompose": lambda k: decompose(k, Q, pq),
        "tree, exponentials, T": lambda k: pieces(k, Q, pq, pt, par, pc, ty, cnt),
        "forward nodes": lambda k: forward_nodes(k, *node_args),
        "log-likelihood (sum of logs)": lambda k: kernel(k, *node_args, False),
        "reverse nodes": lambda k: reverse_nodes(k, *node_args),
        "adjoint (to dQ)": lambda k: kernel(k, *node_args, True),
    }
    cumulative = {name: batch_us(fn, n) for name, fn in stages.items()}
    out, last = {}, 0.0
    for name, us in cumulative.items():
        out[name] = us - last
        last = us
    out["log-likelihood + gradient (total)"] = last
    return out


def load_base_kernel(commit: str):
    """The forward kernel of an older commit, imported under another module name.

    ``git show`` extracts its ``core/forward_kernel.py`` into a temporary directory
    (its imports of the other core modules stay: the spectral helpers it uses are
    unchanged). Returns the module.
    """
    res = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:markov_migration/core/forward_kernel.py"],
        capture_output=True,
        text=True,
        check=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_forward_base_"))
    name = "base_forward_kernel_" + "".join(ch if ch.isalnum() else "_" for ch in commit)
    (tmp / f"{name}.py").write_text(res.stdout)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(name)


def value_diff(a, b):
    """(relative log-likelihood difference, largest gradient difference / largest entry)."""
    d_ll = abs(a[0] - b[0]) / max(abs(b[0]), 1e-300)
    scale = max(max(np.abs(x).max() for x in b[1:]), 1e-300)
    d_g = max(np.abs(x - y).max() for x, y in zip(a[1:], b[1:], strict=True)) / scale
    return d_ll, d_g


def compare_with_base(commit, Q, pi, B, hist, rounds=40, n=10):
    """Paired CPU time and values of this forward kernel against ``commit``'s, in one process."""
    from markov_migration.core import forward_kernel as FK

    fns = {"base": load_base_kernel(commit).forward_kernel, "new": FK.forward_kernel}
    args = (Q, pi, B, *hist, False, True)
    values = {key: fn(*args) for key, fn in fns.items()}
    best = dict.fromkeys(fns, np.inf)
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.thread_time()
            for _ in range(n):
                fn(*args)
            best[key] = min(best[key], (time.thread_time() - t0) / n * 1e6)
    return best["base"], best["new"], value_diff(values["new"], values["base"])


def kernel_report(args) -> None:
    """``--phases`` and ``--base``: where the forward kernel's time goes, and the change."""
    Q, pi, B, hist = phased_problem()
    print(f"split phased tree: K = {Q.shape[1]}, {hist[2].size} nodes, {hist[0].size} pieces")
    if args.phases:
        print("phases, us per call (CPU, best of 15 batches of 50):")
        for name, us in phase_costs(Q, pi, B, hist).items():
            print(f"  {name:<36} {us:8.1f}")
    if args.base:
        b, n, (d_ll, d_g) = compare_with_base(args.base, Q, pi, B, hist)
        print(
            f"this kernel against {args.base}, paired in one process: {b:.1f} -> {n:.1f} CPU us, "
            f"new/base {n / b:.3f}; log-likelihood rel diff {d_ll:.1e}, gradient diff / max {d_g:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--phases", action="store_true", help="only time the kernel's phases")
    parser.add_argument("--base", metavar="COMMIT", help="only compare the kernel with COMMIT's")
    args = parser.parse_args()
    if args.phases or args.base:
        kernel_report(args)
        return

    spec = load_spec(ROOT / "models" / "migration5.toml")
    panel = load_panel(ROOT / "examples" / "outrush_synthetic.csv", spec)
    states = list(spec.states)
    K = len(states)
    allowed = spec.allowed_matrix()
    rates = spec.rates  # {(from, to): intensity per year}
    Q = spec.rate_matrix()

    ld = likelihood_data(aggregate(panel, spec))
    d = panel.data
    hist = F.aggregate_histories(
        d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(), resolution=spec.resolution
    )

    ret = states.index("returned")
    lay = PH.phase_expansion(allowed, {ret: 2})
    # phase 0: short stay (leaves at the observed rate), phase 1: settled (a
    # tenth of it); 1.0 a year from the first phase to the second
    hidden_rates = []
    for (r, s), phase in zip(lay.rate_observed, lay.phase[lay.rate_from], strict=True):
        if r == s:
            hidden_rates.append(1.0)
        else:
            hidden_rates.append(rates[(r, s)] * (0.1 if phase == 1 else 1.0))
    Qh = PH.generator_from_rates(lay.observed.size, lay.rate_from, lay.rate_to, hidden_rates)
    B = F.emission_table(lay.emission, [[s] for s in range(K)])
    init = spec.simulation.get("initial", {})
    pi_obs = np.array([float(init.get(s, 0.0)) for s in states]) + 0.02
    pi = (pi_obs / pi_obs.sum())[lay.observed] / np.bincount(lay.observed)[lay.observed]

    split = split_histories(hist, renewal_states(B != 0))  # B: 0/1 phase map, structural
    split5 = split_histories(hist, np.arange(K))  # every record is exact without phases

    panel_args = (Q[None], *ld.arrays())
    t_panel = best_time(lambda: L.loglik_and_grad(*panel_args), args.repeat)
    t_fwd = best_time(lambda: F.loglik_and_grad(Qh, pi, B, *hist), args.repeat)
    t_fwd_nc = best_time(lambda: F.loglik_and_grad(Qh, pi, B, *hist, check=False), args.repeat)
    t_fwd5 = best_time(lambda: F.loglik_and_grad(Q, np.ones(K), np.eye(K), *hist), args.repeat)
    t_split = best_time(lambda: F.loglik_and_grad(Qh, pi, B, *split), args.repeat)
    t_split_nc = best_time(lambda: F.loglik_and_grad(Qh, pi, B, *split, check=False), args.repeat)
    t_split5 = best_time(lambda: F.loglik_and_grad(Q, np.ones(K), np.eye(K), *split5), args.repeat)
    ll5 = F.loglik(Q, np.ones(K), np.eye(K), *hist)
    ll6, ll6s = F.loglik(Qh, pi, B, *hist), F.loglik(Qh, pi, B, *split)
    print(f"respondents {panel.n_respondents}, interviews {len(d)}")
    print(f"pure panel: {ld.n_rows} aggregated rows, {ld.piece_t.size} distinct intervals")
    print(
        f"forward:    {hist.n_histories} distinct histories, {hist.node_parent.size} "
        f"prefix-tree nodes ({np.count_nonzero(hist.node_parent >= 0)} intervals), "
        f"{hist.piece_t.size} distinct intervals"
    )
    print(
        f"split:      {split.node_parent.size} nodes ({split.n_intervals} intervals) with "
        f"phases; {split5.node_parent.size} nodes ({split5.n_intervals} intervals) without"
    )
    print(f"log-lik check (K=5): panel {L.loglik(*panel_args):.6f}, forward {ll5:.6f}")
    print(f"log-lik check (K=6): unsplit {ll6:.8f}, split {ll6s:.8f}")
    print(f"pure panel  (K=5)          {t_panel * 1e3:8.3f} ms")
    print(f"forward     (K=6, phases)  {t_fwd * 1e3:8.3f} ms   ratio {t_fwd / t_panel:5.2f}")
    print(f"  unchecked (K=6, phases)  {t_fwd_nc * 1e3:8.3f} ms   ratio {t_fwd_nc / t_panel:5.2f}")
    print(f"forward     (K=5)          {t_fwd5 * 1e3:8.3f} ms   ratio {t_fwd5 / t_panel:5.2f}")
    print(f"split       (K=6, phases)  {t_split * 1e3:8.3f} ms   ratio {t_split / t_panel:5.2f}")
    print(
        f"  unchecked (K=6, phases)  {t_split_nc * 1e3:8.3f} ms   ratio {t_split_nc / t_panel:5.2f}"
    )
    print(f"split       (K=5)          {t_split5 * 1e3:8.3f} ms   ratio {t_split5 / t_panel:5.2f}")


if __name__ == "__main__":
    main()
