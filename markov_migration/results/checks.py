"""Every check of a fit in one report: convergence and posterior predictive checks.

Layer 4 (results); reads fit files, never imports PyMC. The convergence checks
(R-hat, bulk and tail ESS, divergences, E-BFMI; ArviZ's statistics) are in
:mod:`markov_migration.results.diagnostics`, the predictive checks (transition
counts, prevalence by wave) in :mod:`markov_migration.results.ppc`, the Markov
assumption on observation triples in :mod:`markov_migration.results.ppc_markov`, the
Pearson-type test of R msm's ``pearson.msm`` in :mod:`markov_migration.results.pearson`; their figures
and output files in :mod:`markov_migration.plots.check_figures`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import CI_PROB, PPC_DRAWS, SAMPLE_DIMS, THRESHOLDS
from markov_migration.errors import InputError
from markov_migration.results.diagnostics import Check, convergence_checks, convergence_table
from markov_migration.results.pearson import PearsonResult, pearson_test
from markov_migration.results.ppc import PPC_BANDS, PPCResult, ppc_prevalence, ppc_transitions
from markov_migration.results.ppc_latent import is_latent
from markov_migration.results.ppc_markov import ppc_markov
from markov_migration.results.ppc_nonresponse import latent_check
from markov_migration.results.sensitivity import PSENSE_THRESHOLD, flagged, prior_sensitivity
from markov_migration.results.summaries import check_ci


@dataclass
class CheckReport:
    """Everything :func:`run_checks` found.

    Attributes
    ----------
    checks : list of Check
    convergence : pandas.DataFrame
        Per parameter: ``parameter, mean, sd, rhat, ess_bulk, ess_tail, mcse_mean``.
    transitions : PPCResult or None
    prevalence : PPCResult or None
    states : list of str
    time_unit : str
    n_chains, n_draws : int
    markov : PPCResult or None
        The Markov-assumption check on observation triples
        (:mod:`markov_migration.results.ppc_markov`).
    notes : list of str
        Warnings that are not checks (periods with little exposure).
    pearson : PearsonResult or None
        The Pearson-type test (:mod:`markov_migration.results.pearson`).
    sensitivity : pandas.DataFrame or None
        Power-scaling prior and likelihood sensitivity of every parameter
        (:mod:`markov_migration.results.sensitivity`), when the fit has a log prior.
    """

    checks: list[Check]
    convergence: pd.DataFrame
    transitions: PPCResult | None
    prevalence: PPCResult | None
    states: list[str]
    time_unit: str
    n_chains: int
    n_draws: int
    markov: PPCResult | None = None
    notes: list[str] = field(default_factory=list)
    pearson: PearsonResult | None = None
    sensitivity: pd.DataFrame | None = None

    @property
    def failed(self) -> list[Check]:
        """Checks that failed."""
        return [c for c in self.checks if c.passed is False]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failed

    def table(self) -> pd.DataFrame:
        """One row per check: check, label, value, threshold, status, detail."""
        return pd.DataFrame(
            [
                {
                    "check": c.name,
                    "label": c.label,
                    "value": c.value,
                    "threshold": c.threshold,
                    "status": c.status,
                    "detail": c.detail,
                }
                for c in self.checks
            ]
        )


def _ppc_check(name: str, label: str, result: PPCResult | None, error: str | None) -> Check:
    rule = f">= {THRESHOLDS['ppp_min']}"
    if result is None:
        return Check(name, label, float("nan"), rule, None, error or "not run")
    ok = result.ppp >= THRESHOLDS["ppp_min"]
    detail = f"chi-square: observed {np.mean(result.observed_discrepancy):.1f} on average"
    detail += f" vs replicated {np.mean(result.replicated_discrepancy):.1f}"
    return Check(name, label, result.ppp, rule, ok, detail)


def _sensitivity_check(tree: xr.DataTree) -> tuple[pd.DataFrame | None, Check]:
    """Prior sensitivity's row: fails on a prior-data conflict, lists prior-dominated moves."""
    label = "prior sensitivity (power-scaling): parameters in prior-data conflict"
    try:
        table = prior_sensitivity(tree)
    except InputError as err:
        return None, Check("prior_sensitivity", label, float("nan"), "= 0", None, err.message)
    found = flagged(table)
    conflict, weak = found["prior-data conflict"], found["prior-dominated"]
    moves = [p for p in weak if p.startswith("log_rate[")]
    parts = []
    if conflict:
        parts.append("conflict: " + ", ".join(conflict))
    if moves:
        parts.append(
            "prior-dominated transitions (likelihood sensitivity < "
            f"{PSENSE_THRESHOLD:g}): " + ", ".join(m[len("log_rate[") : -1] for m in moves)
        )
    detail = "; ".join(parts) or "no conflict; every transition informed by the data"
    return table, Check(
        "prior_sensitivity", label, float(len(conflict)), "= 0", not conflict, detail
    )


def _not_for_latent(tree, **_) -> None:
    """The panel-pair checks replicate records as true states: not a latent model's data."""
    raise InputError(
        "not run for a latent-state fit (its records are not the true states); "
        "ppc_transitions checks each next record through the observation model"
    )


def _latent_transitions(tree, **kwargs) -> PPCResult:
    """The latent one-step-ahead check (each interval with its pattern's generator)."""
    return latent_check(tree, **kwargs)  # nonresponse fits: missed interviews included


def _pearson_check(result: PearsonResult | None, error: str | None) -> Check:
    """The Pearson-type test's row: its predictive p-value, msm's plug-in figures in the detail."""
    check = _ppc_check("ppc_pearson", "PPC p-value, Pearson table (msm pearson.msm)", result, error)
    if result is not None:
        check.detail = (
            f"X = {result.statistic:.1f} at the posterior mean, chi-square p in "
            f"[{result.p_lower:.2g}, {result.p_upper:.2g}]"
            + (f", Titman's p {result.p:.2g}" if np.isfinite(result.p) else "")
            + f"; replicated X {np.mean(result.replicated_discrepancy):.1f} on average"
        )
    return check


def run_checks(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> CheckReport:
    """Run every convergence check and posterior predictive check of a fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit (see :func:`markov_migration.fitfile.format.read_fit`).
    n_draws : int
        Posterior draws used by the predictive checks.
    n_bands : int
        Interval bands of the transition-count check.
    ci : float
        Probability of the predictive intervals.
    seed : int
        Seed of the replications (the same seed gives the same report).

    Returns
    -------
    CheckReport
    """
    check_ci(ci)
    if n_draws < 1:
        raise InputError(f"--draws must be at least 1, got {n_draws}")
    table = convergence_table(tree)
    checks = convergence_checks(tree, table)
    results: dict[str, PPCResult | None] = {}
    errors: dict[str, str | None] = {}
    latent = is_latent(tree)
    for name, fn, kwargs in (
        ("transitions", _latent_transitions if latent else ppc_transitions, {"n_bands": n_bands}),
        ("prevalence", _not_for_latent if latent else ppc_prevalence, {}),
        ("markov", _not_for_latent if latent else ppc_markov, {}),
        ("pearson", pearson_test, {}),
    ):
        try:
            results[name] = fn(tree, n_draws=n_draws, ci=ci, seed=seed, **kwargs)
            errors[name] = None
        except InputError as err:
            results[name], errors[name] = None, err.message
    checks.append(
        _ppc_check(
            "ppc_transitions",
            "PPC p-value, next records given the earlier ones (latent model)"
            if latent
            else "PPC p-value, transition counts",
            results["transitions"],
            errors["transitions"],
        )
    )
    checks.append(
        _ppc_check(
            "ppc_prevalence",
            "PPC p-value, prevalence by wave",
            results["prevalence"],
            errors["prevalence"],
        )
    )
    checks.append(
        _ppc_check(
            "ppc_markov",
            "PPC p-value, Markov assumption (observation triples)",
            results["markov"],
            errors["markov"],
        )
    )
    checks.append(_pearson_check(results["pearson"], errors["pearson"]))
    sensitivity, check = _sensitivity_check(tree)
    checks.append(check)
    post = tree["posterior"]
    notes = period_notes(tree) + weighted_notes(tree)
    return CheckReport(
        checks=checks,
        convergence=table,
        transitions=results["transitions"],
        prevalence=results["prevalence"],
        states=json.loads(tree.attrs["states"]),
        time_unit=str(tree.attrs.get("time_unit", "years")) if "Q" in post else "steps",
        n_chains=int(post.sizes[SAMPLE_DIMS[0]]),
        n_draws=int(post.sizes[SAMPLE_DIMS[1]]),
        markov=results["markov"],
        notes=notes,
        pearson=results["pearson"],
        sensitivity=sensitivity,
    )


def weighted_notes(tree: xr.DataTree) -> list[str]:
    """What the checks of a survey-weighted fit mean (none for an unweighted fit).

    The prevalence and Markov checks replicate the sampled respondents unweighted, the
    transition-count check the weighted counts rounded to whole transitions, all as if
    independent: under unequal weights their p-values are not calibrated for the survey
    design, and under informative sampling the unweighted sample is not what the
    population model predicts. The convergence checks are unaffected.
    """
    if not int(tree.attrs.get("data_weighted", 0) or 0):
        return []
    how = str(tree.attrs.get("weights_adjustment", "none: fitted before calibration existed"))
    spread = (
        "the posterior is calibrated to the design (Williams & Savitsky 2021)"
        if how.startswith("calibrated")
        else "the posterior is the raw pseudo-posterior, whose intervals ignore the weights' "
        f"design effect ({how.removeprefix('none: ')})"
    )
    return [
        "survey-weighted fit: the predictive checks compare the model with the sample as if "
        "its respondents were independent (prevalence and Markov checks unweighted, "
        "transition counts weighted and rounded): their p-values are not calibrated for "
        "the survey design, and with weights related to the outcomes (informative "
        f"sampling) they can fail for a correct model; {spread}"
    ]


def period_notes(tree: xr.DataTree) -> list[str]:
    """Warnings for periods with little exposure in the fit's data (see ``validate``)."""
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.inputs.period_exposure import little_exposure

    spec = fit_spec(tree)
    if not spec.periods:
        return []
    table = tree["observed_data"].to_dataset().to_dataframe().reset_index(drop=True)
    return little_exposure(spec, table)
