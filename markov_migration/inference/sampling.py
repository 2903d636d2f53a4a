"""Running the samplers on a built model: nutpie (default) or PyMC's NUTS.

Shared by the pure-panel fit (:mod:`markov_migration.inference.fit`) and the
latent-state fit (:mod:`markov_migration.inference.latent`), so both pass the same
settings the same way and record the same timings (seconds).
"""

from __future__ import annotations

import time
from typing import Any


def run_nutpie(compiled: Any, s: Any, progress: bool) -> Any:
    """Sample a nutpie-compiled model with the settings ``s``; record ``timings["sample"]``."""
    import nutpie

    t1 = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        cores=s.cores or s.chains,
        seed=s.seed,
        progress_bar=progress,
        save_warmup=False,
        target_accept=s.target_accept,
    )
    s.timings["sample"] = time.perf_counter() - t1
    return trace


def run_pymc(model: Any, s: Any, progress: bool) -> Any:
    """Sample a PyMC model with PyMC's NUTS; record ``timings`` (no compile step)."""
    import pymc as pm

    t0 = time.perf_counter()
    s.timings["compile"] = 0.0
    with model:
        trace = pm.sample(
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=s.cores or min(s.chains, 2),
            random_seed=s.seed,
            nuts_sampler="pymc",
            target_accept=s.target_accept,
            progressbar=progress,
            compute_convergence_checks=False,
        )
    s.timings["sample"] = time.perf_counter() - t0
    return trace
