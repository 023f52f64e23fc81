"""The primer's exercise checks accept the reference and reject the likely mistakes, naming them."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.exercise_checks import nb00
from tutorial_utils.induction import induction_scores_from_patterns


def _wrong_offset(patterns, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len].mean(dim=(-3, -1))


def _summed(patterns, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len + 1].sum(dim=(-3, -1))


@pytest.fixture(autouse=True)
def _lenient(monkeypatch):
    """Checks report failures to students instead of raising (strict mode is for CI notebooks)."""
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)


def test_induction_score_check_passes_the_reference():
    assert nb00.check_induction_score(induction_scores_from_patterns).passed


def test_induction_score_check_names_the_duplicate_token_mistake():
    result = nb00.check_induction_score(_wrong_offset)
    assert not result.passed and "q - seq_len + 1" in result.message


def test_induction_score_check_catches_a_sum_instead_of_a_mean():
    result = nb00.check_induction_score(_summed)
    assert not result.passed and "must score 1.0" in result.message


def test_synthetic_patterns_are_distributions():
    p = nb00._synthetic_patterns(4, offset=1)
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)))
    assert float(induction_scores_from_patterns(p, 4).min()) == 1.0
