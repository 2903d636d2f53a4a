"""``demo``: the whole pipeline on the bundled calibrated example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import console, handle_errors

#: Seed of the bundled example panel (examples/outrush_synthetic.csv).
DEMO_SEED = 2024
DEMO_N = 8500


@handle_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the demo's outputs.")] = Path(
        "demo-output"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite outputs of an earlier demo run.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated example panel.")] = DEMO_SEED,
) -> None:
    """Run the pipeline on the calibrated OutRush-like example: simulate and validate the panel."""
    from markov_migration.calibration import calibration_table
    from markov_migration.cli.data import print_data_summary
    from markov_migration.io import atomic_output, resolve_model
    from markov_migration.panel import data_summary
    from markov_migration.simulate import simulate_panel
    from markov_migration.spec import load_spec

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_spec(resolve_model("migration5"))
    console.rule("[bold]1. Simulate the calibrated OutRush-like panel")
    panel = simulate_panel(spec, DEMO_N, seed=seed, progress=True)
    panel_path = out_dir / "panel.csv"
    with atomic_output(panel_path, force) as tmp:
        panel.to_csv(tmp, index=False, float_format="%.6f")
    console.print(f"wrote {panel_path}: {panel['id'].nunique():,} respondents, {len(panel):,} observations")

    console.rule("[bold]2. Validate it against the model")
    print_data_summary(data_summary(panel_path, spec), console)

    console.rule("[bold]3. Published figures vs the simulated panel")
    table = calibration_table(spec, panel)
    console.print(table.to_string(index=False))
