"""Fill the on-disk compile caches once, at install time (``scripts/bootstrap``).

Layer: inference. A first fit on a new machine compiles the numba likelihood kernels
(cached by numba) and PyTensor's graph function of its model (cached by PyTensor,
reused for any panel of the same model structure, whatever its size). :func:`warm`
compiles the kernels and the graph of the demo's model (``migration5``, fitted by
``markov-migration demo``) by a tiny fit of a small simulated panel, so the first
``make demo`` loads them instead. Other models still compile their own graph on
their first fit (docs/performance.md, lever 5).
"""

from __future__ import annotations

import time

__all__ = ["main", "tiny_fit", "warm", "warm_forward"]

#: Models whose PyTensor graph is compiled at install: the demo's.
WARM_MODELS: tuple[str, ...] = ("migration5",)


def warm(models: tuple[str, ...] = WARM_MODELS, respondents: int = 300) -> dict[str, float]:
    """Compile the kernels and the graph of each model; return seconds per step.

    Parameters
    ----------
    models : tuple of str
        Model names or paths (as ``--model`` takes them) whose graph to compile.
    respondents : int
        Size of the simulated panel each graph is compiled with (any size gives the
        same graph).

    Returns
    -------
    dict of str to float
        Wall seconds: ``"kernels"``, ``"forward kernels"`` (:func:`warm_forward`) and
        one entry per model.
    """
    from markov_migration.core.native import warm_kernels

    took = {"kernels": warm_kernels(), "forward kernels": warm_forward()}
    for name in models:
        start = time.perf_counter()
        tiny_fit(name, respondents)
        took[name] = time.perf_counter() - start
    return took


def tiny_fit(name: str, respondents: int = 300):
    """A fit of one chain and five draws to a small simulated panel of model ``name``.

    What is wanted is the compile of the model's graph, not the posterior; the panel
    is embedded, so the fit can also be projected (``cli/warm.py``).

    Returns
    -------
    xarray.DataTree
        The fit.
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import resolve_model

    spec = load_spec(resolve_model(name))
    panel = validate_panel(simulate_panel(spec, respondents, seed=0), spec)
    settings = FitSettings(chains=1, draws=5, tune=5, seed=0)
    return sample(spec, aggregate(panel, spec), settings, panel=panel)


def warm_forward() -> float:
    """Compile (or load) the forward-algorithm kernels of latent fits; return wall seconds.

    A tiny tree with every record type (panel, exact transition time, exact entry
    time) and restart roots, in the dtypes the fits use: numba caches these kernels
    on disk (``cache=True``), so the first latent fit and the test suite load them
    instead of compiling for about 25 s.
    """
    import numpy as np

    from markov_migration.core import forward as F
    from markov_migration.core.renewal import renewal_states, split_histories

    start = time.perf_counter()
    q = np.array([[-0.3, 0.2, 0.1], [0.1, -0.2, 0.1], [0.0, 0.0, 0.0]])
    unsplit = F.aggregate_histories(
        [1, 1, 1, 2, 2], [0.0, 1.0, 1.5, 0.0, 2.0], [0, 1, 2, 0, 0],
        [F.OBS_PANEL, F.OBS_PANEL, F.OBS_EXACT, F.OBS_PANEL, F.OBS_TRANSITION],
    )  # fmt: skip
    split = split_histories(unsplit, renewal_states(np.eye(3, dtype=bool)))
    for tree in (unsplit, split):
        F.loglik_and_grad(q, np.ones(3), np.eye(3), *tree)
        F.loglik(q, np.ones(3), np.eye(3), *tree)
    F.history_loglik(q, np.ones(3), np.eye(3), *unsplit)
    return time.perf_counter() - start


def main() -> None:
    """Print what :func:`warm` compiled and how long it took (for installers)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five draws make the samplers' checks complain
        took = warm()
    parts = ", ".join(f"{name} {sec:.1f} s" for name, sec in took.items())
    print(f"compiled {parts} (total {sum(took.values()):.1f} s)")
