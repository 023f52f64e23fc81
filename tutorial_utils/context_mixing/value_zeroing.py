"""Value Zeroing (Mohebbi et al. 2023), batched.

For layer ``l`` and source ``j``: set token ``j``'s value vectors ``v^h_j`` to zero in every head
of layer ``l`` (attention weights are untouched: they depend on queries and keys only), recompute
the layer, and compare each token's new layer output ``x~_i^(-j)`` with the original ``x~_i``:

    VZ_ij = 1 - cos(x~_i^(-j), x~_i),   then each row i is normalised to sum to 1.

Batching: for each layer ``l``, every (sentence, source) variant is one row of a single batched
forward pass (chunked to bound memory): the hook at layer ``l``'s values zeroes position ``j``
in the row that belongs to ``j``, and the hook at layer ``l``'s output stores the rows and stops
the forward pass (later layers are not needed). :func:`value_zeroing_loop` is the straightforward
reference, one forward pass per (sentence, layer, source).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ._base import as_tokens, layout, rollout as _rollout, row_normalize, unbatch


class _Stop(Exception):
    """Raised by a hook to end a forward pass once every needed layer output is stored."""


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - cos(a, b)`` along the last dim, computed as ``||a/|a| - b/|b|||^2 / 2`` in float64:
    the direct form cancels catastrophically when the vectors are nearly parallel, as they are
    when zeroing one value vector barely moves a token."""
    a, b = a.double(), b.double()
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (0.5 * (a - b).pow(2).sum(-1)).float()


def value_zeroed_outputs(model: Any, tokens: Tensor, variants: Sequence[tuple[int, int, int]],
                         chunk_size: int = 256) -> Tensor:
    """Layer outputs with one token's values zeroed, for many variants in batched forwards.

    ``tokens [B, T]``; ``variants``: ``(b, layer, j)`` triples (``j = -1`` zeroes nothing).
    Returns ``[len(variants), T, d_model]``: ``blocks.{layer}.hook_out`` of sentence ``b`` with
    ``v_j`` of layer ``layer`` set to zero in every head.
    """
    toks, _ = as_tokens(model, tokens)
    B, T = toks.shape
    L = model.cfg.n_layers
    for b, l, j in variants:
        if not (0 <= b < B and 0 <= l < L and -1 <= j < T):
            raise ValueError(f"variant {(b, l, j)} out of range for {B} sentences, {L} layers, "
                             f"{T} positions")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    var = torch.tensor(list(variants), dtype=torch.long, device=toks.device).reshape(-1, 3)
    out = torch.empty(len(var), T, model.cfg.d_model, device=toks.device)
    for l in sorted(set(var[:, 1].tolist())):
        idx = (var[:, 1] == l).nonzero().squeeze(-1)
        for start in range(0, len(idx), chunk_size):
            rows = idx[start:start + chunk_size]
            vb, vj = var[rows, 0], var[rows, 2]
            keep = (vj >= 0).nonzero().squeeze(-1)
            stored: dict[str, Tensor] = {}

            def zero_v(v: Tensor, hook: Any, keep: Tensor = keep, vj: Tensor = vj) -> Tensor:
                v = v.clone()
                v[keep, vj[keep]] = 0.0
                return v

            def store(x: Tensor, hook: Any) -> None:
                stored["x"] = x.detach()
                raise _Stop  # later layers are not needed

            hooks = [(f"blocks.{l}.attn.hook_v", zero_v), (f"blocks.{l}.hook_out", store)]
            with torch.no_grad(), model.hooks(fwd_hooks=hooks):
                try:
                    model(toks[vb])
                except _Stop:
                    pass
            out[rows] = stored["x"]
    return out


def value_zeroing(model: Any, tokens: Tensor | str, rollout: bool = False,
                  chunk_size: int = 256) -> Tensor:
    """Value Zeroing scores, ``[L, T, T]`` (``[B, L, T, T]`` for a batch), rows summing to 1.

    The ``B * T`` variants of each layer run in batched forward passes of ``chunk_size`` rows. In a
    causal decoder zeroing a later token cannot change an earlier one, so entries with
    ``j > i`` are set to exactly 0. With ``rollout``, ``R_l = VZ_l R_{l-1}`` (no identity:
    the residual is inside the measured output).
    """
    toks, batched = as_tokens(model, tokens)
    B, T = toks.shape
    L = model.cfg.n_layers
    names = {f"blocks.{l}.hook_out" for l in range(L)}
    with torch.no_grad():
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
    orig = torch.stack([cache[f"blocks.{l}.hook_out"] for l in range(L)], 1).detach()  # [B,L,T,d]
    variants = [(b, l, j) for b in range(B) for l in range(L) for j in range(T)]
    zeroed = value_zeroed_outputs(model, toks, variants, chunk_size)  # [B*L*T, T, d]
    zeroed = zeroed.reshape(B, L, T, T, -1)                            # [b, l, j, i, d]
    scores = _cosine_distance(zeroed, orig[:, :, None]).transpose(-1, -2)  # [b, l, i, j]
    if layout(model) == "pre_ln":
        scores = scores.tril()
    scores = row_normalize(scores)
    return unbatch(_rollout(scores) if rollout else scores, batched)


def value_zeroing_loop(model: Any, tokens: Tensor | str) -> Tensor:
    """Reference implementation: one forward pass per (sentence, layer, source), through the
    model's own forward with a hook that zeroes ``v_j`` at one layer. Same output as
    :func:`value_zeroing` (without rollout); slow, for tests and the benchmark."""
    toks, batched = as_tokens(model, tokens)
    B, T = toks.shape
    L = model.cfg.n_layers
    scores = torch.zeros(B, L, T, T, device=toks.device)
    for b in range(B):
        names = {f"blocks.{l}.hook_out" for l in range(L)}
        with torch.no_grad():
            _, cache = model.run_with_cache(toks[b:b + 1], names_filter=lambda n: n in names)
        for l in range(L):
            orig = cache[f"blocks.{l}.hook_out"][0]
            for j in range(T):
                got = {}

                def zero_v(v: Tensor, hook: Any, j: int = j) -> Tensor:
                    v = v.clone()
                    v[:, j] = 0.0
                    return v

                def store(x: Tensor, hook: Any) -> None:
                    got["x"] = x[0].detach()

                with torch.no_grad():
                    model.run_with_hooks(toks[b:b + 1], fwd_hooks=[
                        (f"blocks.{l}.attn.hook_v", zero_v), (f"blocks.{l}.hook_out", store)],
                        stop_at_layer=l + 1)
                scores[b, l, :, j] = _cosine_distance(got["x"], orig)
    if layout(model) == "pre_ln":
        scores = scores.tril()
    return unbatch(row_normalize(scores), batched)
