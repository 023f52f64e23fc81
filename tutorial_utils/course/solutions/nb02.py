"""Reference solutions of ``notebooks/02_context_mixing``'s exercises."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["alti_layer", "attention_norm", "cue_share_per_layer", "rollout", "run_layer",
           "value_zeroing_one_token"]


def rollout(per_layer: Float[Tensor, "layer pos pos"], add_residual: bool
            ) -> Float[Tensor, "layer pos pos"]:
    """Exercise 2.1: attention rollout (Abnar & Zuidema 2020): ``R_0 = A~_0``,
    ``R_l = A~_l R_{l-1}``, with ``A~ = 0.5 A + 0.5 I`` (rows renormalised) when
    ``add_residual``, else ``A``."""
    mats = per_layer
    if add_residual:
        mats = 0.5 * mats + 0.5 * torch.eye(mats.shape[-1])
        mats = mats / mats.sum(-1, keepdim=True)
    out = [mats[0]]
    for layer in range(1, mats.shape[0]):
        out.append(mats[layer] @ out[-1])
    return torch.stack(out)


def attention_norm(pattern: Float[Tensor, "head pos pos"], values: Float[Tensor, "pos head d_head"],
                   W_O: Float[Tensor, "head d_head d_model"],
                   resid: Float[Tensor, "pos d_model"] | None = None) -> Float[Tensor, "pos pos"]:
    """Exercise 2.2: Kobayashi et al.'s (2020) attention-norm ``||sum_h alpha^h_ij v^h_j
    W_O^h||``; with ``resid`` (RES1, Kobayashi et al. 2021) the query's own residual ``x_i`` is
    added to the piece ``j = i`` first. Not normalised."""
    f = torch.einsum("jhk,hkd->hjd", values, W_O)      # f_h(x_j)
    z = torch.einsum("hij,hjd->ijd", pattern, f)       # z_ij, summed over heads
    if resid is not None:
        idx = torch.arange(z.shape[0])
        z = z.clone()
        z[idx, idx] += resid
    return z.norm(dim=-1)


def alti_layer(pieces: Float[Tensor, "pos pos d_model"], output: Float[Tensor, "pos d_model"]
               ) -> Float[Tensor, "pos pos"]:
    """Exercise 3.1: ALTI's layer matrix (Ferrando et al. 2022),
    ``c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1)`` normalised over ``j``."""
    y = output[:, None, :]                               # [T, 1, d]
    distance = (y - pieces).abs().sum(-1)                # ||y_i - T_i(x_j)||_1, [T, T]
    c = (y.abs().sum(-1) - distance).clamp_min(0)        # proximity, clamped at 0
    return c / c.sum(-1, keepdim=True)


def run_layer(layer: Any, x: Float[Tensor, "1 pos d_model"]) -> Float[Tensor, "1 pos d_model"]:
    """Run a Hugging Face BERT layer on ``x [1, T, d]`` and return its output ``[1, T, d]``
    (recent transformers return a tensor, older ones a tuple whose first entry it is)."""
    out = layer(x)
    return out[0] if isinstance(out, tuple) else out


def value_zeroing_one_token(layer: Any, x: Float[Tensor, "1 pos d_model"], j: int
                            ) -> Float[Tensor, "pos"]:
    """Exercise 4.1: Value Zeroing (Mohebbi et al. 2023) for one token: ``1 - cos`` between
    each token's output of ``layer`` with token ``j``'s whole value vector zeroed in every head
    and its original output."""
    original = run_layer(layer, x)

    def zero_value_of_j(module: Any, inputs: Any, out: Tensor) -> Tensor:
        out = out.clone()
        out[:, j] = 0.0
        return out

    handle = layer.attention.self.value.register_forward_hook(zero_value_of_j)
    try:
        zeroed = run_layer(layer, x)
    finally:
        handle.remove()
    return 1 - torch.nn.functional.cosine_similarity(zeroed, original, dim=-1)[0]


def cue_share_per_layer(maps: Float[Tensor, "batch layer pos pos"], query: Int[Tensor, "batch"],
                        cue: Int[Tensor, "batch"], distractor: Int[Tensor, "batch"]
                        ) -> Float[Tensor, "layer"]:
    """Exercise 5.1: per layer, the share of examples whose query row gives the cue strictly
    more than the distractor."""
    b = torch.arange(maps.shape[0])
    rows = maps[b, :, query]                                  # [B, L, T]: the query's row per layer
    wins = rows[b, :, cue] > rows[b, :, distractor]           # [B, L]
    return wins.float().mean(0)
