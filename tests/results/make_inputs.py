"""Write the input CSVs the R msm reference scripts in this folder read.

Every input is drawn by our own simulator with a fixed seed, exactly as the
tests that compare against the references draw it, and written the way msm
reads it (:func:`markov_migration.reference.msm.msm_frame`: ids and states
numbered from 1). ``tests/test_msm_results.py`` checks that running this again
reproduces the committed files, so a change of the simulator cannot leave the
references describing other data. Run from the repository root::

    python -m tests.results.make_inputs          # rewrites the CSVs here

``cav.csv`` is not written here: ``fit_cav.R`` exports it from msm.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.design import model_design
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec, parse_spec
from markov_migration.reference.msm import FLOAT_FORMAT, MsmCovariate, msm_frame

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: Summaries cross-check: panel size and seed (the panel only gives msm an object to
#: evaluate at the fixed generator).
SUMMARY_PANEL = {"n": 150, "seed": 9}


def three_panel():
    """The three-state model and panel of tests/test_fit.py: 1,500 respondents, 4 waves."""
    from tests.test_fit import Q3, THREE, simulate_expm

    spec = parse_spec(THREE)
    df = simulate_expm(Q3, 1500, [0.0, 0.8, 1.9, 3.1], seed=21)
    return spec, validate_panel(df, spec, path="<sim>", sha256="m" * 64)


def fit_three() -> dict[str, pd.DataFrame]:
    """The input of fit_three.R."""
    _, panel = three_panel()
    frame, _ = msm_frame(panel.data[["id", "time", "state"]])
    return {"fit_three_panel.csv": frame}


def covariate_panel():
    """The covariate model's panel (tests/test_covariates.py) and its msm covariates."""
    from tests.test_covariates import MODEL, simulated

    spec = parse_spec(MODEL)
    # msm sees exact times, we see gaps rounded to days: put the times on whole days.
    df = simulated(spec, 2000, seed=21)
    df["time"] = np.round(df["time"] * 365.25) / 365.25
    panel = validate_panel(df, spec, path="<sim>", sha256="r" * 64)
    design = model_design(spec, aggregate(panel, spec))
    covs = [
        MsmCovariate(
            c.name, c.kind, list(c.transitions), "draft" if c.kind == "categorical" else None
        )
        for c in spec.covariates
    ]
    return spec, panel, design, covs


def fit_covariates() -> dict[str, pd.DataFrame]:
    """2,000 respondents with a categorical and a numeric covariate; the age centre."""
    _, panel, design, covs = covariate_panel()
    frame, _ = msm_frame(panel.data, covs)
    # msm reports Q at these covariate values (our design's centre of age).
    baseline = pd.DataFrame({"age": [design.centers["age"]]})
    return {"fit_covariates_panel.csv": frame, "fit_covariates_baseline.csv": baseline}


def summaries(model: str) -> dict[str, pd.DataFrame]:
    """A panel and the fixed generator the summaries are evaluated at (tests/test_summaries.py)."""
    from tests.test_summaries import THREE

    spec = parse_spec(THREE) if model == "three" else load_spec(ROOT / "models" / "migration5.toml")
    panel = simulate_panel(spec, SUMMARY_PANEL["n"], seed=SUMMARY_PANEL["seed"])
    codes = {s: i + 1 for i, s in enumerate(spec.states)}
    frame = pd.DataFrame({"id": pd.factorize(panel["id"])[0] + 1, "time": panel["time"],
                          "state": panel["state"].map(codes)})  # fmt: skip
    q = pd.DataFrame(spec.rate_matrix())
    return {f"summaries_{model}_panel.csv": frame, f"summaries_{model}_q.csv": q}


def all_inputs() -> dict[str, pd.DataFrame]:
    """Every input file name and its content."""
    return {**fit_three(), **fit_covariates(), **summaries("three"), **summaries("migration5")}


def write(name: str, frame: pd.DataFrame, folder: Path) -> Path:
    """Write one input as the scripts read it (a generator without a header)."""
    path = folder / name
    header = not name.endswith("_q.csv")
    # Panels of the fits as fit_msm writes them; generators and centres in full precision.
    fmt = FLOAT_FORMAT if name.startswith("fit_") and name.endswith("_panel.csv") else "%.17g"
    frame.to_csv(path, index=False, header=header, float_format=fmt)
    return path


def main(folder: Path = HERE) -> None:
    for name, frame in all_inputs().items():
        print(write(name, frame, folder))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
