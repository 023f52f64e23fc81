"""The primer's exercise checks accept the reference and reject the likely mistakes, naming them."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.course.checks import nb00
from tutorial_utils.induction import induction_scores_from_patterns


def _wrong_offset(patterns, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len].mean(dim=(-3, -1))


def _summed(patterns, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return patterns[..., q, q - seq_len + 1].sum(dim=(-3, -1))


pytestmark = pytest.mark.usefixtures("lenient_checks")


def test_induction_score_check_passes_the_reference():
    assert nb00.check_induction_score.judge(induction_scores_from_patterns).passed


def test_induction_score_check_names_the_duplicate_token_mistake():
    result = nb00.check_induction_score.judge(_wrong_offset)
    assert not result.passed and "q - seq_len + 1" in result.message


def test_induction_score_check_catches_a_sum_instead_of_a_mean():
    result = nb00.check_induction_score.judge(_summed)
    assert not result.passed and "must score 1.0" in result.message


def test_synthetic_patterns_are_distributions():
    p = nb00._synthetic_patterns(4, offset=1)
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)))
    assert float(induction_scores_from_patterns(p, 4).min()) == 1.0


# ---- exercise 2.1: rebuild the residual stream -------------------------------------------------

def _residual(cache, n_layers, embed=True, pos=True, attn=True, mlp=True, layers=None):
    total = 0
    if embed:
        total = total + cache["hook_embed"]
    if pos:
        total = total + cache["hook_pos_embed"]
    for layer in range(n_layers if layers is None else layers):
        if attn:
            total = total + cache[f"blocks.{layer}.hook_attn_out"]
        if mlp:
            total = total + cache[f"blocks.{layer}.hook_mlp_out"]
    return total


def _short_keys(cache, n_layers):
    total = cache["embed"] + cache["pos_embed"]
    for layer in range(n_layers):
        total = total + cache["attn_out", layer] + cache["mlp_out", layer]
    return total


def test_residual_sum_check_passes_the_reference_and_short_keys(model):
    assert nb00.check_residual_sum.judge(nb00.reference_residual_sum, model).passed
    assert nb00.check_residual_sum.judge(_residual, model).passed
    assert nb00.check_residual_sum.judge(_short_keys, model).passed


@pytest.mark.parametrize("kwargs, words", [
    ({"pos": False}, "hook_pos_embed"),
    ({"embed": False}, "hook_embed"),
    ({"mlp": False}, "MLP outputs"),
    ({"attn": False}, "attention outputs"),
    ({"layers": 2}, "one layer early"),
])
def test_residual_sum_check_names_the_missing_term(model, kwargs, words):
    result = nb00.check_residual_sum.judge(lambda cache, n: _residual(cache, n, **kwargs), model)
    assert not result.passed and words in result.message, result.message


def test_residual_sum_check_rejects_reading_the_stream_back(model):
    """Returning the cached final residual stream equals the sum on a real cache, but skips the
    exercise: the synthetic cache has no hook_resid_* entry, and the message says so."""
    result = nb00.check_residual_sum.judge(
        lambda cache, n: cache[f"blocks.{n - 1}.hook_resid_post"], model)
    assert not result.passed and "do not read it back" in result.message, result.message


def test_residual_sum_check_reports_not_implemented(model):
    def stub(cache, n_layers):
        raise NotImplementedError

    result = nb00.check_residual_sum.judge(stub, model)
    assert not result.passed and "not implemented" in result.message


def test_checks_accept_any_float_dtype_and_report_non_tensors(model):
    """float64 or numpy answers are judged, not crashed on (torch.allclose refuses mixed
    dtypes); a non-numeric answer gets a message."""
    assert nb00.check_induction_score.judge(
        lambda p, L: induction_scores_from_patterns(p, L).double()).passed
    assert nb00.check_induction_score.judge(
        lambda p, L: induction_scores_from_patterns(p, L).numpy()).passed
    wrong = nb00.check_induction_score.judge(lambda p, L: _wrong_offset(p, L).double())
    assert not wrong.passed and "q - seq_len + 1" in wrong.message
    assert "is None" in nb00.check_induction_score.judge(lambda p, L: None).message
    assert nb00.check_residual_sum.judge(
        lambda cache, n: nb00.reference_residual_sum(cache, n).double(), model).passed
    missing = nb00.check_residual_sum.judge(lambda cache, n: _residual(cache, n, pos=False).double(),
                                      model)
    assert not missing.passed and "hook_pos_embed" in missing.message
    assert "is None" in nb00.check_residual_sum.judge(lambda cache, n: None, model).message
