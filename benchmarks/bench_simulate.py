"""Simulator speed: 8,500 and 850,000 respondents x 3 waves of the migration5 example.

Run from the repository root: ``python benchmarks/bench_simulate.py``. Prints wall-clock
seconds of the first (cold: numba compiles or loads its cache) and the best of three
warm runs, for the panel alone (``simulate_panel``) and with the full jump history
(``simulate_paths_for_spec``), and the 850,000 / 8,500 ratio.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Seconds of the first call and the best of ``repeat`` further calls."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return first, best


def main() -> None:
    t = time.perf_counter()
    from markov_migration.inputs.simulate import simulate_panel, simulate_paths_for_spec
    from markov_migration.inputs.spec import load_spec

    print(f"import: {time.perf_counter() - t:.2f} s; CPUs: {os.cpu_count()}")
    spec = load_spec(ROOT / "models" / "migration5.toml")
    results = {}
    for label, fn in (
        ("panel", lambda n: simulate_panel(spec, n, seed=1)),
        ("panel + history", lambda n: simulate_paths_for_spec(spec, n, seed=1, history=True)),
    ):
        for n in (8_500, 850_000):
            first, warm = timed(lambda n=n, fn=fn: fn(n))
            results[(label, n)] = warm
            print(f"{label:16s} n = {n:>7,}: first call {first:6.2f} s, warm {warm:6.3f} s")
        ratio = results[(label, 850_000)] / results[(label, 8_500)]
        print(f"{label:16s} ratio 850,000 / 8,500 (warm): {ratio:.0f}x for 100x the respondents")


if __name__ == "__main__":
    main()
