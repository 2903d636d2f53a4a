"""Issue 15's table, measured in one run: whole-process ``markov-migration fit`` vs R msm 1.7.

Rows (ours: 4 chains x 1,000 draws + 1,000 warm-up, seed 1, through the command line;
msm: maximum likelihood with its default optimiser settings, through ``Rscript``):

(a) ``cav`` (msm's heart-transplant panel, ``models/cav.toml``) with empty caches: a
    fresh ``NUMBA_CACHE_DIR`` and a fresh PyTensor ``base_compiledir`` in a temporary
    folder, as on a new machine (the shared caches are left alone);
(b) ``cav`` with warm caches (a temporary cache folder filled by an untimed run first);
(c) a 4,000-respondent, about 14,000-observation panel of ``migration5`` (5 states)
    simulated by the package (four waves, interview dates spread over +-1 month, so the
    gaps are continuous), fitted with the model's default gap resolution (one day); msm
    needs ``control = list(fnscale = nrow / 2)`` to converge on it.

The machine's two cores are shared with other users, so each repeat runs the pairs
interleaved (ours, then msm, for each row) and the table reports medians over the repeats
(``--repeats``, default 3); the ratio is the figure that counts. Every single time is kept
in the JSON.

Usage::

    python benchmarks/bench_msm_table.py [--repeats 3] [--only a,b,c]

Writes ``benchmarks/results/msm_table.json`` and ``msm_table.csv``; figures go to
docs/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

#: The goal of each row (issue 15): ours / msm at most, or msm / ours at least.
GOALS = {"a": ("ours/msm", 8.0), "b": ("ours/msm", 2.0), "c": ("msm/ours", 10.0)}
CASES = {
    "a": "cav, empty caches (a new machine)",
    "b": "cav, warm caches",
    "c": "4,000 respondents, ~14,000 obs, 5 states, continuous gaps",
}

# msm with its default optimiser settings, or with fnscale (the log-likelihood of a
# large panel is too large for optim's default scale: without it msm stops early).
R_FIT = r"""
suppressPackageStartupMessages(library(msm))
args <- commandArgs(trailingOnly = TRUE)
dat <- read.csv(args[1])
q0 <- as.matrix(read.csv(args[2], header = FALSE))
dimnames(q0) <- NULL
ctl <- if (args[3] == "fnscale") list(fnscale = nrow(dat) / 2, maxit = 10000) else list()
t0 <- proc.time()[["elapsed"]]
fit <- msm(state ~ time, subject = id, data = dat, qmatrix = q0, gen.inits = TRUE,
           control = ctl)
t1 <- proc.time()[["elapsed"]]
conv <- is.null(fit$opt$convergence) || fit$opt$convergence == 0
cat(sprintf('{"seconds": %.4f, "loglik": %.10g, "converged": %s}\n',
            t1 - t0, -fit$minus2loglik / 2, tolower(as.character(conv))))
"""


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("markov-migration")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "markov_migration.cli.app"]


def cache_env(folder: Path) -> dict[str, str]:
    """Environment whose numba and PyTensor caches live in ``folder`` (created empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    flags = ",".join(f for f in (flags, f"base_compiledir={folder / 'pytensor'}") if f)
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        NUMBA_CACHE_DIR=str(folder / "numba"),
        PYTENSOR_FLAGS=flags,
    )


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of a whole process and its stdout (raises with stderr on failure)."""
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return took, res.stdout


def fit_cmd(panel: Path, model: Path, out: Path) -> list[str]:
    return [*cli(), "fit", str(panel), "--model", str(model), "--out", str(out),
            "--chains", "4", "--draws", "1000", "--tune", "1000", "--seed", "1",
            "--quiet", "--force"]  # fmt: skip


def fit_timings(path: Path) -> dict[str, float]:
    """The compile and sampling seconds the fit recorded in its file."""
    import xarray as xr

    with xr.open_datatree(path) as tree:
        return json.loads(tree.attrs["sampler_settings"])["timings"]


def msm_cmd(tmp: Path, panel: Path, q0: np.ndarray, mode: str) -> list[str]:
    script = tmp / "fit.R"
    script.write_text(R_FIT)
    qfile = tmp / f"q0_{panel.stem}.csv"
    np.savetxt(qfile, q0, delimiter=",", fmt="%g")
    return ["Rscript", str(script), str(panel), str(qfile), mode]


def cav_inputs(tmp: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """cav as msm reads it (id, time, state 1-4) and as our model file reads it."""
    import pandas as pd

    src = ROOT / "tests" / "results" / "cav.csv"  # exported from msm::cav (fit_cav.R)
    raw = pd.read_csv(src)
    r_panel = tmp / "cav_msm.csv"
    raw.rename(columns={"PTNUM": "id", "years": "time"}).to_csv(r_panel, index=False)
    q0 = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], float) * 0.1
    return src, ROOT / "models" / "cav.toml", r_panel, q0


def sim_inputs(tmp: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """The 4,000-respondent migration5 panel (continuous gaps) for us and for msm."""
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec

    model = ROOT / "models" / "migration5.toml"
    spec = load_spec(model)
    # Four waves half a year apart; [simulate] spreads interview dates +-1 month around
    # each wave, so no two gaps are equal; 7% attrition gives about 14,000 interviews.
    df = simulate_panel(spec, 4000, waves=[2022.7, 2023.2, 2023.7, 2024.2], attrition=0.07,
                        seed=1)  # fmt: skip
    ours = tmp / "sim5.csv"
    df.to_csv(ours, index=False)
    codes = {s: i + 1 for i, s in enumerate(spec.states)}
    r_panel = tmp / "sim5_msm.csv"
    df.assign(state=df["state"].map(codes))[["id", "time", "state"]].to_csv(r_panel, index=False)
    q0 = spec.allowed_matrix().astype(float) * 0.1
    print(f"    simulated panel: {df['id'].nunique():,} respondents, {len(df):,} observations")
    return ours, model, r_panel, q0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument("--summarize", metavar="JSON", help="only rebuild the table from a JSON")
    args = parser.parse_args()
    if args.summarize:
        report(json.loads(Path(args.summarize).read_text()))
        return
    which = [k for k in "abc" if k in args.only.split(",")]
    if shutil.which("Rscript") is None:
        sys.exit("needs Rscript with R's msm package")
    tmp = Path(tempfile.mkdtemp(prefix="bench-msm-table-"))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    load0 = os.getloadavg()
    try:
        cav, cav_model, cav_r, cav_q0 = cav_inputs(tmp)
        inputs = {"a": (cav, cav_model, cav_r, cav_q0, "default")}
        inputs["b"] = inputs["a"]
        if "c" in which:
            sim, sim_model, sim_r, sim_q0 = sim_inputs(tmp)
            inputs["c"] = (sim, sim_model, sim_r, sim_q0, "fnscale")
        warm = cache_env(tmp / "warm")
        # Fill the warm cache (untimed): one fit of each model structure.
        for key in sorted({k for k in which if k != "a"}):
            panel, model = inputs[key][:2]
            run(fit_cmd(panel, model, tmp / "prime.nc"), warm)
        times: dict[str, dict[str, list]] = {k: {"ours": [], "msm": [], "fit": []} for k in which}
        msm_info: dict[str, str] = {}
        for rep in range(args.repeats):
            for key in which:
                panel, model, r_panel, q0, mode = inputs[key]
                env = cache_env(tmp / f"cold{rep}") if key == "a" else warm
                out = tmp / f"{key}{rep}.nc"
                ours, _ = run(fit_cmd(panel, model, out), env)
                theirs, stdout = run(msm_cmd(tmp, r_panel, q0, mode))
                info = json.loads(stdout.strip().splitlines()[-1])
                msm_info[key] = info
                times[key]["ours"].append(ours)
                times[key]["msm"].append(theirs)
                times[key]["fit"].append(fit_timings(out))
                print(f"    repeat {rep + 1}, ({key}) ours {ours:6.1f} s   msm {theirs:6.1f} s "
                      f"(msm() {info['seconds']:.1f} s, converged {info['converged']})",
                      flush=True)  # fmt: skip
                if key == "a":
                    shutil.rmtree(tmp / f"cold{rep}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit, "repeats": args.repeats, "load_average_start": load0,
        "load_average_end": os.getloadavg(), "machine": platform.platform(),
        "cpus": os.cpu_count(), "settings": "4 chains x 1,000 draws + 1,000 warm-up, seed 1",
    }  # fmt: skip
    report({"meta": meta, "runs": times, "msm": msm_info})


def summarize(times: dict[str, dict[str, list]]) -> list[dict]:
    """One row per case: median times and the median of the per-repeat (paired) ratios."""
    rows = []
    for key, t in times.items():
        kind, goal = GOALS[key]
        pairs = np.array(t["ours"]) / np.array(t["msm"])
        ratio = float(np.median(pairs if kind == "ours/msm" else 1.0 / pairs))
        met = ratio <= goal if kind == "ours/msm" else ratio >= goal
        rows.append({
            "case": CASES[key], "ours_s": round(float(np.median(t["ours"])), 1),
            "msm_s": round(float(np.median(t["msm"])), 1), "ratio": f"{kind} {ratio:.1f}x",
            "goal": f"{'<=' if kind == 'ours/msm' else '>='} {goal:g}x", "met": bool(met),
            "ratios": [round(float(r if kind == "ours/msm" else 1.0 / r), 1) for r in pairs],
            "ours_compile_s": round(float(np.median([f["compile"] for f in t["fit"]])), 1),
            "ours_sample_s": round(float(np.median([f["sample"] for f in t["fit"]])), 1),
        })  # fmt: skip
    return rows


def report(result: dict) -> None:
    """Print the table and write it as JSON and CSV under benchmarks/results/."""
    rows = summarize(result["runs"])
    result["rows"] = rows
    n = result["meta"]["repeats"]
    print(f"\nmedians of {n} interleaved repeats (whole processes, wall seconds); the ratio is "
          "the median of the repeats' paired ratios")  # fmt: skip
    print(f"{'case':60s} {'ours s':>7s} {'msm s':>7s} {'ratio':>16s} {'goal':>7s} met")
    for r in rows:
        print(f"{r['case']:60s} {r['ours_s']:7.1f} {r['msm_s']:7.1f} {r['ratio']:>16s} "
              f"{r['goal']:>7s} {'yes' if r['met'] else 'no'}   (repeats: {r['ratios']})")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "msm_table.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(RESULTS / "msm_table.csv", "w", newline="") as fh:
        w = csv.DictWriter(
            fh, fieldnames=[k for k in rows[0] if k != "ratios"], extrasaction="ignore"
        )
        w.writeheader()
        w.writerows(rows)
    print(f"written {RESULTS / 'msm_table.json'} and msm_table.csv")


if __name__ == "__main__":
    main()
