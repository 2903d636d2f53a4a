"""Shared fixtures: model-file and panel writers, the bundled models folder.

They are generic on purpose so that every test module can use them:

- ``write_model(text, name="model.toml")`` writes dedented TOML text to a file
  under the test's ``tmp_path`` and returns its path.
- ``write_panel(rows, columns=("id", "time", "state"), name="panel.csv")``
  writes a panel (a list of row tuples, a DataFrame or raw CSV text) as CSV or,
  when the name ends in ``.parquet``, as Parquet, and returns its path.
- ``small_panel`` is a small valid panel of the default ``migration5`` model.
- ``toy_model`` is a three-state model file with an absorbing state and known
  rates; ``toy_model_text`` is its text.
- ``models_dir`` is the folder of the bundled model files; ``migration5`` is
  the default model, parsed.
- ``stored_fit(name, model_text)`` reads a stored real fit from ``tests/data``
  (made by ``tests/data/make_fixtures.py``) for tests that need a real posterior
  but do not test sampling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import pytest

# Command output is matched by the tests: a wide console keeps rich from wrapping long
# temporary paths (pytest-xdist workers' paths are longer), before the CLI is imported.
os.environ["COLUMNS"] = "400"

from markov_migration.inputs.spec import ModelSpec, load_spec  # noqa: E402
from markov_migration.io import models_dir as _models_dir

#: Covariate and host-group tables for the three-state test models with states a, b, c
#: (and a [simulate] table): a categorical ``reason`` and a numeric ``age`` on the
#: intensities, partially pooled ``host`` effects, and how ``simulate`` draws them.
DESIGN_TABLES = """
[covariates.reason]
kind = "categorical"
transitions = ["a->b", "b->a"]
[covariates.age]
kind = "numeric"
transitions = ["a->b"]
[groups]
column = "host"
transitions = ["a->b", "b->a"]
[simulate.covariates.reason]
levels = { draft = 0.5, work = 0.5 }
[simulate.covariates.age]
normal = { mean = 35, sd = 10 }
[simulate.groups]
column = "host"
[simulate.groups.levels_by_state]
a = { X = 0.5, Y = 0.5 }
b = { X = 0.3, Y = 0.3, Z = 0.4 }
"""

#: A three-state model (a, b reversible, c absorbing; home a) with known rates and a
#: [simulate] table, shared by the tests of checks, summaries, reproduce and the CLI.
THREE_SIMULATED = """
name = "three"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { a = 0.6, b = 0.4, c = 0.0 }
"""

#: The same three states with priors only (no rates): the fitting tests' model.
THREE_PLAIN = """
name = "three"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
default = { rate = 0.2, sd = 1.5 }
"""

#: A three-state illness-death model: "dead" is absorbing; known rates per year.
TOY_MODEL = """\
name = "toy"
states = ["well", "ill", "dead"]

[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]

[rates]
"well->ill" = 0.3
"well->dead" = 0.05
"ill->well" = 0.5
"ill->dead" = 0.2
"""

#: Rows (id, time, state) of a small valid migration5 panel: 4 respondents,
#: 10 observations, 6 consecutive pairs, one respondent observed once.
SMALL_PANEL_ROWS = [
    ("r1", 2022.70, "abroad"),
    ("r1", 2023.55, "transit"),
    ("r1", 2024.55, "returned"),
    ("r2", 2022.70, "returned"),
    ("r2", 2023.55, "reemigrated"),
    ("r2", 2024.55, "swing"),
    ("r3", 2022.70, "swing"),
    ("r3", 2023.55, "swing"),
    ("r3", 2024.55, "abroad"),
    ("r4", 2023.55, "transit"),
]


def pytest_configure(config: pytest.Config) -> None:
    """Compile the likelihood kernel once before pytest-xdist starts its workers.

    On a new machine (or after the kernel's source changed) numba's on-disk cache is
    empty; every worker would then compile the same kernel at once (about a minute
    of CPU each, on the same 2 cores). The controller fills the cache first, so the
    workers load it. Single-process runs compile on first use, as before.
    """
    is_worker = hasattr(config, "workerinput")
    if is_worker or not getattr(config.option, "numprocesses", None):
        return
    import numpy as np

    from markov_migration.core.likelihood import loglik_and_grad

    q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
    loglik_and_grad(q, [0], [1.0], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])


@pytest.fixture
def models_dir() -> Path:
    """Folder of the bundled model files (``models/``)."""
    return _models_dir()


@pytest.fixture
def migration5(models_dir: Path) -> ModelSpec:
    """The default five-state model, parsed."""
    return load_spec(models_dir / "migration5.toml")


@pytest.fixture
def write_model(tmp_path: Path) -> Callable[..., Path]:
    """Return ``write(text, name="model.toml") -> Path`` writing dedented TOML."""

    def write(text: str, name: str = "model.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_panel(tmp_path: Path) -> Callable[..., Path]:
    """Return ``write(rows, columns=("id", "time", "state"), name="panel.csv") -> Path``.

    ``rows`` is a list of tuples (one per observation), a DataFrame (written as
    is) or a string (dedented CSV text, written verbatim). A name ending in
    ``.parquet`` writes Parquet (tuples and DataFrames only).
    """

    def write(
        rows: Iterable[Sequence] | pd.DataFrame | str,
        columns: Sequence[str] = ("id", "time", "state"),
        name: str = "panel.csv",
    ) -> Path:
        path = tmp_path / name
        if isinstance(rows, str):
            path.write_text(textwrap.dedent(rows), encoding="utf-8")
            return path
        frame = (
            rows
            if isinstance(rows, pd.DataFrame)
            else pd.DataFrame(list(rows), columns=list(columns))
        )
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path

    return write


@pytest.fixture
def small_panel(write_panel: Callable[..., Path]) -> Path:
    """A small valid migration5 panel (CSV): see ``SMALL_PANEL_ROWS``."""
    return write_panel(SMALL_PANEL_ROWS)


@pytest.fixture
def toy_model_text() -> str:
    """Text of the three-state illness-death model (``TOY_MODEL``)."""
    return TOY_MODEL


@pytest.fixture
def small_panel_rows() -> list[tuple[str, float, str]]:
    """Rows (id, time, state) of the small migration5 panel (``SMALL_PANEL_ROWS``)."""
    return list(SMALL_PANEL_ROWS)


@pytest.fixture
def toy_model(write_model: Callable[..., Path]) -> Path:
    """The three-state ``TOY_MODEL`` written to a file."""
    return write_model(TOY_MODEL, name="toy.toml")


#: Stored real fits (nutpie draws, fixed seeds), made by tests/data/make_fixtures.py.
DATA_DIR = Path(__file__).resolve().parent / "data"


def stored_fit(name: str, model_text: str):
    """Read the stored real fit ``tests/data/<name>.nc`` (see make_fixtures.py).

    For tests that need a real posterior but do not test sampling. Fails, naming the
    script that regenerates the file, when the file is missing, in an old fit-file
    format, or was made from another model text than the test's.
    """
    from markov_migration.fitfile.format import read_fit

    path = DATA_DIR / f"{name}.nc"
    hint = "regenerate it with: python tests/data/make_fixtures.py"
    try:
        tree = read_fit(path)
    except Exception as err:
        pytest.fail(f"stored fit {path.name} unreadable ({err}); {hint}")
    if tree.attrs.get("model_text") != model_text:
        pytest.fail(f"stored fit {path.name} was made from another model text; {hint}")
    return tree


@contextlib.contextmanager
def deadline(seconds):
    """Fail with TimeoutError instead of hanging when the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def model_gradient_and_fd(model, seed: int, spread: float, h: float = 1e-6):
    """A PyMC model's ``dlogp`` and its central finite differences at a perturbed point.

    The model's initial point (unconstrained values) is moved by ``Normal(0, spread)``
    noise (seed ``seed``); returns ``(gradient, finite differences)``, both flat.

    Both functions are compiled in PyTensor's ``FAST_COMPILE`` mode (Python linker,
    no graph rewrites): the gradient tested is the graph's own (the Ops' ``L_op``
    and PyTensor's autodiff), and the rewrites a sampler's compile adds preserve
    values (``tests/test_compiled.py`` checks the compiled log-density against this
    mode). The C compile of these graphs took 1-2 minutes per test; this takes
    about 10 s (``test_phased_design_gradient_matches_finite_differences``).
    """
    import numpy as np

    logp = model.compile_logp(mode="FAST_COMPILE")
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    point = model.initial_point()
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, spread, np.shape(v)) for k, v in point.items()}
    names = list(point)
    flat = np.concatenate([np.ravel(point[n]) for n in names])
    sizes = np.cumsum([0] + [np.size(point[n]) for n in names])

    def unflatten(x):
        return {
            n: x[a:b].reshape(np.shape(point[n]))
            for n, a, b in zip(names, sizes[:-1], sizes[1:], strict=True)
        }

    fd = np.array(
        [
            (logp(unflatten(flat + h * e)) - logp(unflatten(flat - h * e))) / (2 * h)
            for e in np.eye(flat.size)
        ]
    )
    return dlogp(unflatten(flat)), fd
