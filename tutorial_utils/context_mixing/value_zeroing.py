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
``Attn^(-j)_i = Attn_i - z_ij`` with ``z_ij = sum_h alpha^h_ij (v^h_j W_O^h)``.

Precision. The distances are small (zeroing one value vector barely moves most tokens), so the
rest of the layer is computed in **difference form**: what is propagated is the change
``Delta`` caused by the zeroing, never two full outputs whose float32 rounding would not cancel.
With ``r = x + Attn`` (post-LN) the clean input of LN1,

    Delta h   = LN1(r - z_j) - LN1(r)        (closed form in the change, :func:`_ln_difference`)
    Delta act = act(pre + Delta h W_in) - act(pre)
    Delta s   = Delta h + Delta act W_out
    VZ_ij     = 1 - cos(y + Delta y, y),    Delta y = LN2(s + Delta s) - LN2(s)

(pre-LN: ``Delta u = LN2(r - z_j) - LN2(r)``, ``Delta y = -z_j + Delta act W_out``). This runs
in float32 by default (``dtype``), the cosine in float64 (``1 - cos`` of nearly parallel
vectors, computed as ``||a/|a| - b/|b|||^2 / 2``). Against the same computation in float64
the normalised scores agree to 1e-5 absolute and 2e-4 relative on every score above 1e-3
(tested; measured on MiniLM 1.3e-6 at 60 tokens, 6.4e-6 at 256); the toolkit's float32 loop,
which subtracts two full float32 outputs, can return negative distances.
:func:`value_zeroing_loop` is the straightforward reference: one call of the Hugging Face layer
module per (sentence, layer, source), the value zeroed by a forward hook on its value
projection, also starting from layer ``l``'s input.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import TutorialError

from ._base import (LayerInternals, Maps, Mask, Tokens, collect_internals,
                    is_post_ln, linear, mask_maps, original_hf_model, position_ids, prepare,
                    row_normalize, run_layer, unbatch)
from ._base import rollout as _rollout
from ._weights import is_unedited


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - cos(a, b)`` along the last dim, computed as ``||a/|a| - b/|b|||^2 / 2`` in float64:
    the direct form cancels catastrophically when the vectors are nearly parallel, as they are
    when zeroing one value vector barely moves a token."""
    a, b = a.double(), b.double()
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (0.5 * (a - b).pow(2).sum(-1)).float()


def value_zeroed_outputs(model: Any, tokens: Int[Tensor, "batch pos"], variants: Sequence[tuple[int, int, int]],
                         chunk_size: int = 256, attention_mask: Mask = None,
                         token_type_ids: Mask = None) -> Float[Tensor, "variant pos d_model"]:
    """Layer outputs with one token's value vector zeroed, for many variants in batched calls.

    ``tokens [B, T]``; ``variants``: ``(b, layer, j)`` triples (``j = -1`` zeroes nothing).
    Returns ``[len(variants), T, d_model]``: the output of block ``layer`` for sentence ``b``
    when ``v^h_j`` (with ``b_V``) of that layer is 0 in every head, computed from the clean input
    of block ``layer`` (float32, full outputs: :func:`value_zeroing` uses the difference form).
    """
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    B, T = inp.tokens.shape
    L = model.cfg.n_layers
    for b, l, j in variants:
        if not (0 <= b < B and 0 <= l < L and -1 <= j < T):
            raise TutorialError(f"variant {(b, l, j)} out of range for {B} sentences, {L} layers, "
                             f"{T} positions")
    if chunk_size < 1:
        raise TutorialError(f"chunk_size must be positive, got {chunk_size}")
    var = torch.tensor(list(variants), dtype=torch.long, device=inp.tokens.device).reshape(-1, 3)
    layers = collect_internals(model, inp)
    post = is_post_ln(model)
    mask = inp.mask
    out = torch.empty(len(var), T, model.cfg.d_model, device=inp.tokens.device)
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


def _ln_difference(rc: Tensor, var: Tensor, z: Tensor, ln: tuple) -> Tensor:
    """``LN(r - z) - LN(r)`` without cancellation, from the clean input's centred values ``rc``
    and variance ``var`` (``[..., d]`` and ``[..., 1]``) and the removed part ``z``: with
    ``sigma^2 = var + eps`` and ``delta = var(z) - 2 cov(r, z)`` (so that the new
    ``sigma'^2 = sigma^2 + delta``), ``LN(r - z) - LN(r) = gamma (rc k - zc / sigma')`` where
    ``zc = z - mean(z)`` and ``k = 1/sigma' - 1/sigma = -delta / (sigma sigma' (sigma + sigma'))``.
    Every term is of the size of the change, so float32 keeps its relative precision."""
    gamma, _, eps = ln
    zc = z - z.mean(-1, keepdim=True)
    delta = (zc * (zc - 2 * rc)).mean(-1, keepdim=True)
    s2 = var + eps
    s = s2.sqrt()
    s_new = (s2 + delta).sqrt()
    k = -delta / (s * s_new * (s + s_new))
    return gamma * (rc * k - zc / s_new)


def _layer_distances(it: LayerInternals, post: bool, chunk_size: int) -> Tensor:
    """``1 - cos`` for every (query i, zeroed source j) of one layer, in difference form
    (module docstring): ``[B, T, T]`` (query x source), float32 (the cosine in float64)."""
    w = it.weights
    B, T, _ = it.resid_pre.shape
    r = it.ln1_in if post else it.attn_block_out                    # x + Attn   [B, T, d]
    ln_a = w.ln1 if post else w.ln2
    rc = r - r.mean(-1, keepdim=True)
    var = rc.pow(2).mean(-1, keepdim=True)
    pre, act_pre = it.ffn_pre, w.act(it.ffn_pre)                    # [B, T, d_ff]
    out = it.layer_out
    if post:
        s = it.ln2_in
        sc = s - s.mean(-1, keepdim=True)
        s_var = sc.pow(2).mean(-1, keepdim=True)
    f = torch.einsum("bjhk,hkd->bhjd", it.values, it.W_O)            # f_h(x_j)  [B, H, T, d]
    dist = torch.zeros(B, T, T, dtype=torch.float32, device=r.device)
    for start in range(0, T, chunk_size):
        js = torch.arange(start, min(T, start + chunk_size), device=r.device)
        i0 = 0 if post else start  # causal: queries before j do not see j
        # z[b, j, i] = sum_h alpha^h_ij f_h(x_j): source j's part of query i's attention output
        z = torch.einsum("bhij,bhjd->bjid", it.pattern[:, :, i0:, js], f[:, :, js])
        d_a = _ln_difference(rc[:, None, i0:], var[:, None, i0:], z, ln_a)
        d_act = w.act(linear(d_a, w.W_in).add_(pre[:, None, i0:])).sub_(act_pre[:, None, i0:])
        d_ffn = linear(d_act, w.W_out)
        if post:  # Delta y = LN2(s + Delta s) - LN2(s), Delta s = Delta h + Delta FFN
            d_y = _ln_difference(sc[:, None, i0:], s_var[:, None, i0:], -(d_a + d_ffn), w.ln2)
        else:
            d_y = d_ffn - z
        y = out[:, None, i0:].double()
        dist[:, i0:, js] = _cosine_distance(y + d_y.double(), y).transpose(1, 2)
    return dist


def value_zeroing_maps(layers: list[LayerInternals], mask: Bool[Tensor, "batch pos"], post: bool,
                       chunk_size: int | None = None) -> Maps:
    """Per-layer Value Zeroing scores ``[B, L, T, T]`` from recorded internals (rows summing to
    1; see :func:`value_zeroing`)."""
    chunk_size = chunk_size or (16 if post else 8)
    with torch.no_grad():
        scores = torch.stack([_layer_distances(it, post, chunk_size) for it in layers], dim=1)
    if not post:
        scores = scores.tril()
    return row_normalize(mask_maps(scores, mask))


def value_zeroing(model: Any, tokens: Tokens, rollout: bool = False,
                  chunk_size: int | None = None, attention_mask: Mask = None,
                  dtype: torch.dtype = torch.float32,
                  token_type_ids: Mask = None) -> Maps:
    """Value Zeroing scores, ``[L, T, T]`` (``[B, L, T, T]`` for a batch), rows summing to 1.

    ``VZ^l_ij = 1 - cos(x~^l_i(-j), x~^l_i)`` normalised over ``j`` (module docstring; Mohebbi
    et al. 2023, eq. 2-3), ``x~^l_i(-j)`` the output of layer ``l`` recomputed from its clean
    input with ``v^h_j = x_j W_V^h + b_V^h`` set to 0 in every head. ``chunk_size``: zeroed
    sources per batched step (default 16 for an encoder, 8 for a causal decoder, whose chunk
    starting at source ``s`` only recomputes queries ``i >= s``). ``dtype``: the precision of
    the clean pass and of the difference form (float32 by default; the cosine is float64
    either way). In a causal decoder zeroing a later
    token cannot change an earlier one, so entries with ``j > i`` are exactly 0; pad rows and
    columns are 0. With ``rollout``, ``R_l = VZ_l R_{l-1}`` (no identity: the residual is inside
    the measured output).
    """
    if chunk_size is not None and chunk_size < 1:
        raise TutorialError(f"chunk_size must be positive, got {chunk_size}")
    if dtype not in (torch.float32, torch.float64):
        raise TutorialError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    post = is_post_ln(model)
    layers = collect_internals(model, inp, dtype=dtype)
    scores = value_zeroing_maps(layers, inp.mask, post, chunk_size)
    out = _rollout(scores) if rollout else scores
    return unbatch(mask_maps(out, inp.mask), inp.batched)


def _hf_layers(raw: Any, post: bool) -> list[Any]:
    return list(raw.encoder.layer) if post else list(raw.h)


def value_zeroing_loop(model: Any, tokens: Tokens,
                       attention_mask: Mask = None,
                       dtype: torch.dtype = torch.float64,
                       token_type_ids: Mask = None) -> Maps:
    """Reference implementation (the toolkit's shape): for every (sentence, layer ``l``, source
    ``j``) one call of the Hugging Face block module of layer ``l`` on the clean hidden state at
    its input, with a forward hook on the value projection that sets token ``j``'s value vector
    (bias included) to 0. Pad tokens are dropped per sentence first. Same output as
    :func:`value_zeroing` (without rollout); slow, for tests and the benchmark. ``dtype``: the
    precision of the HF model copy it runs (float64 by default). It runs the *checkpoint's*
    modules, so it refuses a model whose weights were edited in memory."""
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    toks, batched, mask = inp.tokens, inp.batched, inp.mask
    if not is_unedited(model):
        raise TutorialError("value_zeroing_loop runs the checkpoint's Hugging Face modules, but "
                            "this model's weights were edited in memory: use value_zeroing, "
                            "which computes from the weights in memory")
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
                kw["token_type_ids"] = inp.token_types[b, real][None]
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


__all__ = ["value_zeroed_outputs", "value_zeroing", "value_zeroing_loop", "value_zeroing_maps"]
