"""Induction-score helpers: exact on hand-made patterns, and the shipped model has a head."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.induction import (induction_scores, induction_scores_from_patterns,
                                      model_repeated_tokens, per_token_loss,
                                      repeated_random_tokens)


def test_repeated_tokens_repeat():
    toks = repeated_random_tokens(100, 7, 3, bos=0, seed=1)
    assert toks.shape == (3, 15) and (toks[:, 0] == 0).all()
    assert torch.equal(toks[:, 1:8], toks[:, 8:])
    with pytest.raises(ValueError, match="seq_len"):
        repeated_random_tokens(100, 1, 3, bos=0)


def test_scores_on_hand_made_patterns():
    L, T = 5, 11
    perfect = torch.zeros(2, 3, T, T)
    for q in range(L + 1, T):
        perfect[:, 0, q, q - L + 1] = 1.0  # head 0: a perfect induction head
    perfect[:, 1] = torch.eye(T)  # head 1: attends to itself
    perfect[:, 2] = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # uniform
    s = induction_scores_from_patterns(perfect, L)
    assert s.shape == (3,)
    assert s[0] == 1.0 and s[1] == 0.0
    expected = torch.tensor([1 / (q + 1) for q in range(L + 1, T)]).mean()
    assert torch.isclose(s[2], expected)
    with pytest.raises(ValueError, match="do not fit"):
        induction_scores_from_patterns(perfect, 4)


def test_per_token_loss_matches_cross_entropy():
    logits = torch.randn(2, 6, 11)
    toks = torch.randint(0, 11, (2, 6))
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), toks[:, 1:].reshape(-1),
                                            reduction="none").reshape(2, 5)
    assert torch.allclose(per_token_loss(logits, toks), ref, atol=1e-6)


def test_shipped_model_has_an_induction_head(model):
    toks = model_repeated_tokens(model, seq_len=20, batch=8, seed=0)
    scores = induction_scores(model, toks, 20)
    assert scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert scores.max() >= 0.5
    loss = per_token_loss(model(toks), toks)
    assert loss[:, 21:].mean() < loss[:, 1:20].mean() / 2
