"""Leave-one-respondent-out PSIS-LOO (``compare --unit respondent``).

Layer 4 (results). One left-out observation is a whole respondent: the sum of
the log-likelihood terms of all their transitions (pure-panel fits: the
per-pair values of ``log_likelihood.transitions`` over the respondent's pairs
of the embedded panel), or their whole history (latent-state fits, whose
``log_likelihood.histories`` is per respondent: the forward algorithm does
not split into transitions). This is the unit to use when a model has
respondent-level latent terms (hidden states, phases, misclassification):
a respondent's records are then dependent given the parameters, and leaving
one transition out would leak information from the same respondent's others.

Fits are aligned on respondent ids. A respondent with no term in a fit (a
single observation, so no transition) contributes 0 there; respondents with
no term in any fit are left out. A hidden-state fit's history includes the
probability of its first record (the first true state is estimated), a
pure-panel fit conditions on it: their ELPD difference then includes that term,
which the table's note says.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError


def is_latent_fit(tree: xr.DataTree) -> bool:
    """Whether a fit's pointwise log-likelihood is per respondent's history (latent fits)."""
    return "log_likelihood" in tree.children and "histories" in tree["log_likelihood"]


def respondent_loglik(tree: xr.DataTree, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Respondent ids and log-likelihood draws ``(chain, draw, respondent)`` of one fit.

    Raises
    ------
    InputError
        A pure-panel fit that does not embed its panel, or a weighted one.
    """
    if is_latent_fit(tree):
        ll = tree["log_likelihood"]["histories"].transpose(*SAMPLE_DIMS, "respondent")
        return np.asarray(ll["respondent"].values).astype(str), ll.to_numpy()
    from markov_migration.results.loo import panel_pairs

    if bool(int(tree.attrs.get("data_weighted", 0))):
        raise InputError(
            f"{name}: --unit respondent needs unweighted fits (a weighted pseudo-likelihood "
            "has no respondent-level predictive meaning)"
        )
    found = panel_pairs(tree)
    if found is None:
        raise InputError(
            f"{name}: --unit respondent needs the fit's embedded panel with its model's columns"
        )
    pairs, rows = found
    ll = tree["log_likelihood"]["transitions"].transpose(*SAMPLE_DIMS, "obs").to_numpy()
    count = tree["observed_data"]["count"].to_numpy().astype(float)
    per_pair = ll[..., rows] / count[rows]  # log P of each pair
    ids, which = np.unique(pairs["id"].astype(str).to_numpy(), return_inverse=True)
    out = np.zeros(ll.shape[:2] + (ids.size,))
    for j in range(ids.size):  # sum over each respondent's pairs
        out[..., j] = per_pair[..., which == j].sum(axis=-1)
    return ids, out


def respondent_matrices(trees: dict[str, xr.DataTree]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every fit's respondent log-likelihood on one common, sorted list of respondents.

    Raises
    ------
    InputError
        Fits whose respondents differ (other than respondents without terms).
    """
    found = {n: respondent_loglik(t, n) for n, t in trees.items()}
    ids = np.unique(np.concatenate([i for i, _ in found.values()]))
    out = {}
    for name, (own, ll) in found.items():
        full = np.zeros(ll.shape[:2] + (ids.size,))
        full[..., np.searchsorted(ids, own)] = ll
        out[name] = full
    used = np.zeros(ids.size, dtype=bool)
    for ll in out.values():
        used |= np.any(ll != 0.0, axis=(0, 1))
    if not used.any():
        raise InputError("no respondent has a log-likelihood term in any fit: nothing to compare")
    return ids[used], {n: ll[..., used] for n, ll in out.items()}


def loo_respondents(tree: xr.DataTree, ll: np.ndarray, name: str):
    """PSIS-LOO of one fit over respondents, from :func:`respondent_matrices`' values.

    Returns
    -------
    LooResult
        With unit ``respondent``.
    """
    import warnings

    import arviz_stats as azs

    from markov_migration.results.diagnostics import sampled_parameters
    from markov_migration.results.loo import LooResult, check_draws

    notes = check_draws(ll.shape[0] * ll.shape[1], name)
    if not np.all(np.isfinite(ll)):
        raise InputError(f"{name}: the log-likelihood has non-finite values: cannot compute LOO")
    post = sampled_parameters(tree)
    da = xr.DataArray(
        ll, dims=(*SAMPLE_DIMS, "respondent"), coords={d: post[d] for d in SAMPLE_DIMS}
    )
    data = xr.DataTree.from_dict(
        {"posterior": post, "log_likelihood": xr.Dataset({"respondents": da})}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings are reported in the table
        res = azs.loo(data, pointwise=True, var_name="respondents")
    k = np.asarray(res.pareto_k.values, dtype=float)
    high = int(np.sum(k > float(res.good_k)))
    if hidden_first_record(tree):
        notes.append(
            "hidden-state fit: each respondent's term includes the probability of the first "
            "record (a pure-panel fit conditions on it)"
        )
    return LooResult(name, res, "respondent", int(k.size), int(k.size), high, high, notes)


def hidden_first_record(tree: xr.DataTree) -> bool:
    """Whether the fit's histories include the probability of the first record."""
    return is_latent_fit(tree) and "initial" in tree["posterior"]
