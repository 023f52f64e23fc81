"""Checks for the exercises of ``notebooks/05_circuits_high_level.ipynb``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..grading import CheckResult, check_value, compare_to_reference, report

__all__ = ["check_circuit_metric", "check_edge_score", "check_interchange_input",
           "check_smallest_circuit", "check_top_n_edges", "reference_edge_score",
           "reference_interchange_input", "reference_smallest_circuit", "reference_top_n_edges"]


def reference_edge_score(delta: Tensor, grad: Tensor) -> Tensor:
    """EAP score of one edge: ``Σ_{b,t} Δ_s[b,t] · ∂M/∂in_r[b,t]`` for ``[B, T, D]`` inputs."""
    return (delta * grad).sum()


def check_edge_score(student_fn: Callable) -> CheckResult:
    """``student_fn(delta [B,T,D], grad [B,T,D]) -> scalar`` on random tensors."""

    def make_inputs(gen: torch.Generator):
        B, T, D = (int(x) for x in torch.randint(2, 7, (3,), generator=gen))
        return (torch.randn(B, T, D, generator=gen), torch.randn(B, T, D, generator=gen))

    return report(compare_to_reference("edge_score", student_fn, reference_edge_score,
                                       make_inputs, atol=1e-4))


def reference_top_n_edges(scores: Tensor, real_edges: Tensor, n: int) -> Tensor:
    """BoolTensor like ``scores``: the ``n`` real edges of largest ``|score|``."""
    key = scores.abs().masked_fill(~real_edges, float("-inf")).flatten()
    mask = torch.zeros_like(key, dtype=torch.bool)
    mask[key.topk(n).indices] = True
    return mask.reshape(scores.shape)


def check_top_n_edges(student_fn: Callable) -> CheckResult:
    """``student_fn(scores [S,R], real_edges bool [S,R], n) -> bool [S,R]`` on random scores
    (some non-edges carry large scores, which must be ignored)."""

    def make_inputs(gen: torch.Generator):
        S, R = (int(x) for x in torch.randint(4, 12, (2,), generator=gen))
        real = torch.rand(S, R, generator=gen) < 0.6
        real[0, 0] = True
        scores = torch.randn(S, R, generator=gen) * 3
        n = int(torch.randint(1, int(real.sum()) + 1, (1,), generator=gen))
        return (scores, real, n)

    return report(compare_to_reference("top_n_edges", student_fn, reference_top_n_edges,
                                       make_inputs))


def reference_interchange_input(current_input: Tensor, sender_diff: Tensor,
                                in_circuit: Tensor) -> Tensor:
    """Receiver input when only the edges ``in_circuit`` keep their value:
    ``in + Σ_{s not in circuit} (out_s(corrupted) - out_s(current))``.

    Shapes: current_input [B,T,D]; sender_diff [B,T,S,D] (corrupted - current);
    in_circuit bool [S]."""
    removed = (~in_circuit).to(sender_diff.dtype)
    return current_input + torch.einsum("btsd,s->btd", sender_diff, removed)


def check_interchange_input(student_fn: Callable) -> CheckResult:
    """``student_fn(current_input, sender_diff, in_circuit) -> [B,T,D]`` on random tensors."""

    def make_inputs(gen: torch.Generator):
        B, T, S, D = (int(x) for x in torch.randint(2, 6, (4,), generator=gen))
        return (torch.randn(B, T, D, generator=gen), torch.randn(B, T, S, D, generator=gen),
                torch.rand(S, generator=gen) < 0.5)

    return report(compare_to_reference("interchange_input", student_fn,
                                       reference_interchange_input, make_inputs, atol=1e-5))


def check_circuit_metric(value: float, expected: float) -> CheckResult:
    """The student's evaluated circuit metric against the library's evaluation."""
    return report(check_value("circuit_metric", value, expected, atol=1e-4, rtol=1e-3))


def reference_smallest_circuit(n_edges: Tensor, faithfulness: Tensor, target: float) -> int | None:
    """Fewest edges among the measured points whose faithfulness reaches ``target`` (None if
    none does)."""
    ok = faithfulness >= target
    return int(n_edges[ok].min()) if bool(ok.any()) else None


def check_smallest_circuit(student_fn: Callable) -> CheckResult:
    """``student_fn(n_edges [P], faithfulness [P], target) -> int | None`` on random curves
    (not necessarily monotone, not necessarily sorted, sometimes never reaching the target)."""

    def make_inputs(gen: torch.Generator):
        P = int(torch.randint(3, 12, (1,), generator=gen))
        n = torch.randperm(200, generator=gen)[:P] + 1
        faith = torch.rand(P, generator=gen) * 1.1
        target = float(torch.rand(1, generator=gen)) * 1.2
        return (n, faith, target)

    return report(compare_to_reference("smallest_circuit", student_fn, reference_smallest_circuit,
                                       make_inputs, n_trials=6))
