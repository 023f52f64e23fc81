"""DecompX (Modarressi et al. 2023, "DecompX: Explaining Transformers Decisions by Propagating
Token Decomposition"), for post-LN encoders (BERT/RoBERTa).

Every hidden state is kept as a sum of per-input-token vectors, ``x^l_i = sum_k a^l_{i<-k}``,
and the decomposition is carried through each part of each layer (original weights, see
:mod:`._base`):

* **input**: ``a^0_{i<-k} = [i = k] e_i`` (the embedding output of token ``i`` is its own).
* **attention** (linear in the values for the observed weights ``alpha``):
  ``z_{i<-k} = sum_h sum_j alpha^h_ij (a_{j<-k} W_V^h) W_O^h``, plus the residual
  ``a_{i<-k}``; in layer 0, where ``a`` is diagonal, the value bias stays with its token
  (``(e_k W_V^h + b_V^h) W_O^h``, Kobayashi's ``f(x)``) and the bias left over is ``b_O``; in
  later layers the bias ``b_V W_O + b_O`` (every row of ``alpha`` sums to 1) is left over.
* **bias decomposition** ("absdot"): a bias ``b`` added to token ``i`` is shared among the
  sources in proportion to ``|a_{i<-k} . b|``: ``a_{i<-k} += b |a_{i<-k}.b| / sum_k' |a_{i<-k'}.b|``
  (an equal share over real sources if every dot product is 0).
* **LayerNorm** (LN1, LN2): ``LN(sum_k a_k) = sum_k gamma (a_k - mean(a_k)) / s + beta`` with
  ``s = sqrt(var(x) + eps)`` the standard deviation of the real input (each vector loses its own
  mean; the scale is shared); ``beta`` is shared by absdot.
* **FFN** ``W_2 act(W_1 h + b_1) + b_2``: ``p_{i<-k} = a_{i<-k} W_1`` (+ ``b_1`` by absdot), the
  activation linearised per token and neuron through the origin,
  ``act(u) ~ theta u`` with ``theta = act(u) / u`` at the real pre-activation ``u`` ("GeLU_ZO",
  the paper's default; exact for the sum), then ``W_2`` (+ ``b_2`` by absdot), plus the residual.

Because each step is exact for the sum, ``sum_k a^l_{i<-k}`` equals the model's hidden state
after every layer (tested to 1e-4). The mixing map of layer ``l`` is the norm of each
contribution, ``M^l_ik = ||a^l_{i<-k}||`` row-normalised: it already covers layers ``0..l``
(the decomposition is propagated as vectors, not rolled out). The paper's optional last step
through the classifier head is not included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import TutorialError

from ._base import as_tokens, collect_internals, is_post_ln, mask_maps, row_normalize, unbatch


@dataclass
class DecompXResult:
    """``per_token[l] [B, T, T, d]``: ``a^l_{i<-k}``, the part of token ``i``'s hidden state after
    layer ``l`` that comes from input token ``k``; ``hidden[l] [B, T, d]``: the real hidden state
    (``per_token[l].sum(2) == hidden[l]``); ``mask [B, T]``: real tokens."""

    per_token: list[Tensor]
    hidden: list[Tensor]
    mask: Tensor


def _share_bias(a: Tensor, bias: Tensor, real: Tensor) -> Tensor:
    """Add ``bias`` (``[d]`` or ``[B, T, d]``) to the decomposition ``a [B, T, K, d]``, split over
    sources ``k`` by ``|a_{i<-k} . b|`` (absdot); an equal split over real sources when every dot
    product is 0. ``real [B, K]`` marks the sources that may receive a share."""
    b = bias.expand(a.shape[0], a.shape[1], a.shape[-1]) if bias.ndim == 1 else bias
    w = torch.einsum("bikd,bid->bik", a, b).abs() * real[:, None, :]
    total = w.sum(-1, keepdim=True)
    equal = real[:, None, :].to(w.dtype) / real.sum(-1).clamp_min(1)[:, None, None]
    w = torch.where(total > 0, w / total.clamp_min(1e-30), equal)
    return a + w[..., None] * b[:, :, None, :]


def _ln_decompose(a: Tensor, observed_in: Tensor, ln: tuple[Tensor, Tensor, float],
                  real: Tensor) -> Tensor:
    gamma, beta, eps = ln
    s = torch.sqrt(observed_in.var(-1, unbiased=False) + eps)[:, :, None, None]  # [B, T, 1, 1]
    out = gamma * (a - a.mean(-1, keepdim=True)) / s
    return _share_bias(out, beta, real)


def decompx_decomposition(model: Any, tokens: Tensor | str,
                          attention_mask: Tensor | None = None,
                          dtype: torch.dtype = torch.float64) -> DecompXResult:
    """The per-input-token decomposition of every layer's hidden state (module docstring).
    ``tokens [B, T]`` (or one sentence); computed in ``dtype`` (float64 by default)."""
    if not is_post_ln(model):
        raise TutorialError("DecompX is implemented for post-LN encoders (BERT/RoBERTa); this model "
                         "is a pre-LN decoder")
    toks, _, mask = as_tokens(model, tokens, attention_mask)
    layers = collect_internals(model, toks, mask, dtype=dtype)
    real = mask.to(dtype)
    B, T = toks.shape
    x0 = layers[0].resid_pre
    eye = torch.eye(T, dtype=dtype, device=x0.device)
    a = eye[None, :, :, None] * x0[:, :, None, :] * real[:, None, :, None]  # [B, T(i), T(k), d]
    per_token, hidden = [], []
    with torch.no_grad():
        for l, it in enumerate(layers):
            w = it.weights
            if l == 0:  # a is diagonal: keep b_V with its token, as in f(x_j) of Kobayashi et al.
                f = torch.einsum("bkhe,hed->bhkd", it.values, w.W_O)            # [B, H, T, d]
                z = torch.einsum("bhik,bhkd->bikd", it.pattern, f)
                bias = w.b_O
            else:
                u = torch.einsum("bjkd,dhe->bjkhe", a, w.W_V)
                g = torch.einsum("bhij,bjkhe->bikhe", it.pattern, u)
                z = torch.einsum("bikhe,hed->bikd", g, w.W_O)
                bias = torch.einsum("he,hed->d", w.b_V, w.W_O) + w.b_O
            r = _share_bias(z + a, bias, real)                                 # x + Attn(x)
            h = _ln_decompose(r, it.ln1_in, w.ln1, real)                       # LN1
            p = _share_bias(torch.einsum("bikd,df->bikf", h, w.W_in), w.b_in, real)
            pre = it.ffn_pre                                                   # [B, T, d_ff]
            act = w.act(pre)
            safe = pre.abs() > 1e-12
            theta = torch.where(safe, act / torch.where(safe, pre, torch.ones_like(pre)),
                                torch.full_like(pre, 0.5))
            q = _share_bias(torch.einsum("bikf,fd->bikd", p * theta[:, :, None, :], w.W_out),
                            w.b_out, real)
            a = _ln_decompose(h + q, it.ln2_in, w.ln2, real)                   # LN2
            a = a * real[:, :, None, None] * real[:, None, :, None]
            per_token.append(a)
            hidden.append(it.layer_out)
    return DecompXResult(per_token, hidden, mask)


def decompx(model: Any, tokens: Tensor | str, attention_mask: Tensor | None = None) -> Tensor:
    """DecompX mixing maps, ``[L, T, T]`` (``[B, L, T, T]`` for a batch): ``M^l_ik =
    ||a^l_{i<-k}||`` normalised over ``k``, how much of token ``i``'s hidden state after layer ``l``
    comes from input token ``k`` (Modarressi et al. 2023; module docstring). Rows sum to 1; pad
    rows and columns are 0. Post-LN encoders only."""
    res = decompx_decomposition(model, tokens, attention_mask)
    toks_batched = not (isinstance(tokens, str) or (isinstance(tokens, Tensor) and tokens.ndim == 1))
    norms = torch.stack([a.norm(dim=-1) for a in res.per_token], dim=1).float()  # [B, L, T, T]
    return unbatch(row_normalize(mask_maps(norms, res.mask)), toks_batched)


__all__ = ["DecompXResult", "decompx", "decompx_decomposition"]
