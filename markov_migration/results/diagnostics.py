"""Convergence diagnostics of a fit: the convergence table and the five convergence checks.

Layer 4 (results); reads fit files, never imports PyMC.

ArviZ computes every statistic: :func:`arviz_stats.summary` gives the mean, sd,
rank-normalised split R-hat, bulk and tail ESS and MCSE of every sampled parameter
(the PyMC model's free variables, recorded by ``fit`` in the root attribute
``sampled_variables``: ``log_rate``, ``log_hr_scaled``, ``group_sd``, ``group_z`` in
continuous time, the Dirichlet rows ``p_<state>`` in discrete time),
:func:`arviz_stats.bfmi` the E-BFMI of every chain. What is ours is the labels
(``a->b`` for log rates), dropping entries that never vary (structural zeros) and the
verdicts, which name the worst parameter and its value,
with the thresholds of Vehtari et al. (2021) and Betancourt (2016)
(:data:`~markov_migration.defaults.THRESHOLDS`):

======================  =========================================================
check                   passes when
======================  =========================================================
``rhat``                rank-normalised split R-hat < 1.01 for every parameter
``ess_bulk``            bulk ESS >= 100 per chain (400 with 4 chains), every parameter
``ess_tail``            tail ESS >= 100 per chain, every parameter
``divergences``         no divergent transitions after warm-up
``ebfmi``               E-BFMI > 0.3 in every chain
======================  =========================================================

:func:`arviz_stats.diagnose` applies the same rules but answers pass/fail per variable
(a whole ``log_rate`` array) and prints; the check table needs the worst element and its
value, so the verdicts are ours, on ArviZ's numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import CI_PROB, SAMPLE_DIMS, THRESHOLDS
from markov_migration.errors import InputError
from markov_migration.fitfile.assemble import LEGACY_SAMPLED, recorded_sampled

#: Free parameters of the continuous-time models, for fit files that do not record theirs
#: (written before the ``sampled_variables`` record).
FREE_PARAMETERS = LEGACY_SAMPLED

#: Log intensities whose convergence rows are labelled by the transition alone.
_TRANSITION_LABELLED = ("log_rate", "log_rate_direct")

#: Columns of :func:`convergence_table`, with the names ArviZ's summary gives them.
CONVERGENCE_COLUMNS = {
    "mean": "mean",
    "sd": "sd",
    "rhat": "r_hat",
    "ess_bulk": "ess_bulk",
    "ess_tail": "ess_tail",
    "mcse_mean": "mcse_mean",
}


@dataclass
class Check:
    """The outcome of one check.

    Attributes
    ----------
    name : str
        Short identifier (``rhat``, ``ess_bulk``, ``ppc_transitions`` ...).
    label : str
        What it checks, for humans.
    value : float
        The statistic (nan when the check could not run).
    threshold : str
        The rule, e.g. ``"< 1.01"``.
    passed : bool or None
        None when the check does not apply (e.g. no embedded panel).
    detail : str
        Where it is worst, or why it was skipped.
    """

    name: str
    label: str
    value: float
    threshold: str
    passed: bool | None
    detail: str = ""

    @property
    def status(self) -> str:
        """``pass``, ``FAIL`` or ``skipped``."""
        return "skipped" if self.passed is None else ("pass" if self.passed else "FAIL")


def sampled_parameters(tree: xr.DataTree) -> xr.Dataset:
    """Return the sampler's free parameters: log rates (and effects), or the Dirichlet rows.

    The fit file's record of its sampled variables (root attribute
    ``sampled_variables``, the PyMC model's free variables) decides; older fit files
    without it fall back to :data:`FREE_PARAMETERS` or the rows ``p_*``.
    """
    post = tree["posterior"].to_dataset()
    recorded = recorded_sampled(tree)
    if recorded:
        present = [v for v in recorded if v in post]
        if present:
            return post[present]
    free = [v for v in FREE_PARAMETERS if v in post]
    if free:
        return post[free]
    rows = [v for v in post.data_vars if str(v).startswith("p_")]
    if rows:
        return post[rows]
    if "P" in post:
        return post[["P"]]
    raise InputError("fit file posterior has neither log_rate nor discrete-time rows p_*")


def parameter_labels(da: xr.DataArray, name: str) -> list[str]:
    """Labels of the entries of one parameter, in C order of its non-sample dims.

    ``log_rate`` and ``log_rate_direct`` (log intensities with their own prior) entries
    are labelled by their transition alone (``a->b``), others as ``name[coord,...]``
    (``log_exit_rate[abroad]``, ``split_abroad[returned]``); a scalar parameter is its
    name.
    """
    extra = [d for d in da.dims if d not in SAMPLE_DIMS]
    if not extra:
        return [name]
    stacked = da.isel(dict.fromkeys(SAMPLE_DIMS, 0), drop=True).stack(_p=extra)
    out = []
    for idx in stacked["_p"].values:
        idx = idx if isinstance(idx, tuple) else (idx,)
        label = ",".join(str(i) for i in idx)
        out.append(label if name in _TRANSITION_LABELLED else f"{name}[{label}]")
    return out


def convergence_table(tree: xr.DataTree) -> pd.DataFrame:
    """R-hat, bulk and tail ESS and MCSE of every sampled parameter (by ArviZ).

    Entries that never vary (e.g. structural zeros of a one-step matrix) are left out:
    their R-hat and ESS are undefined.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, mean, sd, rhat, ess_bulk, ess_tail, mcse_mean``.
    """
    import arviz_stats as azs

    params = sampled_parameters(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny samples make ArviZ warn; the thresholds judge them
        stats = azs.summary(
            params,
            kind="all",
            fmt="xarray",
            round_to="none",
            ci_prob=CI_PROB,
            sample_dims=list(SAMPLE_DIMS),
        )
    rows = []
    for name, da in params.data_vars.items():
        labels = parameter_labels(da, str(name))
        varies = (da.max(SAMPLE_DIMS) > da.min(SAMPLE_DIMS)).to_numpy().reshape(-1)
        cols = {
            col: np.asarray(stats[name].sel(summary=key).to_numpy(), dtype=float).reshape(-1)
            for col, key in CONVERGENCE_COLUMNS.items()
        }
        for i, label in enumerate(labels):
            if varies[i]:
                rows.append({"parameter": label} | {col: v[i] for col, v in cols.items()})
    return pd.DataFrame(rows, columns=["parameter", *CONVERGENCE_COLUMNS])


def _worst(table: pd.DataFrame, col: str, largest: bool) -> tuple[float, str]:
    """The largest (or smallest) value of a column and the parameter where it is."""
    vals = table[col].to_numpy(dtype=float)
    if vals.size == 0 or np.all(np.isnan(vals)):
        return float("nan"), "no parameters"
    i = int(np.nanargmax(vals) if largest else np.nanargmin(vals))
    return float(vals[i]), str(table["parameter"].iloc[i])


def _divergence_check(stats: xr.DataTree | None) -> Check:
    label = "divergent transitions"
    if stats is None or "diverging" not in stats:
        return Check(
            "divergences", label, float("nan"), "= 0", None,
            "the fit file records no divergence statistics",
        )  # fmt: skip
    div = np.asarray(stats["diverging"].transpose(*SAMPLE_DIMS).to_numpy(), dtype=bool)
    n = int(div.sum())
    per_chain = div.sum(axis=1)
    return Check(
        "divergences",
        label,
        float(n),
        f"<= {THRESHOLDS['divergences_max']}",
        n <= THRESHOLDS["divergences_max"],
        f"{n / div.size:.1%} of draws; per chain: {', '.join(map(str, per_chain))}",
    )


def _ebfmi_check(stats: xr.DataTree | None) -> Check:
    import arviz_stats as azs

    label, rule = "E-BFMI (energy)", f"> {THRESHOLDS['ebfmi_min']}"
    if stats is None or "energy" not in stats:
        return Check("ebfmi", label, float("nan"), rule, None, "the fit file records no energy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = azs.bfmi(stats.to_dataset()[["energy"]], sample_dims=list(SAMPLE_DIMS))["energy"]
    e = np.asarray(e.to_numpy(), dtype=float)
    low = int(np.argmin(e))
    return Check(
        "ebfmi",
        label,
        float(e.min()),
        rule,
        bool(np.all(e > THRESHOLDS["ebfmi_min"])),
        f"lowest in chain {low}; per chain: {', '.join(f'{x:.2f}' for x in e)}",
    )


def convergence_checks(tree: xr.DataTree, table: pd.DataFrame | None = None) -> list[Check]:
    """Run the five convergence checks (see the module docstring for the rules).

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.
    table : pandas.DataFrame, optional
        Its :func:`convergence_table`, if already computed.

    Returns
    -------
    list of Check
        ``rhat``, ``ess_bulk``, ``ess_tail``, ``divergences``, ``ebfmi``.
    """
    table = convergence_table(tree) if table is None else table
    n_chains = int(tree["posterior"].sizes[SAMPLE_DIMS[0]])
    ess_min = THRESHOLDS["ess_per_chain_min"] * n_chains
    r, where = _worst(table, "rhat", True)
    ok = bool(np.all(table["rhat"].to_numpy() < THRESHOLDS["rhat_max"])) and np.isfinite(r)
    checks = [
        Check(
            "rhat",
            "R-hat (rank-normalised split)",
            r,
            f"< {THRESHOLDS['rhat_max']}",
            ok,
            f"largest: {where}",
        )
    ]
    for col, label in (("ess_bulk", "bulk ESS"), ("ess_tail", "tail ESS")):
        v, where = _worst(table, col, False)
        ok = bool(np.all(table[col].to_numpy() >= ess_min)) and np.isfinite(v)
        checks.append(
            Check(
                col,
                label,
                v,
                f">= {ess_min} ({THRESHOLDS['ess_per_chain_min']} per chain)",
                ok,
                f"smallest: {where}",
            )
        )
    stats = tree["sample_stats"] if "sample_stats" in tree.children else None
    checks += [_divergence_check(stats), _ebfmi_check(stats)]
    return checks
