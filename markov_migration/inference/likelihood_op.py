"""PyTensor Op for the aggregated panel log-likelihood, with a numba implementation.

Layer 3. :class:`PanelLogLik` wraps the numba kernel
:func:`markov_migration.core.native.native_loglik_and_grad`: one call
returns the log-likelihood and its gradient with respect to the stack of
generators ``Q``, so a gradient evaluation costs one kernel call (the gradient
graph reuses the Op's second output). The data arrays are graph inputs (in
PyMC, ``pm.Data`` shared variables), not constants, so one compiled model
serves new data.

The Op is registered with PyTensor's numba backend
(``register_funcify_and_cache_key``), so ``mode="NUMBA"`` and
``nutpie.compile_pymc_model(model, backend="numba")`` compile the whole
log-density and gradient without an object-mode fallback. Its cache key hashes
the source of this module and of the core kernels, so PyTensor's on-disk numba
cache (``pytensor.config.base_compiledir / "numba"``) is reused across
processes and invalidated when the kernel code changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytensor.tensor as pt  # noqa: TID251 - this module is layer 3
from pytensor.gradient import (  # noqa: TID251
    DisconnectedType,
    disconnected_type,
    grad_not_implemented,
)
from pytensor.graph.basic import Apply  # noqa: TID251
from pytensor.graph.op import Op  # noqa: TID251
from pytensor.link.numba.dispatch.basic import (  # noqa: TID251
    numba_njit,
    register_funcify_and_cache_key,
)

from markov_migration.core.layout import PANEL_FIELDS
from markov_migration.core.native import (
    KERNEL_HASH,
    ensure_native_kernel,
    native_loglik_and_grad,
)

__all__ = ["PanelLogLik", "panel_loglik", "panel_loglik_op"]

_INT_FIELDS = ("piece_q", "row_ptr", "row_piece", "row_from", "row_to")


class PanelLogLik(Op):
    """Panel log-likelihood of a stack of generators and its gradient.

    Inputs: ``Q`` float64 (M, K, K) and the seven panel arrays of
    :data:`markov_migration.core.layout.PANEL_FIELDS` (int64 / float64
    vectors). Outputs: the log-likelihood (float64 scalar) and
    ``dQ = d loglik / dQ`` (float64, (M, K, K)), computed together.

    The gradient with respect to ``Q`` is ``cotangent * dQ``; every entry of
    ``Q`` is an independent input (the diagonal too). The integer inputs are
    disconnected; gradients with respect to ``piece_t`` and ``row_count`` are
    not implemented, nor is differentiating through ``dQ`` (second order).
    """

    __props__ = ()

    def make_node(self, Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
        """Build the Apply node; casts inputs to float64 / int64."""
        Q = pt.as_tensor_variable(Q)
        if Q.type.ndim != 3:
            raise TypeError(f"Q must be a 3-d tensor (M, K, K), got ndim={Q.type.ndim}")
        if Q.type.dtype != "float64":
            Q = pt.cast(Q, "float64")
        data = []
        for name, value in zip(
            PANEL_FIELDS,
            (piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count),
            strict=True,
        ):
            var = pt.as_tensor_variable(value)
            if var.type.ndim != 1:
                raise TypeError(f"{name} must be a vector, got ndim={var.type.ndim}")
            if name in _INT_FIELDS:
                if not var.type.dtype.startswith(("int", "uint")):
                    raise TypeError(f"{name} must be an integer vector, got {var.type.dtype}")
                if var.type.dtype != "int64":
                    var = pt.cast(var, "int64")
            elif var.type.dtype != "float64":
                var = pt.cast(var, "float64")
            data.append(var)
        outputs = [pt.scalar(dtype="float64"), Q.type()]
        return Apply(self, [Q, *data], outputs)

    def perform(self, node, inputs, output_storage):
        """Evaluate with the numba kernel (Python and C backends)."""
        total, dQ = native_loglik_and_grad()(*inputs)
        output_storage[0][0] = np.asarray(total, dtype=np.float64)
        output_storage[1][0] = dQ

    def infer_shape(self, node, input_shapes):
        """Scalar log-likelihood and a gradient shaped like Q."""
        return [(), input_shapes[0]]

    def connection_pattern(self, node):
        """Q, piece_t and row_count reach both outputs; integer inputs reach none."""
        return [[name not in _INT_FIELDS] * 2 for name in ("Q", *PANEL_FIELDS)]

    def pullback(self, inputs, outputs, cotangents):
        """Vector-Jacobian product: ``cotangent * dQ`` for Q."""
        Q, *data = inputs
        _, dQ = outputs
        g_loglik, g_dQ = cotangents
        if not isinstance(g_dQ.type, DisconnectedType):
            g_q = grad_not_implemented(
                self, 0, Q, "Second derivatives (through the dQ output) are not implemented."
            )
        elif isinstance(g_loglik.type, DisconnectedType):
            g_q = disconnected_type()
        else:
            g_q = g_loglik * dQ
        grads = [g_q]
        for i, (name, var) in enumerate(zip(PANEL_FIELDS, data, strict=True), start=1):
            if name in _INT_FIELDS:
                grads.append(disconnected_type())
            else:
                grads.append(
                    grad_not_implemented(self, i, var, f"No gradient with respect to {name}.")
                )
        return grads


panel_loglik_op = PanelLogLik()


def panel_loglik(Q, data: Mapping[str, Any] | Sequence[Any] | Any) -> pt.TensorVariable:
    """Symbolic panel log-likelihood of a stack of generators.

    Parameters
    ----------
    Q : TensorVariable, shape (M, K, K)
        Generators (intensities per unit of the model's time); a (K, K) matrix
        is treated as M = 1.
    data : mapping, sequence or object
        The panel arrays (numpy arrays or tensors, typically ``pm.Data``):
        a mapping with the keys of
        :data:`~markov_migration.core.layout.PANEL_FIELDS`, a sequence of
        the seven in that order, or an object with those attributes (e.g.
        :class:`markov_migration.inputs.likelihood_arrays.LikelihoodData`).

    Returns
    -------
    TensorVariable
        The float64 scalar log-likelihood; its gradient with respect to ``Q``
        reuses the Op's second output.

    Examples
    --------
    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> Q = pt.tensor3("Q")
    >>> data = dict(piece_q=[0], piece_t=[1.0], row_ptr=[0, 1, 2], row_piece=[0, 0],
    ...             row_from=[0, 0], row_to=[0, 1], row_count=[30.0, 5.0])
    >>> ll = panel_loglik(Q, {k: np.asarray(v) for k, v in data.items()})
    >>> q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
    >>> round(float(ll.eval({Q: q})), 6)
    -14.469276
    """
    Q = pt.as_tensor_variable(Q)
    if Q.type.ndim == 2:
        Q = Q[None, :, :]
    if isinstance(data, Mapping):
        values = [data[name] for name in PANEL_FIELDS]
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if len(data) != len(PANEL_FIELDS):
            raise ValueError(f"data must hold {len(PANEL_FIELDS)} arrays {PANEL_FIELDS}")
        values = list(data)
    else:
        values = [getattr(data, name) for name in PANEL_FIELDS]
    return panel_loglik_op(Q, *values)[0]


# --------------------------------------------------------------------------
# numba backend
# --------------------------------------------------------------------------


# The numba cache key: PyTensor reuses a cached compiled graph whenever the keys
# of all its Ops match, so the key must change whenever the code it runs does.
_CACHE_KEY = (
    "markov_migration.PanelLogLik:"
    + hashlib.sha256((KERNEL_HASH + Path(__file__).read_text()).encode()).hexdigest()
)

# Jitted callers of the kernel need its symbol at link time, including when a
# compiled graph is loaded from PyTensor's cache.
ensure_native_kernel()


@register_funcify_and_cache_key(PanelLogLik)
def _numba_funcify_panel_loglik(op, node=None, **kwargs):
    kernel = native_loglik_and_grad()

    @numba_njit
    def panel_loglik_numba(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
        total, dQ = kernel(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
        return np.array(total), dQ

    return panel_loglik_numba, _CACHE_KEY
