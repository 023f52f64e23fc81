"""Notebook 00\'s section on a published model: induction heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...induction import induction_scores_from_patterns, model_repeated_tokens, per_token_loss
from ...names import hook_name
from .common import (INDUCTION_HEADS, check_positive, format_heads, gpu_hint, model_label,
                     model_shape, published_lines, top_named)

@dataclass
class InductionSection:
    """Notebook 00 on a large model: loss on repeated random tokens and induction scores.

    ``scores [n_layers, n_heads]``: mean attention from each second-copy token to the token
    after its first occurrence (:mod:`tutorial_utils.induction`)."""

    model: str
    shape: str
    seq_len: int
    batch: int
    loss_first: float
    loss_second: float
    scores: Tensor
    top: list[tuple[str, float]]
    published_heads: str
    residual_error: float = float("nan")

    def summary(self) -> str:
        return "\n".join([
            f"Notebook 00 on {self.model} ({self.shape}), {self.batch} sequences of "
            f"2 x {self.seq_len} repeated random tokens:",
            f"  residual stream rebuilt as embeddings + every attention and MLP output: max "
            f"|error| {self.residual_error:.1e}",
            f"  loss on the first copy {self.loss_first:.2f}, on the second copy "
            f"{self.loss_second:.2f} nats/token",
            "  top induction scores: " + ", ".join(f"{h} {s:.2f}" for h, s in self.top),
            f"  induction score of the published heads: {self.published_heads}",
            published_lines("induction"),
            gpu_hint("00", "batch=64"),
        ])


def section_00(model: Any, *, batch: int = 8, seq_len: int = 20, seed: int = 0, top_k: int = 5,
               verbose: bool = True) -> InductionSection:
    """Notebook 00's analysis on ``model``, one forward pass over ``batch`` sequences
    ``BOS + r + r`` (``len(r) = seq_len``): the last residual stream rebuilt from the
    embeddings and every writer, per-token loss, and every head's induction score."""

    check_positive(batch=batch, seq_len=seq_len, top_k=top_k)
    tokens = model_repeated_tokens(model, seq_len=seq_len, batch=batch, seed=seed)
    L = model.cfg.n_layers
    names = [hook_name("pattern", l) for l in range(L)]
    writers = [hook_name("embed"), hook_name("pos_embed")] + [
        hook_name(f"{w}_out", l) for l in range(L) for w in ("attn", "mlp")]
    final = hook_name("resid_post", L - 1)
    keep = set(names) | set(writers) | {final}
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens.to(model.cfg.device),
                                             names_filter=lambda n: n in keep)
    rebuilt = sum(cache[w] for w in writers)
    residual_error = float((rebuilt - cache[final]).abs().max())
    loss = per_token_loss(logits.cpu(), tokens).mean(0)  # [2 * seq_len]
    scores = induction_scores_from_patterns(torch.stack([cache[n] for n in names]),
                                            seq_len).float().cpu()
    res = InductionSection(model_label(model), model_shape(model), seq_len, batch,
                           float(loss[1:seq_len].mean()), float(loss[seq_len + 1:].mean()),
                           scores, top_named(scores, top_k),
                           format_heads(model, scores, INDUCTION_HEADS), residual_error)
    if verbose:
        print(res.summary())
    return res
