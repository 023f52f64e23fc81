"""Raw attention weights and attention rollout (Abnar & Zuidema 2020)."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ._base import (LayerInternals, Maps, Mask, Tokens, collect_internals, mask_maps, prepare,
                    rollout, unbatch)


def attention_maps(layers: list[LayerInternals], mask: Bool[Tensor, "batch pos"],
                   per_head: bool = True) -> Float[Tensor, "batch layer *head pos pos"]:
    """The recorded attention weights, ``[B, L, H, T, T]`` (``per_head=False``: averaged over
    heads, ``[B, L, T, T]``), pad rows and columns zeroed."""
    pats = [it.pattern if per_head else it.pattern.mean(1) for it in layers]
    return mask_maps(torch.stack(pats, dim=1), mask)


def raw_attention(model: Any, tokens: Tokens, per_head: bool = False,
                  attention_mask: Mask = None,
                  token_type_ids: Mask = None) -> Maps:
    """Attention weights ``alpha^h_ij = softmax_j(q_i . k_j / sqrt(d_head))`` of every layer.

    Returns ``[L, T, T]`` (query x source; head average ``(1/H) sum_h alpha^h``), or
    ``[L, H, T, T]`` with ``per_head``; a leading batch dim when ``tokens`` is ``[B, T]``.
    Rows sum to 1 (softmax). Raw weights ignore the size of what is moved (value norms), the
    residual stream and LayerNorm: the methods after this one add those in.
    """
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    pat = attention_maps(collect_internals(model, inp, last_ffn=False), inp.mask, per_head)
    return unbatch(pat, inp.batched)


def attention_rollout(model: Any, tokens: Tokens, residual: bool = True,
                      attention_mask: Mask = None,
                      token_type_ids: Mask = None) -> Maps:
    """Attention rollout (Abnar & Zuidema 2020): ``R_l = Ã_l R_{l-1}``, ``R_0 = Ã_0``, with
    ``Ã_l = 0.5 Ā_l + 0.5 I`` (``residual=True``, the paper's account of the skip connection) or
    ``Ã_l = Ā_l`` (``residual=False``), ``Ā_l`` the head-averaged attention of layer ``l``.

    Returns ``[L, T, T]`` (``[B, L, T, T]`` for a batch): layer ``l`` says how much each token
    after layer ``l`` draws on each input token. Rows sum to 1.
    """
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    att = attention_maps(collect_internals(model, inp, last_ffn=False), inp.mask, per_head=False)
    out = rollout(att, add_residual=residual)
    return unbatch(mask_maps(out, inp.mask), inp.batched)
