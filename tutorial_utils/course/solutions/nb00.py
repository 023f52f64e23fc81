"""Reference solutions of ``notebooks/00_primer``'s exercises."""

from __future__ import annotations
from ...names import hook_name

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["induction_score", "residual_sum"]


def residual_sum(cache: Any, n_layers: int) -> Float[Tensor, "batch pos d_model"]:
    """Exercise 2.1: ``x_L = x_0 + sum_l attn_out_l + sum_l mlp_out_l`` from a run's cache, with
    ``x_0`` the token plus the position embedding (the residual stream is a sum; Elhage et al.
    2021)."""
    total = cache[hook_name("embed")] + cache[hook_name("pos_embed")]
    for layer in range(n_layers):
        total = total + cache[hook_name("attn_out", layer)] + cache[hook_name("mlp_out", layer)]
    return total


def induction_score(patterns: Float[Tensor, "batch head query key"], seq_len: int
                    ) -> Float[Tensor, "head"]:
    """Exercise 4.1: on ``BOS + r + r`` (``len(r) = seq_len``), the attention from each query
    ``q`` of the second copy to key ``q - seq_len + 1``, averaged over those queries and the
    batch (Olsson et al. 2022)."""
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len + 1].mean(dim=(-3, -1))
