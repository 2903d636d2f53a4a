"""Reading a fit's data back: the embedded panel and the aggregated data it was fitted to.

``reproduce``, ``compare`` and the prevalence check rebuild the model's data from what
the fit file holds; this is the one place that reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.inputs.aggregate import AggregatedData


def aggregated_from_fit(tree: xr.DataTree) -> AggregatedData:
    """The aggregated data a fit was made from, rebuilt from its ``observed_data``."""
    obs = tree["observed_data"].to_dataset()
    frame = pd.DataFrame({name: obs[name].to_numpy() for name in obs.data_vars})
    const = tree["constant_data"] if "constant_data" in tree.children else None
    resolution = float(const["resolution"]) if const is not None and "resolution" in const else 1.0
    return AggregatedData(
        table=frame,
        states=tuple(json.loads(tree.attrs["states"])),
        resolution=resolution,
        source=str(tree.attrs.get("data_path", "<fit file>")),
        sha256=str(tree.attrs.get("data_sha256", "")),
        weighted=bool(int(tree.attrs.get("data_weighted", 0))),
    )


def embeds_panel(tree: xr.DataTree, spec) -> bool:
    """Whether the fit embeds its panel with every column the model reads."""
    from markov_migration.fitfile.format import PANEL_COLUMN_PREFIX
    from markov_migration.inputs.columns import model_columns

    if "panel_data" not in tree.children:
        return False
    pdata = tree["panel_data"]
    return all(PANEL_COLUMN_PREFIX + c in pdata for c in model_columns(spec))


def recorded_panel(tree: xr.DataTree, spec):
    """Return the panel embedded in a fit file as a :class:`~markov_migration.inputs.panel.Panel`.

    Covariate and group columns come back as the panel layer makes them
    (floats; categorical values as strings) when the fit embeds them
    (:func:`embeds_panel`); fits written before they were embedded have none.
    """
    from markov_migration.fitfile.format import PANEL_COLUMN_PREFIX
    from markov_migration.inputs.columns import model_columns
    from markov_migration.inputs.obstype import PANEL_OBSTYPE
    from markov_migration.inputs.panel import CLUSTER_COLUMN, Panel

    pdata = tree["panel_data"]
    codes = np.asarray(pdata["respondent_id"].values).astype(str)
    frame = pd.DataFrame(
        {
            "id": codes[pdata["respondent"].to_numpy()],
            "time": pdata["time"].to_numpy().astype(float),
            "state": pdata["state"].to_numpy().astype(np.int64),
            "weight": pdata["weight"].to_numpy().astype(float),
        }
    )
    for column in model_columns(spec):
        name = PANEL_COLUMN_PREFIX + column
        if name not in pdata:
            continue
        values = pdata[name].to_numpy()
        if f"{name}_level" in pdata.coords:
            levels = np.asarray(pdata[f"{name}_level"].values).astype(str).astype(object)
            frame[column] = levels[values.astype(np.int64)]
        else:
            frame[column] = values.astype(float)
    if PANEL_OBSTYPE in pdata:  # msm's observation types, when some are exact times
        frame[PANEL_OBSTYPE] = pdata[PANEL_OBSTYPE].to_numpy().astype(np.int64)
    if "cluster" in pdata:
        levels = np.asarray(pdata["cluster_level"].values).astype(str).astype(object)
        frame[CLUSTER_COLUMN] = levels[pdata["cluster"].to_numpy().astype(np.int64)]
    frame["row"] = np.arange(1, len(frame) + 1)
    return Panel(
        data=frame,
        states=tuple(spec.states),
        path=str(tree.attrs.get("data_path", "<embedded panel>")),
        sha256=str(tree.attrs.get("data_sha256", "")),
        n_rows=len(frame),
    )


def _same_aggregate(tree: xr.DataTree, agg) -> bool:
    obs = tree["observed_data"]
    t = agg.table
    if len(t) != obs.sizes["obs"]:
        return False
    return all(np.array_equal(t[c].to_numpy(), obs[c].to_numpy()) for c in ("from", "to")) and all(
        np.allclose(t[c].to_numpy(), obs[c].to_numpy(), rtol=0, atol=1e-12)
        for c in ("interval", "count")
    )


def recorded_data(tree: xr.DataTree, spec, path: str | Path | None = None):
    """Rebuild a fit's data: the embedded panel, or the recorded data file (SHA-256 checked).

    Returns
    -------
    panel : Panel or None
    agg : AggregatedData
    source : str
    """
    from markov_migration.inputs.aggregate import aggregate, load_data
    from markov_migration.inputs.columns import file_sha256

    if embeds_panel(tree, spec):
        panel = recorded_panel(tree, spec)
        agg = aggregate(panel, spec)
        if not _same_aggregate(tree, agg):
            raise InputError(
                "the embedded panel does not reproduce the fit's aggregated data", path=path
            )
        agg.weighted = bool(int(tree.attrs.get("data_weighted", 0)))
        return panel, agg, f"panel embedded in the fit file ({panel.n_respondents:,} respondents)"
    data_path = Path(str(tree.attrs.get("data_path", "")))
    recorded = str(tree.attrs.get("data_sha256", ""))
    if not data_path.is_file():
        raise InputError(
            f"the fit embeds no panel and its data file '{data_path}' is missing", path=path
        )
    actual = file_sha256(data_path)
    if actual != recorded:
        raise InputError(
            f"data file '{data_path}' changed since the fit (SHA-256 {actual[:12]}... , recorded "
            f"{recorded[:12]}...)",
            path=path,
        )
    panel, agg = load_data(data_path, spec)
    if not _same_aggregate(tree, agg):
        raise InputError(
            f"data file '{data_path}' does not reproduce the fit's aggregated data", path=path
        )
    return panel, agg, f"data file {data_path} (SHA-256 matches)"


def panel_sequences(
    tree: xr.DataTree,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded panel sorted by respondent and time: who, when, where, first rows.

    Returns
    -------
    respondent, time, state : ndarray
        Respondent index, observation time (time units) and state index of every
        observation, sorted by respondent, then time.
    first : ndarray of bool
        True at each respondent's first observation.
    order : ndarray of int64
        Row of the embedded panel of each sorted observation.
    """
    pdata = tree["panel_data"]
    resp = pdata["respondent"].to_numpy().astype(np.int64)
    time = pdata["time"].to_numpy().astype(float)
    state = pdata["state"].to_numpy().astype(np.int64)
    order = np.lexsort((time, resp))
    resp, time, state = resp[order], time[order], state[order]
    first = np.ones(resp.size, dtype=bool)
    first[1:] = resp[1:] != resp[:-1]
    return resp, time, state, first, order


def phase_layout(tree: xr.DataTree):
    """The fit's phase expansion and hidden-state names, checked against its ``Q_latent``.

    Raises
    ------
    InputError
        A fit without ``[phases]`` (or without ``Q_latent``), or hidden states
        that do not match the model file's phases.
    """
    from markov_migration.core.phases import hidden_names, phase_expansion
    from markov_migration.errors import InputError
    from markov_migration.fitfile.format import fit_spec

    spec = fit_spec(tree)
    phases = spec.observation.phases if spec.observation is not None else None
    post = tree["posterior"]
    if not phases or "Q_latent" not in post:
        raise InputError(
            "--what phases needs a fit of a model with [phases] (e.g. returned = 2); this fit "
            "has no phase-type states"
        )
    layout = phase_expansion(spec.allowed_matrix(), phases)
    names = hidden_names(spec.states, layout)
    if [str(x) for x in post["from_latent"].values] != list(names):
        raise InputError("the fit file's hidden states do not match its model's [phases]")
    return spec, layout, names
