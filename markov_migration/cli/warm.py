"""The install-time warm-up (``scripts/bootstrap``): every compile cache the demo meets.

Layer 6 (interfaces): it runs :func:`markov_migration.inference.warm.warm` (the
likelihood and forward-algorithm kernels), compiles the demo model's PyTensor graph
by a tiny fit (:func:`~markov_migration.inference.warm.tiny_fit`) and projects that
fit yearly and monthly under a scenario with exits, so that numba's on-disk cache
also holds the demo's projection kernels (about 6 s of compiling). The inference
layer cannot do the last step itself: projections live in a layer above it.
"""

from __future__ import annotations

import time

__all__ = ["main", "warm_projection"]


def warm_projection(fit) -> float:
    """Project ``fit`` once per step size, as the demo does; return wall seconds.

    Parameters
    ----------
    fit : xarray.DataTree
        A fit of the demo's model with its panel embedded
        (:func:`markov_migration.inference.warm.tiny_fit`).
    """
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.projection.exits import ExitRates
    from markov_migration.projection.initial import InitialTotal
    from markov_migration.projection.run import project_fit

    start = time.perf_counter()
    exits = ExitRates.read_csv("working-age-2022", fit_spec(fit))  # the demo's exits by time
    for step in (1.0, 1.0 / 12.0):
        project_fit(
            fit, InitialTotal(1000.0), start=2024.5, horizon=2027.0, step=step,
            scenarios=["ceasefire-2026"], exit_rates=exits,
        )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    """Print what the warm-up compiled and how long it took (for installers)."""
    import warnings

    from markov_migration.inference.warm import tiny_fit, warm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five draws make the samplers' checks complain
        took = warm(models=())
        start = time.perf_counter()
        fit = tiny_fit("migration5")  # the demo's model: its graph, then its projection
        took["migration5"] = time.perf_counter() - start
        took["projection"] = warm_projection(fit)
    parts = ", ".join(f"{name} {sec:.1f} s" for name, sec in took.items())
    print(f"compiled {parts} (total {sum(took.values()):.1f} s)")
