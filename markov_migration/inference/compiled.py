"""A nutpie model of a PyMC model without nutpie's per-process numba compile.

Layer 3. ``nutpie.compile_pymc_model(model, backend="numba")`` compiles PyTensor's
log-density-and-gradient function and the function of the traced variables, then
wraps each in a ``numba.cfunc`` C callback that reads the data arrays through raw
pointers. numba refuses to cache those callbacks (they use dynamic globals) and
re-optimises the whole linked graph function inside each, so every process paid
6-9 s (cav; more on a loaded machine) before sampling, though PyTensor had cached
the graph functions themselves on disk.

:func:`compile_nutpie` builds the same two PyTensor functions with nutpie's own
graph construction (same rewrites, same parameter order, same initial points) and
hands them to nutpie's ``from_pyfunc`` as Python callables, so nothing is compiled
that is not cached: the first process on a machine compiles them into PyTensor's
numba cache, later ones load them (about 0.1 s). nutpie stays the sampler and the
PyMC model stays the one definition of the model; the draws are the same, bit for
bit, as through ``compile_pymc_model`` for the same seed (the log-density is the
same compiled function, called from Python instead of from C).

The log-density is compiled a second time with ``nogil=True`` under its own cache
key (PyTensor's key plus ``"-nogil"``), so the chains, which nutpie runs in threads,
evaluate it in parallel instead of taking turns on Python's global interpreter lock.
The traced-variable function, called once per kept draw, keeps the lock.

Every compile checks the log-density at the model's initial point against PyMC's own
``model.compile_logp`` (evaluated by PyTensor's Python backend); a mismatch is an
internal error.
If nutpie's internals that this module uses are missing (another nutpie version),
it falls back to ``nutpie.compile_pymc_model``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import numpy as np

__all__ = ["compile_nutpie"]

#: Relative tolerance of the initial-point check (the two compiled graphs differ
#: only in rewrites and summation order).
CHECK_RTOL = 1e-8


def compile_nutpie(model: Any, *, check: bool = True) -> Any:
    """Compile a PyMC model for ``nutpie.sample`` without uncacheable C callbacks.

    Parameters
    ----------
    model : pymc.Model
        The model; its ``pm.Data`` variables must have unique names (they are the
        keys of ``with_data``).
    check : bool
        Compare the log-density at the initial point with ``model.compile_logp``.

    Returns
    -------
    nutpie.compiled_pyfunc.PyFuncModel or nutpie.compile_pymc.CompiledPyMCModel
        A model for ``nutpie.sample``; ``with_data(**arrays)`` replaces data arrays
        by ``pm.Data`` name.

    Raises
    ------
    RuntimeError
        If the log-density disagrees with PyMC's at the initial point.
    """
    try:
        parts = _nutpie_functions(model)
    except (ImportError, AttributeError, TypeError, ValueError):
        import nutpie  # another nutpie version: its public (per-process compiling) path

        return nutpie.compile_pymc_model(model, backend="numba")
    compiled, logp_at = parts
    if check:
        check_initial_logp(model, logp_at)
    return compiled


def _nutpie_functions(model: Any) -> tuple[Any, Any]:
    """The PyFuncModel and a log-density of a dict point (for the check)."""
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords, _wrap_with_lock
    from nutpie.compiled_pyfunc import PyFuncModel, from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    # As nutpie.compile_pymc_model: support points, jittered, transformed space.
    point_fn = make_initial_point_fn(
        model=model,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    n_dim, _, logp_pt, expand_pt, initial_point, shape_info, reparam = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=_wrap_with_lock(point_fn),
    )
    logp_names = _shared_names(logp_pt)
    expand_names = _shared_names(expand_pt)
    shared = {v.name: _frozen(v.get_value()) for v in logp_pt.get_shared()}
    shared.update({v.name: _frozen(v.get_value()) for v in expand_pt.get_shared()})
    logp_fn = _nogil(logp_pt.vm.jit_fn)
    expand_fn = expand_pt.vm.jit_fn
    names, _, shapes = shape_info

    def make_logp_fn():
        def logp(x, **data):
            value, grad = logp_fn(x, *[data[n] for n in logp_names])
            return float(value), np.asarray(grad, dtype=np.float64, order="C")

        return logp

    def make_expand_fn(seed1, seed2, chain):
        def expand(x, **data):
            values = expand_fn(x, *[data[n] for n in expand_names])
            return {
                name: np.asarray(value, dtype=np.float64, order="C").reshape(shape)
                for name, value, shape in zip(names, values, shapes, strict=True)
            }

        return expand

    dims, coords = _prepare_dims_and_coords(model, shape_info, reparam)
    base = from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_fn,
        make_expand_fn=make_expand_fn,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        coords=coords,
        dims=dims,
        shared_data=shared,
        make_initial_point_fn=initial_point,
        reparameterized_names=reparam,
    )
    compiled = _with_typed_data(PyFuncModel)(**{
        f.name: getattr(base, f.name) for f in dataclasses.fields(base)
    })  # fmt: skip
    free = [model.rvs_to_values[rv].name for rv in model.free_RVs]

    def logp_at(point: dict[str, np.ndarray]) -> float:
        x = np.concatenate([np.ravel(point[n]) for n in free]).astype(np.float64)
        return make_logp_fn()(x, **shared)[0]

    return compiled, logp_at


def check_initial_logp(model: Any, logp_at: Any) -> None:
    """Raise RuntimeError unless ``logp_at`` matches PyMC's log-density at the initial point.

    Parameters
    ----------
    model : pymc.Model
    logp_at : callable
        Log-density (transformed space, Jacobian included) of a dict point.
    """
    point = model.initial_point()
    ours = logp_at(point)
    # PyTensor's Python backend: no compile to pay (0.4 s), and an implementation of
    # every node independent of the numba code being checked.
    ref = float(model.compile_logp(jacobian=True, mode="FAST_COMPILE")(point))
    if not np.isclose(ours, ref, rtol=CHECK_RTOL, atol=0.0):
        raise RuntimeError(
            f"internal error: the compiled log-density is {ours!r} at the initial point, "
            f"PyMC's is {ref!r}"
        )


def _shared_names(fn: Any) -> list[str]:
    names = [v.name for v in fn.get_shared()]
    if any(n is None for n in names) or len(set(names)) != len(names):
        raise ValueError("shared variables need unique names")
    return names


def _frozen(value: Any) -> np.ndarray:
    out = np.array(value, order="C", copy=True)
    out.flags.writeable = False
    return out


def _nogil(dispatcher: Any) -> Any:
    """``dispatcher`` recompiled with ``nogil=True``, cached under its own PyTensor key.

    numba's cache index does not include ``nogil``: under PyTensor's key the variant
    would load (or overwrite) the entry of the GIL-holding one, so the copy of the
    Python function is registered under the key plus ``"-nogil"``.
    """
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
    from pytensor.link.numba.dispatch.basic import numba_njit

    f = dispatcher.py_func
    copy = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    key = CACHED_SRC_FUNCTIONS.get(f)
    if key is not None:
        CACHED_SRC_FUNCTIONS[copy] = f"{key}-nogil"
    return numba_njit(copy, final_function=True, cache=key is not None, nogil=True)


@functools.cache
def _with_typed_data(base: type) -> type:
    """A subclass of nutpie's PyFuncModel whose ``with_data`` keeps each array's dtype."""

    @dataclasses.dataclass(frozen=True)
    class TypedDataModel(base):
        def with_data(self, **updates):
            unknown = set(updates) - set(self._shared_data)
            if unknown:
                raise KeyError(f"unknown data variable(s): {sorted(unknown)}")
            cast = {
                k: _frozen(np.asarray(v, dtype=self._shared_data[k].dtype))
                for k, v in updates.items()
            }
            return dataclasses.replace(self, _shared_data={**self._shared_data, **cast})

    return TypedDataModel
