"""Shared plumbing for the context-mixing methods: architecture detection, input validation,
one cached forward pass that collects what every method needs, row normalisation and rollout.

Two block layouts are supported (TransformerLens 4 bridge in compatibility mode):

* ``post_ln`` — BERT (encoder): ``x -> LN1(x + Attn(x)) -> LN2(h + MLP(h))``. The bridge's
  ``blocks.L.ln1`` sits *after* attention (``ln1.hook_in`` = x + attention output,
  ``blocks.L.hook_attn_out`` = ``ln1.hook_out``), ``blocks.L.ln2`` after the MLP.
* ``pre_ln`` — GPT-2 (decoder): ``x -> x + Attn(LN1(x)) -> r + MLP(LN2(r))``; compatibility mode
  folds LN1's weights into W_Q/W_K/W_V, so ``hook_v`` already holds the value vectors of the
  normalised input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: Architectures (HF class names, substrings) and their block layout.
_LAYOUTS = {"Bert": "post_ln", "Roberta": "post_ln", "GPT2": "pre_ln"}


def layout(model: Any) -> str:
    """``"post_ln"`` (BERT-style encoder) or ``"pre_ln"`` (GPT-2-style decoder); a clear
    ``ValueError`` for any other architecture."""
    cfg = model.cfg
    arch = str(getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
               or "")
    for key, kind in _LAYOUTS.items():
        if key in arch:
            return kind
    raise ValueError(
        f"context-mixing methods support BERT/RoBERTa encoders (post-LN) and GPT-2 decoders "
        f"(pre-LN); this model's architecture is {arch or 'unknown'!r}"
    )


def is_post_ln(model: Any) -> bool:
    return layout(model) == "post_ln"


def as_tokens(model: Any, tokens: Tensor | str) -> tuple[Tensor, bool]:
    """Validate ``tokens`` and return ``([B, T] LongTensor on the model's device, batched)``.

    A string is tokenised with ``model.to_tokens`` (BOS/[CLS] prepended as the model does);
    a 1-D tensor is one sentence. ``batched`` says whether the caller passed a 2-D batch.
    """
    if isinstance(tokens, str):
        tokens = model.to_tokens(tokens)
        batched = False
    elif isinstance(tokens, Tensor):
        if tokens.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            raise ValueError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
        if tokens.ndim == 1:
            tokens, batched = tokens[None], False
        elif tokens.ndim == 2:
            batched = True
        else:
            raise ValueError(f"tokens must be [seq] or [batch, seq], got shape {tuple(tokens.shape)}")
    else:
        raise ValueError(f"tokens must be a string or a LongTensor, got {type(tokens).__name__}")
    if tokens.shape[1] < 2:
        raise ValueError(f"need at least 2 tokens to measure context mixing, got {tokens.shape[1]}")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and tokens.shape[1] > n_ctx:
        raise ValueError(f"{tokens.shape[1]} tokens exceed the model's context of {n_ctx}")
    vocab = model.cfg.d_vocab
    if int(tokens.max()) >= vocab or int(tokens.min()) < 0:
        raise ValueError(f"token ids must lie in [0, {vocab}); got [{int(tokens.min())}, "
                         f"{int(tokens.max())}]")
    return tokens.long().to(model.cfg.device), batched


def unbatch(x: Tensor, batched: bool) -> Tensor:
    return x if batched else x[0]


def row_normalize(m: Tensor, eps: float = 1e-12) -> Tensor:
    """Divide every row (last dim) by its sum, so each query's scores over sources sum to 1."""
    return m / m.sum(-1, keepdim=True).clamp_min(eps)


def rollout(per_layer: Tensor, add_residual: bool = False) -> Tensor:
    """Aggregate per-layer mixing matrices across layers (Abnar & Zuidema 2020).

    ``per_layer``: ``[..., L, T, T]`` row-stochastic matrices ``A_l`` (query x source).
    With ``add_residual`` each is first replaced by ``0.5 A_l + 0.5 I`` (row-renormalised).
    Returns ``[..., L, T, T]`` whose layer ``l`` is ``R_l = A_l R_{l-1}`` with ``R_0 = A_0``:
    how much each token's representation after layer ``l`` draws on each *input* token.
    Rows of the result sum to 1 when rows of the input do.
    """
    if per_layer.ndim < 3 or per_layer.shape[-1] != per_layer.shape[-2]:
        raise ValueError(f"rollout needs [..., layers, T, T], got {tuple(per_layer.shape)}")
    mats = per_layer
    if add_residual:
        eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
        mats = row_normalize(0.5 * mats + 0.5 * eye)
    out = [mats[..., 0, :, :]]
    for l in range(1, mats.shape[-3]):
        out.append(mats[..., l, :, :] @ out[-1])
    return torch.stack(out, dim=-3)


def _ln_params(module: Any) -> tuple[Tensor, Tensor, float]:
    ln = getattr(module, "_original_component", module)
    return ln.weight.detach(), ln.bias.detach(), float(ln.eps)


@dataclass
class LayerInternals:
    """What the decompositions need from one block, for a batch ``[B, T]``.

    Shapes: ``pattern [B, H, T, T]``, ``values [B, T, H, d_head]`` (with b_V),
    ``resid_pre [B, T, d]`` (block input x), ``W_O [H, d_head, d]``, ``b_O [d]``;
    ``attn_block_out [B, T, d]``: the real output of the attention block *including* its
    residual (and LN1 for post-LN): ``ln1.hook_out`` (BERT) or ``hook_resid_mid`` (GPT-2);
    ``layer_out [B, T, d]``: the block's output. Post-LN only: ``ln1_in``/``ln2_in`` (inputs of
    the two LayerNorms, whose observed scales linearise them), ``ln1``/``ln2`` = (gamma, beta, eps).
    """

    pattern: Tensor
    values: Tensor
    resid_pre: Tensor
    W_O: Tensor
    b_O: Tensor
    attn_block_out: Tensor
    layer_out: Tensor
    ln1_in: Tensor | None = None
    ln2_in: Tensor | None = None
    ln1: tuple[Tensor, Tensor, float] | None = None
    ln2: tuple[Tensor, Tensor, float] | None = None


def collect_internals(model: Any, tokens: Tensor) -> list[LayerInternals]:
    """One forward pass with a cache of exactly the hooks the methods read; ``tokens [B, T]``."""
    post = is_post_ln(model)
    L = model.cfg.n_layers
    want = []
    for l in range(L):
        want += [f"blocks.{l}.attn.hook_pattern", f"blocks.{l}.attn.hook_v",
                 f"blocks.{l}.hook_resid_pre", f"blocks.{l}.hook_out"]
        want += [f"blocks.{l}.ln1.hook_in", f"blocks.{l}.ln1.hook_out", f"blocks.{l}.ln2.hook_in"] \
            if post else [f"blocks.{l}.hook_resid_mid"]
    wanted = set(want)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted)
    out = []
    for l in range(L):
        c = lambda k: cache[f"blocks.{l}.{k}"].detach()
        attn = model.blocks[l].attn
        item = LayerInternals(
            pattern=c("attn.hook_pattern"), values=c("attn.hook_v"), resid_pre=c("hook_resid_pre"),
            W_O=attn.W_O.detach(), b_O=attn.b_O.detach(),
            attn_block_out=c("ln1.hook_out") if post else c("hook_resid_mid"),
            layer_out=c("hook_out"))
        if post:
            item.ln1_in, item.ln2_in = c("ln1.hook_in"), c("ln2.hook_in")
            item.ln1 = _ln_params(model.blocks[l].ln1)
            item.ln2 = _ln_params(model.blocks[l].ln2)
        out.append(item)
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
