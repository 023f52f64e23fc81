"""ALTI, Aggregation of Layer-wise Token-to-token Interactions (Ferrando et al. 2022)."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ._base import (LayerInternals, Maps, Mask, Tokens, collect_internals, is_post_ln, mask_maps,
                    prepare, rollout as _rollout, row_normalize, unbatch)
from .norms import _decompose


def alti_maps(layers: list[LayerInternals], mask: Bool[Tensor, "batch pos"], post: bool,
              rollout: bool = True) -> Float[Tensor, "batch layer pos pos"]:
    """ALTI ``[B, L, T, T]`` from recorded internals (see :func:`alti`)."""
    mats = []
    for it in layers:
        dec = _decompose(it, post)
        y = dec.output[:, :, None, :]                                # [B, T, 1, d]
        dist = (y - dec.per_source).abs().sum(-1)                    # [B, T, T]
        c = (y.abs().sum(-1) - dist).clamp_min(0)
        mats.append(row_normalize(mask_maps(c[:, None], mask)[:, 0]))
    out = torch.stack(mats, dim=1)
    return _rollout(out) if rollout else out


def alti(model: Any, tokens: Tokens, rollout: bool = True,
         attention_mask: Mask = None, token_type_ids: Mask = None) -> Maps:
    """ALTI contributions, ``[L, T, T]`` (``[B, L, T, T]`` for a batch).

    Per layer, with ``T_i(x_j)`` the exact per-source pieces of the attention block (heads,
    output projection, residual, and for post-LN models LN1 as a linear map at its observed
    scale; see :mod:`.norms`) and ``y_i`` the block's real output:

        d_ij = ||y_i - T_i(x_j)||_1,   c_ij = max(0, ||y_i||_1 - d_ij) / sum_k max(0, ||y_i||_1 - d_ik)

    (a source contributes in proportion to how close its piece is to the output, in L1).
    With ``rollout`` the layer matrices are multiplied, ``R_l = C_l R_{l-1}`` (no identity is
    added: the residual is inside ``C``), giving input-token contributions. Rows sum to 1.
    For pre-LN decoders (GPT-2) ``y_i`` is the residual stream after attention (as in
    Ferrando et al. 2023's decoder version); for BERT it is LN1's output. The pieces use the
    original weights: ``T_i(x_j)`` contains ``alpha_ij b_V W_O`` (Ferrando et al. 2022, eq. 6-8).
    """
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    layers = collect_internals(model, inp, last_ffn=False)
    return unbatch(alti_maps(layers, inp.mask, is_post_ln(model), rollout), inp.batched)
