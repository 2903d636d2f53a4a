"""Latent-state (observation-model) fits: the PyMC model and its fit file (layer 3).

Used instead of the pure-panel model of :mod:`markov_migration.inference.model`
when a model file declares ``[observation]``, ``[misclassification]``,
``[phases]`` or ``[nonresponse]``, or the panel's ``obstype`` column flags exact
transition (2) or entry (3) times (:mod:`markov_migration.inputs.obstype`; see
``docs/observation-models.md``). A
respondent's history is a hidden continuous-time Markov chain; the likelihood
is the forward algorithm of :mod:`markov_migration.core.forward` over every
respondent's records, with identical histories counted once, computed by the
Op of :mod:`markov_migration.inference.latent_op`.

Intensities
    ``log_rate[transition]`` from ``[priors]`` as in the pure-panel model (state
    totals and their splits: :mod:`markov_migration.inference.rate_prior`). With
    ``[phases]`` the intensities live on the hidden (phase) state space:
    ``log_rate_latent[latent_transition] ~ Normal(mu, sigma)`` independently, each
    leaving move of a phase with the per-move prior of its observed transition
    (:func:`phase_prior`), each progression ``r_i -> r_(i+1)`` with the
    per-transition default. ``Q_latent`` is the hidden
    generator; ``Q`` on the observed states is then the Markov generator with
    the same mean sojourn and next-state probabilities as the phase-type states
    (entered in their first phase), computed from each draw after sampling.
Misclassification
    For each true state ``r`` with possible errors ``s_1..s_m``,
    ``misclassification_<r> ~ Dirichlet(correct, error, ..., error)`` over
    recording ``(r, s_1, ..., s_m)``; ``misclassification[true_state,
    recorded_state]`` is the full matrix (rows sum to 1).
Initial state
    Hidden models (misclassification or phases) estimate the distribution of
    the first true state, ``initial[latent_state] ~ Dirichlet(1, ..., 1)``, and
    the first record contributes ``sum(initial * e_1)`` (R msm's ``initprobs``);
    phase models sample it in two stages (:func:`_phased_initial`), the same prior.
    Models with only exact entry times and censored codes condition on the first
    record as the pure-panel likelihood does (weight 1 on each state it allows).
Nonresponse
    ``response[response_state] ~ Beta(alpha, beta)``: the probability that a
    respondent in that true state answers a scheduled interview (states not
    listed always answer); ``log_attrition[attrition_state] ~ Normal`` the
    log-hazard of being lost for good. Missed waves are added as records by
    :func:`markov_migration.inputs.nonresponse.schedule_records`; the
    generator, first weights and emission table of the forward algorithm are
    extended by :mod:`markov_migration.inference.latent_nonresponse`.
Covariates, groups and periods
    As in the pure-panel model (:mod:`markov_migration.inference.hazard_terms`,
    :mod:`markov_migration.inputs.design`): one generator per covariate pattern,
    group and period; the interval between two records uses the covariates of
    the earlier one (:mod:`markov_migration.inputs.latent_design`). An interval
    that crosses a period cut point is split there by an added record that says
    nothing (its emission row is all ones), so each piece has its period's
    generator.
Covariates, groups and periods with phases
    msm's convention for ``phase.states``: the effects act on the hidden
    (phased) intensities. The log hazard ratio or group effect declared on an
    observed transition ``r -> s`` multiplies every phase exit ``r_k -> s``
    (proportional hazards on the observed transition); the progressions
    ``r_k -> r_(k+1)`` carry none (the model file cannot name them).
    ``Q_latent`` is the baseline hidden generator, ``Q`` the observed-state
    generator of every reported pattern (``observed_from_latent``).
With ``[nonresponse]`` the cut records are added after the schedule's
missed waves and take the exact-entry block's blank row (all ones in the active
and the lost halves): a cut is not an interview. Not supported yet (refused
with a clear message): discrete time, and aggregated-counts input (a latent fit
needs respondents' histories).
"""

from __future__ import annotations

import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.core.forward import (
    OBS_EXACT,
    OBS_PANEL,
    Histories,
    aggregate_histories,
    emission_table,
)
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inference.hazard_terms import hidden_generator, phased_generators
from markov_migration.inference.latent_draws import (
    history_loglik_draws,
    observed_from_latent,
    observed_generator,
)
from markov_migration.inference.latent_layout import (
    LatentLayout,
    check_latent_supported,
    latent_coords,
    latent_layout,
)
from markov_migration.inference.latent_misc import misc_coords, pattern_table, stacked_codes
from markov_migration.inference.latent_nonresponse import (
    nonresponse_inputs,
    nonresponse_variables,
)
from markov_migration.inference.rate_prior import baseline_log_rate
from markov_migration.inference.sampling import run_nutpie, run_pymc
from markov_migration.inputs.aggregate import period_of
from markov_migration.inputs.latent_design import (
    carry_forward,
    cut_records,
    latent_design,
    recorded_pairs,
)
from markov_migration.inputs.misc_covariates import (
    has_misclassification_covariates,
    misclassification_effects,
)
from markov_migration.inputs.nonresponse import schedule_records
from markov_migration.inputs.obstype import PANEL_OBSTYPE
from markov_migration.inputs.panel import Panel
from markov_migration.inputs.spec import ModelSpec

#: Covariate and group variables, as the pure-panel model names them.
EFFECT_VARIABLES = ("log_hazard_ratio", "hazard_ratio", "group_sd", "group_effect")
#: Posterior variables of latent fits kept in fit files (besides the pure-panel ones).
LATENT_VARIABLES = (
    "log_rate_latent", "rate_latent", "Q_latent", "misclassification", "initial", "response",
    "attrition",
)  # fmt: skip


def latent_histories(spec: ModelSpec, panel: Panel, generators=None, misc=None):
    """Aggregated histories of a panel: (Histories, respondent ids, node of each respondent).

    With covariates on misclassification (``misc``, default rebuilt from the panel) a
    record's code is ``code + n_codes * p``, ``p`` its emission pattern
    (:mod:`markov_migration.inputs.misc_covariates`).

    With ``[nonresponse]`` the records include the missed scheduled interviews
    (:func:`markov_migration.inputs.nonresponse.schedule_records`), which take
    the generator of the respondent's record before them. ``generators``: the
    :class:`~markov_migration.inputs.latent_design.RecordGenerators` of a model
    with covariates or groups (default: one generator).
    """
    d = panel.data
    if misc is None and has_misclassification_covariates(spec):
        design, generators = latent_design(spec, panel)
        misc = misclassification_effects(spec, design, d)
    pattern = None if generators is None else generators.record_pattern
    epattern = None if misc is None else misc.record_pattern
    codes = d["state"].to_numpy(dtype=np.int64)
    exact = np.isin(codes, np.array(spec.observation.exact, dtype=np.int64))
    # the panel's obstype column (msm's 1, 2, 3; inputs.obstype); an [observation]
    # exact state makes a panel record of it an exact entry, a flagged 2 stays 2
    flagged = d[PANEL_OBSTYPE].to_numpy(np.int64) if PANEL_OBSTYPE in d else OBS_PANEL
    obstype = np.where(exact & (flagged == OBS_PANEL), OBS_EXACT, flagged)
    obstype = np.broadcast_to(obstype, codes.shape).astype(np.int64)
    ids, times = d["id"].to_numpy(), d["time"].to_numpy(dtype=np.float64)
    weight = d["weight"].to_numpy(dtype=np.float64)
    # plain record codes: states, censored codes and, with periods, the blank cut record
    # (the rows of the layout's code_sets; the nonresponse blocks are n_codes apart)
    n_codes = spec.n_states + len(spec.observation.censored) + bool(spec.periods)
    blank = spec.n_states + len(spec.observation.censored)
    if spec.observation.nonresponse is not None:
        leaving = {r for r, _ in spec.transitions}
        absorbing = [r for r in range(spec.n_states) if r not in leaving]
        rec = schedule_records(ids, times, codes, obstype, weight, n_codes, absorbing)
        # a cut record says nothing in the active and the lost halves alike: the
        # exact-entry block's row of the blank code, (1, 1), not an interview
        blank = 2 * n_codes + 1 + blank
        if pattern is not None:
            pattern = carry_forward(ids, times, pattern, rec.ids, rec.times)
        if epattern is not None:  # refused by the spec parser; kept consistent anyway
            epattern = carry_forward(ids, times, epattern, rec.ids, rec.times)
        ids, times, codes, obstype, weight = rec.ids, rec.times, rec.codes, rec.obstype, rec.weight
    gen = None
    if pattern is not None:
        period = None
        if spec.periods:  # split intervals at the cut points (module docstring)
            after, at = cut_records(ids, times, spec.periods)
            ids, times = np.r_[ids, ids[after]], np.r_[times, at]
            codes = np.r_[codes, np.full(after.size, blank, np.int64)]
            obstype = np.r_[obstype, np.full(after.size, OBS_PANEL, np.int64)]
            weight, pattern = np.r_[weight, weight[after]], np.r_[pattern, pattern[after]]
            if epattern is not None:
                epattern = np.r_[epattern, epattern[after]]
            period = period_of(times, spec)
        gen = generators.generator_index(pattern, period)
    if epattern is not None:
        codes = stacked_codes(codes, epattern, n_codes)
    return aggregate_histories(
        ids, times, codes, obstype, generator=gen, weight=weight, resolution=spec.resolution,
        return_nodes=True,
    )  # fmt: skip


def build_latent_model(
    spec: ModelSpec, panel: Panel, histories: Histories | None = None, agg=None, design=None
):
    """The PyMC model of a latent-state spec (see the module docstring).

    Parameters
    ----------
    spec : ModelSpec
        With ``spec.observation.latent``.
    panel : Panel
        The validated panel (record codes in ``state``).
    histories : Histories, optional
        ``latent_histories(spec, panel, generators)[0]``, if already computed.
    agg : AggregatedData, optional
        ``aggregate(panel, spec)`` (for the design of covariates and groups).
    design : tuple, optional
        ``latent_design(spec, panel, agg)``, if already computed.

    Returns
    -------
    pymc.Model
    """
    from markov_migration.inference.latent_op import forward_loglik
    from markov_migration.inference.latent_renewal import fit_histories

    check_latent_supported(spec, panel)
    layout = latent_layout(spec)
    design, generators = latent_design(spec, panel, agg) if design is None else design
    misc = misclassification_effects(spec, design, panel.data)
    if histories is None:
        histories = latent_histories(spec, panel, generators, misc)[0]
    obs = spec.observation
    k, kh = spec.n_states, len(layout.hidden_states)
    code_matrix = emission_table(np.eye(k), layout.code_sets)  # (n_codes, K) 0/1
    phase_map = layout.emission  # (K_h, K): each hidden state's observed state
    coords = {**latent_coords(spec, layout, design), **misc_coords(misc)}
    with pm.Model(coords=coords) as model:
        dims = "latent_transition" if layout.phased else "transition"
        suffix = "_latent" if layout.phased else ""
        if layout.phased:
            log_rate = pm.Normal(
                f"log_rate{suffix}", mu=layout.prior_mu, sigma=layout.prior_sigma, dims=dims
            )
        else:  # the pure-panel priors: total exit rates and their splits
            log_rate = baseline_log_rate(spec, dims=dims)
        rate = pm.Deterministic(f"rate{suffix}", pt.exp(log_rate), dims=dims)
        if design is not None and layout.phased:  # hidden generators per pattern and group
            q_stack = phased_generators(spec, layout, design, generators, log_rate)
            pm.Deterministic(
                "Q_latent", hidden_generator(layout, rate), dims=("from_latent", "to_latent")
            )
        elif design is not None:  # one generator per covariate pattern and group
            q_stack, _ = _pattern_generators(spec, design, generators, log_rate)
        else:
            off = pt.set_subtensor(pt.zeros((kh, kh))[layout.rate_from, layout.rate_to], rate)
            q = off - pt.diag(off.sum(axis=1))
            q_stack = q[None]
            if layout.phased:
                pm.Deterministic("Q_latent", q, dims=("from_latent", "to_latent"))
            else:
                pm.Deterministic("Q", q, dims=("from_state", "to_state"))
        emission = pt.as_tensor_variable(np.eye(k))
        for r, targets in obs.misclassification:
            alpha = np.array([obs.prior_correct] + [obs.prior_error] * len(targets))
            row = pm.Dirichlet(
                f"misclassification_{spec.states[r]}", a=alpha, dims=f"recorded_{spec.states[r]}"
            )
            emission = pt.set_subtensor(emission[r, np.array((r, *targets))], row)
        if obs.misclassification:
            emission = pm.Deterministic(
                "misclassification", emission, dims=("true_state", "recorded_state")
            )
        if misc is None:
            hidden_emission = pt.dot(pt.as_tensor_variable(phase_map), emission)  # (K_h, K)
            table = pt.dot(pt.as_tensor_variable(code_matrix), hidden_emission.T)
        else:  # one table per emission pattern, stacked (inference/latent_misc.py)
            table = pattern_table(emission, misc, phase_map, code_matrix)
        if obs.hidden and layout.phased:
            initial = _phased_initial(spec, layout)
        elif obs.hidden:
            initial = pm.Dirichlet("initial", a=np.ones(kh), dims="latent_state")
        else:
            initial = pt.ones(kh)
        if obs.nonresponse is not None:
            r, d = nonresponse_variables(spec)
            pmap = pt.as_tensor_variable(phase_map)
            d_hidden = None if d is None else pt.dot(pmap, d)
            qs = []
            for m in range(design.n_generators if design is not None else 1):
                q_m, first, tab = nonresponse_inputs(
                    q_stack[m], initial, table, pt.dot(pmap, r), d_hidden, pt
                )
                qs.append(q_m)
            q_stack, initial, table = pt.stack(qs), first, tab
        # the sampler's tree is split at renewal points (inference/latent_renewal.py)
        data = [
            pt.as_tensor_variable(np.asarray(a)) for a in fit_histories(spec, layout, histories)
        ]
        pm.Potential("loglik", forward_loglik(q_stack, initial, table, data))
    return model


def _phased_initial(spec: ModelSpec, layout):
    """``initial ~ Dirichlet(1, ..., 1)`` over the hidden states, sampled in two stages (PyMC).

    By the aggregation property of the Dirichlet, the shares of the observed
    states are ``Dirichlet(n_r)`` (``n_r`` the phases of state ``r``) and, for each
    phased state, the split over its phases is an independent ``Dirichlet(1, ..., 1)``.
    The prior is the same; the geometry is not: the observed shares are pinned by
    the first records while the phase split is barely informed (the panel records
    no phases), and one stick-breaking transform over all hidden states coupled the
    two (posterior correlation -0.73 on the example panel with ``returned = 2``).
    """
    k, kh = spec.n_states, len(layout.hidden_states)
    counts = np.bincount(layout.observed, minlength=k).astype(np.float64)
    state_share = pm.Dirichlet("initial_state", a=counts, dims="state")
    parts = pt.zeros(kh)
    for r in range(k):
        members = np.flatnonzero(layout.observed == r)
        if len(members) == 1:
            parts = pt.set_subtensor(parts[members[0]], state_share[r])
            continue
        split = pm.Dirichlet(
            f"initial_phase_{spec.states[r]}", a=np.ones(len(members)),
            dims=f"phase_{spec.states[r]}",
        )  # fmt: skip
        parts = pt.set_subtensor(parts[members], state_share[r] * split)
    return pm.Deterministic("initial", parts, dims="latent_state")


def _pattern_generators(spec: ModelSpec, design, generators, log_rate):
    """Generators (M, K, K) of the record patterns; ``Q`` on the reported grid (PyMC)."""
    from markov_migration.inference.hazard_terms import generator_matrix, hazard_terms

    log_q, log_q_grid = hazard_terms(
        design, log_rate, pt.as_tensor_variable(generators.generator_x),
        pt.as_tensor_variable(generators.generator_group),
        pt.as_tensor_variable(design.parameter_scale),
    )  # fmt: skip
    k = spec.n_states
    n_grid = int(np.prod(design.grid_shape))
    if not design.has_effects and not design.has_groups and n_grid > 1:
        # a covariate only on misclassification: its levels span the grid, Q is the same
        log_q_grid = pt.repeat(log_q_grid, n_grid, axis=0)
    q_grid = generator_matrix(pt.exp(log_q_grid), spec)
    pm.Deterministic(
        "Q", q_grid.reshape((*design.grid_shape, k, k)),
        dims=(*design.grid_dims, "from_state", "to_state"),
    )  # fmt: skip
    return generator_matrix(pt.exp(log_q), spec), q_grid


def _sample(model, s, progress: bool):
    if s.sampler == "nutpie":
        from markov_migration.inference.compiled import compile_nutpie

        t0 = time.perf_counter()
        # Cached across processes (inference/compiled.py): cav with exact deaths
        # compiled in 4.6 s instead of 23.6 s, with the same draws for the same seed.
        compiled = compile_nutpie(model)
        s.timings["compile"] = time.perf_counter() - t0
        trace = run_nutpie(compiled, s, progress)
    else:
        trace = run_pymc(model, s, progress)
    return trace["posterior"].to_dataset(), trace["sample_stats"].to_dataset()


def sample_latent(spec, agg, settings, *, progress=False, command=None, panel=None):
    """Sample a latent-state model; return the fit DataTree (see ``inference.fit.sample``).

    The fit file is the pure-panel layout plus ``Q_latent``, ``misclassification``
    and ``initial`` as the model has them; ``log_likelihood`` holds
    ``histories`` (dim ``respondent``: each respondent's whole-history
    log-likelihood) instead of per-transition terms, and ``observed_data`` only
    the pairs of exactly recorded states (censored records left out).
    """
    model, context = latent_model_and_context(spec, panel, agg)
    from markov_migration.inference.latent_impossible import INIT_FAILED, impossible_histories
    from markov_migration.interrupts import reraise_after

    try:
        with reraise_after():
            posterior, stats = _sample(model, settings, progress)
    except RuntimeError as err:  # nutpie: no finite starting point
        if INIT_FAILED not in str(err):
            raise
        raise impossible_histories(spec, model, context) from None
    # as inference.model.sampled_variables (model imports this module: no cycle)
    sampled = [rv.name for rv in model.free_RVs if rv.name in posterior]
    posterior = posterior[kept_variables(list(posterior.data_vars), sampled)]
    return assemble_latent_fit(
        spec, agg, model, posterior, stats, settings.to_attrs(), sampled, context,
        command=command, panel=panel,
    )  # fmt: skip


def latent_model_and_context(spec: ModelSpec, panel: Panel, agg=None):
    """Check a latent spec, build its design, histories and PyMC model.

    Returns
    -------
    model : pymc.Model
    context : tuple
        (histories, respondents, node of each, design, generators, misclassification
        effects): what
        :func:`assemble_latent_fit` needs to compute each respondent's
        log-likelihood from the draws.
    """
    check_latent_supported(spec, panel)
    design, generators = latent_design(spec, panel, agg)
    misc = misclassification_effects(spec, design, panel.data)
    histories, respondents, nodes = latent_histories(spec, panel, generators, misc)
    model = build_latent_model(spec, panel, histories, design=(design, generators))
    return model, (histories, respondents, nodes, design, generators, misc)


def kept_variables(available, sampled) -> list[str]:
    """The variables a latent fit file keeps, of those ``available``.

    The reported ones and every free variable (its diagnostics need the draws).
    """
    keep = ["log_rate", "rate", "Q", *LATENT_VARIABLES, *EFFECT_VARIABLES]
    keep += [v for v in available if v.startswith("misclassification_")]
    keep += [v for v in sampled if v not in keep]
    return [v for v in keep if v in available]


def assemble_latent_fit(
    spec, agg, model, posterior, stats, attrs, sampled, context, *, command=None, panel=None
):
    """The fit tree of a latent model's draws (posterior or prior).

    Phase-type draws get the observed-state ``Q`` (on the design's reported grid
    with covariates, groups or periods); ``log_likelihood`` holds each
    respondent's history log-likelihood per draw; ``observed_data`` the pairs of
    recorded states.
    """
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.inference.log_prior import log_prior_dataset

    layout = latent_layout(spec)
    posterior = posterior.transpose(*SAMPLE_DIMS, ...)
    if layout.phased:
        posterior = observed_from_latent(spec, layout, posterior, design=context[3])
    loglik = history_loglik_draws(spec, layout, posterior, *context)
    return assemble_fit(
        spec, recorded_pairs(spec, agg), posterior, stats, attrs, command, panel,
        log_likelihood=loglik, sampled=sampled,
        log_prior=log_prior_dataset(model, posterior, sampled),
    )  # fmt: skip


__all__ = [
    "LATENT_VARIABLES",
    "LatentLayout",
    "assemble_latent_fit",
    "build_latent_model",
    "check_latent_supported",
    "kept_variables",
    "latent_histories",
    "latent_layout",
    "latent_model_and_context",
    "observed_generator",
    "sample_latent",
]
