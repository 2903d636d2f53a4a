"""What ``validate`` says of a data file: rows, respondents, transitions, intervals.

Layer 2 (inputs). :func:`data_summary` loads and validates a panel or an
aggregated-counts table with :func:`markov_migration.inputs.aggregate.load_data`
and describes it (split from :mod:`markov_migration.inputs.aggregate`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from markov_migration.inputs.aggregate import load_data
from markov_migration.inputs.columns import record_names
from markov_migration.inputs.spec import ModelSpec

__all__ = ["data_summary"]


def data_summary(path: str | Path, spec: ModelSpec) -> dict:
    """Load, validate and describe a panel or counts file (for ``validate``).

    Returns
    -------
    dict
        JSON-ready: file, sha256, kind, rows, respondents, dropped single
        observations, notes, observations per state, the from x to transition
        counts, the number of distinct intervals and their range (time units).
    """
    panel, agg = load_data(path, spec)
    t = agg.table
    names = record_names(spec)  # states, then censored codes (a latent model's records)
    trans = np.zeros((len(names), len(names)))
    np.add.at(trans, (t["from"].to_numpy(), t["to"].to_numpy()), t["count"].to_numpy())
    out: dict = {
        "file": str(path),
        "sha256": agg.sha256,
        "model": spec.name,
        "states": list(spec.states),
        "kind": "panel" if panel is not None else "counts",
        "time_unit": spec.time_unit if spec.time == "continuous" else "steps",
        "transitions": {
            a: {b: float(trans[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)
        },
        "n_transitions": agg.n_transitions,
        "n_intervals": int(agg.intervals.size),
        "interval_min": float(agg.intervals.min()),
        "interval_max": float(agg.intervals.max()),
        "resolution": agg.resolution,
        "n_rows_aggregated": len(t),
        "weighted": agg.weighted,
    }
    if panel is not None:
        obs = np.bincount(panel.data["state"].to_numpy(), minlength=len(names))
        out.update(
            rows=panel.n_rows,
            respondents=panel.n_respondents,
            dropped_single=panel.n_single,
            observations={s: int(obs[i]) for i, s in enumerate(names)},
            time_min=float(panel.data["time"].min()),
            time_max=float(panel.data["time"].max()),
            notes=panel.notes,
        )
    return out
