"""Regenerate the stored real fits in tests/data (run from the repository root).

    .venv/bin/python tests/data/make_fixtures.py

Some tests need *a real posterior* (nutpie draws with their correlation, sample
statistics and log-likelihood) but do not test sampling itself: the convergence
checks must pass on a well-mixed run and fail on a far too short one. They read
these files instead of sampling (about 20 s of a test run). Tests of sampling
itself (layout, reproducibility, coverage) still sample.

Each file is written (gzip-compressed) from ``sample`` with a fixed seed on a panel
simulated with a fixed seed: the very fits those tests sampled before. A run of this
script is reproducible up to the floating-point behaviour of the machine. Re-run it
when the fit-file format or the model text of the tests that read them changes:
``tests/conftest.py`` (``stored_fit``) refuses a stale file with a message that names
this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from markov_migration.inference.fit import FitSettings, sample  # noqa: E402
from markov_migration.inputs.aggregate import aggregate  # noqa: E402
from markov_migration.inputs.panel import validate_panel  # noqa: E402
from markov_migration.inputs.simulate import simulate_panel  # noqa: E402
from markov_migration.inputs.spec import parse_spec  # noqa: E402
from tests.test_checks import THREE  # noqa: E402

HERE = Path(__file__).resolve().parent

#: name -> (panel seed, respondents, settings); test_checks.py's ``real_fits`` reads them.
FITS = {
    "checks_well": (21, 400, FitSettings(chains=2, draws=500, tune=500, seed=1)),
    "checks_short": (21, 400, FitSettings(chains=2, draws=15, tune=15, seed=1)),
}


def _gzip(tree) -> dict[str, dict[str, dict]]:
    """Per-group encoding: gzip with byte shuffling for every non-scalar variable."""
    opts = {"compression": "gzip", "compression_opts": 9, "shuffle": True}
    return {
        node.path: {v: opts for v, da in node.to_dataset().data_vars.items() if da.ndim}
        for node in tree.subtree
    }


def main() -> None:
    spec = parse_spec(THREE)
    for name, (panel_seed, n, settings) in FITS.items():
        panel = simulate_panel(spec, n, seed=panel_seed)
        validated = validate_panel(panel, spec, path="<sim>", sha256="1" * 64)
        tree = sample(spec, aggregate(validated, spec), settings, panel=validated)
        path = HERE / f"{name}.nc"
        # gzip: the log-likelihood (draws x 325 rows) is most of the file
        tree.to_netcdf(path, engine="h5netcdf", encoding=_gzip(tree))
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
