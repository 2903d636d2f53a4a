"""Hazard effects of a model: which log hazard ratios act on which transitions.

Each categorical covariate level (against its reference), each numeric
covariate (per unit) and each period (against the first) is a log hazard ratio
on chosen transitions; :func:`hazard_effects` lists them with their free
parameters (shared effects once) and prior sds. :func:`check_design` refuses
covariate, group and period combinations the model cannot fit, before any data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from markov_migration.errors import InputError
from markov_migration.inputs.aggregate import LEAD_TIME, START_PERIOD
from markov_migration.inputs.spec import ModelSpec

#: Covariate name of the period effects in ``hazard_ratio`` (a period is a
#: categorical covariate whose reference is the first period; as R msm's ``pci``).
PERIOD_COVARIATE = "period"
#: Names a covariate may not have (dims and coordinates of fit files).
RESERVED_NAMES = (
    "chain", "draw", "state", "from_state", "to_state", "transition", "obs", "pattern",
    "group", "group_transition", "period", "covariate_effect", "hr_parameter",
)  # fmt: skip


@dataclass(frozen=True)
class HazardEffect:
    """One log hazard ratio acting on one transition (an entry of ``covariate_effect``).

    Attributes
    ----------
    covariate : str
        Covariate name, or :data:`PERIOD_COVARIATE` for a period effect.
    level : str
        Categorical level (or period label) compared with the reference; ``""``
        for a numeric covariate (the effect of one unit).
    transition : (int, int)
        The transition (from, to) it multiplies.
    parameter : int
        Index of its free parameter (entries of a shared effect have the same).
    label : str
        E.g. ``"reason[politics]: abroad->returned"``, ``"age: abroad->returned"``.
    """

    covariate: str
    level: str
    transition: tuple[int, int]
    parameter: int
    label: str


def check_design(spec: ModelSpec) -> None:
    """Refuse covariate/group/period combinations the model cannot fit, before any data.

    Raises
    ------
    InputError
        For covariates, groups or periods in a discrete-time model, a covariate
        or group column used twice or clashing with a key column, or a reserved name.
    """
    used = [s for s, on in (("[covariates]", spec.covariates), ("[groups]", spec.groups),
                            ("periods", spec.periods)) if on]  # fmt: skip
    if spec.time == "discrete" and used:
        raise InputError(
            f"model uses {', '.join(used)}: discrete-time models support none of covariates, "
            'groups and periods (use time = "continuous")',
            path=spec.path,
        )
    columns: dict[str, str] = {}
    taken = {"from", "to", "interval", "count", START_PERIOD, LEAD_TIME,
             spec.data.id, spec.data.time, spec.data.state}  # fmt: skip
    if spec.data.weight:
        taken.add(spec.data.weight)
    for cov in spec.covariates:
        if cov.name in RESERVED_NAMES:
            raise InputError(
                f"[covariates.{cov.name}]: '{cov.name}' is a reserved name; rename the table "
                "(keep the panel column with column = ...)",
                path=spec.path,
            )
        if cov.column in columns or cov.column in taken:
            raise InputError(
                f"[covariates.{cov.name}]: column '{cov.column}' is already used "
                f"({columns.get(cov.column, 'by the panel layout')})",
                path=spec.path,
            )
        columns[cov.column] = f"by covariate '{cov.name}'"
    if spec.groups is not None:
        c = spec.groups.column
        if c in columns or c in taken:
            raise InputError(
                f"[groups]: column '{c}' is already used ({columns.get(c, 'by the panel layout')})",
                path=spec.path,
            )


def covariate_levels(spec: ModelSpec, table: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Levels of every categorical covariate in ``table``, the reference first."""
    out = {}
    for cov in spec.covariates:
        if cov.kind != "categorical":
            continue
        present = sorted(set(table[cov.column].astype(str)))
        declared = list(cov.levels) if cov.levels is not None else present
        unknown = sorted(set(present) - set(declared))
        if unknown:
            raise InputError(f"'{unknown[0]}' is not a level of covariate '{cov.name}'")
        reference = cov.reference or sorted(declared)[0]
        out[cov.name] = (reference, *[v for v in declared if v != reference])
    return out


def hazard_effects(spec: ModelSpec, levels: dict[str, tuple[str, ...]], periods: tuple[str, ...]):
    """Hazard effects, free-parameter labels, the covariate of each parameter, prior sds."""
    effects: list[HazardEffect] = []
    labels: list[str] = []
    owner: list[str] = []
    sds: list[float] = []
    names = spec.states

    def tr(pair):
        return f"{names[pair[0]]}->{names[pair[1]]}"

    def add(covariate: str, level: str, transitions, shared, prior_sd: float):
        tag = f"{covariate}[{level}]" if level else covariate
        blocks = list(shared)
        in_shared = {p for block in blocks for p in block}
        blocks += [(p,) for p in transitions if p not in in_shared]
        # Parameters in the order of the transitions they first act on.
        blocks.sort(key=lambda b: min(transitions.index(p) for p in b))
        param_of = {}
        for block in blocks:
            param_of.update({p: len(labels) for p in block})
            labels.append(f"{tag}: {'|'.join(tr(p) for p in block)}")
            owner.append(covariate)
            sds.append(prior_sd)
        for p in transitions:
            effects.append(HazardEffect(covariate, level, p, param_of[p], f"{tag}: {tr(p)}"))

    for cov in spec.covariates:
        if cov.kind == "numeric":
            add(cov.name, "", cov.transitions, cov.shared, cov.prior_sd)
        else:
            for level in levels[cov.name][1:]:
                add(cov.name, level, cov.transitions, cov.shared, cov.prior_sd)
    if spec.periods:
        for level in periods[1:]:
            add(PERIOD_COVARIATE, level, spec.period_transitions, (), spec.period_prior_sd)
    return tuple(effects), tuple(labels), owner, np.array(sds, dtype=float)
