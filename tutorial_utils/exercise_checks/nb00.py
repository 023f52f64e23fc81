"""Checks for the exercises of ``notebooks/00_primer.ipynb``."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..grading import CheckResult, compare_to_reference, report
from ..induction import induction_scores_from_patterns

__all__ = ["check_induction_score", "check_residual_sum", "reference_residual_sum"]


def reference_residual_sum(cache: Any, n_layers: int) -> torch.Tensor:
    """x_0 + sum_l attn_out_l + sum_l mlp_out_l, ``[batch, pos, d_model]``."""
    total = cache["hook_embed"] + cache["hook_pos_embed"]
    for layer in range(n_layers):
        total = total + cache[f"blocks.{layer}.hook_attn_out"] + cache[f"blocks.{layer}.hook_mlp_out"]
    return total


def check_residual_sum(student_fn: Callable, model: Any) -> CheckResult:
    """Compare the student's residual sum with the reference on fresh prompts, and with the
    model's real final residual stream."""
    prompts = ["The keys on the cabinet are old.", "When Mary and John went to the park,",
               "The capital of France is Paris."]

    def make_inputs(gen: torch.Generator):
        prompt = prompts[int(torch.randint(len(prompts), (1,), generator=gen))]
        with torch.no_grad():
            _, cache = model.run_with_cache(model.to_tokens(prompt))
        return (cache, model.cfg.n_layers)

    result = compare_to_reference("residual_sum", student_fn, reference_residual_sum, make_inputs,
                                  atol=1e-4)
    return report(result)


def _synthetic_patterns(seq_len: int, offset: int, n_heads: int = 2) -> torch.Tensor:
    """``[1, n_heads, T, T]`` patterns of ``BOS + r + r`` where every query of the second copy
    puts all its attention on key ``q - seq_len + offset`` and every other query on BOS."""
    T = 1 + 2 * seq_len
    patterns = torch.zeros(1, n_heads, T, T)
    patterns[..., 0] = 1.0
    q = torch.arange(seq_len + 1, T)
    patterns[..., q, 0] = 0.0
    patterns[..., q, q - seq_len + offset] = 1.0
    return patterns


def check_induction_score(student_fn: Callable) -> CheckResult:
    """Two synthetic patterns with known answers, then the reference on random patterns.

    A perfect induction head (each second-copy query attends only to ``q - seq_len + 1``, the
    token after the earlier copy of the current token) must score 1; a perfect duplicate-token
    head (attending to ``q - seq_len``, the earlier copy itself) must score 0.
    """
    name = "induction_score"
    seq_len = 5
    try:
        perfect = student_fn(_synthetic_patterns(seq_len, offset=1), seq_len)
        duplicate = student_fn(_synthetic_patterns(seq_len, offset=0), seq_len)
    except NotImplementedError:
        return report(CheckResult(name, False, "not implemented yet: fill in the exercise cell, "
                                               "run it, then re-run this check"))
    except Exception as error:  # noqa: BLE001 - a check reports, it does not raise
        return report(CheckResult(name, False, f"your function raised {type(error).__name__}: {error}"))
    perfect, duplicate = torch.as_tensor(perfect), torch.as_tensor(duplicate)
    if perfect.shape != (2,):
        return report(CheckResult(name, False, f"expected one score per head, shape (2,), got "
                                               f"{tuple(perfect.shape)}: average over the batch "
                                               "axis and the query axis only"))
    if torch.allclose(duplicate, torch.ones(2)) and not torch.allclose(perfect, torch.ones(2)):
        return report(CheckResult(name, False, "a perfect duplicate-token pattern scored 1 and a "
                                               "perfect induction pattern did not: you read key "
                                               "q - seq_len (the earlier copy of the current token); "
                                               "the induction head attends to the token after it, "
                                               "q - seq_len + 1"))
    if not torch.allclose(perfect, torch.ones(2), atol=1e-5):
        return report(CheckResult(name, False, f"a perfect induction pattern (all attention on "
                                               f"q - seq_len + 1) must score 1.0, got "
                                               f"{perfect.tolist()}: check the query range "
                                               "(the second copy is q = seq_len+1 .. 2*seq_len) and "
                                               "that you average, not sum"))
    if not torch.allclose(duplicate, torch.zeros(2), atol=1e-5):
        return report(CheckResult(name, False, f"a pattern attending only to the earlier copy of the "
                                               f"current token must score 0.0, got {duplicate.tolist()}"))

    def make_inputs(gen: torch.Generator):
        seq_len = int(torch.randint(3, 9, (1,), generator=gen))
        T = 1 + 2 * seq_len
        scores = torch.rand(2, 3, T, T, generator=gen).tril()
        return (scores / scores.sum(-1, keepdim=True), seq_len)

    result = compare_to_reference(name, student_fn, induction_scores_from_patterns, make_inputs)
    if result.passed:
        result.message = "a perfect induction pattern scores 1, a duplicate-token one 0, and " \
                         "random patterns match the reference"
    return report(result)
