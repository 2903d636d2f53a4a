"""inference.compiled: nutpie's model through from_pyfunc instead of per-process C callbacks.

The reference is nutpie's own ``compile_pymc_model(model, backend="numba")``: the same
PyMC model, seed and settings must give the same draws bit for bit (the log-density is
the same PyTensor function, called from Python instead of from a numba C callback).
"""

from __future__ import annotations

import numpy as np
import pytest

from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from tests.conftest import THREE_PLAIN
from tests.test_fit import Q3, simulate_expm


@pytest.fixture(scope="module")
def three_model():
    from markov_migration.inference.model import build_model

    spec = parse_spec(THREE_PLAIN)
    df = simulate_expm(Q3, 300, [0.0, 1.0, 2.0], seed=4)
    agg = aggregate(validate_panel(df, spec, path="<sim>", sha256="x" * 64), spec)
    return spec, agg, build_model(spec, agg)


def _draws(compiled, seed=2):
    import nutpie

    trace = nutpie.sample(compiled, draws=150, tune=150, chains=2, cores=2, seed=seed,
                          progress_bar=False)  # fmt: skip
    return trace.posterior


def test_same_draws_as_nutpies_compile(three_model):
    import nutpie
    from nutpie.compiled_pyfunc import PyFuncModel

    from markov_migration.inference.compiled import compile_nutpie

    _, _, model = three_model
    ours = compile_nutpie(model)
    assert isinstance(ours, PyFuncModel)  # not the fallback
    theirs = nutpie.compile_pymc_model(model, backend="numba")
    a, b = _draws(ours), _draws(theirs)
    assert set(a.data_vars) == set(b.data_vars)
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert a[name].dims == b[name].dims


def test_log_density_and_gradient_match_pymc(three_model):
    """logp and gradient at a few points against PyMC's (Python backend) and finite differences."""
    from markov_migration.inference.compiled import compile_nutpie

    _, _, model = three_model
    compiled = compile_nutpie(model)
    logp = compiled._make_logp_func()
    ref = model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    name = model.rvs_to_values[model.free_RVs[0]].name
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.normal(-1.5, 0.5, compiled.n_dim)
        value, grad = logp(x, **compiled._shared_data)
        assert value == pytest.approx(float(ref({name: x})), rel=1e-10)
        h = 1e-6
        fd = [
            (float(ref({name: x + h * e})) - float(ref({name: x - h * e}))) / (2 * h)
            for e in np.eye(compiled.n_dim)
        ]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_latent_model_log_density_and_gradient_match_pymc():
    """Latent fits compile through compile_nutpie too: a misclassified cav model with exact
    deaths, its log-density (Jacobian included) against PyMC's Python backend to 1e-10 and
    its gradient against finite differences."""
    from nutpie.compiled_pyfunc import PyFuncModel

    from markov_migration.inference.compiled import compile_nutpie
    from markov_migration.inference.latent import build_latent_model
    from markov_migration.inputs.panel import load_panel
    from tests.test_observation_model import CAV, MISC

    spec = parse_spec(MISC + '[observation]\nexact = ["dead"]\n')
    model = build_latent_model(spec, load_panel(CAV, spec))
    compiled = compile_nutpie(model)
    assert isinstance(compiled, PyFuncModel)  # not the fallback
    logp = compiled._make_logp_func()
    ref = model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    point = model.initial_point()
    names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    sizes = [np.size(point[n]) for n in names]
    shapes = [np.shape(point[n]) for n in names]

    def as_point(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return {n: p.reshape(sh) for n, p, sh in zip(names, parts, shapes, strict=True)}

    rng = np.random.default_rng(1)
    x0 = np.concatenate([np.ravel(point[n]) for n in names])
    for _ in range(2):
        x = x0 + rng.normal(0, 0.3, x0.size)
        value, grad = logp(x, **compiled._shared_data)
        assert value == pytest.approx(float(ref(as_point(x))), rel=1e-10)
        h = 1e-6
        fd = [
            (float(ref(as_point(x + h * e))) - float(ref(as_point(x - h * e)))) / (2 * h)
            for e in np.eye(x.size)
        ]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_with_data_changes_the_log_density_and_keeps_dtypes(three_model):
    from markov_migration.inference.compiled import compile_nutpie
    from markov_migration.inference.model import build_model
    from markov_migration.inputs.design import model_design

    spec, _, model = three_model
    compiled = compile_nutpie(model)
    df = simulate_expm(Q3, 500, [0.0, 0.7, 1.9], seed=9)
    agg2 = aggregate(validate_panel(df, spec, path="<sim>", sha256="y" * 64), spec)
    arrays = model_design(spec, agg2).packed_data()[0]
    # arrays handed over as lists come back in the compiled dtypes
    updated = compiled.with_data(**{k: v.tolist() for k, v in arrays.items()})
    for k, v in updated._shared_data.items():
        assert v.dtype == compiled._shared_data[k].dtype
    x = np.full(compiled.n_dim, -1.2)
    got = updated._make_logp_func()(x, **updated._shared_data)[0]
    fresh = build_model(spec, agg2)
    name = fresh.rvs_to_values[fresh.free_RVs[0]].name
    want = float(fresh.compile_logp(jacobian=True, mode="FAST_COMPILE")({name: x}))
    assert got == pytest.approx(want, rel=1e-10)
    assert got != pytest.approx(compiled._make_logp_func()(x, **compiled._shared_data)[0])
    with pytest.raises(KeyError, match="unknown data"):
        compiled.with_data(nope=np.zeros(3))


def test_initial_point_check_catches_a_wrong_log_density(three_model):
    from markov_migration.inference.compiled import check_initial_logp

    _, _, model = three_model
    ref = float(model.compile_logp(mode="FAST_COMPILE")(model.initial_point()))
    check_initial_logp(model, lambda point: ref * (1 + 1e-12))
    with pytest.raises(RuntimeError, match="initial point"):
        check_initial_logp(model, lambda point: ref + 1e-3)


def test_falls_back_to_nutpies_compile_without_its_internals(three_model, monkeypatch):
    import nutpie.compiled_pyfunc
    from nutpie.compile_pymc import CompiledPyMCModel

    from markov_migration.inference.compiled import compile_nutpie

    # as with a nutpie whose internals moved: the import of from_pyfunc fails
    monkeypatch.delattr(nutpie.compiled_pyfunc, "from_pyfunc")
    assert isinstance(compile_nutpie(three_model[2]), CompiledPyMCModel)
