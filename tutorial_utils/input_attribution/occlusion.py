"""Perturbation attributions: occlusion / erasure (Zeiler & Fergus 2014; Li et al. 2016
"erasure"), ``score[b, t] = f(x)_b - f(x with token t replaced or deleted)_b``.

* :func:`occlusion` replaces token ``t``'s embedding by a baseline (zero, the mean embedding, a
  token such as ``<unk>``) or deletes the token by shifting the prompt right;
* :func:`contrastive_erasure` deletes token ``t`` and reads a contrastive target (Yin & Neubig
  2022) one position earlier, so the erased prompt is an ordinary, shorter prompt.

Padded positions are never occluded and score 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..model_checks import check_real_positions, is_encoder
from ..validation import check_int, check_positions
from .forward import (Baseline, _baseline, _repeat_mask, _run_from_embeddings, _token_embeddings,
                      attributed_positions, chunks, prepare)
from .gradients import _values
from .targets import TargetFn, contrastive_target, evaluate_target

if TYPE_CHECKING:
    from ..models import Model

__all__ = ["contrastive_erasure", "occlusion"]


def occlusion(model: Model, tokens: Int[Tensor, "batch pos"], target_fn: TargetFn,
              replacement: Baseline = "zero", positions: Sequence[int] | None = None,
              batch_size: int = 512, target_hook: str | None = None,
              progress: bool = False, attention_mask: Int[Tensor, "batch pos"] | None = None
              ) -> Float[Tensor, "batch pos"]:
    """Occlusion / erasure: ``score[b, t] = f(x)_b - f(x with token t occluded)_b``, ``[B, T]``.

    ``replacement``: ``"delete"`` removes token ``t`` (erasure, Li et al. 2016; decoders only:
    the sequence is shifted right and a copy of the first token (BOS) fills position 0, so
    the positions after ``t`` keep their index; caveat: that input starts with two BOS tokens,
    which a model may never have seen: notebook 01 shows the course model collapsing on it, so
    every deletion scores alike; for a contrastive target use :func:`contrastive_erasure`, which
    deletes and reads the prediction one position earlier), or anything
    :func:`~tutorial_utils.input_attribution.baseline_embeddings` accepts (``"zero"``,
    ``"mean"``, a token id such as ``<unk>``, a tensor) to replace token ``t``'s embedding.

    ``positions`` to occlude default, per row, to every real position but the row's opening
    BOS/[CLS] (a row without one has its first word occluded too; in a left-padded batch each
    row's own opening token is left out, whatever the other rows hold in that column). A
    given ``positions`` list is occluded in every row. Positions not occluded, and padded
    positions, score 0. On an encoder the closing ``[SEP]`` is a real position like any word,
    so it is occluded and scored by default (only the opening ``[CLS]`` is left out). All
    occluded copies are stacked along the batch and run in chunks of at most ``batch_size``
    rows.
    """
    batch = prepare(model, tokens, attention_mask, target_hook, "occlusion", target_fn)
    tokens = batch.tokens
    B, T = tokens.shape
    real = batch.real()
    if positions is None:
        scored = attributed_positions(model, batch)  # per row: a row's opening BOS keeps 0
        pos = scored.any(0).nonzero().flatten().tolist()
    else:
        if isinstance(positions, (str, bytes)) or not hasattr(positions, "__iter__"):
            raise TutorialError(f"positions must be a list of ints, got {positions!r}")
        pos = [check_int(p, "positions[i]") for p in positions]
        bad = [p for p in pos if not 0 <= p < T]
        if bad:
            raise TutorialError(f"cannot occlude position(s) {bad}: the sequence has {T} tokens "
                                f"(positions 0..{T - 1})")
        scored = real & torch.isin(torch.arange(T, device=tokens.device),
                                   torch.tensor(pos, dtype=torch.long, device=tokens.device))[None]
    if not pos:
        raise TutorialError("no positions to occlude")
    delete = isinstance(replacement, str) and replacement == "delete"
    if delete:
        if is_encoder(model):
            raise TutorialError("replacement='delete' is for causal decoders; use a replacement "
                                "token or embedding for an encoder")
        if 0 in pos:
            raise TutorialError("cannot delete position 0 (the first token fills the gap)")
        if batch.forward_mask is not None:
            raise TutorialError("replacement='delete' shifts every row right, which moves a "
                                "left-padded row's padding into its text; left-align the rows "
                                "(right padding) or use a replacement token")
    parts = chunks(len(pos), B, batch_size)
    x = _token_embeddings(model, tokens)
    base = None if delete else _baseline(model, batch, replacement, keep_first_token=False)
    f_x = _values(model, batch, target_fn, None, target_hook)
    scores = torch.zeros(B, T, dtype=f_x.dtype, device=f_x.device)
    if progress:
        from tqdm.auto import tqdm

        parts = tqdm(parts, desc="occlusion")
    for lo, hi in parts:
        ps = pos[lo:hi]
        if delete:
            toks = torch.cat([torch.cat([tokens[:, :1], tokens[:, :p], tokens[:, p + 1:]], 1)
                              for p in ps])
            emb = _token_embeddings(model, toks)
        else:
            toks = tokens.repeat(len(ps), 1)
            emb = x.repeat(len(ps), 1, 1).reshape(len(ps), B, T, -1)
            for k, p in enumerate(ps):
                emb[k, :, p] = base[:, p]
            emb = emb.reshape(len(ps) * B, T, -1)
        with torch.no_grad():
            out = _run_from_embeddings(model, toks, emb, target_hook,
                                      _repeat_mask(batch.forward_mask, len(ps)))
            vals = evaluate_target(target_fn, out, len(ps), B, batch.mask)
        for k, p in enumerate(ps):
            scores[:, p] = f_x - vals[k]
    return scores * scored.to(scores.dtype)


def contrastive_erasure(model: Model, tokens: Int[Tensor, "batch pos"],
                        target_ids: Sequence[int] | Int[Tensor, "batch"],
                        foil_ids: Sequence[int] | Int[Tensor, "batch"],
                        answer_pos: Sequence[int] | Int[Tensor, "batch"],
                        attention_mask: Int[Tensor, "batch pos"] | None = None
                        ) -> Float[Tensor, "batch pos"]:
    """Erasure that keeps the prompt well-formed (Li et al. 2016; contrastive target as in Yin &
    Neubig 2022): ``score[b, t] = f_b(x) - f_b(x without token t)``, ``[B, T]``, with
    ``f_b = logit(target_ids[b]) - logit(foil_ids[b])`` read at ``answer_pos[b]`` in ``x`` and at
    ``answer_pos[b] - 1`` in the shortened prompt (every token after ``t`` moves one place left).

    Unlike :func:`occlusion` with ``replacement="delete"`` (which shifts right and starts the
    prompt with two BOS tokens), the erased prompt is an ordinary, shorter prompt. Decoders only;
    rows right-padded (a trailing BOS run, as a TaskDataset pads) are fine, left padding is
    refused. Position 0 (BOS) and positions after ``answer_pos[b]`` score 0. To keep one batch,
    each shortened prompt is padded with a copy of its last token, a position the causal model
    never reads from ``answer_pos - 1``. All ``T - 1`` erased copies run in one stacked forward.
    """
    batch = prepare(model, tokens, attention_mask, None, "contrastive_erasure")
    tokens = batch.tokens
    if is_encoder(model):
        raise TutorialError("contrastive_erasure is for causal decoders (it reads the prediction "
                            "one position earlier)")
    if batch.forward_mask is not None:
        raise TutorialError("contrastive_erasure needs left-aligned rows (right padding, as a "
                            "TaskDataset pads); these rows are left-padded")
    B, T = tokens.shape
    pos = check_positions(answer_pos, B, T, "answer_pos").to(tokens.device)
    if int(pos.min()) < 1:
        raise TutorialError(f"answer_pos must hold one position in [1, {T - 1}] per example "
                            f"({B}), got {answer_pos!r}")
    check_real_positions(batch.mask, pos, "answer_pos")
    f_x = _values(model, batch, contrastive_target(target_ids, foil_ids, pos=pos), None, None)
    erased = torch.cat([torch.cat([tokens[:, :t], tokens[:, t + 1:], tokens[:, -1:]], 1)
                        for t in range(1, T)])  # [(T-1)*B, T]
    earlier = contrastive_target(target_ids, foil_ids, pos=pos - 1)
    with torch.no_grad():
        out = _run_from_embeddings(model, erased, _token_embeddings(model, erased), None)
        vals = evaluate_target(earlier, out, T - 1, B)  # [T-1, B]
    scores = torch.zeros(B, T, dtype=f_x.dtype, device=f_x.device)
    t = torch.arange(1, T, device=f_x.device)
    scores[:, 1:] = torch.where(t[None] <= pos[:, None], f_x[:, None] - vals.T, 0.0)
    return scores

