"""Sampling: nutpie (default, numba backend) or PyMC's NUTS, and the fit API."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import xarray as xr

from markov_migration.defaults import CHAINS, DRAWS, TARGET_ACCEPT, TUNE
from markov_migration.errors import FitFileError, InputError
from markov_migration.fitfile.format import recorded_settings, settings_attrs
from markov_migration.inference.sampling import run_nutpie, run_pymc
from markov_migration.inputs.aggregate import AggregatedData, load_data
from markov_migration.inputs.panel import Panel
from markov_migration.inputs.spec import ModelSpec, load_spec

SAMPLERS = ("nutpie", "pymc")
#: Largest seed (numpy, PyMC and nutpie all take an unsigned 32-bit seed).
SEED_MAX = 2**32 - 1
#: Largest chains, draws and warm-up draws per chain (memory is checked as well).
MAX_SIZE = {"chains": 256, "draws": 10**7, "tune": 10**7}

# Compiled nutpie models by model structure, reused in this process with new data.
_COMPILED: dict[str, Any] = {}


@dataclass
class FitSettings:
    """Sampler settings recorded in the fit file.

    Attributes
    ----------
    chains, draws, tune : int
        Number of chains, kept draws per chain and warm-up draws per chain.
    seed : int
        Random seed; the same seed, data and library versions give the same draws.
    sampler : {"nutpie", "pymc"}
    cores : int or None
        Chains run in parallel (default: all cores).
    target_accept : float
        Average acceptance probability the step size is adapted to, in (0, 1);
        default 0.8. Larger values (0.9-0.99) take smaller steps, which helps
        posteriors with bad geometry (divergences in hierarchical models).
    """

    chains: int = CHAINS
    draws: int = DRAWS
    tune: int = TUNE
    seed: int = 0
    sampler: str = "nutpie"
    cores: int | None = None
    target_accept: float = TARGET_ACCEPT
    timings: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        """Raise InputError on invalid settings."""
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler '{self.sampler}' (use {' or '.join(SAMPLERS)})")
        if not 0.0 < self.target_accept < 1.0:
            raise InputError(f"--target-accept must be between 0 and 1, got {self.target_accept:g}")
        # nutpie's adaptation schedule needs a warm-up (it panics on --tune 0)
        least = {"chains": 1, "draws": 1, "tune": 1 if self.sampler == "nutpie" else 0}
        for name in ("chains", "draws", "tune"):
            value = getattr(self, name)
            if value < least[name]:
                why = " with nutpie" if name == "tune" and least[name] else ""
                raise InputError(f"--{name} must be at least {least[name]}{why}, got {value}")
            if value > MAX_SIZE[name]:
                raise InputError(f"--{name} must be at most {MAX_SIZE[name]:,}, got {value:,}")
        if not 0 <= self.seed <= SEED_MAX:
            raise InputError(f"--seed must be between 0 and 2**32-1, got {self.seed}")
        if self.cores is not None and not 1 <= self.cores <= MAX_SIZE["chains"]:
            raise InputError(
                f"--cores must be between 1 and {MAX_SIZE['chains']}, got {self.cores}"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings, every field (timings in seconds, rounded to ms)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        return out

    def to_attrs(self) -> dict[str, Any]:
        """The fit file's root attributes that record these settings.

        ``sampler_settings`` (JSON of :meth:`as_dict`) plus ``seed`` and ``sampler``
        on their own; :meth:`from_attrs` reads them back.
        """
        return settings_attrs(self.as_dict())

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> FitSettings:
        """Settings recorded in a fit file's root attributes (inverse of :meth:`to_attrs`).

        Fields missing from the record (written before the field existed) take their
        defaults; unknown keys are ignored. The settings are not checked: a fake fit's
        sampler ``"fake"`` is read as it is.

        Raises
        ------
        FitFileError
            If the record is missing, not JSON or a value has the wrong type.
        """
        raw = recorded_settings(attrs)
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            try:
                values[f.name] = _FIELD_TYPES[f.type](raw[f.name])
            except (TypeError, ValueError):
                raise FitFileError(
                    f"recorded sampler setting {f.name}={raw[f.name]!r} is not {f.type}"
                ) from None
        return cls(**values)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _timings(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise TypeError("timings must be a mapping")
    return {str(k): float(v) for k, v in value.items()}


#: Reader of each FitSettings field's recorded value, by its annotation (a new field
#: with a new type fails loudly in ``from_attrs`` until it is added here).
_FIELD_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "int | None": _optional_int,
    "dict[str, float]": _timings,
}


def structure_key(spec: ModelSpec, agg: AggregatedData | None = None) -> str:
    """Hash of what the compiled model depends on besides the values of its data arrays.

    The states, transitions, priors, covariate/group/period declarations and,
    given the data, every coordinate of the model (categorical levels, groups,
    periods, hazard effects): two fits share a compiled model only when their
    parameters, shapes of parameters and labels are the same. The number of
    aggregated rows, pieces and generators is not part of it (data arrays
    change size freely).
    """
    parts = [spec.time, repr(spec.states), repr(spec.transitions)]
    parts += [repr(sorted(spec.priors.items())), repr(spec.exit_priors)]
    parts += [repr(spec.covariates), repr(spec.groups), repr(spec.periods),
              repr(spec.period_transitions)]  # fmt: skip
    if agg is not None and spec.time == "continuous":
        from markov_migration.inference.model import model_coords
        from markov_migration.inputs.design import model_design

        coords = model_coords(spec, agg, model_design(spec, agg))
        coords.pop("obs")
        parts.append(json.dumps(coords, sort_keys=True, default=str))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _data_arrays(spec: ModelSpec, agg: AggregatedData) -> dict[str, Any]:
    from markov_migration.inputs.design import model_design

    return model_design(spec, agg).packed_data()[0]


def _compile_status(progress: bool):
    """A spinner on stderr while numba compiles (a minute on a new machine, then cached)."""
    if not progress:
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(
        "compiling the model with numba (the first fit on a machine also compiles the "
        "likelihood kernel: about a minute, cached afterwards)"
    )


def _sample_nutpie(spec: ModelSpec, agg: AggregatedData, s: FitSettings, progress: bool):
    from markov_migration.inference.compiled import compile_nutpie
    from markov_migration.inference.model import build_model, sampled_variables

    t0 = time.perf_counter()
    key = structure_key(spec, agg)
    cached = _COMPILED.get(key) if spec.time == "continuous" else None
    if cached is not None:
        # Only the data arrays change; the traced variables do not depend on "obs", and the
        # key covers every other coordinate.
        compiled, names = cached
        compiled = compiled.with_data(**_data_arrays(spec, agg))
    else:
        with _compile_status(progress):
            model = build_model(spec, agg)
            names = sampled_variables(model)
            compiled = compile_nutpie(model)
        if spec.time == "continuous":
            _COMPILED[key] = (compiled, names)
    s.timings["compile"] = time.perf_counter() - t0
    trace = run_nutpie(compiled, s, progress)
    return trace["posterior"].to_dataset(), trace["sample_stats"].to_dataset(), names


def _sample_pymc(spec: ModelSpec, agg: AggregatedData, s: FitSettings, progress: bool):
    from markov_migration.inference.model import build_model, sampled_variables

    model = build_model(spec, agg)
    trace = run_pymc(model, s, progress)
    names = sampled_variables(model)
    return trace["posterior"].to_dataset(), trace["sample_stats"].to_dataset(), names


#: The sampling function of each of :data:`SAMPLERS` (same order).
_RUNNERS = {"nutpie": _sample_nutpie, "pymc": _sample_pymc}


def sample(
    spec: ModelSpec,
    agg: AggregatedData,
    settings: FitSettings | None = None,
    *,
    progress: bool = False,
    command: str | None = None,
    panel: Panel | None = None,
) -> xr.DataTree:
    """Sample the posterior of a model given aggregated data; return the fit DataTree.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData
    settings : FitSettings, optional
    progress : bool
        Show the sampler's progress bar.
    command : str, optional
        Command line recorded in the fit file.
    panel : Panel, optional
        The validated panel, embedded in the fit file for checks and reproduction.

    Returns
    -------
    xarray.DataTree
        The fit (see :mod:`markov_migration.fitfile.format` for its layout).
    """
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.inference.model import check_supported
    from markov_migration.inputs.obstype import with_panel_obstype

    s = settings or FitSettings()
    s.check()
    spec = with_panel_obstype(spec, panel)  # exact times flagged in the data: latent
    if spec.observation.latent:  # hidden states: the forward-algorithm model
        from markov_migration.inference.latent import sample_latent

        return sample_latent(spec, agg, s, progress=progress, command=command, panel=panel)
    check_supported(spec)
    from markov_migration.interrupts import reraise_after

    with reraise_after():  # nutpie returns the draws so far on Ctrl-C: not a fit
        posterior, stats, sampled = _RUNNERS[s.sampler](spec, agg, s, progress)
    from markov_migration.inference.model import POSTERIOR_VARIABLES

    # The reported variables plus every free variable (their diagnostics need the draws).
    keep = [v for v in POSTERIOR_VARIABLES if v in posterior]
    keep += [v for v in posterior.data_vars if v.startswith("p_") and v not in keep]
    keep += [v for v in sampled if v in posterior and v not in keep]
    sampled = [v for v in sampled if v in posterior]
    from markov_migration.inference.weights import adjust_weighted_posterior

    # Survey weights: the pseudo-posterior's spread calibrated to the design (no-op unweighted).
    posterior, weight_attrs = adjust_weighted_posterior(spec, agg, panel, posterior[keep])
    from markov_migration.inference.log_prior import log_prior_dataset
    from markov_migration.inference.model import build_model

    log_prior = log_prior_dataset(build_model(spec, agg), posterior, sampled)
    tree = assemble_fit(
        spec, agg, posterior, stats, s.to_attrs(), command, panel, sampled=sampled,
        log_prior=log_prior,
    )  # fmt: skip
    tree.attrs.update(weight_attrs)
    return tree


def fit(
    panel: str | Path,
    model: str | Path | ModelSpec,
    *,
    chains: int = CHAINS,
    draws: int = DRAWS,
    tune: int = TUNE,
    seed: int = 0,
    sampler: str = "nutpie",
    cores: int | None = None,
    target_accept: float = TARGET_ACCEPT,
    progress: bool = False,
    out: str | Path | None = None,
    force: bool = False,
    command: str | None = None,
) -> xr.DataTree:
    """Fit a model to a panel (or counts) file; optionally write the fit file.

    Parameters
    ----------
    panel : str or Path
        Long-format panel (CSV/Parquet) or aggregated-counts table.
    model : str, Path or ModelSpec
        Model file or a parsed spec.
    chains, draws, tune, seed, sampler, cores, target_accept
        See :class:`FitSettings`.
    progress : bool
        Show a progress bar.
    out : str or Path, optional
        Write the fit file here (atomically).
    force : bool
        Overwrite ``out`` if it exists.
    command : str, optional
        Command line to record.

    Returns
    -------
    xarray.DataTree

    Examples
    --------
    >>> from markov_migration import fit  # doctest: +SKIP
    >>> from markov_migration.defaults import SAMPLE_DIMS  # doctest: +SKIP
    >>> tree = fit("panel.csv", "models/migration5.toml", draws=500, seed=1)  # doctest: +SKIP
    >>> tree.posterior["Q"].mean(SAMPLE_DIMS)  # doctest: +SKIP
    """
    from markov_migration.io import check_output

    spec = model if isinstance(model, ModelSpec) else load_spec(model)
    settings = FitSettings(chains, draws, tune, seed, sampler, cores, target_accept)
    settings.check()
    if out is not None:
        check_output(out, force)
    # Data problems are found before anything is compiled.
    validated, agg = load_data(panel, spec)
    tree = sample(spec, agg, settings, progress=progress, command=command, panel=validated)
    if out is not None:
        from markov_migration.fitfile.format import write_fit

        write_fit(tree, out, force)
    return tree
