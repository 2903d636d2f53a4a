"""Cold start: compile seconds of the likelihood kernel and of a whole `cav` fit (issue 15, lever 5).

Every case runs in its own process with a fresh ``NUMBA_CACHE_DIR`` and a fresh
PyTensor ``base_compiledir`` in a temporary folder (the shared caches are left alone):

* ``kernel``: CPU seconds of ``ensure_native_kernel()`` (the lean C entry point), then
  of ``ensure_full_kernel()`` (the entry point with the Pade fallback, compiled lazily
  in a fit), then of the Python API's jitted wrappers;
* ``fit``: the whole ``markov-migration fit`` of msm's ``cav`` panel (4 x (1,000 +
  1,000), seed 1), in process, with numba's compile events summed per top-level
  function (PyTensor's graph, the kernels); process wall and CPU seconds;
* ``installed``: the install-time warm-up of ``scripts/bootstrap``
  (``markov_migration.inference.warm``), then the same cold ``cav`` fit in its caches.

``--base DIR`` repeats ``kernel`` and ``fit`` with another copy of the package (e.g.
``git archive <commit> markov_migration benchmarks | tar -x -C DIR``), alternating with
this one, for paired before/after figures in one session. CPU seconds move less with the
shared machine's load than wall seconds; the load average is recorded with each case.

Usage::

    python benchmarks/bench_coldstart.py [--cases kernel,fit,installed] [--base DIR] [--repeats 1]

Writes ``benchmarks/results/coldstart.json``; figures go to docs/performance.md.
"""

# ruff: noqa: T201

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

KERNEL = """
import json, os, time
import numpy as np
from markov_migration.core import native
res = {"load": round(os.getloadavg()[0], 1)}
c = time.process_time()
native.ensure_native_kernel()
res["entry_cpu"] = round(time.process_time() - c, 1)
if hasattr(native, "ensure_full_kernel"):
    c = time.process_time()
    native.ensure_full_kernel()
    res["full_cpu"] = round(time.process_time() - c, 1)
from markov_migration.core import likelihood as L
c = time.process_time()
Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
panel = ([0], [1.0], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])
L.loglik_and_grad(Q, *panel)
L.row_loglik_draws(Q[None], *panel)
res["wrappers_cpu"] = round(time.process_time() - c, 1)
print(json.dumps(res))
"""

FIT = """
import collections, json, os, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from numba.core import event
rec = event.RecordingListener()
event.register("numba:compile", rec)
from markov_migration.cli.app import app
out = sys.argv[1]
root = sys.argv[2]
sys.argv = ["markov-migration", "fit", f"{root}/tests/results/cav.csv", "--model",
            f"{root}/models/cav.toml", "--out", out, "--chains", "4", "--draws", "1000",
            "--tune", "1000", "--seed", "1", "--quiet", "--force"]
try:
    app()
except SystemExit as e:
    assert not e.code, e.code
res = {"wall": round(time.perf_counter() - t0, 1), "cpu": round(time.process_time() - c0, 1),
       "load": round(os.getloadavg()[0], 1)}
stack, top = [], collections.Counter()
for ts, ev in rec.buffer:
    if ev.is_start:
        pf = getattr(ev.data.get("dispatcher"), "py_func", None)
        stack.append((f"{getattr(pf, '__module__', '?')}.{getattr(pf, '__qualname__', '?')}", ts))
    else:
        name, start = stack.pop()
        if not stack:
            top[name] += ts - start
res["numba_compile_top"] = {k: round(v, 1) for k, v in top.most_common(6)}
import xarray as xr
with xr.open_datatree(out) as tree:
    res["timings"] = json.loads(tree.attrs["sampler_settings"])["timings"]
    res["rate_mean"] = [round(float(v), 4) for v in
                        tree["posterior"]["rate"].mean(("chain", "draw")).values.ravel()]
print(json.dumps(res))
"""

WARM = "from markov_migration.inference.warm import warm; import json; print(json.dumps(warm()))"


def run(code: str, tree: Path, folder: Path, *args: str) -> dict:
    """Run ``code`` with package ``tree`` and the caches in ``folder``; its JSON line."""
    env = dict(
        os.environ,
        PYTHONPATH=str(tree),
        NUMBA_CACHE_DIR=str(folder / "numba"),
        PYTENSOR_FLAGS=f"base_compiledir={folder / 'pytensor'}",
    )
    script = folder / "case.py"
    script.write_text(code)
    before = os.times()
    res = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), *args],
        env=env, capture_output=True, text=True, cwd=folder,
    )  # fmt: skip
    after = os.times()
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if isinstance(out, dict):
        out["process_cpu"] = round(
            after.children_user + after.children_system
            - before.children_user - before.children_system, 1
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="kernel,fit,installed")
    parser.add_argument("--base", type=Path, help="another copy of the package (before)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cases = args.cases.split(",")
    trees = [("base", args.base)] if args.base else []
    trees.append(("this", ROOT))
    runs = []
    for rep in range(args.repeats):
        for case in ("kernel", "fit"):
            if case not in cases:
                continue
            for label, tree in trees:
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    if case == "kernel":
                        res = run(KERNEL, tree, folder)
                    else:
                        res = run(FIT, tree, folder, str(folder / "cav.nc"), str(ROOT))
                runs.append({"case": case, "tree": label, "repeat": rep, **res})
                print(json.dumps(runs[-1]), flush=True)
        if "installed" in cases:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                warm = run(WARM, ROOT, folder)
                res = run(FIT, ROOT, folder, str(folder / "cav.nc"), str(ROOT))
            runs.append({"case": "installed", "tree": "this", "repeat": rep, "warm": warm, **res})
            print(json.dumps(runs[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "coldstart.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
