"""markov-migration: Bayesian multi-state Markov models of migration panels.

The curated public API (see ``docs/api.md``)::

    import markov_migration as mm

    spec = mm.load_spec("models/migration5.toml")
    tree = mm.fit("panel.csv", spec, draws=500, seed=1, out="fit.nc")
    mm.summarize(mm.read_fit("fit.nc"), "sojourn")

Names are imported lazily on first use (module ``__getattr__``, PEP 562, in the
manner of ``lazy_loader`` and statsmodels' ``api``): ``import markov_migration``
imports nothing else, and only :func:`fit` and :func:`reproduce` import PyMC, when
they are called. Deeper names stay where they are (``markov_migration.inputs.panel``
...); the layers are described in ``docs/api.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> (module, attribute in that module).
_API: dict[str, tuple[str, str]] = {
    # model files and data
    "load_spec": ("markov_migration.inputs.spec", "load_spec"),
    "load_panel": ("markov_migration.inputs.panel", "load_panel"),
    "load_data": ("markov_migration.inputs.aggregate", "load_data"),
    "validate": ("markov_migration.inputs.data_summary", "data_summary"),
    "validate_panel": ("markov_migration.inputs.panel", "validate_panel"),
    "simulate": ("markov_migration.inputs.simulate", "simulate_panel"),
    "load_scenario": ("markov_migration.inputs.scenario", "load_scenario"),
    # fitting and fit files
    "fit": ("markov_migration.inference.fit", "fit"),
    "FitSettings": ("markov_migration.inference.fit", "FitSettings"),
    "read_fit": ("markov_migration.fitfile.format", "read_fit"),
    "write_fit": ("markov_migration.fitfile.format", "write_fit"),
    # results
    "summarize": ("markov_migration.results.summaries", "summarize"),
    "check": ("markov_migration.results.checks", "run_checks"),
    "pearson": ("markov_migration.results.pearson", "pearson_test"),
    "compare": ("markov_migration.results.compare", "compare_fits"),
    "reproduce": ("markov_migration.results.reproduce", "reproduce"),
    # projection
    "project": ("markov_migration.projection.run", "project_fit"),
    "read_projection": ("markov_migration.projection.files", "read_projection"),
    # types
    "ModelSpec": ("markov_migration.inputs.spec", "ModelSpec"),
    "Panel": ("markov_migration.inputs.panel", "Panel"),
    "AggregatedData": ("markov_migration.inputs.aggregate", "AggregatedData"),
    "Scenario": ("markov_migration.inputs.scenario", "Scenario"),
    "CheckReport": ("markov_migration.results.checks", "CheckReport"),
    "Reproduction": ("markov_migration.results.reproduce", "Reproduction"),
    # errors
    "InputError": ("markov_migration.errors", "InputError"),
    "SpecError": ("markov_migration.errors", "SpecError"),
    "PanelError": ("markov_migration.errors", "PanelError"),
    "FitFileError": ("markov_migration.errors", "FitFileError"),
    "ScenarioError": ("markov_migration.inputs.scenario", "ScenarioError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (PEP 562)."""
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'markov_migration' has no attribute '{name}'") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
