"""The PyMC prior of the baseline intensities (see :mod:`markov_migration.inputs.priors`).

``log_rate[transition]`` is a Deterministic assembled from the free variables

- ``log_rate_direct[direct_transition] ~ Normal(mu, sd)``: transitions with their own prior;
- ``log_exit_rate[exit_state] ~ Normal(mu_r, sd_r)``: log total exit rate of each state
  with a state-level prior (over the exits in its split);
- ``split_<state>[next_<state>] ~ Dirichlet(alpha_r)``: how that total is shared, for a
  state with two or more exits in its split (one exit takes it all),

as ``log_rate[r->s] = log_exit_rate[r] + log split_r[s]``. Downstream code reads
``log_rate``, ``rate`` and ``Q`` as before; the diagnostics read the free variables.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.inputs.priors import split_name
from markov_migration.inputs.spec import ModelSpec


def baseline_log_rate(spec: ModelSpec, dims: str = "transition") -> pt.TensorVariable:
    """Add the intensity priors to the current PyMC model; return ``log_rate``.

    Parameters
    ----------
    spec : ModelSpec
        Continuous time; the model's coords must include
        :func:`markov_migration.inputs.priors.prior_coords` and ``dims``.
    dims : str
        Dim of ``log_rate`` (the transitions, in ``spec.transitions`` order).

    Returns
    -------
    TensorVariable (T,)
        The Deterministic ``log_rate`` (log of moves per time unit).
    """
    index = {p: i for i, p in enumerate(spec.transitions)}
    log_rate = pt.zeros(len(spec.transitions))
    direct = [p for p in spec.transitions if p in spec.priors]
    if direct:
        value = pm.Normal(
            "log_rate_direct",
            mu=np.array([spec.priors[p].mu for p in direct]),
            sigma=np.array([spec.priors[p].sigma for p in direct]),
            dims="direct_transition",
        )
        log_rate = pt.set_subtensor(log_rate[np.array([index[p] for p in direct])], value)
    if spec.exit_priors:
        log_exit = pm.Normal(
            "log_exit_rate",
            mu=np.array([e.mu for e in spec.exit_priors]),
            sigma=np.array([e.sigma for e in spec.exit_priors]),
            dims="exit_state",
        )
        for j, e in enumerate(spec.exit_priors):
            cols = np.array([index[p] for p in e.exits])
            if len(cols) == 1:
                log_rate = pt.set_subtensor(log_rate[cols], log_exit[j])
                continue
            name, dim = split_name(spec, e)
            split = pm.Dirichlet(name, a=np.array(e.split), dims=dim)
            log_rate = pt.set_subtensor(log_rate[cols], log_exit[j] + pt.log(split))
    return pm.Deterministic("log_rate", log_rate, dims=dims)


def draw_prior(model: pm.Model, name: str, draws: int, seed: int | None = None) -> np.ndarray:
    """Draws of one variable of a model from its prior (``pm.draw``: the likelihood is ignored).

    Parameters
    ----------
    model : pymc.Model
    name : str
        A variable of the model (e.g. ``"rate"``).
    draws : int
    seed : int, optional

    Returns
    -------
    ndarray (draws, ...)
    """
    return np.asarray(pm.draw(model[name], draws=int(draws), random_seed=seed))
