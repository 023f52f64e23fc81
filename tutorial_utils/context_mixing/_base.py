"""Shared plumbing for the context-mixing methods: input, padding and token-type validation,
one forward pass that records what every method needs, row normalisation and rollout.

The weights. Every method computes with the model's weights *in memory* (so an in-place edit or
:func:`tutorial_utils.input_attribution.randomized_weights` is honoured), written back in the
checkpoint's parameterisation that the papers use (value bias ``b_V`` inside the value vectors,
``W_O``/``b_O`` unfolded and uncentred, the original residual stream): see :mod:`._weights`.
Each block is re-run from those weights with the original ``W_Q, b_Q, W_K, b_K, W_V, b_V, W_O,
b_O`` and LayerNorm parameters.

Two block layouts are supported:

* ``post_ln`` — BERT/RoBERTa (encoder): ``h = LN1(x + Attn(x))``, ``y = LN2(h + FFN(h))``.
* ``pre_ln`` — GPT-2 (decoder): ``r = x + Attn(LN1(x))``, ``y = r + FFN(LN2(r))``; causal.

with ``Attn(u)_i = sum_h sum_j alpha^h_ij (u_j W_V^h + b_V^h) W_O^h + b_O``.

Padding: every method takes ``attention_mask [B, T]`` (1 = real token); without it the rule is
:func:`tutorial_utils.model_checks.padding_mask`'s, the library's one rule: an encoder's
``[PAD]`` tokens; for a decoder whose pad id is its BOS (GPT-2), a trailing run of it is right
padding, and the id anywhere else after position 0 (left padding) is refused unless
``attention_mask`` is passed. Position ids count real tokens only (left padding keeps the
unpadded positions), pad keys get attention weight 0, and every method returns exact zeros in
pad rows and pad columns: a real row equals the unpadded sentence's row.

Sentence pairs: encoder methods take ``token_type_ids [B, T]`` (segment A = 0, B = 1, as the
tokenizer returns them for a pair); without them every token is segment 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..model_checks import check_tokens, padding_mask

from ._weights import (LayerWeights, ModelWeights, is_post_ln, layout, model_weights,
                       original_hf_model)


#: Shapes of the public API (documentation; the checks below give the messages).
Tokens = str | Int[Tensor, "pos"] | Int[Tensor, "batch pos"]
Mask = Int[Tensor, "batch pos"] | Int[Tensor, "pos"] | None
Maps = Float[Tensor, "*batch layer query source"]


# --- input validation ---------------------------------------------------------------------
def as_tokens(model: Any, tokens: Tokens,
              attention_mask: Mask = None) -> tuple[Tensor, bool, Tensor]:
    """Validate ``tokens`` and return ``(tokens [B, T], batched, mask [B, T] bool)`` on the
    model's device.

    A string is tokenised with ``model.to_tokens`` (BOS/[CLS] prepended as the model does);
    a 1-D tensor is one sentence. The ids are checked by :func:`model_checks.check_tokens` and
    the padding is :func:`model_checks.padding_mask`'s rule (``attention_mask`` if given; else
    an encoder's ``[PAD]``, or a decoder's trailing run of its pad id). Context mixing adds one
    rule: at least 2 real tokens in every row.
    """
    if isinstance(tokens, str):
        tokens, batched = model.to_tokens(tokens), False
    else:  # a [B, T] tensor, array or list of lists is a batch; check_tokens says the rest
        ndim = getattr(tokens, "ndim", None)
        if ndim is None and isinstance(tokens, (list, tuple)):
            ndim = 2 if tokens and isinstance(tokens[0], (list, tuple)) else 1
        batched = ndim == 2
    tokens = check_tokens(model, tokens)
    if tokens.shape[1] < 2:
        raise TutorialError(f"need at least 2 tokens to measure context mixing, got {tokens.shape[1]}")
    tokens = tokens.to(model.cfg.device)
    mask = padding_mask(model, tokens, attention_mask)
    mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    if (mask.sum(1) < 2).any():
        raise TutorialError("every row needs at least 2 real (unpadded) tokens")
    return tokens, batched, mask


@dataclass
class Inputs:
    """Validated inputs: ``tokens [B, T]``, ``mask [B, T]`` (bool, real tokens), ``token_types
    [B, T]`` (long; None for a decoder), ``batched``: whether the caller passed a batch."""

    tokens: Tensor
    mask: Tensor
    token_types: Tensor | None
    batched: bool


def prepare(model: Any, tokens: Tokens, attention_mask: Mask = None,
            token_type_ids: Mask = None) -> Inputs:
    """:func:`as_tokens` plus ``token_type_ids`` (same shape as the tokens, integers in
    ``[0, type_vocab_size)``; encoders only; default all 0)."""
    if isinstance(tokens, Inputs):
        return tokens
    toks, batched, mask = as_tokens(model, tokens, attention_mask)
    types = None
    if token_type_ids is not None:
        if not is_post_ln(model):
            raise TutorialError("token_type_ids are for BERT-style encoders (sentence pairs); "
                                "a GPT-2 decoder has no token types")
        if not isinstance(token_type_ids, Tensor):
            raise TutorialError(f"token_type_ids must be a tensor, got "
                                f"{type(token_type_ids).__name__}")
        if token_type_ids.dtype in (torch.bool,) or token_type_ids.is_floating_point():
            raise TutorialError(f"token_type_ids must be integers, got dtype {token_type_ids.dtype}")
        types = token_type_ids if token_type_ids.ndim == 2 else token_type_ids.reshape(1, -1)
        if tuple(types.shape) != tuple(toks.shape):
            raise TutorialError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, tokens "
                                f"{tuple(toks.shape)}: they must match")
        n_types = model_weights(model).embed.W_type.shape[0]
        if bool(((types < 0) | (types >= n_types)).any()):
            raise TutorialError(f"token_type_ids must lie in [0, {n_types}) for this model, got "
                                f"[{int(types.min())}, {int(types.max())}]")
        types = types.long().to(toks.device)
    elif is_post_ln(model):
        types = torch.zeros_like(toks)
    return Inputs(toks, mask, types, batched)


def unbatch(x: Tensor, batched: bool) -> Tensor:
    return x if batched else x[0]


def row_normalize(m: Float[Tensor, "... source"], eps: float = 1e-12) -> Float[Tensor, "... source"]:
    """Divide every row (last dim) by its sum, so each query's scores over sources sum to 1
    (an all-zero row, e.g. a pad position's, stays zero)."""
    return m / m.sum(-1, keepdim=True).clamp_min(eps)


def mask_maps(maps: Tensor, mask: Tensor) -> Tensor:
    """Zero the pad rows and pad columns of ``maps [B, L, (H,) T, T]`` (``mask [B, T]``);
    ``maps`` itself when there is no pad."""
    if bool(mask.all()):
        return maps
    m = mask.to(maps.dtype)
    shape = (m.shape[0],) + (1,) * (maps.ndim - 3)
    return maps * m.reshape(*shape, -1, 1) * m.reshape(*shape, 1, -1)


def rollout(per_layer: Float[Tensor, "*batch layer query source"],
            add_residual: bool = False) -> Float[Tensor, "*batch layer query source"]:
    """Aggregate per-layer mixing matrices across layers (Abnar & Zuidema 2020).

    ``per_layer``: ``[..., L, T, T]`` row-stochastic matrices ``A_l`` (query x source).
    With ``add_residual`` each is first replaced by ``0.5 A_l + 0.5 I`` (row-renormalised).
    Returns ``[..., L, T, T]`` whose layer ``l`` is ``R_l = A_l R_{l-1}`` with ``R_0 = A_0``:
    how much each token's representation after layer ``l`` draws on each *input* token.
    Rows of the result sum to 1 when rows of the input do.
    """
    if per_layer.ndim < 3 or per_layer.shape[-1] != per_layer.shape[-2]:
        raise TutorialError(f"rollout needs [..., layers, T, T], got {tuple(per_layer.shape)}")
    mats = per_layer
    if add_residual:
        eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
        mats = row_normalize(0.5 * mats + 0.5 * eye)
    out = [mats[..., 0, :, :]]
    for l in range(1, mats.shape[-3]):
        out.append(mats[..., l, :, :] @ out[-1])
    return torch.stack(out, dim=-3)


# --- the weights, one layer at a time ------------------------------------------------------
def layer_weights(model: Any, dtype: torch.dtype = torch.float32) -> list[LayerWeights]:
    """:class:`LayerWeights` of every block: the weights in memory, in the checkpoint's
    parameterisation (:mod:`._weights`)."""
    return model_weights(model, dtype).layers


def linear(x: Tensor, W: Tensor) -> Tensor:
    """``x @ W`` for ``x [..., d_in]`` and ``W [d_in, d_out]`` as one 2-D matrix product (a
    batched ``matmul`` against a transposed weight view would broadcast ``W`` into a slower
    batched product)."""
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[-1])


def layer_norm(x: Tensor, ln: tuple[Tensor, Tensor, float]) -> Tensor:
    """``gamma (x - mean x) / sqrt(var x + eps) + beta`` over the last dim (biased variance)."""
    gamma, beta, eps = ln
    return torch.nn.functional.layer_norm(x, gamma.shape, gamma.to(x.dtype), beta.to(x.dtype), eps)


def position_ids(mask: Tensor) -> Tensor:
    """Positions that count real tokens only (``cumsum(mask) - 1``, 0 at pads): a left-padded
    row gets the positions of its unpadded sentence."""
    return (mask.long().cumsum(1) - 1).clamp_min(0)


def embed(model: Any, tokens: Tensor, mask: Tensor, dtype: torch.dtype = torch.float32,
          token_types: Tensor | None = None) -> Tensor:
    """The input of block 0, ``[B, T, d]``: post-LN ``LN_emb(W_E[t] + W_pos[p] + W_type[s])``
    (``token_types`` default 0), pre-LN ``W_E[t] + W_pos[p]``, positions from
    :func:`position_ids`. ``model`` may be the :class:`ModelWeights` to use."""
    e = (model_weights(model, dtype) if not isinstance(model, ModelWeights) else model).embed
    pos = position_ids(mask) + e.pos_offset
    with torch.no_grad():
        x = e.W_E[tokens] + e.W_pos[pos]
        if e.W_type is not None:
            x = x + e.W_type[torch.zeros_like(tokens) if token_types is None else token_types]
        if e.ln is not None:
            x = layer_norm(x, e.ln)
    return x


def _project(w: LayerWeights, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``q, k [B, H, T, d_head]`` and ``v [B, T, H, d_head]`` (biases included), one product."""
    B, T, _ = u.shape
    H, dh = w.W_Q.shape[1], w.W_Q.shape[2]
    qkv = linear(u, w.W_QKV).add_(w.b_QKV).view(B, T, 3, H, dh)
    return qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2]


def _pattern(w: LayerWeights, q: Tensor, k: Tensor, mask: Tensor, causal: bool) -> Tensor:
    scores = torch.matmul(q.contiguous(), k.contiguous().transpose(-1, -2)).mul_(w.scale)
    T = q.shape[2]
    if not causal and bool(mask.all()):  # nothing to mask: the plain softmax
        return scores.softmax(-1)
    allowed = mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill_(~allowed, torch.finfo(scores.dtype).min)
    return scores.softmax(-1).mul_(allowed)


def attention_pattern(w: LayerWeights, u: Tensor, mask: Tensor, causal: bool) -> Tensor:
    """``alpha^h_ij = softmax_j(scale (u_i W_Q^h + b_Q^h) . (u_j W_K^h + b_K^h))`` over real
    (and, if causal, earlier) keys: ``[B, H, T, T]``; pad keys get exactly 0."""
    q, k, _ = _project(w, u)
    return _pattern(w, q, k, mask, causal)


def value_vectors(w: LayerWeights, u: Tensor) -> Tensor:
    """``v^h_j = u_j W_V^h + b_V^h`` (value bias included): ``[B, T, H, d_head]``."""
    return _project(w, u)[2]


@dataclass
class LayerInternals:
    """What the decompositions need from one block, for a batch ``[B, T]``, all computed with
    the original (unfolded, uncentred) weights.

    Shapes: ``pattern [B, H, T, T]``; ``values [B, T, H, d_head]`` (with ``b_V``; of ``LN1(x)``
    in a pre-LN model); ``resid_pre [B, T, d]`` (block input ``x``); ``W_O [H, d_head, d]``,
    ``b_O [d]``; ``attn_block_out [B, T, d]``: the real output of the attention block with its
    residual (post-LN: ``LN1(x + Attn(x))``; pre-LN: ``x + Attn(LN1(x))``); ``layer_out [B, T,
    d]``: the block's output. ``ln1_in`` (post-LN: ``x + Attn(x)``; pre-LN: ``x``), ``ln2_in``
    (post-LN: ``h + FFN(h)``; pre-LN: ``r``), ``ln1``/``ln2`` = (gamma, beta, eps); ``ffn_in
    [B, T, d]`` (the FFN's input) and ``ffn_pre [B, T, d_ff]`` (its pre-activation);
    ``mask [B, T]`` (real tokens); ``weights``: the layer's :class:`LayerWeights`.
    ``ln2_in``, ``ffn_pre`` and ``layer_out`` are None for a block run without its FFN.
    """

    pattern: Tensor
    values: Tensor
    resid_pre: Tensor
    W_O: Tensor
    b_O: Tensor
    attn_block_out: Tensor
    layer_out: Tensor
    ln1_in: Tensor
    ln2_in: Tensor
    ln1: tuple[Tensor, Tensor, float]
    ln2: tuple[Tensor, Tensor, float]
    ffn_in: Tensor
    ffn_pre: Tensor
    mask: Tensor
    weights: LayerWeights


def run_layer(w: LayerWeights, x: Tensor, mask: Tensor, post_ln: bool,
              zero_value_at: Tensor | None = None, ffn: bool = True) -> LayerInternals:
    """One block on its input ``x [B, T, d]`` with the original weights. ``zero_value_at [B]``
    (optional): in row ``b`` the whole value vector ``v^h_j`` (``b_V`` included) of token
    ``j = zero_value_at[b]`` is set to 0 in every head (``-1``: nothing), as Value Zeroing does.
    ``ffn=False`` stops after the attention block (``ln2_in``, ``ffn_pre`` and ``layer_out``
    are then None; post-LN ``ffn_in`` is still ``LN1``'s output)."""
    u = x if post_ln else layer_norm(x, w.ln1)
    q, k, v = _project(w, u)
    pattern = _pattern(w, q, k, mask, causal=not post_ln)
    if zero_value_at is not None:
        rows = (zero_value_at >= 0).nonzero().squeeze(-1)
        if len(rows):
            v = v.clone()
            v[rows, zero_value_at[rows]] = 0.0
    B, T, H, dh = v.shape
    z = torch.matmul(pattern, v.transpose(1, 2)).transpose(1, 2).reshape(B, T, H * dh)
    attn = linear(z, w.W_O.reshape(H * dh, -1)) + w.b_O
    if not ffn:
        resid = x + attn
        h = layer_norm(resid, w.ln1) if post_ln else resid
        return LayerInternals(pattern, v, x, w.W_O, w.b_O, h, None, resid if post_ln else x,
                              None, w.ln1, w.ln2, h if post_ln else None, None, mask, w)
    return after_attention(w, x + attn, post_ln, pattern=pattern, values=v, x=x, mask=mask)


def after_attention(w: LayerWeights, resid: Tensor, post_ln: bool, **fields: Any) -> Any:
    """The rest of a block from ``resid = x + Attn(...)`` (``[..., T, d]``): post-LN
    ``y = LN2(h + FFN(h))`` with ``h = LN1(resid)``; pre-LN ``y = resid + FFN(LN2(resid))``.
    With ``fields`` (pattern, values, x, mask) returns :class:`LayerInternals`, else ``y``."""
    if post_ln:
        h = layer_norm(resid, w.ln1)
        pre = linear(h, w.W_in) + w.b_in
        ln2_in = h + linear(w.act(pre), w.W_out) + w.b_out
        y = layer_norm(ln2_in, w.ln2)
        if not fields:
            return y
        return LayerInternals(fields["pattern"], fields["values"], fields["x"], w.W_O, w.b_O, h,
                              y, resid, ln2_in, w.ln1, w.ln2, h, pre, fields["mask"], w)
    f_in = layer_norm(resid, w.ln2)
    pre = linear(f_in, w.W_in) + w.b_in
    y = resid + linear(w.act(pre), w.W_out) + w.b_out
    if not fields:
        return y
    return LayerInternals(fields["pattern"], fields["values"], fields["x"], w.W_O, w.b_O, resid,
                          y, fields["x"], resid, w.ln1, w.ln2, f_in, pre, fields["mask"], w)


def collect_internals(model: Any, tokens: Tokens | Inputs,
                      attention_mask: Mask = None,
                      dtype: torch.dtype = torch.float32,
                      token_type_ids: Mask = None,
                      last_ffn: bool = True) -> list[LayerInternals]:
    """Run every block with the model's weights (``tokens [B, T]``, ``attention_mask`` and
    ``token_type_ids`` optional as in :func:`prepare`; ``dtype`` float32 or float64) and return
    each block's :class:`LayerInternals`. ``last_ffn=False`` skips the last block's FFN (for
    the methods that read only attention blocks)."""
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    post = is_post_ln(model)
    mw = model_weights(model, dtype)
    x = embed(mw, inp.tokens, inp.mask, dtype, inp.token_types)
    out = []
    with torch.no_grad():
        for l, w in enumerate(mw.layers):
            it = run_layer(w, x, inp.mask, post, ffn=last_ffn or l < len(mw.layers) - 1)
            out.append(it)
            x = it.layer_out
    return out


def ln_linear(u: Tensor, observed_in: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """LayerNorm as a linear map at the observed scale (no bias):
    ``g(u) = gamma * (u - mean(u)) / sigma``, with ``sigma = sqrt(var(observed_in) + eps)`` per
    token. ``u [B, T, ..., d]``; ``observed_in [B, T, d]`` is the LayerNorm's real input, so
    ``sum_j g(u_j) + beta = LN(sum_j u_j)`` exactly when ``sum_j u_j = observed_in``.
    """
    sigma = (observed_in.var(-1, unbiased=False) + eps).sqrt()  # [B, T]
    extra = u.ndim - 3
    sigma = sigma.reshape(*sigma.shape, *([1] * (extra + 1)))
    return gamma * (u - u.mean(-1, keepdim=True)) / sigma


__all__ = ["Inputs", "LayerInternals", "LayerWeights", "as_tokens", "collect_internals", "embed",
           "is_post_ln", "layer_weights", "layout", "linear", "ln_linear", "mask_maps",
           "original_hf_model", "prepare", "rollout", "row_normalize", "run_layer", "unbatch"]
