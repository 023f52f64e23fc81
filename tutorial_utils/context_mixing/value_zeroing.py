"""Value Zeroing (Mohebbi et al. 2023), batched from each layer's input.

For layer ``l`` and source ``j``: set token ``j``'s whole value vector to zero in every head of
layer ``l``, ``v^h_j = u_j W_V^h + b_V^h -> 0`` (the value bias too; the attention weights are
untouched: they depend on queries and keys only), recompute layer ``l`` from its clean input,
and compare each token's new layer output ``x~_i^(-j)`` with the original ``x~_i``:

    VZ_ij = 1 - cos(x~_i^(-j), x~_i),   then each row i is normalised to sum to 1.

Layers ``0..l-1`` do not depend on layer ``l``'s values, so every variant starts from the clean
hidden state at layer ``l``'s input (one clean pass records them all). Batching: for layer ``l``
the ``B x T`` variants (sentence, zeroed source) are the rows of one batched call of the layer
alone (chunked to bound memory), with the original (unfolded) weights of :mod:`._base`.
:func:`value_zeroing_loop` is the straightforward reference: one call of the Hugging Face
layer module per (sentence, layer, source), the value zeroed by a forward hook on its value
projection, also starting from layer ``l``'s input.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ._base import (as_tokens, collect_internals, is_post_ln, mask_maps,
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
            raise ValueError(f"variant {(b, l, j)} out of range for {B} sentences, {L} layers, "
                             f"{T} positions")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
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
                  chunk_size: int = 256, attention_mask: Tensor | None = None) -> Tensor:
    """Value Zeroing scores, ``[L, T, T]`` (``[B, L, T, T]`` for a batch), rows summing to 1.

    ``VZ^l_ij = 1 - cos(x~^l_i(-j), x~^l_i)`` normalised over ``j`` (module docstring; Mohebbi
    et al. 2023, eq. 2-3). For each layer the ``B * T`` variants run in batched calls of that
    layer alone, ``chunk_size`` rows at a time, from the layer's clean input. In a causal decoder
    zeroing a later token cannot change an earlier one, so entries with ``j > i`` are exactly 0;
    pad rows and columns are 0. With ``rollout``, ``R_l = VZ_l R_{l-1}`` (no identity: the
    residual is inside the measured output).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    toks, batched, mask = as_tokens(model, tokens, attention_mask)
    B, T = toks.shape
    post = is_post_ln(model)
    layers = collect_internals(model, toks, mask)
    scores = torch.zeros(B, len(layers), T, T, device=toks.device)
    # every (b, j) pair, j real; zeroing a pad source changes nothing
    pairs = mask.nonzero()  # [n, 2]: (b, j)
    with torch.no_grad():
        for l, it in enumerate(layers):
            for start in range(0, len(pairs), chunk_size):
                pb, pj = pairs[start:start + chunk_size].unbind(1)
                y = run_layer(it.weights, it.resid_pre[pb], mask[pb], post, zero_value_at=pj).layer_out
                scores[pb, l, :, pj] = _cosine_distance(y, it.layer_out[pb])
    if not post:
        scores = scores.tril()
    scores = row_normalize(mask_maps(scores, mask))
    out = _rollout(scores) if rollout else scores
    return unbatch(mask_maps(out, mask), batched)


def _hf_layers(raw: Any, post: bool) -> list[Any]:
    return list(raw.encoder.layer) if post else list(raw.h)


def value_zeroing_loop(model: Any, tokens: Tensor | str,
                       attention_mask: Tensor | None = None) -> Tensor:
    """Reference implementation (the toolkit's shape): for every (sentence, layer ``l``, source
    ``j``) one call of the Hugging Face block module of layer ``l`` on the clean hidden state at
    its input, with a forward hook on the value projection that sets token ``j``'s value vector
    (bias included) to 0. Pad tokens are dropped per sentence first. Same output as
    :func:`value_zeroing` (without rollout); slow, for tests and the benchmark."""
    toks, batched, mask = as_tokens(model, tokens, attention_mask)
    B, T = toks.shape
    post = is_post_ln(model)
    raw = original_hf_model(model)
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
            ext = torch.full((n, n), torch.finfo(hidden[0].dtype).min, device=t.device).triu(1)[None, None]
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
                scores[b, l, real[:, None], real[j]] = _cosine_distance(y[0], clean[0])[:, None]
    if not post:
        scores = scores.tril()
    return unbatch(row_normalize(mask_maps(scores, mask)), batched)


__all__ = ["value_zeroed_outputs", "value_zeroing", "value_zeroing_loop"]
