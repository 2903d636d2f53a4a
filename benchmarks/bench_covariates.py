"""Fitting speed with covariates and host-country groups at OutRush size (issue 4).

An 8,500-respondent panel simulated from ``models/migration5_hosts.toml`` (12 host
countries with their published departure rates, 3 waves, attrition, late entry) plus a
3-level covariate ``reason`` (draft / politics / work) acting on the four moves into
``returned``. Measured, in one run on this machine:

(1) markov-migration: ``[groups]`` random effects on the 6 moves out of abroad/transit
    *and* the covariate: compile (first in this process) and sampling
    (4 chains x 1,000 draws + 1,000 tune, chains in parallel on the available cores);
(2) markov-migration with the covariate only (the model msm can fit);
(3) R msm: the same covariate on the same transitions, no random effect (msm has none),
    maximum likelihood; time inside R and whole-process time;
plus the size of the design (aggregated rows, generators, pieces), the cost of one
log-likelihood + gradient evaluation, and how well the truth is recovered.

Usage::

    python benchmarks/bench_covariates.py               # everything (msm part needs R)
    python benchmarks/bench_covariates.py --draws 300   # quicker

Figures go to docs/covariates.md (Speed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from markov_migration.inputs.calibration import HOST_DEPARTURE, host_departure  # noqa: E402
from markov_migration.inputs.spec import parse_spec  # noqa: E402
from markov_migration.reference.msm import MsmCovariate, fit_msm, msm_available  # noqa: E402

INTO_RETURNED = ["abroad->returned", "transit->returned", "swing->returned",
                 "reemigrated->returned"]  # fmt: skip
REASON = f"""
[covariates.reason]
kind = "categorical"
reference = "draft"
transitions = {INTO_RETURNED!r}

[simulate.covariates.reason]
levels = {{ draft = 0.45, politics = 0.35, work = 0.20 }}

[simulate.covariates.reason.effects]
"politics:abroad->returned" = 0.5
"politics:transit->returned" = 0.5
"work:swing->returned" = 1.5
""".replace("'", '"')
TRUE_HR = {"reason[politics]: abroad->returned": 0.5, "reason[politics]: transit->returned": 0.5,
           "reason[work]: swing->returned": 1.5}  # fmt: skip


def model_texts() -> tuple[str, str]:
    """(groups + covariate, covariate only) model texts."""
    hosts = (ROOT / "models" / "migration5_hosts.toml").read_text()
    # The tables go before the first header they must precede (not into the comments).
    with_groups = hosts.replace("\n[rates]\n", REASON.split("[simulate")[0] + "\n[rates]\n", 1)
    with_groups = with_groups.replace(
        "\n[simulate.groups]\n",
        "\n[simulate" + REASON.split("[simulate", 1)[1] + "\n[simulate.groups]\n",
        1,
    )
    start = with_groups.index("[groups]")
    end = with_groups.index("[priors]")
    without = with_groups[:start] + with_groups[end:]
    without = without.replace('name = "migration5_hosts"', 'name = "migration5_reason"')
    return with_groups, without


def per_eval_ms(spec, agg) -> float:
    """Milliseconds of one log-likelihood + gradient evaluation at the simulating rates.

    (Not at the prior medians: equal rates give a generator with repeated eigenvalues,
    which takes the slower Pade fallback.)
    """
    from markov_migration.core.likelihood import loglik_and_grad
    from markov_migration.inputs.design import model_design
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

    design = model_design(spec, agg)
    log_rate = np.log([spec.rates[p] for p in spec.transitions])
    lr = design.log_rates(
        log_rate,
        np.zeros(len(design.effects)) if design.has_effects else None,
        np.zeros((len(design.group_levels), len(design.group_transitions)))
        if design.has_groups else None,
    )  # fmt: skip
    q = generators_from_rates(np.exp(lr), spec)
    args = design.likelihood.arrays()
    loglik_and_grad(q, *args)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            loglik_and_grad(q, *args)
        best = min(best, (time.perf_counter() - t0) / 20)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8500)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.design import model_design
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.simulate import simulate_panel

    text_groups, text_plain = model_texts()
    spec_g, spec_c = parse_spec(text_groups), parse_spec(text_plain)
    df = simulate_panel(spec_g, args.n, seed=args.seed)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"panel: {df['id'].nunique():,} respondents, {len(df):,} interviews, "
          f"{df['host_country'].nunique()} host countries, reason levels "
          f"{sorted(df['reason'].unique())}")  # fmt: skip

    results = {}
    for label, spec in (("groups + covariate", spec_g), ("covariate only", spec_c)):
        t0 = time.perf_counter()
        panel = validate_panel(df, spec, path="<bench>")
        agg = aggregate(panel, spec)
        design = model_design(spec, agg)
        prep = time.perf_counter() - t0
        n_par = len(spec.transitions) + len(design.parameter_labels) + (
            len(design.group_levels) * len(design.group_transitions) + len(design.group_transitions)
            if design.has_groups else 0
        )  # fmt: skip
        print(f"\n({'1' if spec is spec_g else '2'}) {label}: {len(agg.table):,} aggregated rows, "
              f"{design.n_generators} generators, {design.likelihood.piece_q.size:,} pieces, "
              f"{n_par} parameters; validate+aggregate+design {prep:.2f} s; "
              f"one log-lik+gradient {per_eval_ms(spec, agg):.2f} ms")  # fmt: skip
        settings = FitSettings(chains=args.chains, draws=args.draws, tune=args.tune, seed=1)
        t0 = time.perf_counter()
        tree = sample(spec, agg, settings)
        total = time.perf_counter() - t0
        t = settings.timings
        stats = tree["sample_stats"]
        steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
        print(f"    compile {t['compile']:.1f} s, sampling {t['sample']:.1f} s "
              f"({args.chains} x ({args.tune} + {args.draws}) draws, mean {steps:.1f} leapfrog "
              f"steps), total {total:.1f} s; divergences {int(stats['diverging'].sum())}")  # fmt: skip
        hr = tree["posterior"]["hazard_ratio"]
        for name, truth in TRUE_HR.items():
            d = hr.sel(covariate_effect=name).values.ravel()
            lo, med, hi = np.quantile(d, [0.025, 0.5, 0.975])
            print(f"    {name}: true {truth}, posterior median {med:.3f} [{lo:.3f}, {hi:.3f}]")
        if design.has_groups:
            departure = host_departure(spec)
            inside = 0
            for host, (state, *_rest) in HOST_DEPARTURE.items():
                q = tree["posterior"]["Q"].sel(pattern="reason=draft", group=host,
                                               from_state=state, to_state=state)  # fmt: skip
                p = 1 - np.exp(q.values.ravel())
                lo, hi = np.quantile(p, [0.025, 0.975])
                inside += lo <= departure[host] <= hi
            print(f"    host departure probabilities inside their 95% interval: {inside} of 12")
        results[label] = (t["compile"], t["sample"], total)

    print("\n(3) R msm: the same covariate on the same transitions, no random effect")
    if not msm_available():
        print("    skipped: Rscript with msm is not installed")
        return
    panel = validate_panel(df, spec_c, path="<bench>")
    cov = spec_c.covariates[0]
    ref = fit_msm(
        panel.data.assign(reason=panel.data["reason"].astype(str)),
        spec_c.allowed_matrix(),
        covariates=[MsmCovariate("reason", "categorical", list(cov.transitions), "draft")],
    )
    print(f"    msm: {ref.seconds:.1f} s inside R, {ref.wall_seconds:.1f} s whole process, "
          f"converged {ref.converged}")  # fmt: skip
    for name in TRUE_HR:
        level = name.split("[")[1].split("]")[0]
        frm, to = name.split(": ")[1].split("->")
        row = ref.hazard[(ref.hazard["term"] == f"reason{level}")
                         & (ref.hazard["from"] == spec_c.index(frm))
                         & (ref.hazard["to"] == spec_c.index(to))]  # fmt: skip
        print(
            f"    {name}: msm {float(row['hr'].iloc[0]):.3f} "
            f"[{float(row['lower'].iloc[0]):.3f}, {float(row['upper'].iloc[0]):.3f}]"
        )
    for label, (_, sample_s, total) in results.items():
        wall = ref.wall_seconds
        print(f"    ratio {label} / msm (whole process): sampling {sample_s / wall:.2f}x, "
              f"compile + sampling {total / wall:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
