"""PyMC models built from a model file and aggregated data (layer 3).

Continuous time
    ``log_rate[transition]`` (log of moves per time unit), from the model file's
    priors (a state's total exit rate and its Dirichlet split, or a transition's own
    lognormal: :mod:`markov_migration.inference.rate_prior`), are the *baseline*
    log-intensities: categorical
    covariates at their reference level, numeric covariates at their mean,
    group effect 0 and the first period (see :mod:`markov_migration.inputs.design`).
    Covariate and period effects are log hazard ratios
    ``log_hazard_ratio[covariate_effect]`` with ``Normal(0, prior_sd)`` priors per
    unit of the covariate (sampled on the covariate's standardised scale);
    groups get non-centred random effects
    ``group_effect[group, group_transition] = group_sd * group_z`` with
    ``group_z ~ Normal(0, 1)`` and ``group_sd ~ HalfNormal(sd_prior)``. Every
    distinct (covariate pattern, group, period) of the data has its generator;
    the panel log-likelihood ``sum_r count_r * log P_r[from_r, to_r]`` (``P_r``
    the product of ``expm(Q_m t)`` over the pieces of the interval) enters as one
    Potential computed by the fast Op
    (:mod:`markov_migration.inference.likelihood_op`), with one
    eigendecomposition per generator. ``Q`` is reported per categorical pattern,
    group and period (dims ``pattern``, ``group``, ``period`` when the model has
    them, then ``from_state``, ``to_state``).

Discrete time
    Each non-absorbing state's row of the one-step matrix ``P`` has a
    Dirichlet prior over the state itself and its allowed targets (the model
    file's concentrations); an interval of n steps contributes
    ``log (P^n)[from, to]``. With only one-step intervals this is the conjugate
    Dirichlet-multinomial model.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.errors import InputError
from markov_migration.inference.hazard_terms import generator_matrix, hazard_terms
from markov_migration.inputs.aggregate import AggregatedData
from markov_migration.inputs.design import ModelDesign, model_design
from markov_migration.inputs.effects import check_design
from markov_migration.inputs.likelihood_arrays import unpack_arrays
from markov_migration.inputs.priors import prior_coords
from markov_migration.inputs.spec import ModelSpec
from markov_migration.io import available_memory

#: Posterior variables kept in fit files (internal sampler variables are dropped).
POSTERIOR_VARIABLES = (
    "log_rate", "rate", "Q", "P", "log_hazard_ratio", "hazard_ratio", "group_sd", "group_effect",
)  # fmt: skip


def sampled_variables(model: pm.Model) -> list[str]:
    """Names of the model's free random variables, as the samplers store them.

    nutpie and PyMC store each free variable under its own name on the constrained
    scale (``group_sd``, not its log-transformed value variable ``group_sd_log__``), so
    these are the posterior variables the convergence diagnostics need: ``log_exit_rate``,
    ``split_<state>``, ``log_rate_direct`` (the intensity priors'), ``log_hr_scaled``,
    ``group_sd``, ``group_z`` in continuous time, the Dirichlet rows ``p_<state>`` in
    discrete time.
    """
    return [rv.name for rv in model.free_RVs]


def model_coords(
    spec: ModelSpec, agg: AggregatedData, design: ModelDesign | None = None
) -> dict[str, list]:
    """Coordinates shared by the PyMC model and the fit file."""
    coords = {
        "state": list(spec.states),
        "from_state": list(spec.states),
        "to_state": list(spec.states),
        "transition": list(spec.transition_labels),
        "obs": list(range(len(agg.table))),
    }
    if design is not None:
        coords.update(design.coords())
    if spec.time == "continuous":
        coords.update(prior_coords(spec))
    return coords


def check_supported(spec: ModelSpec) -> None:
    """Refuse model features the fitting layer cannot fit, before compiling.

    Raises
    ------
    InputError
        Covariates, groups or periods in a discrete-time model, reserved
        covariate names, a column used twice (see
        :func:`markov_migration.inputs.effects.check_design`).
    """
    check_design(spec)


def build_model(spec: ModelSpec, agg: AggregatedData, panel=None) -> pm.Model:
    """Build the PyMC model of a spec and its aggregated data.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData
    panel : Panel, optional
        Needed by latent-state models (:mod:`markov_migration.inference.latent`),
        which are built from respondents' histories.

    Returns
    -------
    pymc.Model
        With coords ``state``, ``from_state``, ``to_state``, ``transition`` and
        ``obs`` (aggregated rows), plus ``covariate_effect``, ``hr_parameter``,
        ``group``, ``group_transition``, ``pattern`` and ``period`` as the
        model has them.
    """
    from markov_migration.inputs.obstype import with_panel_obstype

    spec = with_panel_obstype(spec, panel)
    if spec.observation.latent:
        from markov_migration.inference.latent import build_latent_model

        return build_latent_model(spec, panel)
    check_supported(spec)
    if tuple(agg.states) != tuple(spec.states):
        raise InputError("data were aggregated for other states than the model's")
    if spec.time == "discrete":
        return _build_discrete(spec, agg)
    return _build_continuous(spec, agg)


def _build_continuous(spec: ModelSpec, agg: AggregatedData) -> pm.Model:
    from markov_migration.inference.likelihood_op import panel_loglik
    from markov_migration.inference.rate_prior import baseline_log_rate

    design = model_design(spec, agg)
    with pm.Model(coords=model_coords(spec, agg, design)) as model:
        # Two packed data vectors instead of one pm.Data per array: nutpie compiles an
        # uncached wrapper per shared array (about 0.3 s each).
        packed, layout = design.packed_data()
        data = unpack_arrays({name: pm.Data(name, value) for name, value in packed.items()}, layout)
        log_rate = baseline_log_rate(spec)
        pm.Deterministic("rate", pt.exp(log_rate), dims="transition")
        log_q, log_q_grid = hazard_terms(
            design, log_rate, data.get("generator_x"), data.get("generator_group"),
            data.get("hr_scale"),
        )  # fmt: skip
        q_grid = generator_matrix(pt.exp(log_q_grid), spec)
        k = spec.n_states
        pm.Deterministic(
            "Q", q_grid.reshape((*design.grid_shape, k, k)),
            dims=(*design.grid_dims, "from_state", "to_state"),
        )  # fmt: skip
        panel = [data[n] for n in ("piece_q", "piece_t", "row_ptr", "row_piece", "row_from",
                                   "row_to", "row_count")]  # fmt: skip
        loglik = panel_loglik(generator_matrix(pt.exp(log_q), spec), panel)
        pm.Potential("loglik", loglik)
    return model


def _build_discrete(spec: ModelSpec, agg: AggregatedData) -> pm.Model:
    t = agg.table
    steps = np.round(t["interval"].to_numpy() / agg.resolution).astype(np.int64)
    coords = model_coords(spec, agg)
    targets: dict[int, list[int]] = {}
    for r in range(spec.n_states):
        outs = [s for a, s in spec.transitions if a == r]
        if outs:
            targets[r] = [r, *outs]
            coords[f"next_{spec.states[r]}"] = [spec.states[s] for s in targets[r]]
    with pm.Model(coords=coords) as model:
        row_from = pm.Data("row_from", t["from"].to_numpy(dtype=np.int64), dims="obs")
        row_to = pm.Data("row_to", t["to"].to_numpy(dtype=np.int64), dims="obs")
        row_count = pm.Data("row_count", t["count"].to_numpy(dtype=np.float64), dims="obs")
        p = pt.eye(spec.n_states)
        for r, tg in targets.items():
            alpha = np.array([spec.concentration[(r, s)] for s in tg])
            row = pm.Dirichlet(f"p_{spec.states[r]}", a=alpha, dims=f"next_{spec.states[r]}")
            p = pt.set_subtensor(p[r, :], pt.zeros(spec.n_states))
            p = pt.set_subtensor(p[r, np.array(tg)], row)
        p = pm.Deterministic("P", p, dims=("from_state", "to_state"))
        # P^n for each distinct step count n (usually 1, sometimes 2-3 for a missed wave).
        distinct = np.unique(steps)
        powers = [pt.linalg.matrix_power(p, int(n)) if n > 1 else p for n in distinct]
        stack = pt.stack(powers)
        row_power = pm.Data("row_power", np.searchsorted(distinct, steps), dims="obs")
        prob = stack[row_power, row_from, row_to]
        pm.Potential("loglik", pt.sum(row_count * pt.log(prob)))
    return model


#: Sampler statistics per draw kept in fit files (step size, depth, energy, ...), rounded up.
_STATS_PER_DRAW = 16
#: Copies of the draws alive at once at the peak: the sampler's trace, the labelled
#: posterior and the log-likelihood computed from it, the file being written.
_PEAK_COPIES = 3


def floats_per_draw(spec: ModelSpec, agg: AggregatedData) -> int:
    """Numbers stored per posterior draw: posterior variables, log-likelihood, statistics.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData

    Returns
    -------
    int
        Count of float64 values per draw of one chain.
    """
    k = spec.n_states
    n_obs = len(agg.table)
    if spec.time == "discrete":
        rows = sum(1 + len([s for a, s in spec.transitions if a == r]) for r in range(k))
        return k * k + rows + n_obs + _STATS_PER_DRAW
    design = model_design(spec, agg)
    coords = design.coords()
    n_t = len(spec.transitions)
    n_grid = int(np.prod(design.grid_shape)) if design.grid_dims else 1
    n_eff = len(coords.get("covariate_effect", []))
    n_hr = len(coords.get("hr_parameter", []))
    n_gt = len(coords.get("group_transition", []))
    n_g = len(coords.get("group", []))
    n_prior = sum(len(v) for v in prior_coords(spec).values())  # the intensity priors' draws
    return (
        2 * n_t + n_prior + n_grid * k * k + 2 * n_eff + n_hr + n_gt + 2 * n_g * n_gt + n_obs
        + _STATS_PER_DRAW
    )  # fmt: skip


def _bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def check_memory(
    spec: ModelSpec, agg: AggregatedData, chains: int, draws: int, available: int | None = None
) -> int:
    """Refuse a run whose draws cannot fit in memory, before compiling or sampling.

    The estimate is ``8 bytes x floats_per_draw x chains x draws`` (posterior,
    log-likelihood and sampler statistics); the run needs about three copies at its
    peak.

    Parameters
    ----------
    spec, agg
        The model and its data.
    chains, draws : int
        Chains and kept draws per chain.
    available : int, optional
        Bytes available (default: :func:`available_memory`; unknown: no check).

    Returns
    -------
    int
        The estimated bytes of one copy of the draws.

    Raises
    ------
    InputError
        When ``3 x`` the estimate exceeds the available memory.
    """
    need = 8 * floats_per_draw(spec, agg) * int(chains) * int(draws)
    have = available_memory() if available is None else available
    if have is not None and _PEAK_COPIES * need > have:
        raise InputError(
            f"{chains} chains x {draws:,} draws need about {_bytes(need)} for the posterior and "
            f"log-likelihood ({_bytes(_PEAK_COPIES * need)} at the peak) but about "
            f"{_bytes(have)} of memory is available: use fewer --draws or --chains"
        )
    return need
