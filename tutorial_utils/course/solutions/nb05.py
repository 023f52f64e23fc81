"""Reference solutions of ``notebooks/05_circuits_high_level``'s exercises."""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["eap_all_edges", "faithfulness_by_size", "ig_gradient", "top_n_edges"]


def eap_all_edges(act_clean: Float[Tensor, "batch pos sender d_model"],
                  act_corrupted: Float[Tensor, "batch pos sender d_model"],
                  grads: Float[Tensor, "batch pos receiver d_model"],
                  real_edges: Bool[Tensor, "sender receiver"]) -> Float[Tensor, "sender receiver"]:
    """Exercise 3.1: edge attribution patching (Syed et al. 2023), ``score[s, r] =
    sum_{b,t} (out_s(corrupted) - out_s(clean))[b, t] . dM/d in_r[b, t]`` on the real edges, 0
    elsewhere."""
    delta = act_corrupted - act_clean                         # what each edge carries when corrupted
    scores = torch.einsum("btsd,btrd->sr", delta, grads)      # sum over examples, positions, d_model
    return scores.masked_fill(~real_edges, 0.0)               # a receiver cannot read a later sender


def ig_gradient(grad_fn: Callable[[Tensor], Tensor], x_clean: Tensor, x_corrupted: Tensor,
                steps: int) -> Tensor:
    """Exercise 4.1: the EAP-IG gradient (Hanna et al. 2024), the right Riemann sum
    ``(1/m) sum_{k=1..m} grad_fn(x' + (k/m)(x - x'))`` with ``x'`` corrupted, ``x`` clean."""
    total = 0.0
    for k in range(1, steps + 1):
        point = x_corrupted + (k / steps) * (x_clean - x_corrupted)
        total = total + grad_fn(point)
    return total / steps


def top_n_edges(scores: Float[Tensor, "sender receiver"], real_edges: Bool[Tensor, "sender receiver"],
                n: int) -> Bool[Tensor, "sender receiver"]:
    """Exercise 6.1: the mask of the ``n`` real edges of largest ``|score|``."""
    key = scores.abs().masked_fill(~real_edges, float("-inf")).flatten()
    mask = torch.zeros_like(key, dtype=torch.bool)
    mask[key.topk(n).indices] = True
    return mask.reshape(scores.shape)


def faithfulness_by_size(evaluate: Callable[[Tensor], Tensor], scores: Float[Tensor, "sender receiver"],
                         real_edges: Bool[Tensor, "sender receiver"], grid: list[int],
                         m_clean: float, m_corrupted: float) -> Float[Tensor, "grid"]:
    """Exercise 6.2: the faithfulness curve ``F(n) = (M(top-n circuit) - M(corrupted)) /
    (M(clean) - M(corrupted))`` for each ``n`` of ``grid``, every circuit evaluated in one
    batched call ``evaluate(masks [K, S, R]) -> [K]``."""
    masks = torch.stack([top_n_edges(scores, real_edges, n) for n in grid])   # [K, S, R]
    metrics = torch.as_tensor(evaluate(masks), dtype=torch.float32)           # one batched run
    return (metrics - m_corrupted) / (m_clean - m_corrupted)
