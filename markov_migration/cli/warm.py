"""The install-time warm-up (``scripts/bootstrap``): every compile cache the demo meets.

Layer 6 (interfaces): it runs :func:`markov_migration.inference.warm.warm` (the
likelihood and forward-algorithm kernels, the demo model's PyTensor graph) and then
projects a tiny fit of the demo's model (one chain, a few draws), yearly and monthly, under a scenario
with exits, so that numba's on-disk cache also holds the projection kernels (the
event kernels of :mod:`markov_migration.core.uniformization` and
:mod:`markov_migration.core.projection`, about 30 s of compiling). The inference
layer cannot do this itself: projections live in a layer above it.
"""

from __future__ import annotations

import time

__all__ = ["main", "warm_projection"]


def warm_projection(draws: int = 8) -> float:
    """Project a tiny fit of the demo's model once per step size; return wall seconds.

    Parameters
    ----------
    draws : int
        Posterior draws of the tiny fit (the compile does not depend on it).
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import resolve_model
    from markov_migration.projection.exits import ExitRates
    from markov_migration.projection.fitted import InitialTotal
    from markov_migration.projection.run import project_fit

    start = time.perf_counter()
    spec = load_spec(resolve_model("migration5"))
    panel = validate_panel(simulate_panel(spec, 200, seed=0), spec)
    # a few draws of one chain (the graph is already compiled by inference.warm)
    settings = FitSettings(chains=1, draws=draws, tune=5, seed=0)
    tree = sample(spec, aggregate(panel, spec), settings, panel=panel)
    exits = ExitRates.read_csv("working-age-2022", spec)  # the demo's exits by time
    for step in (1.0, 1.0 / 12.0):
        project_fit(
            tree, InitialTotal(1000.0), start=2024.5, horizon=2027.0, step=step,
            scenarios=["ceasefire-2026"], draws=draws, exit_rates=exits,
        )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    """Print what the warm-up compiled and how long it took (for installers)."""
    import warnings

    from markov_migration.inference.warm import warm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five draws make the samplers' checks complain
        took = warm()
        took["projection"] = warm_projection()
    parts = ", ".join(f"{name} {sec:.1f} s" for name, sec in took.items())
    print(f"compiled {parts} (total {sum(took.values()):.1f} s)")
