"""A small, deterministic change of float rounding, as another CPU (or a GPU) would make.

Two honest machines compute the same float32 network with different summation orders (SIMD
width, blocking, fused multiply-add), so their results differ by a few units in the last place
of every matrix product: ~1e-7 relative per operation, ~1e-6 to 1e-5 after a few layers. Changing
the thread count does not reproduce it here (the kernels split work, not reductions), so the
notebooks' checked outputs are tested under a simulated other machine instead:

* ``float64``: every matrix product, contraction, attention, softmax and LayerNorm is computed in
  float64 and rounded back to float32. The result is the correctly rounded value of each
  operation, where float32 accumulation is off by its own rounding errors: the same size of
  change another summation order makes.
* ``ulp``: the same operations in float32, their outputs then moved by one part in 2^22
  (~2.4e-7) with a sign that alternates along the last axis: a pure, fixed rounding change.
  ``ulp-`` starts the alternation with the other sign; ``ulp:17`` (or ``ulp-:17``) moves by one
  part in 2^17 (~7.6e-6) instead, a diagnostic for numbers a 1e-5 change could flip.

:func:`install` pushes a ``TorchFunctionMode`` that stays on for the rest of the process (the
kernel that executes a notebook); ``tests/test_numerics_perturbation.py`` loads it through an
IPython startup file so that only the notebook kernels are perturbed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

MODES = ("ulp", "float64")

#: The operations whose rounding depends on the machine: reductions over a contracted axis.
_PERTURBED = {
    F.linear, F.scaled_dot_product_attention, F.softmax, F.log_softmax, F.layer_norm,
    torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm, torch.einsum, torch.tensordot,
    torch.softmax, torch.log_softmax,
    torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm,
    torch.Tensor.bmm, torch.Tensor.addmm, torch.Tensor.baddbmm, torch.Tensor.softmax,
    torch.Tensor.log_softmax,
}


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _to64(t: torch.Tensor) -> torch.Tensor:
    return t.double() if t.dtype == torch.float32 else t


def _to32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype == torch.float64 else t


def _nudger(first_sign: float, exponent: int):
    def nudge(t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float32 or t.ndim == 0 or t.shape[-1] == 0:
            return t
        sign = 1.0 - 2.0 * (torch.arange(t.shape[-1], device=t.device) % 2).to(t.dtype)
        return t * (1.0 + first_sign * sign * 2.0**-exponent)
    return nudge


def parse_mode(mode: str) -> tuple[str, float, int]:
    """``(kind, first_sign, exponent)`` of a mode name (see the module)."""
    kind, _, exponent = mode.partition(":")
    if kind not in ("float64", "ulp", "ulp-") or (exponent and (kind == "float64"
                                                                or not exponent.isdigit())):
        raise ValueError(f"unknown perturbation {mode!r}: float64, ulp, ulp- or ulp:N / ulp-:N")
    return kind.rstrip("-"), (-1.0 if kind == "ulp-" else 1.0), int(exponent or 22)


class PerturbedRounding(TorchFunctionMode):
    """Recompute the machine-dependent operations with another rounding (see the module)."""

    def __init__(self, mode: str = "float64"):
        super().__init__()
        self.mode, sign, exponent = parse_mode(mode)
        self._nudge = _nudger(sign, exponent)
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _PERTURBED:
            return func(*args, **kwargs)
        self.calls += 1
        if self.mode == "ulp":
            return _map(func(*args, **kwargs), self._nudge)
        has32 = any(isinstance(t, torch.Tensor) and t.dtype == torch.float32
                    for t in (*args, *kwargs.values()))
        if not has32 or kwargs.get("dtype") is not None:
            return func(*args, **kwargs)
        # einsum(equation, *operands) and einsum(equation, [operands]) both map through _map
        return _map(func(*_map(args, _to64), **_map(kwargs, _to64)), _to32)


_ACTIVE: PerturbedRounding | None = None


def install(mode: str = "float64") -> PerturbedRounding:
    """Perturb every later operation of this process (idempotent)."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = PerturbedRounding(mode)
        _ACTIVE.__enter__()
    return _ACTIVE
