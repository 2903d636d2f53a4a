"""Effective sample size per second against warm-up length (issue 15, lever 2).

For ``cav`` (msm's panel, ``models/cav.toml``), the three-state model of the tests
(400 simulated respondents, three waves), the five-state example model
(``models/migration5.toml``, 3,000 respondents simulated by ``simulate_panel`` with the
model's own ``[simulate]`` design) and its host-country random-effects variant
(``models/migration5_hosts.toml``, 3,000 respondents, 21 parameters of which 6 group sds
and many group effects), fit 4 chains x 1,000 kept draws with 300, 500 and 1,000 warm-up
draws per chain for a few seeds, in one process (the compiled model is reused, so only
sampling is timed). Reports, per warm-up length, the smallest bulk and
tail ESS and the largest R-hat over the sampled parameters (the package's own
``convergence_table``), divergences, and the smallest bulk ESS per second of sampling
wall time and per CPU second (the machine is shared: CPU seconds move less with load).

Usage::

    python benchmarks/bench_tune.py [--seeds 1,2] [--tunes 300,500,1000]
        [--models cav,three,m5,hosts] [--out tune.json]

Writes ``benchmarks/results/tune.json`` (or ``--out``); figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

THREE = """
name = "three"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2]
jitter = 0.05
attrition = 0.0
initial = { a = 0.5, b = 0.5, c = 0.0 }
"""


def cases(models):
    from markov_migration.inputs.aggregate import aggregate, load_data
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec, parse_spec

    if "cav" in models:
        cav = load_spec(ROOT / "models" / "cav.toml")
        yield "cav", cav, load_data(ROOT / "tests" / "results" / "cav.csv", cav)[1]
    if "three" in models:
        three = parse_spec(THREE)
        panel = validate_panel(simulate_panel(three, 400, seed=11), three)
        yield "three", three, aggregate(panel, three)
    for name, file in (("m5", "migration5.toml"), ("hosts", "migration5_hosts.toml")):
        if name in models:
            spec = load_spec(ROOT / "models" / file)
            panel = validate_panel(simulate_panel(spec, 3000, seed=7), spec)
            yield name, spec, aggregate(panel, spec)


def main() -> None:
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.results.diagnostics import convergence_checks, convergence_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--tunes", default="300,500,1000")
    parser.add_argument("--models", default="cav,three,m5,hosts")
    parser.add_argument("--out", default="tune.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tunes = [int(t) for t in args.tunes.split(",")]
    runs = []
    for name, spec, agg in cases(args.models.split(",")):
        sample(spec, agg, FitSettings(chains=1, draws=5, tune=5, seed=0))  # compile once
        for seed in seeds:
            for tune in tunes:  # interleaved: every tune of a seed back to back
                s = FitSettings(chains=4, draws=1000, tune=tune, seed=seed)
                cpu = time.process_time()
                tree = sample(spec, agg, s)
                cpu = time.process_time() - cpu
                table = convergence_table(tree)
                stats = tree["sample_stats"]
                run = {
                    "model": name, "tune": tune, "seed": seed,
                    "sample_s": round(s.timings["sample"], 2), "cpu_s": round(cpu, 2),
                    "ess_bulk_min": round(float(table["ess_bulk"].min()), 0),
                    "ess_tail_min": round(float(table["ess_tail"].min()), 0),
                    "rhat_max": round(float(table["rhat"].max()), 4),
                    "n_params": int(len(table)),
                    "divergences": int(stats["diverging"].sum()),
                    "steps_kept": int(stats["n_steps"].sum()),
                    "load": round(os.getloadavg()[0], 1),
                }  # fmt: skip
                # the package's own five checks (defaults.THRESHOLDS), as `check` runs them
                failed = [c.name for c in convergence_checks(tree, table) if c.passed is False]
                run["checks_failed"] = ",".join(failed)
                run["ess_per_s"] = round(run["ess_bulk_min"] / run["sample_s"], 0)
                run["ess_per_cpu_s"] = round(run["ess_bulk_min"] / run["cpu_s"], 0)
                runs.append(run)
                print(json.dumps(run), flush=True)
    print(f"\n{'model':6s} {'tune':>5s} {'sample s':>8s} {'cpu s':>6s} {'ESS bulk':>8s} "
          f"{'ESS tail':>8s} {'R-hat':>6s} {'div':>4s} {'ESS/s':>6s} {'ESS/cpu s':>9s}")  # fmt: skip
    summary = []
    for name in dict.fromkeys(r["model"] for r in runs):
        for tune in tunes:
            sel = [r for r in runs if r["model"] == name and r["tune"] == tune]
            row = {"model": name, "tune": tune}
            for key in ("sample_s", "cpu_s", "ess_bulk_min", "ess_tail_min", "ess_per_s",
                        "ess_per_cpu_s"):  # fmt: skip
                row[key] = float(np.median([r[key] for r in sel]))
            row["rhat_max"] = max(r["rhat_max"] for r in sel)
            row["divergences"] = sum(r["divergences"] for r in sel)
            row["checks_failed"] = sorted(
                {c for r in sel for c in r["checks_failed"].split(",") if c}
            )
            summary.append(row)
            print(f"{name:6s} {tune:5d} {row['sample_s']:8.1f} {row['cpu_s']:6.1f} "
                  f"{row['ess_bulk_min']:8.0f} {row['ess_tail_min']:8.0f} {row['rhat_max']:6.3f} "
                  f"{row['divergences']:4d} {row['ess_per_s']:6.0f} {row['ess_per_cpu_s']:9.0f} "
                  f"{','.join(row['checks_failed']) or 'checks pass'}")  # fmt: skip
    print(f"(medians over seeds {seeds}; R-hat the largest, divergences the sum)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
