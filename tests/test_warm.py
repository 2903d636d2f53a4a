"""The install-time warm-up of the compile caches (inference/warm.py, cli/warm.py, scripts/bootstrap)."""

import re
from pathlib import Path

import numpy as np
import pytest

from markov_migration.cli.warm import warm_projection
from markov_migration.core import native
from markov_migration.core.likelihood import loglik
from markov_migration.inference.warm import tiny_fit, warm

ROOT = Path(__file__).resolve().parents[1]


def test_warm_compiles_both_kernels():
    took = warm(models=())
    assert set(took) == {"kernels", "forward kernels"} and took["kernels"] >= 0.0
    assert native._native_entry_cfunc and native._full_entry_cfunc  # lean and full
    # and the kernels still compute: exp(-0.2 t) stays put over t = 1 for 30 persons
    Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
    value = loglik(Q, [0], [1.0], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])
    assert value == pytest.approx(-14.469276, abs=1e-6)


@pytest.mark.slow
def test_warm_compiles_a_model_graph():
    took = warm(models=("migration5",), respondents=40)
    assert set(took) == {"kernels", "forward kernels", "migration5"}


def test_bootstrap_warm_up_cannot_fail_the_install():
    # the warm-up runs inside `if ...; then ... else <warning> fi`, so under
    # `set -e` its failure only prints a warning; and the time is printed
    text = (ROOT / "scripts" / "bootstrap").read_text()
    block = re.search(r"\nif ([^\n]*cli\.warm[^\n]*); then\n(.*?)\nelse\n(.*?)\nfi", text, re.S)
    assert block is not None
    assert 's"' in block.group(2) and "warning" in block.group(3)
    assert text.index("pip install") < block.start()


def test_warm_projection_projects_the_demo_model():
    """The projection kernels of the demo are compiled (or loaded) by a tiny projection."""
    assert warm_projection(tiny_fit("migration5", respondents=40)) >= 0.0
