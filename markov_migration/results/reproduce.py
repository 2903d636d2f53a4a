"""Re-run a fit from what its file records and compare the draws.

A fit file records the model file's text, the sampler settings and seed, and
its data: the validated panel (``panel_data``) when it was small enough to
embed, and always the input file's path and SHA-256. :func:`reproduce`
rebuilds the data (the embedded panel, checked against the recorded
aggregated data; otherwise the data file, whose SHA-256 must match), samples
again with the recorded settings and compares the posterior draws:

``exact``
    Every posterior draw is identical (same seed, data, libraries, machine).
``agree``
    Not identical (e.g. other library versions or another machine), but the
    posterior mean of every sampled parameter agrees within Monte Carlo error:
    ``|mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2) < 4`` (the two means are
    independent Monte Carlo estimates of the same quantity, so this fails by
    chance with probability about 6e-5 per parameter).
``disagree``
    Some parameter's means differ by more than that.

Sampling imports PyMC (through :mod:`markov_migration.inference.fit`); the
import happens inside :func:`reproduce` so that the rest of the results layer
stays PyMC-free.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.fitfile.readback import recorded_data
from markov_migration.results.diagnostics import convergence_table

#: Largest |z| of posterior means still counted as agreement.
Z_TOLERANCE = 4.0


@dataclass
class Reproduction:
    """Outcome of :func:`reproduce`.

    Attributes
    ----------
    verdict : {"exact", "agree", "disagree"}
    data_source : str
        Where the data came from.
    table : pandas.DataFrame
        Per sampled parameter: ``parameter, mean_original, mean_rerun,
        mcse_original, mcse_rerun, z``.
    max_abs_z : float
    tolerance : float
    version_differences : dict of str to (str, str)
        Libraries whose recorded and current versions differ.
    rerun : xarray.DataTree
        The new fit.
    seed : int
        Seed of the re-run.
    seconds : float
        Time of the re-run.
    notes : list of str
    """

    verdict: str
    data_source: str
    table: pd.DataFrame
    max_abs_z: float
    tolerance: float
    version_differences: dict[str, tuple[str, str]]
    rerun: xr.DataTree
    seed: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True for an exact match or agreement within Monte Carlo error."""
        return self.verdict in ("exact", "agree")

    def message(self) -> str:
        """One sentence for humans."""
        if self.verdict == "exact":
            return "exact match: every posterior draw is identical"
        versions = (
            "library versions differ: "
            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.version_differences.items())
            if self.version_differences
            else "same library versions (another machine, thread timing or seed)"
        )
        if self.verdict == "agree":
            return (
                "draws differ but agree within Monte Carlo error "
                f"(max |z| = {self.max_abs_z:.2f} < "
                f"{self.tolerance:g}); {versions}"
            )
        worst = self.table.loc[self.table["z"].abs().idxmax(), "parameter"]
        return (
            "DISAGREE: posterior means differ beyond Monte Carlo error "
            f"(|z| = {self.max_abs_z:.2f} >= "
            f"{self.tolerance:g} for {worst}); {versions}"
        )


def version_differences(tree: xr.DataTree) -> dict[str, tuple[str, str]]:
    """Libraries whose version recorded in the fit differs from the installed one."""
    from markov_migration.fitfile.format import library_versions

    recorded = json.loads(str(tree.attrs.get("versions", "{}")))
    current = library_versions()
    return {
        k: (recorded[k], current[k])
        for k in sorted(recorded)
        if k in current and recorded[k] != current[k]
    }


def compare_draws(
    original: xr.DataTree, rerun: xr.DataTree, tolerance: float = Z_TOLERANCE
) -> tuple[str, pd.DataFrame, float]:
    """Compare two fits' posteriors: exact, agree (within MCSE) or disagree.

    Returns
    -------
    verdict : str
    table : pandas.DataFrame
    max_abs_z : float
    """
    a, b = original["posterior"], rerun["posterior"]
    common = [v for v in a.data_vars if v in b.data_vars]
    exact = bool(common) and all(
        a[v].shape == b[v].shape and np.array_equal(a[v].to_numpy(), b[v].to_numpy())
        for v in common
    )
    ta, tb = convergence_table(original), convergence_table(rerun)
    table = ta[["parameter", "mean", "mcse_mean"]].merge(
        tb[["parameter", "mean", "mcse_mean"]], on="parameter", suffixes=("_original", "_rerun")
    )
    table = table.rename(
        columns={"mcse_mean_original": "mcse_original", "mcse_mean_rerun": "mcse_rerun"}
    )
    table = table[["parameter", "mean_original", "mean_rerun", "mcse_original", "mcse_rerun"]]
    se = np.sqrt(table["mcse_original"] ** 2 + table["mcse_rerun"] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = table["mean_rerun"] - table["mean_original"]
        table["z"] = np.where(diff == 0, 0.0, diff / se)
    max_z = float(np.max(np.abs(table["z"]))) if len(table) else 0.0
    if exact:
        return "exact", table, max_z
    return ("agree" if max_z < tolerance else "disagree"), table, max_z


def reproduce(
    fit: str | Path | xr.DataTree,
    *,
    seed: int | None = None,
    progress: bool = False,
    tolerance: float = Z_TOLERANCE,
    command: str | None = None,
) -> Reproduction:
    """Re-run a fit from its file's records and compare the draws.

    Parameters
    ----------
    fit : str, Path or xarray.DataTree
        A fit file (or one read with :func:`~markov_migration.fitfile.format.read_fit`).
    seed : int, optional
        Re-run with another seed (default: the recorded one). With another
        seed the draws differ, so the best possible verdict is ``agree``.
    progress : bool
        Show the sampler's progress bar.
    tolerance : float
        Largest |z| of posterior means counted as agreement.
    command : str, optional
        Command line recorded in the re-run's provenance.

    Returns
    -------
    Reproduction

    Raises
    ------
    InputError
        If the fit cannot be re-run: a fake fit, no embedded panel and a
        missing or changed data file, unknown settings.
    """
    from markov_migration.fitfile.format import fit_spec, read_fit

    path = None
    if not isinstance(fit, xr.DataTree):
        path = Path(fit)
        fit = read_fit(path)
    tree = fit
    from markov_migration.inference.fit import SAMPLERS, FitSettings, sample

    recorded = FitSettings.from_attrs(tree.attrs)
    prior_only = bool(int(tree.attrs.get("prior_only", 0)))
    if prior_only:  # prior draws (fit --prior-only): re-drawn, not sampled
        recorded = replace(recorded, sampler=SAMPLERS[0])
    if recorded.sampler not in SAMPLERS:
        raise InputError(
            f"the fit was made by sampler '{recorded.sampler}', which cannot be re-run", path=path
        )
    # the recorded settings, new timings, and the seed asked for
    settings = replace(recorded, timings={}, seed=recorded.seed if seed is None else int(seed))
    try:  # absurd sizes, a bad seed: refused before the data are read or a model compiled
        settings.check()
    except InputError as err:
        why = err.message.removeprefix("--")
        raise InputError(
            f"the recorded sampler settings cannot be re-run: {why}", path=path
        ) from None
    spec = fit_spec(tree)
    panel, agg, source = recorded_data(tree, spec, path)
    from markov_migration.inference.model import check_memory

    check_memory(spec, agg, settings.chains, settings.draws)
    t0 = time.perf_counter()
    if prior_only:
        from markov_migration.inference.prior import sample_prior

        rerun = sample_prior(spec, agg, settings, command=command, panel=panel)
    else:
        rerun = sample(spec, agg, settings, progress=progress, command=command, panel=panel)
    seconds = time.perf_counter() - t0
    verdict, table, max_z = compare_draws(tree, rerun, tolerance)
    notes = []
    if seed is not None and seed != recorded.seed:
        notes.append(f"re-run with seed {seed} instead of the recorded {recorded.seed}")
    return Reproduction(
        verdict=verdict,
        data_source=source,
        table=table,
        max_abs_z=max_z,
        tolerance=tolerance,
        version_differences=version_differences(tree),
        rerun=rerun,
        seed=settings.seed,
        seconds=seconds,
        notes=notes,
    )
