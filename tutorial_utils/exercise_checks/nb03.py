"""Exercise checks for notebook 03 (low-level circuit finding).

Each check compares the student's function with a reference on fresh inputs (or recomputes a
number with the library) and returns a :class:`~tutorial_utils.grading.CheckResult`; the notebook
prints it with :func:`~tutorial_utils.grading.report`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..grading import CheckResult, check_value, compare_to_reference
from ..validation import TutorialError

__all__ = ["check_add_to_head_input", "check_component_logits", "check_head_sweep",
           "check_mean_ablate_head", "check_sva_faithfulness", "check_zero_ablate_head"]


def _ref_zero_ablate_head(z: torch.Tensor, head: int) -> torch.Tensor:
    out = z.clone()
    out[:, :, head] = 0
    return out


def _ref_mean_ablate_head(z: torch.Tensor, reference_z: torch.Tensor, head: int) -> torch.Tensor:
    out = z.clone()
    out[:, :, head] = reference_z[:, :, head].mean(0)
    return out


def _ref_add_to_head_input(x: torch.Tensor, delta: torch.Tensor, head: int) -> torch.Tensor:
    out = x.clone()
    out[:, :, head] = out[:, :, head] + delta
    return out


def _ref_component_logits(c: torch.Tensor, scale: torch.Tensor, W_U: torch.Tensor) -> torch.Tensor:
    return ((c - c.mean(-1, keepdim=True)) / scale) @ W_U


def _head_inputs(g: torch.Generator) -> tuple:
    H = int(torch.randint(2, 5, (1,), generator=g))
    return (torch.randn(3, 5, H, 8, generator=g), int(torch.randint(0, H, (1,), generator=g)))


def check_zero_ablate_head(fn: Callable) -> CheckResult:
    """``fn(z [B, T, H, d_head], head) -> z`` with head ``head`` set to 0, input unchanged."""
    def make(g):
        return _head_inputs(g)

    def student(z, head):
        before = z.clone()
        out = fn(z, head)
        if not torch.equal(z, before):
            raise TutorialError("the input was modified in place: clone it first")
        return out

    return compare_to_reference("zero_ablate_head", student, _ref_zero_ablate_head, make)


def check_mean_ablate_head(fn: Callable) -> CheckResult:
    """``fn(z, reference_z, head)``: head ``head`` replaced by its mean over the reference batch
    (per position)."""
    def make(g):
        z, head = _head_inputs(g)
        ref = torch.randn(7, *z.shape[1:], generator=g)
        return (z, ref, head)

    return compare_to_reference("mean_ablate_head", fn, _ref_mean_ablate_head, make)


def check_add_to_head_input(fn: Callable) -> CheckResult:
    """``fn(x [B, T, H, d_model], delta [B, T, d_model], head)``: delta added to one head's input."""
    def make(g):
        H = int(torch.randint(2, 5, (1,), generator=g))
        x = torch.randn(2, 4, H, 6, generator=g)
        return (x, torch.randn(2, 4, 6, generator=g), int(torch.randint(0, H, (1,), generator=g)))

    return compare_to_reference("add_to_head_input", fn, _ref_add_to_head_input, make)


def check_component_logits(fn: Callable) -> CheckResult:
    """``fn(c [B, d], scale [B, 1], W_U [d, V])``: the component read through the frozen final
    LayerNorm scale and the unembedding."""
    def make(g):
        return (torch.randn(3, 8, generator=g), torch.rand(3, 1, generator=g) + 0.5,
                torch.randn(8, 11, generator=g))

    return compare_to_reference("component_logits", fn, _ref_component_logits, make)


def check_head_sweep(fn: Callable, model: Any, dataset: Any, layer: int) -> CheckResult:
    """``fn(model, dataset, layer) -> [n_heads]``: the metric with each head of ``layer`` patched
    (all positions) from the corrupted run into the clean run."""
    from ..patching import patching_sweep

    try:
        got = fn(model, dataset, layer)
    except NotImplementedError:
        return check_value("patch_heads_of_layer", ..., None)
    except Exception as error:  # noqa: BLE001
        return CheckResult("patch_heads_of_layer", False, f"your function raised {error!r}")
    ref = patching_sweep(model, dataset, "z", ("layer", "head"), progress=False).values[layer]
    got = torch.as_tensor(got).detach().float().cpu()
    return check_value("patch_heads_of_layer", got, ref, atol=1e-4)


def check_sva_faithfulness(model: Any, dataset: Any, circuit: Any, faithfulness: Any
                           ) -> CheckResult:
    """The student's circuit must be a non-empty node set and the faithfulness they report must
    be the one the library measures for it (resample ablation)."""
    from ..faithfulness import circuit_faithfulness

    name = "sva_faithfulness"
    if circuit is Ellipsis or faithfulness is Ellipsis:
        return check_value(name, ..., None)
    try:
        circuit = list(circuit)
        if not circuit:
            return CheckResult(name, False, "the circuit is empty: list some nodes")
        ref = circuit_faithfulness(model, dataset, circuit)
    except Exception as error:  # noqa: BLE001
        return CheckResult(name, False, f"could not evaluate your circuit: {error}")
    res = check_value(name, float(faithfulness), ref.faithfulness, atol=1e-3)
    if res.passed:
        res.message = (f"faithfulness {ref.faithfulness:.3f} of your {len(circuit)}-node circuit "
                       "matches the library's")
    return res
