"""R msm reference results, committed beside the R scripts that wrote them.

In the manner of statsmodels' ``tests/results``: each ``*.R`` script here reads
inputs made by ``make_inputs.py`` (our simulator, fixed seeds) or msm's own data
and writes a JSON file with msm's numbers and the R and msm versions. Tests load
the JSON with :func:`load` / :func:`load_fit`, so the comparisons with msm run
without R. ``tests/test_msm_results.py`` re-runs every script when R with msm is
present and checks the output still equals the committed file; without R those
live checks skip, or fail when ``MARKOV_MIGRATION_REQUIRE_R=1`` (set in CI).
See README.md here for how to regenerate.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from markov_migration.reference.msm import MsmFit, msm_available, parse_msm_output

RESULTS = Path(__file__).resolve().parent

#: Environment variable that turns "R with msm is missing" from a skip into a failure.
REQUIRE_R = "MARKOV_MIGRATION_REQUIRE_R"

#: Each reference script and the files it writes (JSON first).
SCRIPTS: dict[str, tuple[str, ...]] = {
    "fit_three": ("fit_three.json",),
    "fit_covariates": ("fit_covariates.json",),
    "fit_cav": ("fit_cav.json", "cav.csv"),
    "pearson_cav": ("pearson_cav.json",),
    "summaries_three": ("summaries_three.json",),
    "summaries_migration5": ("summaries_migration5.json",),
}


def load(name: str) -> dict[str, Any]:
    """The committed JSON of reference ``name`` (e.g. ``"summaries_three"``)."""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def load_fit(name: str) -> MsmFit:
    """A committed msm fit (``fit_three``, ``fit_covariates``, ``fit_cav``) as an MsmFit."""
    return parse_msm_output(load(name))


def require_msm() -> None:
    """Skip the calling test without R's msm, or fail if ``MARKOV_MIGRATION_REQUIRE_R=1``."""
    if msm_available():
        return
    message = "Rscript with the R package msm is not installed"
    if os.environ.get(REQUIRE_R) == "1":
        pytest.fail(
            f"{message}, but {REQUIRE_R}=1 requires it (CI installs it with "
            "`apt-get install r-cran-msm`; unset the variable to skip instead)",
            pytrace=False,
        )
    pytest.skip(message)


def run_script(name: str, out_dir: Path, timeout: float = 600) -> dict[str, Any]:
    """Run ``<name>.R`` here (inputs read from this folder), writing into ``out_dir``.

    Returns
    -------
    dict
        The JSON it wrote.
    """
    res = subprocess.run(
        ["Rscript", f"{name}.R", str(out_dir)],
        cwd=RESULTS,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{name}.R failed:\n{res.stderr[-2000:]}")
    return json.loads((out_dir / SCRIPTS[name][0]).read_text(encoding="utf-8"))
