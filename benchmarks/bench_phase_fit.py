"""Whole fit of the example panel with ``[phases] returned = 2`` against the plain fit.

Run: ``python benchmarks/bench_phase_fit.py [--chains 4] [--draws 1000] [--tune 1000]
[--rounds 2]``

Issue 13's speed target: the forward-algorithm fit of the 8,500-respondent example
(``examples/outrush_synthetic.csv``) under ``models/migration5.toml`` with
``[phases] returned = 2`` in at most 3x the time of the plain fit of the same panel.
Both fits run in this process with the same settings and seed, in alternating rounds
(plain, phased, plain, phased, ...), each through ``inference.fit.sample`` as the
``fit`` command does; the first round also compiles (numba/PyTensor caches), so the
ratios are reported per round and for the last round (warm caches). Printed per fit:
compile seconds, sampling seconds, gradient evaluations (nutpie's ``n_steps`` summed),
seconds per gradient, divergences, mean tree depth and step size, and the total;
then the phased/plain ratios.

With ``--check-posterior`` each round also fits the phased model without renewal
splitting (the sampler's tree unsplit, as before it; ``inference/latent_renewal.py``):
its time is the "before" figure of the same round, and the posterior means of the last
round's two phased fits are compared in units of their Monte Carlo standard error
(``results.diagnostics``), with the variables whose draws are identical bit for bit.
``sample_s`` is nutpie's sampling alone (``us_per_gradient`` is computed from it);
``assembly_s`` the fit file after it (per-respondent log-likelihood of every draw, the
observed-state ``Q`` of phase models, ...).

Results are written to ``benchmarks/results/phase_fit.json``.
"""

# ruff: noqa: TID251, T201

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "examples" / "outrush_synthetic.csv"
MODEL = ROOT / "models" / "migration5.toml"


def _specs():
    from markov_migration.inputs.spec import load_spec, parse_spec

    plain = load_spec(MODEL)
    phased = parse_spec(MODEL.read_text() + "\n[phases]\nreturned = 2\n", path=str(MODEL))
    return plain, phased


def _fit(spec, settings):
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import load_data

    panel, agg = load_data(PANEL, spec)
    s = FitSettings(**settings)
    t0 = time.perf_counter()
    tree = sample(spec, agg, s, panel=panel)
    total = time.perf_counter() - t0
    steps = int(tree["sample_stats"]["n_steps"].sum()) if "n_steps" in tree["sample_stats"] else 0
    _fit.last_tree = tree
    # Sampling plus assembling the fit file (log-likelihood per row or history, etc.).
    sampling = total - float(s.timings.get("compile", 0.0))
    sample_only = float(s.timings.get("sample", sampling))
    return {
        "total_s": round(total, 2),
        "compile_s": round(float(s.timings.get("compile", 0.0)), 2),
        "sampling_and_assembly_s": round(sampling, 2),
        "sample_s": round(sample_only, 2),
        "assembly_s": round(sampling - sample_only, 2),
        "gradients": steps,
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
        "mean_tree_depth": round(float(tree["sample_stats"]["depth"].mean()), 3),
        "mean_step_size": round(float(tree["sample_stats"]["step_size"].mean()), 4),
        "us_per_gradient": round(1e6 * sample_only / steps, 1) if steps else None,
    }


class _Unsplit:
    """Inside: latent fits use the unsplit tree (as before renewal splitting)."""

    def __enter__(self):
        from markov_migration.inference import latent_renewal

        self.module, self.split = latent_renewal, latent_renewal.fit_histories
        latent_renewal.fit_histories = lambda spec, layout, histories: histories

    def __exit__(self, *exc):
        self.module.fit_histories = self.split


def _posterior_check(split_tree, unsplit_tree) -> dict:
    """Posterior means of two fits of one model, in units of their Monte Carlo standard error."""
    import numpy as np

    from markov_migration.results.diagnostics import convergence_table

    a, b = convergence_table(split_tree), convergence_table(unsplit_tree)
    both = a.merge(b, on="parameter", suffixes=("_split", "_unsplit"))
    z = (both["mean_split"] - both["mean_unsplit"]) / np.hypot(
        both["mcse_mean_split"], both["mcse_mean_unsplit"]
    )
    post_a, post_b = split_tree["posterior"], unsplit_tree["posterior"]
    same = [str(v) for v in post_a.data_vars if np.array_equal(post_a[v], post_b[v])]
    return {
        "parameters": int(len(both)),
        "max_abs_mean_diff_in_mcse": round(float(np.abs(z).max()), 2),
        "worst_parameter": str(both["parameter"].iloc[int(np.abs(z).argmax())]),
        "mean_abs_mean_diff_in_mcse": round(float(np.abs(z).mean()), 2),
        "variables_with_identical_draws": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check-posterior", action="store_true")
    args = parser.parse_args()
    settings = {"chains": args.chains, "draws": args.draws, "tune": args.tune, "seed": args.seed}
    plain, phased = _specs()
    rounds = []
    for r in range(args.rounds):
        row = {"round": r + 1, "load": round(os.getloadavg()[0], 2)}
        fits = [("plain", plain), ("phased", phased)]
        if args.check_posterior:
            fits.append(("phased_unsplit", phased))
        for name, spec in fits:
            if name == "phased_unsplit":
                split_tree = _fit.last_tree
                with _Unsplit():
                    row[name] = _fit(spec, settings)
                row["posterior_check"] = _posterior_check(split_tree, _fit.last_tree)
            else:
                row[name] = _fit(spec, settings)
            print(f"round {r + 1} {name}: {row[name]}", flush=True)
        for key in ("total_s", "sampling_and_assembly_s", "sample_s", "us_per_gradient"):
            a, b = row["phased"][key], row["plain"][key]
            row[f"ratio_{key}"] = round(a / b, 2) if a and b else None
            if args.check_posterior:
                u = row["phased_unsplit"][key]
                row[f"ratio_unsplit_{key}"] = round(u / b, 2) if u and b else None
        print(
            f"round {r + 1}: phased/plain total {row['ratio_total_s']}x, sampling "
            f"{row['ratio_sampling_and_assembly_s']}x, per gradient {row['ratio_us_per_gradient']}x "
            f"(load {row['load']})",
            flush=True,
        )
        if args.check_posterior:
            print(
                f"round {r + 1}: unsplit phased/plain total {row['ratio_unsplit_total_s']}x, "
                f"per gradient {row['ratio_unsplit_us_per_gradient']}x; posterior "
                f"{row['posterior_check']}",
                flush=True,
            )
        rounds.append(row)
    result = {"settings": settings, "rounds": rounds}
    out = ROOT / "benchmarks" / "results" / "phase_fit.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
