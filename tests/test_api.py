"""The curated public API: every name imports, is documented, and importing stays cheap."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import markov_migration

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
NAMES = [n for n in markov_migration.__all__ if n != "__version__"]


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (sys.modules as a user's would be); its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_public_name_imports_and_is_documented(name):
    value = getattr(markov_migration, name)
    assert callable(value), name  # functions, classes and exception types
    assert inspect.getdoc(value), f"{name} has no docstring"
    assert f"`{name}`" in DOCS.read_text(encoding="utf-8"), f"{name} missing from docs/api.md"


def test_all_and_dir_agree():
    assert len(set(markov_migration.__all__)) == len(markov_migration.__all__)
    assert set(markov_migration.__all__) <= set(dir(markov_migration))
    assert "__version__" in markov_migration.__all__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        markov_migration.fitt  # noqa: B018
    assert not hasattr(markov_migration, "fitt")


def test_names_are_the_real_functions():
    from markov_migration.fitfile.format import read_fit
    from markov_migration.inference.fit import fit
    from markov_migration.projection.run import project_fit
    from markov_migration.results.checks import run_checks
    from markov_migration.results.summaries import summarize

    assert markov_migration.fit is fit
    assert markov_migration.read_fit is read_fit
    assert markov_migration.summarize is summarize
    assert markov_migration.check is run_checks
    assert markov_migration.project is project_fit


def test_from_import_works():
    # the docstring example of inference.fit.fit
    from markov_migration import fit

    assert fit.__module__ == "markov_migration.inference.fit"


def test_import_is_cheap_and_summarize_does_not_import_pymc():
    out = _run(
        """
        import sys
        import markov_migration
        own = sorted(m for m in sys.modules if m.startswith("markov_migration"))
        print(own, "xarray" in sys.modules)
        markov_migration.summarize
        markov_migration.read_fit
        markov_migration.check
        markov_migration.FitSettings
        print(sorted(m for m in ("pymc", "pytensor", "nutpie") if m in sys.modules))
        """
    )
    assert out.splitlines() == ["['markov_migration'] False", "[]"]


def test_docs_example_runs(tmp_path):
    # The first Python block of docs/api.md, in a fresh interpreter, in a scratch folder.
    text = DOCS.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pymc imported: False" in out.stdout
