"""Value Zeroing (Mohebbi et al. 2023), batched from each layer's input.

For layer ``l`` and source ``j``: set token ``j``'s whole value vector to zero in every head of
layer ``l``, ``v^h_j = u_j W_V^h + b_V^h -> 0`` (the value bias too; the attention weights are
untouched: they depend on queries and keys only), recompute layer ``l`` from its clean input,
and compare each token's new layer output ``x~_i^(-j)`` with the original ``x~_i``:

    VZ_ij = 1 - cos(x~_i^(-j), x~_i),   then each row i is normalised to sum to 1.

Layers ``0..l-1`` do not depend on layer ``l``'s values, so every variant starts from the clean
hidden state at layer ``l``'s input (one clean pass records them all). Zeroing ``v_j`` leaves
the attention weights alone and the attention output is linear in the values, so the zeroed
layer's attention output is exactly the clean one minus token ``j``'s part,
``Attn^(-j)_i = Attn_i - sum_h alpha^h_ij (v^h_j W_O^h)``; the rest of the layer (residual,
LayerNorms, FFN) is then run on all ``B x T`` variants (sentence, zeroed source) as one batch,
``chunk_size`` variants at a time, with the original (unfolded) weights of :mod:`._base`.
Computed in float64 by default (``dtype``): ``1 - cos`` of nearly parallel vectors is small,
and float32 noise would otherwise show in the normalised scores at the 1e-6 level.
:func:`value_zeroing_loop` is the straightforward reference: one call of the Hugging Face
layer module per (sentence, layer, source), the value zeroed by a forward hook on its value
projection, also starting from layer ``l``'s input.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import TutorialError

from ._base import (after_attention, as_tokens, collect_internals, is_post_ln, mask_maps,
                    original_hf_model, position_ids, rollout as _rollout, row_normalize,
                    run_layer, unbatch)


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - cos(a, b)`` along the last dim, computed as ``||a/|a| - b/|b|||^2 / 2`` in float64:
    the direct form cancels catastrophically when the vectors are nearly parallel, as they are
    when zeroing one value vector barely moves a token."""
    a, b = a.double(), b.double()
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (0.5 * (a - b).pow(2).sum(-1)).float()


def value_zeroed_outputs(model: Any, tokens: Tensor, variants: Sequence[tuple[int, int, int]],
                         chunk_size: int = 256, attention_mask: Tensor | None = None) -> Tensor:
    """Layer outputs with one token's value vector zeroed, for many variants in batched calls.

    ``tokens [B, T]``; ``variants``: ``(b, layer, j)`` triples (``j = -1`` zeroes nothing).
    Returns ``[len(variants), T, d_model]``: the output of block ``layer`` for sentence ``b``
    when ``v^h_j`` (with ``b_V``) of that layer is 0 in every head, computed from the clean input
    of block ``layer``.
    """
    toks, _, mask = as_tokens(model, tokens, attention_mask)
    B, T = toks.shape
    L = model.cfg.n_layers
    for b, l, j in variants:
        if not (0 <= b < B and 0 <= l < L and -1 <= j < T):
            raise TutorialError(f"variant {(b, l, j)} out of range for {B} sentences, {L} layers, "
                             f"{T} positions")
    if chunk_size < 1:
        raise TutorialError(f"chunk_size must be positive, got {chunk_size}")
    var = torch.tensor(list(variants), dtype=torch.long, device=toks.device).reshape(-1, 3)
    layers = collect_internals(model, toks, mask)
    post = is_post_ln(model)
    out = torch.empty(len(var), T, model.cfg.d_model, device=toks.device)
    with torch.no_grad():
        for l in sorted(set(var[:, 1].tolist())):
            it = layers[l]
            idx = (var[:, 1] == l).nonzero().squeeze(-1)
            for start in range(0, len(idx), chunk_size):
                rows = idx[start:start + chunk_size]
                vb, vj = var[rows, 0], var[rows, 2]
                out[rows] = run_layer(it.weights, it.resid_pre[vb], mask[vb], post,
                                      zero_value_at=vj).layer_out
    return out


def value_zeroing(model: Any, tokens: Tensor | str, rollout: bool = False,
                  chunk_size: int | None = None, attention_mask: Tensor | None = None,
                  dtype: torch.dtype = torch.float64) -> Tensor:
    """Value Zeroing scores, ``[L, T, T]`` (``[B, L, T, T]`` for a batch), rows summing to 1.

    ``VZ^l_ij = 1 - cos(x~^l_i(-j), x~^l_i)`` normalised over ``j`` (module docstring; Mohebbi
    et al. 2023, eq. 2-3), ``x~^l_i(-j)`` the output of layer ``l`` recomputed from its clean
    input with ``v^h_j = x_j W_V^h + b_V^h`` set to 0 in every head. ``chunk_size``: zeroed
    sources per batched call (default 32 for an encoder; 4 for a causal decoder, whose chunk
    starting at source ``s`` only recomputes queries ``i >= s``). In a causal decoder zeroing a later token cannot change an earlier
    one, so entries with ``j > i`` are exactly 0; pad rows and columns are 0. With ``rollout``,
    ``R_l = VZ_l R_{l-1}`` (no identity: the residual is inside the measured output).
    """
    if chunk_size is not None and chunk_size < 1:
        raise TutorialError(f"chunk_size must be positive, got {chunk_size}")
    toks, batched, mask = as_tokens(model, tokens, attention_mask)
    B, T = toks.shape
    post = is_post_ln(model)
    chunk_size = chunk_size or (32 if post else 4)
    layers = collect_internals(model, toks, mask, dtype=dtype)
    scores = torch.zeros(B, len(layers), T, T, device=toks.device)
    with torch.no_grad():
        for l, it in enumerate(layers):
            # z[b, i, j] = sum_h alpha^h_ij v^h_j W_O^h: source j's part of query i's attention
            f = torch.einsum("bjhk,hkd->bhjd", it.values, it.W_O)
            resid = it.ln1_in if post else it.attn_block_out        # x + Attn(.)  [B, T, d]
            for start in range(0, T, chunk_size):
                js = torch.arange(start, min(T, start + chunk_size), device=toks.device)
                # causal: queries i < j do not see j, so only rows i >= start can change
                i0 = 0 if post else start
                z = torch.einsum("bhij,bhjd->bjid", it.pattern[:, :, i0:, js], f[:, :, js])
                y = after_attention(it.weights, resid[:, None, i0:] - z, post)  # [B, n_j, T-i0, d]
                dist = _cosine_distance(y, it.layer_out[:, None, i0:])          # [B, n_j, T-i0]
                scores[:, l, i0:, js] = dist.transpose(1, 2).float()
    if not post:
        scores = scores.tril()
    scores = row_normalize(mask_maps(scores, mask))
    out = _rollout(scores) if rollout else scores
    return unbatch(mask_maps(out, mask), batched)


def _hf_layers(raw: Any, post: bool) -> list[Any]:
    return list(raw.encoder.layer) if post else list(raw.h)


def value_zeroing_loop(model: Any, tokens: Tensor | str,
                       attention_mask: Tensor | None = None,
                       dtype: torch.dtype = torch.float64) -> Tensor:
    """Reference implementation (the toolkit's shape): for every (sentence, layer ``l``, source
    ``j``) one call of the Hugging Face block module of layer ``l`` on the clean hidden state at
    its input, with a forward hook on the value projection that sets token ``j``'s value vector
    (bias included) to 0. Pad tokens are dropped per sentence first. Same output as
    :func:`value_zeroing` (without rollout); slow, for tests and the benchmark. ``dtype``: the
    precision of the HF model copy it runs (float64 by default, as :func:`value_zeroing`)."""
    toks, batched, mask = as_tokens(model, tokens, attention_mask)
    B, T = toks.shape
    post = is_post_ln(model)
    raw = original_hf_model(model, dtype)
    d = raw.config.hidden_size
    blocks = _hf_layers(raw, post)
    L = len(blocks)
    scores = torch.zeros(B, L, T, T, device=toks.device)
    for b in range(B):
        real = mask[b].nonzero().squeeze(-1)
        t = toks[b, real][None]
        n = t.shape[1]
        with torch.no_grad():
            kw = {"position_ids": position_ids(torch.ones_like(t))}
            if post:
                kw["token_type_ids"] = torch.zeros_like(t)
            hidden = raw(input_ids=t, output_hidden_states=True, **kw).hidden_states
        ext = None
        if not post:  # the block expects the causal mask as an additive [1, 1, n, n] tensor
            ext = torch.full((n, n), torch.finfo(hidden[0].dtype).min, dtype=hidden[0].dtype,
                             device=t.device).triu(1)[None, None]
        for l, blk in enumerate(blocks):
            x = hidden[l]
            proj = blk.attention.self.value if post else blk.attn.c_attn

            def call() -> Tensor:
                with torch.no_grad():
                    y = blk(x, attention_mask=ext)
                return y[0] if isinstance(y, tuple) else y

            clean = call()
            for j in range(n):
                def zero_v(module: Any, inputs: Any, out: Tensor, j: int = j) -> Tensor:
                    out = out.clone()
                    if post:
                        out[:, j] = 0.0
                    else:
                        out[:, j, 2 * d:] = 0.0
                    return out

                handle = proj.register_forward_hook(zero_v)
                try:
                    y = call()
                finally:
                    handle.remove()
                scores[b, l, real[:, None], real[j]] = _cosine_distance(y[0], clean[0]).float()[:, None]
    if not post:
        scores = scores.tril()
    return unbatch(row_normalize(mask_maps(scores, mask)), batched)


__all__ = ["value_zeroed_outputs", "value_zeroing", "value_zeroing_loop"]
