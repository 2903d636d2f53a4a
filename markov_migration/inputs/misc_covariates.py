"""Covariates on misclassification probabilities (R msm's ``misccovariates``).

Layer 2 (NumPy/pandas). ``[covariates.NAME] misclassification = ["true->recorded",
...]`` shifts the log odds of recording ``s`` against recording the truth ``r``:
``log(e_rs(x) / e_rr(x)) = log(e_rs / e_rr) + beta_rs x`` (msm's multinomial logit
with the true state as base category), where ``e`` is the baseline matrix (the
Dirichlet rows of ``[misclassification]``) and ``x`` the covariate term of the
record itself (msm uses the covariates of each observation for its own emission):
a categorical covariate's indicator of each non-reference level, a numeric one's
value minus its centre (the model design's: its mean over the observed pairs).
Every record gets an *emission pattern* (its distinct values of these terms), and
pattern ``p``'s matrix is ``e_p = normalise_rows(e * exp(shift_p))`` with
``shift_p[r, s] = sum_j beta_j x_pj`` over the effects ``j`` on ``r -> s`` (zero on
the diagonal and off the declared errors). The forward algorithm's emission table
is then the per-pattern tables stacked, a record's code being ``code + n_codes * p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MISC_EFFECT_DIM",
    "MISC_LOG_OR",
    "MISC_OR",
    "MisclassificationEffects",
    "has_misclassification_covariates",
    "misclassification_effects",
    "pattern_emissions",
]

#: Names of the log odds ratios and odds ratios in models and fit files (kept with the
#: other ``misclassification_*`` variables), and their dim.
MISC_LOG_OR = "misclassification_log_odds_ratio"
MISC_OR = "misclassification_odds_ratio"
MISC_EFFECT_DIM = "misclassification_effect"


@dataclass(frozen=True)
class MisclassificationEffects:
    """The covariate effects on misclassification and the emission pattern of every record.

    Attributes
    ----------
    labels : tuple of str
        One per effect: ``"sex[1]: well->mild"`` (categorical level), ``"age: well->mild"``.
    pairs : ndarray of int (n_effects, 2)
        (true state, recorded state) of each effect.
    prior_sd : ndarray (n_effects,)
        Normal prior sd of each log odds ratio.
    pattern_x : ndarray (P, n_effects)
        Covariate term of each effect at each emission pattern (pattern 0 need not be
        the baseline).
    record_pattern : ndarray of int64 (n_records,)
        Emission pattern of each record (panel row order).
    pattern_values : list of dict
        Covariate values (as strings) of each pattern, for reports.
    """

    labels: tuple[str, ...]
    pairs: np.ndarray
    prior_sd: np.ndarray
    pattern_x: np.ndarray
    record_pattern: np.ndarray
    pattern_values: list

    @property
    def n_patterns(self) -> int:
        """Number P of emission patterns."""
        return int(self.pattern_x.shape[0])

    def shift_design(self, n_states: int) -> np.ndarray:
        """``S`` (P, K, K, n_effects): ``shift_p = S[p] @ beta`` (log-odds shifts of pattern ``p``)."""
        s = np.zeros((self.n_patterns, n_states, n_states, len(self.labels)))
        for j, (r, t) in enumerate(self.pairs):
            s[:, r, t, j] = self.pattern_x[:, j]
        return s

    def effect_x(self, values: dict) -> np.ndarray:
        """Covariate terms (n_effects,) at covariate values ``{name: value}``."""
        return np.array([term(values) for term in self.terms], dtype=np.float64)

    terms: tuple = ()


def has_misclassification_covariates(spec) -> bool:
    """Whether any covariate of the spec acts on misclassification probabilities."""
    return any(c.misclassification for c in spec.covariates)


def misclassification_effects(spec, design, data: pd.DataFrame) -> MisclassificationEffects | None:
    """Effects, patterns and record patterns of a spec's misclassification covariates.

    Parameters
    ----------
    spec : ModelSpec
    design : ModelDesign
        The model's design (categorical levels with the reference first, numeric centres).
    data : pandas.DataFrame
        The panel's records (``Panel.data``), with the covariate columns.

    Returns
    -------
    MisclassificationEffects or None
        None when no covariate acts on misclassification.
    """
    if not has_misclassification_covariates(spec):
        return None
    names = spec.states
    labels, pairs, sds, columns, terms = [], [], [], [], []
    for cov in spec.covariates:
        if not cov.misclassification:
            continue
        raw = data[cov.column] if len(data) else pd.Series([], dtype=object)
        if cov.kind == "categorical":
            levels = design.levels[cov.name]
            value = raw.astype(str).to_numpy()
            for level in levels[1:]:
                for r, s in cov.misclassification:
                    labels.append(f"{cov.name}[{level}]: {names[r]}->{names[s]}")
                    pairs.append((r, s))
                    sds.append(cov.misclassification_prior_sd)
                    columns.append((value == level).astype(np.float64))
                    terms.append(_level_term(cov.name, level))
        else:
            centre = float(design.centers[cov.name])
            value = raw.to_numpy(dtype=np.float64) - centre
            for r, s in cov.misclassification:
                labels.append(f"{cov.name}: {names[r]}->{names[s]}")
                pairs.append((r, s))
                sds.append(cov.misclassification_prior_sd)
                columns.append(value)
                terms.append(_numeric_term(cov.name, centre))
    x = np.column_stack(columns) if len(data) else np.zeros((0, len(labels)))
    if len(data):
        uniq, record_pattern = np.unique(x, axis=0, return_inverse=True)
    else:
        uniq, record_pattern = np.zeros((1, len(labels))), np.zeros(0, np.int64)
    cols = [c.column for c in spec.covariates if c.misclassification]
    first = np.unique(record_pattern.reshape(-1), return_index=True)[1]
    pattern_values = [
        {c.name: str(data[c.column].iloc[i]) for c in spec.covariates if c.misclassification}
        for i in first
    ] if cols and len(data) else [{}]  # fmt: skip
    return MisclassificationEffects(
        labels=tuple(labels),
        pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        prior_sd=np.array(sds, dtype=np.float64),
        pattern_x=np.ascontiguousarray(uniq, dtype=np.float64),
        record_pattern=record_pattern.reshape(-1).astype(np.int64),
        pattern_values=pattern_values,
        terms=tuple(terms),
    )


def _level_term(name: str, level: str):
    def term(values: dict) -> float:
        return float(str(values[name]) == level)

    return term


def _numeric_term(name: str, centre: float):
    def term(values: dict) -> float:
        return float(values[name]) - centre

    return term


def pattern_emissions(e: np.ndarray, shift_design: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Misclassification matrices of the emission patterns (NumPy).

    Parameters
    ----------
    e : ndarray (..., K, K)
        Baseline misclassification matrices (rows sum to 1).
    shift_design : ndarray (P, K, K, n_effects)
        :meth:`MisclassificationEffects.shift_design`.
    beta : ndarray (..., n_effects)
        Log odds ratios (same leading dims as ``e``).

    Returns
    -------
    ndarray (..., P, K, K)
        ``normalise_rows(e * exp(S @ beta))`` per pattern.
    """
    shift = np.einsum("pkle,...e->...pkl", shift_design, beta)
    w = np.asarray(e)[..., None, :, :] * np.exp(shift)
    return w / w.sum(axis=-1, keepdims=True)
