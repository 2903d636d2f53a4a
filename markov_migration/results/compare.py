"""Model comparison by PSIS-LOO (ArviZ) of fits of the same data.

Layer 4 (results); reads fit files, never imports PyMC.

A fit file's ``log_likelihood.transitions`` holds, per aggregated row (all
transitions between the same two states over the same interval), the row's
log-likelihood ``count * log P``. Two units of "one observation" are offered:

``transition`` (default)
    Leave out one observed transition (one respondent's move between two
    consecutive observations). Every transition in a row has the same
    log-likelihood ``log P``, so PSIS runs once per row on ``log P`` and the
    row's pointwise ELPD and Pareto k are repeated ``count`` times. The result
    does not depend on how the panel was aggregated.
``respondent``
    Leave out a whole respondent: all their transitions, or their whole
    history in a latent-state fit (the only unit of those, chosen
    automatically): :mod:`markov_migration.results.compare_respondent`.
``row``
    Leave out a whole aggregated row (the stored values as they are). Rows with
    many transitions are influential, so Pareto k warnings are more frequent,
    and the result depends on the aggregation resolution. Used automatically
    for survey-weighted fits, whose counts are not whole numbers.

For a survey-weighted fit the log-likelihood is the weighted pseudo-likelihood, so
its LOO is not an estimate of out-of-sample predictive accuracy for the population
(nor for the sample): rows count their respondents' weights and the standard errors
ignore the design. ``compare`` computes it and says so (:data:`WEIGHTED_NOTE`).

Fits are only compared when they were fitted to the same data: the same input
SHA-256 and the same observations. When every fit file embeds its panel with
the columns its model reads (``panel_data``, written by ``fit``), the unit
``transition`` is one consecutive observation pair of the panel, in the
panel's order, whatever each model aggregates by: so a model with covariates
or host-country groups can be compared with one without (their
``observed_data`` differ). Otherwise the fits need the same aggregated rows. The table is
:func:`arviz_stats.compare`'s: ``rank, elpd_diff, dse, p_worse, diag_diff,
diag_elpd, p, elpd, se, weight`` plus the number of observations with Pareto
``k`` above ArviZ's threshold ``good_k = min(1 - 1/log10(S), 0.7)`` for S draws.

``by="group"`` adds ``dse_group``, the standard error of ``elpd_diff`` clustered
by the model's host-group column: observation pairs in the same group are
dependent (they share the group effect), so with ``d_i`` the pointwise ELPD
difference of pair ``i`` and ``S_g`` its sum over the pairs of group ``g``
(``G`` groups), ``dse_group = sqrt(G * var(S_g))`` with ``var`` the sample
variance (ddof 1): the cluster-robust (sandwich) form of ArviZ's paired
``dse = sqrt(n * var(d_i))``, which it equals in expectation when pairs are
independent and the groups equally large.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.results.compare_respondent import is_latent_fit
from markov_migration.results.diagnostics import sampled_parameters
from markov_migration.results.loo import LooResult, check_draws, panel_pairs

UNITS = ("transition", "row", "respondent")
BY = ("group",)


#: What LOO of a survey-weighted fit is (printed by ``compare`` for each weighted fit).
WEIGHTED_NOTE = (
    "survey-weighted fit: LOO of the weighted pseudo-likelihood (each left-out row counts "
    "its respondents' weights) is not an estimate of predictive accuracy for the population "
    "nor for the sample, and its se ignores the design; use the comparison as a rough guide"
)


def loo_fit(
    tree: xr.DataTree,
    unit: str = "transition",
    name: str = "fit",
    pair_rows: np.ndarray | None = None,
) -> LooResult:
    """PSIS-LOO of a fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit (see :func:`markov_migration.fitfile.format.read_fit`).
    unit : {"transition", "row"}
        What one left-out observation is (see the module docstring).
    name : str
        Label of the fit.
    pair_rows : ndarray of int64, optional
        Aggregated row of every observation pair (:func:`panel_pairs`): the
        pointwise values are then in the panel's pair order, comparable between
        fits that aggregate differently. Default: each row repeated ``count``
        times.

    Returns
    -------
    LooResult
    """
    import arviz_stats as azs
    from arviz_stats import ELPDDataLOO

    if unit not in UNITS:
        raise InputError(f"unknown LOO unit '{unit}' (use {' or '.join(UNITS)})")
    if "log_likelihood" not in tree.children or "transitions" not in tree["log_likelihood"]:
        raise InputError(f"{name}: fit file has no log_likelihood group: cannot compute LOO")
    ll = tree["log_likelihood"]["transitions"].transpose(*SAMPLE_DIMS, "obs")
    count = tree["observed_data"]["count"].to_numpy().astype(float)
    notes = check_draws(int(np.prod([ll.sizes[d] for d in SAMPLE_DIMS])), name)
    if not np.all(np.isfinite(ll.to_numpy())):
        raise InputError(f"{name}: the log-likelihood has non-finite values: cannot compute LOO")
    if int(tree.attrs.get("data_weighted", 0) or 0):
        notes.append(WEIGHTED_NOTE)
    if unit == "transition" and not np.allclose(count, np.round(count)):
        notes.append("weighted counts: LOO leaves out aggregated rows (unit 'row')")
        unit = "row"
    if unit == "transition":
        ll = ll / xr.DataArray(count, dims="obs")
    data = xr.DataTree.from_dict(
        {"posterior": sampled_parameters(tree), "log_likelihood": xr.Dataset({"transitions": ll})}
    )
    with warnings.catch_warnings():
        # Pareto k warnings are reported in the table instead
        warnings.simplefilter("ignore")
        res = azs.loo(data, pointwise=True, var_name="transitions")
    k_row = np.asarray(res.pareto_k.values, dtype=float)
    good_k = float(res.good_k)
    if unit == "row":
        n_units = int(k_row.size)
        high_rows = int(np.sum(k_row > good_k))
        return LooResult(name, res, unit, int(k_row.size), n_units, high_rows, high_rows, notes)

    reps = np.round(count).astype(np.int64)
    elpd_row = np.asarray(res.elpd_i.values, dtype=float)
    values = ll.to_numpy().reshape(-1, count.size)
    lppd_row = np.logaddexp.reduce(values, axis=0) - np.log(values.shape[0])
    p_row = lppd_row - elpd_row
    if pair_rows is None:
        pair_rows = np.repeat(np.arange(count.size), reps)
    elif not np.array_equal(np.bincount(pair_rows, minlength=count.size), reps):
        raise InputError(f"{name}: the panel's pairs do not add up to the aggregated counts")
    elpd_i = elpd_row[pair_rows]
    n = int(elpd_i.size)
    se = float(np.sqrt(n * np.var(elpd_i, ddof=1))) if n > 1 else 0.0
    k_i = k_row[pair_rows]
    dims = ("transition_obs",)
    out = ELPDDataLOO(
        elpd=float(elpd_i.sum()),
        se=se,
        p=float(np.sum(reps * p_row)),
        n_samples=int(res.n_samples),
        n_data_points=n,
        scale="log",
        warning=bool(np.any(k_row > good_k)),
        good_k=good_k,
        elpd_i=xr.DataArray(elpd_i, dims=dims),
        pareto_k=xr.DataArray(k_i, dims=dims),
        approx_posterior=False,
    )
    return LooResult(
        name,
        out,
        unit,
        int(count.size),
        n,
        int(np.sum(k_row > good_k)),
        int(np.sum(k_i > good_k)),
        notes,
    )


def clustered_dse(diff: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of a sum of pointwise differences clustered by group.

    Parameters
    ----------
    diff : ndarray of float, shape (n,)
        Pointwise ELPD differences (log scale, nats), one per observation pair.
    groups : ndarray, shape (n,)
        Group label of each pair.

    Returns
    -------
    float
        ``sqrt(G * var(S_g, ddof=1))`` with ``S_g`` the sum of ``diff`` within
        group ``g`` and ``G`` the number of groups (nats); 0 when all
        differences are 0, NaN with fewer than two groups.
    """
    diff = np.asarray(diff, dtype=float)
    sums = pd.Series(diff).groupby(np.asarray(groups), sort=False).sum().to_numpy()
    if np.all(diff == 0):
        return 0.0
    if sums.size < 2:
        return float("nan")
    return float(np.sqrt(sums.size * np.var(sums, ddof=1)))


def pair_groups(trees: dict[str, xr.DataTree], pairs: dict[str, pd.DataFrame]) -> np.ndarray:
    """The host group of every observation pair (panel pair order), for ``--by group``.

    Taken from the fits that declare groups (their embedded panel holds the
    group column); all of them must use the same column.

    Raises
    ------
    InputError
        When no fit has groups, the fits' group columns differ, or a fit with
        groups does not embed its panel.
    """
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.fitfile.readback import recorded_panel

    specs = {n: fit_spec(t) for n, t in trees.items()}
    columns = {n: s.groups.column for n, s in specs.items() if s.groups is not None}
    if not columns:
        raise InputError("--by group: none of the fits has host groups (a [groups] table)")
    if len(set(columns.values())) > 1:
        listed = ", ".join(f"{n}: '{c}'" for n, c in columns.items())
        raise InputError(f"--by group: the fits group by different columns ({listed})")
    name = next(iter(columns))
    if name not in pairs:
        raise InputError(
            "--by group needs fit files that embed their panel (not weighted, within the "
            "embedding limit)",
            path=name,
        )
    column = columns[name]
    all_pairs = recorded_panel(trees[name], specs[name]).pairs()
    keyed = all_pairs[["id", "t0", column]].drop_duplicates(["id", "t0"])
    got = pairs[name][["id", "t0"]].merge(keyed, on=["id", "t0"], how="left", sort=False)
    if len(got) != len(pairs[name]) or got[column].isna().any():
        raise InputError(f"--by group: pairs without a '{column}' value", path=name)
    return got[column].to_numpy()


def check_same_data(
    trees: dict[str, xr.DataTree],
    pairs: dict[str, pd.DataFrame] | None = None,
) -> None:
    """Raise InputError unless all fits were fitted to the same data.

    Parameters
    ----------
    trees : dict of name to DataTree
    pairs : dict of name to DataFrame, optional
        Every fit's panel pairs (:func:`panel_pairs`); then the pairs must be
        the same, not the aggregated rows.

    Raises
    ------
    InputError
        Naming the first fit whose data differ from the first fit's, and how.
    """
    names = list(trees)
    ref_name = names[0]
    ref = trees[ref_name]
    ref_obs = ref["observed_data"]
    for other in names[1:]:
        tree = trees[other]
        sha_a, sha_b = str(ref.attrs.get("data_sha256", "")), str(tree.attrs.get("data_sha256", ""))
        if sha_a != sha_b:
            raise InputError(
                f"fitted to different data than {ref_name} (data SHA-256 {sha_b[:12]}... vs "
                f"{sha_a[:12]}...): LOO compares models of the same data only",
                path=other,
            )
        if pairs is not None:
            a, b = pairs[ref_name], pairs[other]
            if len(a) != len(b) or not all(
                np.array_equal(a[c].to_numpy(), b[c].to_numpy()) for c in a.columns
            ):
                raise InputError(
                    f"its panel's observation pairs differ from those of {ref_name} (other "
                    "states or absorbing states): LOO needs the same observations in both fits",
                    path=other,
                )
            continue
        obs = tree["observed_data"]
        same = obs.sizes.get("obs") == ref_obs.sizes.get("obs") and all(
            np.array_equal(obs[v].to_numpy(), ref_obs[v].to_numpy())
            for v in ("from", "to", "interval", "count")
        )
        if not same:
            raise InputError(
                f"its aggregated observations differ from those of {ref_name} (other states, "
                "resolution or covariate patterns) and not every fit file embeds its panel "
                "with the model's columns (weighted fits, or panels over the embedding limit): "
                "LOO needs the same observations in both fits",
                path=other,
            )


def compare_fits(
    fits: dict[str, xr.DataTree] | list[str | Path],
    *,
    unit: str = "transition",
    method: str = "stacking",
    by: str | None = None,
) -> tuple[pd.DataFrame, dict[str, LooResult]]:
    """Compare fits of the same data by PSIS-LOO.

    Parameters
    ----------
    fits : dict of name to DataTree, or list of fit-file paths
        At least two fits.
    unit : {"transition", "row"}
        What one left-out observation is.
    method : str
        Model weights: ``stacking`` (default), ``BB-pseudo-BMA`` or ``pseudo-BMA``.
    by : {"group"}, optional
        Add ``dse_group``, the standard error of ``elpd_diff`` clustered by the
        host-group column (see the module docstring); ``dse`` is kept.

    Returns
    -------
    table : pandas.DataFrame
        :func:`arviz_stats.compare`'s table (best model first) with the
        columns ``unit``, ``n``, ``high_k`` and ``max_k`` added (and
        ``dse_group`` with ``by="group"``).
    loos : dict of name to LooResult

    Raises
    ------
    InputError
        With fewer than two fits, or fits of different data.
    """
    import arviz_stats as azs

    from markov_migration.fitfile.format import read_fit

    if not isinstance(fits, dict):
        paths = [Path(p) for p in fits]
        names = [str(p) for p in paths]
        if len(set(names)) != len(names):
            raise InputError("the same fit file is given twice")
        fits = {n: read_fit(p) for n, p in zip(names, paths, strict=True)}
    if len(fits) < 2:
        raise InputError("compare needs at least two fit files")
    if by is not None and by not in BY:
        raise InputError(f"unknown --by '{by}' (use {' or '.join(BY)})")
    if unit not in UNITS:
        raise InputError(f"unknown LOO unit '{unit}' (use {', '.join(UNITS)})")
    latent = [n for n, t in fits.items() if is_latent_fit(t)]
    if latent and unit == "row":
        raise InputError(
            f"{latent[0]} is a latent-state fit (log-likelihood per respondent's history): "
            "use --unit respondent"
        )
    if latent or unit == "respondent":
        return _compare_respondents(
            fits, method, by, switched=bool(latent) and unit != "respondent"
        )
    pairs = {}
    for name, tree in fits.items():
        try:
            found = panel_pairs(tree)
        except InputError as exc:
            raise InputError(str(exc), path=name) from None
        if found is None:
            break
        pairs[name] = found
    weighted = any(bool(int(t.attrs.get("data_weighted", 0))) for t in fits.values())
    by_pair = len(pairs) == len(fits) and unit == "transition" and not weighted
    check_same_data(fits, {n: p for n, (p, _) in pairs.items()} if by_pair else None)
    groups = None
    if by == "group":
        groups = pair_groups(fits, {n: p for n, (p, _) in pairs.items()})
        if not by_pair:
            raise InputError(
                "--by group needs every fit to embed its panel, unit 'transition' and "
                "unweighted fits (pointwise values per observation pair)"
            )
    loos = {
        name: loo_fit(tree, unit, name, pairs[name][1] if by_pair else None)
        for name, tree in fits.items()
    }
    units = {r.unit for r in loos.values()}
    if len(units) > 1:
        raise InputError("cannot compare weighted and unweighted fits (different LOO units)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = azs.compare({n: r.elpd for n, r in loos.items()}, method=method, round_to="none")
    table["unit"] = [loos[n].unit for n in table.index]
    table["n"] = [loos[n].n_units for n in table.index]
    table["high_k"] = [loos[n].high_k_units for n in table.index]
    table["max_k"] = [loos[n].max_k for n in table.index]
    if groups is not None:
        best = loos[table.index[0]].elpd.elpd_i.to_numpy()
        table["dse_group"] = [
            clustered_dse(best - loos[n].elpd.elpd_i.to_numpy(), groups) for n in table.index
        ]
    table.index.name = "model"
    return table, loos


def _compare_respondents(fits, method, by, switched):
    """:func:`compare_fits` with one respondent as the unit (leave-one-respondent-out)."""
    import arviz_stats as azs

    from markov_migration.results.compare_respondent import loo_respondents, respondent_matrices

    if by is not None:
        raise InputError("--by group is not available with --unit respondent")
    names = list(fits)
    for other in names[1:]:
        a, b = (str(fits[n].attrs.get("data_sha256", "")) for n in (names[0], other))
        if a != b:
            raise InputError(
                f"fitted to different data than {names[0]} (data SHA-256 {b[:12]}... vs "
                f"{a[:12]}...): LOO compares models of the same data only",
                path=other,
            )
    _, lls = respondent_matrices(fits)
    loos = {n: loo_respondents(fits[n], lls[n], n) for n in names}
    if switched:
        for r in loos.values():
            r.notes.insert(0, "a latent-state fit is compared: LOO leaves out respondents")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = azs.compare({n: r.elpd for n, r in loos.items()}, method=method, round_to="none")
    table["unit"] = "respondent"
    table["n"] = [loos[n].n_units for n in table.index]
    table["high_k"] = [loos[n].high_k_units for n in table.index]
    table["max_k"] = [loos[n].max_k for n in table.index]
    table.index.name = "model"
    return table, loos


def pareto_k_warnings(loos: dict[str, LooResult]) -> list[str]:
    """One line per fit with Pareto k above ArviZ's threshold, or with few draws."""
    out = []
    for name, r in loos.items():
        out += [f"{name}: {n}" for n in r.notes if "draws" in n or n == WEIGHTED_NOTE]
        if r.high_k_units:
            what = "transitions" if r.unit == "transition" else "rows"
            rows = f" in {r.high_k_rows} aggregated rows" if r.unit == "transition" else ""
            out.append(
                f"{name}: Pareto k > {r.elpd.good_k:.2f} for {r.high_k_units} of {r.n_units} "
                f"{what}{rows} "
                f"(max {r.max_k:.2f}); the PSIS-LOO estimate may be unreliable for them"
            )
    return out
