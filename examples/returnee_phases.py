"""Phase-type returnees in the calibrated example: published figures and returnees in 2035.

Usage (from the repository root)::

    python examples/returnee_phases.py             # sections 1-3
    python examples/returnee_phases.py --profile   # also section 4 (about a minute)

Compares ``models/migration5.toml`` (one ``returned`` state) with
``models/migration5_phases.toml`` (``[phases] returned = 2``: a short stay, then
settled), both calibrated by ``examples/calibrate_migration5.py`` to the same
published figures with the same exact weighted least squares (docs/calibration.md,
"Phase-type returnees"). Everything is exact (expm of the hidden generators), no
simulation noise:

1. every figure: target, plain model, phase model, and the weighted misfit
   ``sum ((figure - target) / half-width)^2`` over the fitted figures;
2. "14% then 21%": both models refitted with ``changed_w1_w2`` held to +-1 pp;
3. returnees from 650,000 abroad at 2024.5 to 2030 and 2035 (stock in
   ``returned``, by phase, return events, ever returned; no deaths);
4. with ``--profile``: the phase model refitted for settling guesses from 0.02 to
   2 a year: what the figures say about settling, and what it does to 2035.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate_migration5 as cal  # noqa: E402

from markov_migration.inputs.calibration_exact import (  # noqa: E402
    expected_figures,
    expected_returnees,
)
from markov_migration.inputs.spec import load_spec  # noqa: E402

#: Start and size of the projection (the demo's: 650,000 still abroad in July 2024).
START, ABROAD, HORIZONS = 2024.5, 650_000.0, (2030.0, 2035.0)


def misfit(figures: dict[str, float], targets=None) -> float:
    """Weighted sum of squared misses over the fitted figures (targets: FIT_TARGETS)."""
    targets = cal.FIT_TARGETS if targets is None else targets
    return float(sum(((figures[k] - t) / hw) ** 2 for k, (t, hw) in targets.items()))


def fitted_model(spec, targets=None):
    """Refit ``spec`` (optionally with other targets): (model, effects, figures)."""
    rates, initial, figures = cal.fit(spec, targets)
    shares = np.array([initial[s] for s in spec.states])
    model = cal.hidden_model(spec, np.array(list(rates.values())), shares,
                             initial.get("first_phase", 1.0))  # fmt: skip
    return model, cal.host_effects(spec, model), figures, rates


def main(argv: list[str] | None = None) -> int:
    """Print the comparison (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="also the settling profile")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 160)
    plain, phased = load_spec(cal.MODEL), load_spec(cal.PHASE_MODEL)
    fp, fq = expected_figures(plain), expected_figures(phased)

    print("1. Exact expected figures of the two model files")
    rows = [(k, t, hw, fp[k], fq[k]) for k, (t, hw) in cal.FIT_TARGETS.items()]
    rows += [(k, np.nan, np.nan, fp[k], fq[k]) for k in ("returned_share_w1",)]
    table = pd.DataFrame(rows, columns=["figure", "target", "half-width", "plain", "phases"])
    print(table.round(3).to_string(index=False))
    print(f"weighted misfit: plain {misfit(fp):.2f}, phases {misfit(fq):.2f}\n")

    print("2. Holding 'changed host Sept 2022 -> summer 2023' to 14% +- 1 pp")
    tight = {**cal.FIT_TARGETS, "changed_w1_w2": (0.14, 0.01)}
    rows = []
    for name, spec in (("plain", plain), ("phases", phased)):
        *_rest, figures, _rates = fitted_model(spec, tight)
        others = {k: v for k, v in cal.FIT_TARGETS.items() if k != "changed_w1_w2"}
        rows.append((name, figures["changed_w1_w2"], figures["moved_w2_w3"],
                     figures["returned_w2_w3"], figures["left_again_w1_w2"],
                     misfit(figures, others)))  # fmt: skip
    cols = ["model", "changed_w1_w2", "moved_w2_w3", "returned_w2_w3", "left_again", "misfit"]
    print(pd.DataFrame(rows, columns=cols).round(3).to_string(index=False))
    print("(misfit over the other fitted figures; unconstrained: "
          f"plain {misfit(fp) - ((fp['changed_w1_w2'] - 0.14) / 0.06) ** 2:.2f}, "
          f"phases {misfit(fq) - ((fq['changed_w1_w2'] - 0.14) / 0.06) ** 2:.2f})\n")  # fmt: skip

    print(f"3. Returnees of {ABROAD:,.0f} abroad at {START} (exact, no deaths)")
    for name, spec in (("plain", plain), ("phases", phased)):
        proj = expected_returnees(spec, abroad=ABROAD, start=START, horizons=HORIZONS)
        print(f"{name}:\n{proj.round(0).to_string(index=False)}")
    print()

    if args.profile:
        print("4. Phase model refitted for each settling guess (returned_1->returned_2)")
        rows = []
        for settle in (0.02, 0.1, 0.25, 0.5, 1.0, 2.0):
            cal.GUESS_PHASES["returned_1->returned_2"] = settle
            model, effects, figures, rates = fitted_model(phased)
            q12, q1x = rates["returned_1->returned_2"], rates["returned_1->reemigrated"]
            proj = expected_returnees(phased, model, abroad=ABROAD, start=START,
                                      horizons=(2035.0,), effects=effects).iloc[0]  # fmt: skip
            rows.append((settle, q12, q12 / (q12 + q1x), rates["returned_2->reemigrated"],
                         misfit(figures), figures["left_again_w1_w2"],
                         figures["leavers_per_returner"], proj["returned"],
                         proj["ever_returned"]))  # fmt: skip
        cols = ["guess", "settle", "P(settle)", "settled_exit", "misfit", "left_again",
                "leavers/ret", "returned_2035", "ever_2035"]  # fmt: skip
        print(pd.DataFrame(rows, columns=cols).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
