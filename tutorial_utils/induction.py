"""Induction heads on repeated random tokens (Elhage et al. 2021; Olsson et al. 2022).

On ``BOS + r + r``, with ``r`` a random sequence of ``L`` tokens, a model that can copy predicts
the second copy far better than the first. An induction head at query position ``q`` of the
second copy attends to key ``q - L + 1``: the token *after* the previous occurrence of the current
token. In the attention pattern this is an off-diagonal stripe at offset ``L - 1``.

    induction_score[layer, head] = mean_{q in second copy} pattern[layer, head, q, q - L + 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .interchange import capture, model_device
from .names import hook_name
from .model_checks import check_model, check_tokens, require_decoder
from .validation import check_finite, check_int

if TYPE_CHECKING:
    from .models import Model

__all__ = ["attention_patterns", "induction_scores", "induction_scores_from_patterns",
           "model_repeated_tokens",
           "per_token_loss", "repeated_random_tokens"]


def repeated_random_tokens(vocab_size: int, seq_len: int, batch: int, bos: int, seed: int = 0,
                           low: int = 2) -> Int[Tensor, "batch pos"]:
    """``[batch, 1 + 2 * seq_len]``: BOS, then ``seq_len`` random ids in ``[low, vocab_size)``,
    then the same ids again."""
    vocab_size = check_int(vocab_size, "vocab_size", 1)
    seq_len = check_int(seq_len, "seq_len", 2)
    batch = check_int(batch, "batch", 1)
    bos = check_int(bos, "bos", 0, vocab_size - 1)
    seed = check_int(seed, "seed")
    low = check_int(low, "low")
    if not 0 <= low < vocab_size:
        raise TutorialError(f"low={low} outside the vocabulary of size {vocab_size}")
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(low, vocab_size, (batch, seq_len), generator=g)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), r, r], dim=1)


def model_repeated_tokens(model: Model, seq_len: int = 20, batch: int = 8, seed: int = 0
                          ) -> Int[Tensor, "batch pos"]:
    """:func:`repeated_random_tokens` for a ``TransformerBridge`` (its vocabulary and BOS), with
    ``1 + 2 * seq_len`` no longer than the model's context."""
    check_model(model, "model_repeated_tokens")
    seq_len = check_int(seq_len, "seq_len", 2)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and 1 + 2 * seq_len > n_ctx:
        raise TutorialError(f"seq_len={seq_len} gives 1 + 2 x {seq_len} = {1 + 2 * seq_len} "
                            f"tokens, more than the model's context of {n_ctx}: use seq_len <= "
                            f"{(n_ctx - 1) // 2}")
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is None:
        raise TutorialError("the model's tokenizer has no BOS token to open the sequences")
    low = 2 if model.cfg.d_vocab < 5000 else 1000  # skip special / very short tokens
    return repeated_random_tokens(model.cfg.d_vocab, seq_len, batch, bos, seed, low=low)


def induction_scores_from_patterns(patterns: Float[Tensor, "*layer batch head query key"],
                                   seq_len: int) -> Float[Tensor, "*layer head"]:
    """Induction score per head from patterns ``[batch, head, query, key]`` (or with a leading
    layer axis ``[layer, batch, head, query, key]``) of ``BOS + r + r`` with ``len(r) = seq_len``.
    Returns ``[head]`` (or ``[layer, head]``)."""
    patterns = check_finite(patterns, "patterns")
    seq_len = check_int(seq_len, "seq_len", 2)
    if patterns.ndim not in (4, 5):
        raise TutorialError(f"patterns must be [batch, head, query, key] or [layer, batch, head, "
                            f"query, key], got shape {tuple(patterns.shape)}")
    T = patterns.shape[-1]
    if T != 1 + 2 * seq_len or patterns.shape[-2] != T:
        raise TutorialError(f"patterns of {T} positions do not fit BOS + 2 x {seq_len} tokens")
    q = torch.arange(seq_len + 1, 2 * seq_len + 1, device=patterns.device)
    return patterns[..., q, q - seq_len + 1].mean(dim=(-3, -1))


def induction_scores(model: Model, tokens: Int[Tensor, "batch pos"], seq_len: int
                     ) -> Float[Tensor, "layer head"]:
    """``[n_layers, n_heads]`` induction scores of every head of a ``TransformerBridge`` on
    ``tokens`` from :func:`repeated_random_tokens` (one forward pass, patterns only).

    ``tokens`` must be ``[batch, 1 + 2 * seq_len]`` with the second half repeating the first
    (checked: scores on other tokens, or on padded rows, would measure nothing). Random ids may
    include the BOS id, so no padding is inferred from it."""
    require_decoder(model, "induction_scores")
    tokens = check_tokens(model, tokens)
    seq_len = check_int(seq_len, "seq_len", 2)
    if tokens.shape[1] != 1 + 2 * seq_len:
        raise TutorialError(f"tokens of {tokens.shape[1]} positions do not fit BOS + 2 x "
                            f"{seq_len} tokens (use repeated_random_tokens or "
                            "model_repeated_tokens)")
    if not torch.equal(tokens[:, 1:1 + seq_len], tokens[:, 1 + seq_len:]):
        raise TutorialError("tokens: the second half does not repeat the first (BOS + r + r "
                            "expected, from repeated_random_tokens)")
    return induction_scores_from_patterns(attention_patterns(model, tokens), seq_len)


def attention_patterns(model: Model, tokens: Int[Tensor, "batch pos"]
                       ) -> Float[Tensor, "layer batch head query key"]:
    """Every layer's attention patterns in one forward pass (no gradient), on the model's
    device (:func:`tutorial_utils.interchange.capture`)."""
    names = [hook_name("pattern", l) for l in range(model.cfg.n_layers)]
    _, cache = capture(model, tokens.to(model_device(model)), names)
    return torch.stack([cache[n] for n in names])


def per_token_loss(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
                   ) -> Float[Tensor, "batch next"]:
    """Next-token cross-entropy at every position: ``[batch, T - 1]`` (position ``i`` predicts
    token ``i + 1``)."""
    if not isinstance(logits, Tensor) or logits.ndim != 3:
        raise TutorialError(f"logits must be [batch, pos, vocab], got "
                            f"{tuple(getattr(logits, 'shape', ())) or type(logits).__name__}")
    if not isinstance(tokens, Tensor) or tokens.dtype.is_floating_point or \
            tokens.dtype == torch.bool or tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise TutorialError(f"tokens must be integer ids [batch, pos] = "
                            f"{tuple(logits.shape[:2])}, got "
                            f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
                            f"{tuple(getattr(tokens, 'shape', ()))}")
    if tokens.shape[1] < 2:
        raise TutorialError("need at least 2 positions to score a next token")
    if int(tokens.min()) < 0 or int(tokens.max()) >= logits.shape[-1]:
        raise TutorialError(f"tokens hold ids outside the logits' vocabulary [0, "
                            f"{logits.shape[-1]})")
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None].to(logp.device).long())[..., 0]
