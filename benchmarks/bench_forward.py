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
"""

# ruff: noqa: TID251, T201

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

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
