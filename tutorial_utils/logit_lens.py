"""The logit lens and direct logit attribution (DLA): reading the residual stream in vocabulary space.

**Logit lens** (nostalgebraist 2020, "interpreting GPT: the logit lens"). The residual stream after
``l`` blocks, ``x_l = embed + pos_embed + sum_{l'<l} (attn_out_{l'} + mlp_out_{l'})``, is pushed
through the model's own read-out as if the network stopped there::

    logits_l = LN_final(x_l) @ W_U + b_U,     LN_final(x) = (x - mean(x)) / s(x),
    s(x) = sqrt(mean((x - mean(x))^2) + eps).

The points are ``embed`` (the token + position embeddings, resid_pre of block 0) and ``L{l}``,
the residual stream *after* block ``l`` (its resid_post, which is resid_pre of block ``l + 1``), for
``l = 0 .. n_layers - 1``; the last, ``L{n-1}``, is what the unembedding reads. ``incl_mid=True``
adds ``L{l}.mid`` (resid_mid: after block ``l``'s attention, before its MLP).

*Which LayerNorm scale.* ``scale="own"`` (the default, the standard logit lens) normalises each point
by its own statistics ``s(x_l)``, which is what ``LN_final`` would do if the model ended there; the
last point then reproduces the model's logits exactly. ``scale="final"`` freezes the last
point's scale ``s(x_final)`` (read from ``ln_final.hook_scale``) for every point: the map from the
residual stream to logits becomes linear, so the points are partial sums of the component
attributions below (``logits at L{l} = sum of the DLA of embed, pos_embed and blocks 0..l, + b_U``,
with ``per_head=False``), at the
cost of intermediate points whose overall magnitude is not what ``LN_final`` would give them.

Everything is computed at one position per example (``pos``: an int or ``TaskDataset.answer_pos``),
in one batched forward pass (chunked by ``batch_size``), or from a cache you already have.

Direct logit attribution lives in :mod:`tutorial_utils.dla`; the read-out both use in
:mod:`tutorial_utils.readout`; the figure is :func:`tutorial_utils.plotting.plot_logit_lens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .names import hook_name
from .model_checks import check_hook_names, check_token_ids
from .readout import (activations_at, check_decoder, normalise, prepare_batch, project,
                      read_out_weights)
from .validation import check_choice, check_int

if TYPE_CHECKING:
    from .models import Model

__all__ = ["LogitLensResult", "logit_lens"]


@dataclass
class LogitLensResult:
    """The logit lens at one position per example.

    Attributes:
        labels: ``n_points`` names: ``embed``, then ``L0`` ... ``L{n-1}`` (the residual stream after
            block ``l``; the last is what the unembedding reads), with ``L{l}.mid`` before each
            ``L{l}`` when ``incl_mid``.
        logits: ``[n_points, B, K]`` (centred) logits of ``token_ids``, or ``[n_points, B, V]``.
        log_norm: ``[n_points, B]`` log-sum-exp over the *full* vocabulary, so probabilities of
            a token subset are the model's real probabilities, not a softmax over the subset.
        token_ids: the ids projected onto (``[K]`` or ``[B, K]``) or None for the full vocabulary.
        top_ids, top_logits: ``[n_points, B, top_k]`` the highest-scoring tokens of the full
            vocabulary at each point.
        pos: ``[B]`` the positions read.
        scale: ``"own"`` or ``"final"`` (see the module docstring).
        ranks: ``[n_points, B, K]`` rank of each of ``token_ids`` in the full vocabulary
            (0 = top; ties count in the token's favour), or None for the full vocabulary.
    """

    labels: list[str]
    logits: Float[Tensor, "points batch k"]
    log_norm: Float[Tensor, "points batch"]
    token_ids: Int[Tensor, "*batch k"] | None
    top_ids: Int[Tensor, "points batch top_k"]
    top_logits: Float[Tensor, "points batch top_k"]
    pos: Int[Tensor, "batch"]
    scale: str
    ranks: Int[Tensor, "points batch k"] | None = None

    def index(self, label: str) -> int:
        """Row of the point ``label``."""
        if label not in self.labels:
            raise TutorialError(f"no point {label!r}; points: {self.labels}")
        return self.labels.index(label)

    def log_probs(self) -> Float[Tensor, "points batch k"]:
        """``[n_points, B, K]`` log-probabilities (normalised over the full vocabulary)."""
        return self.logits - self.log_norm[..., None]

    def probs(self) -> Float[Tensor, "points batch k"]:
        """``[n_points, B, K]`` probabilities (normalised over the full vocabulary)."""
        return self.log_probs().exp()

    def rank_of(self) -> Int[Tensor, "points batch k"]:
        """``[n_points, B, K]`` the rank of each of ``token_ids`` in the full vocabulary (0 = the
        top token); see :attr:`ranks`."""
        if self.ranks is None:
            raise TutorialError("ranks are only kept when token_ids are given")
        return self.ranks

    def top_tokens(self, tokenizer_or_model: Any, example: int = 0, k: int | None = None
                   ) -> list[list[str]]:
        """The ``k`` best tokens of the full vocabulary at each point for one example, decoded."""
        tok = getattr(tokenizer_or_model, "tokenizer", tokenizer_or_model)
        if not hasattr(tok, "convert_ids_to_tokens"):
            raise TutorialError(f"top_tokens needs the model or its tokenizer, got "
                                f"{type(tokenizer_or_model).__name__}")
        example = check_int(example, "example")
        if not 0 <= example < self.logits.shape[1]:
            raise TutorialError(f"example {example} out of range for a batch of {self.logits.shape[1]}")
        k = self.top_ids.shape[-1] if k is None else check_int(k, "k", 0)
        if k > self.top_ids.shape[-1]:
            raise TutorialError(f"only the top {self.top_ids.shape[-1]} were kept; rerun with top_k={k}")
        return [tok.convert_ids_to_tokens(self.top_ids[p, example, :k].tolist())
                for p in range(len(self.labels))]


def _resid_names(model: Model, incl_mid: bool) -> tuple[list[str], list[str]]:
    """Labels and hooks of the logit-lens points: ``embed`` (resid_pre of block 0), then for each
    block ``l`` optionally ``L{l}.mid`` (resid_mid) and ``L{l}`` (resid_post = resid_pre of l+1)."""
    labels, names = ["embed"], [hook_name("resid_pre", 0)]
    for l in range(model.cfg.n_layers):
        if incl_mid:
            labels.append(f"L{l}.mid")
            names.append(hook_name("resid_mid", l))
        labels.append(f"L{l}")
        names.append(hook_name("resid_post", l))
    return labels, names


def logit_lens(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    pos: int | Int[Tensor, "batch"] = -1,
    token_ids: Int[Tensor, "*batch k"] | Any = None,
    cache: Any = None,
    incl_mid: bool = False,
    scale: str = "own",
    top_k: int = 5,
    batch_size: int = 64,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> LogitLensResult:
    """The logit lens at position ``pos`` of every example.

    ``logits[p, b] = LN_final(x_p[b, pos[b]]) @ W_U[:, token_ids] + b_U[token_ids]`` for each point
    ``p`` of the residual stream (see the module docstring for the points and for ``scale``).

    Args:
        model: a decoder ``TransformerBridge`` (compatibility mode, as ``load_model`` returns).
        tokens: ``[B, T]`` token ids (BOS included), e.g. ``TaskDataset.clean_tokens``.
        pos: an int (negative counts from the end) or ``LongTensor[B]`` (``TaskDataset.answer_pos``);
            every position read must be a real token, not padding.
        token_ids: ``[K]`` ids shared by all examples, ``[B, K]`` per example, or None for the
            full vocabulary.
        cache: an ``ActivationCache`` of ``model`` on ``tokens`` (no forward pass is run); it
            must come from this model on these tokens (checked: its model, its tokens, its
            token embeddings recomputed).
        incl_mid: also read resid_mid of every block.
        scale: ``"own"`` (each point normalised by its own LayerNorm statistics: the standard
            logit lens) or ``"final"`` (the last point's scale frozen: linear, matches DLA).
        top_k: how many best tokens of the full vocabulary to keep per point.
        batch_size: examples per forward pass.
        attention_mask: ``[B, T]``, 1 = real token, 0 = padding (left-padded prompts need it;
            a trailing run of BOS is taken as right padding; see
            :mod:`tutorial_utils.model_checks`).

    Returns:
        a :class:`LogitLensResult` with ``logits`` ``[n_points, B, K]``.
    """
    check_decoder(model, "the logit lens")
    check_choice(scale, ("own", "final"), "scale")
    check_choice(incl_mid, (True, False), "incl_mid")
    tokens, p, fwd_mask = prepare_batch(model, tokens, pos, attention_mask, cache, batch_size)
    B, T = tokens.shape
    ids = check_token_ids(model, token_ids, B)
    V = model.cfg.d_vocab
    top_k = check_int(top_k, "top_k", 0, V)
    labels, names = _resid_names(model, incl_mid)
    names_all = names + [hook_name("ln_final_scale")]
    if cache is None:
        check_hook_names(model, names_all)
    acts = activations_at(model, tokens, p, names_all, cache, batch_size, fwd_mask)
    x = torch.stack([acts[n] for n in names], 0)                     # [P, B, d]
    frozen = acts[hook_name("ln_final_scale")].reshape(B, 1)
    xn = normalise(x, model, frozen if scale == "final" else None)
    W_U, b_U, ln_bias = read_out_weights(model, x.device)
    bias = b_U if ln_bias is None else b_U + ln_bias
    full = project(xn, W_U, None, bias)                              # [P, B, V]
    log_norm = full.logsumexp(-1)
    top = full.topk(top_k, dim=-1) if top_k else None
    ranks = None
    if ids is None:
        logits = full
    else:
        ids_d = ids.to(full.device)
        idx = ids_d.expand(B, -1) if ids_d.ndim == 1 else ids_d
        logits = full.gather(-1, idx[None].expand(len(labels), -1, -1))
        # rank = number of tokens scoring strictly higher (sorted search: memory [B, V])
        ranks = torch.stack([
            full.shape[-1] - torch.searchsorted(full[i].sort(-1).values, logits[i].contiguous(), right=True)
            for i in range(len(labels))])
    empty = torch.zeros(len(labels), B, 0, device=full.device)
    return LogitLensResult(
        labels=labels, logits=logits, log_norm=log_norm, token_ids=ids,
        top_ids=top.indices if top is not None else empty.long(),
        top_logits=top.values if top is not None else empty,
        pos=p, scale=scale, ranks=ranks,
    )
