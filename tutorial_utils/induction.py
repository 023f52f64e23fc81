"""Induction heads on repeated random tokens (Elhage et al. 2021; Olsson et al. 2022).

On ``BOS + r + r``, with ``r`` a random sequence of ``L`` tokens, a model that can copy predicts
the second copy far better than the first. An induction head at query position ``q`` of the
second copy attends to key ``q - L + 1``: the token *after* the previous occurrence of the current
token. In the attention pattern this is an off-diagonal stripe at offset ``L - 1``.

    induction_score[layer, head] = mean_{q in second copy} pattern[layer, head, q, q - L + 1]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .names import hook_name
from .errors import TutorialError

__all__ = ["induction_scores", "induction_scores_from_patterns", "model_repeated_tokens",
           "per_token_loss", "repeated_random_tokens"]


def repeated_random_tokens(vocab_size: int, seq_len: int, batch: int, bos: int, seed: int = 0,
                           low: int = 2) -> Tensor:
    """``[batch, 1 + 2 * seq_len]``: BOS, then ``seq_len`` random ids in ``[low, vocab_size)``,
    then the same ids again."""
    if seq_len < 2 or batch < 1:
        raise TutorialError(f"need seq_len >= 2 and batch >= 1, got {seq_len}, {batch}")
    if not 0 <= low < vocab_size:
        raise TutorialError(f"low={low} outside the vocabulary of size {vocab_size}")
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(low, vocab_size, (batch, seq_len), generator=g)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), r, r], dim=1)


def model_repeated_tokens(model: Any, seq_len: int = 20, batch: int = 8, seed: int = 0) -> Tensor:
    """:func:`repeated_random_tokens` for a ``TransformerBridge`` (its vocabulary and BOS)."""
    bos = model.tokenizer.bos_token_id
    low = 2 if model.cfg.d_vocab < 5000 else 1000  # skip special / very short tokens
    return repeated_random_tokens(model.cfg.d_vocab, seq_len, batch, bos, seed, low=low)


def induction_scores_from_patterns(patterns: Tensor, seq_len: int) -> Tensor:
    """Induction score per head from patterns ``[batch, head, query, key]`` (or with a leading
    layer axis ``[layer, batch, head, query, key]``) of ``BOS + r + r`` with ``len(r) = seq_len``.
    Returns ``[head]`` (or ``[layer, head]``)."""
    T = patterns.shape[-1]
    if T != 1 + 2 * seq_len or patterns.shape[-2] != T:
        raise TutorialError(f"patterns of {T} positions do not fit BOS + 2 x {seq_len} tokens")
    q = torch.arange(seq_len + 1, 2 * seq_len + 1, device=patterns.device)
    return patterns[..., q, q - seq_len + 1].mean(dim=(-3, -1))


def induction_scores(model: Any, tokens: Tensor, seq_len: int) -> Tensor:
    """``[n_layers, n_heads]`` induction scores of every head of a ``TransformerBridge`` on
    ``tokens`` from :func:`repeated_random_tokens` (one forward pass, patterns only)."""
    names = [hook_name("pattern", l) for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    patterns = torch.stack([cache[n] for n in names])  # [layer, batch, head, q, k]
    return induction_scores_from_patterns(patterns, seq_len)


def per_token_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    """Next-token cross-entropy at every position: ``[batch, T - 1]`` (position ``i`` predicts
    token ``i + 1``)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]
