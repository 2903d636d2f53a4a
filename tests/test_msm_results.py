"""The committed R msm references in tests/results are current.

- Without R: every script has its JSON, which records the R and msm versions,
  and ``make_inputs.py`` still writes the committed input CSVs (so the tests that
  simulate a panel and compare it with msm's fit of the CSV see the same data).
- With R and msm (marked ``r``): re-running each script gives the committed JSON
  to 1e-6 relative (msm's optimiser stops at ``reltol = 1e-12``; runs on one
  machine agree exactly). Without R these skip, or fail when
  ``MARKOV_MIGRATION_REQUIRE_R=1`` (CI).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import pytest

from tests.results import RESULTS, SCRIPTS, load, require_msm, run_script

#: Fields that describe the run rather than msm's numbers.
VERSION_FIELDS = ("R", "msm")


def test_every_script_has_its_committed_output():
    assert sorted(p.stem for p in RESULTS.glob("*.R") if p.stem not in ("msm_json", "summaries")) \
        == sorted(SCRIPTS)  # fmt: skip
    for name, outputs in SCRIPTS.items():
        for out in outputs:
            assert (RESULTS / out).is_file(), out
        ref = load(name)
        assert ref["R"].startswith("R version") and ref["msm"], name


def test_inputs_are_what_the_simulator_writes(tmp_path):
    from tests.results.make_inputs import all_inputs, write

    for name, frame in all_inputs().items():
        fresh = pd.read_csv(write(name, frame, tmp_path), header=None)
        committed = pd.read_csv(RESULTS / name, header=None)
        pd.testing.assert_frame_equal(fresh, committed, obj=name)


def assert_same(fresh, committed, where=""):
    """Equal structure and strings; numbers to 1e-6 relative (1e-12 absolute near 0)."""
    if isinstance(committed, dict):
        assert sorted(fresh) == sorted(committed), where
        for key in committed:
            if key not in VERSION_FIELDS:
                assert_same(fresh[key], committed[key], f"{where}.{key}")
    elif isinstance(committed, list):
        assert len(fresh) == len(committed), where
        for i, (a, b) in enumerate(zip(fresh, committed, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(committed, numbers.Number) and not isinstance(committed, bool):
        np.testing.assert_allclose(fresh, committed, rtol=1e-6, atol=1e-12, err_msg=where)
    else:
        assert fresh == committed, where


@pytest.mark.r
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_committed_reference_is_current(name, tmp_path):
    require_msm()
    fresh = run_script(name, tmp_path)
    committed = load(name)
    versions = {k: (fresh[k], committed[k]) for k in VERSION_FIELDS}
    try:
        assert_same(fresh, committed, name)
    except AssertionError as err:
        raise AssertionError(
            f"{name}.json is stale (fresh vs committed {versions}); regenerate it as "
            f"tests/results/README.md says: {err}"
        ) from err
    for extra in SCRIPTS[name][1:]:  # exported data (cav.csv)
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / extra), pd.read_csv(RESULTS / extra), obj=extra
        )
