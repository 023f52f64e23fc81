"""Norm-based context mixing: the exact decomposition of the attention block into per-source
vectors, attention-norm (Kobayashi et al. 2020), + residual (RES1) and + residual + LayerNorm
(RES1+LN1, Kobayashi et al. 2021), and GlobEnc (Modarressi et al. 2022).

Notation for layer ``l`` and query ``i``: ``x_j`` is source ``j``'s block input,
``f_h(x_j) = v^h_j W_O^h`` its transformed value in head ``h`` (``v^h_j`` includes ``b_V``; in a
pre-LN model it is computed from ``LN1(x_j)``), ``alpha^h_ij`` the attention weights, and

    z_ij = sum_h alpha^h_ij f_h(x_j)                     (attention part, Kobayashi 2020)
    T_i(x_j) = z_ij + [i = j] x_i                        (+ residual, pre-LN output = sum_j T + b_O)
    T_i(x_j) = g_i(z_ij + [i = j] x_i)                   (post-LN: + LN1 at the observed scale)

with ``g_i(u) = gamma (u - mean(u)) / sigma_i`` and ``sigma_i`` the standard deviation of LN1's
real input at ``i``. Then ``sum_j T_i(x_j) + bias_i`` equals the real output of the attention
block (``x + Attn(LN1(x))`` for GPT-2, ``LN1(x + Attn(x))`` for BERT) exactly, with
``bias_i = b_O`` (pre-LN) or ``g_i(b_O) + beta_1`` (post-LN).

Everything is computed with the model's *original* weights (see :mod:`._base`): ``f_h(x_j)``
contains ``b_V^h W_O^h`` as in the papers, ``W_O``/``b_O`` are not centred or folded, and ``x``
is the original residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..errors import TutorialError

from ._base import (LayerInternals, Maps, Mask, Tokens, collect_internals, is_post_ln, ln_linear,
                    mask_maps, prepare, rollout, row_normalize, unbatch)
from ..model_checks import check_layer

VARIANTS = ("attn", "res", "res_ln")


@dataclass
class AttentionDecomposition:
    """The attention block of one layer split by source token.

    ``per_source [B, T, T, d]`` (query i, source j): ``T_i(x_j)``; ``bias [B, T, d]``: what
    belongs to no source (``b_O``; post-LN: ``g_i(b_O) + beta``); ``output [B, T, d]``: the
    model's real attention-block output; ``per_source.sum(2) + bias == output``.
    ``per_head [B, H, T, T, d]``: ``alpha^h_ij f_h(x_j)`` (no residual, no LN).
    """

    per_source: Tensor
    bias: Tensor
    output: Tensor
    per_head: Tensor | None = None


def transformed_values(it: LayerInternals) -> Float[Tensor, "batch head pos d_model"]:
    """``f_h(x_j) = v^h_j W_O^h`` for every head and source: ``[B, H, T, d]``."""
    return torch.einsum("bjhk,hkd->bhjd", it.values, it.W_O)


def _mixing_vectors(it: LayerInternals) -> Tensor:
    """``z_ij = sum_h alpha^h_ij f_h(x_j)``: ``[B, T, T, d]``."""
    return torch.einsum("bhij,bhjd->bijd", it.pattern, transformed_values(it))


def _with_residual(z: Tensor, x: Tensor, inplace: bool = False) -> Tensor:
    """``z_ij + [i = j] x_i`` (``z [B, T, T, d]``, ``x [B, T, d]``)."""
    out = z if inplace else z.clone()
    out.diagonal(dim1=1, dim2=2).add_(x.transpose(1, 2))
    return out


def _sigma(observed_in: Tensor, eps: float) -> Tensor:
    """A LayerNorm's scale at its real input ``[B, T, d]``: ``sqrt(var + eps)``, ``[B, T]``."""
    return (observed_in.var(-1, unbiased=False) + eps).sqrt()


def _centre_scale_(u: Tensor, gamma: Tensor) -> Tensor:
    """``gamma (u - mean(u))`` in place (LayerNorm's linear part before the shared scale)."""
    return u.sub_(u.mean(-1, keepdim=True)).mul_(gamma)


def _decompose(it: LayerInternals, post_ln: bool, per_head: bool = False) -> AttentionDecomposition:
    z = _with_residual(_mixing_vectors(it), it.resid_pre)
    B, T, _, d = z.shape
    if post_ln:
        gamma, beta, eps = it.ln1
        pieces = ln_linear(z, it.ln1_in, gamma, eps)
        bias = ln_linear(it.b_O.expand(B, T, d), it.ln1_in, gamma, eps) + beta
    else:
        pieces, bias = z, it.b_O.expand(B, T, d).clone()
    heads = None
    if per_head:
        heads = it.pattern[..., None] * transformed_values(it)[:, :, None]
    return AttentionDecomposition(pieces, bias, it.attn_block_out, heads)


def decompose_attention_block(model: Any, tokens: Tokens, layer: int,
                              per_head: bool = False,
                              attention_mask: Mask = None,
                              token_type_ids: Mask = None) -> AttentionDecomposition:
    """Exact per-source decomposition of layer ``layer``'s attention block (module docstring);
    tensors carry a batch dim ``B`` (1 for a single sentence)."""
    layer = check_layer(model, layer)
    it = collect_internals(model, prepare(model, tokens, attention_mask, token_type_ids))[layer]
    return _decompose(it, is_post_ln(model), per_head=per_head)


def _norm_layer(it: LayerInternals, variant: str, post_ln: bool) -> Tensor:
    """``[B, T, T]`` norms of ``z_ij`` (attn), ``z_ij + [i=j] x_i`` (res) or ``g1_i`` of it
    (res_ln: ``||gamma (u - mean u)|| / sigma_i``)."""
    z = _mixing_vectors(it)
    if variant == "attn":
        return z.norm(dim=-1)
    z = _with_residual(z, it.resid_pre, inplace=True)
    if variant == "res":
        return z.norm(dim=-1)
    gamma, _, eps = it.ln1
    return _centre_scale_(z, gamma).norm(dim=-1) / _sigma(it.ln1_in, eps)[..., None]


def attention_norm_maps(layers: list[LayerInternals], mask: Bool[Tensor, "batch pos"],
                        variant: str, post: bool) -> Float[Tensor, "batch layer pos pos"]:
    """Row-normalised attention-norm maps ``[B, L, T, T]`` from recorded internals."""
    out = torch.stack([_norm_layer(it, variant, post) for it in layers], dim=1)
    return row_normalize(mask_maps(out, mask))


def attention_norm(model: Any, tokens: Tokens, variant: str = "attn",
                   per_head: bool = False, attention_mask: Mask = None,
                   token_type_ids: Mask = None) -> Maps:
    """Norm-based mixing, row-normalised, per layer: ``[L, T, T]`` (``[B, L, T, T]`` for a batch).

    * ``attn`` (Kobayashi et al. 2020): ``||sum_h alpha^h_ij f_h(x_j)||``; with ``per_head``,
      ``||alpha^h_ij f_h(x_j)|| = alpha^h_ij ||f_h(x_j)||`` as ``[L, H, T, T]``.
    * ``res`` (RES1, Kobayashi et al. 2021): ``||z_ij + [i=j] x_i||``.
    * ``res_ln`` (RES1+LN1, Kobayashi et al. 2021): ``||g_i(z_ij + [i=j] x_i)||``. Post-LN
      (BERT) only: in a pre-LN model LN1 sits before attention and is already inside ``f``.
    """
    if variant not in VARIANTS:
        raise TutorialError(f"unknown attention-norm variant {variant!r}; valid: {VARIANTS}")
    post = is_post_ln(model)
    if variant == "res_ln" and not post:
        raise TutorialError(
            "attention-norm 'res_ln' (RES1+LN1, Kobayashi et al. 2021) decomposes the LayerNorm "
            "that follows the residual in post-LN models (BERT); in a pre-LN model (GPT-2) LN1 "
            "comes before attention and is already inside f(x): use variant='res'")
    if per_head and variant != "attn":
        raise TutorialError("per_head is only defined for variant='attn' (the residual and "
                         "LayerNorm belong to no head)")
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    layers = collect_internals(model, inp, last_ffn=False)
    if not per_head:
        return unbatch(attention_norm_maps(layers, inp.mask, variant, post), inp.batched)
    out = torch.stack([it.pattern * transformed_values(it).norm(dim=-1)[:, :, None, :]
                       for it in layers], dim=1)
    return unbatch(row_normalize(mask_maps(out, inp.mask)), inp.batched)


def globenc_maps(layers: list[LayerInternals], mask: Bool[Tensor, "batch pos"],
                 post: bool) -> Float[Tensor, "batch layer pos pos"]:
    """GlobEnc ``[B, L, T, T]`` from recorded internals (see :func:`globenc`)."""
    mats = []
    for it in layers:
        if post:  # ||g2_i(g1_i(u))|| = ||gamma2 c(gamma1 c(u))|| / (sigma1_i sigma2_i)
            g1, _, e1 = it.ln1
            g2, _, e2 = it.ln2
            u = _with_residual(_mixing_vectors(it), it.resid_pre, inplace=True)
            n = _centre_scale_(_centre_scale_(u, g1), g2).norm(dim=-1)
            n = n / (_sigma(it.ln1_in, e1) * _sigma(it.ln2_in, e2))[..., None]
        else:
            n = _norm_layer(it, "res", post)
        mats.append(row_normalize(mask_maps(n[:, None], mask)[:, 0]))
    return rollout(torch.stack(mats, dim=1))


def globenc(model: Any, tokens: Tokens, attention_mask: Mask = None,
            token_type_ids: Mask = None) -> Maps:
    """GlobEnc (Modarressi et al. 2022): per-layer norms that take in the whole layer except the
    FFN, rolled out across layers.

    Post-LN (BERT): ``N_ij = ||g2_i(g1_i(z_ij + [i=j] x_i))||``, with ``g1``/``g2`` LN1/LN2 as
    linear maps at their observed scales (LN2's scale comes from its real input, FFN included).
    Pre-LN (GPT-2, our adaptation): no LayerNorm follows the residual, so ``N`` is RES1,
    ``||z_ij + [i=j] x_i||``. Each layer's ``N`` is row-normalised, then ``R_l = N_l R_{l-1}``
    (no identity is added: the residual is already inside ``N``).
    Returns ``[L, T, T]`` (``[B, L, T, T]``), rows summing to 1.
    """
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    layers = collect_internals(model, inp)
    return unbatch(globenc_maps(layers, inp.mask, is_post_ln(model)), inp.batched)
