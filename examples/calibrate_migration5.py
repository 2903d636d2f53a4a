"""Calibrate the OutRush-like example: how the rates of models/migration5.toml were chosen.

Usage (from the repository root)::

    python examples/calibrate_migration5.py            # table: target / simulated / pass
    python examples/calibrate_migration5.py --fit      # re-derive [rates] and host effects
    python examples/calibrate_migration5.py --write    # also rewrite examples/outrush_synthetic.csv
    python examples/calibrate_migration5.py --phases --fit   # the phase-type variant
                                                   # (models/migration5_phases.toml) next to it

Method (docs/calibration.md has the full account)
-------------------------------------------------
1. The published figures are shares a survey measures between waves (e.g. 8% of those
   abroad in summer 2023 were back in Russia in summer 2024) or one-year departure
   probabilities by host country. ``markov_migration.inputs.calibration.FIGURES`` defines each
   one on the wave states of a panel, or on the model's rates.
2. Host-country departures are matched exactly, not fitted: every host gets a hazard
   ratio on all moves out of its state (``"Georgia:transit->*"``) so that
   ``1 - exp(-HR * q_out) = published share``, where ``q_out`` is the exit intensity of
   ``transit`` (or ``abroad``) in ``[rates]``.
3. The 11 intensities and the first-wave split between abroad, transit and swing are
   then fitted by weighted least squares to the panel figures, computed *exactly* (no
   simulation noise): for every host the joint distribution of the states at the three
   nominal waves is ``pi0_h[a] P_h(0.85)[a, b] P_h(1.0)[b, c]`` with ``P_h(t) =
   expm(Q_h t)``; attrition and late entry are independent of the states, so they change
   the sample sizes, not the expected shares. Each residual is divided by a half-width
   (how close we want that figure), and a log-normal penalty pulls every rate towards a
   domain guess written down before fitting (``GUESS``): the figures alone leave some
   directions free (e.g. how transit leavers split between settled hosts and Russia).
4. The fitted rates are rounded to two decimals (one above 1 a year) and written into
   ``models/migration5.toml``; the table below then checks them on an actual simulated
   panel of 8,500 respondents (seed 2024, the example panel).
5. ``--phases`` does the same for ``models/migration5_phases.toml`` (``[phases] returned
   = 2``): the figures are computed exactly on the hidden generator (six hidden states,
   summed to the observed states; ``markov_migration.inputs.calibration_exact``), the
   13 hidden intensities, the first-wave split and the short-stay share of the first-wave
   returnees are fitted, the new hidden moves pulled towards ``GUESS_PHASES``; the result
   goes to ``[simulate.latent_rates]`` and ``initial_phases``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from markov_migration.inputs.calibration import HOST_DEPARTURE, calibration_table
from markov_migration.inputs.calibration_exact import HiddenModel, expected_figures
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.simulate_design import parse_design
from markov_migration.inputs.simulate_phases import latent_labels
from markov_migration.inputs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "migration5.toml"
PHASE_MODEL = ROOT / "models" / "migration5_phases.toml"
PANEL = ROOT / "examples" / "outrush_synthetic.csv"
#: Seed and size of the example panel (examples/README.md).
SEED = 2024
N_RESPONDENTS = 8500

#: Domain guesses (per person-year) written down before fitting: settled emigrants rarely
#: move; transit leavers mostly go on to a settled host; returners mostly leave again
#: within months (80% by the next wave); commuters and re-emigrants move a lot.
GUESS = {
    "abroad->transit": 0.02, "abroad->swing": 0.03, "abroad->returned": 0.03,
    "transit->abroad": 0.35, "transit->swing": 0.12, "transit->returned": 0.20,
    "swing->abroad": 0.25, "swing->returned": 0.35,
    "returned->reemigrated": 2.0,
    "reemigrated->returned": 0.30, "reemigrated->swing": 0.30,
}  # fmt: skip
#: Guesses for the hidden moves of ``returned = 2`` that have no plain counterpart, written
#: down before fitting: about a sixth of returnees settle (0.5 a year against 2.5 of leaving
#: again), settled returnees leave about as rarely as settled emigrants (0.1 a year), and
#: the returnees of Mar-Sep 2022 (back for at most half a year) are mostly still short-stay.
GUESS_PHASES = {"returned_1->returned_2": 0.5, "returned_2->reemigrated": 0.1}
GUESS_FIRST_PHASE = 0.9
#: First-wave shares guessed from the survey reports (returned is published: 16%).
GUESS_INITIAL = {"abroad": 0.36, "transit": 0.34, "swing": 0.14, "returned": 0.16}
#: Weight of the pull towards GUESS (per unit of log-rate) and towards GUESS_INITIAL.
PRIOR_WEIGHT = 1.5
INITIAL_WEIGHT = 2.0
#: Fitted figures: (target, half-width). The half-widths say how close each should be;
#: changed_w1_w2 is loose (see docs/calibration.md: it conflicts with constant rates).
FIT_TARGETS = {
    "left_again_w1_w2": (0.80, 0.03),
    "changed_w1_w2": (0.14, 0.06),
    "returned_w2_w3": (0.08, 0.01),
    "moved_w2_w3": (0.21, 0.02),
    "swing_share_w3": (0.16, 0.02),
    "transit_departure_panel": (0.49, 0.09),
    "settled_departure_panel": (0.07, 0.07),
    "transit_departure": (0.49, 0.05),
    "settled_departure": (0.08, 0.04),
    "stationary_return": (0.07, 0.01),
    "leavers_per_returner": (1.0, 0.2),
}


def rate_labels(spec) -> list[str]:
    """Free intensities: the observed transitions, or the hidden moves of a phased model."""
    if spec.observation.phases:
        return latent_labels(spec)[2]
    return list(spec.transition_labels)


def hidden_model(spec, rates: np.ndarray, initial: np.ndarray, first_phase: float) -> HiddenModel:
    """Generator on the hidden states (one per state without phases), first-wave shares."""
    if spec.observation.phases:
        names, observed, labels = latent_labels(spec)
    else:
        names, observed, labels = spec.states, np.arange(spec.n_states), rate_labels(spec)
    index = {name: i for i, name in enumerate(names)}
    q = np.zeros((len(names), len(names)))
    for lab, v in zip(labels, rates, strict=True):
        a, b = lab.split("->")
        q[index[a], index[b]] = v
    np.fill_diagonal(q, -q.sum(axis=1))
    split = np.ones(len(names))
    for r in np.unique(observed):
        hidden = np.flatnonzero(observed == r)
        if hidden.size == 2:
            split[hidden] = [first_phase, 1 - first_phase]
    return HiddenModel(q, observed, initial[observed] * split)


def host_effects(spec, model: HiddenModel) -> dict:
    """Hazard ratios giving every host its published departure share (its state unphased)."""
    effects = {}
    for host, (state, target, _low, _high) in HOST_DEPARTURE.items():
        r = spec.index(state)
        (h,) = model.hidden_of(r)
        hr = -math.log1p(-target) / -model.q[h, h]
        for rr, s in spec.transitions:
            if rr == r:
                effects[(host, (r, s))] = hr
    return effects


def guess_of(label: str) -> float:
    """Domain guess of an intensity; hidden entry/first-phase moves share the plain guess."""
    if label in GUESS_PHASES:
        return GUESS_PHASES[label]
    return GUESS[label.replace("_1", "")]


def fit(spec, targets=None):
    """Least-squares rates, first-wave shares and phase split; returns (rates, initial, figures).

    ``targets`` overrides :data:`FIT_TARGETS` (target, half-width by figure key).
    """
    targets = FIT_TARGETS if targets is None else targets
    design = parse_design(spec)
    labels = rate_labels(spec)
    n = len(labels)
    phased = bool(spec.observation.phases)
    free = ["abroad", "transit", "swing"]
    fixed_home = GUESS_INITIAL["returned"]
    guess = np.log([guess_of(lab) for lab in labels])
    guess_split = np.log([GUESS_INITIAL[s] / GUESS_INITIAL["swing"] for s in free[:2]])
    guess_phase = [math.log(GUESS_FIRST_PHASE / (1 - GUESS_FIRST_PHASE))] if phased else []

    def unpack(x):
        rates = np.exp(x[:n])
        a = np.r_[np.exp(x[n : n + 2]), 1.0]
        initial = np.zeros(spec.n_states)
        initial[[spec.index(s) for s in free]] = a / a.sum() * (1 - fixed_home)
        initial[spec.index("returned")] = fixed_home
        first_phase = 1 / (1 + math.exp(-x[n + 2])) if phased else 1.0
        return rates, initial, first_phase

    def figures(x):
        model = hidden_model(spec, *unpack(x))
        return expected_figures(spec, model, design, host_effects(spec, model))

    def residuals(x):
        m = figures(x)
        fit_part = [(m[key] - t) / hw for key, (t, hw) in targets.items()]
        return np.r_[
            fit_part,
            PRIOR_WEIGHT * (x[:n] - guess),
            INITIAL_WEIGHT * (x[n : n + 2] - guess_split),
            INITIAL_WEIGHT * (x[n + 2 :] - guess_phase),
        ]

    result = least_squares(residuals, np.r_[guess, guess_split, guess_phase])
    rates, initial, first_phase = unpack(result.x)
    initial_shares = {s: float(initial[spec.index(s)]) for s in spec.states}
    if phased:
        initial_shares["first_phase"] = first_phase
    return dict(zip(labels, rates, strict=True)), initial_shares, figures(result.x)


def round_rate(x: float) -> float:
    """Two decimals (one above 1 per year): the rates are only known that well."""
    return round(x, 2) if x < 1 else round(x, 1)


def main(argv: list[str] | None = None) -> int:
    """Print the calibration table (and with --fit, re-derive the rates)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="re-derive [rates] and host effects")
    parser.add_argument("--write", action="store_true", help=f"rewrite {PANEL.name}")
    parser.add_argument(
        "--phases", action="store_true", help=f"the phase-type variant {PHASE_MODEL.name}"
    )
    args = parser.parse_args(argv)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_colwidth", 70)
    spec = load_spec(PHASE_MODEL if args.phases else MODEL)
    if args.phases and args.write:
        parser.error("--write rewrites the plain example panel; not with --phases")

    if args.fit:
        rates, initial, figures = fit(spec)
        table = "[simulate.latent_rates]" if args.phases else "[rates]"
        print(f"Fitted {table} (exact, then rounded as in the model file):")
        for lab, v in rates.items():
            print(f'"{lab}" = {round_rate(v)}    # fitted {v:.4f}')
        print("initial =", {s: round(v, 3) for s, v in initial.items()})
        print("\nExpected figures at the fitted rates (no simulation noise):")
        for key, (target, hw) in FIT_TARGETS.items():
            print(f"  {key:26s} target {target:5.3f} +- {hw:4.2f}   expected {figures[key]:.3f}")
        first = initial.get("first_phase", 1.0)
        shares = np.array([initial[s] for s in spec.states])
        rounded = np.array([round_rate(v) for v in rates.values()])
        model = hidden_model(spec, rounded, shares, first)
        print("\n[simulate.groups.effects] for the rounded rates:")
        done = set()
        for (host, (r, _s)), hr in host_effects(spec, model).items():
            if host not in done:
                done.add(host)
                print(f'"{host}:{spec.states[r]}->*" = {hr:.3f}')
        print()

    panel = simulate_panel(spec, N_RESPONDENTS, seed=SEED)
    if args.write:
        panel.to_csv(PANEL, index=False, float_format="%.6f")
        print(
            f"wrote {PANEL.relative_to(ROOT)}: {panel['id'].nunique():,} respondents, "
            f"{len(panel):,} interviews (seed {SEED})\n"
        )
    table = calibration_table(spec, panel)
    shown = table.assign(
        target=table["target"].map("{:.3f}".format),
        simulated=table["simulated"].map("{:.3f}".format),
        tolerance=[
            f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(table["low"], table["high"], strict=True)
        ],
    )[["figure", "source", "target", "simulated", "tolerance", "pass"]]
    print(f"Published figures vs the simulated panel ({N_RESPONDENTS:,} respondents, seed {SEED}):")
    print(shown.to_string(index=False))
    return 0 if table["pass"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
