"""DecompX (Modarressi et al. 2023, "DecompX: Explaining Transformers Decisions by Propagating
Token Decomposition"), for post-LN encoders (BERT/RoBERTa), down to the prediction.

Every hidden state is kept as a sum of per-input-token vectors, ``x^l_i = sum_k a^l_{i<-k}``
(paper eq. 1), and the decomposition is carried through each part of each layer (weights in
memory, checkpoint parameterisation: see :mod:`._weights`):

* **input**: ``a^0_{i<-k} = [i = k] e_i`` (the embedding output of token ``i`` is its own).
* **attention** (eq. 2-4, linear in the values for the observed weights ``alpha``):
  ``z_{i<-k} = sum_h sum_j alpha^h_ij (a_{j<-k} W_V^h) W_O^h``, plus the residual
  ``a_{i<-k}`` (eq. 7); in layer 0, where ``a`` is diagonal, the value bias stays with its token
  (``(e_k W_V^h + b_V^h) W_O^h``, Kobayashi's ``f(x)``) and the bias left over is ``b_O``; in
  later layers the bias ``b_Att = sum_h b_V^h W_O^h + b_O`` (eq. 16: every row of ``alpha``
  sums to 1) is left over.
* **bias decomposition** ("AbsDot", eq. 5-6): a bias ``b`` added to token ``i`` is shared among
  the sources in proportion to ``|a_{i<-k} . b|``:
  ``a_{i<-k} += b |a_{i<-k}.b| / sum_k' |a_{i<-k'}.b|`` (an equal share over real sources if
  every dot product is 0). Every bias of the model is shared this way, so nothing is left over.
* **LayerNorm** (LN1, LN2; eq. 8, 12): ``LN(sum_k a_k) = sum_k gamma (a_k - m(a_k)) / s + beta``
  with ``s = sqrt(var(x) + eps)`` the standard deviation of the real input (each vector loses
  its own mean; the scale is shared); ``beta`` is shared by AbsDot.
* **FFN** ``W_2 act(W_1 h + b_1) + b_2`` (eq. 9-11): ``p_{i<-k} = a_{i<-k} W_1`` (+ ``b_1`` by
  AbsDot), the activation linearised per token and neuron through the origin,
  ``act(u) ~ theta u`` with ``theta = act(u) / u`` at the real pre-activation ``u`` ("GeLU_ZO",
  exact for the sum), then ``W_2`` (+ ``b_2`` by AbsDot), plus the residual.

Because each step is exact for the sum, ``sum_k a^l_{i<-k}`` equals the model's hidden state
after every layer. The mixing map of layer ``l`` is the norm of each contribution,
``M^l_ik = ||a^l_{i<-k}||`` row-normalised (:func:`decompx`): it already covers layers ``0..l``
(the decomposition is propagated as vectors, not rolled out).

**To the prediction** (section 3.4, eq. 13-14; A.2 for heads other than a classifier): the
decomposition of the explained position after the last layer is passed through the head the
same way, giving one score per input token and output, ``y_c = sum_k y_{c<-k}`` exactly
(:func:`decompx_prediction`):

* masked-LM head (BERT/RoBERTa): ``logits = LN_t(act(h W_t + b_t)) W_U + b_U``: ``W_t``
  (+ ``b_t`` by AbsDot), ``act`` by the zero-origin slope, ``LN_t`` as above, ``W_U`` (+ ``b_U``
  shared by AbsDot of the token's vocabulary-logit vector with ``b_U``, as the authors share a
  classifier's bias over its class vector);
* sequence classifier (``classifier=`` a Hugging Face ``BertForSequenceClassification`` /
  ``RobertaForSequenceClassification`` whose encoder's weights equal the bridge's in memory,
  checked): the ``[CLS]`` decomposition through the pooler's
  ``W_pool`` (+ ``b_pool``), ``tanh`` by the zero-origin slope (the authors' default), and the
  classification layer (+ ``b_cls`` by AbsDot over the class vector).

Computed in float32 by default (``dtype``): against float64 the maps agree to 1e-5 and the
prediction contributions to 1e-4 of the logits' scale (tested). Memory: one ``[B, T, T, d]``
decomposition per step, the FFN in chunks of query rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import TutorialError
from ..model_checks import check_real_positions
from ..validation import check_int_ids, check_positions

from ._base import (Inputs, LayerInternals, Maps, Mask, Tokens, collect_internals, is_post_ln,
                    layer_norm, linear, mask_maps, prepare, row_normalize, unbatch)
from ._weights import encoder_mismatches, model_weights

#: Query rows per chunk of the FFN step (bounds the ``[B, rows, T, d_ff]`` temporaries).
FFN_ROWS = 32


@dataclass
class DecompXResult:
    """``per_token[l] [B, T, T, d]``: ``a^l_{i<-k}``, the part of token ``i``'s hidden state after
    layer ``l`` that comes from input token ``k`` (only the last layer's when
    ``keep="last"``); ``hidden[l] [B, T, d]``: the real hidden state
    (``per_token[l].sum(2) == hidden[l]``); ``norms [B, L, T, T]``: ``||a^l_{i<-k}||``;
    ``mask [B, T]``: real tokens."""

    per_token: list[Tensor]
    hidden: list[Tensor]
    mask: Tensor
    norms: Tensor | None = None


@dataclass
class DecompXPrediction:
    """DecompX through the head: ``contributions [B, T, C]`` is ``y_{c<-k}``, input token
    ``k``'s share of output ``c`` (a vocabulary entry at ``position``, or a class);
    ``logits [B, C]``: the model's own logits, computed by its head (the masked-LM head, or the
    classifier's, whose encoder is checked to be the model's) from the real hidden state
    (``contributions.sum(1) == logits``; every bias is shared among the tokens, so there is no
    remainder); ``targets``: the output ids of the last dim (None: all); ``position [B]``: the
    explained position; ``mask [B, T]``: real tokens (pad tokens contribute exactly 0)."""

    contributions: Tensor
    logits: Tensor
    targets: Tensor | None
    position: Tensor
    mask: Tensor


def _share_bias(a: Tensor, bias: Tensor, real: Tensor) -> Tensor:
    """Add ``bias`` (``[d]`` or ``[B, T, d]``) to the decomposition ``a [B, T, K, d]`` **in
    place**, split over sources ``k`` by ``|a_{i<-k} . b|`` (AbsDot); an equal split over real
    sources when every dot product is 0. ``real [B, K]`` marks the sources that may receive a
    share."""
    B, T, K, d = a.shape
    a = a.contiguous()
    b = bias.expand(B, T, d) if bias.ndim == 1 else bias
    w = torch.einsum("bikd,bid->bik", a, b).abs() * real[:, None, :]
    _add_shares(a, _absdot_weights(w, real), b)
    return a


def _add_shares(a: Tensor, w: Tensor, b: Tensor) -> None:
    """``a[b, i, k] += w[b, i, k] * b[b, i]`` in place (``a [B, T, K, d]``, ``w [B, T, K]``,
    ``b [B, T, d]``), without a ``[B, T, K, d]`` temporary."""
    B, T, K, d = a.shape
    a.view(B * T, K, d).baddbmm_(w.reshape(B * T, K, 1), b.reshape(B * T, 1, d))


def _absdot_weights(w: Tensor, real: Tensor) -> Tensor:
    """Normalise nonnegative weights ``w [B, T, K]`` over ``k``; an equal split over real
    sources where they are all 0."""
    total = w.sum(-1, keepdim=True)
    equal = real[:, None, :].to(w.dtype) / real.sum(-1).clamp_min(1)[:, None, None]
    return torch.where(total > 0, w / total.clamp_min(1e-30), equal)


def _ln_decompose(a: Tensor, observed_in: Tensor, ln: tuple[Tensor, Tensor, float],
                  real: Tensor) -> Tensor:
    """LayerNorm through the decomposition ``a [B, T, K, d]`` (in place): each vector loses its
    mean and is scaled by ``gamma / s``, ``s`` the standard deviation of the real input
    ``observed_in [B, T, d]``; ``beta`` is shared by AbsDot."""
    gamma, beta, eps = ln
    s = torch.sqrt(observed_in.var(-1, unbiased=False) + eps)[:, :, None, None]  # [B, T, 1, 1]
    a.sub_(a.mean(-1, keepdim=True)).mul_(gamma / s)
    return _share_bias(a, beta, real)


def _zero_origin_slope(act_out: Tensor, pre: Tensor) -> Tensor:
    """``theta = act(u) / u`` elementwise ("zero-origin" linearisation; 0.5 where ``u = 0``,
    GELU's slope there; any value would do, the decomposed inputs then sum to 0)."""
    safe = pre.abs() > 1e-12
    return torch.where(safe, act_out / torch.where(safe, pre, torch.ones_like(pre)),
                       torch.full_like(pre, 0.5))


def _attention_step(a: Tensor, it: LayerInternals, first: bool) -> tuple[Tensor, Tensor]:
    """``(z, bias)``: the attention block's output decomposed over the sources, ``z [B, T, K,
    d]``, and the bias left to share."""
    w = it.weights
    if first:  # a is diagonal: keep b_V with its token, as in f(x_j) of Kobayashi et al.
        f = torch.einsum("bkhe,hed->bhkd", it.values, w.W_O)                # [B, H, T, d]
        return torch.einsum("bhik,bhkd->bikd", it.pattern, f).contiguous(), w.b_O
    B, T, K, d = a.shape
    H, dh = w.W_V.shape[1], w.W_V.shape[2]
    # u^h_{j<-k} = a_{j<-k} W_V^h, then sum_j alpha^h_ij u^h_{j<-k}, then W_O^h, summed over h
    u = linear(a, w.W_V.reshape(d, H * dh)).view(B, T, K, H, dh)
    u = u.permute(0, 3, 1, 2, 4).reshape(B, H, T, K * dh)
    g = torch.matmul(it.pattern, u).view(B, H, T, K, dh)
    del u
    g = g.permute(0, 2, 3, 1, 4).reshape(B, T, K, H * dh)
    z = linear(g, w.W_O.reshape(H * dh, d))
    return z, torch.einsum("he,hed->d", w.b_V, w.W_O) + w.b_O


def _ffn_step(h: Tensor, it: LayerInternals, real: Tensor) -> Tensor:
    """``h + FFN(h)`` decomposed (``h [B, T, K, d]``, not modified), in chunks of query rows:
    ``p_k = h_k W_1 + omega_k b_1`` (AbsDot, ``|p_k . b_1| = |h_k . (W_1 b_1)|``), times
    ``theta``, then ``W_2`` (+ ``b_2`` by AbsDot). The ``b_1`` share is carried as
    ``omega_k (b_1 theta) W_2`` so no ``[.., d_ff]`` tensor is added to."""
    w = it.weights
    theta = _zero_origin_slope(w.act(it.ffn_pre), it.ffn_pre)               # [B, T, d_ff]
    c_in = w.W_in @ w.b_in                                                  # [d]
    out = torch.empty_like(h)
    B, T, K, d = h.shape
    for i0 in range(0, T, FFN_ROWS):
        sl = slice(i0, min(T, i0 + FFN_ROWS))
        hi = h[:, sl]
        omega = _absdot_weights((hi @ c_in).abs() * real[:, None, :], real)  # [B, n, K]
        p = linear(hi, w.W_in)                                              # [B, n, K, d_ff]
        p.mul_(theta[:, sl, None, :])
        q = linear(p, w.W_out)                                              # [B, n, K, d]
        del p
        _add_shares(q, omega, linear(w.b_in * theta[:, sl], w.W_out))
        _share_bias(q, w.b_out.expand(B, q.shape[1], d), real)
        out[:, sl] = q.add_(hi)
    return out


def _layer_step(a: Tensor, it: LayerInternals, first: bool, real: Tensor) -> Tensor:
    """Carry the decomposition ``a [B, T, T, d]`` of a block's input through the block."""
    w = it.weights
    z, bias = _attention_step(a, it, first)
    r = _share_bias(z.add_(a), bias, real)                                  # x + Attn(x)
    h = _ln_decompose(r, it.ln1_in, w.ln1, real)                            # LN1
    a = _ln_decompose(_ffn_step(h, it, real), it.ln2_in, w.ln2, real)       # LN2(h + FFN(h))
    return a.mul_(real[:, :, None, None]).mul_(real[:, None, :, None])


def _check_encoder(model: Any) -> None:
    if not is_post_ln(model):
        raise TutorialError("DecompX is implemented for post-LN encoders (BERT/RoBERTa); this "
                            "model is a pre-LN decoder")


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TutorialError(f"dtype must be torch.float32 or torch.float64, got {dtype}")


def _propagate(layers: list[LayerInternals], inp: Inputs, keep: str) -> DecompXResult:
    real = inp.mask.to(layers[0].resid_pre.dtype)
    B, T = inp.tokens.shape
    x0 = layers[0].resid_pre
    eye = torch.eye(T, dtype=x0.dtype, device=x0.device)
    a = eye[None, :, :, None] * x0[:, :, None, :] * real[:, None, :, None]  # [B, T(i), T(k), d]
    per_token, hidden, norms = [], [], []
    with torch.no_grad():
        for l, it in enumerate(layers):
            a = _layer_step(a, it, l == 0, real)
            norms.append(a.norm(dim=-1))
            if keep == "all" or l == len(layers) - 1:
                per_token.append(a)
            hidden.append(it.layer_out)
    return DecompXResult(per_token, hidden, inp.mask, torch.stack(norms, dim=1))


def decompx_decomposition(model: Any, tokens: Tokens,
                          attention_mask: Mask = None,
                          dtype: torch.dtype = torch.float32, keep: str = "all",
                          token_type_ids: Mask = None) -> DecompXResult:
    """The per-input-token decomposition of every layer's hidden state (module docstring).
    ``tokens [B, T]`` (or one sentence); computed in ``dtype`` (float32 by default);
    ``keep="last"`` keeps only the last layer's vectors (``norms`` covers every layer)."""
    _check_encoder(model)
    _check_dtype(dtype)
    if keep not in ("all", "last"):
        raise TutorialError(f"keep must be 'all' or 'last', got {keep!r}")
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    return _propagate(collect_internals(model, inp, dtype=dtype), inp, keep)


def decompx_maps(layers: list[LayerInternals], inp: Inputs) -> Maps:
    """DecompX mixing maps ``[B, L, T, T]`` from recorded internals (see :func:`decompx`)."""
    res = _propagate(layers, inp, keep="last")
    return row_normalize(mask_maps(res.norms.float(), inp.mask))


def decompx(model: Any, tokens: Tokens, attention_mask: Mask = None,
            token_type_ids: Mask = None, dtype: torch.dtype = torch.float32) -> Maps:
    """DecompX mixing maps, ``[L, T, T]`` (``[B, L, T, T]`` for a batch): ``M^l_ik =
    ||a^l_{i<-k}||`` normalised over ``k``, how much of token ``i``'s hidden state after layer
    ``l`` comes from input token ``k`` (Modarressi et al. 2023; module docstring). Rows sum to 1;
    pad rows and columns are 0. Post-LN encoders only. The paper's explanation of a *prediction*
    is :func:`decompx_prediction`."""
    _check_encoder(model)
    _check_dtype(dtype)
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    return unbatch(decompx_maps(collect_internals(model, inp, dtype=dtype), inp), inp.batched)


# --- through the head -------------------------------------------------------------------------
def _through_activation(a: Tensor, pre_real: Tensor, act: Any) -> Tensor:
    """``a [B, K, d]`` (sums to ``pre_real [B, d]``) through ``act`` by the zero-origin slope."""
    return a * _zero_origin_slope(act(pre_real), pre_real)[:, None, :]


def _positions(model: Any, inp: Inputs, position: Any) -> Tensor:
    """The explained position of each row, ``[B]``: ``position`` (an int, or one per row;
    negative counts from the end) or, by default, each row's one ``[MASK]``; never a pad."""
    B, T = inp.tokens.shape
    if position is None:
        mask_id = getattr(getattr(model, "tokenizer", None), "mask_token_id", None)
        hits = inp.tokens == mask_id if mask_id is not None else torch.zeros_like(inp.mask)
        if mask_id is None or not bool((hits.sum(1) == 1).all()):
            raise TutorialError("pass position=: the explained position is the [MASK] token by "
                                "default, and every row needs exactly one")
        pos = hits.long().argmax(1)
    else:
        pos = check_positions(position, B, T, "position").to(inp.tokens.device)
    check_real_positions(inp.mask, pos, "position")
    return pos


def _targets(targets: Any, n_out: int, classes: bool) -> Tensor | None:
    """``targets`` as a LongTensor ``[C]`` of output ids (vocabulary ids, or classes), shared by
    every row; None keeps every output."""
    if targets is None:
        return None
    tg = check_int_ids(targets, "targets")
    tg = tg[None] if tg.ndim == 0 else tg
    if tg.ndim != 1:
        raise TutorialError(f"targets must be one id or a list of ids shared by every row, got "
                            f"shape {tuple(tg.shape)}")
    if int(tg.max()) >= n_out:
        what = "class ids of the classifier" if classes else "vocabulary ids"
        raise TutorialError(f"targets must be {what} in [0, {n_out}), got {int(tg.max())}")
    return tg


def _classifier_head(classifier: Any, device: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(W_pool [d, d], b_pool, W_cls [d, C], b_cls)`` of a Hugging Face sequence classifier,
    float32 on ``device``."""
    base = getattr(classifier, "base_model", None)
    head = getattr(classifier, "classifier", None)
    if head is None or base is None:
        raise TutorialError("classifier must be a Hugging Face *ForSequenceClassification model "
                            "(BERT or RoBERTa), with a .classifier head")
    if hasattr(head, "out_proj"):  # RobertaClassificationHead: dense + tanh + out_proj on <s>
        pool, out = head.dense, head.out_proj
    else:
        pool = getattr(base, "pooler", None)
        pool = getattr(pool, "dense", None)
        out = head
        if pool is None:
            raise TutorialError("this classifier has no pooler to decompose")
    t = lambda x: x.detach().to(device=device, dtype=torch.float32)  # noqa: E731
    return t(pool.weight).T, t(pool.bias), t(out.weight).T, t(out.bias)


def _check_classifier(model: Any, classifier: Any, position: Any,
                      device: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The classifier's head (:func:`_classifier_head`), once its encoder is known to be
    ``model``'s: its weights equal the model's in memory (:func:`._weights.encoder_mismatches`)."""
    if position is not None:
        raise TutorialError("position= is for the masked-LM head: a sequence classifier reads its "
                            "first token ([CLS] / <s>), which is what DecompX explains; leave "
                            "position unset")
    head = _classifier_head(classifier, device)
    bad = encoder_mismatches(model, classifier)
    if bad:
        raise TutorialError(
            f"classifier's encoder is not this model: its weights differ from the model's (in "
            f"memory) in {', '.join(bad)}, so its logits cannot be decomposed with this model's "
            "internals. Load the bridge from the classifier's own checkpoint "
            "(load_encoder(classifier_dir); for RoBERTa save the classifier as "
            "RobertaForMaskedLM first), and make any in-memory edit to both")
    return head


def decompx_prediction(model: Any, tokens: Tokens, position: Any = None,
                       targets: Any = None, attention_mask: Mask = None,
                       token_type_ids: Mask = None, classifier: Any = None,
                       dtype: torch.dtype = torch.float32) -> DecompXPrediction:
    """DecompX to the prediction (Modarressi et al. 2023, sec. 3.4): each input token's
    contribution to the model's output logits, ``y_c = sum_k y_{c<-k}`` (eq. 14).

    Masked LM (default): the logits at ``position`` (an int or one per row; default: each row's
    ``[MASK]``) through the model's masked-LM head. ``classifier``: a Hugging Face BERT/RoBERTa
    sequence classifier whose encoder is ``model`` (the bridge drops such heads; checked: its
    encoder's weights must equal the model's in memory, else a ``TutorialError``): the class
    scores from ``[CLS]`` through pooler/dense, ``tanh`` and the classification layer
    (``position`` must then be left unset). ``targets``: output ids to keep (vocab ids or
    classes; default all). Returns :class:`DecompXPrediction`; ``contributions.sum(1)`` equals
    ``logits`` to float32 rounding (1e-4 of the logits' scale; tested against the Hugging Face
    model's own logits, the classifier's included).
    """
    _check_encoder(model)
    _check_dtype(dtype)
    inp = prepare(model, tokens, attention_mask, token_type_ids)
    B, T = inp.tokens.shape
    device = inp.tokens.device
    # every check before the forward pass and the propagation
    if classifier is None:
        head = model_weights(model, dtype).head
        if head is None:
            raise TutorialError("this model has no masked-LM head; for a sequence "
                                "classifier pass classifier=")
        pos = _positions(model, inp, position)
        n_out = head.W_U.shape[1]
    else:
        W_pool, b_pool, W_U, b_U = (x.to(dtype) for x in
                                    _check_classifier(model, classifier, position, device))
        pos = torch.zeros(B, dtype=torch.long, device=device)
        n_out = W_U.shape[1]
    tg = _targets(targets, n_out, classes=classifier is not None)
    layers = collect_internals(model, inp, dtype=dtype)
    last = _propagate(layers, inp, keep="last").per_token[-1]                # [B, T, T, d]
    real = inp.mask.to(last.dtype)
    rows = torch.arange(B, device=last.device)
    hidden = layers[-1].layer_out
    with torch.no_grad():
        a, x = last[rows, pos], hidden[rows, pos]                               # [B, K, d], [B, d]
        if classifier is None:
            pre = x @ head.W_t + head.b_t
            t = _share_bias((a @ head.W_t)[:, None], head.b_t, real)[:, 0]
            t = _through_activation(t, pre, head.act)
            t = _ln_decompose(t[:, None], head.act(pre)[:, None], head.ln, real)[:, 0]
            W_U, b_U = head.W_U, head.b_U
            logits = layer_norm(head.act(pre), head.ln) @ W_U + b_U
        else:
            pre = x @ W_pool + b_pool
            t = _share_bias((a @ W_pool)[:, None], b_pool, real)[:, 0]
            t = _through_activation(t, pre, torch.tanh)
            logits = torch.tanh(pre) @ W_U + b_U
        # the output bias: shared by AbsDot of each token's whole output vector with it
        w = (t @ (W_U @ b_U)).abs() * real                                       # |y_k . b_U|
        share = _absdot_weights(w[:, None], real)[:, 0]                           # [B, K]
        if tg is not None:
            tg = tg.to(device)
            W_U, b_U, logits = W_U[:, tg], b_U[tg], logits[:, tg]
        y = t @ W_U + share[..., None] * b_U                                      # [B, K, C]
    return DecompXPrediction(y * real[..., None], logits, tg, pos, inp.mask)


__all__ = ["DecompXPrediction", "DecompXResult", "decompx", "decompx_decomposition",
           "decompx_maps", "decompx_prediction"]
