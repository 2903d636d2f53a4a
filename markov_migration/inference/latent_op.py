"""PyTensor Op for the forward-algorithm (hidden-Markov) log-likelihood, with a numba implementation.

Layer 3. :class:`ForwardLogLik` wraps
:func:`markov_migration.core.forward_kernel.forward_kernel`: one call returns
the log-likelihood of aggregated histories and its gradient with respect to
the generators ``Q``, the initial weights ``pi`` and the emission table ``B``
(the gradient graph reuses the Op's extra outputs). Mirrors
:mod:`markov_migration.inference.likelihood_op`: the Op is registered with
PyTensor's numba backend, so ``nutpie.compile_pymc_model(model,
backend="numba")`` compiles the log-density and its gradient without an
object-mode fallback.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

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

from markov_migration.core import expm as _expm
from markov_migration.core import forward_adjoint as _adjoint_module
from markov_migration.core import forward_kernel as _kernel_module
from markov_migration.core import forward_tree as _tree_module
from markov_migration.core import spectral as _spectral_module
from markov_migration.core import spectral_real as _spectral_real_module
from markov_migration.core.forward import FORWARD_FIELDS
from markov_migration.core.forward_kernel import forward_kernel

__all__ = ["ForwardLogLik", "forward_loglik"]

_INT_FIELDS = ("piece_q", "node_parent", "node_piece", "node_type", "node_code")


class ForwardLogLik(Op):
    """Forward-algorithm log-likelihood and its gradient.

    Inputs: ``Q`` float64 (M, K, K), ``pi`` float64 (K,), ``B`` float64
    (n_codes, K) and the seven arrays of
    :data:`markov_migration.core.forward.FORWARD_FIELDS`. Outputs: the
    log-likelihood (scalar) and ``dQ``, ``dpi``, ``dB`` (shapes of the inputs).
    Every entry of ``Q``, ``pi`` and ``B`` is an independent input (the caller
    builds them from parameters; PyTensor applies the chain rule).

    Parameters
    ----------
    condition_first : bool
        Divide each history's likelihood by the probability of its first
        record (see :mod:`markov_migration.core.forward`).
    """

    __props__ = ("condition_first",)

    def __init__(self, condition_first: bool = False) -> None:
        self.condition_first = bool(condition_first)

    def make_node(self, Q, pi, B, *histories):
        """Build the Apply node; casts inputs to float64 / int64."""
        if len(histories) != len(FORWARD_FIELDS):
            raise TypeError(f"expected the {len(FORWARD_FIELDS)} arrays {FORWARD_FIELDS}")
        Q, pi, B = (pt.cast(pt.as_tensor_variable(v), "float64") for v in (Q, pi, B))
        for name, var, ndim in (("Q", Q, 3), ("pi", pi, 1), ("B", B, 2)):
            if var.type.ndim != ndim:
                raise TypeError(f"{name} must have {ndim} dimensions, got {var.type.ndim}")
        data = []
        for name, value in zip(FORWARD_FIELDS, histories, strict=True):
            var = pt.as_tensor_variable(value)
            if var.type.ndim != 1:
                raise TypeError(f"{name} must be a vector, got ndim={var.type.ndim}")
            data.append(pt.cast(var, "int64" if name in _INT_FIELDS else "float64"))
        outputs = [pt.scalar(dtype="float64"), Q.type(), pi.type(), B.type()]
        return Apply(self, [Q, pi, B, *data], outputs)

    def perform(self, node, inputs, output_storage):
        """Evaluate with the numba kernel (Python and C backends)."""
        Q, pi, B, *data = (np.ascontiguousarray(a) for a in inputs)
        total, dQ, dB, dpi = forward_kernel(Q, pi, B, *data, self.condition_first, True)
        output_storage[0][0] = np.asarray(total, dtype=np.float64)
        output_storage[1][0] = dQ
        output_storage[2][0] = dpi
        output_storage[3][0] = dB

    def infer_shape(self, node, input_shapes):
        """Scalar log-likelihood and gradients shaped like Q, pi and B."""
        return [(), input_shapes[0], input_shapes[1], input_shapes[2]]

    def connection_pattern(self, node):
        """Q, pi, B and the float data reach every output; integer inputs reach none."""
        names = ("Q", "pi", "B", *FORWARD_FIELDS)
        return [[name not in _INT_FIELDS] * 4 for name in names]

    def pullback(self, inputs, outputs, cotangents):
        """Vector-Jacobian product: ``cotangent * (dQ, dpi, dB)``."""
        _, *grads_out = outputs
        g_loglik, *g_rest = cotangents
        grads = []
        for i, (var, d) in enumerate(zip(inputs[:3], grads_out, strict=True)):
            if not all(isinstance(g.type, DisconnectedType) for g in g_rest):
                grads.append(grad_not_implemented(self, i, var, "no second derivatives"))
            elif isinstance(g_loglik.type, DisconnectedType):
                grads.append(disconnected_type())
            else:
                grads.append(g_loglik * d)
        for i, (name, var) in enumerate(zip(FORWARD_FIELDS, inputs[3:], strict=True), start=3):
            if name in _INT_FIELDS:
                grads.append(disconnected_type())
            else:
                grads.append(grad_not_implemented(self, i, var, f"no gradient for {name}"))
        return grads


def forward_loglik(Q, pi, B, histories, condition_first: bool = False) -> pt.TensorVariable:
    """Symbolic forward-algorithm log-likelihood.

    Parameters
    ----------
    Q : TensorVariable, shape (M, K, K) or (K, K)
        Generator(s) on the hidden state space (per unit of the model's time).
    pi : TensorVariable, shape (K,)
        Initial weights of the hidden states.
    B : TensorVariable, shape (n_codes, K)
        Emission table (probability of each record given each hidden state).
    histories : sequence
        The seven arrays of :data:`~markov_migration.core.forward.FORWARD_FIELDS`
        (e.g. a :class:`~markov_migration.core.forward.Histories`).
    condition_first : bool
        See :class:`ForwardLogLik`.

    Returns
    -------
    TensorVariable
        The scalar log-likelihood.
    """
    Q = pt.as_tensor_variable(Q)
    if Q.type.ndim == 2:
        Q = Q[None, :, :]
    return ForwardLogLik(condition_first)(Q, pi, B, *histories)[0]


# --------------------------------------------------------------------------
# numba backend
# --------------------------------------------------------------------------

#: The files whose numba code the Op's compiled function holds: the forward kernel,
#: its adjoint, the eigen-basis machinery and the Pade fallback it calls (an edit to
#: any of them must not leave PyTensor's cached function stale), and this file.
_SOURCES = tuple(
    Path(inspect.getfile(m))
    for m in (
        _kernel_module,
        _tree_module,
        _adjoint_module,
        _spectral_module,
        _spectral_real_module,
        _expm,
    )
) + (Path(__file__),)
_CACHE_KEY = (
    "markov_migration.ForwardLogLik:"
    + hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()
)


@register_funcify_and_cache_key(ForwardLogLik)
def _numba_funcify_forward_loglik(op, node=None, **kwargs):
    condition_first = op.condition_first

    @numba_njit
    def forward_loglik_numba(Q, pi, B, piece_q, piece_t, parent, piece, kind, code, count):
        total, dQ, dB, dpi = forward_kernel(
            Q, pi, B, piece_q, piece_t, parent, piece, kind, code, count, condition_first, True
        )
        return np.array(total), dQ, dpi, dB

    return forward_loglik_numba, f"{_CACHE_KEY}:{condition_first}"
