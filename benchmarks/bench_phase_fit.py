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
seconds per gradient and the total; then the phased/plain ratios.

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
    # Sampling plus assembling the fit file (log-likelihood per row or history, etc.).
    sampling = total - float(s.timings.get("compile", 0.0))
    return {
        "total_s": round(total, 2),
        "compile_s": round(float(s.timings.get("compile", 0.0)), 2),
        "sampling_and_assembly_s": round(sampling, 2),
        "gradients": steps,
        "us_per_gradient": round(1e6 * sampling / steps, 1) if steps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = {"chains": args.chains, "draws": args.draws, "tune": args.tune, "seed": args.seed}
    plain, phased = _specs()
    rounds = []
    for r in range(args.rounds):
        row = {"round": r + 1, "load": round(os.getloadavg()[0], 2)}
        for name, spec in (("plain", plain), ("phased", phased)):
            row[name] = _fit(spec, settings)
            print(f"round {r + 1} {name}: {row[name]}", flush=True)
        for key in ("total_s", "sampling_and_assembly_s", "us_per_gradient"):
            a, b = row["phased"][key], row["plain"][key]
            row[f"ratio_{key}"] = round(a / b, 2) if a and b else None
        print(
            f"round {r + 1}: phased/plain total {row['ratio_total_s']}x, sampling "
            f"{row['ratio_sampling_and_assembly_s']}x, per gradient {row['ratio_us_per_gradient']}x "
            f"(load {row['load']})",
            flush=True,
        )
        rounds.append(row)
    out = ROOT / "benchmarks" / "results" / "phase_fit.json"
    out.write_text(json.dumps({"settings": settings, "rounds": rounds}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
